"""The loop shared by ``nasframe run`` (search) and ``nasframe train`` (from scratch).

:func:`execute` builds the job, then per epoch: reseeds every generator from
``(seed, epoch)``, sets the learning rate of the cosine schedule, runs the steps, checks the
losses are finite, calls the observers, writes ``checkpoint.pt`` atomically and appends a
line to ``metrics.jsonl``. Because an epoch depends only on the checkpoint before it and
``(seed, epoch)``, a resumed run ends exactly where an uninterrupted one does.
"""
from __future__ import annotations

import logging
import sys
import time
from pathlib import Path
from typing import Optional

import torch

from . import distributed, notices
from .blackbox_job import ProposalJob
from .checkpoint import FORMAT, VERSION, load_checkpoint, restore, save_atomic, state_of
from .config import Config, dump_config
from .context import RunContext, resolve_device, seed_everything
from .data import _mix
from .errors import NasframeError
from .plugins import PluginHost
from .rundir import CHECKPOINT, RunDir, resume_flag
from .search import SearchJob
from .train import TrainJob

log = logging.getLogger("nasframe")


class Progress:
    """A tqdm bar on a terminal; plain log lines otherwise."""

    def __init__(self, total: int, epoch: int, epochs: int, enabled: bool):
        self.total, self.epoch, self.epochs = total, epoch, epochs
        self.bar = None
        self.enabled = enabled
        self._next_line = 0
        if enabled and sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc=f"epoch {epoch + 1}/{epochs}", leave=False, dynamic_ncols=True)

    def update(self, step: int, **values: float) -> None:
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix({k: f"{v:.3f}" for k, v in values.items()}, refresh=False)
        elif step + 1 >= self._next_line or step + 1 == self.total:
            shown = " ".join(f"{k} {v:.4f}" for k, v in values.items())
            log.info("epoch %d/%d step %d/%d %s", self.epoch + 1, self.epochs, step + 1, self.total, shown)
            self._next_line = step + 1 + max(1, self.total // 4)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _setup_logging(run_dir: Optional[RunDir], quiet: bool) -> list[logging.Handler]:
    """Handlers for the run (console, log.txt); the caller removes them when the run ends."""
    root = logging.getLogger("nasframe")
    root.setLevel(logging.INFO)
    handlers: list[logging.Handler] = []
    if not quiet:
        console = logging.StreamHandler(sys.stderr)
        console.setFormatter(logging.Formatter("%(message)s"))
        # the console shows the loop's own lines; plugins' details (op weights...) go to log.txt
        console.addFilter(lambda record: record.name == "nasframe")
        handlers.append(console)
    if run_dir is not None:
        handlers.append(run_dir.log_handler())
    for h in handlers:
        root.addHandler(h)
    return handlers


def execute(
    config: Config,
    host: PluginHost,
    *,
    out: Optional[Path] = None,
    resume: Optional[Path] = None,
    quiet: bool = False,
    owns_process: bool = False,
    summary: bool = True,
    durable: bool = True,
) -> dict:
    """Run ``config`` (a search, or training when ``config.command == 'train'``); return result.json.

    ``owns_process``: the caller owns the process (the ``nasframe`` command), so plugins may set
    process-wide state for the run (:func:`~nasframe_core.hookspecs.nasframe_process_start`).
    ``summary``: print the outcome's lines on stdout (they always go to log.txt). ``durable``:
    fsync every file the run writes (a study's runs skip it: a machine failure costs a rerun)."""
    device = resolve_device(config.run.device)
    runtime: dict = {}
    if owns_process:
        for entries in host.hook.nasframe_process_start(config=config):
            notices.merge(runtime, entries)
    owns_group = distributed.init_from_env(device)
    try:
        return _execute_in_group(config, host, device, out, resume, quiet, runtime, summary, durable)
    finally:
        if owns_group:
            distributed.shutdown()


def _execute_in_group(config, host, device, out, resume, quiet, runtime, summary=True, durable=True) -> dict:
    main = distributed.is_main()
    checkpoint = None
    run_dir: Optional[RunDir] = None
    if resume is not None:
        run_dir = RunDir.open_existing(resume)
        found = run_dir.checkpoint_to_resume(runtime.setdefault(notices.KEY, []) if main else None)
        if found is not None:
            checkpoint = load_checkpoint(found)
    elif main and out is not None:
        RunDir.check_new(out)  # before the data is loaded: a taken --out fails at once
    ctx = RunContext(config, host, None, device)
    ctx.runtime = {"torch": torch.__version__, "threads": torch.get_num_threads(), **runtime}
    seed_everything(config.run.seed)
    try:
        # every setting is checked while the job is built: a command that fails here leaves
        # no new run directory behind (a resumed one gets the error in its log)
        job = _build_job(ctx)
        if checkpoint is not None and checkpoint.get("kind") != job.kind:
            raise NasframeError(f"checkpoint in {run_dir.path} is of a {checkpoint.get('kind')} run, not {job.kind}")
    except NasframeError as exc:
        if run_dir is not None and main:
            run_dir.log_error(str(exc))
        raise
    if resume is None and main:
        from .rundir import default_run_dir

        run_dir = RunDir.create(out if out is not None else default_run_dir(config.command))
    if not main:
        run_dir = None
    distributed.share_run_dir(run_dir.path if run_dir is not None else None)

    if run_dir is not None:
        run_dir.durable = durable
    ctx.run_dir = run_dir
    ctx.durable, ctx.summary = durable, summary
    logger = logging.getLogger("nasframe")
    propagate = logger.propagate
    logger.propagate = False  # the run's handlers print; the caller's own logging stays as it was
    handlers = _setup_logging(run_dir, quiet or not main)
    try:
        if job.notices and main:  # what the job found while it was built, said with the run's other notices
            ctx.runtime.setdefault(notices.KEY, []).extend(job.notices)
        notices.say(ctx.runtime, log)
        return _execute(ctx, job, checkpoint, main)
    except NasframeError as exc:
        _log_only.error("error: %s", exc)  # the command prints it; the log keeps it too
        raise
    except KeyboardInterrupt as exc:
        where = run_dir.path if run_dir is not None else None
        _log_only.error("interrupted; continue with %s", resume_flag(where))
        exc.run_dir = where  # type: ignore[attr-defined]  # for the command's message
        raise
    finally:
        for h in handlers:
            logger.removeHandler(h)
            h.close()
        logger.propagate = propagate


#: lines for log.txt only (the console shows records of the "nasframe" logger itself)
_log_only = logging.getLogger("nasframe.log")


def _build_job(ctx: RunContext):
    """The job for ``ctx``: training, or the driver the optimizer's contract asks for. A
    :class:`~nasframe_core.optimizer.MetaOptimizer` takes steps over batches (:class:`SearchJob`);
    a :class:`~nasframe_core.blackbox.BlackBoxOptimizer` proposes genotypes that evaluators
    score (:class:`ProposalJob`). Plugins' products are checked against these two bases."""
    if ctx.config.command == "train":
        return TrainJob(ctx)
    from .blackbox import BlackBoxOptimizer

    cfg = ctx.config
    cfg.check_plugins(ctx.host)
    optimizer = ctx.host.create("optimizer", cfg.optimizer.name, **cfg.optimizer.settings)
    if isinstance(optimizer, BlackBoxOptimizer):
        return ProposalJob(ctx, optimizer)
    return SearchJob(ctx, optimizer)


def _execute(ctx: RunContext, job, checkpoint: Optional[dict], main: bool) -> dict:
    config, host, run_dir = ctx.config, ctx.host, ctx.run_dir
    ctx.job = job
    start_epoch, history, elapsed = 0, [], 0.0
    if checkpoint is not None:
        restore(job.checkpointables(), checkpoint["state"], Path(run_dir.path if run_dir else ".") / CHECKPOINT)
        start_epoch = int(checkpoint["epoch"])
        history = list(checkpoint.get("history", []))
        elapsed = float(checkpoint.get("elapsed", 0.0))
        finished = run_dir.read_result() if run_dir is not None else None
        if finished is not None and not job.has_next_round(start_epoch):
            # nothing left to run: the run's files stay exactly as they were
            log.info("%s is finished (%s); nothing to resume, its results are as they were",
                     run_dir.path, job.resume_point(start_epoch, history))
            if main and ctx.summary:
                print(f"results in {run_dir.path}", flush=True)
            return finished
        if run_dir is not None:
            run_dir.rewrite_metrics(history)
            run_dir.write_config(dump_config(job.resolved_config()))  # --epochs etc. given on resume
        log.info("resumed %s after %s", run_dir.path if run_dir else "", job.resume_point(start_epoch, history))
        if config.recipe:
            log.info("recipe: %s (%s)", config.recipe.get("name"), config.recipe.get("source"))
    elif run_dir is not None:
        run_dir.write_config(dump_config(job.resolved_config()))
        if config.recipe:
            log.info("recipe: %s (%s)", config.recipe.get("name"), config.recipe.get("source"))
        log.info("%s", job.describe())
        log.info("run directory: %s", run_dir.path)

    host.hook.nasframe_search_start(run=ctx)
    epochs = job.planned_rounds()
    epoch = start_epoch - 1
    while job.has_next_round(epoch + 1):
        epoch += 1
        ctx.epoch = epoch
        t0 = time.perf_counter()
        seed_everything(_mix(config.run.seed, epoch, 99) % 2**62)
        host.hook.nasframe_epoch_start(run=ctx, epoch=epoch)
        progress = Progress(job.steps_in_epoch(epoch), epoch, epochs, enabled=main and not ctx.job.quiet_steps)
        try:
            metrics = job.run_epoch(epoch, progress)
        finally:
            progress.close()
        seconds = time.perf_counter() - t0
        elapsed += seconds
        metrics["seconds"] = round(seconds, 3)
        host.hook.nasframe_epoch_end(run=ctx, epoch=epoch, metrics=metrics)
        history.append(metrics)
        if run_dir is not None:
            save_atomic(
                {
                    "format": FORMAT,
                    "version": VERSION,
                    "kind": job.kind,
                    "epoch": epoch + 1,
                    "state": state_of(job.checkpointables()),
                    "history": history,
                    "elapsed": elapsed,
                    "config": ctx.config.to_dict(),
                },
                run_dir.file(CHECKPOINT),
                fsync=ctx.durable,
            )
            run_dir.append_metrics(metrics)
        log.info("%s", job.epoch_line(metrics, epochs))
        distributed.barrier()
        if ctx.stop_reason:
            log.info("stopping after epoch %d: %s", epoch + 1, ctx.stop_reason)
            break

    result = job.final_result(history, elapsed)
    # what the run ran with: its recipe (name, source) and every effective setting
    result["recipe"] = dict(config.recipe) if config.recipe else None
    result["settings"] = job.resolved_config()
    if ctx.stop_reason:
        result["stopped_early"] = ctx.stop_reason
    host.hook.nasframe_search_end(run=ctx, result=result)
    if run_dir is not None:
        run_dir.write_result(result)
    if main:
        # the outcome is the command's output: stdout (also with --quiet), and the log file
        summary = logging.getLogger("nasframe.summary")
        for line in job.summary_lines(result):
            summary.info("%s", line)
            if ctx.summary:
                print(line, flush=True)
    return result
