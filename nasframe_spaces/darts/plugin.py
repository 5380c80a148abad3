"""Plugin: the DARTS cell search space."""
from __future__ import annotations

from nasframe_core import hookimpl


@hookimpl
def nasframe_register_search_spaces(register):
    register("darts", "nasframe_spaces.darts.space:DartsSearchSpace",
             description="DARTS cell space: normal + reduction cells, 14 edges x 8 ops each")
