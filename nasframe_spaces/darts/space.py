"""The DARTS cell space (Liu et al., ICLR 2019).

Cells take the outputs of the two previous cells (preprocessed to C channels), have four
intermediate nodes, each fed by every earlier node (14 edges, 8 candidate ops), and output
the concatenation of the intermediate nodes. Normal and reduction cells each have their own
architecture weights; reduction cells (at 1/3 and 2/3 of the depth) use stride 2 on the
edges from their inputs and double the channels.

Search network: stem 3x3 conv to 3C channels, 8 cells at C=16. Evaluation network (the
genotype trained from scratch): 20 cells at C=36 with an auxiliary head and drop-path.
"""
from __future__ import annotations

from typing import Mapping, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from nasframe_core.cells import discrete_cell_factory
from nasframe_core.domains import COUNT, at_least
from nasframe_core.errors import NasframeError
from nasframe_core.ops import DilConv, FactorizedReduce, Pool, ReLUConvBN, SepConv, Zero
from nasframe_core.space import CellFactory, CellSpec, Choice, SearchSpace, dense_cell_graph

from .genotype import CONCAT, OPS, STEPS, DartsGenotype

INPUTS = (0, 1)
NODES = tuple(range(2, 2 + STEPS))


class AuxiliaryHead(nn.Module):
    """The DARTS auxiliary classifier on the 8x8 features at 2/3 of the depth."""

    def __init__(self, C: int, num_classes: int):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(C, 128, 1, bias=False),
            nn.BatchNorm2d(128),
            nn.ReLU(inplace=True),
            nn.Conv2d(128, 768, 2, bias=False),
            nn.BatchNorm2d(768),
            nn.ReLU(inplace=True),
        )
        self.classifier = nn.Linear(768, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(x)
        if x.shape[-1] >= 5:  # 8x8 -> 2x2, as in the paper
            x = F.avg_pool2d(x, 5, stride=3, padding=0, count_include_pad=False)
        else:  # smaller images: pool to the same 2x2
            x = F.adaptive_avg_pool2d(x, 2)
        return self.classifier(self.features(x).flatten(1))


class DartsCellWrapper(nn.Module):
    """Preprocessing of the two inputs around a cell from the cell factory."""

    def __init__(self, inner: nn.Module, pre0: nn.Module, pre1: nn.Module, cell_type: str):
        super().__init__()
        self.pre0, self.pre1, self.inner = pre0, pre1, inner
        self.cell_type = cell_type

    def forward(self, s0, s1, weights):
        return self.inner((self.pre0(s0), self.pre1(s1)), weights)


class DartsNetwork(nn.Module):
    def __init__(self, space: "DartsSearchSpace", cell_factory: CellFactory, *, num_classes: int,
                 in_channels: int, search: bool):
        super().__init__()
        C, layers = space.C, space.layers
        affine = not search
        specs = space.cell_specs()
        C_curr = space.stem_multiplier * C
        self.stem = nn.Sequential(nn.Conv2d(in_channels, C_curr, 3, padding=1, bias=False), nn.BatchNorm2d(C_curr))
        C_pp, C_p, C_curr = C_curr, C_curr, C
        self.cells = nn.ModuleList()
        reduction_prev = False
        self.aux_index = -1
        C_aux = None
        for i in range(layers):
            reduction = i in space.reduction_indices()
            if reduction:
                C_curr *= 2
            pre0 = FactorizedReduce(C_pp, C_curr, affine) if reduction_prev else ReLUConvBN(C_pp, C_curr, 1, 1, 0, 1, affine)
            pre1 = ReLUConvBN(C_p, C_curr, 1, 1, 0, 1, affine)
            cell_type = "reduce" if reduction else "normal"
            inner = cell_factory(specs[cell_type], space.op_builder(C_curr, reduction, search))
            self.cells.append(DartsCellWrapper(inner, pre0, pre1, cell_type))
            reduction_prev = reduction
            C_pp, C_p = C_p, len(CONCAT) * C_curr
            if i == 2 * layers // 3:
                self.aux_index, C_aux = i, C_p
        self.auxiliary = AuxiliaryHead(C_aux, num_classes) if (space.auxiliary and not search and C_aux) else None
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(C_p, num_classes)

    def forward_with_aux(self, x: torch.Tensor, arch_weights: Optional[Mapping[str, torch.Tensor]] = None):
        """Logits and, while training with an auxiliary head, the auxiliary logits (else None)."""
        s0 = s1 = self.stem(x)
        aux = None
        for i, cell in enumerate(self.cells):
            w = None if arch_weights is None else arch_weights[cell.cell_type]
            s0, s1 = s1, cell(s0, s1, w)
            if i == self.aux_index and self.auxiliary is not None and self.training:
                aux = self.auxiliary(s1)
        logits = self.classifier(self.global_pooling(s1).flatten(1))
        return logits, aux

    def forward(self, x: torch.Tensor, arch_weights: Optional[Mapping[str, torch.Tensor]] = None) -> torch.Tensor:
        return self.forward_with_aux(x, arch_weights)[0]

    def set_drop_path(self, prob: float) -> None:
        for cell in self.cells:
            if hasattr(cell.inner, "drop_prob"):
                cell.inner.drop_prob = prob


class DartsSearchSpace(SearchSpace):
    """The DARTS cell space; ``C``/``layers`` are 16/8 for search, 36/20 for evaluation."""

    name = "darts"
    settings_domain = {"C": at_least(2), "layers": at_least(3), "stem_multiplier": COUNT}
    settings_help = {"C": "initial channels, even (16 in search, 36 for evaluation)",
                     "layers": "cells in the network, reductions at 1/3 and 2/3 (8 in search, 20 for evaluation)",
                     "stem_multiplier": "the stem's channels are stem_multiplier x C",
                     "auxiliary": "auxiliary classifier head at 2/3 depth (the evaluation network's)"}
    skip_ops = ("skip_connect",)
    #: the DARTS evaluation protocol, the defaults of `nasframe train` for this space
    train_recipe = {
        "run.epochs": 600,
        "run.batch_size": 96,
        "train.learning_rate": 0.025,
        "train.momentum": 0.9,
        "train.nesterov": False,
        "train.weight_decay": 3e-4,
        "run.lr_min": 0.0,
        "train.grad_clip": 5.0,
        "train.auxiliary_weight": 0.4,
        "train.drop_path_prob": 0.2,
        "augment.cutout": 16,
        "search_space.C": 36,
        "search_space.layers": 20,
        "search_space.auxiliary": True,
    }

    def __init__(self, C: int = 16, layers: int = 8, stem_multiplier: int = 3, auxiliary: bool = False):
        super().__init__()
        if C < 2 or C % 2 or layers < 3:
            raise NasframeError(f"the DARTS space needs an even C >= 2 and layers >= 3, got C={C}, layers={layers}")
        self.C, self.layers, self.stem_multiplier, self.auxiliary = int(C), int(layers), int(stem_multiplier), bool(auxiliary)
        self._specs = {
            cell_type: CellSpec(
                cell_type,
                dense_cell_graph(INPUTS, NODES, OPS),
                inputs=INPUTS,
                output=CONCAT,
                combine="concat",
                keep_edges=2,
                exclude_from_choice=("none",),
            )
            for cell_type in ("normal", "reduce")
        }

    def reduction_indices(self) -> tuple[int, int]:
        return (self.layers // 3, 2 * self.layers // 3)

    def cell_specs(self) -> dict[str, CellSpec]:
        return self._specs

    def make_op(self, name: str, C: int, stride: int, *, search: bool) -> nn.Module:
        affine = not search
        if name == "none":
            return Zero(stride)
        if name in ("max_pool_3x3", "avg_pool_3x3"):
            # in search, pooling is followed by an affine-free batch norm (as the DARTS MixedOp)
            return Pool(name[:3], C, stride, bn=search, affine=False)
        if name == "skip_connect":
            return nn.Identity() if stride == 1 else FactorizedReduce(C, C, affine)
        if name == "sep_conv_3x3":
            return SepConv(C, C, 3, stride, 1, affine)
        if name == "sep_conv_5x5":
            return SepConv(C, C, 5, stride, 2, affine)
        if name == "dil_conv_3x3":
            return DilConv(C, C, 3, stride, 2, 2, affine)
        if name == "dil_conv_5x5":
            return DilConv(C, C, 5, stride, 4, 2, affine)
        raise NasframeError(f"unknown DARTS op {name!r}; the ops are: {', '.join(OPS)}")

    def op_builder(self, C: int, reduction: bool, search: bool):
        def build(name: str, edge) -> nn.Module:
            stride = 2 if reduction and edge[0] in INPUTS else 1
            return self.make_op(name, C, stride, search=search)

        return build

    def build_network(self, cell_factory: CellFactory, *, num_classes: int, in_channels: int = 3,
                      search: bool = True) -> nn.Module:
        return DartsNetwork(self, cell_factory, num_classes=num_classes, in_channels=in_channels, search=search)

    def final_network(self, genotype: DartsGenotype, *, num_classes: int, in_channels: int = 3) -> DartsNetwork:
        """The evaluation network of ``genotype`` (affine BN, auxiliary head if enabled)."""
        return self.build_network(discrete_cell_factory(self.genotype_choices(genotype)),
                                  num_classes=num_classes, in_channels=in_channels, search=False)

    # ------------------------------------------------------------------ genotypes
    def make_genotype(self, choices: Mapping[str, Sequence[Choice]]) -> DartsGenotype:
        def cell(cs: Sequence[Choice]):
            by_node = {n: [c for c in cs if c.dst == n] for n in NODES}
            return [(c.op, c.src) for n in NODES for c in by_node[n]]

        return DartsGenotype(cell(choices["normal"]), CONCAT, cell(choices["reduce"]), CONCAT)

    def genotype_choices(self, genotype: DartsGenotype) -> dict[str, list[Choice]]:
        def cell(entries):
            return [Choice(j, 2 + i // 2, op) for i, (op, j) in enumerate(entries)]

        return {"normal": cell(genotype.normal), "reduce": cell(genotype.reduce)}

    def parse_genotype(self, text: str) -> DartsGenotype:
        return DartsGenotype.from_str(text)
