"""GDAS (Dong & Yang, CVPR 2019): hard Gumbel-softmax, only the sampled op of each edge runs."""
from __future__ import annotations

from . import recipes
from .engine import OneShotOptimizer
from .parts import HardGumbel, SampledEdges


class GDASOptimizer(OneShotOptimizer):
    """Every forward draws one op per edge (:class:`~nasframe_darts.parts.HardGumbel`):
    ``argmax(log_softmax(alpha) + g)`` with Gumbel noise ``g``; its output is multiplied by the
    straight-through weight (1 in value, the gradient of ``softmax((log_softmax(alpha) + g) /
    tau)``), and only that op runs (:class:`~nasframe_darts.parts.SampledEdges`). ``tau``
    anneals linearly from ``tau_max`` (first epoch) to ``tau_min`` (last epoch).
    ``unsampled_weights`` (default on, xautodl's NB201 cell ``forward_gdas``): every edge also adds
    the straight-through weights of its unsampled ops (zero in value, not in gradient), so every
    alpha of an edge gets a gradient; off, only the sampled op's weight carries one (xautodl's
    NASNet cell, the DARTS space's recipe). Discretization: argmax of the alphas per edge.
    First order only, as in the paper and xautodl.
    """

    #: the search recipes of the paper and its official code, per space (:mod:`nasframe_darts.recipes`)
    search_recipes = recipes.GDAS
    method_label = "GDAS"
    sampler = HardGumbel()
    edges = SampledEdges()
