"""Discretization through the optimizer equals the reference rules, written out here.

- NB201: every edge keeps the argmax of its softmaxed alphas over all five ops, 'none'
  included; the first maximum wins a tie.
- DARTS space: every intermediate node keeps the two incoming edges whose strongest
  non-'none' softmax weight is largest (a stable sort: a tie keeps the earlier edge), each
  with its strongest non-'none' op (first maximum wins); the genotype lists a node's kept
  edges strongest first, as the original DARTS ``genotype()`` does.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

import pytest

from nasframe_core.data import DatasetInfo
from nasframe_darts import DARTSOptimizer
from nasframe_spaces.darts.space import DartsSearchSpace
from nasframe_spaces.nasbench201.space import NasBench201SearchSpace

NB201_OPS = ["none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3"]
# NB201 row order: 1<-0, 2<-0, 2<-1, 3<-0, 3<-1, 3<-2
NB201_EDGES = [(0, 1), (0, 2), (1, 2), (0, 3), (1, 3), (2, 3)]
DARTS_OPS = [
    "none", "max_pool_3x3", "avg_pool_3x3", "skip_connect",
    "sep_conv_3x3", "sep_conv_5x5", "dil_conv_3x3", "dil_conv_5x5",
]
INFO = DatasetInfo("toy", num_classes=3, in_channels=3, image_size=8)
N_RANDOM = 200


@pytest.fixture(scope="module")
def nb201_opt():
    torch.manual_seed(0)
    opt = DARTSOptimizer(device="cpu")
    opt.adapt_search_space(NasBench201SearchSpace(C=2, N=1), INFO)
    return opt


@pytest.fixture(scope="module")
def darts_opt():
    torch.manual_seed(0)
    opt = DARTSOptimizer(device="cpu")
    opt.adapt_search_space(DartsSearchSpace(C=2, layers=3), INFO)
    return opt


# ------------------------------------------------------------------ reference rules
def first_argmax(values, allowed):
    best = None
    for k in allowed:
        if best is None or values[k] > values[best]:
            best = k
    return best


def nb201_reference(alpha: torch.Tensor) -> str:
    W = F.softmax(alpha, dim=-1).tolist()
    ops = [NB201_OPS[first_argmax(row, range(5))] for row in W]
    by_edge = dict(zip(NB201_EDGES, ops))
    groups = ["|" + "|".join(f"{by_edge[(j, i)]}~{j}" for j in range(i)) + "|" for i in (1, 2, 3)]
    return "+".join(groups)


def darts_reference_cell(alpha: torch.Tensor) -> list[tuple[str, int]]:
    W = F.softmax(alpha, dim=-1).tolist()
    none = DARTS_OPS.index("none")
    allowed = [k for k in range(len(DARTS_OPS)) if k != none]
    gene = []
    start, n = 0, 2
    for _ in range(4):
        rows = W[start:start + n]
        edges = sorted(range(n), key=lambda j: -max(rows[j][k] for k in allowed))[:2]
        for j in edges:
            gene.append((DARTS_OPS[first_argmax(rows[j], allowed)], j))
        start += n
        n += 1
    return gene


# ------------------------------------------------------------------------ helpers
def set_alphas(opt: DARTSOptimizer, **alphas: torch.Tensor) -> None:
    with torch.no_grad():
        for name, value in alphas.items():
            opt.graph.alphas[name].copy_(value)


def nb201_genotype_str(opt) -> str:
    return opt.get_genotype().to_str()


def darts_cells(genotype) -> tuple[list, list]:
    return [tuple(e) for e in genotype.normal], [tuple(e) for e in genotype.reduce]


def random_alphas(shape, g: torch.Generator, kind: int) -> torch.Tensor:
    if kind == 0:  # continuous
        return torch.randn(shape, generator=g) * 2.0
    if kind == 1:  # few distinct values: many ties between ops and between edges
        return torch.randint(0, 3, shape, generator=g).float()
    # a dominant 'none' on random rows
    a = torch.randn(shape, generator=g)
    rows = torch.rand(shape[0], generator=g) < 0.5
    a[rows, 0] += 6.0
    return a


# --------------------------------------------------------------------------- NB201
def test_nb201_random_alphas_match_reference(nb201_opt):
    g = torch.Generator().manual_seed(1)
    seen_none = seen_tie = 0
    for i in range(N_RANDOM):
        alpha = random_alphas((6, 5), g, i % 3)
        set_alphas(nb201_opt, cell=alpha)
        expected = nb201_reference(alpha)
        assert nb201_genotype_str(nb201_opt) == expected, (i, alpha)
        seen_none += "none" in expected
        W = F.softmax(alpha, -1)
        seen_tie += bool(((W == W.max(-1, keepdim=True).values).sum(-1) > 1).any())
    assert seen_none > 20 and seen_tie > 20  # the cases that matter did occur


def test_nb201_ties_and_dominant_none(nb201_opt):
    # every op ties on every edge: the first op, 'none', wins
    set_alphas(nb201_opt, cell=torch.zeros(6, 5))
    assert nb201_genotype_str(nb201_opt) == "|none~0|+|none~0|none~1|+|none~0|none~1|none~2|"

    alpha = torch.zeros(6, 5)
    alpha[0, [1, 3]] = 2.0          # skip_connect ties nor_conv_3x3: skip_connect
    alpha[1, [3, 4]] = 1.0          # nor_conv_3x3 ties avg_pool_3x3: nor_conv_3x3
    alpha[2, 0] = 5.0               # dominant 'none' is chosen, as NB201's own code does
    alpha[2, 2] = 4.9
    alpha[3, [0, 2]] = 3.0          # 'none' ties nor_conv_1x1: 'none' comes first
    alpha[4, 4] = 0.5
    alpha[5, 2] = -1.0              # the others tie at zero: the first of them, 'none'
    W = F.softmax(alpha, -1)
    assert W[0, 1] == W[0, 3] and W[1, 3] == W[1, 4] and W[3, 0] == W[3, 2]
    set_alphas(nb201_opt, cell=alpha)
    expected = "|skip_connect~0|+|nor_conv_3x3~0|none~1|+|none~0|avg_pool_3x3~1|none~2|"
    assert nb201_reference(alpha) == expected
    assert nb201_genotype_str(nb201_opt) == expected


def test_nb201_final_architecture_genotype(nb201_opt):
    g = torch.Generator().manual_seed(2)
    for i in range(6):
        alpha = random_alphas((6, 5), g, i % 3)
        set_alphas(nb201_opt, cell=alpha)
        net = nb201_opt.get_final_architecture()
        assert net.genotype.to_str() == nb201_reference(alpha)
        assert net(torch.randn(2, 3, 8, 8)).shape == (2, 3)


# ---------------------------------------------------------------------- DARTS space
def test_darts_random_alphas_match_reference(darts_opt):
    g = torch.Generator().manual_seed(3)
    seen_edge_ties = 0
    for i in range(N_RANDOM):
        normal = random_alphas((14, 8), g, i % 3)
        reduce = random_alphas((14, 8), g, (i + 1) % 3)
        set_alphas(darts_opt, normal=normal, reduce=reduce)
        got = darts_cells(darts_opt.get_genotype())
        assert got == (darts_reference_cell(normal), darts_reference_cell(reduce)), (i, normal, reduce)
        best = F.softmax(normal, -1)[:, 1:].max(-1).values
        seen_edge_ties += bool((best[5:9].unsqueeze(0) == best[5:9].unsqueeze(1)).sum() > 4)
    assert seen_edge_ties > 10


def test_darts_all_ties():
    """Everything equal: max_pool_3x3 (the first op after 'none') on the first two edges."""
    torch.manual_seed(0)
    opt = DARTSOptimizer(device="cpu")
    opt.adapt_search_space(DartsSearchSpace(C=2, layers=3), INFO)
    set_alphas(opt, normal=torch.zeros(14, 8), reduce=torch.zeros(14, 8))
    cell = [("max_pool_3x3", 0), ("max_pool_3x3", 1)] * 4
    assert darts_cells(opt.get_genotype()) == (cell, cell)


def test_darts_hand_made_cases(darts_opt):
    normal = torch.zeros(14, 8)
    # node 2 (rows 0, 1): edge 1 is stronger, so it is listed first
    normal[0, 4] = 1.0
    normal[1, 6] = 2.0
    # node 3 (rows 2, 3, 4): edge 0 has a dominant 'none' and the largest raw non-'none'
    # alpha, but the smallest non-'none' softmax weight: it is dropped
    normal[2, 0], normal[2, 5] = 10.0, 5.0
    normal[3, 7] = 1.0
    normal[4, 3] = 1.5
    # node 4 (rows 5..8): identical rows 6, 7, 8 tie; rows 5 is weaker: the earlier two
    # of the tied edges are kept, in edge order; op ties go to the first op
    normal[5, 2] = 0.5
    normal[6:9, 2] = 1.0
    normal[6:9, 5] = 1.0
    # node 5 (rows 9..13): 'none' dominates everywhere; the ranking uses the rest
    normal[9:14, 0] = 8.0
    normal[11, 1] = 0.3
    normal[13, 4] = 0.2
    W = F.softmax(normal, -1)
    assert W[6, 2] == W[6, 5] == W[7, 2] == W[8, 5]
    assert normal[2, 5] > normal[3, 7] and W[2, 5] < W[3, 7]

    reduce = torch.zeros(14, 8)
    reduce[:, 0] = 4.0             # 'none' dominates every edge of the reduction cell
    reduce[0, 3] = 1.0
    reduce[13, 7] = 1.0
    reduce[12, 6] = 2.0

    expected_normal = [
        ("dil_conv_3x3", 1), ("sep_conv_3x3", 0),
        ("skip_connect", 2), ("dil_conv_5x5", 1),
        ("avg_pool_3x3", 1), ("avg_pool_3x3", 2),
        ("max_pool_3x3", 2), ("sep_conv_3x3", 4),
    ]
    expected_reduce = [
        ("skip_connect", 0), ("max_pool_3x3", 1),
        ("max_pool_3x3", 0), ("max_pool_3x3", 1),
        ("max_pool_3x3", 0), ("max_pool_3x3", 1),
        ("dil_conv_3x3", 3), ("dil_conv_5x5", 4),
    ]
    assert darts_reference_cell(normal) == expected_normal
    assert darts_reference_cell(reduce) == expected_reduce
    set_alphas(darts_opt, normal=normal, reduce=reduce)
    genotype = darts_opt.get_genotype()
    assert darts_cells(genotype) == (expected_normal, expected_reduce)
    assert "none" not in str(genotype)
    assert list(genotype.normal_concat) == [2, 3, 4, 5] and list(genotype.reduce_concat) == [2, 3, 4, 5]
    assert darts_cells(darts_opt.get_final_architecture().genotype) == (expected_normal, expected_reduce)


def test_darts_final_architecture_genotype(darts_opt):
    g = torch.Generator().manual_seed(4)
    for i in range(3):
        normal, reduce = random_alphas((14, 8), g, i % 3), random_alphas((14, 8), g, (i + 2) % 3)
        set_alphas(darts_opt, normal=normal, reduce=reduce)
        net = darts_opt.get_final_architecture()
        assert darts_cells(net.genotype) == (darts_reference_cell(normal), darts_reference_cell(reduce))
        net.eval()
        assert net(torch.randn(2, 3, 8, 8)).shape == (2, 3)
