"""The shared candidate ops: the dilated depthwise convolution's CPU rewrite is the same math."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from nasframe_core import ops
from nasframe_core.ops import DilConv, depthwise_conv2d

CASES = [
    # (N, C, H, W, kernel, stride, dilation, rewritten)
    (2, 3, 8, 8, 3, 1, 2, True),
    (2, 3, 8, 6, 5, 1, 2, True),
    (2, 4, 9, 9, 3, 1, 3, True),
    (2, 3, 8, 8, 5, 2, 2, True),
    (2, 3, 9, 7, 3, 2, 2, True),   # odd sizes at stride d: the (0, 0) phase has ceil(H/d) rows
    (2, 3, 7, 8, 3, 1, 2, False),  # H not a multiple of d at stride 1: runs as given
    (2, 3, 8, 8, 3, 2, 1, False),  # no dilation: runs as given
]


def conv_dilations(monkeypatch) -> list:
    seen = []
    conv2d = F.conv2d

    def recording(x, w, b=None, stride=1, padding=0, dilation=1, groups=1):
        seen.append(tuple(dilation) if isinstance(dilation, (tuple, list)) else (dilation, dilation))
        return conv2d(x, w, b, stride, padding, dilation, groups)

    monkeypatch.setattr(ops.F, "conv2d", recording)
    return seen


@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "channels_last"])
@pytest.mark.parametrize("case", CASES, ids=[str(c[:7]) for c in CASES])
def test_depthwise_conv2d_equals_the_dilated_convolution(case, channels_last, monkeypatch):
    N, C, H, W, k, s, d, rewritten = case
    g = torch.Generator().manual_seed(0)
    x = torch.randn(N, C, H, W, generator=g, dtype=torch.float64)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    x.requires_grad_()
    w = torch.randn(C, 1, k, k, generator=g, dtype=torch.float64, requires_grad=True)
    pad = d * (k - 1) // 2
    expected = F.conv2d(x, w, None, s, pad, d, C)
    seen = conv_dilations(monkeypatch)
    out = depthwise_conv2d(x, w, s, pad, d)
    assert seen == ([(1, 1)] if rewritten else [(d, d)])
    assert out.shape == expected.shape
    torch.testing.assert_close(out, expected, rtol=1e-12, atol=1e-12)
    if channels_last and rewritten and s == 1:
        assert out.is_contiguous(memory_format=torch.channels_last)
    go = torch.randn(expected.shape, generator=g, dtype=torch.float64)
    want = torch.autograd.grad(expected, (x, w), go)
    got = torch.autograd.grad(out, (x, w), go)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


def test_dil_conv_op_is_the_module_math():
    torch.manual_seed(0)
    op = DilConv(4, 6, 3, 1, 2, 2).double()
    x = torch.randn(2, 4, 8, 8, dtype=torch.float64)
    r = F.relu(x)
    expected = op.bn(op.pointwise(op.depthwise(r)))
    torch.testing.assert_close(op(x), expected, rtol=1e-12, atol=1e-12)
