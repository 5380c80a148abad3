"""FairDARTS (Chu et al., ECCV 2020): independent sigmoid weights and the zero-one loss."""
from __future__ import annotations

import torch

from nasframe_core.domains import NON_NEGATIVE

from .engine import OneShotOptimizer


class FairDARTSOptimizer(OneShotOptimizer):
    """Op weights are ``sigmoid(alpha)`` (no competition between ops); the architecture loss
    adds ``zero_one_weight * L01`` with ``L01 = -mean((sigmoid(alpha) - 0.5)^2)`` over every
    alpha, pushing the weights to 0 or 1. Discretization applies the spec's rule to the
    sigmoid weights. The fused path is kept (only the weights differ).
    """

    defaults = {"zero_one_weight": 10.0}
    settings_domain = {"zero_one_weight": NON_NEGATIVE}
    settings_help = {"zero_one_weight": "weight of the zero-one loss pushing sigmoid weights to 0 or 1"}

    def sample_op_weights(self, name, alpha):
        return torch.sigmoid(alpha)

    expected_op_weights = sample_op_weights

    def regularizer(self):
        alphas = list(self._require_graph().alphas.values())
        if not alphas or not self.zero_one_weight:
            return None
        s = torch.cat([torch.sigmoid(a).reshape(-1) for a in alphas])
        return -self.zero_one_weight * ((s - 0.5) ** 2).mean()
