"""Plugin: the DARTS optimizer and its answers to the core's search-phase hooks."""
from __future__ import annotations

from nasframe_core import hookimpl


def _owns(optimizer) -> bool:
    from .optimizer import DARTSOptimizer

    return isinstance(optimizer, DARTSOptimizer)


def _factory():
    from .optimizer import DARTSOptimizer

    return DARTSOptimizer


@hookimpl
def nasframe_register_optimizers(register):
    register("darts", _factory(), description="DARTS (Liu et al. 2019): first or second order (optimizer.unrolled)")


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
