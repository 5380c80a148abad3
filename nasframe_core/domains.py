"""Domains of settings, declared once where the setting is defined.

A plugin factory (class or function) may carry ``settings_domain``: a mapping from setting name
to a :class:`Domain` (``at_least(1)``, ``between(0, 1)``, ``one_of("a", "b")``...), and
``settings_help``: a mapping from setting name to a one-line meaning (``nasframe plugins
--settings`` prints it). On a class both are merged along the class hierarchy, so a subclass
adds to its base's. The loop's own settings (``run.*``, ``train.*``, ``augment.*``) declare
theirs in :data:`nasframe_core.config.DOMAINS`. A value outside its domain is refused in one
line naming the setting, the domain and the value, wherever it came from (file, flag, ``--set``).
"""
from __future__ import annotations

import inspect
import math
from typing import Any, Callable, Mapping, Optional

import attrs


@attrs.frozen
class Domain:
    """A set of allowed values: ``low``/``high`` bounds (``None``: open), each inclusive or not,
    or a tuple of ``choices``."""

    low: Optional[float] = None
    high: Optional[float] = None
    low_inclusive: bool = True
    high_inclusive: bool = True
    choices: tuple = ()

    def __contains__(self, value: Any) -> bool:
        if value is None:
            return True  # "unset" is every optional setting's own value
        if self.choices:
            return value in self.choices
        if isinstance(value, (list, tuple)):
            return all(v in self for v in value)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return True  # a domain of numbers says nothing about other values
        if isinstance(value, float) and math.isnan(value):
            return False
        if self.low is not None and (value < self.low or (value == self.low and not self.low_inclusive)):
            return False
        if self.high is not None and (value > self.high or (value == self.high and not self.high_inclusive)):
            return False
        return True

    def describe(self) -> str:
        if self.choices:
            return "one of " + ", ".join(str(c) for c in self.choices)
        lo = None if self.low is None else _num(self.low)
        hi = None if self.high is None else _num(self.high)
        if lo is not None and hi is not None:
            if self.low_inclusive and self.high_inclusive:
                return f"in [{lo}, {hi}]"
            left = f"at least {lo}" if self.low_inclusive else f"above {lo}"
            right = f"at most {hi}" if self.high_inclusive else f"below {hi}"
            return f"{left} and {right}"
        if lo is not None:
            return f"at least {lo}" if self.low_inclusive else f"greater than {lo}"
        if hi is not None:
            return f"at most {hi}" if self.high_inclusive else f"less than {hi}"
        return "any value"

    __str__ = describe


def _num(x: float) -> str:
    if isinstance(x, int) and abs(x) >= 2**31:
        return f"2**{int(math.log2(x + 1))} - 1" if (x + 1) & x == 0 else str(x)
    return f"{x:g}" if isinstance(x, float) else str(x)


def at_least(low: float) -> Domain:
    return Domain(low=low)


def greater_than(low: float) -> Domain:
    return Domain(low=low, low_inclusive=False)


def between(low: float, high: float, *, high_inclusive: bool = True) -> Domain:
    return Domain(low=low, high=high, high_inclusive=high_inclusive)


def one_of(*choices: Any) -> Domain:
    return Domain(choices=tuple(choices))


#: a seed torch, numpy and Python all take
SEED = between(0, 2**63 - 1)
POSITIVE = greater_than(0)
NON_NEGATIVE = at_least(0)
PROBABILITY = between(0, 1)
COUNT = at_least(1)


def _merged(factory: Callable[..., Any], attr: str) -> dict[str, Any]:
    if inspect.isclass(factory):
        out: dict[str, Any] = {}
        for klass in reversed(factory.__mro__):
            out.update(klass.__dict__.get(attr, {}) or {})
        return out
    return dict(getattr(factory, attr, {}) or {})


def settings_domain(factory: Callable[..., Any]) -> dict[str, Domain]:
    """The declared domains of ``factory``'s settings."""
    return _merged(factory, "settings_domain")


def settings_help(factory: Callable[..., Any]) -> dict[str, str]:
    """The one-line meanings of ``factory``'s settings."""
    return _merged(factory, "settings_help")


def check_value(domains: Mapping[str, Domain], name: str, value: Any, label: str) -> None:
    """Refuse ``value`` of setting ``name`` when it lies outside its domain."""
    from .errors import NasframeError

    domain = domains.get(name)
    if domain is not None and value not in domain:
        raise NasframeError(f"{label} must be {domain.describe()}, got {value!r}")
