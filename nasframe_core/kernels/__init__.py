"""Native CPU kernels, compiled on first use with the machine's C compiler.

One kernel so far: the weight gradient of stride-1, undilated depthwise convolutions on
channels-last float32 tensors (``depthwise.c``). oneDNN runs it in a generic kernel; this one
is 4-6x faster on 5x5 kernels and 1.2-1.6x on 3x3 ones (``benchmarks/depthwise_wgrad.py``).
It is what separable and dilated convolutions spend most of their backward pass on.

The kernel is optional and changes no result beyond float rounding: without a C compiler
(``$CC``, else ``cc``, ``gcc`` or ``clang``), or with ``NASFRAME_NATIVE_KERNELS=0``, ATen's
kernel runs. The compiled library is cached in ``kernels/`` under ``$NASFRAME_CACHE`` (default
``~/.cache/nasframe``), keyed by the source, the compiler, its flags and the CPU, so a home
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

log = logging.getLogger(__name__)

ENV_SWITCH = "NASFRAME_NATIVE_KERNELS"
SOURCE = Path(__file__).with_name("depthwise.c")
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
    return os.environ.get(ENV_SWITCH, "1").strip().lower() not in ("0", "off", "false", "no")


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
    """Compile ``depthwise.c`` into the cache (atomically: concurrent builds are harmless)."""
    source = SOURCE.read_bytes()
    version = subprocess.run([cc, "--version"], capture_output=True, text=True, timeout=60).stdout
    machine = _cpu_fingerprint()
    errors = []
    for flags in FLAG_SETS:
        key = hashlib.sha256(b"\0".join([source, cc.encode(), version.encode(), " ".join(flags).encode(),
                                          machine.encode()])).hexdigest()[:16]
        target = cache_dir() / "kernels" / f"depthwise-{key}.so"
        if target.exists():
            return target
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(suffix=".so", dir=target.parent)
        os.close(fd)
        try:
            done = subprocess.run([cc, *flags, "-shared", "-fPIC", str(SOURCE), "-o", tmp],
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
            lib.depthwise_threads.restype = ctypes.c_int
            _state["threads"] = bool(lib.depthwise_threads())
            if not _state["threads"]:
                log.info("native kernels: built without OpenMP (single-threaded); used only when torch runs "
                         "one thread")
        except Exception as e:  # noqa: BLE001 - any failure to build or load means: use ATen
            lib = None
            _state["why"] = f"could not build {SOURCE.name} with {cc} ({e})"
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


def _standard_nhwc(t: torch.Tensor) -> bool:
    N, C, H, W = t.shape
    return t.stride() == (H * W * C, 1, W * C, C)


def accepts(x: torch.Tensor, kernel_size: int, padding: int) -> bool:
    """Whether :func:`depthwise_weight_grad` takes ``x`` with a square ``kernel_size`` kernel
    and ``padding`` on each side: a CPU float32 channels-last tensor whose channels are a
    multiple of 8, a kernel size in ``KERNEL_SIZES``, the kernels enabled and built."""
    return (x.device.type == "cpu" and x.dtype == torch.float32 and x.dim() == 4 and x.shape[1] % 8 == 0
            and kernel_size in KERNEL_SIZES and 0 <= padding < kernel_size and _standard_nhwc(x) and available()
            and (_state.get("threads", True) or torch.get_num_threads() == 1))


def _weight_grad(x: torch.Tensor, grad_out: torch.Tensor, kernel_size: int, padding: int) -> torch.Tensor:
    N, C, H, W = x.shape
    Ho, Wo = H + 2 * padding - kernel_size + 1, W + 2 * padding - kernel_size + 1
    if grad_out.shape != (N, C, Ho, Wo) or grad_out.dtype != torch.float32 or grad_out.device.type != "cpu":
        raise ValueError(f"depthwise_weight_grad: grad_out must be CPU float32 of shape {(N, C, Ho, Wo)}, "
                         f"not {grad_out.dtype} {tuple(grad_out.shape)} on {grad_out.device}")
    if not _standard_nhwc(grad_out):
        grad_out = grad_out.contiguous(memory_format=torch.channels_last)
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
