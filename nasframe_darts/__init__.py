"""The differentiable family: a public one-shot engine and the methods built on it.

``from nasframe_darts import DARTSOptimizer, GDASOptimizer, ...``; write your own method by
subclassing :class:`OneShotOptimizer` (see :mod:`nasframe_darts.engine`).
"""
from __future__ import annotations

from .engine import OneShotOptimizer, RandomStreams
from .optimizer import DARTSOptimizer

__all__ = ["DARTSOptimizer", "OneShotOptimizer", "RandomStreams"]
