"""Native CPU kernels, compiled on first use with the machine's C compiler.

Two kernels so far, both on channels-last float32 tensors:

- ``depthwise.c``: the weight gradient of stride-1, undilated depthwise convolutions. oneDNN
  runs it in a generic kernel; this one is 4-6x faster on 5x5 kernels and 1.2-1.6x on 3x3 ones
  (``benchmarks/depthwise_wgrad.py``). It is what separable and dilated convolutions spend most
  of their backward pass on.
- ``winograd.c``: dense 3x3 convolutions (stride 1, padding 1) by Winograd's F(4x4, 3x3) (4x
  fewer multiplies than a direct convolution; F(2x2, 3x3) on images too small for it): the
  forward pass, the input gradient (the same kernel on transposed, flipped weights) and the
  weight gradient, 1.1-2.2x oneDNN's speed on NAS-Bench-201's shapes (1.45-1.72x in total;
  ``benchmarks/winograd_conv.py``).
  NAS-Bench-201's cells spend most of their step there.

The kernels are optional and change no result beyond float rounding: without a C compiler
(``$CC``, else ``cc``, ``gcc`` or ``clang``), or with ``NASFRAME_NATIVE_KERNELS=0``, ATen's
kernels run. The compiled library is cached in ``kernels/`` under ``$NASFRAME_CACHE`` (default
``~/.cache/nasframe``), keyed by the sources, the compiler, its flags and the CPU, so a home
directory shared by different machines gets one build per kind of CPU.
"""
from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import platform
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Optional

import torch

from nasframe_core.data import cache_dir
from nasframe_core.settings import env_switch

log = logging.getLogger(__name__)

ENV_SWITCH = "NASFRAME_NATIVE_KERNELS"
SOURCES = tuple(Path(__file__).with_name(name) for name in ("depthwise.c", "winograd.c"))
#: flag sets tried in order until one compiles (``-march=native``: the CPU's vector units)
FLAG_SETS = (
    ("-O3", "-march=native", "-fopenmp"),
    ("-O3", "-fopenmp"),
    ("-O3", "-march=native"),
    ("-O3",),
)
#: kernel sizes the kernel implements
KERNEL_SIZES = (3, 5)

_state: dict = {}


def enabled() -> bool:
    """Whether native kernels may be used (``NASFRAME_NATIVE_KERNELS`` is not 0/off/false)."""
    return env_switch(ENV_SWITCH)


def _compiler() -> Optional[str]:
    for name in (os.environ.get("CC"), "cc", "gcc", "clang"):
        path = shutil.which(name) if name else None
        if path:
            return path
    return None


def _cpu_fingerprint() -> str:
    """What ``-march=native`` depends on: the CPU model and its feature flags."""
    text = platform.machine() + platform.processor()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith(("model name", "flags", "Features", "CPU part")):
                    text += line
                if line.strip() == "":  # the first CPU is enough
                    break
    except OSError:
        pass
    return text


def _build(cc: str) -> Path:
    """Compile the sources into one library in the cache (atomically: concurrent builds are
    harmless)."""
    source = b"\0".join(path.read_bytes() for path in SOURCES)
    version = subprocess.run([cc, "--version"], capture_output=True, text=True, timeout=60).stdout
    machine = _cpu_fingerprint()
    errors = []
    for flags in FLAG_SETS:
        key = hashlib.sha256(b"\0".join([source, cc.encode(), version.encode(), " ".join(flags).encode(),
                                          machine.encode()])).hexdigest()[:16]
        target = cache_dir() / "kernels" / f"native-{key}.so"
        if target.exists():
            return target
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(suffix=".so", dir=target.parent)
        os.close(fd)
        try:
            done = subprocess.run([cc, *flags, "-shared", "-fPIC", *map(str, SOURCES), "-o", tmp],
                                  capture_output=True, text=True, timeout=300)
            if done.returncode == 0:
                os.replace(tmp, target)
                return target
            errors.append(f"{' '.join(flags)}: {done.stderr.strip().splitlines()[-1:] or done.returncode}")
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    raise RuntimeError("; ".join(errors))


def _load() -> Optional[ctypes.CDLL]:
    """The compiled library, built on first use; None (logged once) when unavailable."""
    if "lib" in _state:
        return _state["lib"]
    lib = None
    cc = _compiler()
    if cc is None:
        _state["why"] = "no C compiler found (install cc, gcc or clang, or set CC)"
        log.info("native kernels: %s; using ATen's kernels", _state["why"])
    else:
        try:
            path = _build(cc)
            try:
                lib = ctypes.CDLL(str(path))
            except OSError:  # a damaged cache entry: build it again
                path.unlink(missing_ok=True)
                lib = ctypes.CDLL(str(_build(cc)))
            fn = lib.depthwise_weight_grad_f32
            fn.restype = ctypes.c_int
            fn.argtypes = [ctypes.c_void_p] * 3 + [ctypes.c_long] * 8 + [ctypes.c_int]
            for fn in (lib.winograd_forward_f32, lib.winograd_weight_grad_f32):
                fn.restype = ctypes.c_int
                fn.argtypes = [ctypes.c_void_p] * 3 + [ctypes.c_long] * 5 + [ctypes.c_int] * 2
            lib.depthwise_threads.restype = ctypes.c_int
            _state["threads"] = bool(lib.depthwise_threads())
            if not _state["threads"]:
                log.info("native kernels: built without OpenMP (single-threaded); used only when torch runs "
                         "one thread")
        except Exception as e:  # noqa: BLE001 - any failure to build or load means: use ATen
            lib = None
            _state["why"] = f"could not build {', '.join(p.name for p in SOURCES)} with {cc} ({e})"
            log.info("native kernels: %s; using ATen's kernels", _state["why"])
    _state["lib"] = lib
    return lib


def available() -> bool:
    """Whether the native kernels are enabled and built (building them on first call)."""
    return enabled() and _load() is not None


def unavailable_reason() -> Optional[str]:
    """Why :func:`available` says no (None when it says yes)."""
    if not enabled():
        return f"{ENV_SWITCH} turns them off"
    return None if _load() is not None else _state.get("why", "they did not load")


def status() -> str:
    """What a run's record says about the native kernels (builds nothing): ``on``, ``not used``
    (nothing asked for them), or ``off (why)``. Their rounding differs from ATen's, so a seeded
    search takes another path with them than without."""
    if not enabled():
        return f"off ({ENV_SWITCH} turns them off)"
    if "lib" not in _state:
        return "not used"
    return "on" if _state["lib"] is not None else f"off ({_state.get('why', 'they did not load')})"


def _standard_nhwc(t: torch.Tensor) -> bool:
    """Whether ``t``'s memory is packed (N, H, W, C) (the stride of a size-1 dimension is free)."""
    N, C, H, W = t.shape
    return all(n == 1 or s == want for n, s, want in zip(t.shape, t.stride(), (H * W * C, 1, W * C, C)))


def accepts(x: torch.Tensor, kernel_size: int, padding: int) -> bool:
    """Whether :func:`depthwise_weight_grad` takes ``x`` with a square ``kernel_size`` kernel
    and ``padding`` on each side: a CPU float32 channels-last tensor whose channels are a
    multiple of 8, a kernel size in ``KERNEL_SIZES``, the kernels enabled and built."""
    return (_takes_input(x) and x.shape[1] % 8 == 0 and kernel_size in KERNEL_SIZES and 0 <= padding < kernel_size
            and _usable())


def _takes_input(x: torch.Tensor) -> bool:
    """What every native kernel asks of its input: a CPU float32 4-D tensor packed (N, H, W, C)."""
    return x.device.type == "cpu" and x.dtype == torch.float32 and x.dim() == 4 and _standard_nhwc(x)


def _usable() -> bool:
    """The kernels enabled and built (building them on first call) and, when built without
    OpenMP, torch on one thread."""
    return available() and (_state.get("threads", True) or torch.get_num_threads() == 1)


def _nhwc_f32(t: torch.Tensor, shape: tuple, what: str) -> torch.Tensor:
    """``t`` packed (N, H, W, C) (a copy only if it is not); ValueError naming ``what`` (the
    kernel and the argument) unless it is CPU float32 of ``shape``."""
    if tuple(t.shape) != tuple(shape) or t.dtype != torch.float32 or t.device.type != "cpu":
        raise ValueError(f"{what} must be CPU float32 of shape {tuple(shape)}, "
                         f"not {t.dtype} {tuple(t.shape)} on {t.device}")
    return t if _standard_nhwc(t) else t.contiguous(memory_format=torch.channels_last)


def _weight_grad(x: torch.Tensor, grad_out: torch.Tensor, kernel_size: int, padding: int) -> torch.Tensor:
    N, C, H, W = x.shape
    Ho, Wo = H + 2 * padding - kernel_size + 1, W + 2 * padding - kernel_size + 1
    grad_out = _nhwc_f32(grad_out, (N, C, Ho, Wo), "depthwise_weight_grad: grad_out")
    out = torch.empty(C, 1, kernel_size, kernel_size, dtype=x.dtype)
    code = _load().depthwise_weight_grad_f32(x.data_ptr(), grad_out.data_ptr(), out.data_ptr(), N, H, W, C, Ho, Wo,
                                             kernel_size, padding, torch.get_num_threads())
    if code:
        raise RuntimeError(f"native depthwise weight gradient failed (code {code}) on input {tuple(x.shape)}, "
                           f"kernel {kernel_size}, padding {padding}")
    return out


if hasattr(torch.library, "custom_op"):  # torch >= 2.4: an operator that dispatch modes and the compiler see
    @torch.library.custom_op("nasframe::depthwise_weight_grad", mutates_args=())
    def _weight_grad_op(x: torch.Tensor, grad_out: torch.Tensor, kernel_size: int, padding: int) -> torch.Tensor:
        return _weight_grad(x, grad_out, kernel_size, padding)

    @_weight_grad_op.register_fake
    def _(x, grad_out, kernel_size, padding):
        return x.new_empty((x.shape[1], 1, kernel_size, kernel_size))
else:
    _weight_grad_op = _weight_grad


def depthwise_weight_grad(x: torch.Tensor, grad_out: torch.Tensor, kernel_size: int, padding: int) -> torch.Tensor:
    """The (C, 1, K, K) weight gradient of the stride-1, undilated depthwise convolution of
    ``x`` with padding ``padding``, given ``grad_out``, the gradient of its output. Call only
    where :func:`accepts` says yes."""
    return _weight_grad_op(x, grad_out, kernel_size, padding)


# --------------------------------------------------------------------------- Winograd 3x3

#: the filter transforms G of F(2x2, 3x3) (4x3) and F(4x4, 3x3) (6x3), by output tile size;
#: ``G w G^T`` of a row-major 3x3 kernel ``w`` is ``kron(G, G) @ w.flatten()``
_WINOGRAD_G = {
    2: ((1, 0, 0), (1 / 2, 1 / 2, 1 / 2), (1 / 2, -1 / 2, 1 / 2), (0, 0, 1)),
    4: ((1 / 4, 0, 0), (-1 / 6, -1 / 6, -1 / 6), (-1 / 6, 1 / 6, -1 / 6), (1 / 24, 1 / 12, 1 / 6),
        (1 / 24, -1 / 12, 1 / 6), (0, 0, 1)),
}
_kron_g: dict = {}


def _gg(tile: int) -> torch.Tensor:
    """kron(G, G) of F(tile x tile, 3x3), ((tile + 2)^2, 9) float32 (built once, in float64)."""
    if tile not in _kron_g:
        g = torch.tensor(_WINOGRAD_G[tile], dtype=torch.float64)
        _kron_g[tile] = torch.kron(g, g).float()
    return _kron_g[tile]


def winograd_tile(height: int, width: int, weight_grad: bool = False) -> int:
    """The output tile size of the Winograd kernels on an image of this size: 4 (F(4x4, 3x3))
    where the image has room for it, at least 4 pixels each way (16 for the weight gradient,
    whose per-position sums cost more than they save on fewer tiles); else 2 (F(2x2, 3x3))."""
    return 4 if min(height, width) >= (16 if weight_grad else 4) else 2


def winograd_accepts(x: torch.Tensor, weight: torch.Tensor) -> bool:
    """Whether the native Winograd kernels take the 3x3 convolution of ``x`` with ``weight``
    (stride 1, padding 1, no dilation, no groups): CPU float32, ``x`` channels-last, input and
    output channels multiples of 8, the kernels enabled and built."""
    return (_takes_input(x) and _weight_ok(weight) and weight.device.type == "cpu" and weight.shape[1] == x.shape[1]
            and _usable())


def _channels_ok(co: int, ci: int) -> bool:
    return co > 0 and ci > 0 and co % 8 == 0 and ci % 8 == 0


def _weight_shape_ok(weight: torch.Tensor) -> bool:
    return weight.dim() == 4 and tuple(weight.shape[2:]) == (3, 3) and weight.dtype == torch.float32


def _weight_ok(weight: torch.Tensor) -> bool:
    return _weight_shape_ok(weight) and _channels_ok(*weight.shape[:2])


def _check_channels(co: int, ci: int) -> None:
    if not _channels_ok(co, ci):
        raise ValueError(f"winograd: the channels must be positive multiples of 8, not {ci} in and {co} out "
                         f"(check winograd_accepts first)")


def _check_weight(weight: torch.Tensor) -> None:
    if not _weight_shape_ok(weight):
        raise ValueError(f"winograd: the weight must be float32 (C_out, C_in, 3, 3), not {weight.dtype} "
                         f"{tuple(weight.shape)}")
    _check_channels(*weight.shape[:2])


def _winograd_run(x: torch.Tensor, u: torch.Tensor, out_channels: int, tile: int) -> torch.Tensor:
    N, C, H, W = x.shape
    out = torch.empty(N, out_channels, H, W, dtype=torch.float32, memory_format=torch.channels_last)
    code = _load().winograd_forward_f32(x.data_ptr(), u.data_ptr(), out.data_ptr(), N, H, W, C, out_channels, tile,
                                        torch.get_num_threads())
    if code:
        raise RuntimeError(f"native Winograd convolution failed (code {code}) on input {tuple(x.shape)}, "
                           f"{out_channels} output channels")
    return out


def _winograd_forward(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    _check_weight(weight)
    co, ci = weight.shape[:2]
    x = _nhwc_f32(x, (x.shape[0], ci) + tuple(x.shape[2:]), "winograd: the input")
    tile = winograd_tile(*x.shape[2:])
    gg = _gg(tile)
    u = (gg @ weight.reshape(co * ci, 9).t()).view(-1, co, ci).transpose(1, 2).contiguous()  # (P, ci, co)
    return _winograd_run(x, u, co, tile)


def _winograd_input_grad(grad_out: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    _check_weight(weight)
    co, ci = weight.shape[:2]
    grad_out = _nhwc_f32(grad_out, (grad_out.shape[0], co) + tuple(grad_out.shape[2:]), "winograd: grad_out")
    # the convolution with the transposed, flipped kernel: flipping a row-major 3x3 kernel
    # reverses its 9 values, i.e. the columns of kron(G, G)
    tile = winograd_tile(*grad_out.shape[2:])
    u = (_gg(tile).flip(1) @ weight.reshape(co * ci, 9).t()).view(-1, co, ci)  # (P, co, ci), contiguous
    return _winograd_run(grad_out, u, ci, tile)


def _winograd_weight_grad(x: torch.Tensor, grad_out: torch.Tensor) -> torch.Tensor:
    N, ci, H, W = x.shape
    co = grad_out.shape[1]
    _check_channels(co, ci)
    x = _nhwc_f32(x, tuple(x.shape), "winograd: the input")
    grad_out = _nhwc_f32(grad_out, (N, co, H, W), "winograd: grad_out")
    tile = winograd_tile(H, W, weight_grad=True)
    gg = _gg(tile)
    m = torch.empty(gg.shape[0], ci, co, dtype=torch.float32)
    code = _load().winograd_weight_grad_f32(x.data_ptr(), grad_out.data_ptr(), m.data_ptr(), N, H, W, ci, co, tile,
                                            torch.get_num_threads())
    if code:
        raise RuntimeError(f"native Winograd weight gradient failed (code {code}) on input {tuple(x.shape)}, "
                           f"{co} output channels")
    return (gg.t() @ m.view(-1, ci * co)).view(3, 3, ci, co).permute(3, 2, 0, 1).contiguous()


if hasattr(torch.library, "custom_op"):  # operators that dispatch modes and the compiler see
    @torch.library.custom_op("nasframe::winograd_conv3x3", mutates_args=())
    def _winograd_forward_op(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        return _winograd_forward(x, weight)

    @_winograd_forward_op.register_fake
    def _(x, weight):
        return torch.empty(x.shape[0], weight.shape[0], x.shape[2], x.shape[3], dtype=x.dtype, device=x.device,
                           memory_format=torch.channels_last)

    @torch.library.custom_op("nasframe::winograd_conv3x3_input_grad", mutates_args=())
    def _winograd_input_grad_op(grad_out: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        return _winograd_input_grad(grad_out, weight)

    @_winograd_input_grad_op.register_fake
    def _(grad_out, weight):
        return torch.empty(grad_out.shape[0], weight.shape[1], grad_out.shape[2], grad_out.shape[3],
                           dtype=grad_out.dtype, device=grad_out.device, memory_format=torch.channels_last)

    @torch.library.custom_op("nasframe::winograd_conv3x3_weight_grad", mutates_args=())
    def _winograd_weight_grad_op(x: torch.Tensor, grad_out: torch.Tensor) -> torch.Tensor:
        return _winograd_weight_grad(x, grad_out)

    @_winograd_weight_grad_op.register_fake
    def _(x, grad_out):
        return x.new_empty((grad_out.shape[1], x.shape[1], 3, 3))
else:
    _winograd_forward_op, _winograd_input_grad_op = _winograd_forward, _winograd_input_grad
    _winograd_weight_grad_op = _winograd_weight_grad


def winograd_conv3x3(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """``F.conv2d(x, weight, None, 1, 1)`` (channels-last), by the native Winograd kernel.
    Call only where :func:`winograd_accepts` says yes."""
    return _winograd_forward_op(x, weight)


def winograd_conv3x3_input_grad(grad_out: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """The input gradient of :func:`winograd_conv3x3` given ``grad_out``, the gradient of its output."""
    return _winograd_input_grad_op(grad_out, weight)


def winograd_conv3x3_weight_grad(x: torch.Tensor, grad_out: torch.Tensor) -> torch.Tensor:
    """The (Co, Ci, 3, 3) weight gradient of :func:`winograd_conv3x3` of ``x``, given ``grad_out``."""
    return _winograd_weight_grad_op(x, grad_out)
