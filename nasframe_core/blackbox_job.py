"""The driver of a black-box search: proposals scored by an evaluator, on an executor.

The optimizer (a :class:`~nasframe_core.blackbox.BlackBoxOptimizer`) owns only its strategy;
this job owns the budget, the executor, the incumbent and the journal. Whenever a worker is
free it asks the optimizer for a proposal; it tells the optimizer every evaluation in the order
they finish. No dataset is loaded and no network is built unless the space has no benchmark
table, in which case each architecture is trained briefly (``TrainingEvaluator``).

The journal (``journal.jsonl`` in the run directory) holds every proposal (``ask``) and every
finished evaluation (``tell``) in the order they happened, each line written as it happens. A
resumed search replays it into a fresh optimizer (the same asks and tells in the same order),
so no finished evaluation runs again, and submits again the proposals that were still running
when the driver stopped: a search killed at any point ends exactly where an uninterrupted one
does (with the serial and simulated executors, bit for bit). A round is
``evaluator.round_size`` finished evaluations (10 table look-ups, or one training): after every
round the loop writes the checkpoint and a line of ``metrics.jsonl`` holding the round's
evaluations.
"""
from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any, Optional

from .context import RunContext
from .data import _mix
from .errors import NasframeError
from .evaluation import FAILED, OK, Budget, Evaluation, Evaluator, TableEvaluator, TrainingEvaluator, as_proposal
from .executors import Executor, make_executor
from .job import Job

log = logging.getLogger("nasframe")
JOURNAL = "journal.jsonl"
#: failed evaluations in a row that end a search (each charges nothing, so a time budget never would)
FAILURES_IN_A_ROW = 100


class _Progress:
    """What the checkpoint keeps of the driver (the journal holds the rest)."""

    def __init__(self, job: "ProposalJob") -> None:
        self.job = job

    def state_dict(self) -> dict:
        j = self.job
        return {"told": len(j.history), "ended": j.ended}

    def load_state_dict(self, state: dict) -> None:
        self.job._replay(int(state["told"]), bool(state.get("ended", False)))


class ProposalJob(Job):
    kind = "blackbox"
    quiet_steps = True

    def __init__(self, ctx: RunContext, optimizer):
        super().__init__(ctx)
        cfg, host = ctx.config, ctx.host
        if self.world > 1:
            raise NasframeError("a black-box search runs its own workers; start it without torchrun (--executor ray)")
        self.dataset_label = host.get("dataset", cfg.dataset.name).name
        self.optimizer = optimizer
        handled = host.hook.nasframe_adapt_search_space(optimizer=optimizer, search_space=self.space,
                                                        dataset=self.dataset_label)
        if handled is None:
            optimizer.adapt_search_space(self.space, self.dataset_label)
        self.budget: Budget = optimizer.budget
        self.evaluator: Evaluator = self._make_evaluator(_mix(cfg.run.seed, 0, 37))
        self.executor: Executor = make_executor(cfg.run.executor, self.evaluator, cfg.run.workers,
                                                optimizer.max_attempts, cfg.run.address)
        # what a multi-fidelity optimizer may ask for (empty: any number of epochs) and the default
        optimizer.fidelities = self.evaluator.fidelities()
        optimizer.default_fidelity = self.evaluator.default_fidelity()
        optimizer.start(_mix(cfg.run.seed, 0, 31))
        self.history: list[Evaluation] = []  # finished evaluations, in the order they were told
        self.charged = 0.0
        self.ended = False  # an evaluation the seconds budget did not admit ended the search
        self.in_flight: dict[int, Any] = {}  # index -> genotype, submitted and not told
        self._resubmit: list[tuple[int, Any, tuple]] = []  # (index, genotype, (worker, started))
        self._carried: list[dict] = []  # told after the last checkpoint, before a resume
        self._journal = None
        self._replayed = False  # the journal was read (a resume), or found empty
        self._failed_in_a_row = 0
        if cfg.run.eval_test:
            self.notices.append("run.eval_test: a black-box search trains no network to score on the test split; "
                                "the found cell's benchmark test accuracy is reported instead")

    def _make_evaluator(self, seed: int) -> Evaluator:
        from .zerocost import ZEROCOST, ZeroCostEvaluator, check_evaluator_name, run_scorer

        cfg = self.config
        choice = check_evaluator_name(cfg.run.evaluator)
        # a strategy that uses zero-cost proxies (REA's warm-up) gets a scorer for this run
        self.optimizer.proxy_scorer = lambda names: run_scorer(self.ctx, self.space, names)
        table = self.benchmark is not None and self.space.benchmark_dataset(self.dataset_label) is not None
        if choice.startswith(ZEROCOST + ":"):
            if self.budget.seconds is not None:
                raise NasframeError(f"the {choice} evaluator charges no time, so optimizer.time_budget never ends the "
                                    f"search; set optimizer.evaluations instead")
            return ZeroCostEvaluator(self.space, self.dataset_label, seed, self.ctx, choice.partition(":")[2].strip())
        if choice == "table" and not table:
            name = getattr(self.space, "benchmark_name", None)
            raise NasframeError(
                f"run.evaluator=table, but no {name or 'benchmark'} table is attached to space "
                f"{self.space.name!r}" + ("; pass --benchmark PATH (or set its environment variable)" if name else
                                          "; this space has no benchmark, use run.evaluator=training"))
        if choice == "table" or (choice == "auto" and table):
            return TableEvaluator(self.space, self.dataset_label, seed, cfg.run.protocol, cfg.run.fidelity)
        return TrainingEvaluator(self.space, self.dataset_label, seed, cfg, self.ctx.host, self.device,
                                 self.optimizer.train_epochs)

    # ------------------------------------------------------------------ journal
    def _journal_path(self) -> Optional[Path]:
        return self.ctx.run_dir.path / JOURNAL if self.ctx.run_dir is not None else None

    def _write(self, event: dict) -> None:
        path = self._journal_path()
        if path is None:
            return
        if self._journal is None:
            self._journal = open(path, "a", encoding="utf-8")
        self._journal.write(json.dumps(event) + "\n")
        self._journal.flush()  # in the OS's hands: a killed driver loses nothing it wrote

    def _replay(self, told_at_checkpoint: int, ended: bool) -> None:
        """Rebuild the search from the journal: the optimizer asked and told again in the order
        it was, the finished evaluations restored, the unfinished ones queued to run again."""
        self._replayed = True
        path = self._journal_path()
        events = []
        if path is not None and path.exists():
            with open(path, "rb") as f:
                lines = f.read().split(b"\n")
            kept = 0  # bytes of the journal's readable lines
            for n, raw in enumerate(lines, 1):
                if raw.strip():
                    try:
                        events.append(json.loads(raw))
                    except (json.JSONDecodeError, UnicodeDecodeError):
                        if any(rest.strip() for rest in lines[n:]):  # only the last line may be cut short by a kill
                            raise NasframeError(f"{path} line {n} is damaged; the search cannot be resumed") from None
                        with open(path, "r+b") as f:  # drop it, so that what the resumed search writes reads
                            f.truncate(kept)
                        break
                kept += len(raw) + 1
        asked: dict[int, tuple] = {}
        for event in events:
            if "ask" in event:
                genotype = self.optimizer.next_proposal()
                if genotype is None:  # cannot happen where the journal was written by this optimizer
                    raise NasframeError(f"{path} does not match the optimizer: it proposes nothing at proposal "
                                        f"{event['ask']}; the optimizer's code or settings changed since the run started")
                p = as_proposal(genotype)
                if str(p.genotype) != event["genotype"] or p.fidelity != event.get("fidelity"):
                    raise NasframeError(
                        f"{path} does not match the optimizer: proposal {event['ask']} was {event['genotype']}, "
                        f"now {p.genotype}; the optimizer's code or settings changed since the run started")
                asked[int(event["ask"])] = (genotype, (event.get("worker", 0), event.get("started", 0.0)))
            elif "tell" in event:
                e = Evaluation.from_json(event["tell"], self.space)
                asked.pop(e.index, None)
                self._count(e)
                if len(self.history) > told_at_checkpoint:
                    self._carried.append(self._row(e))
        self.ended = ended or any(event.get("ended") for event in events)
        self.executor.restore([(e.worker, e.finished) for e in self.history])
        self._resubmit = [] if self.ended else [(i, g, at) for i, (g, at) in sorted(asked.items())]

    # ------------------------------------------------------------------ rounds
    def dataset_name(self) -> str:
        return self.dataset_label

    def planned_rounds(self) -> Optional[int]:
        if self.budget.seconds is None:
            return math.ceil(self.budget.evaluations / self.evaluator.round_size)
        return None  # a seconds budget ends when the evaluations' costs say so

    def _may_ask(self) -> bool:
        if self.ended:
            return False
        if self.budget.evaluations is not None and self.optimizer.asked >= self.budget.evaluations:
            return False
        return not (self.budget.seconds is not None and self.charged >= self.budget.seconds)

    def has_next_round(self, epoch: int) -> bool:
        return bool(self.in_flight or self._resubmit) or self._may_ask()

    def resume_point(self, epoch: int, history: list[dict]) -> str:
        return (f"{len(self.history)} evaluations, {self.charged:.0f} s charged ({self.budget.describe()})"
                + (f"; {len(self._resubmit)} unfinished evaluation(s) run again" if self._resubmit else ""))

    def steps_in_epoch(self, epoch: int) -> int:
        return self.evaluator.round_size

    def checkpointables(self) -> dict[str, Any]:
        return {"driver": _Progress(self)}

    def describe(self) -> str:
        c = self.config
        return (f"black-box search: optimizer {c.optimizer.name}, space {c.search_space.name}, dataset "
                f"{self.dataset_label}, scored by {self.evaluator.describe()}, budget {self.budget.describe()}, "
                f"executor {self.executor.describe()}, seed {c.run.seed}")

    def _fill(self) -> None:
        """Give every free worker a proposal (first the ones a resume found unfinished)."""
        while self.executor.free() > 0 and self._resubmit:
            index, genotype, at = self._resubmit.pop(0)
            self.in_flight[index] = genotype
            self.executor.submit(index, genotype, at)
        while self.executor.free() > 0 and self._may_ask():
            index = self.optimizer.asked
            genotype = self.optimizer.next_proposal()
            if genotype is None:  # the strategy waits for a result
                if not self.in_flight:
                    raise NasframeError(f"optimizer {self.config.optimizer.name!r} proposes nothing while no "
                                        f"evaluation is running; the search cannot go on")
                break
            self.in_flight[index] = genotype
            worker, started = self.executor.submit(index, genotype)
            # written after the submit, which may have run the evaluation already (serial): a
            # proposal's line always comes before its result's
            p = as_proposal(genotype)
            self._write({"ask": index, "genotype": str(p.genotype), "fidelity": p.fidelity, "worker": worker,
                         "started": started})

    def _count(self, e: Evaluation) -> None:
        """Charge ``e`` and tell the optimizer (also when replaying the journal)."""
        self.charged += e.cost
        self.history.append(e)
        self.optimizer.tell(e)

    def _row(self, e: Evaluation) -> dict:
        return {**e.to_json(), "evaluation": len(self.history), "spent_seconds": self.charged}

    def _finish(self, done) -> Optional[Evaluation]:
        """The evaluation of a finished task, counted; None when the budget ends the search there."""
        self.in_flight.pop(done.index, None)
        s, p = done.score, as_proposal(done.genotype)
        fidelity = p.fidelity if p.fidelity is not None else self.evaluator.default_fidelity()
        if s is None:
            e = Evaluation(p.genotype, None, 0.0, None, FAILED, done.error, done.worker, done.started,
                           done.finished, done.attempts, done.index, fidelity)
        else:
            e = Evaluation(p.genotype, s.valid_accuracy, s.cost, s.test_accuracy, OK, None, done.worker,
                           done.started, done.finished, done.attempts, done.index, fidelity)
            if not self.budget.admits(self.charged, e.cost):
                # NB201's rule: the evaluation that would overrun the seconds ends the search, uncounted
                self.ended = True
                self._write({"ended": True, "index": e.index})
                self.executor.discard()
                self.in_flight.clear()
                return None
            if self.budget.seconds is not None and not e.cost > 0:
                raise NasframeError(
                    f"the {self.evaluator.kind} evaluator charges no time for {e.genotype}, so a time budget never "
                    f"ends; set optimizer.evaluations instead of optimizer.time_budget")
        self._count(e)
        self._write({"tell": e.to_json()})
        self._failed_in_a_row = 0 if e.ok else self._failed_in_a_row + 1
        if self._failed_in_a_row >= FAILURES_IN_A_ROW:
            # a budget in seconds is never spent by failures, which charge nothing
            raise NasframeError(f"the last {FAILURES_IN_A_ROW} evaluations all failed, the last because: {e.error}; "
                                f"fix what fails and continue with --resume")
        return e

    def run_epoch(self, epoch: int, progress) -> dict:
        host = self.ctx.host
        if not self._replayed:
            # a run resumed before its first checkpoint has a journal and no checkpoint to say so
            self._replayed = True
            path = self._journal_path()
            if path is not None and path.exists() and path.stat().st_size > 0:
                self._replay(0, False)
        evaluated, self._carried = self._carried, []
        while len(evaluated) < self.evaluator.round_size:
            self._fill()
            if not self.in_flight:
                break
            for done in self.executor.wait():
                e = self._finish(done)
                if e is None:
                    break
                evaluated.append(self._row(e))
                if not e.ok:
                    log.info("evaluation %d of %s failed: %s", e.index + 1, e.genotype, e.error)
                else:
                    progress.update(len(evaluated) - 1, valid_accuracy=e.valid_accuracy)
                host.hook.nasframe_step_end(run=self.ctx, epoch=epoch, step=len(evaluated) - 1,
                                            result={"evaluation": e, "spent_seconds": self.charged})
            if self.ended:
                break
        best = self.incumbent()
        metrics: dict[str, Any] = {
            "epoch": epoch + 1,  # rounds count from 1, like epochs
            "evaluations": len(self.history),
            "spent_seconds": self.charged,
            "budget_fraction": self.budget.fraction(len(self.history), self.charged),
            "evaluated": evaluated,
            "genotype": str(best.genotype) if best else None,
            "best_valid_accuracy": best.valid_accuracy if best else None,
            "test_statistics": best.test_accuracy if best else None,
        }
        metrics.update(self.optimizer.epoch_report())
        if best is not None:
            report = self.benchmark_report(best.genotype)
            if report is not None:
                metrics["benchmark"] = report
        return metrics

    def incumbent(self) -> Optional[Evaluation]:
        """The successful evaluation with the best validation accuracy (the earliest told on ties)
        among those at the highest fidelity evaluated (scores after fewer epochs are not comparable)."""
        done = [e for e in self.history if e.ok]
        top = max((e.fidelity for e in done if e.fidelity is not None), default=None)
        return self.optimizer.best([e for e in done if e.fidelity == top] if top is not None else done)

    def genotype(self):
        best = self.incumbent()
        if best is None:
            raise NasframeError("the search evaluated no architecture successfully; raise optimizer.evaluations or "
                                "optimizer.time_budget, or read the failed evaluations in result.json")
        return best.genotype

    def epoch_line(self, m: dict, epochs: Optional[int]) -> str:
        unit = "simulated s" if self.evaluator.kind == "table" else "s of training"
        line = (f"evaluations {m['evaluations']}, {m['spent_seconds']:.0f} {unit} charged "
                f"({100 * m['budget_fraction']:.0f}% of the budget)")
        if m.get("best_valid_accuracy") is not None and self.evaluator.kind == "zerocost":
            line += f": best {self.evaluator.proxy} score {m['best_valid_accuracy']:.6g}"
        elif m.get("best_valid_accuracy") is not None:
            line += f": best search accuracy {m['best_valid_accuracy']:.2f}%"
        if m.get("test_statistics") is not None:
            line += f", its benchmark test accuracy {m['test_statistics']:.2f}%"
        return line + f" ({m['seconds']:.2f} s wall); genotype {m['genotype']}"

    def final_result(self, history: list[dict], elapsed: float) -> dict:
        self.executor.close()
        if self._journal is not None:
            self._journal.close()
            self._journal = None
        opt, c = self.optimizer, self.config
        genotype = self.genotype()
        best = self.incumbent()
        failed = sum(1 for e in self.history if not e.ok)
        test = best.test_accuracy
        protocol = getattr(self.evaluator, "protocol_report", None)
        return {
            "genotype": str(genotype),
            "genotype_json": genotype.to_json() if hasattr(genotype, "to_json") else None,
            **opt.result_report(),
            "test_statistics": test,
            "benchmark": self.benchmark_report(genotype),
            "protocol": protocol() if protocol else None,
            # the cell on every dataset of the table, where the search is the same for all of them
            "transferred": self._transferred(genotype),
            "optimizer": c.optimizer.name,
            "search_space": c.search_space.name,
            "dataset": self.dataset_label,
            "evaluator": self.evaluator.kind,
            "executor": self.executor.name,
            "workers": self.executor.workers,
            "budget": {"evaluations": self.budget.evaluations, "seconds": self.budget.seconds},
            "evaluations": len(self.history),
            "failed_evaluations": failed,
            "spent_seconds": self.charged,
            # when the last evaluation finished (simulated seconds with the simulated executor)
            "search_wall_seconds": max((e.finished for e in self.history), default=0.0),
            "best_valid_accuracy": best.valid_accuracy if best else None,
            "history": [e.to_json() for e in self.history],
            "seed": c.run.seed,
            "seconds": round(elapsed, 3),
        }

    def _transferred(self, genotype) -> Optional[dict]:
        transfers = getattr(self.evaluator, "transfers", None)
        if not (transfers and transfers()):
            return None
        from .benchmark import TEST_ACCURACY, VALID_ACCURACY

        return {d: {"test_accuracy": self.space.query(genotype, d, TEST_ACCURACY),
                    "valid_accuracy": self.space.query(genotype, d, VALID_ACCURACY)}
                for d in self.space.report_datasets()}

    def summary_lines(self, result: dict) -> list[str]:
        lines = [f"found architecture: {result['genotype']}"]
        unit = "simulated seconds" if result["evaluator"] == "table" else "seconds of training"
        searched = (f"searched {result['evaluations']} architectures in {result['spent_seconds']:.0f} {unit} "
                    f"(budget {self.budget.describe()})")
        if result.get("best_valid_accuracy") is not None and result["evaluator"] == "zerocost":
            searched += f"; the best scored {result['best_valid_accuracy']:.6g} ({self.evaluator.describe()})"
        elif result.get("best_valid_accuracy") is not None:
            what = "validation accuracy from the table, as the search saw it" if result["evaluator"] == "table" else (
                f"validation accuracy after {_epochs(self.optimizer.train_epochs)} of training")
            searched += f"; the best scored {result['best_valid_accuracy']:.2f}% ({what})"
        lines.append(searched)
        if result.get("failed_evaluations"):
            lines.append(f"{result['failed_evaluations']} evaluation(s) failed; their reasons are in result.json "
                         f"(history, status 'failed')")
        bench = result.get("benchmark")
        if bench and bench.get("test_accuracy") is not None:
            valid = bench.get("valid_accuracy")
            extra = f", validation {valid:.2f}% (mean over seeds)" if valid is not None else ""
            lines.append(f"benchmark {bench['name']} ({bench['dataset']}): test accuracy {bench['test_accuracy']:.2f}%{extra}")
        if self.ctx.run_dir is not None:
            lines.append(f"results in {self.ctx.run_dir.path}")
        return lines


def _epochs(n: int) -> str:
    return f"{n} epoch{'s' if n != 1 else ''}"
