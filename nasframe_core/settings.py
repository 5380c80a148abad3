"""Settings of plugin factories, read from their signatures.

A factory's keyword arguments are its settings: ``--set optimizer.learning_rate=0.1`` is
checked against the signature of the optimizer's factory and converted to the type of the
default. A factory that takes ``**kwargs`` for more settings lists them in a class attribute
``extra_settings`` (name to default).
"""
from __future__ import annotations

import inspect
import os
from typing import Any, Callable, Mapping

from .errors import NasframeError

_MISSING = object()


def factory_settings(factory: Callable[..., Any]) -> dict[str, Any]:
    """Map each setting of ``factory`` to its default (``None`` when it has none)."""
    target = factory.__init__ if inspect.isclass(factory) else factory
    try:
        sig = inspect.signature(target)
    except (TypeError, ValueError):
        return {}
    out: dict[str, Any] = {}
    for i, (name, p) in enumerate(sig.parameters.items()):
        if inspect.isclass(factory) and i == 0:
            continue  # self
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        out[name] = None if p.default is p.empty else p.default
    out.update(getattr(factory, "extra_settings", {}) or {})
    return out


def coerce(value: Any, default: Any, key: str) -> Any:
    """Convert ``value`` (often a string from the command line) to the type of ``default``."""
    if default is None or value is None or isinstance(value, type(default)) and not isinstance(value, str):
        if isinstance(default, bool) and not isinstance(value, bool) and value is not None:
            return coerce(str(value), default, key)
        return value
    if isinstance(default, bool):
        text = str(value).strip().lower()
        if text in ("1", "true", "yes", "on"):
            return True
        if text in ("0", "false", "no", "off"):
            return False
        raise NasframeError(f"setting {key!r} must be true or false, got {value!r}")
    if isinstance(default, (int, float)) and not isinstance(default, bool):
        try:
            number = float(value) if isinstance(default, float) else _to_int(value)
        except (TypeError, ValueError):
            kind = "a number" if isinstance(default, float) else "a whole number"
            raise NasframeError(f"setting {key!r} must be {kind}, got {value!r}") from None
        return number
    if isinstance(default, str):
        return str(value)
    if isinstance(default, (list, tuple)):
        if isinstance(value, str):
            items = [v.strip() for v in value.strip("[]()").split(",") if v.strip()]
        else:
            items = list(value)
        if default:
            items = [coerce(v, default[0], key) for v in items]
        return type(default)(items)
    return value


def _to_int(value: Any) -> int:
    if isinstance(value, float):
        if not value.is_integer():
            raise ValueError(value)
        return int(value)
    return int(str(value).strip())


_SAMPLES = {int: 0, float: 0.0, bool: False, str: ""}


def _annotated_types(factory: Callable[..., Any]) -> dict[str, type]:
    """The plain types (int, float, bool, str) that ``factory``'s signature annotates."""
    import typing

    target = factory.__init__ if inspect.isclass(factory) else factory
    try:
        hints = typing.get_type_hints(target)
    except Exception:  # unresolvable annotations: fall back to the defaults' types
        return {}
    return {name: hint for name, hint in hints.items() if hint in _SAMPLES}


def check_settings(factory: Callable[..., Any], settings: Mapping[str, Any], label: str) -> dict:
    """Validate and convert ``settings`` for ``factory``; unknown names list the known ones.

    Values are converted to the annotated type of the argument (``grad_clip: float = 5``
    takes 2.5), else to the type of its default.
    """
    known = factory_settings(factory)
    types = _annotated_types(factory)
    out = {}
    for key, value in settings.items():
        if key not in known:
            listing = ", ".join(sorted(known)) or "none"
            raise NasframeError(f"unknown setting {key!r} for {label}; known settings: {listing}")
        sample = _SAMPLES[types[key]] if key in types else known[key]
        out[key] = coerce(value, sample, key)
    from .domains import check_value, settings_domain

    domains = settings_domain(factory)
    for key, value in out.items():
        check_value(domains, key, value, f"setting {key!r} of {label}")
    return out


def call_with_settings(factory: Callable[..., Any], settings: Mapping[str, Any], label: str) -> Any:
    return factory(**check_settings(factory, settings, label))


ON_VALUES = ("1", "on", "true", "yes")
OFF_VALUES = ("0", "off", "false", "no")


def env_switch(name: str, default: bool = True) -> bool:
    """The on/off environment variable ``name`` (``default`` when unset or empty); any value
    but 1/on/true/yes or 0/off/false/no is an error naming the variable."""
    value = os.environ.get(name, "").strip().lower()
    if not value:
        return default
    if value in ON_VALUES:
        return True
    if value in OFF_VALUES:
        return False
    raise NasframeError(f"{name}={os.environ[name]!r} is neither on nor off; set it to 1 or 0 (or unset it)")
