"""Hook specifications: the contract between nasframe's core and its plugins.

Every hook is prefixed ``nasframe_``. A plugin is a module (or object) with functions
decorated by :data:`nasframe_core.hookimpl` whose names match the specs below; it is found
through the ``nasframe`` entry-point group. A hook implementation that matches no spec (a
typo) is reported in one line and ignored, while the plugin's other hooks load. Two plugins
registering one name make it ambiguous; ``plugin:name`` chooses (see :mod:`nasframe_core.plugins`).

The hooks come in three phases.

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
    :class:`~nasframe_core.engine.RunContext` of the run: loggers, plotters, early stopping
    (``run.request_stop(reason)``) and progress displays live here. Their return values
    are ignored.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Optional

import pluggy

if TYPE_CHECKING:  # pragma: no cover
    from .engine import RunContext
    from .optimizer import MetaOptimizer
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


# ------------------------------------------------------------------------ search phases
@hookspec(firstresult=True)
def nasframe_adapt_search_space(
    optimizer: "MetaOptimizer", search_space: "SearchSpace", dataset: Any
) -> Optional[bool]:
    """Turn ``search_space`` into the optimizer's supernet for ``dataset``.

    Called once per run, before training. The plugin owning ``optimizer`` builds its
    supernet and returns ``True``; all others return ``None``.
    """


@hookspec(firstresult=True)
def nasframe_step(optimizer: "MetaOptimizer", data_train: tuple, data_val: tuple) -> Optional[tuple]:
    """Run one search step on a train batch and a validation batch.

    Called once per step. The owning plugin returns
    ``(logits_train, logits_val, loss_train, loss_val)``; all others return ``None``.
    """


@hookspec(firstresult=True)
def nasframe_discretize(optimizer: "MetaOptimizer") -> Optional[Any]:
    """Return the discrete architecture the optimizer has found.

    Called at the end of every epoch and of the search. The owning plugin returns the
    genotype (a :class:`~nasframe_core.genotype.Genotype`); all others return ``None``.
    """


# ---------------------------------------------------------------------------- observers
@hookspec
def nasframe_search_start(run: "RunContext") -> None:
    """Called once after the supernet is built and before the first epoch (also on resume)."""


@hookspec
def nasframe_epoch_start(run: "RunContext", epoch: int) -> None:
    """Called at the start of every epoch, before its first step."""


@hookspec
def nasframe_step_end(run: "RunContext", epoch: int, step: int, result: dict) -> None:
    """Called after every step with its ``result``: ``loss_train``, ``loss_val`` (0-d tensors),
    ``logits_train``, ``logits_val``. Reading a value (``float(...)``) synchronises a GPU, so
    observers that run every step should do it sparingly."""


@hookspec
def nasframe_epoch_end(run: "RunContext", epoch: int, metrics: dict) -> None:
    """Called after every epoch with the metrics about to be written to ``metrics.jsonl``.

    Observers may add JSON-serialisable entries to ``metrics``. The ``epoch`` argument of the
    hooks counts from 0 (like ``range(epochs)`` and ``MetaOptimizer.new_epoch``); what users
    read (``metrics["epoch"]``, the console, ``log.txt``) counts from 1.
    """


@hookspec
def nasframe_search_end(run: "RunContext", result: dict) -> None:
    """Called once with the content of ``result.json`` after the last epoch."""
