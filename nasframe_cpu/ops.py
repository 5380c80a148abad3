"""The native kernels as the core's convolution provider (:func:`nasframe_core.ops.use_native_convolutions`)."""
from __future__ import annotations

import torch

from . import kernels


class WinogradConv3x3(torch.autograd.Function):
    """``F.conv2d(x, weight, None, 1, 1)`` whose forward pass, input gradient and weight
    gradient run in the native Winograd kernels (:func:`nasframe_cpu.kernels.winograd_conv3x3`):
    ``WinogradConv3x3.apply(x, weight)``. Under ``create_graph`` the backward pass is ATen's
    (it is differentiable)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x, weight)
        return kernels.winograd_conv3x3(x, weight)

    @staticmethod
    def backward(ctx, go: torch.Tensor):
        x, weight = ctx.saved_tensors
        want_x, want_w = ctx.needs_input_grad[:2]
        if torch.is_grad_enabled():  # create_graph: a backward pass that can be differentiated again
            gx, gw, _ = torch.ops.aten.convolution_backward(go, x, weight, None, [1, 1], [1, 1], [1, 1], False,
                                                            [0, 0], 1, [want_x, want_w, False])
            return gx, gw
        gx = kernels.winograd_conv3x3_input_grad(go, weight) if want_x else None
        gw = kernels.winograd_conv3x3_weight_grad(x, go) if want_w else None
        return gx, gw


class NativeConvolutions:
    """What :func:`nasframe_core.ops.use_native_convolutions` takes, backed by :mod:`nasframe_cpu.kernels`:
    the weight gradient of depthwise convolutions (stride 1, undilated, square 3x3 or 5x5, CPU
    float32 channels-last, channels a multiple of 8) and dense 3x3 convolutions by Winograd's
    F(4x4, 3x3) (CPU float32 channels-last, channels multiples of 8)."""

    @staticmethod
    def accepts_depthwise(x: torch.Tensor, kernel_size: int, padding: int) -> bool:
        return kernels.accepts(x, kernel_size, padding)

    @staticmethod
    def depthwise_weight_grad(x, grad_out, weight, padding, groups):
        return kernels.depthwise_weight_grad(x, grad_out, weight.shape[-1], padding)

    @staticmethod
    def accepts_conv3x3(x: torch.Tensor, weight: torch.Tensor) -> bool:
        return kernels.winograd_accepts(x, weight)

    @staticmethod
    def conv3x3(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        return WinogradConv3x3.apply(x, weight)
