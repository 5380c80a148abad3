"""The differentiable family: a public one-shot engine and the methods built on it.

``from nasframe_darts import GDASOptimizer`` (and the others of :data:`FAMILY`); write a
method of your own by subclassing :class:`OneShotOptimizer` (see :mod:`nasframe_darts.engine`).
The names load on first use, so importing the package (as the plugin's registration does)
imports no torch.
"""
from __future__ import annotations

import importlib

from .family import METHODS

_CLASSES = {path.partition(":")[2]: path for path, _ in METHODS.values()}
_ENGINE = ("OneShotOptimizer", "RandomStreams", "compose")

__all__ = ["FAMILY", *_ENGINE, *sorted(_CLASSES)]


def _load(path: str):
    module, _, attr = path.partition(":")
    return getattr(importlib.import_module(module), attr)


def __getattr__(name: str):
    if name == "FAMILY":
        #: registry name -> (class, one line)
        family = {key: (_load(path), line) for key, (path, line) in METHODS.items()}
        globals()["FAMILY"] = family
        return family
    if name in _CLASSES:
        return _load(_CLASSES[name])
    if name in _ENGINE:
        return _load(f"nasframe_darts.engine:{name}")
    raise AttributeError(f"module 'nasframe_darts' has no attribute {name!r}")
