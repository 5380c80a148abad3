"""The native depthwise weight gradient: ATen's numbers, used where it applies, and an
install without a compiler (or with a broken cache) still runs, on ATen's kernel."""
from __future__ import annotations

import logging

import pytest
import torch
import torch.nn.functional as F

from conftest import native_and_aten_step
from nasframe_core import ops
from nasframe_cpu import kernels

# (N, C, H, W, kernel, padding): "same" paddings, none (small images padded beforehand),
# odd sizes, images smaller than the kernel, one and two channel blocks of 8
CASES = [
    (2, 16, 8, 8, 5, 2),
    (2, 16, 8, 8, 3, 1),
    (3, 8, 7, 9, 5, 2),
    (1, 24, 5, 6, 3, 1),
    (2, 32, 4, 4, 5, 2),
    (2, 16, 8, 8, 5, 0),
    (2, 16, 3, 3, 5, 4 - 1),
    (2, 48, 9, 5, 3, 0),
    (4, 64, 16, 16, 5, 2),
]


def _nhwc(*shape, g):
    return torch.randn(*shape, generator=g).contiguous(memory_format=torch.channels_last)


def _aten_weight_grad(x, go, k, p):
    w = torch.zeros(x.shape[1], 1, k, k, dtype=x.dtype)
    return torch.ops.aten.convolution_backward(go, x, w, None, [1, 1], [p, p], [1, 1], False, [0, 0], x.shape[1],
                                               [False, True, False])[1]


@pytest.mark.parametrize("case", CASES, ids=[str(c) for c in CASES])
def test_native_weight_gradient_is_atens(native_kernels, case):
    N, C, H, W, k, p = case
    g = torch.Generator().manual_seed(0)
    x = _nhwc(N, C, H, W, g=g)
    go = _nhwc(N, C, H + 2 * p - k + 1, W + 2 * p - k + 1, g=g)
    assert native_kernels.accepts(x, k, p)
    got = native_kernels.depthwise_weight_grad(x, go, k, p)
    want = _aten_weight_grad(x.double(), go.double(), k, p)  # float64: the exact sums
    assert got.shape == (C, 1, k, k) and got.dtype == torch.float32
    torch.testing.assert_close(got.double(), want, rtol=1e-5, atol=1e-5)


def test_native_weight_gradient_takes_a_gradient_in_any_layout(native_kernels):
    g = torch.Generator().manual_seed(1)
    x = _nhwc(2, 16, 6, 6, g=g)
    go = torch.randn(2, 16, 6, 6, generator=g)  # NCHW, as some backward passes hand it over
    torch.testing.assert_close(native_kernels.depthwise_weight_grad(x, go, 5, 2),
                               _aten_weight_grad(x, go.contiguous(memory_format=torch.channels_last), 5, 2),
                               rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_native_weight_gradient_repeats_bit_for_bit(native_kernels, threads):
    g = torch.Generator().manual_seed(2)
    x, go = _nhwc(5, 32, 12, 12, g=g), _nhwc(5, 32, 12, 12, g=g)
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        first = native_kernels.depthwise_weight_grad(x, go, 5, 2)
        assert all(torch.equal(first, native_kernels.depthwise_weight_grad(x, go, 5, 2)) for _ in range(3))
    finally:
        torch.set_num_threads(before)
    torch.testing.assert_close(first.double(), _aten_weight_grad(x.double(), go.double(), 5, 2), rtol=1e-5, atol=1e-4)


def _count_native(monkeypatch) -> list:
    calls = []
    real = kernels.depthwise_weight_grad

    def counting(*args):
        calls.append(args[2:])
        return real(*args)

    monkeypatch.setattr(kernels, "depthwise_weight_grad", counting)
    return calls


@pytest.mark.parametrize("channels_last", [True, False], ids=["channels_last", "nchw"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("conv", [(5, 1, 2, 1), (3, 1, 1, 1), (3, 1, 0, 1), (5, 2, 2, 1), (3, 1, 2, 2)],
                         ids=["5x5", "3x3", "3x3-unpadded", "5x5-stride2", "3x3-dilated"])
def test_depthwise_gives_the_convolution_and_its_gradients(native_kernels, monkeypatch, conv, dtype, channels_last):
    """``ops.depthwise`` is ``F.conv2d(groups=C)`` (value and both gradients) in every case;
    the native kernel takes the weight gradient exactly where it applies."""
    k, s, p, d = conv
    g = torch.Generator().manual_seed(3)
    x = torch.randn(2, 16, 9, 9, generator=g, dtype=dtype)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    x.requires_grad_()
    w = torch.randn(16, 1, k, k, generator=g, dtype=dtype, requires_grad=True)
    calls = _count_native(monkeypatch)
    out = ops.depthwise(x, w, s, p, d)
    expected = F.conv2d(x, w, None, s, p, d, 16)
    go = torch.randn(expected.shape, generator=g, dtype=dtype)
    got, want = torch.autograd.grad(out, (x, w), go), torch.autograd.grad(expected, (x, w), go)
    tol = 1e-12 if dtype == torch.float64 else 1e-5
    torch.testing.assert_close(out, expected, rtol=tol, atol=tol)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=tol, atol=tol)
    applies = dtype == torch.float32 and channels_last and s == 1 and d == 1
    assert calls == ([(k, p)] if applies else [])


def test_depthwise_leaves_frozen_weights_and_odd_channels_to_aten(native_kernels, monkeypatch):
    calls = _count_native(monkeypatch)
    g = torch.Generator().manual_seed(4)
    x = _nhwc(2, 16, 8, 8, g=g).requires_grad_()
    frozen = torch.randn(16, 1, 5, 5, generator=g)
    torch.autograd.grad(ops.depthwise(x, frozen, 1, 2, 1).sum(), x)
    x12 = _nhwc(2, 12, 8, 8, g=g).requires_grad_()
    w12 = torch.randn(12, 1, 5, 5, generator=g, requires_grad=True)
    torch.autograd.grad(ops.depthwise(x12, w12, 1, 2, 1).sum(), (x12, w12))
    assert calls == []


def test_the_switch_turns_the_native_kernel_off(native_kernels, monkeypatch):
    calls = _count_native(monkeypatch)
    monkeypatch.setenv(kernels.ENV_SWITCH, "0")
    g = torch.Generator().manual_seed(5)
    x = _nhwc(2, 16, 8, 8, g=g)
    w = torch.randn(16, 1, 5, 5, generator=g, requires_grad=True)
    torch.autograd.grad(ops.depthwise(x, w, 1, 2, 1).sum(), w)
    assert calls == [] and not kernels.enabled()


def test_darts_step_runs_the_native_kernel_and_matches_aten(native_kernels, monkeypatch):
    """A fused DARTS-space search step (channels-last float32, the default on CPUs) takes its
    separable and dilated convolutions' weight gradients from the native kernel, and ends
    with the weights and alphas that ATen's kernel gives."""
    from nasframe_spaces import DartsSearchSpace

    native_and_aten_step(monkeypatch, DartsSearchSpace(C=8, layers=3), _count_native(monkeypatch))


def test_without_a_compiler_aten_runs_and_one_line_says_why(monkeypatch, tmp_path, caplog):
    monkeypatch.setattr(kernels, "_state", {})
    monkeypatch.setenv("NASFRAME_CACHE", str(tmp_path))
    monkeypatch.setenv("CC", "false")  # a "compiler" that fails every build
    monkeypatch.setattr(kernels, "_compiler", lambda: "false")
    with caplog.at_level(logging.INFO, logger="nasframe_cpu.kernels"):
        assert not kernels.available()
    assert any("using ATen's kernels" in r.getMessage() for r in caplog.records)
    g = torch.Generator().manual_seed(6)
    x = _nhwc(2, 16, 8, 8, g=g)
    w = torch.randn(16, 1, 5, 5, generator=g, requires_grad=True)
    gw = torch.autograd.grad(ops.depthwise(x, w, 1, 2, 1).sum(), w)[0]
    torch.testing.assert_close(gw, _aten_weight_grad(x, torch.ones(2, 16, 8, 8), 5, 2), rtol=1e-5, atol=1e-5)
    monkeypatch.setattr(kernels, "_compiler", lambda: None)
    monkeypatch.setattr(kernels, "_state", {})
    assert not kernels.available()


def test_a_damaged_cached_build_is_rebuilt(native_kernels, tmp_path):
    """A cache entry that does not load (a damaged file) is built again, in a fresh process
    (within one, the loader hands back the library it already has for that path)."""
    import os
    import subprocess
    import sys

    env = dict(os.environ, NASFRAME_CACHE=str(tmp_path), **{kernels.ENV_SWITCH: "1"})
    probe = [sys.executable, "-c", "from nasframe_cpu import kernels; print(kernels.available())"]
    assert subprocess.run(probe, env=env, capture_output=True, text=True, check=True).stdout.strip() == "True"
    (built,) = (tmp_path / "kernels").glob("native-*.so")
    built.write_bytes(b"not a shared library")
    assert subprocess.run(probe, env=env, capture_output=True, text=True, check=True).stdout.strip() == "True"
    assert built.read_bytes() != b"not a shared library"


def test_second_derivatives_through_depthwise_are_atens(native_kernels):
    """With create_graph the weight gradient comes from ATen, so it can be differentiated again."""
    g = torch.Generator().manual_seed(8)
    x = _nhwc(2, 16, 6, 6, g=g).requires_grad_()
    w = torch.randn(16, 1, 5, 5, generator=g, requires_grad=True)
    (gw,) = torch.autograd.grad(ops.depthwise(x, w, 1, 2, 1).pow(2).sum(), w, create_graph=True)
    (gw_ref,) = torch.autograd.grad(F.conv2d(x, w, None, 1, 2, 1, 16).pow(2).sum(), w, create_graph=True)
    torch.testing.assert_close(gw, gw_ref, rtol=1e-5, atol=1e-4)
    second = torch.autograd.grad(gw.sum(), x)[0]
    torch.testing.assert_close(second, torch.autograd.grad(gw_ref.sum(), x)[0], rtol=1e-5, atol=1e-4)


def test_autocast_and_string_padding_stay_on_aten(native_kernels, monkeypatch):
    calls = _count_native(monkeypatch)
    g = torch.Generator().manual_seed(9)
    x = _nhwc(2, 16, 6, 6, g=g)
    w = torch.randn(16, 1, 5, 5, generator=g, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = ops.depthwise(x, w, 1, 2, 1)
    gw = torch.autograd.grad(out.float().sum(), w)[0]
    assert torch.isfinite(gw).all()
    torch.autograd.grad(ops.depthwise(x, w, 1, "same", 1).sum(), w)
    assert calls == []


def test_a_gradient_of_the_wrong_shape_or_dtype_is_refused(native_kernels):
    g = torch.Generator().manual_seed(10)
    x = _nhwc(2, 16, 6, 6, g=g)
    with pytest.raises(ValueError, match="grad_out must be CPU float32 of shape"):
        native_kernels.depthwise_weight_grad(x, _nhwc(2, 16, 7, 6, g=g), 5, 2)
    with pytest.raises(ValueError, match="grad_out must be CPU float32"):
        native_kernels.depthwise_weight_grad(x, _nhwc(2, 16, 6, 6, g=g).bfloat16(), 5, 2)


def test_the_reason_for_no_kernels_is_named(monkeypatch, tmp_path):
    monkeypatch.setattr(kernels, "_state", {})
    monkeypatch.setattr(kernels, "_compiler", lambda: None)
    assert "no C compiler found" in kernels.unavailable_reason()
    monkeypatch.setenv(kernels.ENV_SWITCH, "0")
    assert kernels.ENV_SWITCH in kernels.unavailable_reason()
