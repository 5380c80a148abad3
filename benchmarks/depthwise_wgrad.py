#!/usr/bin/env python3
"""The depthwise weight gradient: oneDNN's kernel (through ATen) vs nasframe's native one.

Times both on the shapes a DARTS-space step runs (batch 16 and 64, C=16; channels stacked
per node; dilated convolutions as phase images), alternating, and prints one line per shape
and a JSON summary line. Both see the same channels-last float32 tensors.

    python benchmarks/depthwise_wgrad.py --threads 2
"""
from __future__ import annotations

import json
import statistics
import time

import torch

from nasframe_cpu import kernels
from native_step import kernel_arguments

# (N, C, H, kernel): the weight gradients of the sep/dil convolutions of a DARTS-space step
SHAPES = [
    (16, 64, 32, 5), (16, 128, 16, 5), (16, 256, 8, 5), (64, 64, 16, 5), (16, 48, 32, 5), (64, 128, 8, 5),
    (64, 64, 32, 5), (16, 64, 32, 3), (16, 128, 16, 3), (64, 64, 32, 3), (64, 128, 16, 3),
]


def aten_weight_grad(x: torch.Tensor, go: torch.Tensor, k: int) -> torch.Tensor:
    w = torch.empty(x.shape[1], 1, k, k)
    return torch.ops.aten.convolution_backward(go, x, w, None, [1, 1], [k // 2] * 2, [1, 1], False, [0, 0],
                                               x.shape[1], [False, True, False])[1]


def main() -> None:
    a = kernel_arguments(__doc__)
    ratios = []
    print(f"{'shape (N, C, H, k)':22s} {'aten ms':>8s} {'native ms':>9s} {'speed-up':>8s} {'native GFLOP/s':>14s}")
    for N, C, H, k in SHAPES:
        x = torch.randn(N, C, H, H).contiguous(memory_format=torch.channels_last)
        go = torch.randn(N, C, H, H).contiguous(memory_format=torch.channels_last)
        ref = aten_weight_grad(x, go, k)
        err = ((kernels.depthwise_weight_grad(x, go, k, k // 2) - ref).abs().max() / ref.abs().max()).item()
        t_aten, t_native = [], []
        for _ in range(a.repeats):
            t = time.perf_counter()
            aten_weight_grad(x, go, k)
            t_aten.append(time.perf_counter() - t)
            t = time.perf_counter()
            kernels.depthwise_weight_grad(x, go, k, k // 2)
            t_native.append(time.perf_counter() - t)
        ta, tn = statistics.median(t_aten), statistics.median(t_native)
        ratios.append(ta / tn)
        flops = 2 * N * C * H * H * k * k
        print(f"{str((N, C, H, k)):22s} {ta * 1e3:8.2f} {tn * 1e3:9.2f} {ta / tn:7.2f}x {flops / tn / 1e9:14.1f}"
              f"   (largest difference {err:.1e} of the largest value)")
    print(json.dumps({"threads": torch.get_num_threads(), "shapes": len(SHAPES),
                      "median_speedup": statistics.median(ratios), "min_speedup": min(ratios)}))


if __name__ == "__main__":
    main()
