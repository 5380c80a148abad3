"""Search-space plugins: NAS-Bench-201 and the DARTS cell space.

``from nasframe_spaces import NasBench201SearchSpace, DartsSearchSpace`` (NASLib's names).
"""
from __future__ import annotations

__all__ = ["NasBench201SearchSpace", "DartsSearchSpace", "NB201Genotype", "DartsGenotype"]


def __getattr__(name: str):
    if name in ("NasBench201SearchSpace", "NB201Genotype"):
        from .nasbench201 import space, codec

        return getattr(space, name, None) or getattr(codec, name)
    if name in ("DartsSearchSpace", "DartsGenotype"):
        from .darts import space, genotype

        return getattr(space, name, None) or getattr(genotype, name)
    raise AttributeError(f"module 'nasframe_spaces' has no attribute {name!r}")
