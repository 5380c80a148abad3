"""The supernet: a space's network of MixedCells plus the architecture weights."""
from __future__ import annotations

from typing import Iterable, Iterator, Optional

import torch
import torch.nn.functional as F
from torch import nn

from nasframe_core.space import CellSpec


class SuperNet(nn.Module):
    """``network(x, arch_weights)`` with one alpha tensor ``[edges, ops]`` per adapted cell type.

    ``graph(x)`` returns the logits. Cell types outside the optimizer's scope get a constant
    zero tensor instead of parameters, which mixes their ops uniformly and never changes.

    Extension points of the one-shot engine: ``sampler(name, alpha)`` (when set) turns a
    scoped cell type's alphas into the op weights of a forward (default: softmax);
    ``graph(x, weights)`` runs with given op weights instead; ``extra`` holds a method's
    further architecture parameters (PC-DARTS's edge betas), which :meth:`arch_parameters`
    lists after the alphas.
    """

    def __init__(self, network: nn.Module, specs: dict[str, CellSpec], alphas: dict[str, torch.Tensor],
                 scope: Optional[Iterable[str]] = None):
        super().__init__()
        self.network = network
        self.specs = specs
        scoped = set(specs) if scope is None else set(scope)
        self.alphas = nn.ParameterDict(
            {name: nn.Parameter(alphas[name]) for name in specs if name in scoped}
        )
        for name, spec in specs.items():
            if name not in scoped:
                self.register_buffer(f"fixed_{name}", torch.zeros(spec.num_edges, spec.num_ops))
        self.cell_types = tuple(specs)
        self.extra = nn.ParameterDict()
        self.sampler = None

    def alpha(self, name: str) -> torch.Tensor:
        return self.alphas[name] if name in self.alphas else getattr(self, f"fixed_{name}")

    def arch_weights(self) -> dict[str, torch.Tensor]:
        """Softmax of every cell type's alphas over its ops."""
        return {name: F.softmax(self.alpha(name), dim=-1) for name in self.cell_types}

    def op_weights(self) -> dict[str, torch.Tensor]:
        """The op weights of one forward: ``sampler`` (or softmax) of every cell type's alphas."""
        if self.sampler is None:
            return self.arch_weights()
        return {name: self.sampler(name, self.alphas[name]) if name in self.alphas else F.softmax(self.alpha(name), -1)
                for name in self.cell_types}

    def forward(self, x: torch.Tensor, weights: Optional[dict[str, torch.Tensor]] = None) -> torch.Tensor:
        return self.network(x, self.op_weights() if weights is None else weights)

    def weights(self) -> Iterator[nn.Parameter]:
        """The operation weights (everything but the alphas)."""
        return self.network.parameters()

    def arch_parameters(self) -> list[nn.Parameter]:
        return list(self.alphas.values()) + list(self.extra.values())
