"""The installed distribution that ships the core: its name and version, found at run time (the
core names none)."""
from __future__ import annotations

from typing import Optional


def distribution() -> Optional[str]:
    """The name of the installed distribution holding ``nasframe_core`` (None from a source tree)."""
    try:
        from importlib.metadata import packages_distributions

        return packages_distributions()["nasframe_core"][0]
    except Exception:  # running from a source tree that is not installed
        return None


def version() -> str:
    name = distribution()
    if name is None:
        return "0+unknown"
    from importlib.metadata import version as _version

    return _version(name)


def ray_hint() -> str:
    """How to install Ray: the ``ray`` extra of the distribution."""
    name = distribution()
    return f"pip install '{name}[ray]' (or pip install ray)" if name else "pip install ray"
