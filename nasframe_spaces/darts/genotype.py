"""DARTS-space genotypes, in the form the original DARTS code prints and papers publish:

``Genotype(normal=[('sep_conv_3x3', 0), ...], normal_concat=[2, 3, 4, 5], reduce=[...], reduce_concat=[2, 3, 4, 5])``

Entries ``2k`` and ``2k+1`` are the two inputs of intermediate node ``k + 2``; an input index
is 0 (c_{k-2}), 1 (c_{k-1}) or an earlier intermediate node. ``range(2, 6)`` is read as
``[2, 3, 4, 5]``.
"""
from __future__ import annotations

import ast
from typing import Any

import attrs

from nasframe_core.errors import NasframeError
from nasframe_core.genotype import Genotype

OPS: tuple[str, ...] = (
    "none",
    "max_pool_3x3",
    "avg_pool_3x3",
    "skip_connect",
    "sep_conv_3x3",
    "sep_conv_5x5",
    "dil_conv_3x3",
    "dil_conv_5x5",
)
STEPS = 4
CONCAT = (2, 3, 4, 5)
FIELDS = ("normal", "normal_concat", "reduce", "reduce_concat")
EXAMPLE = "Genotype(normal=[('sep_conv_3x3', 0), ...], normal_concat=[2, 3, 4, 5], reduce=[...], reduce_concat=[2, 3, 4, 5])"


def _cell(value: Any, field: str) -> tuple[tuple[str, int], ...]:
    try:
        entries = tuple((str(op), int(j)) for op, j in value)
    except (TypeError, ValueError):
        raise NasframeError(f"genotype field {field!r} must be a list of (op, input) pairs") from None
    if len(entries) != 2 * STEPS:
        raise NasframeError(f"genotype field {field!r} needs {2 * STEPS} (op, input) pairs, 2 per node; got {len(entries)}")
    for i, (op, j) in enumerate(entries):
        if op not in OPS:
            raise NasframeError(f"genotype names op {op!r}, which the DARTS space lacks; its ops are: {', '.join(OPS)}")
        node = 2 + i // 2
        if not 0 <= j < node:
            raise NasframeError(f"genotype field {field!r}: node {node} cannot take input {j} (inputs 0..{node - 1})")
    return entries


def _concat(value: Any, field: str) -> tuple[int, ...]:
    try:
        concat = tuple(int(v) for v in value)
    except (TypeError, ValueError):
        raise NasframeError(f"genotype field {field!r} must be a list of node indices") from None
    if concat != CONCAT:
        raise NasframeError(f"genotype field {field!r} must be [2, 3, 4, 5] (every intermediate node), got {list(concat)}")
    return concat


@attrs.frozen
class DartsGenotype(Genotype):
    space = "darts"
    normal: tuple[tuple[str, int], ...] = attrs.field(converter=lambda v: _cell(v, "normal"))
    normal_concat: tuple[int, ...] = attrs.field(default=CONCAT, converter=lambda v: _concat(v, "normal_concat"))
    reduce: tuple[tuple[str, int], ...] = attrs.field(default=None, converter=lambda v: _cell(v, "reduce"))
    reduce_concat: tuple[int, ...] = attrs.field(default=CONCAT, converter=lambda v: _concat(v, "reduce_concat"))

    def to_str(self) -> str:
        def cell(entries):
            return "[" + ", ".join(f"({op!r}, {j})" for op, j in entries) + "]"

        return (
            f"Genotype(normal={cell(self.normal)}, normal_concat={list(self.normal_concat)}, "
            f"reduce={cell(self.reduce)}, reduce_concat={list(self.reduce_concat)})"
        )

    @classmethod
    def from_str(cls, text: str) -> "DartsGenotype":
        source = str(text).strip()
        try:
            tree = ast.parse(source, mode="eval").body
        except SyntaxError:
            raise NasframeError(f"genotype does not parse; expected {EXAMPLE}") from None
        if not (isinstance(tree, ast.Call) and isinstance(tree.func, ast.Name) and tree.func.id == "Genotype"):
            raise NasframeError(f"genotype does not parse; expected {EXAMPLE}")
        values: dict[str, Any] = {}
        if len(tree.args) > len(FIELDS):
            raise NasframeError(f"genotype has too many fields; expected {EXAMPLE}")
        for name, node in list(zip(FIELDS, tree.args)) + [(k.arg, k.value) for k in tree.keywords]:
            if name not in FIELDS:
                raise NasframeError(f"genotype has an unknown field {name!r}; fields are: {', '.join(FIELDS)}")
            values[name] = _literal(node, name)
        missing = [f for f in ("normal", "reduce") if f not in values]
        if missing:
            raise NasframeError(f"genotype lacks the field {missing[0]!r}; expected {EXAMPLE}")
        return cls(**values)

    def to_json(self) -> dict[str, Any]:
        return {
            "space": self.space,
            "genotype": self.to_str(),
            "normal": [list(e) for e in self.normal],
            "normal_concat": list(self.normal_concat),
            "reduce": [list(e) for e in self.reduce],
            "reduce_concat": list(self.reduce_concat),
        }

    @classmethod
    def from_json(cls, data) -> "DartsGenotype":
        if isinstance(data, dict) and "normal" in data and "reduce" in data:
            return cls(**{k: data[k] for k in FIELDS if k in data})
        return super().from_json(data)


def _literal(node: ast.AST, field: str) -> Any:
    # range(a, b) is how the original search code prints the concat fields
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "range":
        try:
            span = range(*[ast.literal_eval(a) for a in node.args])
        except (ValueError, TypeError):
            raise NasframeError(f"genotype field {field!r} has a range() that does not evaluate") from None
        if len(span) > 2 * STEPS:  # never materialise a huge range: no cell has that many nodes
            raise NasframeError(f"genotype field {field!r} must be [2, 3, 4, 5] (every intermediate node), got {span}")
        return list(span)
    try:
        return ast.literal_eval(node)
    except ValueError:
        raise NasframeError(f"genotype field {field!r} is not a literal list; expected {EXAMPLE}") from None


#: The genotype of the DARTS paper (second order), as published in the original code.
DARTS_V2 = DartsGenotype.from_str(
    "Genotype(normal=[('sep_conv_3x3', 0), ('sep_conv_3x3', 1), ('sep_conv_3x3', 0), ('sep_conv_3x3', 1), "
    "('sep_conv_3x3', 1), ('skip_connect', 0), ('skip_connect', 0), ('dil_conv_3x3', 2)], normal_concat=[2, 3, 4, 5], "
    "reduce=[('max_pool_3x3', 0), ('max_pool_3x3', 1), ('skip_connect', 2), ('max_pool_3x3', 1), ('max_pool_3x3', 0), "
    "('skip_connect', 2), ('skip_connect', 2), ('max_pool_3x3', 1)], reduce_concat=[2, 3, 4, 5])"
)
