"""GDAS (Dong & Yang, CVPR 2019): hard Gumbel-softmax, only the sampled op of each edge runs."""
from __future__ import annotations

from nasframe_core.domains import POSITIVE
from nasframe_core.errors import NasframeError

from . import recipes
from .engine import OneShotOptimizer
from .sampled import sampled_cell_factory
from .samplers import hard_gumbel_softmax


class GDASOptimizer(OneShotOptimizer):
    """Every forward draws one op per edge: ``argmax(log_softmax(alpha) + g)`` with Gumbel
    noise ``g``; its output is multiplied by the straight-through weight (1 in value, the
    gradient of ``softmax((log_softmax(alpha) + g) / tau)``). Only that op runs.
    ``tau`` anneals linearly from ``tau_max`` (first epoch) to ``tau_min`` (last epoch).
    ``unsampled_weights`` (default on, xautodl's NB201 cell ``forward_gdas``): every edge also adds
    the straight-through weights of its unsampled ops (zero in value, not in gradient), so every
    alpha of an edge gets a gradient; off, only the sampled op's weight carries one (xautodl's
    NASNet cell, the DARTS space's recipe).
    Discretization: argmax of the alphas per edge (the spec's rule on their softmax).
    First order only, as in the paper and xautodl: the unrolled step's finite differences
    need one fixed architecture, and every forward here samples another.
    """

    #: the search recipes of the paper and its official code, per space (:mod:`nasframe_darts.recipes`)
    search_recipes = recipes.GDAS

    defaults = {"tau_max": 10.0, "tau_min": 0.1, "unsampled_weights": True}
    settings_domain = {"tau_max": POSITIVE, "tau_min": POSITIVE}
    settings_help = {"tau_max": "Gumbel-softmax temperature at the first epoch",
                     "tau_min": "temperature at the last epoch (annealed linearly)",
                     "unsampled_weights": "add the unsampled ops' straight-through weights, as xautodl's cell does"}
    stochastic = True

    def __init__(self, **settings):
        super().__init__(**settings)
        if self.unrolled:
            raise NasframeError("GDAS is first order (each forward samples a new architecture); "
                                "set optimizer.unrolled=false")
        self.tau = self.tau_max

    def update_schedules(self, epoch: int) -> None:
        self.tau = self.tau_max - (self.tau_max - self.tau_min) * self.progress(epoch)

    def build_cell_factory(self):
        return sampled_cell_factory(self.fused, unsampled_weights=self.unsampled_weights)

    def sample_op_weights(self, name, alpha):
        return hard_gumbel_softmax(alpha, self.tau, self.rng.generator)
