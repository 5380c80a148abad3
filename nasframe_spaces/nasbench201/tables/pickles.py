"""Reading pickled benchmark results safely, and the number helpers the pickle formats share.

Pickles are read with a restricted unpickler that only builds plain containers and numbers
(builtins, ``collections``, numpy), so a file that is not a benchmark table cannot run code.
"""
from __future__ import annotations

import math
import pickle
from typing import Any, Iterable, Optional

from nasframe_core.errors import NasframeError

from .codes import _SUPPORTED

_SAFE_BUILTINS = frozenset(
    {"dict", "list", "tuple", "set", "frozenset", "int", "float", "complex", "str", "bytes",
     "bytearray", "bool", "slice", "range", "object"}
)


class _Refused(pickle.UnpicklingError):
    """A pickle that names a class or function no benchmark table holds."""


class _TableUnpickler(pickle.Unpickler):
    """Builds plain containers and numbers only; anything else is not a benchmark table."""

    def find_class(self, module: str, name: str) -> Any:
        ok = (
            (module == "builtins" and name in _SAFE_BUILTINS)
            or module == "collections"
            or module == "numpy"
            or module.startswith("numpy.")
            or (module == "copyreg" and name == "_reconstructor")
            or (module == "_codecs" and name == "encode")
        )
        if not ok:
            raise _Refused(f"it refers to {module}.{name}, which no benchmark table holds")
        return super().find_class(module, name)


#: what a truncated or corrupt pickle/bz2 stream raises
_CORRUPT = (EOFError, OSError, pickle.UnpicklingError, ValueError, TypeError, AttributeError,
            ImportError, IndexError, KeyError, RecursionError)


def _unpickle(fileobj: Any) -> Any:
    return _TableUnpickler(fileobj).load()


def _corrupt(kind: str, where: str, exc: BaseException) -> NasframeError:
    detail = str(exc) or type(exc).__name__
    if isinstance(exc, _Refused):
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

