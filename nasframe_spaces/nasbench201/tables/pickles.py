"""Reading pickled benchmark results safely, and the number helpers the pickle formats share.

Pickles are read with :func:`nasframe_core.safe_pickle.restricted_load`, which only builds
plain containers, numbers and numpy arrays, so a file that is not a benchmark table cannot run
code.
"""
from __future__ import annotations

import math
from typing import Any, Iterable, Optional

from nasframe_core.errors import NasframeError
from nasframe_core.safe_pickle import UNREADABLE, RefusedPickle, restricted_load

from .codes import _SUPPORTED

#: what a truncated, corrupt or refused pickle/bz2 stream raises
_CORRUPT = UNREADABLE


def _unpickle(fileobj: Any) -> Any:
    return restricted_load(fileobj)


def _corrupt(kind: str, where: str, exc: BaseException) -> NasframeError:
    detail = str(exc) or type(exc).__name__
    if isinstance(exc, RefusedPickle):
        return NasframeError(f"refusing to load {kind} {where}: {detail}, so it is not an NB201 table; {_SUPPORTED}")
    return NasframeError(
        f"cannot read {kind} {where}: the file is truncated or corrupt ({type(exc).__name__}: {detail}); "
        f"download it again"
    )


def _num(value: Any) -> Optional[float]:
    if value is None or isinstance(value, (str, bytes)):
        return None
    try:
        x = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(x) else x


def _at(container: Any, key: Any) -> Optional[float]:
    """``container[key]`` as a float, or None where it is absent."""
    if container is None:
        return None
    try:
        return _num(container[key])
    except (KeyError, IndexError, TypeError):
        return None


def _last(values: Any) -> Optional[float]:
    """The final-epoch value of a per-epoch list (or dict keyed by epoch, or a plain number)."""
    if isinstance(values, (list, tuple)):
        return _num(values[-1]) if values else None
    if isinstance(values, dict):
        if not values:
            return None
        try:
            return _num(values[max(values)])
        except TypeError:
            return None
    return _num(values)


def _mean(values: Iterable[Optional[float]]) -> Optional[float]:
    xs = [v for v in values if v is not None]
    return sum(xs) / len(xs) if xs else None

