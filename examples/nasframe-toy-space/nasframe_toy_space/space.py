"""The toy search space: small enough to read in one sitting, complete enough to search.

Cell: input node 0, intermediate nodes 1 and 2, an edge for every earlier node (0->1, 0->2,
1->2), each choosing among four ops; node 2 is the output. Network: a 3x3 stem convolution,
``cells`` cells at ``C`` channels sharing one set of architecture weights, global average
pooling and a linear classifier.

There is no batch norm anywhere: every sample is processed on its own, so a data-parallel
run computes exactly what a single process computes.
"""
from __future__ import annotations

from typing import Mapping, Optional, Sequence

import attrs
import torch
import torch.nn.functional as F
from torch import nn

from nasframe_core.errors import NasframeError
from nasframe_core.genotype import Genotype
from nasframe_core.ops import Pool, Zero
from nasframe_core.space import CellFactory, CellSpec, Choice, SearchSpace, dense_cell_graph

OPS: tuple[str, ...] = ("none", "skip_connect", "conv_3x3", "avg_pool_3x3")
EDGES: tuple[tuple[int, int], ...] = ((0, 1), (0, 2), (1, 2))


# ------------------------------------------------------------------------------ genotype
def _check_ops(ops: Sequence[str]) -> tuple[str, ...]:
    ops = tuple(ops)
    if len(ops) != len(EDGES):
        raise NasframeError(f"a toy cell has {len(EDGES)} edges, got {len(ops)} ops")
    for op in ops:
        if op not in OPS:
            raise NasframeError(f"unknown toy op {op!r}; the ops are: {', '.join(OPS)}")
    return ops


@attrs.frozen
class ToyGenotype(Genotype):
    """One toy cell: the op of each edge, in the order 0->1, 0->2, 1->2.

    String form: ``0-1:conv_3x3,0-2:skip_connect,1-2:avg_pool_3x3``.
    """

    space = "toy"
    ops: tuple[str, ...] = attrs.field(converter=_check_ops)

    def to_str(self) -> str:
        return ",".join(f"{src}-{dst}:{op}" for (src, dst), op in zip(EDGES, self.ops))

    @classmethod
    def from_str(cls, text: str) -> "ToyGenotype":
        hint = "expected '0-1:OP,0-2:OP,1-2:OP'"
        by_edge: dict[tuple[int, int], str] = {}
        for item in str(text).strip().split(","):
            edge_text, sep, op = item.strip().partition(":")
            src, dash, dst = edge_text.partition("-")
            if not sep or not dash or not src.strip().isdigit() or not dst.strip().isdigit():
                raise NasframeError(f"malformed toy genotype {text!r}: {hint}")
            edge = (int(src), int(dst))
            if edge not in EDGES:
                raise NasframeError(f"toy genotype {text!r} names edge {src}-{dst}; the edges are 0-1, 0-2, 1-2")
            if edge in by_edge:
                raise NasframeError(f"toy genotype {text!r} names edge {src}-{dst} twice")
            by_edge[edge] = op.strip()
        missing = [f"{s}-{d}" for s, d in EDGES if (s, d) not in by_edge]
        if missing:
            raise NasframeError(f"toy genotype {text!r} lacks edge {', '.join(missing)}: {hint}")
        return cls(tuple(by_edge[e] for e in EDGES))


# ------------------------------------------------------------------------------- modules
class ConvReLU(nn.Module):
    """A 3x3 convolution followed by ReLU (no normalisation)."""

    def __init__(self, C_in: int, C_out: int, stride: int = 1):
        super().__init__()
        self.conv = nn.Conv2d(C_in, C_out, 3, stride, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.conv(x))


class ToyNetwork(nn.Module):
    """Stem, ``space.cells`` cells made by ``cell_factory``, global pooling, classifier."""

    def __init__(self, space: "ToySearchSpace", cell_factory: CellFactory, *, num_classes: int, in_channels: int):
        super().__init__()
        C = space.C
        spec = space.cell_specs()["cell"]
        self.stem = ConvReLU(in_channels, C)
        self.cells = nn.ModuleList(cell_factory(spec, space.op_builder(C)) for _ in range(space.cells))
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(C, num_classes)

    def forward(self, x: torch.Tensor, arch_weights: Optional[Mapping[str, torch.Tensor]] = None) -> torch.Tensor:
        w = None if arch_weights is None else arch_weights["cell"]
        x = self.stem(x)
        for cell in self.cells:
            x = cell((x,), w)
        return self.classifier(self.global_pooling(x).flatten(1))


# --------------------------------------------------------------------------------- space
class ToySearchSpace(SearchSpace):
    """3 edges x 4 ops (64 cells); ``C`` channels, ``cells`` cells sharing one alpha matrix."""

    name = "toy"
    skip_ops = ("skip_connect",)

    def __init__(self, C: int = 8, cells: int = 2):
        super().__init__()
        if C < 1 or cells < 1:
            raise NasframeError(f"the toy space needs C >= 1 and cells >= 1, got C={C}, cells={cells}")
        self.C, self.cells = int(C), int(cells)
        self._spec = CellSpec(
            "cell",
            dense_cell_graph(inputs=(0,), nodes=(1, 2), ops=OPS),
            inputs=(0,),
            output=(2,),
            edge_order=EDGES,
            exclude_from_choice=("none",),
        )

    def cell_specs(self) -> dict[str, CellSpec]:
        return {"cell": self._spec}

    def make_op(self, name: str, C: int, stride: int, *, search: bool) -> nn.Module:
        if name == "none":
            return Zero(stride)
        if name == "skip_connect":
            if stride != 1:
                raise NasframeError("toy cells have no strided edges")
            return nn.Identity()
        if name == "conv_3x3":
            return ConvReLU(C, C, stride)
        if name == "avg_pool_3x3":
            return Pool("avg", C, stride)
        raise NasframeError(f"unknown toy op {name!r}; the ops are: {', '.join(OPS)}")

    def op_builder(self, C: int, search: bool = True):
        return lambda name, edge: self.make_op(name, C, 1, search=search)

    def build_network(self, cell_factory: CellFactory, *, num_classes: int, in_channels: int = 3,
                      search: bool = True) -> nn.Module:
        return ToyNetwork(self, cell_factory, num_classes=num_classes, in_channels=in_channels)

    # ------------------------------------------------------------------ genotypes
    def make_genotype(self, choices: Mapping[str, Sequence[Choice]]) -> ToyGenotype:
        by_edge = {(c.src, c.dst): c.op for c in choices["cell"]}
        missing = [e for e in EDGES if e not in by_edge]
        if missing:
            raise NasframeError(f"a toy genotype needs an op on every edge; missing {missing}")
        return ToyGenotype(tuple(by_edge[e] for e in EDGES))

    def genotype_choices(self, genotype: ToyGenotype) -> dict[str, list[Choice]]:
        return {"cell": [Choice(src, dst, op) for (src, dst), op in zip(EDGES, genotype.ops)]}

    def parse_genotype(self, text: str) -> ToyGenotype:
        return ToyGenotype.from_str(text)
