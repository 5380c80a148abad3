#!/usr/bin/env python3
"""Where a search step's time goes, per kind of tensor operation.

Times every ATen call of one step (a ``TorchDispatchMode`` around each call, so the kernels
of the backward pass are counted too) and groups them: convolution forward and backward,
batch norm, matmul, pooling, copies and layout changes, elementwise math. Prints the
plain step time, then the groups, the convolutions by kind (dense, 1x1, depthwise; forward,
input or weight gradient) and the slowest operations by shape. On the DARTS space,
"matmul" is the weight gradient of the grouped 1x1 convolutions (batched matrix products),
and average pooling runs as a box-sum convolution, so it counts as convolution; the native
kernels' operators count as convolutions too: the depthwise weight gradient
(``nasframe.depthwise_weight_grad``) and the Winograd 3x3 convolutions of NAS-Bench-201's cells
(``nasframe.winograd_conv3x3*``, with the FLOPs of the direct convolution they stand in for, so
their rate can exceed the dense convolution's).

    python benchmarks/step_breakdown.py --space darts --mode second --batch 16 --threads 2
    python benchmarks/step_breakdown.py --space nasbench201 --mode first --batch 64 --threads 2

How far each group is from a reference limit of this machine, measured in the same process:
the convolutions' FLOPs (as ``conv_flops.py`` counts them) against the rate of a large dense
3x3 convolution (forward and backward; a forward-only call can beat it), and, for the
memory-bound groups (elementwise, batch norm, copies, pooling), the bytes each call reads and
writes, every operand once, against the DRAM streaming bandwidth (``c = a + b`` on 128 MB
tensors). A convolution's limit is its roofline, the longer of its FLOPs at that peak and its
bytes at that bandwidth (depthwise and small 1x1 convolutions are bound by memory, not
arithmetic). Operands that are still in the caches move faster than DRAM allows (a group can
show more than 100% of the bandwidth; the bandwidth on 4 MB tensors is printed too), so the
limits are reference points, not hard bounds: near 100% means that a faster kernel for the
same operation has little to gain, and that doing less work (fusing passes, moving fewer
bytes) is what is left. The last lines add it up: the operator time with every convolution and
memory-bound call at its limit (or at its own time where it beat the limit; matmul and the
rest as measured), and about what plain step that would leave (the saving scaled by the plain
over the timed step, which the timing hook slows).

The timed step runs slower than a plain one (each call pays the timing hook), so read the
shares, not the absolute sum. On CPUs the torch profiler is no substitute here: it has
charged memory-bound kernels (copies, ReLU backward) with several times their real cost.
"""
from __future__ import annotations

import collections
import statistics
import time

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from conv_flops import DENSE_SHAPE, describe_conv, dense_conv_gflops
from step_time import step_arguments, step_setup

#: ATen operations by base name (``aten.NAME.overload``); ``_foreach_*`` are elementwise
GROUPS = (
    ("convolution forward", {"convolution", "winograd_conv3x3"}),
    ("convolution backward", {"convolution_backward", "depthwise_weight_grad", "winograd_conv3x3_input_grad",
                              "winograd_conv3x3_weight_grad"}),
    ("batch norm", {"native_batch_norm", "native_batch_norm_backward", "batch_norm_update_stats",
                    "_native_batch_norm_legit", "_native_batch_norm_legit_functional"}),
    ("matmul", {"bmm", "mm", "addmm", "baddbmm", "dot", "vdot"}),
    ("pooling", {"max_pool2d_with_indices", "max_pool2d_with_indices_backward", "avg_pool2d",
                 "avg_pool2d_backward"}),
    ("copies and layout", {"cat", "clone", "copy_", "repeat", "constant_pad_nd", "slice_backward", "select_backward",
                           "index", "index_put", "index_put_", "_index_put_impl_", "fill_", "zero_", "zeros",
                           "zeros_like", "new_zeros", "_to_copy", "stack", "index_select", "gather", "scatter",
                           "scatter_add"}),
    ("elementwise", {"add", "add_", "mul", "mul_", "sub", "sub_", "div", "div_", "addcmul", "addcmul_", "addcdiv",
                     "addcdiv_", "relu", "relu_", "threshold_backward", "sum", "mean", "neg", "exp", "_softmax",
                     "_softmax_backward_data", "_log_softmax", "_log_softmax_backward_data", "clamp", "clamp_min",
                     "clamp_min_", "sqrt", "pow", "where", "linalg_vector_norm", "sign", "log", "sigmoid", "lerp_",
                     "nll_loss_forward", "nll_loss_backward", "reciprocal", "rsqrt", "maximum", "minimum", "lt", "gt",
                     "eq", "ne", "ge", "le", "abs", "masked_fill", "masked_fill_"}),
)


def group_of(name: str) -> str:
    """The group of an operation named ``NAMESPACE.NAME.overload`` (``other``: views,
    allocation and anything not listed)."""
    base = name.split(".")[1] if name.count(".") >= 1 else name
    if base.startswith("_foreach_"):
        return "elementwise"
    for group, names in GROUPS:
        if base in names:
            return group
    return "other"


#: groups whose kernels stream over their operands, where bytes per second is the measure
MEMORY_BOUND = ("elementwise", "batch norm", "copies and layout", "pooling")


#: operations that only write their first operand
WRITE_ONLY_FIRST = {"copy_", "fill_", "zero_"}


def nbytes(obj) -> int:
    """Bytes of the tensors in ``obj`` (a tensor, or a list or tuple of them), each counted
    once; an expanded (stride-0) dimension counts once."""
    if isinstance(obj, torch.Tensor):
        n = obj.numel()
        for size, stride in zip(obj.shape, obj.stride()):
            if stride == 0 and size:
                n //= size
        return n * obj.element_size()
    if isinstance(obj, (list, tuple)):
        return sum(nbytes(o) for o in obj)
    return 0


def call_bytes(func, args, kwargs, out) -> int:
    """The bytes a call reads and writes, every operand once: its inputs, and its outputs
    (an ``out=`` tensor once; the first operand of ``copy_``, ``fill_``, ``zero_`` is only
    written)."""
    moved = nbytes(list(args)) + nbytes([v for k, v in kwargs.items() if k != "out"]) + nbytes(out)
    if func._opname in WRITE_ONLY_FIRST and args:
        moved -= nbytes(args[0])
    return moved


#: the tensors of the DRAM bandwidth measure, far larger than the caches; and of the cached one
DRAM_MB, CACHED_MB = 128, 4


def streaming_bandwidth(mb: int = DRAM_MB, repeats: int = 10) -> float:
    """GB/s of ``c = a + b`` on float32 tensors of ``mb`` MB (three operand passes), best of
    ``repeats``: what a plain streaming kernel reaches from memory at the current threads."""
    n = mb * 2**20 // 4
    a, b, c = torch.randn(n), torch.randn(n), torch.empty(n)
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        torch.add(a, b, out=c)
        best = min(best, time.perf_counter() - t)
    return 3 * n * 4 / best / 1e9


def _shape(arg):
    if isinstance(arg, torch.Tensor):
        return tuple(arg.shape)
    if isinstance(arg, (list, tuple)) and arg and isinstance(arg[0], torch.Tensor):
        return f"{len(arg)} x {tuple(arg[0].shape)}"
    return None


class OpStats:
    """What one operation (or a group of them) did in a step."""

    __slots__ = ("calls", "seconds", "bytes", "flops", "seconds_at_limit")

    def __init__(self):
        self.calls, self.seconds, self.bytes, self.flops, self.seconds_at_limit = 0, 0.0, 0, 0, 0.0

    def add(self, other: "OpStats") -> None:
        for name in self.__slots__:
            setattr(self, name, getattr(self, name) + getattr(other, name))


class OpTimer(TorchDispatchMode):
    """Per operation and shapes, an :class:`OpStats`: calls, seconds, bytes (operands once),
    convolution FLOPs and, given the machine's ``peak`` (GFLOP/s) and ``bandwidth`` (GB/s), the
    seconds at its limit: a call's roofline, ``max(FLOPs / peak, bytes / bandwidth)``, or its
    own time if shorter. Per convolution kind (:func:`conv_flops.describe_conv`), another."""

    def __init__(self, peak: float = float("inf"), bandwidth: float = float("inf")):
        super().__init__()
        self.peak, self.bandwidth = peak * 1e9, bandwidth * 1e9
        self.by_op: dict[tuple[str, str], OpStats] = collections.defaultdict(OpStats)
        self.by_conv_kind: dict[str, OpStats] = collections.defaultdict(OpStats)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        t0 = time.perf_counter()
        out = func(*args, **kwargs)
        dt = time.perf_counter() - t0
        shapes = [_shape(a) for a in args if _shape(a) is not None][:2]
        call = OpStats()
        call.calls, call.seconds, call.bytes = 1, dt, call_bytes(func, args, kwargs, out)
        conv = describe_conv(func, args, out)
        call.flops = 0 if conv is None else conv[1]
        # a call that beats the bandwidth (operands still in the caches) is at its limit already
        call.seconds_at_limit = min(dt, max(call.flops / self.peak, call.bytes / self.bandwidth))
        self.by_op[(str(func), str(shapes))].add(call)
        if conv is not None:
            self.by_conv_kind[conv[0]].add(call)
        return out


def main() -> None:
    ap = step_arguments(__doc__, space="darts", batch=16)
    ap.add_argument("--steps", type=int, default=3, help="plain steps timed before the broken-down one")
    ap.add_argument("--top", type=int, default=12, help="operations (by shape) listed")
    a = ap.parse_args()
    if a.steps < 1:
        ap.error("--steps must be at least 1")
    opt, (xt, yt), (xv, yv) = step_setup(a)
    opt.step((xt, yt), (xv, yv))  # warm-up: primitive caches, allocator
    plain = []
    for _ in range(a.steps):
        t0 = time.perf_counter()
        opt.step((xt, yt), (xv, yv))
        plain.append(time.perf_counter() - t0)
    bandwidth = streaming_bandwidth()
    cached = streaming_bandwidth(CACHED_MB, repeats=50)
    peak = dense_conv_gflops()
    timer = OpTimer(peak, bandwidth)
    t0 = time.perf_counter()
    with timer:
        opt.step((xt, yt), (xv, yv))
    timed = time.perf_counter() - t0
    plain_s = statistics.median(plain)

    total = sum(v.seconds for v in timer.by_op.values())
    calls = sum(v.calls for v in timer.by_op.values())
    groups: dict[str, OpStats] = collections.defaultdict(OpStats)
    for (name, _), stats in timer.by_op.items():
        groups[group_of(name)].add(stats)
    print(f"{a.optimizer}, {a.space}, {a.mode} order, batch {a.batch}, {torch.get_num_threads()} threads")
    print(f"plain step: {plain_s:.3f} s (median of {a.steps}); "
          f"timed step: {timed:.3f} s, {calls} ATen calls, {total:.3f} s inside them")
    print(f"{'group':22s} {'share':>6s} {'s/step':>7s} {'calls':>6s}   work per step, rate, share of the limit")
    at_limit = 0.0
    for name, g in sorted(groups.items(), key=lambda kv: -kv[1].seconds):
        t = g.seconds
        row = f"{name:22s} {100 * t / total:5.1f}% {t:7.3f} {g.calls:6d}"
        if name.startswith("convolution") and t > 0:
            row += (f" {g.flops / 1e9:8.2f} GFLOP {g.flops / t / 1e9:6.1f} GFLOP/s {100 * g.flops / t / 1e9 / peak:4.0f}%"
                    f" of peak, {100 * g.seconds_at_limit / t:.0f}% of roofline")
            at_limit += g.seconds_at_limit
        elif name in MEMORY_BOUND and t > 0:
            row += (f" {g.bytes / 1e9:8.2f} GB    {g.bytes / t / 1e9:6.1f} GB/s    "
                    f"{100 * g.bytes / t / 1e9 / bandwidth:4.0f}% of bandwidth")
            at_limit += g.seconds_at_limit
        else:
            at_limit += t
        print(row)
    print(f"limits: dense 3x3 convolution ({'x'.join(map(str, DENSE_SHAPE))}x{DENSE_SHAPE[-1]}, forward and "
          f"backward) {peak:.1f} GFLOP/s; DRAM streaming bandwidth (c = a + b, {DRAM_MB} MB float32 tensors) "
          f"{bandwidth:.1f} GB/s ({cached:.1f} GB/s on {CACHED_MB} MB tensors, in the caches); a convolution's "
          f"roofline is the longer of its FLOPs at that peak and its bytes at that bandwidth, capped at its own time")
    saved = (total - at_limit) * min(1.0, plain_s / timed)
    print(f"at those limits the operator calls would take {at_limit:.3f} s instead of {total:.3f} s "
          f"({100 * (1 - at_limit / total):.0f}% less; matmul and the rest as measured), with the same operations: "
          f"a plain step of about {plain_s - saved:.3f} s instead of {plain_s:.3f} s ({100 * saved / plain_s:.0f}% less; "
          f"the saving scaled by plain / timed step, for the cost of the timing hook)")
    print("convolutions by kind (share of the time inside ATen calls):")
    for kind, stats in sorted(timer.by_conv_kind.items(), key=lambda kv: -kv[1].seconds):
        print(f"  {100 * stats.seconds / total:5.1f}% {stats.calls:5d}x {kind}")
    if a.top > 0:
        print(f"slowest {a.top} operations by shape (share of the time inside ATen calls):")
    for (name, shapes), stats in sorted(timer.by_op.items(), key=lambda kv: -kv[1].seconds)[: a.top]:
        print(f"  {100 * stats.seconds / total:5.1f}% {stats.calls:5d}x {name} {shapes}")


if __name__ == "__main__":
    main()
