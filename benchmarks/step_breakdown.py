#!/usr/bin/env python3
"""Where a search step's time goes, per kind of tensor operation.

Times every ATen call of one step (a ``TorchDispatchMode`` around each call, so the kernels
of the backward pass are counted too) and groups them: convolution forward and backward,
batch norm, matmul, pooling, copies and layout changes, elementwise math. Prints the
plain step time, then the groups, the convolutions by kind (dense, 1x1, depthwise; forward,
input or weight gradient) and the slowest operations by shape. On the DARTS space,
"matmul" is the weight gradient of the grouped 1x1 convolutions (batched matrix products),
and average pooling runs as a box-sum convolution, so it counts as convolution; the native
depthwise weight gradient (``nasframe.depthwise_weight_grad``) is convolution backward.

    python benchmarks/step_breakdown.py --space darts --mode second --batch 16 --threads 2
    python benchmarks/step_breakdown.py --space nasbench201 --mode first --batch 64 --threads 2

How far each group is from the machine's limit, measured in the same process: the
convolutions' FLOPs (as ``conv_flops.py`` counts them) against the rate of a large dense 3x3
convolution, and, for the memory-bound groups (elementwise, batch norm, copies, pooling), the
bytes each call reads and writes, every operand once (a lower bound on its memory traffic),
against the streaming bandwidth (``c = a + b`` on tensors far larger than the caches); a
convolution's limit is its roofline, the longer of its FLOPs at that peak and its bytes at
that bandwidth (depthwise and small 1x1 convolutions are bound by memory, not arithmetic). A
group near 100% is at the limit: only doing less work (fusing passes, moving fewer bytes)
makes it faster. The last line adds it up: the time the calls would take with every group at
its limit.

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

from conv_flops import call_flops, dense_conv_gflops
from step_time import step_arguments, step_setup

#: ATen operations by base name (``aten.NAME.overload``); ``_foreach_*`` are elementwise
GROUPS = (
    ("convolution forward", {"convolution"}),
    ("convolution backward", {"convolution_backward", "depthwise_weight_grad"}),
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


def nbytes(obj) -> int:
    """Bytes of the tensors in ``obj`` (a tensor, or a list or tuple of them), each counted once."""
    if isinstance(obj, torch.Tensor):
        return obj.numel() * obj.element_size()
    if isinstance(obj, (list, tuple)):
        return sum(nbytes(o) for o in obj)
    return 0


def streaming_bandwidth(mb: int = 128, repeats: int = 10) -> float:
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


def conv_kind(func, args) -> str | None:
    """What a convolution call computes, for the split by kind: ``depthwise 5x5 forward``,
    ``1x1 input gradient``, ``dense 3x3 input and weight gradients``, ... (None: not one)."""
    name = str(func)
    if name == "nasframe.depthwise_weight_grad.default":
        return f"depthwise {args[2]}x{args[2]} weight gradient (native)"
    if func is torch.ops.aten.convolution.default:
        weight, groups, what = args[1], args[8], "forward"
    elif func is torch.ops.aten.convolution_backward.default:
        weight, groups, mask = args[2], args[9], args[-1]
        what = {(True, False): "input gradient", (False, True): "weight gradient"}.get(
            (bool(mask[0]), bool(mask[1])), "input and weight gradients")
    else:
        return None
    k = f"{weight.shape[2]}x{weight.shape[3]}"
    if weight.shape[1] == 1 and groups > 1:
        kind = f"depthwise {k}"
    elif weight.shape[2] == weight.shape[3] == 1:
        kind = "1x1" if groups == 1 else "grouped 1x1"
    else:
        kind = f"dense {k}" if groups == 1 else f"grouped {k}"
    return f"{kind} {what}"


def _shape(arg):
    if isinstance(arg, torch.Tensor):
        return tuple(arg.shape)
    if isinstance(arg, (list, tuple)) and arg and isinstance(arg[0], torch.Tensor):
        return f"{len(arg)} x {tuple(arg[0].shape)}"
    return None


class OpTimer(TorchDispatchMode):
    """Per operation and shapes: calls, seconds, bytes (operands once), convolution FLOPs and,
    given the machine's ``peak`` (GFLOP/s) and ``bandwidth`` (GB/s), the seconds at its limit:
    a call's roofline, ``max(FLOPs / peak, bytes / bandwidth)``, or its own time if shorter."""

    def __init__(self, peak: float = float("inf"), bandwidth: float = float("inf")):
        super().__init__()
        self.peak, self.bandwidth = peak * 1e9, bandwidth * 1e9
        self.by_op = collections.defaultdict(lambda: [0, 0.0, 0, 0, 0.0])
        self.by_conv_kind = collections.defaultdict(lambda: [0, 0.0])  # calls, seconds

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        t0 = time.perf_counter()
        out = func(*args, **kwargs)
        dt = time.perf_counter() - t0
        shapes = [_shape(a) for a in args if _shape(a) is not None][:2]
        entry = self.by_op[(str(func), str(shapes))]
        entry[0] += 1
        entry[1] += dt
        moved = nbytes(list(args)) + nbytes(list(kwargs.values())) + nbytes(out)
        flops = call_flops(func, args, out)
        entry[2] += moved
        entry[3] += flops
        # a call that beats the bandwidth (operands still in the caches) is at its limit already
        entry[4] += min(dt, max(flops / self.peak, moved / self.bandwidth))
        kind = conv_kind(func, args)
        if kind is not None:
            self.by_conv_kind[kind][0] += 1
            self.by_conv_kind[kind][1] += dt
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
    peak = dense_conv_gflops(32, 256, 16, 3)
    timer = OpTimer(peak, bandwidth)
    t0 = time.perf_counter()
    with timer:
        opt.step((xt, yt), (xv, yv))
    timed = time.perf_counter() - t0

    total = sum(v[1] for v in timer.by_op.values())
    calls = sum(v[0] for v in timer.by_op.values())
    groups = collections.defaultdict(lambda: [0, 0.0, 0, 0, 0.0])
    for (name, _), entry in timer.by_op.items():
        g = groups[group_of(name)]
        for i, v in enumerate(entry):
            g[i] += v
    print(f"{a.optimizer}, {a.space}, {a.mode} order, batch {a.batch}, {torch.get_num_threads()} threads")
    print(f"plain step: {statistics.median(plain):.3f} s (median of {a.steps}); "
          f"timed step: {timed:.3f} s, {calls} ATen calls, {total:.3f} s inside them")
    print(f"{'group':22s} {'share':>6s} {'s/step':>7s} {'calls':>6s}   work per step, rate, share of the limit")
    at_limit = 0.0
    for name, (n, t, b, f, lim) in sorted(groups.items(), key=lambda kv: -kv[1][1]):
        row = f"{name:22s} {100 * t / total:5.1f}% {t:7.3f} {n:6d}"
        if name.startswith("convolution") and t > 0:
            row += (f" {f / 1e9:8.2f} GFLOP {f / t / 1e9:6.1f} GFLOP/s {100 * f / t / 1e9 / peak:4.0f}% of peak, "
                    f"{100 * lim / t:.0f}% of roofline")
            at_limit += lim
        elif name in MEMORY_BOUND and t > 0:
            row += f" {b / 1e9:8.2f} GB    {b / t / 1e9:6.1f} GB/s    {100 * b / t / 1e9 / bandwidth:4.0f}% of bandwidth"
            at_limit += lim
        else:
            at_limit += t
        print(row)
    print(f"limits: dense 3x3 convolution (32x256x16x16, forward and backward) {peak:.1f} GFLOP/s; streaming "
          f"bandwidth (c = a + b, 128 MB float32 tensors) {bandwidth:.1f} GB/s; a convolution's roofline is the "
          f"longer of its FLOPs at that peak and its bytes at that bandwidth")
    print(f"at those limits the calls would take {at_limit:.3f} s instead of {total:.3f} s "
          f"({100 * (1 - at_limit / total):.0f}% less), with the same operations")
    print("convolutions by kind (share of the time inside ATen calls):")
    for kind, (n, t) in sorted(timer.by_conv_kind.items(), key=lambda kv: -kv[1][1]):
        print(f"  {100 * t / total:5.1f}% {n:5d}x {kind}")
    if a.top > 0:
        print(f"slowest {a.top} operations by shape (share of the time inside ATen calls):")
    for (name, shapes), (n, t, *_) in sorted(timer.by_op.items(), key=lambda kv: -kv[1][1])[: a.top]:
        print(f"  {100 * t / total:5.1f}% {n:5d}x {name} {shapes}")


if __name__ == "__main__":
    main()
