#!/usr/bin/env python3
"""How far a search step is from the machine's limit: convolution FLOP/s achieved vs peak.

Counts the convolution FLOPs of one search step (forward and backward, as the optimizer
runs it; a dispatch mode counts every ATen convolution call and the native depthwise weight
gradient), times the step, and times a
large dense 3x3 convolution (forward and backward) to measure what this machine's
convolution kernels reach. Prints one JSON line.

    python benchmarks/conv_flops.py --space darts --mode first --batch 16 --threads 2
"""
from __future__ import annotations

import json
import statistics
import time

import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode

from step_time import step_arguments, step_setup


def forward_flops(out_shape, weight_shape) -> int:
    """FLOPs (2 per multiply-add) of a convolution forward with this output and weight."""
    n, c_out, h, w = out_shape
    return 2 * n * c_out * h * w * weight_shape[1] * weight_shape[2] * weight_shape[3]


def call_flops(func, args, out) -> int:
    """Convolution FLOPs of one operator call (0 for anything else), grouped convolutions
    included: a backward call costs one forward per gradient it computes (input, weight);
    the native depthwise weight gradient, one."""
    if func is torch.ops.aten.convolution.default:
        return forward_flops(out.shape, args[1].shape)
    if func is torch.ops.aten.convolution_backward.default:
        grad_out, weight, mask = args[0], args[2], args[-1]
        return forward_flops(grad_out.shape, weight.shape) * (int(mask[0]) + int(mask[1]))
    if str(func) == "nasframe.depthwise_weight_grad.default":
        x, grad_out, k = args[0], args[1], args[2]
        return forward_flops(grad_out.shape, (x.shape[1], 1, k, k))
    return 0


class ConvFlops(TorchDispatchMode):
    """Counts the convolution FLOPs of every call (:func:`call_flops`)."""

    def __init__(self):
        super().__init__()
        self.flops = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        self.flops += call_flops(func, args, out)
        return out


def dense_conv_gflops(batch: int, channels: int, size: int, repeats: int) -> float:
    """Forward + backward of a dense 3x3 convolution, channels-last (the layout of the step)."""
    fmt = torch.channels_last
    x = torch.randn(batch, channels, size, size).to(memory_format=fmt).requires_grad_()
    w = torch.randn(channels, channels, 3, 3).to(memory_format=fmt).requires_grad_()
    flops = 3 * 2 * batch * channels * channels * 9 * size * size  # forward, input and weight gradients
    times = []
    for _ in range(repeats + 1):
        t = time.perf_counter()
        y = F.conv2d(x, w, None, 1, 1)
        torch.autograd.grad(y, (x, w), torch.ones_like(y))
        times.append(time.perf_counter() - t)
    return flops / min(times[1:]) / 1e9


def main() -> None:
    ap = step_arguments(__doc__, space="darts", batch=16)
    ap.add_argument("--steps", type=int, default=3)
    a = ap.parse_args()
    opt, (xt, yt), (xv, yv) = step_setup(a)
    opt.step((xt, yt), (xv, yv))  # warm-up
    counter = ConvFlops()
    with counter:
        opt.step((xt, yt), (xv, yv))
    conv_flops = counter.flops
    times = []
    for _ in range(a.steps):
        t = time.perf_counter()
        opt.step((xt, yt), (xv, yv))
        times.append(time.perf_counter() - t)
    step_s = statistics.median(times)
    peak = dense_conv_gflops(32, 256, 16, 3)
    achieved = conv_flops / step_s / 1e9
    print(json.dumps({"optimizer": a.optimizer, "space": a.space, "mode": a.mode, "batch": a.batch, "threads": torch.get_num_threads(),
                      "conv_gflop_per_step": conv_flops / 1e9,
                      "step_s": step_s, "achieved_conv_gflops": achieved, "dense_conv_gflops": peak,
                      "fraction_of_peak": achieved / peak}))


if __name__ == "__main__":
    main()
