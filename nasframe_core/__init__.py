"""nasframe's core: hook specifications, the plugin manager, the search loop and the CLI.

The core knows no optimizer and no search space; everything is a plugin found through the
``nasframe`` entry-point group. Write a plugin with :data:`hookimpl`::

    from nasframe_core import hookimpl

    @hookimpl
    def nasframe_register_search_spaces(register):
        register("myspace", MySpace, description="...")
"""
from __future__ import annotations

from .errors import NasframeError
from .hookspecs import hookimpl, hookspec
from .plugins import PluginHost, make_plugin_manager

from .dist import version as _version

#: the version of whichever installed distribution ships the core
__version__ = _version()

__all__ = [
    "hookimpl",
    "hookspec",
    "make_plugin_manager",
    "PluginHost",
    "NasframeError",
    "MetaOptimizer",
    "SearchSpace",
    "CellSpec",
    "Choice",
    "Genotype",
    "Benchmark",
    "__version__",
]


def __getattr__(name: str):
    # torch-dependent abstractions load on first use, so `import nasframe_core` stays light
    if name == "MetaOptimizer":
        from .optimizer import MetaOptimizer

        return MetaOptimizer
    if name in ("SearchSpace", "CellSpec", "Choice"):
        from . import space

        return getattr(space, name)
    if name == "Genotype":
        from .genotype import Genotype

        return Genotype
    if name == "Benchmark":
        from .benchmark import Benchmark

        return Benchmark
    raise AttributeError(f"module 'nasframe_core' has no attribute {name!r}")
