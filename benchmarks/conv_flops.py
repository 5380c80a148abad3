#!/usr/bin/env python3
"""How far a search step is from the machine's limit: convolution FLOP/s achieved vs peak.

Counts the convolution FLOPs of one search step (forward and backward, as the optimizer
runs it; a dispatch mode counts every ATen convolution call and the native kernels' calls,
the Winograd convolutions as the direct convolutions they stand in for), times the step, and times a
large dense 3x3 convolution (forward and backward) to measure what this machine's
convolution kernels reach. Prints one JSON line.

    python benchmarks/conv_flops.py --space darts --mode first --batch 16 --threads 2
"""
from __future__ import annotations

import json
import math
import statistics
import time
from typing import Optional

import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode

from step_time import step_arguments, step_setup


NATIVE_WEIGHT_GRAD = "nasframe.depthwise_weight_grad.default"
#: the native Winograd 3x3 convolution's operators: what each computes, and which of its
#: arguments hold the output-side tensor and the weight shape
WINOGRAD = {
    "nasframe.winograd_conv3x3.default": "forward",
    "nasframe.winograd_conv3x3_input_grad.default": "input gradient",
    "nasframe.winograd_conv3x3_weight_grad.default": "weight gradient",
}


def forward_flops(out_shape, weight_shape) -> int:
    """FLOPs (2 per multiply-add) of a convolution forward (1-D, 2-D or 3-D) with this output
    and weight."""
    return 2 * math.prod(out_shape) * math.prod(weight_shape[1:])


def describe_conv(func, args, out) -> Optional[tuple[str, int]]:
    """``(kind, FLOPs)`` of a convolution call, None for any other call. The kind says what
    the call computes (``depthwise 5x5 forward``, ``grouped 1x1 input gradient``, ``dense 3x3
    input and weight gradients``, ``... (native)``); the FLOPs count one forward per gradient
    a backward call computes, grouped convolutions as what they compute. A transposed
    convolution (as in the double backward of one) costs what its input shape says."""
    name = str(func)
    if name == NATIVE_WEIGHT_GRAD:  # (x, grad_out, kernel_size, padding): one gradient
        x, grad_out, k = args[0], args[1], args[2]
        return f"depthwise {k}x{k} weight gradient (native)", forward_flops(grad_out.shape, (x.shape[1], 1, k, k))
    if name in WINOGRAD:  # counted as the direct convolution it stands in for
        what = WINOGRAD[name]
        if what == "weight gradient":  # (x, grad_out)
            shape, weight_shape = args[1].shape, (args[1].shape[1], args[0].shape[1], 3, 3)
        else:  # (x, weight) or (grad_out, weight)
            shape, weight_shape = (out.shape if what == "forward" else args[0].shape), args[1].shape
        return f"dense 3x3 {what} (Winograd, native)", forward_flops(shape, weight_shape)
    if func is torch.ops.aten.convolution.default:
        # (input, weight, bias, stride, padding, dilation, transposed, output_padding, groups)
        x, weight, transposed, groups = args[0], args[1], args[6], args[8]
        what, passes, shape = "forward", 1, (x.shape if transposed else out.shape)
    elif func is torch.ops.aten.convolution_backward.default:
        # (grad_output, input, weight, bias_sizes, stride, padding, dilation, transposed, output_padding,
        #  groups, output_mask)
        weight, transposed, groups, mask = args[2], args[7], args[9], args[10]
        passes = int(mask[0]) + int(mask[1])
        what = {(True, False): "input gradient", (False, True): "weight gradient",
                (True, True): "input and weight gradients"}.get((bool(mask[0]), bool(mask[1])), "no gradient")
        shape = args[1].shape if transposed else args[0].shape
    else:
        return None
    k = "x".join(str(d) for d in weight.shape[2:])
    if transposed:
        kind = f"transposed {k}"
    elif weight.shape[1] == 1 and groups > 1:
        kind = f"depthwise {k}"
    elif all(d == 1 for d in weight.shape[2:]):
        kind = "1x1" if groups == 1 else "grouped 1x1"
    else:
        kind = f"dense {k}" if groups == 1 else f"grouped {k}"
    return f"{kind} {what}", forward_flops(shape, weight.shape) * passes


def call_flops(func, args, out) -> int:
    """Convolution FLOPs of one operator call (0 for anything else; see :func:`describe_conv`)."""
    described = describe_conv(func, args, out)
    return 0 if described is None else described[1]


class ConvFlops(TorchDispatchMode):
    """Counts the convolution FLOPs of every call (:func:`call_flops`)."""

    def __init__(self):
        super().__init__()
        self.flops = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        self.flops += call_flops(func, args, out)
        return out


#: the dense 3x3 convolution that measures the machine's convolution rate: batch, channels, size
DENSE_SHAPE = (32, 256, 16)


def dense_conv_gflops(batch: int = DENSE_SHAPE[0], channels: int = DENSE_SHAPE[1], size: int = DENSE_SHAPE[2],
                      repeats: int = 3) -> float:
    """GFLOP/s of forward + backward of a dense 3x3 convolution, channels-last (the layout of
    the step), best of ``repeats``."""
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
    peak = dense_conv_gflops()
    achieved = conv_flops / step_s / 1e9
    print(json.dumps({"optimizer": a.optimizer, "space": a.space, "mode": a.mode, "batch": a.batch, "threads": torch.get_num_threads(),
                      "conv_gflop_per_step": conv_flops / 1e9,
                      "step_s": step_s, "achieved_conv_gflops": achieved, "dense_conv_gflops": peak,
                      "fraction_of_peak": achieved / peak}))


if __name__ == "__main__":
    main()
