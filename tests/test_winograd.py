"""The native Winograd 3x3 convolution: ATen's numbers (forward, input and weight gradients),
the same bits on every run at a given thread count, used exactly where it applies, and ATen's
backward pass under create_graph."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from conftest import native_and_aten_step
from nasframe_core import ops
from nasframe_cpu import kernels

# (N, C_in, C_out, H, W): NAS-Bench-201's shapes, odd sizes (part tiles at the edges), images
# of one and two pixels (F(2x2, 3x3)), one channel block of 8, output channels not a multiple
# of 16; images of 16 pixels and more take F(4x4, 3x3) in the weight gradient too
CASES = [
    (2, 16, 48, 8, 8),
    (3, 8, 24, 7, 9),
    (1, 24, 8, 5, 6),
    (2, 16, 16, 1, 1),
    (2, 8, 8, 2, 3),
    (2, 64, 192, 8, 8),
    (1, 16, 32, 33, 31),
    (7, 32, 40, 4, 4),
]


def _nhwc(*shape, g, dtype=torch.float32):
    return torch.randn(*shape, generator=g, dtype=dtype).contiguous(memory_format=torch.channels_last)


def _close(got, want, scale=5e-5):
    """Equal up to ``scale`` of the largest value: F(4x4, 3x3) rounds to about 1e-5 of it (a
    direct convolution to 1e-6)."""
    torch.testing.assert_close(got, want.to(got.dtype), rtol=0, atol=scale * want.abs().max().item())


def _aten(x, w, go):
    """ATen's forward, input and weight gradients, in float64 (the exact sums)."""
    x, w, go = x.double(), w.double(), go.double()
    gx, gw, _ = torch.ops.aten.convolution_backward(go, x, w, None, [1, 1], [1, 1], [1, 1], False, [0, 0], 1,
                                                    [True, True, False])
    return F.conv2d(x, w, None, 1, 1), gx, gw


@pytest.mark.parametrize("case", CASES, ids=[str(c) for c in CASES])
def test_winograd_kernels_are_atens_convolution(native_kernels, case):
    N, ci, co, H, W = case
    g = torch.Generator().manual_seed(0)
    x, go = _nhwc(N, ci, H, W, g=g), _nhwc(N, co, H, W, g=g)
    w = torch.randn(co, ci, 3, 3, generator=g)
    assert native_kernels.winograd_accepts(x, w)
    y = native_kernels.winograd_conv3x3(x, w)
    gx = native_kernels.winograd_conv3x3_input_grad(go, w)
    gw = native_kernels.winograd_conv3x3_weight_grad(x, go)
    assert y.is_contiguous(memory_format=torch.channels_last) and gx.is_contiguous(memory_format=torch.channels_last)
    for got, want in zip((y, gx, gw), _aten(x, w, go)):
        assert got.shape == want.shape and got.dtype == torch.float32
        _close(got.double(), want)


def test_the_cases_cover_both_tilings():
    tiles = {(kernels.winograd_tile(H, W), kernels.winograd_tile(H, W, weight_grad=True)) for *_, H, W in CASES}
    assert {2, 4} == {t for t, _ in tiles} == {t for _, t in tiles}


@pytest.mark.parametrize("size", [14, 18])
@pytest.mark.parametrize("threads", [1, 2, 3])
def test_winograd_kernels_repeat_bit_for_bit(native_kernels, threads, size):
    """At a given thread count every run gives the same bits; across thread counts the same
    numbers to rounding (the filter transforms are matrix products of the BLAS)."""
    g = torch.Generator().manual_seed(1)
    x, go = _nhwc(9, 16, size, size, g=g), _nhwc(9, 32, size, size, g=g)
    w = torch.randn(32, 16, 3, 3, generator=g)

    def run():
        return (native_kernels.winograd_conv3x3(x, w), native_kernels.winograd_conv3x3_input_grad(go, w),
                native_kernels.winograd_conv3x3_weight_grad(x, go))

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        one = run()
        torch.set_num_threads(threads)
        first = run()
        for _ in range(2):
            assert all(torch.equal(a, b) for a, b in zip(first, run()))
    finally:
        torch.set_num_threads(before)
    for a, b in zip(first, one):
        _close(a, b, 1e-6)


def _count_winograd(monkeypatch) -> list:
    calls = []
    for name in ("winograd_conv3x3", "winograd_conv3x3_input_grad", "winograd_conv3x3_weight_grad"):
        real = getattr(kernels, name)

        def counting(*args, _real=real, _name=name):
            calls.append(_name)
            return _real(*args)
        monkeypatch.setattr(kernels, name, counting)
    return calls


@pytest.mark.parametrize("channels_last", [True, False], ids=["channels_last", "nchw"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
def test_conv3x3_gives_the_convolution_and_its_gradients(native_kernels, monkeypatch, dtype, channels_last):
    """``ops.conv3x3`` is ``F.conv2d(x, w, None, 1, 1)`` (value and both gradients) in every
    layout and dtype; the Winograd kernels run exactly for float32 channels-last."""
    g = torch.Generator().manual_seed(2)
    x = torch.randn(3, 16, 10, 7, generator=g, dtype=dtype)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    x.requires_grad_()
    w = torch.randn(24, 16, 3, 3, generator=g, dtype=dtype, requires_grad=True)
    calls = _count_winograd(monkeypatch)
    out = ops.conv3x3(x, w)
    expected = F.conv2d(x, w, None, 1, 1)
    go = torch.randn(expected.shape, generator=g, dtype=dtype)
    scale = 1e-12 if dtype == torch.float64 else 5e-5
    _close(out, expected, scale)
    for a, b in zip(torch.autograd.grad(out, (x, w), go), torch.autograd.grad(expected, (x, w), go)):
        _close(a, b, scale)
    applies = dtype == torch.float32 and channels_last
    assert sorted(calls) == (sorted(["winograd_conv3x3", "winograd_conv3x3_input_grad",
                                     "winograd_conv3x3_weight_grad"]) if applies else [])


def test_conv3x3_computes_only_the_gradients_asked_for(native_kernels, monkeypatch):
    calls = _count_winograd(monkeypatch)
    g = torch.Generator().manual_seed(3)
    x = _nhwc(2, 16, 8, 8, g=g).requires_grad_()
    frozen = torch.randn(16, 16, 3, 3, generator=g)  # a frozen weight: no weight gradient
    torch.autograd.grad(ops.conv3x3(x, frozen).sum(), x)
    assert calls == ["winograd_conv3x3", "winograd_conv3x3_input_grad"]
    calls.clear()
    w = torch.randn(16, 16, 3, 3, generator=g, requires_grad=True)
    torch.autograd.grad(ops.conv3x3(x.detach(), w).sum(), w)  # an input without gradient
    assert calls == ["winograd_conv3x3", "winograd_conv3x3_weight_grad"]
    calls.clear()
    with torch.no_grad():
        _close(ops.conv3x3(x, w), F.conv2d(x, w, None, 1, 1))
    assert calls == ["winograd_conv3x3"]


def test_conv3x3_leaves_odd_channels_autocast_and_the_switch_to_aten(native_kernels, monkeypatch):
    calls = _count_winograd(monkeypatch)
    g = torch.Generator().manual_seed(4)
    x12 = _nhwc(2, 12, 8, 8, g=g).requires_grad_()
    w12 = torch.randn(16, 12, 3, 3, generator=g, requires_grad=True)
    torch.autograd.grad(ops.conv3x3(x12, w12).sum(), (x12, w12))
    x = _nhwc(2, 16, 8, 8, g=g).requires_grad_()
    w = torch.randn(12, 16, 3, 3, generator=g, requires_grad=True)  # 12 output channels
    torch.autograd.grad(ops.conv3x3(x, w).sum(), (x, w))
    w16 = torch.randn(16, 16, 3, 3, generator=g, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = ops.conv3x3(x, w16)
    assert out.dtype == torch.bfloat16
    monkeypatch.setenv(kernels.ENV_SWITCH, "0")
    torch.autograd.grad(ops.conv3x3(x, w16).sum(), (x, w16))
    assert calls == []


def test_second_derivatives_through_conv3x3_are_atens(native_kernels):
    """With create_graph the backward pass is ATen's, so it can be differentiated again."""
    g = torch.Generator().manual_seed(5)
    x = _nhwc(2, 16, 6, 6, g=g).requires_grad_()
    w = torch.randn(16, 16, 3, 3, generator=g, requires_grad=True)
    (gw,) = torch.autograd.grad(ops.conv3x3(x, w).pow(2).sum(), w, create_graph=True)
    (gw_ref,) = torch.autograd.grad(F.conv2d(x, w, None, 1, 1).pow(2).sum(), w, create_graph=True)
    _close(gw, gw_ref)
    _close(torch.autograd.grad(gw.sum(), x)[0], torch.autograd.grad(gw_ref.sum(), x)[0])


def test_wrong_shapes_and_dtypes_are_refused(native_kernels):
    g = torch.Generator().manual_seed(6)
    x, w = _nhwc(2, 16, 6, 6, g=g), torch.randn(16, 16, 3, 3, generator=g)
    with pytest.raises(ValueError, match="grad_out must be CPU float32 of shape"):
        native_kernels.winograd_conv3x3_weight_grad(x, _nhwc(2, 16, 7, 6, g=g))
    with pytest.raises(ValueError, match="grad_out must be CPU float32"):
        native_kernels.winograd_conv3x3_input_grad(_nhwc(2, 16, 6, 6, g=g).double(), w)
    assert not native_kernels.winograd_accepts(x.double(), w.double())
    assert not native_kernels.winograd_accepts(x, torch.randn(16, 16, 5, 5))
    empty = torch.zeros(2, 0, 6, 6).contiguous(memory_format=torch.channels_last)
    assert not native_kernels.winograd_accepts(empty, torch.zeros(0, 0, 3, 3))
    # called directly, the kernels refuse what they cannot compute instead of reading past it
    x12 = _nhwc(2, 12, 6, 6, g=g)
    with pytest.raises(ValueError, match="positive multiples of 8"):
        native_kernels.winograd_conv3x3(x12, torch.randn(16, 12, 3, 3, generator=g))
    with pytest.raises(ValueError, match="positive multiples of 8"):
        native_kernels.winograd_conv3x3_weight_grad(x12, _nhwc(2, 16, 6, 6, g=g))
    with pytest.raises(ValueError, match=r"\(C_out, C_in, 3, 3\)"):
        native_kernels.winograd_conv3x3(x, torch.randn(16, 16, 1, 9, generator=g))


def test_the_run_record_says_whether_the_kernels_ran(native_kernels, monkeypatch):
    assert native_kernels.status() == "on"
    monkeypatch.setenv(kernels.ENV_SWITCH, "0")
    assert native_kernels.status() == f"off ({kernels.ENV_SWITCH} turns them off)"


@pytest.mark.parametrize("optimizer", ["darts", "gdas"])
def test_nasbench201_step_runs_winograd_and_matches_aten(native_kernels, monkeypatch, optimizer):
    """A fused NAS-Bench-201 search step (channels-last float32, the default on CPUs) of DARTS
    (unrolled) and of GDAS (its sampled cell) runs its cells' 3x3 convolutions in the Winograd
    kernels and ends with the weights and alphas that ATen's kernels give."""
    from nasframe_spaces import NasBench201SearchSpace

    calls = _count_winograd(monkeypatch)
    native_and_aten_step(monkeypatch, NasBench201SearchSpace(C=8, N=1), calls, optimizer)
    assert {"winograd_conv3x3", "winograd_conv3x3_input_grad", "winograd_conv3x3_weight_grad"} <= set(calls)
