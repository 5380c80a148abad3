"""Cells that run only the sampled op of every edge (GDAS).

The op weights of a hard sampler carry, as ``weights.sampled_index``, the sampled column of
every edge (a host list, so no device synchronisation per edge). :class:`SampledCell` then
runs that op alone and multiplies its output by the edge's weight (1 in value; through it
flow the straight-through gradients). Without ``sampled_index`` (a cell type outside the
optimizer's scope, uniform weights) it runs as a :class:`~nasframe_darts.mixed.MixedCell`.
Parameter names are those of a MixedCell, so the discrete network inherits the weights.

``unsampled_weights`` (GDAS on NB201, as xautodl's ``NAS201SearchCell.forward_gdas`` in
``xautodl/models/cell_searchs/search_cells.py``): every edge also adds the weights of its
unsampled ops, which are exactly zero in value (``one_hot - soft.detach() + soft``) but not in
gradient, so every alpha of the edge gets one (the sum of the gradient arriving at the node).
The node adds them as one scalar: ``sum(weights[rows] * (1 - one_hot))``.

The sampled op runs in the fused cell's exact forms (same math): the ReLU of a source node is
computed once for all its ReLUConvBN edges, the edge weight of such an op is the scale of its
affine-free batch norm, and 3x3 average pooling is a box-sum convolution.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F

from nasframe_core.ops import Pool
from nasframe_core.space import CellSpec, OpBuilder

from .mixed import MixedCell, _fusable_conv


class SampledCell(MixedCell):
    def __init__(self, spec: CellSpec, op_builder: OpBuilder, fused: bool = True, unsampled_weights: bool = False):
        super().__init__(spec, op_builder, fused=fused)
        self.unsampled_weights = unsampled_weights

    def forward(self, inputs: Sequence[torch.Tensor], weights: torch.Tensor) -> torch.Tensor:
        index = getattr(weights, "sampled_index", None)
        if index is None:
            return super().forward(inputs, weights)
        unsampled = None
        if self.unsampled_weights:  # zero in value, the straight-through gradient for every unsampled op
            mask = getattr(weights, "unsampled_mask", None)
            if mask is None:
                mask = 1 - F.one_hot(torch.tensor(index, device=weights.device), weights.shape[-1]).to(weights.dtype)
            unsampled = (weights * mask).sum(dim=-1)  # per edge: the sum of its unsampled weights
        states = dict(zip(self.spec.inputs, inputs))
        relu: dict[int, torch.Tensor] = {}
        for node, edges in self._reference_plan:
            total = None
            for src, key, row in edges:
                mixed = self.edges[key]
                k = index[row]
                op = mixed.ops[mixed.primitives[k]] if mixed.primitives[k] in mixed.ops else None
                if op is None:  # 'none' was sampled: the edge adds zero
                    continue
                h = self._run(op, states[src], weights[row, k], src, relu)
                total = h if total is None else total + h
            if total is None:  # every incoming edge sampled 'none': a zero of the node's shape,
                src, key, row = edges[0]  # times the edge weight, so the graph stays connected
                with torch.no_grad():
                    zero = torch.zeros_like(next(iter(self.edges[key].ops.values()))(states[src]))
                total = zero * weights[row, index[row]]
            if unsampled is not None:
                extra = unsampled[edges[0][2]]
                for _, _, row in edges[1:]:
                    extra = extra + unsampled[row]
                total = total + extra
            states[node] = total
        return self.combine(states)

    def _run(self, op, x: torch.Tensor, w: torch.Tensor, src: int, relu: dict) -> torch.Tensor:
        """``op(x) * w``, computed as the fused cell computes it."""
        if self.fused and _fusable_conv(op):
            r = relu.get(src)
            if r is None:
                r = relu[src] = F.relu(x)
            y = op.conv_with(r, op.conv.weight)
            return F.batch_norm(y, None, None, w.expand(y.shape[1]).contiguous(), None, True, 0.0, op.bn.eps)
        if self.fused and isinstance(op, Pool) and op.mode == "avg" and op.bn is None:
            return self._avg_pool(x, op.stride) * w
        return op(x) * w


def sampled_cell_factory(fused: bool = True, unsampled_weights: bool = False):
    """A cell factory that builds :class:`SampledCell` s (``fused``: the fallback's path)."""

    def factory(spec: CellSpec, op_builder: OpBuilder) -> SampledCell:
        return SampledCell(spec, op_builder, fused=fused, unsampled_weights=unsampled_weights)

    return factory
