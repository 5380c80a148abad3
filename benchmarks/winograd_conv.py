#!/usr/bin/env python3
"""Dense 3x3 convolutions: oneDNN's direct kernels (through ATen) vs nasframe's native
Winograd ones (F(4x4, 3x3); F(2x2, 3x3) for the weight gradient on images under 16 pixels),
forward, input gradient and weight gradient.

Times both on the shapes of a NAS-Bench-201 step at batch 64 (C=16, 32, 64; the 3x3
convolutions of the edges leaving one node stacked along the output channels: 3, 2 or 1 edges),
alternating, and prints one line per shape and pass and a JSON summary line. Both see the same
channels-last float32 tensors; the native times include the filter transforms. GFLOP/s count
the direct convolution's FLOPs, so the native rate can exceed what the machine computes.

    python benchmarks/winograd_conv.py --threads 2
"""
from __future__ import annotations

import json
import statistics
import time

import torch
import torch.nn.functional as F

from nasframe_cpu import kernels
from native_step import kernel_arguments

# (N, C_in, C_out, H): NAS-Bench-201's cell convolutions at batch 64
SHAPES = [(64, C, e * C, H) for C, H in ((16, 32), (32, 16), (64, 8)) for e in (3, 2, 1)]


def _backward(go, x, w, mask):
    return torch.ops.aten.convolution_backward(go, x, w, None, [1, 1], [1, 1], [1, 1], False, [0, 0], 1, mask)


def main() -> None:
    a = kernel_arguments(__doc__)
    ratios: dict[str, list[float]] = {"forward": [], "input gradient": [], "weight gradient": []}
    totals = {k: [0.0, 0.0] for k in ratios}
    print(f"{'shape (N, Ci, Co, H)':22s} {'pass':16s} {'aten ms':>8s} {'native ms':>9s} {'speed-up':>8s} "
          f"{'aten GFLOP/s':>12s}")
    for N, ci, co, H in SHAPES:
        fmt = torch.channels_last
        x = torch.randn(N, ci, H, H).contiguous(memory_format=fmt)
        go = torch.randn(N, co, H, H).contiguous(memory_format=fmt)
        w = torch.randn(co, ci, 3, 3).contiguous(memory_format=fmt)
        passes = {
            "forward": (lambda: F.conv2d(x, w, None, 1, 1), lambda: kernels.winograd_conv3x3(x, w)),
            "input gradient": (lambda: _backward(go, x, w, [True, False, False])[0],
                               lambda: kernels.winograd_conv3x3_input_grad(go, w)),
            "weight gradient": (lambda: _backward(go, x, w, [False, True, False])[1],
                                lambda: kernels.winograd_conv3x3_weight_grad(x, go)),
        }
        flops = 2 * N * ci * co * H * H * 9
        for name, (aten, native) in passes.items():
            ref, got = aten(), native()
            err = ((got - ref).abs().max() / ref.abs().max()).item()
            t_aten, t_native = [], []
            for _ in range(a.repeats):
                t = time.perf_counter()
                aten()
                t_aten.append(time.perf_counter() - t)
                t = time.perf_counter()
                native()
                t_native.append(time.perf_counter() - t)
            ta, tn = statistics.median(t_aten), statistics.median(t_native)
            ratios[name].append(ta / tn)
            totals[name][0] += ta
            totals[name][1] += tn
            print(f"{str((N, ci, co, H)):22s} {name:16s} {ta * 1e3:8.2f} {tn * 1e3:9.2f} {ta / tn:7.2f}x "
                  f"{flops / ta / 1e9:12.1f}   (largest difference {err:.1e} of the largest value)")
    print(json.dumps({"threads": torch.get_num_threads(), "shapes": len(SHAPES),
                      "median_speedup": {k: statistics.median(v) for k, v in ratios.items()},
                      "total_time_ratio": {k: t[0] / t[1] for k, t in totals.items()}}))


if __name__ == "__main__":
    main()
