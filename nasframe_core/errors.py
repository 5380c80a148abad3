"""User-facing errors.

Anything a user can cause (a bad flag, a missing file, an unknown plugin name) raises
:class:`NasframeError` with one line that names the problem and the fix. The command line
prints that line and exits non-zero; it never shows a traceback for these.
"""
from __future__ import annotations


class NasframeError(Exception):
    """An error caused by user input, reported as one line without a traceback."""

    exit_code = 2

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).split()))


class DivergenceError(NasframeError):
    """A loss became NaN or infinite; the last good checkpoint is kept."""

    exit_code = 3


def unknown_name(kind: str, name: str, known) -> NasframeError:
    """The error for a name that matches nothing installed, listing what is."""
    known = sorted(known)
    listing = ", ".join(known) if known else "none installed"
    return NasframeError(f"unknown {kind} {name!r}; installed: {listing}")
