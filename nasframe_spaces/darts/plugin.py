"""Plugin: the DARTS cell search space."""
from __future__ import annotations

from nasframe_core import hookimpl

from .space import DartsSearchSpace


@hookimpl
def nasframe_register_search_spaces(register):
    register("darts", DartsSearchSpace,
             description="DARTS cell space: normal + reduction cells, 14 edges x 8 ops each")
