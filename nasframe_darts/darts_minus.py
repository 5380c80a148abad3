"""DARTS- (Chu et al., ICLR 2021): an auxiliary skip connection whose weight decays to 0."""
from __future__ import annotations

import math

from nasframe_core.domains import NON_NEGATIVE, one_of
from nasframe_core.errors import NasframeError

from . import recipes
from .engine import OneShotOptimizer


class DARTSMinusOptimizer(OneShotOptimizer):
    """Every edge adds ``beta * skip(x)`` to its mixed output, with ``beta`` decaying from
    ``aux_skip_start`` (first epoch) to 0 (last epoch), ``linear`` (the paper's) or
    ``cosine``. The skip is the edge's own ``aux_skip_op`` candidate (identity; on a
    reduction edge the space's strided skip op), so the auxiliary term is ``beta`` added to
    that op's weight and the fused path is kept. Discretization reads the alphas' softmax
    alone.
    """

    #: the search recipes of the paper and its official code, per space (:mod:`nasframe_darts.recipes`)
    search_recipes = recipes.DARTS_MINUS

    defaults = {"aux_skip_start": 1.0, "aux_skip_decay": "linear", "aux_skip_op": "skip_connect"}
    settings_domain = {"aux_skip_start": NON_NEGATIVE, "aux_skip_decay": one_of("linear", "cosine")}
    settings_help = {"aux_skip_start": "weight of the auxiliary skip at the first epoch (decays to 0)",
                     "aux_skip_decay": "decay of that weight: linear or cosine",
                     "aux_skip_op": "the candidate op that serves as the auxiliary skip"}

    def __init__(self, **settings):
        super().__init__(**settings)
        if self.aux_skip_decay not in ("linear", "cosine"):
            raise NasframeError(f"aux_skip_decay must be linear or cosine, got {self.aux_skip_decay!r}")
        self.update_schedules(0)

    def aux_skip_op_needed(self) -> bool:
        return True

    def update_schedules(self, epoch: int) -> None:
        p = self.progress(epoch)
        factor = 1.0 - p if self.aux_skip_decay == "linear" else 0.5 * (1.0 + math.cos(math.pi * p))
        self.aux_skip_weight = self.aux_skip_start * factor
