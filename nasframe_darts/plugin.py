"""Plugin: the differentiable family and its answers to the core's search-phase hooks.

The step, adaptation and discretization hooks answer for every :class:`OneShotOptimizer`,
so a third-party method built on the engine needs to register only its name.
"""
from __future__ import annotations

from nasframe_core import hookimpl


def _owns(optimizer) -> bool:
    from .engine import OneShotOptimizer

    return isinstance(optimizer, OneShotOptimizer)


@hookimpl
def nasframe_register_optimizers(register):
    from .family import METHODS

    for name, (path, description) in METHODS.items():
        # DARTS is what `nasframe run` searches with when no optimizer is named
        register(name, path, description=description, default=name == "darts")


@hookimpl
def nasframe_adapt_search_space(optimizer, search_space, dataset):
    if _owns(optimizer):
        optimizer.adapt_search_space(search_space, dataset)
        return True
    return None


@hookimpl
def nasframe_step(optimizer, data_train, data_val):
    if _owns(optimizer):
        return optimizer.step(data_train, data_val)
    return None


@hookimpl
def nasframe_discretize(optimizer):
    if _owns(optimizer):
        return optimizer.get_genotype()
    return None


@hookimpl
def nasframe_search_start(run):
    """Say, before the first epoch, what the optimizer notes about the planned run (e.g. an
    architecture that a warm-up longer than the run keeps frozen)."""
    import logging

    optimizer = run.optimizer
    if not _owns(optimizer) or run.epoch:
        return
    for line in optimizer.start_notes(run.config.run.epochs):
        logging.getLogger("nasframe").warning("warning: %s", line)
