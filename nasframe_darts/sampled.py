"""Cells that run only the sampled op of every edge (GDAS).

The op weights of a hard sampler carry, as ``weights.sampled_index``, the sampled column of
every edge (a host list, so no device synchronisation per edge). :class:`SampledCell` then
runs that op alone and multiplies its output by the edge's weight (1 in value; through it
flow the straight-through gradients). Without ``sampled_index`` (a cell type outside the
optimizer's scope, uniform weights) it runs as a :class:`~nasframe_darts.mixed.MixedCell`.
Parameter names are those of a MixedCell, so the discrete network inherits the weights.
"""
from __future__ import annotations

from typing import Sequence

import torch

from nasframe_core.space import CellSpec, OpBuilder

from .mixed import MixedCell


class SampledCell(MixedCell):
    def forward(self, inputs: Sequence[torch.Tensor], weights: torch.Tensor) -> torch.Tensor:
        index = getattr(weights, "sampled_index", None)
        if index is None:
            return super().forward(inputs, weights)
        states = dict(zip(self.spec.inputs, inputs))
        for node, edges in self._reference_plan:
            total = None
            for src, key, row in edges:
                mixed = self.edges[key]
                k = index[row]
                op = mixed.ops[mixed.primitives[k]] if mixed.primitives[k] in mixed.ops else None
                if op is None:  # 'none' was sampled: the edge adds zero
                    continue
                h = op(states[src]) * weights[row, k]
                total = h if total is None else total + h
            if total is None:  # every incoming edge sampled 'none': a zero of the node's shape
                src, key, _ = edges[0]
                with torch.no_grad():
                    total = torch.zeros_like(next(iter(self.edges[key].ops.values()))(states[src]))
            states[node] = total
        return self.combine(states)


def sampled_cell_factory(fused: bool = True):
    """A cell factory that builds :class:`SampledCell` s (``fused``: the fallback's path)."""

    def factory(spec: CellSpec, op_builder: OpBuilder) -> SampledCell:
        return SampledCell(spec, op_builder, fused=fused)

    return factory
