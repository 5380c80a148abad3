"""DrNAS (Chen et al., ICLR 2021): op weights are Dirichlet samples, alphas their concentration."""
from __future__ import annotations

import torch
from torch.distributions import Dirichlet, kl_divergence

from nasframe_core.errors import NasframeError

from . import recipes
from .engine import OneShotOptimizer
from .partial import partial_cell_factory
from .samplers import dirichlet_concentration, dirichlet_rsample


class DrNASOptimizer(OneShotOptimizer):
    """Each forward draws the op weights of every edge from ``Dirichlet(elu(alpha) + 1)``
    by a pathwise (reparameterised) sample. The regularizer, as the official code
    (xiangning-chen/DrNAS ``architect.py``, ``201-space/search_model.py``):

    - ``reg_type=l2`` (the code's default): the architecture optimizer's weight decay is
      ``reg_scale``, an L2 penalty on the alphas; no loss term;
    - ``reg_type=kl``: the architecture loss adds ``reg_scale * sum KL(Dir(elu(alpha) + 1) ||
      Dir(prior_concentration))`` and the architecture weight decay is 0.

    ``arch_weight_decay`` ``auto`` follows that rule; a number overrides it. The default
    architecture learning rate is the NB201 code's 3e-4 (its DARTS-space code uses 6e-4: that
    space's recipe). Discretization reads the Dirichlet mean. ``partial_channels=k`` (> 1) runs
    the edges on 1/k of the channels (the partial-channel path of PC-DARTS; the paper's
    progressive schedule, which widens k and prunes ops mid-search, is not included).
    """

    #: the search recipes of the paper and its official code, per space (:mod:`nasframe_darts.recipes`)
    search_recipes = recipes.DRNAS

    defaults = {"arch_learning_rate": 0.0003, "arch_weight_decay": "auto", "reg_type": "l2", "reg_scale": 0.001,
                "prior_concentration": 1.0, "partial_channels": 1}
    stochastic = True

    def __init__(self, **settings):
        super().__init__(**settings)
        if self.reg_type not in ("kl", "l2"):
            raise NasframeError(f"reg_type must be kl or l2, got {self.reg_type!r}")
        if str(self.arch_weight_decay).strip().lower() != "auto":
            try:
                self.arch_weight_decay = float(self.arch_weight_decay)
            except ValueError:
                raise NasframeError(f"arch_weight_decay must be auto or a number, got {self.arch_weight_decay!r}") from None
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

    def effective_arch_weight_decay(self) -> float:
        if isinstance(self.arch_weight_decay, str):  # auto: the official rule
            return float(self.reg_scale) if self.reg_type == "l2" else 0.0
        return float(self.arch_weight_decay)

    def regularizer(self):
        if self.reg_type != "kl":  # l2 is the architecture optimizer's weight decay
            return None
        terms = []
        for alpha in self._require_graph().alphas.values():
            c = dirichlet_concentration(alpha)
            prior = torch.full_like(c, self.prior_concentration)
            terms.append(kl_divergence(Dirichlet(c), Dirichlet(prior)).sum())
        return self.reg_scale * sum(terms) if terms else None
