"""The loop's job for a black-box optimizer: rounds of evaluations instead of epochs of steps.

No dataset is loaded and no network is built unless the space has no benchmark table, in
which case each architecture is trained briefly (:class:`~nasframe_core.blackbox.TrainingEvaluator`,
data loaded at its first evaluation). A round is ``evaluator.round_size`` evaluations (10
table look-ups, or one training); after every round the loop writes the checkpoint and a line
of ``metrics.jsonl`` holding the round's evaluations, so ``--resume`` continues exactly.
"""
from __future__ import annotations

import logging
import math
from typing import Any, Optional

from . import distributed
from .blackbox import Budget, Evaluation, TableEvaluator, TrainingEvaluator
from .data import _mix
from .engine import RunContext
from .errors import NasframeError
from .search import JobBase, SearchJob

log = logging.getLogger("nasframe")


class _Spent:
    """Evaluations made and seconds charged so far, and whether an evaluation the seconds
    budget did not admit ended the search (checkpointed)."""

    def __init__(self) -> None:
        self.evaluations, self.seconds = 0, 0.0
        self.best_valid: Optional[float] = None
        self.ended = False

    def add(self, e: Evaluation) -> None:
        self.evaluations += 1
        self.seconds += e.cost
        if self.best_valid is None or e.valid_accuracy > self.best_valid:
            self.best_valid = e.valid_accuracy

    def state_dict(self) -> dict:
        return {"evaluations": self.evaluations, "seconds": self.seconds, "best_valid": self.best_valid,
                "ended": self.ended}

    def load_state_dict(self, state: dict) -> None:
        self.evaluations, self.seconds = int(state["evaluations"]), float(state["seconds"])
        self.best_valid = state["best_valid"]
        self.ended = bool(state.get("ended", False))


class BlackBoxJob(JobBase):
    kind = "blackbox"
    quiet_steps = True

    def __init__(self, ctx: RunContext, optimizer):
        # JobBase.__init__ loads the dataset; a black-box search sets up only what it uses
        self.ctx = ctx
        cfg, host = ctx.config, ctx.host
        self.config = cfg
        self.device = ctx.device
        self.world, self.rank = distributed.world_size(), distributed.rank()
        if self.world > 1:
            raise NasframeError("a black-box search runs in one process; start it without torchrun")
        self.space = host.create("search_space", cfg.search_space.name, **cfg.search_space.settings)
        self.dataset = host.get("dataset", cfg.dataset.name).name
        self.augment = None
        self.benchmark = self._attach_benchmark()
        self.optimizer = optimizer
        optimizer.device = self.device
        handled = host.hook.nasframe_adapt_search_space(optimizer=optimizer, search_space=self.space,
                                                        dataset=self.dataset)
        if handled is None:
            optimizer.adapt_search_space(self.space, self.dataset)
        self.budget: Budget = optimizer.search_budget()
        seed = cfg.run.seed
        from .zerocost import evaluator_for  # run.evaluator: auto (table, else training) or zerocost:PROXY

        self.evaluator = evaluator_for(ctx, self.space, self.dataset, self.benchmark, self.budget, _mix(seed, 0, 37))
        self.spent = _Spent()
        optimizer.start_search(self.evaluator, _mix(seed, 0, 31))

    # ------------------------------------------------------------------ rounds
    def dataset_name(self) -> str:
        return self.dataset

    def planned_rounds(self) -> Optional[int]:
        if self.budget.seconds is None:
            return math.ceil(self.budget.evaluations / self.evaluator.round_size)
        return None  # a seconds budget ends when the evaluations' costs say so

    def has_next_round(self, epoch: int) -> bool:
        return not self.spent.ended and not self.budget.spent(self.spent.evaluations, self.spent.seconds)

    def resume_point(self, epoch: int, history: list[dict]) -> str:
        return f"{self.spent.evaluations} evaluations, {self.spent.seconds:.0f} s charged ({self.budget.describe()})"

    def steps_in_epoch(self, epoch: int) -> int:
        return self.evaluator.round_size

    def checkpointables(self) -> dict[str, Any]:
        return {**self.optimizer.get_checkpointables(), "evaluator": self.evaluator, "budget_spent": self.spent}

    def describe(self) -> str:
        c = self.config
        return (f"black-box search: optimizer {c.optimizer.name}, space {c.search_space.name}, dataset {self.dataset}, "
                f"scored by {self.evaluator.describe()}, budget {self.budget.describe()}, seed {c.run.seed}")

    def run_epoch(self, epoch: int, progress) -> dict:
        host, opt = self.ctx.host, self.optimizer
        evaluated = []
        for i in range(self.evaluator.round_size):
            if self.spent.ended or self.budget.spent(self.spent.evaluations, self.spent.seconds):
                break
            e: Optional[Evaluation] = opt.search_step()
            if e is None or not self.budget.admits(self.spent.seconds, e.cost):
                # the evaluation would overrun the seconds budget: the search ends, it is not counted
                self.spent.ended = True
                break
            if self.budget.seconds is not None and not e.cost > 0:
                raise NasframeError(
                    f"the {self.evaluator.kind} evaluator charges no time for {e.genotype}, so a time budget never "
                    f"ends; set optimizer.evaluations instead of optimizer.time_budget")
            self.spent.add(e)
            evaluated.append({**e.to_json(), "evaluation": self.spent.evaluations, "spent_seconds": self.spent.seconds})
            progress.update(i, valid_accuracy=e.valid_accuracy)
            host.hook.nasframe_step_end(run=self.ctx, epoch=epoch, step=i,
                                        result={"evaluation": e, "spent_seconds": self.spent.seconds})
        genotype = self.genotype()
        metrics: dict[str, Any] = {
            "epoch": epoch + 1,  # rounds count from 1, like epochs
            "evaluations": self.spent.evaluations,
            "spent_seconds": self.spent.seconds,
            "budget_fraction": self.budget.fraction(self.spent.evaluations, self.spent.seconds),
            "evaluated": evaluated,
            "genotype": str(genotype),
            "best_valid_accuracy": self.spent.best_valid,
            "test_statistics": opt.test_statistics(),
        }
        metrics.update(opt.epoch_report())
        report = self.benchmark_report(genotype)
        if report is not None:
            metrics["benchmark"] = report
        return metrics

    @staticmethod
    def _all_evaluated(history: list[dict]) -> list[dict]:
        return [e for m in history for e in m.get("evaluated", ())]

    genotype = SearchJob.genotype  # the nasframe_discretize hook, else the optimizer's answer

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
        opt, c = self.optimizer, self.config
        genotype = self.genotype()
        evaluated = self._all_evaluated(history)
        return {
            "genotype": str(genotype),
            "genotype_json": genotype.to_json() if hasattr(genotype, "to_json") else None,
            **opt.result_report(),
            "test_statistics": opt.test_statistics(),
            "benchmark": self.benchmark_report(genotype),
            "optimizer": c.optimizer.name,
            "search_space": c.search_space.name,
            "dataset": self.dataset,
            "evaluator": self.evaluator.kind,
            "budget": {"evaluations": self.budget.evaluations, "seconds": self.budget.seconds},
            "evaluations": self.spent.evaluations,
            "spent_seconds": self.spent.seconds,
            "best_valid_accuracy": self.spent.best_valid,
            "history": evaluated,
            "seed": c.run.seed,
            "seconds": round(elapsed, 3),
        }

    def summary_lines(self, result: dict) -> list[str]:
        lines = [f"found architecture: {result['genotype']}"]
        unit = "simulated seconds" if result["evaluator"] == "table" else "seconds of training"
        searched = (f"searched {result['evaluations']} architectures in {result['spent_seconds']:.0f} {unit} "
                    f"(budget {self.budget.describe()})")
        if result.get("best_valid_accuracy") is not None and result["evaluator"] == "zerocost":
            searched += f"; the best scored {result['best_valid_accuracy']:.6g} ({self.evaluator.describe()})"
        elif result.get("best_valid_accuracy") is not None:
            what = "validation accuracy from the table, as the search saw it" if result["evaluator"] == "table" else (
                f"validation accuracy after {_epochs(self.budget.train_epochs)} of training")
            searched += f"; the best scored {result['best_valid_accuracy']:.2f}% ({what})"
        lines.append(searched)
        bench = result.get("benchmark")
        if bench and bench.get("test_accuracy") is not None:
            valid = bench.get("valid_accuracy")
            extra = f", validation {valid:.2f}% (mean over seeds)" if valid is not None else ""
            lines.append(f"benchmark {bench['name']} ({bench['dataset']}): test accuracy {bench['test_accuracy']:.2f}%{extra}")
        if self.ctx.run_dir is not None:
            lines.append(f"results in {self.ctx.run_dir.path}")
        return lines

    def resolved_config(self) -> dict:
        cfg = super().resolved_config()
        cfg.pop("augment", None)
        return cfg


def _epochs(n: int) -> str:
    return f"{n} epoch{'s' if n != 1 else ''}"
