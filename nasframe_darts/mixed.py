"""MixedOps and the supernet cell.

A :class:`MixedOp` holds the candidates of one edge and returns their sum weighted by one
row of the softmaxed architecture weights; 'none' is never built or run (its output is
zero, so its weight gets a zero gradient either way).

:class:`MixedCell` runs a cell of MixedOps in one of two exact ways over the same
parameters:

- ``reference``: edge by edge, op by op, as the DARTS paper writes it;
- ``fused`` (the default): per source node, work shared by the edges leaving that node is
  done once, and the same op of all those edges runs as one batched op:

  * the ReLU at the head of every :class:`~nasframe_core.ops.ReLUFirst` op is applied once;
  * :class:`~nasframe_core.ops.ReLUConvBN` convolutions with equal kernel, stride and
    dilation become one convolution over the concatenated weights (a 3x3 one with stride 1
    and padding 1 in :func:`~nasframe_core.ops.conv3x3`, Winograd's algorithm on CPUs);
  * :class:`~nasframe_core.ops.DilConv` / :class:`~nasframe_core.ops.SepConv` of one kind
    (kernel, stride, dilation) run on the edges' inputs stacked along the channels: each
    depthwise stage is one grouped convolution, each pointwise stage one grouped 1x1
    convolution (on CPUs, its weight gradient is one batched matrix product);
  * on CPUs a dilated DilConv runs whole on the phase sub-images of the node's ReLU
    (:func:`~nasframe_core.ops.phase_split`, once per node), where its convolution is an
    undilated one, and its output is interleaved back once;
  * their batch norms become one batch norm over the stacked channels. Batch norm is per
    channel, so this is the same math, running statistics included: the stacked running
    means and variances are the per-edge ones side by side, held in one tensor each whose
    slices are the edges' own buffers (:class:`SideBySideStatistics`), so the call updates
    them in place. The architecture weights are folded in as the last batch norm's scale;
  * pooling is computed once per node; when the edges' batch norms normalise with batch
    statistics (training), the normalised pooling is computed once too, and every edge's
    running statistics are updated from its statistics, computed once.

  Everything else (e.g. :class:`~nasframe_core.ops.FactorizedReduce`) runs op by op as in
  the reference.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from nasframe_core.cells import CellBase, edge_key
from nasframe_core.ops import (ConvWithOwnWeightGrad, DilConv, Pool, ReLUConvBN, SepConv, depthwise, dilated_input,
                               dilated_output, dilated_plan, own_weight_grad_applies, same_depthwise)
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


def _plain_bn(bn) -> bool:
    """An affine-free batch norm; with running statistics, at a fixed momentum."""
    return (
        isinstance(bn, nn.BatchNorm2d)
        and not bn.affine
        and (not bn.track_running_stats or bn.momentum is not None)
    )


def _bn_key(bn: nn.BatchNorm2d) -> tuple:
    """Batch norms with equal keys can run as one over their channels side by side."""
    return (bn.eps, bn.momentum, bn.track_running_stats)


class SideBySideStatistics:
    """The running statistics of batch norms that always run as one, over their channels
    stacked: one tensor per statistic (means, variances, batch counts), and each batch norm's
    buffers are slices of it. A batch norm over the stacked channels then updates every one in
    place, with nothing to gather before the call or write back after it, and each batch norm
    can still run alone (the reference path) on its own buffers.

    :class:`MixedCell` gathers them when it is built and again after ``.to()``/``.double()``
    and ``load_state_dict`` (so its buffers are the slices from then on); a buffer replaced
    any other way (an assignment) is seen by identity at the next call. Under
    ``torch.func.functional_call`` the statistics passed in are read, not updated.
    """

    NAMES = ("running_mean", "running_var", "num_batches_tracked")

    def __init__(self, bns: list):
        self.bns = bns
        self.held: list[tuple] = []  # per batch norm, the slices it was given
        self.stacked: tuple = ()

    def get(self) -> tuple:
        """(means, variances, counts) side by side."""
        self.refresh()
        return self.stacked

    def refresh(self) -> None:
        """Gather the statistics again if a batch norm's buffer was replaced since."""
        if not self.stacked or any(
            b["running_mean"] is not m or b["running_var"] is not v or b["num_batches_tracked"] is not c
            for b, (m, v, c) in zip((bn._buffers for bn in self.bns), self.held)
        ):
            self._gather()

    def _gather(self) -> None:
        bns, n = self.bns, self.bns[0].num_features
        with torch.no_grad(), torch.inference_mode(False):
            mean = torch.cat([bn.running_mean for bn in bns])
            var = torch.cat([bn.running_var for bn in bns])
            count = torch.stack([bn.num_batches_tracked for bn in bns])
        self.held = [(mean[i * n:(i + 1) * n], var[i * n:(i + 1) * n], count[i]) for i in range(len(bns))]
        for bn, views in zip(bns, self.held):
            bn._buffers.update(zip(self.NAMES, views))
        self.stacked = (mean, var, count)


def _stacked_batch_norm(y: torch.Tensor, bns: list, stats: SideBySideStatistics | None,
                        scale: torch.Tensor | None = None) -> torch.Tensor:
    """``cat([bn(chunk) for chunk, bn in zip(y.split(...), bns)], 1) * scale`` in one call;
    ``stats`` holds the running statistics of ``bns`` (None: they have none)."""
    first = bns[0]
    if stats is None:
        return F.batch_norm(y, None, None, scale, None, True, 0.0, first.eps)
    mean, var, count = stats.get()
    out = F.batch_norm(y, mean, var, scale, None, first.training, first.momentum, first.eps)
    if first.training:
        count.add_(1)
    return out


def _statistics(bns: list) -> SideBySideStatistics | None:
    return SideBySideStatistics(bns) if bns[0] is not None and bns[0].track_running_stats else None


def _fusable_conv(op: nn.Module) -> bool:
    return (
        isinstance(op, ReLUConvBN)
        and op.same_padding
        and op.conv.groups == 1
        and op.conv.bias is None
        and _plain_bn(op.bn)
    )


def _sepdil_blocks(op: nn.Module) -> list:
    """The :class:`DilConv` blocks of a DilConv/SepConv op (empty for any other op)."""
    if type(op) is SepConv:
        return [op.first, op.second]
    if type(op) is DilConv:
        return [op]
    return []


def _sepdil_key(op: nn.Module):
    """The kind of a DilConv/SepConv op that can be batched with others of its kind; None if
    it cannot be batched."""
    blocks = _sepdil_blocks(op)
    key = [type(op)]
    for b in blocks:
        dw, pw = b.depthwise, b.pointwise
        if not (dw.groups == dw.in_channels == dw.out_channels and dw.bias is None and pw.bias is None
                and pw.groups == 1 and pw.stride == (1, 1) and pw.padding == (0, 0) and _plain_bn(b.bn)):
            return None
        key.append((dw.in_channels, pw.out_channels, dw.kernel_size, dw.stride, dw.padding, dw.dilation,
                    dw.padding_mode, _bn_key(b.bn)))
    return tuple(key) if blocks else None


class _Batched:
    """Ops of one kind leaving one node, run as one: the base of the two kinds below."""

    def __init__(self, members: list[tuple[int, int, nn.Module]], num_ops: int, channels: list[int]):
        self.ops = [m[2] for m in members]
        self.channels = channels
        self.targets = [row for row, _, _ in members]
        # for every output channel, its position in the flattened (edges x ops) weights:
        # one gather gives the batch norm scale that carries the architecture weights
        self.flat_positions = [row * num_ops + col for (row, col, _), c in zip(members, channels) for _ in range(c)]
        self.buffer_name = ""  # the index tensor is a buffer of the cell, so it follows .to(device)


class _ConvGroup(_Batched):
    """The ReLUConvBN ops leaving one node with equal kernel, stride and dilation."""

    def __init__(self, members: list[tuple[int, int, ReLUConvBN]], num_ops: int):
        super().__init__(members, num_ops, [m[2].conv.out_channels for m in members])
        self.bns = [op.bn for op in self.ops]
        self.statistics = [_statistics(self.bns)]

    def run(self, r: torch.Tensor, stacks: dict, scale: torch.Tensor) -> torch.Tensor:
        weight = torch.cat([op.conv.weight for op in self.ops], 0) if len(self.ops) > 1 else self.ops[0].conv.weight
        y = self.ops[0].conv_with(r, weight)
        return _stacked_batch_norm(y, self.bns, self.statistics[0], scale)


class _SepDilGroup(_Batched):
    """DilConv or SepConv ops of one kind leaving one node, on the ReLU of the node stacked
    once per op along the channels: per block, the depthwise convolutions are one grouped
    convolution, the pointwise ones one grouped 1x1 convolution, the batch norms one."""

    def __init__(self, members: list[tuple[int, int, nn.Module]], num_ops: int):
        super().__init__(members, num_ops, [_sepdil_blocks(m[2])[-1].pointwise.out_channels for m in members])
        self.blocks = list(zip(*[_sepdil_blocks(op) for op in self.ops]))  # per block, one per op
        self.bns = [[b.bn for b in blocks] for blocks in self.blocks]
        self.statistics = [_statistics(bns) for bns in self.bns]  # per block

    def run(self, r: torch.Tensor, stacks: dict, scale: torch.Tensor) -> torch.Tensor:
        n = len(self.ops)
        first = self.blocks[0][0].depthwise
        plan = None
        if len(self.blocks) == 1:  # a DilConv: its dilated convolution may be rewritten
            plan = dilated_plan(r, first.weight, first.stride, first.padding, first.dilation)
        if plan is None:
            h = _stacked(r, n, stacks, ("relu",))
        else:
            # run the whole op (depthwise, pointwise, batch norm) on the phase sub-images of
            # the ReLU (or on its phase (0, 0) at stride d), split once per node: the pointwise
            # convolution and the batch norm see the same pixels in another order
            mode, d, same = plan
            h = _stacked(r, n, stacks, (mode, d))
        last = len(self.blocks) - 1
        for i, blocks in enumerate(self.blocks):
            dw, pw = blocks[0].depthwise, blocks[0].pointwise
            if i:
                h = F.relu(h, inplace=True)  # on a batch norm's output, which its backward does not need
            if n > 1:
                dw_weight = torch.cat([b.depthwise.weight for b in blocks], 0)
                pw_weight = torch.cat([b.pointwise.weight for b in blocks], 0)
            else:
                dw_weight, pw_weight = dw.weight, pw.weight
            if plan is None:  # as given: SepConv blocks are undilated; for a DilConv, dilated_plan declined
                h = depthwise(h, dw_weight, dw.stride, dw.padding, dw.dilation)
            else:
                h = same_depthwise(h, dw_weight, plan[2])
            h = grouped_pointwise(h, pw_weight, n)
            h = _stacked_batch_norm(h, self.bns[i], self.statistics[i], scale if i == last else None)
        if plan is not None:
            h = dilated_output(h, plan[0], plan[1], r.shape[0])
        return h


def _stacked(r: torch.Tensor, n: int, stacks: dict, key: tuple) -> torch.Tensor:
    """``r`` (as ``key`` says: itself, its phases, its phase (0, 0)) stacked ``n`` times along
    the channels; cached in ``stacks`` for the other groups of the node."""
    stacked = stacks.get(key + (n,))
    if stacked is not None:
        return stacked
    base = stacks.get(key + (1,))
    if base is None:
        base = r if key[0] == "relu" else dilated_input(r, key[0], key[1])
        stacks[key + (1,)] = base
    if n == 1:
        return base
    # repeat, not cat: its backward sums the n gradients in one pass
    if r.is_contiguous(memory_format=torch.channels_last):
        stacked = base.permute(0, 2, 3, 1).repeat(1, 1, 1, n).permute(0, 3, 1, 2)
    else:
        stacked = base.repeat(1, n, 1, 1)
    stacks[key + (n,)] = stacked
    return stacked


def _grouped_pointwise_weight_grad(x: torch.Tensor, go: torch.Tensor, weight: torch.Tensor, padding: int,
                                   G: int) -> torch.Tensor:
    """The weight gradient of a grouped 1x1 convolution as one batched matrix product.

    On channels-last tensors the pixels are the rows of an (N*H*W, C) matrix, so each
    group's weight gradient is ``go_g^T @ x_g`` over strided views, without copies; oneDNN's
    grouped backward-weights kernel takes 2-2.5x longer.
    """
    N, C_in, H, W = x.shape
    ci, co, P = C_in // G, weight.shape[0] // G, N * H * W
    xs = x.permute(0, 2, 3, 1).reshape(P, G, ci).transpose(0, 1)  # (G, P, ci)
    gos = go.permute(0, 2, 3, 1).reshape(P, G, co).permute(1, 2, 0)  # (G, co, P)
    return torch.bmm(gos, xs).reshape(G * co, ci, 1, 1)


def grouped_pointwise(x: torch.Tensor, weight: torch.Tensor, groups: int) -> torch.Tensor:
    """``F.conv2d(x, weight, None, 1, 0, 1, groups)`` for a 1x1 ``weight``; on CPUs with
    channels-last input, with the faster weight gradient of :func:`_grouped_pointwise_weight_grad`."""
    if (groups > 1 and x.device.type == "cpu" and x.is_contiguous(memory_format=torch.channels_last)
            and own_weight_grad_applies(x, weight)):
        return ConvWithOwnWeightGrad.apply(x, weight, 0, groups, _grouped_pointwise_weight_grad)
    return F.conv2d(x, weight, None, 1, 0, 1, groups)


class _SourcePlan:
    """What the fused forward does with one source node."""

    def __init__(self, src: int):
        self.src = src
        self.needs_relu = False
        self.groups: list[_Batched] = []
        self.identity: list[tuple[int, int]] = []
        self.pools: list[_PoolGroup] = []
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
        self.register_load_state_dict_post_hook(_refresh_after_load)

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
            sepdil_groups: dict[tuple, list] = {}
            pools: dict[tuple, list] = {}
            for edge in spec.edges:
                if edge[0] != src:
                    continue
                row = spec.edge_index[edge]
                mixed = self.edges[edge_key(edge)]
                for op, col in zip(mixed.ops.values(), mixed.columns):
                    flat = row * K + col
                    sepdil = _sepdil_key(op)
                    if _fusable_conv(op):
                        gkey = (op.kernel_size, op.stride, op.dilation, op.conv.in_channels, _bn_key(op.bn))
                        conv_groups.setdefault(gkey, []).append((row, col, op))
                    elif sepdil is not None:
                        sepdil_groups.setdefault(sepdil, []).append((row, col, op))
                    elif isinstance(op, nn.Identity):
                        p.identity.append((row, flat))
                    elif isinstance(op, Pool) and (op.bn is None or _plain_bn(op.bn)):
                        bn_key = None if op.bn is None else _bn_key(op.bn)
                        pools.setdefault((op.mode, op.stride, bn_key), []).append((row, flat, op.bn))
                    elif getattr(op, "relu_first", False):
                        p.after_relu.append((row, flat, op))
                    else:
                        p.single.append((row, flat, op))
            p.groups = [_ConvGroup(m, K) for m in conv_groups.values()]
            p.groups += [_SepDilGroup(m, K) for m in sepdil_groups.values()]
            for g in p.groups:
                g.buffer_name = f"_scale_index_{src}_{len(self._buffers)}"
                self.register_buffer(g.buffer_name, torch.tensor(g.flat_positions), persistent=False)
            p.pools = [_PoolGroup(mode, stride, uses) for (mode, stride, _), uses in pools.items()]
            p.needs_relu = bool(p.groups or p.after_relu)
            plan.append(p)
        self._fused_plan = plan
        self._row_target = {spec.edge_index[e]: e[1] for e in spec.edges}
        self._pool_cache: dict[tuple, torch.Tensor] = {}
        self._statistics = [s for p in plan for g in p.groups + p.pools for s in g.statistics if s is not None]
        self.refresh_statistics()

    def refresh_statistics(self) -> None:
        """Make the batch norms' buffers the slices of their side-by-side statistics again
        where they were replaced (:class:`SideBySideStatistics`)."""
        for stats in self._statistics:
            stats.refresh()

    def _apply(self, fn, recurse=True):
        module = super()._apply(fn, recurse)
        self.refresh_statistics()  # .to() and .double() replace every buffer
        return module

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
            stacks: dict[tuple, torch.Tensor] = {}  # r (or its phases) stacked n times along the channels
            for g in p.groups:
                y = g.run(r, stacks, flat_w[getattr(self, g.buffer_name)])
                for chunk, row in zip(y.split(g.channels, 1), g.targets):
                    done[target[row]].append(chunk)
            for row, flat in p.identity:
                scaled[target[row]].append((x, flat_w[flat]))
            for pool in p.pools:
                pooled = self._avg_pool(x, pool.stride) if pool.mode == "avg" else F.max_pool2d(x, 3, pool.stride, 1)
                for (row, flat, _), out in zip(pool.uses, pool.outputs(pooled)):
                    scaled[target[row]].append((out, flat_w[flat]))
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


class _PoolGroup:
    """The pooling ops of one kind (mode, stride, batch norm) leaving one node."""

    def __init__(self, mode: str, stride: int, uses: list[tuple[int, int, nn.Module | None]]):
        self.mode, self.stride, self.uses = mode, stride, uses
        self.bns = [bn for _, _, bn in uses]
        self.statistics = [_statistics(self.bns)]

    def outputs(self, pooled: torch.Tensor) -> list[torch.Tensor]:
        """``[pooled if bn is None else bn(pooled) for bn in self.bns]``.

        With batch statistics (training, or no running statistics) every batch norm gives the
        same tensor: it is computed once, and the batch's mean and variance, computed once
        too, update every batch norm's running statistics as the batch norm kernel does.
        """
        bns = self.bns
        first = bns[0]
        if first is None:
            return [pooled] * len(bns)
        if first.track_running_stats and not first.training:
            return [bn(pooled) for bn in bns]
        out = F.batch_norm(pooled, None, None, None, None, True, 0.0, first.eps)
        if self.statistics[0] is not None:
            mean, var, count = self.statistics[0].get()
            with torch.no_grad():
                # in the statistics' precision (under autocast ``pooled`` is bf16), as the kernel does
                stats = torch.batch_norm_update_stats(pooled.to(mean.dtype), None, None, 0.0)
                batch_mean, batch_var = (t.to(mean.dtype) for t in stats)  # CUDA: float32 for half
                n = pooled.numel() // pooled.shape[1]
                mean.view(len(bns), -1).lerp_(batch_mean, first.momentum)
                var.view(len(bns), -1).lerp_(batch_var * (n / (n - 1)), first.momentum)  # unbiased, as batch norm
            count.add_(1)
        return [out] * len(bns)


def _refresh_after_load(cell: MixedCell, incompatible_keys) -> None:
    cell.refresh_statistics()  # load_state_dict(assign=True) replaces the buffers


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
