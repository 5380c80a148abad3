"""PC-DARTS (Xu et al., ICLR 2020): partial channel connections and edge normalisation."""
from __future__ import annotations

from . import recipes
from .engine import OneShotOptimizer
from .parts import ArchWarmup, EdgeNormalisation, PartialEdges


class PCDARTSOptimizer(OneShotOptimizer):
    """Every edge runs its mixed op on 1/``k`` of the channels
    (:class:`~nasframe_darts.parts.PartialEdges`, :mod:`nasframe_darts.partial`); every node
    weights its incoming edges by a softmax over their betas
    (:class:`~nasframe_darts.parts.EdgeNormalisation`), folded into the op weights: row ``j`` is
    ``beta_j * softmax(alpha_j)``. Discretization reads the same product, as the paper does. The
    architecture is not updated in the first ``warmup_epochs`` epochs
    (:class:`~nasframe_darts.parts.ArchWarmup`). Paper defaults: k=4, weight lr 0.1,
    architecture lr 6e-4, 15 warm-up epochs.
    """

    #: the search recipes of the paper and its official code, per space (:mod:`nasframe_darts.recipes`)
    search_recipes = recipes.PC_DARTS
    method_label = "PC-DARTS"
    defaults = {"learning_rate": 0.1, "arch_learning_rate": 0.0006}
    edges = PartialEdges("k", 4)
    weight_factors = (EdgeNormalisation(),)
    schedules = (ArchWarmup(),)

    def edge_weights(self, name: str):
        """The betas of cell type ``name`` softmaxed over the incoming edges of every node."""
        return self.weight_factors[0].edge_weights(self, name)
