"""Keep freed memory in the process: glibc's malloc settings for search steps on the CPU.

A search step allocates and frees the same large tensors again and again (activations and
their gradients, 1-35 MB each on the DARTS space at batch 64). With glibc's defaults, blocks
above the mmap threshold (128 KB, raised as mapped blocks are freed, up to 32 MB) are mapped
afresh on each allocation and unmapped when freed, and free memory at the top of the heap is
given back to the system; every page mapped again costs a page fault and a page of zeroing in
the kernel. How often depends on the allocation history: on a DARTS-space second-order step at
batch 64, from 16,000 to 560,000 faults per step (up to 4.8 s of kernel time on two threads),
from one run to the next (``benchmarks/step_time.py`` prints both per step).

:func:`keep_freed_memory` turns both off (``mallopt``: no mapping of single blocks, no
trimming), so freed memory stays in the process and is reused: no page faults in a steady
step. The step's peak resident memory is unchanged; memory is not handed back between steps.
``NASFRAME_KEEP_FREED_MEMORY=0`` keeps glibc's defaults; other C libraries are left as they are.
"""
from __future__ import annotations

import ctypes
from typing import Optional

from nasframe_core.settings import env_switch

ENV_SWITCH = "NASFRAME_KEEP_FREED_MEMORY"
#: mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
#: no trimming below 2 GB of free memory at the top of the heap (mallopt takes an int)
_NO_TRIM = 2**31 - 1

_state: dict = {}


def _glibc() -> Optional[ctypes.CDLL]:
    """The process's C library when it is glibc (None otherwise)."""
    try:
        libc = ctypes.CDLL(None)
        libc.gnu_get_libc_version  # only glibc has it
        libc.mallopt
    except (OSError, AttributeError):
        return None
    return libc


def keep_freed_memory() -> str:
    """Set glibc's malloc to keep freed memory (once per process; later calls do nothing);
    returns :func:`status`."""
    if "status" not in _state:
        libc = _glibc()
        if not env_switch(ENV_SWITCH):
            _state["status"] = f"C library defaults ({ENV_SWITCH}=0)"
        elif libc is None:
            _state["status"] = "C library defaults (not glibc)"
        elif libc.mallopt(_M_MMAP_MAX, 0) == 1 and libc.mallopt(_M_TRIM_THRESHOLD, _NO_TRIM) == 1:
            _state["status"] = "freed memory kept (glibc: no mmap, no trim)"
        else:
            _state["status"] = "C library defaults (glibc refused mallopt)"
    return _state["status"]


def status() -> str:
    """What a run's record says about the allocator: the outcome of :func:`keep_freed_memory`,
    or ``not set`` when nothing called it (a search on a GPU)."""
    return _state.get("status", "not set")
