"""DrNAS (Chen et al., ICLR 2021): op weights are Dirichlet samples, alphas their concentration."""
from __future__ import annotations

from typing import Any, Optional

import torch

from nasframe_core.errors import NasframeError

from . import progressive, recipes
from .engine import OneShotOptimizer
from .parts import Dirichlet, DirichletRegularizer, PartialEdges
from .partial import PartialMixedOp


class DrNASOptimizer(OneShotOptimizer):
    """Each forward draws the op weights of every edge from ``Dirichlet(elu(alpha) + 1)``
    by a pathwise (reparameterised) sample (:class:`~nasframe_darts.parts.Dirichlet`). The
    regularizer (:class:`~nasframe_darts.parts.DirichletRegularizer`), as the official code
    (xiangning-chen/DrNAS ``architect.py``, ``201-space/search_model.py``):

    - ``reg_type=l2`` (the code's default): the architecture optimizer's weight decay is
      ``reg_scale``, an L2 penalty on the alphas; no loss term;
    - ``reg_type=kl``: the architecture loss adds ``reg_scale * sum KL(Dir(elu(alpha) + 1) ||
      Dir(prior_concentration))`` and the architecture weight decay is 0.

    ``arch_weight_decay`` ``auto`` follows that rule; a number overrides it. The default
    architecture learning rate is the NB201 code's 3e-4 (its DARTS-space code uses 6e-4: that
    space's recipe). Discretization reads the Dirichlet mean.

    ``partial_channels=k`` (> 1) runs the edges on 1/k of the channels: PC-DARTS's partial edges
    (:class:`~nasframe_darts.parts.PartialEdges`), without its edge normalisation, as the
    official DrNAS code. The progressive scheme (:mod:`nasframe_darts.progressive`): ``progressive_k``
    and ``progressive_keep`` (lists of one length S, e.g. ``4,2`` and ``5,3`` on NB201) split the
    search into S stages of equal length; stage i runs at ``k = progressive_k[i]`` with the
    ``progressive_keep[i]`` best ops of every edge (pruned and widened between stages).
    ``none_op=false`` leaves the space's zero ops out (the official DARTS-space op set): they are
    masked from the start, and a Dirichlet over the remaining ops is what is sampled.
    """

    #: the search recipes of the paper and its official code, per space (:mod:`nasframe_darts.recipes`)
    search_recipes = recipes.DRNAS
    method_label = "DrNAS"
    defaults = {"arch_learning_rate": 0.0003, "progressive_k": [], "progressive_keep": []}
    settings_help = {"progressive_k": "partial-channel k of each progressive stage (empty: one stage)",
                     "progressive_keep": "ops kept per edge after each stage of the progressive scheme"}
    sampler = Dirichlet()
    edges = PartialEdges("partial_channels", 1, whole_is_mixed=True)
    regularizers = (DirichletRegularizer(),)

    def __init__(self, **settings):
        super().__init__(**settings)
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
        if self.progressive_k:
            self.k = self.progressive_k[0]
        if self.progressive_keep and not isinstance(self.sampler, Dirichlet):
            raise NasframeError(f"{self.method_label}: the progressive scheme prunes through the Dirichlet sampler's "
                                f"masks; this method samples with {type(self.sampler).__name__}")
        self.stage = 0

    def adapt_search_space(self, search_space, dataset, scope=None, **kwargs):
        super().adapt_search_space(search_space, dataset, scope, **kwargs)  # the sampler's masks of the zero ops
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
        super().update_schedules(epoch)
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
