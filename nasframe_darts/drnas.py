"""DrNAS (Chen et al., ICLR 2021): op weights are Dirichlet samples, alphas their concentration."""
from __future__ import annotations

import torch
from torch.distributions import Dirichlet, kl_divergence

from nasframe_core.domains import COUNT, NON_NEGATIVE, POSITIVE, one_of
from nasframe_core.errors import NasframeError

from .engine import OneShotOptimizer
from .partial import partial_cell_factory
from .samplers import dirichlet_concentration, dirichlet_rsample


class DrNASOptimizer(OneShotOptimizer):
    """Each forward draws the op weights of every edge from ``Dirichlet(elu(alpha) + 1)``
    by a pathwise (reparameterised) sample. The architecture loss adds ``reg_scale`` times
    the KL divergence to ``Dirichlet(prior_concentration)`` (``reg_type=kl``, the paper's) or
    the squared distance of the concentration to it (``reg_type=l2``). Discretization reads
    the Dirichlet mean. ``partial_channels=k`` (> 1) runs the edges on 1/k of the channels
    (the partial-channel path of PC-DARTS; the paper's progressive schedule is not included).
    """

    defaults = {"arch_learning_rate": 0.0006, "reg_type": "kl", "reg_scale": 0.001, "prior_concentration": 1.0,
                "partial_channels": 1}
    settings_domain = {"reg_type": one_of("kl", "l2"), "reg_scale": NON_NEGATIVE,
                       "prior_concentration": POSITIVE, "partial_channels": COUNT}
    settings_help = {"reg_type": "regularizer: kl (KL to the Dirichlet prior) or l2",
                     "reg_scale": "weight of the regularizer",
                     "prior_concentration": "concentration of the Dirichlet prior",
                     "partial_channels": "k > 1 runs the edges on 1/k of the channels"}
    stochastic = True

    def __init__(self, **settings):
        super().__init__(**settings)
        if self.reg_type not in ("kl", "l2"):
            raise NasframeError(f"reg_type must be kl or l2, got {self.reg_type!r}")
        self.strict_weight_inheritance = self.partial_channels <= 1

    def build_cell_factory(self):
        if self.partial_channels > 1:
            return partial_cell_factory(self.search_space, self.partial_channels)
        return super().build_cell_factory()

    def sample_op_weights(self, name, alpha):
        return dirichlet_rsample(dirichlet_concentration(alpha), self.rng.generator)

    def expected_op_weights(self, name, alpha):
        c = dirichlet_concentration(alpha)
        return c / c.sum(dim=-1, keepdim=True)

    def regularizer(self):
        terms = []
        for alpha in self._require_graph().alphas.values():
            c = dirichlet_concentration(alpha)
            prior = torch.full_like(c, self.prior_concentration)
            if self.reg_type == "kl":
                terms.append(kl_divergence(Dirichlet(c), Dirichlet(prior)).sum())
            else:
                terms.append(((c - prior) ** 2).sum())
        return self.reg_scale * sum(terms) if terms else None
