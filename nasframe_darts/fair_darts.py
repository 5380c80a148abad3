"""FairDARTS (Chu et al., ECCV 2020): independent sigmoid weights and the zero-one loss."""
from __future__ import annotations

import torch

from nasframe_core.domains import NON_NEGATIVE, PROBABILITY
from nasframe_core.space import Choice

from . import recipes
from .discretize import discretize_cell
from .engine import OneShotOptimizer


class FairDARTSOptimizer(OneShotOptimizer):
    """Op weights are ``sigmoid(alpha)`` (no competition between ops); the architecture loss
    adds ``zero_one_weight * L01`` with ``L01 = -mean((sigmoid(alpha) - 0.5)^2)`` over every
    alpha, pushing the weights to 0 or 1. The fused path is kept (only the weights differ).

    As the official code (xiaomi-automl/FairDARTS ``fairdarts/``): the op set has no ``none``
    (``genotypes.py``): with ``none_op`` off (the default) the space's zero ops weigh 0 in every
    forward and report, and their alphas stay out of ``L01``; discretization is its
    ``threshold_sparse`` parse (``utils.py``): per node the spec's edges are kept as DARTS keeps
    them (their strongest op's weight ranks them), and a kept edge whose strongest weight is
    under ``threshold`` (0.85) is dropped; a dropped edge becomes the space's zero op
    (``none``: in NB201 the absent edge). ``threshold=0`` keeps every edge (the DARTS parse).
    Paper defaults: weight lr 0.005, architecture Adam 3e-3 with betas (0.9, 0.999).
    """

    #: the search recipes of the paper and its official code, per space (:mod:`nasframe_darts.recipes`)
    search_recipes = recipes.FAIR_DARTS

    defaults = {"learning_rate": 0.005, "arch_learning_rate": 0.003, "arch_betas": [0.9, 0.999],
                "zero_one_weight": 10.0, "threshold": 0.85, "none_op": False}
    settings_domain = {"zero_one_weight": NON_NEGATIVE, "threshold": PROBABILITY}
    settings_help = {"zero_one_weight": "weight of the zero-one loss pushing sigmoid weights to 0 or 1",
                     "threshold": "an op is kept at discretization where its sigmoid weight is above this",
                     "none_op": "keep the none op among the candidates (the official FairDARTS has none)"}

    def _zero_columns(self, name: str) -> list[int]:
        if self.none_op:
            return []
        spec = self._require_graph().specs[name]
        zero = getattr(self.search_space, "zero_ops", ("none",))
        return [k for k, op in enumerate(spec.ops) if op in zero]

    def _kept(self, name: str, alpha: torch.Tensor) -> torch.Tensor:
        keep = torch.ones(alpha.shape[-1], dtype=alpha.dtype, device=alpha.device)
        keep[self._zero_columns(name)] = 0
        return keep

    def sample_op_weights(self, name, alpha):
        return torch.sigmoid(alpha) * self._kept(name, alpha)

    expected_op_weights = sample_op_weights

    def regularizer(self):
        graph = self._require_graph()
        if not graph.alphas or not self.zero_one_weight:
            return None
        parts = []
        for name, a in graph.alphas.items():
            keep = [k for k in range(a.shape[-1]) if k not in self._zero_columns(name)]
            parts.append(torch.sigmoid(a[:, keep]).reshape(-1))
        s = torch.cat(parts)
        return -self.zero_one_weight * ((s - 0.5) ** 2).mean()

    def get_genotype(self):
        graph = self._require_graph()
        weights = self.discretization_weights()
        zero = getattr(self.search_space, "zero_ops", ("none",))
        choices = {}
        for name, spec in graph.specs.items():
            w = weights[name]
            absent = next((op for op in spec.ops if op in zero), None)
            kept = []
            for c in discretize_cell(spec, w):
                strongest = float(w[spec.edge_index[(c.src, c.dst)], spec.ops.index(c.op)])
                if self.threshold and absent is not None and strongest < self.threshold:
                    c = Choice(c.src, c.dst, absent)  # dropped: the edge carries nothing
                kept.append(c)
            choices[name] = kept
        return self.search_space.make_genotype(choices)
