"""Optional CPU speed-ups: native kernels and an allocator setting, off unless asked for.

Nothing here runs unless a run sets ``run.cpu_kernels=true`` (``--cpu-kernels`` on the command
line, or ``NASFRAME_CPU_KERNELS=1``), and then only in a process the ``nasframe`` command owns
(the :func:`nasframe_core.hookspecs.nasframe_process_start` hook): a library call never changes
the process. When enabled:

- the convolutions of :mod:`nasframe_core.ops` that the native kernels accept run in them
  (:mod:`nasframe_cpu.kernels`, compiled on first use with the machine's C compiler; see
  :class:`nasframe_cpu.ops.NativeConvolutions`): the weight gradient of depthwise convolutions
  and dense 3x3 convolutions by Winograd's algorithm;
- glibc's malloc keeps the memory it frees (:mod:`nasframe_cpu.memory`: no page faults in steady
  search steps).

Their rounding differs from ATen's, and whether they build depends on the machine (a C
compiler, the CPU's vector units), so with them the same seed can take another path; without
them a seed gives the same search on every machine with the same torch and thread count.
They were tuned on an AVX2 CPU and can lose on others: measure before relying on them
(``benchmarks/native_step.py``). ``NASFRAME_NATIVE_KERNELS=0`` and
``NASFRAME_KEEP_FREED_MEMORY=0`` turn either part off within an enabled run.
"""
from __future__ import annotations

_enabled: dict = {}


def enable() -> dict:
    """Install the native convolutions and keep freed memory (once per process); return what a
    run's ``runtime`` record says about both."""
    if not _enabled:
        from nasframe_core import ops

        from . import kernels, memory
        from .ops import NativeConvolutions

        if kernels.available():
            ops.use_native_convolutions(NativeConvolutions())
        _enabled["allocator"] = memory.keep_freed_memory()
    return status()


def status() -> dict:
    """``native_kernels`` and ``allocator`` as a run records them."""
    if not _enabled:
        return {"native_kernels": "off (run.cpu_kernels is false)", "allocator": "C library defaults"}
    from . import kernels

    return {"native_kernels": kernels.status(), "allocator": _enabled["allocator"]}
