"""MixedOps and the supernet cell.

A :class:`MixedOp` holds the candidates of one edge and returns their sum weighted by one
row of the softmaxed architecture weights; 'none' is never built or run (its output is
zero, so its weight gets a zero gradient either way).

:class:`MixedCell` runs a cell of MixedOps in one of two exact ways over the same
parameters:

- ``reference``: edge by edge, op by op, as the DARTS paper writes it;
- ``fused`` (the default): per source node, work shared by the edges leaving that node is
  done once. The ReLU in front of every :class:`~nasframe_core.ops.ReLUConvBN` is applied
  once; the convolutions of those edges with equal kernel, stride and dilation become one
  convolution over the concatenated weights; their affine-free, statistics-free batch norms
  become one batch norm over the concatenated channels (batch norm is per channel, so this
  is the same math), with the architecture weights folded in as the batch norm's scale;
  parameter-free ops (pooling without running statistics) are computed once per node.
  Everything else runs op by op as in the reference.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from nasframe_core.cells import CellBase, edge_key
from nasframe_core.ops import Pool, ReLUConvBN
from nasframe_core.space import CellSpec, Edge, OpBuilder


class MixedOp(nn.Module):
    """The weighted sum of an edge's candidate ops (``weights`` is one softmaxed alpha row)."""

    def __init__(self, primitives: Sequence[str], op_builder: OpBuilder, edge: Edge):
        super().__init__()
        self.primitives = tuple(primitives)
        self.ops = nn.ModuleDict({p: op_builder(p, edge) for p in self.primitives if p != "none"})
        self.columns = tuple(self.primitives.index(p) for p in self.ops)

    def forward(self, x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        out = None
        for op, k in zip(self.ops.values(), self.columns):
            h = op(x) * weights[k]
            out = h if out is None else out + h
        return out


def _fusable_conv(op: nn.Module) -> bool:
    return (
        isinstance(op, ReLUConvBN)
        and op.same_padding
        and op.conv.groups == 1
        and op.conv.bias is None
        and not op.bn.affine
        and not op.bn.track_running_stats
    )


class _ConvGroup:
    """The ReLUConvBN ops leaving one node with equal kernel, stride and dilation."""

    def __init__(self, members: list[tuple[int, int, ReLUConvBN]], num_ops: int):
        first = members[0][2]
        self.ops = [m[2] for m in members]
        self.stride, self.padding, self.dilation = first.stride, first.padding, first.dilation
        self.eps = first.bn.eps
        self.channels = [op.conv.out_channels for op in self.ops]
        self.targets = [row for row, _, _ in members]
        # for every output channel, its position in the flattened (edges x ops) weights:
        # one gather gives the batch norm scale that carries the architecture weights
        self.flat_positions = [row * num_ops + col for (row, col, op) in members for _ in range(op.conv.out_channels)]
        self.buffer_name = ""  # the index tensor is a buffer of the cell, so it follows .to(device)


class _SourcePlan:
    """What the fused forward does with one source node."""

    def __init__(self, src: int):
        self.src = src
        self.needs_relu = False
        self.groups: list[_ConvGroup] = []
        self.identity: list[tuple[int, int]] = []
        self.pools: list[tuple[str, int, list]] = []
        self.after_relu: list[tuple[int, int, nn.Module]] = []
        self.single: list[tuple[int, int, nn.Module]] = []


class MixedCell(CellBase):
    """A supernet cell: one MixedOp per edge of ``spec``; see the module docstring."""

    def __init__(self, spec: CellSpec, op_builder: OpBuilder, fused: bool = True):
        super().__init__(spec)
        self.fused = fused
        self.edges = nn.ModuleDict({edge_key(e): MixedOp(spec.ops, op_builder, e) for e in spec.edges})
        self._reference_plan = [
            (n, tuple((src, edge_key((src, n)), spec.edge_index[(src, n)]) for src, _ in spec.in_edges[n]))
            for n in spec.nodes
        ]
        self._build_fused_plan()

    # ------------------------------------------------------------------ reference
    def forward_reference(self, inputs: Sequence[torch.Tensor], weights: torch.Tensor) -> torch.Tensor:
        states = dict(zip(self.spec.inputs, inputs))
        for node, edges in self._reference_plan:
            total = None
            for src, key, row in edges:
                h = self.edges[key](states[src], weights[row])
                total = h if total is None else total + h
            states[node] = total
        return self.combine(states)

    # ---------------------------------------------------------------------- fused
    def _build_fused_plan(self) -> None:
        spec = self.spec
        K = spec.num_ops
        sources = [n for n in spec.inputs + spec.nodes if any(e[0] == n for e in spec.edges)]
        plan = []
        for src in sources:
            p = _SourcePlan(src)
            conv_groups: dict[tuple, list] = {}
            pools: dict[tuple, list] = {}
            for edge in spec.edges:
                if edge[0] != src:
                    continue
                row = spec.edge_index[edge]
                mixed = self.edges[edge_key(edge)]
                for op, col in zip(mixed.ops.values(), mixed.columns):
                    flat = row * K + col
                    if _fusable_conv(op):
                        gkey = (op.kernel_size, op.stride, op.dilation, op.conv.in_channels, op.bn.eps)
                        conv_groups.setdefault(gkey, []).append((row, col, op))
                    elif isinstance(op, nn.Identity):
                        p.identity.append((row, flat))
                    elif isinstance(op, Pool) and (op.bn is None or not op.bn.affine):
                        pools.setdefault((op.mode, op.stride), []).append((row, flat, op.bn))
                    elif getattr(op, "relu_first", False):
                        p.after_relu.append((row, flat, op))
                    else:
                        p.single.append((row, flat, op))
            p.groups = [_ConvGroup(m, K) for m in conv_groups.values()]
            for g in p.groups:
                g.buffer_name = f"_scale_index_{src}_{len(self._buffers)}"
                self.register_buffer(g.buffer_name, torch.tensor(g.flat_positions), persistent=False)
            p.pools = [(mode, stride, uses) for (mode, stride), uses in pools.items()]
            p.needs_relu = bool(p.groups or p.after_relu)
            plan.append(p)
        self._fused_plan = plan
        self._row_target = {spec.edge_index[e]: e[1] for e in spec.edges}
        self._pool_cache: dict[tuple, torch.Tensor] = {}

    def _avg_pool(self, x: torch.Tensor, stride: int) -> torch.Tensor:
        """3x3 average pooling, padding 1, padding not counted: a depthwise box sum times
        1/count (the same math; much faster than the pooling kernel on CPUs)."""
        C, H, W = x.shape[1:]
        key = (C, H, W, stride, x.dtype, x.device)
        cached = self._pool_cache.get(key)
        if cached is None:
            ones = torch.ones(C, 1, 3, 3, dtype=x.dtype, device=x.device)
            count = F.conv2d(torch.ones(1, 1, H, W, dtype=x.dtype, device=x.device), ones[:1], stride=stride, padding=1)
            cached = (ones, count.reciprocal())
            self._pool_cache[key] = cached
        ones, inv_count = cached
        return F.conv2d(x, ones, None, stride, 1, 1, C) * inv_count

    def forward_fused(self, inputs: Sequence[torch.Tensor], weights: torch.Tensor) -> torch.Tensor:
        spec = self.spec
        states: dict[int, torch.Tensor] = dict(zip(spec.inputs, inputs))
        # per destination node: terms already weighted, and (tensor, weight) pairs
        done: dict[int, list[torch.Tensor]] = {n: [] for n in spec.nodes}
        scaled: dict[int, list[tuple[torch.Tensor, torch.Tensor]]] = {n: [] for n in spec.nodes}
        flat_w = weights.reshape(-1)
        target = self._row_target
        # sources come in topological order, so a node is complete before it is used
        for p in self._fused_plan:
            if p.src not in states:
                states[p.src] = _weighted_sum(done.pop(p.src), scaled.pop(p.src))
            x = states[p.src]
            r = F.relu(x) if p.needs_relu else None
            for g in p.groups:
                weight = torch.cat([op.conv.weight for op in g.ops], 0) if len(g.ops) > 1 else g.ops[0].conv.weight
                y = F.conv2d(r, weight, None, g.stride, g.padding, g.dilation)
                # affine-free BN over the stacked channels, scaled by the architecture weights
                y = F.batch_norm(y, None, None, flat_w[getattr(self, g.buffer_name)], None, True, 0.0, g.eps)
                for chunk, row in zip(y.split(g.channels, 1), g.targets):
                    done[target[row]].append(chunk)
            for row, flat in p.identity:
                scaled[target[row]].append((x, flat_w[flat]))
            for mode, stride, uses in p.pools:
                pooled = self._avg_pool(x, stride) if mode == "avg" else F.max_pool2d(x, 3, stride, 1)
                for row, flat, bn in uses:
                    scaled[target[row]].append((pooled if bn is None else bn(pooled), flat_w[flat]))
            for row, flat, op in p.after_relu:
                scaled[target[row]].append((op.after_relu(r), flat_w[flat]))
            for row, flat, op in p.single:
                scaled[target[row]].append((op(x), flat_w[flat]))
        for node in spec.nodes:
            if node not in states:
                states[node] = _weighted_sum(done.pop(node), scaled.pop(node))
        return self.combine(states)

    def forward(self, inputs: Sequence[torch.Tensor], weights: torch.Tensor) -> torch.Tensor:
        if self.fused:
            return self.forward_fused(inputs, weights)
        return self.forward_reference(inputs, weights)


def _weighted_sum(done: list[torch.Tensor], scaled: list[tuple[torch.Tensor, torch.Tensor]]) -> torch.Tensor:
    """sum(done) + sum(t * w for t, w in scaled), accumulated in place into one new tensor.

    In-place accumulation is safe for autograd: the accumulator is a fresh tensor that no
    backward function saves (add saves nothing, addcmul saves only its factors).
    """
    if len(done) >= 2:
        acc = done[0] + done[1]
        rest = done[2:]
    elif done:
        if not scaled:
            return done[0]
        t, w = scaled[0]
        acc = torch.addcmul(done[0], t, w)
        scaled, rest = scaled[1:], []
    else:
        t, w = scaled[0]
        acc = t * w
        scaled, rest = scaled[1:], []
    for t in rest:
        acc.add_(t)
    for t, w in scaled:
        acc.addcmul_(t, w)
    return acc


def mixed_cell_factory(fused: bool = True):
    """A cell factory for :meth:`SearchSpace.build_network` that builds :class:`MixedCell` s."""

    def factory(spec: CellSpec, op_builder: OpBuilder) -> nn.Module:
        return MixedCell(spec, op_builder, fused=fused)

    return factory
