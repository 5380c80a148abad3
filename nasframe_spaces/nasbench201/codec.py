"""NAS-Bench-201 architectures: the genotype and its encodings.

An NB201 cell has nodes 0..3 and an edge j->i for every j < i, each carrying one of five
ops. The canonical edge order is NB201's: 1<-0, 2<-0, 2<-1, 3<-0, 3<-1, 3<-2. Encodings:

- the arch string ``|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|...|`` (groups for
  nodes 1, 2, 3; ``~j`` is the source node),
- op indices: a 6-tuple of indices into :data:`OPS` in the edge order above,
- NASLib's 6-int tuple (its own op order :data:`NASLIB_OPS` and edge order
  0->1, 0->2, 0->3, 1->2, 1->3, 2->3), converted by name, never by position,
- the benchmark index 0..15624, which is a property of a benchmark table (the order of the
  benchmark's list), so it is answered by :class:`~nasframe_spaces.nasbench201.tables.NB201Table`.
"""
from __future__ import annotations

from typing import Any, Iterable, Sequence

import attrs

from nasframe_core.errors import NasframeError
from nasframe_core.genotype import Genotype

OPS: tuple[str, ...] = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
EDGES: tuple[tuple[int, int], ...] = ((0, 1), (0, 2), (1, 2), (0, 3), (1, 3), (2, 3))
NUM_ARCHS = len(OPS) ** len(EDGES)

NASLIB_OPS: tuple[str, ...] = ("skip_connect", "none", "nor_conv_3x3", "nor_conv_1x1", "avg_pool_3x3")
NASLIB_EDGES: tuple[tuple[int, int], ...] = ((0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3))

_OP_INDEX = {op: i for i, op in enumerate(OPS)}


def _check_ops(ops: Sequence[str]) -> tuple[str, ...]:
    ops = tuple(ops)
    if len(ops) != len(EDGES):
        raise NasframeError(f"an NB201 cell has {len(EDGES)} edges, got {len(ops)} ops")
    for op in ops:
        if op not in _OP_INDEX:
            raise NasframeError(f"unknown NB201 op {op!r}; the ops are: {', '.join(OPS)}")
    return ops


@attrs.frozen
class NB201Genotype(Genotype):
    """One NB201 cell: the op of each edge, in NB201 edge order (1<-0, 2<-0, 2<-1, 3<-0, 3<-1, 3<-2)."""

    space = "nasbench201"
    ops: tuple[str, ...] = attrs.field(converter=_check_ops)

    # ------------------------------------------------------------------ strings
    def to_str(self) -> str:
        groups = []
        k = 0
        for node in (1, 2, 3):
            items = []
            for src in range(node):
                items.append(f"{self.ops[k]}~{src}")
                k += 1
            groups.append("|" + "|".join(items) + "|")
        return "+".join(groups)

    @property
    def arch_str(self) -> str:
        return self.to_str()

    @classmethod
    def from_str(cls, text: str) -> "NB201Genotype":
        original = text
        text = str(text).strip()
        hint = "expected '|op~0|+|op~0|op~1|+|op~0|op~1|op~2|'"
        groups = text.split("+")
        if len(groups) != 3:
            raise NasframeError(f"malformed NB201 arch string {original!r}: {hint}")
        ops: list[str] = []
        for node, group in enumerate(groups, start=1):
            if not (group.startswith("|") and group.endswith("|")) or len(group) < 2:
                raise NasframeError(f"malformed NB201 arch string {original!r}: group {node} must be enclosed in '|'; {hint}")
            items = group[1:-1].split("|")
            if len(items) != node:
                raise NasframeError(
                    f"malformed NB201 arch string {original!r}: node {node} needs {node} inputs, got {len(items)}; {hint}"
                )
            for src, item in enumerate(items):
                op, sep, j = item.partition("~")
                if not sep or j != str(src):
                    raise NasframeError(
                        f"malformed NB201 arch string {original!r}: {item!r} should read 'op~{src}'; {hint}"
                    )
                if op not in _OP_INDEX:
                    raise NasframeError(f"unknown NB201 op {op!r} in {original!r}; the ops are: {', '.join(OPS)}")
                ops.append(op)
        return cls(tuple(ops))

    # ----------------------------------------------------------------- op indices
    @property
    def op_indices(self) -> tuple[int, ...]:
        return tuple(_OP_INDEX[op] for op in self.ops)

    @classmethod
    def from_op_indices(cls, indices: Iterable[int]) -> "NB201Genotype":
        idx = tuple(indices)
        if len(idx) != len(EDGES) or any(not isinstance(i, int) or not 0 <= i < len(OPS) for i in idx):
            raise NasframeError(f"NB201 op indices must be {len(EDGES)} integers in 0..{len(OPS) - 1}, got {idx!r}")
        return cls(tuple(OPS[i] for i in idx))

    def to_naslib(self) -> tuple[int, ...]:
        """NASLib's 6-int encoding (its op order and edge order)."""
        by_edge = dict(zip(EDGES, self.ops))
        return tuple(NASLIB_OPS.index(by_edge[e]) for e in NASLIB_EDGES)

    @classmethod
    def from_naslib(cls, encoding: Iterable[int]) -> "NB201Genotype":
        enc = tuple(encoding)
        if len(enc) != len(NASLIB_EDGES) or any(not isinstance(i, int) or not 0 <= i < len(NASLIB_OPS) for i in enc):
            raise NasframeError(f"a NASLib NB201 encoding is 6 integers in 0..4, got {enc!r}")
        by_edge = {e: NASLIB_OPS[i] for e, i in zip(NASLIB_EDGES, enc)}
        return cls(tuple(by_edge[e] for e in EDGES))

    # ------------------------------------------------------------------- JSON
    def to_json(self) -> dict[str, Any]:
        return {"space": self.space, "genotype": self.to_str(), "op_indices": list(self.op_indices)}

    def __str__(self) -> str:
        return self.to_str()
