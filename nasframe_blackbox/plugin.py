"""Plugin: the black-box optimizers ``rs``, ``re`` and ``ls``."""
from __future__ import annotations

from nasframe_core import hookimpl


@hookimpl
def nasframe_register_optimizers(register):
    from .optimizers import LocalSearch, RandomSearch, RegularizedEvolution

    register("rs", RandomSearch, description="random search: uniformly random cells, the best validation accuracy wins")
    register("re", RegularizedEvolution,
             description="regularized evolution (Real et al. 2019): tournament, one-op mutation, the oldest dies")
    register("ls", LocalSearch, description="local search (White et al. 2021): move to the best one-op neighbour")
