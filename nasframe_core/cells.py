"""Cell modules compiled from a :class:`~nasframe_core.space.CellSpec`.

:class:`DiscreteCell` executes a discrete architecture (one op per kept edge), for the
final network and for training from scratch. Supernet cells (MixedOps) belong to the
optimizer plugins; they reuse :func:`edge_key` and :meth:`CellBase.combine` so that a
discrete cell's parameter names match the supernet's and weights can be inherited.
"""
from __future__ import annotations

from typing import Mapping, Optional, Sequence

import torch
from torch import nn

from .space import CellSpec, Choice, Edge, OpBuilder


def edge_key(edge: Edge) -> str:
    """The module name of an edge: ``"0->1"``."""
    return f"{edge[0]}->{edge[1]}"


class CellBase(nn.Module):
    """Holds the spec and combines node states into the cell output."""

    def __init__(self, spec: CellSpec):
        super().__init__()
        self.spec = spec
        self._output = spec.output
        self._concat = spec.combine == "concat"

    def combine(self, states: Mapping[int, torch.Tensor]) -> torch.Tensor:
        if self._concat:
            return torch.cat([states[n] for n in self._output], dim=1)
        return states[self._output[0]]


class ChosenOp(nn.Module):
    """The op of one kept edge, stored under its name like a MixedOp's candidates.

    The op is registered once, as ``ops.<name>``, so the state dict has exactly the keys of
    the supernet's chosen candidate (``op`` reads it back without registering it again).
    """

    def __init__(self, name: str, op: nn.Module):
        super().__init__()
        self.name = name
        self.ops = nn.ModuleDict({name: op})
        self.is_identity = isinstance(op, nn.Identity)

    @property
    def op(self) -> nn.Module:
        return self.ops[self.name]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.ops[self.name](x)


def drop_path(x: torch.Tensor, drop_prob: float) -> torch.Tensor:
    """Zero whole samples with probability ``drop_prob`` and rescale the rest (drop-path)."""
    keep = 1.0 - drop_prob
    mask = torch.empty(x.shape[0], 1, 1, 1, dtype=x.dtype, device=x.device).bernoulli_(keep)
    return x * mask / keep


class DiscreteCell(CellBase):
    """A cell with one chosen op per kept edge; nodes sum their incoming edges.

    ``drop_prob`` (set by the trainer, usually rising over the epochs) applies drop-path to
    the output of every non-identity op while training, as in Liu et al. 2019's evaluation network.
    """

    def __init__(self, spec: CellSpec, choices: Sequence[Choice], op_builder: OpBuilder):
        super().__init__(spec)
        self.drop_prob = 0.0
        self.edges = nn.ModuleDict()
        plan: dict[int, list[tuple[int, str]]] = {n: [] for n in spec.nodes}
        by_node: dict[int, list[Choice]] = {n: [] for n in spec.nodes}
        for c in choices:
            if (c.src, c.dst) not in spec.edge_index:
                raise ValueError(f"cell {spec.name!r} has no edge {c.src}->{c.dst}")
            by_node[c.dst].append(c)
        for node, kept in by_node.items():
            # 'none' contributes zero and is skipped, unless it is all a node has: then one
            # zero op still gives the node its shape.
            real = [c for c in kept if c.op != "none"] or kept[:1]
            for c in real:
                key = edge_key((c.src, c.dst))
                if key in self.edges:  # the same input twice: a second op on one edge
                    key = f"{key}#{sum(k.split('#')[0] == key for k in self.edges)}"
                self.edges[key] = ChosenOp(c.op, op_builder(c.op, (c.src, c.dst)))
                plan[node].append((c.src, key))
        self._plan = [(n, tuple(plan[n])) for n in spec.nodes]

    def forward(self, inputs: Sequence[torch.Tensor], weights: Optional[torch.Tensor] = None) -> torch.Tensor:
        states: dict[int, torch.Tensor] = dict(zip(self.spec.inputs, inputs))
        drop = self.training and self.drop_prob > 0.0
        for node, edges in self._plan:
            total = None
            for src, key in edges:
                op = self.edges[key]
                h = op(states[src])
                if drop and not op.is_identity:
                    h = drop_path(h, self.drop_prob)
                total = h if total is None else total + h
            states[node] = total
        return self.combine(states)


def discrete_cell_factory(choices: Mapping[str, Sequence[Choice]]):
    """A cell factory for :meth:`SearchSpace.build_network` that builds discrete cells."""

    def factory(spec: CellSpec, op_builder: OpBuilder) -> nn.Module:
        return DiscreteCell(spec, choices[spec.name], op_builder)

    return factory
