"""The DARTS optimizer plugin: ``from nasframe_darts import DARTSOptimizer``."""
from __future__ import annotations

from .optimizer import DARTSOptimizer

__all__ = ["DARTSOptimizer"]
