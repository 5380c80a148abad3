"""Keep freed memory in the process: glibc's malloc settings for search steps on the CPU.

A search step allocates and frees the same large tensors again and again (activations and
their gradients, 1-35 MB each on the DARTS space at batch 64). With glibc's defaults, blocks
above the mmap threshold (128 KB, raised as mapped blocks are freed, up to 32 MB) are mapped
afresh on each allocation and unmapped when freed, and free memory at the top of the heap is
given back to the system; every page mapped again costs a page fault and a page of zeroing in
the kernel. How often depends on the allocation history: on a DARTS-space second-order step at
batch 64, from 16,000 to 571,000 faults per step (up to 6.0 s of kernel CPU time on two
threads) from one run to the next; on NAS-Bench-201, about 100,000 (``benchmarks/step_time.py``
prints both per step).

:func:`keep_freed_memory` turns both off (``mallopt``: no mapping of single blocks, no
trimming below 2 GB), so freed memory stays in the process and is reused: no page faults in a
steady step. The price: memory is not handed back to the system for the rest of the process
(the one-shot engine sets this before training on the CPU, so a notebook that searches keeps
its high-water mark), and blocks freed between live ones are reused only as they fit (peak
resident memory 0.5-0.8% higher in the measured steps). It is left alone when
``NASFRAME_KEEP_FREED_MEMORY=0``, when the environment sets glibc's malloc itself
(``MALLOC_*_`` variables, ``glibc.malloc`` tunables) or preloads another allocator
(``LD_PRELOAD``), and on other C libraries; :func:`status` says which.
"""
from __future__ import annotations

import ctypes
import os
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
    if os.name != "posix":
        return None
    try:
        libc = ctypes.CDLL(None)
        libc.gnu_get_libc_version  # only glibc has it
        libc.mallopt
    except (OSError, AttributeError, TypeError):
        return None
    return libc


def _set_elsewhere() -> Optional[str]:
    """What in the environment already decides malloc's behaviour (None: nothing)."""
    preload = os.environ.get("LD_PRELOAD", "")
    if "malloc" in preload:  # jemalloc, tcmalloc, mimalloc, ...
        return "LD_PRELOAD"
    names = sorted(n for n in os.environ if n.startswith("MALLOC_") and n.endswith("_"))
    if names:
        return names[0]
    if "glibc.malloc." in os.environ.get("GLIBC_TUNABLES", ""):
        return "GLIBC_TUNABLES"
    return None


def keep_freed_memory() -> str:
    """Set glibc's malloc to keep freed memory (once per process; later calls do nothing);
    returns :func:`status`."""
    if "status" in _state:
        return _state["status"]
    if not env_switch(ENV_SWITCH):
        status = f"C library defaults ({ENV_SWITCH}=0)"
    elif (elsewhere := _set_elsewhere()) is not None:
        status = f"as the environment sets it ({elsewhere})"
    elif (libc := _glibc()) is None:
        status = "C library defaults (not glibc)"
    else:
        no_mmap = libc.mallopt(_M_MMAP_MAX, 0) == 1
        no_trim = libc.mallopt(_M_TRIM_THRESHOLD, _NO_TRIM) == 1
        if no_mmap and no_trim:
            status = "freed memory kept (glibc: no mmap, no trim)"
        elif no_mmap or no_trim:
            status = f"freed memory partly kept (glibc refused {'the trim threshold' if no_mmap else 'M_MMAP_MAX'})"
        else:
            status = "C library defaults (glibc refused mallopt)"
    _state["status"] = status
    return status


def status() -> str:
    """What a run's record says about the allocator: the outcome of :func:`keep_freed_memory`,
    or ``not set`` when nothing called it (a search on a GPU, or a black-box search, which
    trains no supernet)."""
    return _state.get("status", "not set")
