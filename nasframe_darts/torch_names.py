"""Torch classes from their names (``'SGD'``, ``'CrossEntropyLoss'``) and one-line refusals.

The settings of an optimizer plugin name torch classes as strings; these helpers turn them
into classes, build torch optimizers with the keyword arguments their constructors take,
and turn torch's own errors into a one-line :class:`~nasframe_core.errors.NasframeError`.
"""
from __future__ import annotations

import inspect
from typing import Any

import torch

from nasframe_core.errors import NasframeError


def resolve_class(kind: str, value: Any, module: Any, base: type, example: str = "SGD") -> type:
    """A torch class from its name (``'SGD'``), or the class itself.

    Only public proper subclasses of ``base`` count: for a loss, ``'Linear'`` or ``'Module'``
    is as unknown as a misspelt name.
    """
    if isinstance(value, type):
        return value

    def usable(name: str, cls: Any) -> bool:
        return not name.startswith("_") and isinstance(cls, type) and issubclass(cls, base) and cls is not base

    if isinstance(value, str):
        cls = getattr(module, value, None)
        if usable(value, cls):
            return cls
        known = sorted(n for n, c in vars(module).items() if usable(n, c))
        raise NasframeError(f"unknown {kind} {value!r}; use a torch name: {', '.join(known)}")
    raise NasframeError(f"{kind} must be a torch class name like {example!r}, got {value!r}")


def accepts(cls: type, name: str) -> bool:
    """Whether the constructor of ``cls`` takes a keyword argument ``name``."""
    try:
        return name in inspect.signature(cls.__init__).parameters
    except (TypeError, ValueError):
        return False


def build_optimizer(cls: type, params: list, kind: str, **settings) -> torch.optim.Optimizer:
    """``cls(params, ...)`` with the settings its constructor takes; a refusal is one line."""
    closure = inspect.signature(cls.step).parameters.get("closure")
    if closure is not None and closure.default is inspect.Parameter.empty:
        raise NasframeError(f"{kind} {cls.__name__} needs a closure to step; choose one such as SGD or Adam")
    kwargs = {k: v for k, v in settings.items() if k == "lr" or accepts(cls, k)}
    try:
        return cls(params, **kwargs)
    except (TypeError, ValueError, RuntimeError) as exc:
        raise NasframeError(f"{kind} {cls.__name__} cannot optimize these parameters: {' '.join(str(exc).split())}") from None


def step_optimizer(optimizer: torch.optim.Optimizer, kind: str) -> None:
    """``optimizer.step()``; a gradient it cannot take (sparse) is a one-line refusal."""
    try:
        optimizer.step()
    except RuntimeError as exc:
        if "sparse" not in str(exc).lower():
            raise
        raise NasframeError(f"{kind} {type(optimizer).__name__} cannot take these gradients: "
                            f"{' '.join(str(exc).split())}") from None
