#!/usr/bin/env python3
"""Where a search step's time goes, per kind of tensor operation.

Times every ATen call of one step (a ``TorchDispatchMode`` around each call, so the kernels
of the backward pass are counted too) and groups them: convolution forward and backward,
batch norm, matmul, pooling, copies and layout changes, elementwise math. Prints the
plain step time, then the groups and the slowest operations by shape. On the DARTS space,
"matmul" is the weight gradient of the grouped 1x1 convolutions (batched matrix products),
and average pooling runs as a box-sum convolution, so it counts as convolution; the native
depthwise weight gradient (``nasframe.depthwise_weight_grad``) is convolution backward.

    python benchmarks/step_breakdown.py --space darts --mode second --batch 16 --threads 2
    python benchmarks/step_breakdown.py --space nasbench201 --mode first --batch 64 --threads 2

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


def _shape(arg):
    if isinstance(arg, torch.Tensor):
        return tuple(arg.shape)
    if isinstance(arg, (list, tuple)) and arg and isinstance(arg[0], torch.Tensor):
        return f"{len(arg)} x {tuple(arg[0].shape)}"
    return None


class OpTimer(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.by_op = collections.defaultdict(lambda: [0, 0.0])

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        t0 = time.perf_counter()
        out = func(*args, **(kwargs or {}))
        dt = time.perf_counter() - t0
        shapes = [_shape(a) for a in args if _shape(a) is not None][:2]
        entry = self.by_op[(str(func), str(shapes))]
        entry[0] += 1
        entry[1] += dt
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
    timer = OpTimer()
    t0 = time.perf_counter()
    with timer:
        opt.step((xt, yt), (xv, yv))
    timed = time.perf_counter() - t0

    total = sum(v[1] for v in timer.by_op.values())
    calls = sum(v[0] for v in timer.by_op.values())
    groups = collections.defaultdict(lambda: [0, 0.0])
    for (name, _), (n, t) in timer.by_op.items():
        g = groups[group_of(name)]
        g[0] += n
        g[1] += t
    print(f"{a.optimizer}, {a.space}, {a.mode} order, batch {a.batch}, {torch.get_num_threads()} threads")
    print(f"plain step: {statistics.median(plain):.3f} s (median of {a.steps}); "
          f"timed step: {timed:.3f} s, {calls} ATen calls, {total:.3f} s inside them")
    print(f"{'group':22s} {'share':>6s} {'s/step':>7s} {'calls':>6s}")
    for name, (n, t) in sorted(groups.items(), key=lambda kv: -kv[1][1]):
        print(f"{name:22s} {100 * t / total:5.1f}% {t:7.3f} {n:6d}")
    if a.top > 0:
        print(f"slowest {a.top} operations by shape (share of the time inside ATen calls):")
    for (name, shapes), (n, t) in sorted(timer.by_op.items(), key=lambda kv: -kv[1][1])[: a.top]:
        print(f"  {100 * t / total:5.1f}% {n:5d}x {name} {shapes}")


if __name__ == "__main__":
    main()
