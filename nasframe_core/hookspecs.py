"""Hook specifications: the contract between nasframe's core and its plugins.

Every hook is prefixed ``nasframe_``. A plugin is a module (or object) with functions
decorated by :data:`nasframe_core.hookimpl` whose names match the specs below; it is found
through the ``nasframe`` entry-point group. A hook implementation that matches no spec (a
typo) is reported in one line and ignored, while the plugin's other hooks load. Two plugins
registering one name make it ambiguous; ``plugin:name`` chooses (see :mod:`nasframe_core.plugins`).

The hooks come in four phases.

Discovery
    Called once when the plugin manager is built. Each receives a ``register`` callback;
    the plugin calls it once per thing it provides, passing a *factory* (usually a class)
    that is only called when a user asks for that name. Nothing heavy happens at discovery.

Search phases
    Called by the search loop for the optimizer of the run. ``firstresult``: the plugin
    that owns the optimizer answers, every other plugin returns ``None``. When no plugin
    answers, the loop calls the optimizer's own method of the same meaning, so an
    optimizer published without hook implementations still runs.

Observers
    Called for every plugin that implements them (pluggy calls the most recently registered
    first), with the
    :class:`~nasframe_core.context.RunContext` of the run: loggers, plotters, early stopping
    (``run.request_stop(reason)``) and progress displays live here. Their return values
    are ignored. What observers may read on ``run``: ``config`` (the resolved
    :class:`~nasframe_core.config.Config`), ``host`` (the :class:`~nasframe_core.plugins.PluginHost`),
    ``run_dir`` (a :class:`~nasframe_core.rundir.RunDir`, ``None`` on ranks other than 0),
    ``device`` (``torch.device``), ``epoch`` (the current epoch, or round of a black-box
    search, 0-based), ``optimizer`` (the run's
    :class:`~nasframe_core.optimizer.MetaOptimizer`; ``None`` for ``nasframe train``) and
    ``stop_reason``. ``run.job`` is the loop's own object and no part of the contract.

Reports
    Called for every plugin that implements them, like observers, but their answers are used:
    entries a plugin adds to an epoch's metrics and to ``result.json``, words for the epoch's
    console line, lines of the summary a finished search prints (and ``nasframe show`` repeats),
    figures ``nasframe plot`` draws. A plugin that has nothing to say for a run returns ``None``
    (or an empty list); the core shows what a plugin derives from the data without knowing
    what it means.

Two kinds of optimizer
    ``MetaOptimizer.using_step_function`` True (one-shot methods): the loop loads the
    dataset, calls ``nasframe_adapt_search_space`` with a
    :class:`~nasframe_core.data.DatasetInfo`, then ``nasframe_step`` for every pair of batches.
    False (black-box: ``rs``, ``re``, ``ls``): no dataset is loaded and ``nasframe_step`` is
    never called; ``nasframe_adapt_search_space`` gets the dataset's registered name (``str``)
    and the loop calls the optimizer's ``search_step`` (see :mod:`nasframe_core.blackbox`).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Optional, Union

import pluggy

if TYPE_CHECKING:  # pragma: no cover
    from pathlib import Path

    import torch

    from .config import Config
    from .data import DatasetInfo
    from .context import RunContext
    from .genotype import Genotype
    from .optimizer import MetaOptimizer
    from .rundir import RunDir
    from .space import SearchSpace

PROJECT = "nasframe"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)

Register = Callable[..., None]


# --------------------------------------------------------------------------- discovery
@hookspec
def nasframe_register_optimizers(register: Register) -> None:
    """Register search optimizers.

    Called once at start-up. Call ``register(name, factory, description="")`` for each
    optimizer; ``factory(**settings)`` must return a
    :class:`~nasframe_core.optimizer.MetaOptimizer`. The keyword arguments of the factory
    are the optimizer's settings: ``--set optimizer.<name>=value`` is checked against them.
    """


@hookspec
def nasframe_register_search_spaces(register: Register) -> None:
    """Register search spaces.

    Called once at start-up. Call ``register(name, factory, description="")``;
    ``factory(**settings)`` must return a :class:`~nasframe_core.space.SearchSpace`.
    Its keyword arguments are the settings reachable as ``--set search_space.<name>=value``.
    """


@hookspec
def nasframe_register_datasets(register: Register) -> None:
    """Register datasets.

    Called once at start-up. Call ``register(name, factory, description="")``;
    ``factory(data_dir, **settings)`` must return a
    :class:`~nasframe_core.data.DatasetSource` that loads the data when asked.
    """


@hookspec
def nasframe_register_benchmarks(register: Register) -> None:
    """Register tabular benchmarks.

    Called once at start-up. Call ``register(name, loader, description="", space=NAME,
    env=VAR)``: ``loader(path)`` returns a :class:`~nasframe_core.benchmark.Benchmark`
    answering queries for the search space ``space``; ``env`` names the environment variable
    that holds the default path.
    """


@hookspec
def nasframe_register_proxies(register: Register) -> None:
    """Register zero-cost proxies (scores of an untrained network, ``nasframe score``).

    Called once at start-up. Call ``register(name, factory, description="")``;
    ``factory()`` must return a :class:`~nasframe_core.proxy.Proxy`.
    """


@hookspec
def nasframe_published_results() -> "list[dict]":
    """Published results that ``nasframe aggregate`` shows beside a study's rows.

    Called when a study is aggregated; every plugin's lists are joined. Each row is a mapping
    with ``optimizer``, ``search_space`` and ``dataset`` (registered names), ``mean`` and ``std``
    (test accuracy, %; ``std`` may be ``None``), ``source`` (paper, table, and where it was read),
    and optionally ``protocol`` (the black-box search protocol it was measured under, as
    ``result.json``'s ``protocol.name``; ``None``: any) and ``runs`` (how many runs it averages).
    """


# ------------------------------------------------------------------------------ process
@hookspec
def nasframe_process_start(config: "Config") -> "Optional[dict]":
    """Called once per run by the ``nasframe`` command, which owns the process, after the
    configuration is resolved and before the job is built; never when a run is started from
    Python without ``owns_process``.

    The one place where a plugin may change process-wide state (an allocator setting, native
    kernels installed with :func:`nasframe_core.ops.use_native_convolutions`), and only when
    ``config`` asks for it (``run.cpu_kernels``). Returns JSON-serialisable entries for the
    ``runtime`` record of ``result.json`` (what besides torch and the thread count decides a
    seeded run's last digits), or ``None``.
    """


# ------------------------------------------------------------------------ search phases
@hookspec(firstresult=True)
def nasframe_adapt_search_space(
    optimizer: "MetaOptimizer", search_space: "SearchSpace", dataset: "Union[DatasetInfo, str]"
) -> Optional[bool]:
    """Turn ``search_space`` into the optimizer's supernet for ``dataset``.

    Called once per run (also on resume), before training. ``dataset`` is the
    :class:`~nasframe_core.data.DatasetInfo` of the loaded data (name, classes, channels,
    image size) for an optimizer with ``using_step_function``; for a black-box optimizer,
    which gets no data, the dataset's registered name. The plugin owning ``optimizer``
    builds its supernet (or simply keeps the space) and returns ``True``; all others
    return ``None``.
    """


@hookspec(firstresult=True)
def nasframe_step(
    optimizer: "MetaOptimizer",
    data_train: "tuple[torch.Tensor, torch.Tensor]",
    data_val: "tuple[torch.Tensor, torch.Tensor]",
) -> "Optional[tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]]":
    """Run one search step on a train batch and a validation batch.

    Called once per step, for optimizers with ``using_step_function`` only. Each batch is
    ``(images, labels)``: float images ``[B, C, H, W]`` normalised and augmented on the
    run's device, int64 labels ``[B]``. The owning plugin returns
    ``(logits_train, logits_val, loss_train, loss_val)``: logits ``[B, num_classes]`` and
    0-d loss tensors, on the device (the loop sums them without synchronising); all others
    return ``None``.
    """


@hookspec(firstresult=True)
def nasframe_discretize(optimizer: "MetaOptimizer") -> "Optional[Genotype]":
    """Return the discrete architecture the optimizer has found.

    Called at the end of every epoch (or round of evaluations) and of the search. The owning
    plugin returns the genotype (a :class:`~nasframe_core.genotype.Genotype`); all others
    return ``None``. Without an answer the loop calls ``optimizer.get_genotype()``.
    """


# ---------------------------------------------------------------------------- observers
@hookspec
def nasframe_search_start(run: "RunContext") -> None:
    """Called once after the supernet is built (for a black-box search: after the optimizer
    and its evaluator are set up) and before the first epoch (also on resume)."""


@hookspec
def nasframe_epoch_start(run: "RunContext", epoch: int) -> None:
    """Called at the start of every epoch, before its first step."""


@hookspec
def nasframe_step_end(run: "RunContext", epoch: int, step: int, result: dict) -> None:
    """Called after every step with its ``result``: ``loss_train``, ``loss_val`` (0-d tensors),
    ``logits_train``, ``logits_val``. Reading a value (``float(...)``) synchronises a GPU, so
    observers that run every step should do it sparingly.

    In a black-box search a step is one evaluation and ``result`` is
    ``{"evaluation": Evaluation, "spent_seconds": float}`` (an
    :class:`~nasframe_core.blackbox.Evaluation`: genotype, valid_accuracy, cost,
    test_accuracy; the seconds charged so far)."""


@hookspec
def nasframe_epoch_end(run: "RunContext", epoch: int, metrics: dict) -> None:
    """Called after every epoch with the metrics about to be written to ``metrics.jsonl``.

    Observers may add JSON-serialisable entries to ``metrics``. The ``epoch`` argument of the
    hooks counts from 0 (like ``range(epochs)`` and ``MetaOptimizer.new_epoch``); what users
    read (``metrics["epoch"]``, the console, ``log.txt``) counts from 1.
    In a black-box search an epoch is a round of evaluations and ``metrics`` holds
    ``evaluations``, ``spent_seconds``, ``budget_fraction``, ``evaluated`` (the round's
    evaluations as JSON), ``best_valid_accuracy``, ``genotype`` and ``test_statistics``.
    """


@hookspec
def nasframe_search_end(run: "RunContext", result: dict) -> None:
    """Called once with the content of ``result.json`` after the last epoch."""


# ------------------------------------------------------------------------------ reports
@hookspec
def nasframe_epoch_metrics(run: "RunContext", epoch: int, metrics: dict) -> "Optional[dict]":
    """Entries to add to an epoch's ``metrics``, derived from what the epoch measured.

    Called by a search over batches (an optimizer with ``using_step_function``) at the end of
    every epoch, once ``metrics`` holds the epoch's losses and accuracies, ``genotype`` and the
    entries of the optimizer's :meth:`~nasframe_core.optimizer.MetaOptimizer.epoch_report`, and
    before ``test_statistics`` and ``benchmark``. Returns JSON-serialisable entries, which are
    merged into ``metrics`` where the call stands (and so are written to ``metrics.jsonl`` in
    that order, and seen by :func:`nasframe_epoch_line` and :func:`nasframe_epoch_end`), or
    ``None``. For example ``{"weight_norm": 12.5}`` from an entry the optimizer reported.
    """


@hookspec
def nasframe_epoch_line(run: "RunContext", metrics: dict) -> "Optional[str]":
    """A few words for the console line of an epoch of a search over batches (also in ``log.txt``).

    Called with the epoch's ``metrics`` as written to ``metrics.jsonl`` (``seconds`` and the
    entries of :func:`nasframe_epoch_metrics` and :func:`nasframe_epoch_end` included). The
    line joins every answer with ``", "`` after its losses, accuracies, learning rate and
    benchmark figure, before the epoch's seconds and genotype: ``"weight norm 12.50"`` makes
    ``epoch 3/50: train loss ..., lr 0.02456, weight norm 12.50, 41.2s; genotype ...``.
    Returns the words, or ``None``.
    """


@hookspec
def nasframe_result_entries(run: "RunContext", genotype: "Genotype", result: dict) -> "Optional[dict]":
    """Entries to add to ``result.json`` about the architecture a search over batches found.

    Called once when the search ends, with the found ``genotype`` and the entries gathered so
    far in ``result`` (``genotype``, ``genotype_json``, the optimizer's
    :meth:`~nasframe_core.optimizer.MetaOptimizer.result_report`, ``params_millions``,
    ``test_statistics``, ``benchmark``). Returns JSON-serialisable entries, which follow these
    and come before the run's own (``optimizer``, ``search_space``, ``dataset``, ``epochs``,
    ``seed``, ``seconds``, ``runtime``, ``final``), or ``None``. ``run.optimizer`` and
    ``run.space`` are the run's; :func:`nasframe_summary_lines` can say the entries out loud.
    """


@hookspec
def nasframe_summary_lines(
    result: dict, last_epoch: "Optional[dict]", space: "Callable[[], Optional[SearchSpace]]"
) -> "Optional[list[str]]":
    """Lines about a search's outcome, for the people who read it.

    Printed after ``found architecture: ...`` when a search over batches ends (on stdout and
    in ``log.txt``), and by ``nasframe show`` for every run directory, so that both say the
    same. ``result``: the content of ``result.json`` (``{}`` in ``nasframe show`` for a run that
    stopped before its end); ``last_epoch``: the last line of ``metrics.jsonl`` in ``nasframe
    show`` (``None`` when none is written yet, and at the end of a run); ``space``: a callable
    that returns the run's :class:`~nasframe_core.space.SearchSpace`, built on the first call
    in ``nasframe show`` (which imports its plugin, and torch: call it only when the lines need
    it; it returns ``None`` where the space cannot be built, e.g. its plugin is not installed).
    Returns the lines in the order they are printed, or ``None``.
    """


@hookspec
def nasframe_plot_run(
    run_dir: "RunDir", metrics: "list[dict]", out: "Path", space: "Optional[SearchSpace]"
) -> "Optional[list[Path]]":
    """Draw figures of a run directory for ``nasframe plot RUN_DIR``.

    Called once per command with the run's ``run_dir`` (a :class:`~nasframe_core.rundir.RunDir`
    to read further files from), its ``metrics`` (the lines of ``metrics.jsonl``, at least
    one), ``out`` (the existing directory to write PNG files into) and the run's ``space`` (a
    :class:`~nasframe_core.space.SearchSpace`, or ``None`` when the run names none). Returns
    the paths written, which the command prints before the figures of the core (the
    incumbent, training curves and the found cells), or ``None`` when the run has nothing the
    plugin draws. Import the plotting library inside the implementation: listing commands
    load every plugin.
    """
