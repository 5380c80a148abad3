"""Partial channel connections (PC-DARTS, Xu et al. ICLR 2020).

On every edge only the first ``C / k`` channels go through the mixed op; the other
channels bypass it (max-pooled 2x2 on a reduction edge), the two parts are concatenated and
shuffled with ``k`` groups, so that other channels take part in the next cell. The ops are
built at ``C / k`` channels by the space itself: while :func:`partial_cell_factory` builds
an edge it routes the space's :meth:`~nasframe_core.space.SearchSpace.make_op` to
``make_op(name, C // k, stride)``, so any space whose op builder calls ``make_op`` works.

Edge normalisation (the betas) arrives folded into the op weights (row ``j`` of the weights
is ``beta_j * softmax(alpha_j)``), so the bypass is scaled by the row's sum, ``beta_j``: the
whole edge output is weighted by ``beta_j`` as in the paper.

This path runs edge by edge (no fused cell): the bypass and the shuffle are per edge.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from nasframe_core.cells import CellBase, edge_key
from nasframe_core.errors import NasframeError
from nasframe_core.space import CellSpec, OpBuilder, SearchSpace

from .mixed import MixedCell


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    """``[B, g, C/g, H, W]`` transposed to ``[B, C/g, g, H, W]``, flattened back."""
    b, c, h, w = x.shape
    return x.view(b, groups, c // groups, h, w).transpose(1, 2).reshape(b, c, h, w)


@contextmanager
def _narrowed(space: SearchSpace, k: int):
    """Route ``space.make_op`` to ``C // k`` channels; yields the ``(C, stride)`` it saw."""
    calls: list[tuple[int, int]] = []
    original = type(space).make_op

    def make_op(name, C, stride, *, search):
        if C % k:
            raise NasframeError(f"partial channels need C divisible by k: {C} channels, k={k}; "
                                f"choose k among the divisors of {C}")
        calls.append((C, stride))
        return original(space, name, C // k, stride, search=search)

    space.make_op = make_op
    try:
        yield calls
    finally:
        del space.make_op


class PartialMixedOp(nn.Module):
    """The mixed op of one edge on ``C / k`` channels, the bypass, the shuffle."""

    def __init__(self, primitives: Sequence[str], ops: dict[str, nn.Module], k: int, stride: int):
        super().__init__()
        self.primitives = tuple(primitives)
        self.ops = nn.ModuleDict(ops)
        self.columns = tuple(self.primitives.index(p) for p in self.ops)
        self.k, self.stride = k, stride

    def forward(self, x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        c = x.shape[1] // self.k
        part, rest = x[:, :c], x[:, c:]
        out = None
        for op, col in zip(self.ops.values(), self.columns):
            h = op(part) * weights[col]
            out = h if out is None else out + h
        if self.k == 1:  # every channel went through the ops: no bypass
            return out
        if self.stride == 2:
            rest = F.max_pool2d(rest, 2, 2)
        rest = rest * weights.sum()  # the edge's scale: its beta when the row's op weights sum to one
        return channel_shuffle(torch.cat([out, rest], dim=1), self.k)


class PartialChannelCell(CellBase):
    """A supernet cell of :class:`PartialMixedOp` s; nodes sum their (weighted) edges."""

    def __init__(self, spec: CellSpec, op_builder: OpBuilder, space: SearchSpace, k: int):
        super().__init__(spec)
        self.edges = nn.ModuleDict()
        for edge in spec.edges:
            ops, strides = {}, set()
            for name in spec.ops:
                if name == "none":
                    continue
                with _narrowed(space, k) as calls:
                    ops[name] = op_builder(name, edge)
                if not calls:
                    raise NasframeError(f"partial channels build ops through make_op, but space {space.name!r} "
                                        f"built {name!r} without it; use a space whose op builder calls make_op")
                strides.add(calls[0][1])
            self.edges[edge_key(edge)] = PartialMixedOp(spec.ops, ops, k, strides.pop() if strides else 1)
        self._reference_plan = [
            (n, tuple((src, edge_key((src, n)), spec.edge_index[(src, n)]) for src, _ in spec.in_edges[n]))
            for n in spec.nodes
        ]

    # nodes sum their edges exactly as the reference path of a MixedCell does
    forward = MixedCell.forward_reference

def partial_cell_factory(space: SearchSpace, k: int):
    """A cell factory for :class:`PartialChannelCell` s with ``1/k`` of the channels."""
    if k < 1:
        raise NasframeError(f"partial channels k must be at least 1, got {k}")

    def factory(spec: CellSpec, op_builder: OpBuilder) -> PartialChannelCell:
        return PartialChannelCell(spec, op_builder, space, k)

    return factory
