"""Unpickling data files without running code: plain containers, numbers and numpy arrays only.

Benchmark tables and dataset batches that come as pickles (NASLib's and NATS-Bench's tables,
ImageNet16-120's batches) are read with :func:`restricted_load`. A pickle can name any
importable function and have it called; this unpickler refuses every name except the few
that plain data needs, so a file that is not what it claims cannot run code.
"""
from __future__ import annotations

import _compat_pickle
import pickle
from typing import IO, Any

_BUILTINS = frozenset(
    {"dict", "list", "tuple", "set", "frozenset", "int", "float", "complex", "str", "bytes",
     "bytearray", "bool", "slice", "range", "object"}
)
_COLLECTIONS = frozenset({"OrderedDict", "defaultdict", "deque", "Counter"})
#: numpy's array and scalar reconstructors (``numpy.core`` before numpy 2, ``numpy._core`` after)
_NUMPY_PRIVATE = {
    f"numpy.{core}.{module}": names
    for core in ("core", "_core")
    for module, names in (("multiarray", frozenset({"_reconstruct", "scalar"})),
                          ("numeric", frozenset({"_frombuffer"})))
}


class RefusedPickle(pickle.UnpicklingError):
    """A pickle that names something other than plain data."""


def _numpy_type(name: str) -> bool:
    """``numpy.<name>`` is the array, dtype or a scalar type (not, say, ``memmap``)."""
    import numpy as np

    obj = getattr(np, name, None)
    return obj is np.ndarray or obj is np.dtype or (isinstance(obj, type) and issubclass(obj, np.generic))


def allowed(module: str, name: str) -> bool:
    """Whether a pickle may name ``module.name`` (Python 2 names, as pickle maps them, too)."""
    if (module, name) in _compat_pickle.NAME_MAPPING:
        module, name = _compat_pickle.NAME_MAPPING[(module, name)]
    else:
        module = _compat_pickle.IMPORT_MAPPING.get(module, module)
    if module == "builtins":
        return name in _BUILTINS
    if module == "collections":
        return name in _COLLECTIONS
    if module == "copyreg":
        return name == "_reconstructor"
    if module == "_codecs":
        return name == "encode"
    if module == "numpy":
        return _numpy_type(name)
    if module == "numpy.dtypes":
        return name.endswith("DType")
    return name in _NUMPY_PRIVATE.get(module, ())


class RestrictedUnpickler(pickle.Unpickler):
    """Builds plain containers, numbers and numpy arrays; refuses any other name."""

    def find_class(self, module: str, name: str) -> Any:
        if not allowed(module, name):
            raise RefusedPickle(f"it refers to {module}.{name}, which plain data never holds")
        return super().find_class(module, name)


def restricted_load(fileobj: IO[bytes], **kwargs: Any) -> Any:
    """``pickle.load`` that refuses anything but plain data (raises :class:`RefusedPickle`).

    ``kwargs`` go to the unpickler (``encoding="latin1"`` for Python 2 pickles).
    """
    return RestrictedUnpickler(fileobj, **kwargs).load()


#: what a truncated, corrupt or refused pickle raises
UNREADABLE = (EOFError, OSError, pickle.UnpicklingError, ValueError, TypeError, AttributeError,
              ImportError, IndexError, KeyError, RecursionError, MemoryError)
