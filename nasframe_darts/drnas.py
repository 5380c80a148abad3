"""DrNAS (Chen et al., ICLR 2021): op weights are Dirichlet samples, alphas their concentration."""
from __future__ import annotations

from typing import Any, Optional

import torch
from torch.distributions import Dirichlet, kl_divergence

from nasframe_core.domains import COUNT, NON_NEGATIVE, POSITIVE, one_of
from nasframe_core.errors import NasframeError

from . import progressive, recipes
from .engine import OneShotOptimizer
from .partial import PartialMixedOp, partial_cell_factory
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
    space's recipe). Discretization reads the Dirichlet mean.

    ``partial_channels=k`` (> 1) runs the edges on 1/k of the channels (the partial-channel path
    of PC-DARTS). The progressive scheme (:mod:`nasframe_darts.progressive`): ``progressive_k``
    and ``progressive_keep`` (lists of one length S, e.g. ``4,2`` and ``5,3`` on NB201) split the
    search into S stages of equal length; stage i runs at ``k = progressive_k[i]`` with the
    ``progressive_keep[i]`` best ops of every edge (pruned and widened between stages).
    ``none_op=false`` leaves the space's zero ops out (the official DARTS-space op set): they are
    masked from the start, and a Dirichlet over the remaining ops is what is sampled.
    """

    #: the search recipes of the paper and its official code, per space (:mod:`nasframe_darts.recipes`)
    search_recipes = recipes.DRNAS

    defaults = {"arch_learning_rate": 0.0003, "arch_weight_decay": "auto", "reg_type": "l2", "reg_scale": 0.001,
                "prior_concentration": 1.0, "partial_channels": 1, "progressive_k": [], "progressive_keep": [],
                "none_op": True}
    settings_domain = {"reg_type": one_of("kl", "l2"), "reg_scale": NON_NEGATIVE,
                       "prior_concentration": POSITIVE, "partial_channels": COUNT}
    settings_help = {"reg_type": "regularizer: l2 (Adam's weight decay on the concentrations, the official default) or kl",
                     "reg_scale": "weight of the regularizer",
                     "prior_concentration": "concentration of the Dirichlet prior",
                     "partial_channels": "k > 1 runs the edges on 1/k of the channels",
                     "arch_weight_decay": "the concentrations' weight decay (auto: reg_scale for l2, 0 for kl)",
                     "progressive_k": "partial-channel k of each progressive stage (empty: one stage)",
                     "progressive_keep": "ops kept per edge after each stage of the progressive scheme",
                     "none_op": "keep the none op among the candidates"}
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
        try:
            self.progressive_k = [int(v) for v in self.progressive_k]
            self.progressive_keep = [int(v) for v in self.progressive_keep]
        except (TypeError, ValueError):
            raise NasframeError("progressive_k and progressive_keep must be lists of whole numbers, "
                                f"got {self.progressive_k!r} and {self.progressive_keep!r}") from None
        if len(self.progressive_k) != len(self.progressive_keep):
            raise NasframeError(f"progressive_k and progressive_keep need one entry per stage, got "
                                f"{self.progressive_k} and {self.progressive_keep}")
        if any(b > a for a, b in zip(self.progressive_k, self.progressive_k[1:])) or any(
                b > a for a, b in zip(self.progressive_keep, self.progressive_keep[1:])):
            raise NasframeError("progressive stages only widen (k falls) and prune (keep falls): "
                                f"got k {self.progressive_k}, keep {self.progressive_keep}")
        if self.progressive_k and min(self.progressive_k + self.progressive_keep) < 1:
            raise NasframeError("progressive_k and progressive_keep must be at least 1")
        self.k = self.progressive_k[0] if self.progressive_k else self.partial_channels
        self.strict_weight_inheritance = self.k <= 1
        self.stage = 0
        self.masks: dict[str, Optional[torch.Tensor]] = {}

    # ------------------------------------------------------------------ building
    def build_cell_factory(self):
        if self.k > 1 or len(self.progressive_k) > 1:
            return partial_cell_factory(self.search_space, self.k)
        return super().build_cell_factory()

    def adapt_search_space(self, search_space, dataset, scope=None, **kwargs):
        super().adapt_search_space(search_space, dataset, scope, **kwargs)
        zero = getattr(search_space, "zero_ops", ("none",))
        self.masks = {}
        for name, alpha in self.graph.alphas.items():
            ops = self.graph.specs[name].ops
            if self.none_op or not any(op in zero for op in ops):
                self.masks[name] = None
            else:
                self.masks[name] = torch.tensor([op not in zero for op in ops]).expand(alpha.shape).clone()
        if self.progressive_keep:
            for name, alpha in self.graph.alphas.items():
                allowed = alpha.shape[-1] if self.masks[name] is None else int(self.masks[name][0].sum())
                if self.progressive_keep[0] < allowed:
                    self.masks[name] = progressive.prune(alpha, self.progressive_keep[0], self.masks[name])

    # ------------------------------------------------------------------ stages
    def stage_of(self, epoch: int) -> int:
        stages = max(1, len(self.progressive_k))
        if stages == 1 or not self.epochs:
            return 0
        return min(stages - 1, epoch * stages // self.epochs)

    def update_schedules(self, epoch: int) -> None:
        while self.graph is not None and self.stage < self.stage_of(epoch):
            self._next_stage(self.rng.generator)

    def _next_stage(self, generator: torch.Generator) -> None:
        """Prune to the next stage's ops per edge, widen to its k (the official order)."""
        graph = self._require_graph()
        self.stage += 1
        keep, k = self.progressive_keep[self.stage], self.progressive_k[self.stage]
        for name, alpha in graph.alphas.items():
            self.masks[name] = progressive.prune(alpha, keep, self.masks.get(name))
        if k != self.k:
            replaced = []
            for mixed in graph.network.modules():
                if isinstance(mixed, PartialMixedOp):
                    for op in mixed.ops.values():
                        old_c = _channels(op)
                        if old_c is None:
                            continue
                        new_c = old_c * mixed.k // k
                        replaced += progressive.widen_op(op, old_c, new_c, generator)
                    mixed.k = k
            self.k = k
            progressive.move_sgd_state(self.op_optimizer, replaced, lambda: list(graph.weights()))
            self._compiled = None

    def get_checkpointables(self) -> dict[str, Any]:
        out = {"progressive": _Stages(self)} if self.progressive_k else {}
        out.update(super().get_checkpointables())  # the stage first: it reshapes what follows
        return out

    # ------------------------------------------------------------------ weights
    def sample_op_weights(self, name, alpha):
        w = dirichlet_rsample(dirichlet_concentration(alpha), self.rng.generator)
        return progressive.masked(w, self._mask(name, w))

    def expected_op_weights(self, name, alpha):
        c = dirichlet_concentration(alpha)
        return progressive.masked(c / c.sum(dim=-1, keepdim=True), self._mask(name, c))

    def _mask(self, name: str, like: torch.Tensor) -> Optional[torch.Tensor]:
        mask = self.masks.get(name)
        return None if mask is None else mask.to(like.device)

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


def _channels(op: torch.nn.Module) -> Optional[int]:
    """The channel count an op of a partial edge was built at (its first conv's or norm's)."""
    for m in op.modules():
        if isinstance(m, torch.nn.Conv2d):
            return m.in_channels
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            return m.num_features
    return None


class _Stages:
    """The checkpointed stage and masks; loading one re-widens the supernet to its shapes first
    (with a throwaway generator: the values come from the checkpoint's model and optimizers)."""

    def __init__(self, owner: DrNASOptimizer):
        self.owner = owner

    def state_dict(self) -> dict[str, Any]:
        return {"stage": self.owner.stage, "masks": {n: m for n, m in self.owner.masks.items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        throwaway = torch.Generator().manual_seed(0)
        while self.owner.stage < int(state["stage"]):
            self.owner._next_stage(throwaway)
        if self.owner.stage != int(state["stage"]):
            raise RuntimeError(f"checkpoint at stage {state['stage']}, the search at {self.owner.stage}")
        self.owner.masks = dict(state["masks"])
