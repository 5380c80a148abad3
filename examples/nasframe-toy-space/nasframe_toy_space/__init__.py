"""A third-party nasframe plugin: the ``toy`` search space.

The package is found through its entry point (``[project.entry-points.nasframe]`` in
``pyproject.toml``); nasframe imports this module and calls the hook below.
"""
from __future__ import annotations

from nasframe_core import hookimpl

from .space import OPS, ToyGenotype, ToySearchSpace

__version__ = "0.1.0"
__all__ = ["OPS", "ToyGenotype", "ToySearchSpace", "nasframe_register_search_spaces"]


@hookimpl
def nasframe_register_search_spaces(register):
    register("toy", ToySearchSpace, description="a tiny space: one 3-node cell, 3 edges x 4 ops, no batch norm")
