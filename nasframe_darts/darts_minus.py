"""DARTS- (Chu et al., ICLR 2021): an auxiliary skip connection whose weight decays to 0."""
from __future__ import annotations

from . import recipes
from .engine import OneShotOptimizer
from .parts import AuxiliarySkip


class DARTSMinusOptimizer(OneShotOptimizer):
    """DARTS with an auxiliary skip (:class:`~nasframe_darts.parts.AuxiliarySkip`): every edge
    adds ``beta * skip(x)`` to its mixed output, ``beta`` decaying from ``aux_skip_start`` (first
    epoch) to 0 (last epoch), ``linear`` (the paper's) or ``cosine``. The skip is the edge's own
    ``aux_skip_op`` candidate (identity; on a reduction edge the space's strided skip op), so
    the auxiliary term is ``beta`` added to that op's weight and the fused path is kept.
    Discretization reads the alphas' softmax alone.
    """

    #: the search recipes of the paper and its official code, per space (:mod:`nasframe_darts.recipes`)
    search_recipes = recipes.DARTS_MINUS
    method_label = "DARTS-"
    schedules = (AuxiliarySkip(),)
