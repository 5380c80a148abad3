"""β-DARTS (Ye et al., CVPR 2022): Beta-Decay regularization of the architecture parameters."""
from __future__ import annotations

from . import recipes
from .engine import OneShotOptimizer
from .parts import BetaDecay


class BetaDARTSOptimizer(OneShotOptimizer):
    """DARTS with the Beta-Decay regularizer (:class:`~nasframe_darts.parts.BetaDecay`):
    ``lambda * mean_edges(logsumexp(alpha_edge))``, the smooth maximum of each edge's alphas,
    which keeps them small and their softmax from saturating. ``lambda`` rises linearly from
    ``beta_weight_start`` to ``beta_weight_end`` over ``beta_weight_epochs``: the paper's code
    ramps 0 -> 50 over 100 epochs, so its 50-epoch searches end at 25.
    """

    #: the search recipes of the paper and its official code, per space (:mod:`nasframe_darts.recipes`)
    search_recipes = recipes.BETA_DARTS
    method_label = "beta-DARTS"
    regularizers = (BetaDecay(),)
