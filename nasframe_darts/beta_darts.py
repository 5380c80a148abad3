"""β-DARTS (Ye et al., CVPR 2022): Beta-Decay regularization of the architecture parameters."""
from __future__ import annotations

import torch

from nasframe_core.domains import COUNT, NON_NEGATIVE

from . import recipes
from .engine import OneShotOptimizer


class BetaDARTSOptimizer(OneShotOptimizer):
    """The architecture loss adds ``lambda * mean_edges(logsumexp(alpha_edge))`` (the smooth
    maximum of each edge's alphas, averaged over the edges of every cell type), which keeps
    the alphas small and their softmax from saturating. ``lambda`` rises linearly,
    ``beta_weight_start + (beta_weight_end - beta_weight_start) * epoch / beta_weight_epochs``
    (capped at the end value): the paper's code ramps 0 -> 50 over 100 epochs, so its
    50-epoch searches end at 25.
    """

    #: the search recipes of the paper and its official code, per space (:mod:`nasframe_darts.recipes`)
    search_recipes = recipes.BETA_DARTS

    defaults = {"beta_weight_start": 0.0, "beta_weight_end": 50.0, "beta_weight_epochs": 100}
    settings_domain = {"beta_weight_start": NON_NEGATIVE, "beta_weight_end": NON_NEGATIVE,
                       "beta_weight_epochs": COUNT}
    settings_help = {"beta_weight_start": "weight of the beta regularizer at epoch 0",
                     "beta_weight_end": "weight it rises to (linearly)",
                     "beta_weight_epochs": "epochs over which it rises"}

    def __init__(self, **settings):
        super().__init__(**settings)
        self.update_schedules(0)

    def update_schedules(self, epoch: int) -> None:
        frac = min(1.0, epoch / self.beta_weight_epochs) if self.beta_weight_epochs > 0 else 1.0
        self.beta_weight = self.beta_weight_start + (self.beta_weight_end - self.beta_weight_start) * frac

    def regularizer(self):
        alphas = list(self._require_graph().alphas.values())
        if not alphas or not self.beta_weight:
            return None
        smooth_max = torch.cat([torch.logsumexp(a, dim=-1).reshape(-1) for a in alphas])
        return self.beta_weight * smooth_max.mean()
