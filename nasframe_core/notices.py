"""Notices: what turned something off or changed course without being asked, said once.

A run collects one-line notices while it is set up (before its log exists): a plugin's
:func:`~nasframe_core.hookspecs.nasframe_process_start` entries may carry ``"notices"`` (a list
of lines), the run directory adds one when ``--resume`` finds no checkpoint, and the cache
directory is probed here. Once the run's console and ``log.txt`` handlers are in place,
:func:`say` prints each line once, as ``note: ...``; ``result.json`` keeps them under
``runtime.notices``.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Mapping, Optional

KEY = "notices"


def merge(runtime: dict, entries: Optional[Mapping[str, Any]]) -> None:
    """Add a plugin's runtime ``entries`` to ``runtime``, keeping every plugin's notices."""
    entries = dict(entries or {})
    lines = entries.pop(KEY, None) or []
    runtime.update(entries)
    if lines:
        runtime.setdefault(KEY, []).extend(str(line) for line in lines)


def cache_notice() -> Optional[str]:
    """The line to say when the cache directory cannot be written (``None`` when it can)."""
    from .data import cache_dir

    path = cache_dir()
    where = "NASFRAME_CACHE" if os.environ.get("NASFRAME_CACHE") else "the default cache directory"
    existing = Path(path).absolute()
    while not existing.exists() and existing.parent != existing:
        existing = existing.parent
    if existing.is_dir() and os.access(existing, os.W_OK | os.X_OK):
        return None
    return (f"the cache directory {path} ({where}) cannot be written, so decoded image folders are decoded again "
            f"on every run and native kernels (--cpu-kernels) cannot be built; set NASFRAME_CACHE to a writable "
            f"directory")


def say(runtime: dict, logger: logging.Logger) -> None:
    """Say every collected notice once (console and log.txt), the cache directory's included."""
    lines = runtime.setdefault(KEY, [])
    cache = cache_notice()
    if cache and cache not in lines:
        lines.append(cache)
    seen = set()
    for line in lines:
        if line not in seen:
            seen.add(line)
            logger.warning("note: %s", line)
    if not lines:
        del runtime[KEY]
