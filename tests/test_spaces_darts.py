"""The DARTS cell space: cells, search network, evaluation network, genotypes, test_statistics."""
from __future__ import annotations

import collections
import json

import pytest
from conftest import assert_test_statistics_copies_nothing
import torch
from torch import nn

from nasframe_core.cells import DiscreteCell
from nasframe_core.errors import NasframeError
from nasframe_core.ops import DilConv, FactorizedReduce, Pool, ReLUConvBN, SepConv
from nasframe_darts.mixed import MixedCell, MixedOp
from nasframe_darts.optimizer import DARTSOptimizer
from nasframe_spaces import DartsGenotype, DartsSearchSpace
from nasframe_spaces.darts.genotype import DARTS_V2, OPS

# DARTS_V2 as the original DARTS code prints it (a namedtuple, concat as range objects)
DARTS_V2_PRINTED = (
    "Genotype(normal=[('sep_conv_3x3', 0), ('sep_conv_3x3', 1), ('sep_conv_3x3', 0), ('sep_conv_3x3', 1), "
    "('sep_conv_3x3', 1), ('skip_connect', 0), ('skip_connect', 0), ('dil_conv_3x3', 2)], normal_concat=range(2, 6), "
    "reduce=[('max_pool_3x3', 0), ('max_pool_3x3', 1), ('skip_connect', 2), ('max_pool_3x3', 1), "
    "('max_pool_3x3', 0), ('skip_connect', 2), ('skip_connect', 2), ('max_pool_3x3', 1)], reduce_concat=range(2, 6))"
)
EDGES = ((0, 2), (1, 2), (0, 3), (1, 3), (2, 3), (0, 4), (1, 4), (2, 4), (3, 4),
         (0, 5), (1, 5), (2, 5), (3, 5), (4, 5))


def adapted(space=None, dataset="cifar10") -> DARTSOptimizer:
    torch.manual_seed(0)
    opt = DARTSOptimizer(device="cpu")
    opt.adapt_search_space(space if space is not None else DartsSearchSpace(), dataset)
    return opt


@pytest.fixture(scope="module")
def darts_opt(_one_thread) -> DARTSOptimizer:
    """One adapted supernet for the tests that only read it or set its alphas themselves."""
    return adapted()


def single_line(excinfo, *needles: str) -> str:
    msg = str(excinfo.value)
    assert msg and "\n" not in msg, msg
    for needle in needles:
        assert needle in msg, f"{needle!r} not in {msg!r}"
    return msg


# ----------------------------------------------------- parameter counts from op shapes
def search_params(C: int, layers: int, num_classes: int = 10) -> int:
    """Parameters of the search network: affine-free BN in the cells, 'none' and pools have none."""
    # per edge: sep_conv_3x3 2(9C+C^2), sep_conv_5x5 2(25C+C^2), dil_conv_3x3 9C+C^2, dil_conv_5x5 25C+C^2
    def edge(c):
        return 6 * c * c + 102 * c

    total = 3 * 3 * C * 9 + 2 * 3 * C  # stem conv 3->3C, affine BN
    C_pp = C_p = 3 * C
    c = C
    for i in range(layers):
        reduction = i in (layers // 3, 2 * layers // 3)
        c = 2 * c if reduction else c
        total += C_pp * c + C_p * c  # preprocessing 1x1 convs (or FactorizedReduce: 2 x C_pp x c/2)
        total += 14 * edge(c) + (8 * c * c if reduction else 0)  # strided skip = FactorizedReduce
        C_pp, C_p = C_p, 4 * c
    return total + C_p * num_classes + num_classes


def op_params(op: str, c: int, stride: int) -> int:
    """Parameters of one op of the evaluation network (affine BN: 2 per channel)."""
    if op in ("max_pool_3x3", "avg_pool_3x3"):
        return 0
    if op == "skip_connect":
        return 0 if stride == 1 else c * c + 2 * c
    k = int(op[-1])
    one = k * k * c + c * c + 2 * c  # depthwise k x k, pointwise 1x1, BN
    return 2 * one if op.startswith("sep_conv") else one


def eval_params(genotype: DartsGenotype, C: int, layers: int, num_classes: int = 10) -> tuple[int, int]:
    """(network without the auxiliary head, auxiliary head) of the evaluation network."""
    total = 3 * 3 * C * 9 + 2 * 3 * C
    C_pp = C_p = 3 * C
    c = C
    aux = 0
    for i in range(layers):
        reduction = i in (layers // 3, 2 * layers // 3)
        c = 2 * c if reduction else c
        total += C_pp * c + 2 * c + C_p * c + 2 * c
        cell = genotype.reduce if reduction else genotype.normal
        total += sum(op_params(op, c, 2 if reduction and j < 2 else 1) for op, j in cell)
        C_pp, C_p = C_p, 4 * c
        if i == 2 * layers // 3:
            aux = C_p * 128 + 2 * 128 + 128 * 768 * 2 * 2 + 2 * 768 + 768 * num_classes + num_classes
    return total + C_p * num_classes + num_classes, aux


# ----------------------------------------------------------------------- the cells
def test_cell_specs_are_dartss():
    space = DartsSearchSpace()
    assert (space.C, space.layers, space.stem_multiplier, space.auxiliary) == (16, 8, 3, False)
    assert OPS == ("none", "max_pool_3x3", "avg_pool_3x3", "skip_connect", "sep_conv_3x3", "sep_conv_5x5",
                   "dil_conv_3x3", "dil_conv_5x5")
    specs = space.cell_specs()
    assert list(specs) == ["normal", "reduce"]
    for name, spec in specs.items():
        assert spec.ops == OPS and spec.edges == EDGES and spec.num_edges == 14
        assert spec.inputs == (0, 1) and spec.nodes == (2, 3, 4, 5)
        assert spec.combine == "concat" and spec.output == (2, 3, 4, 5)
        assert spec.keep_edges == 2 and spec.exclude_from_choice == ("none",)
    assert space.reduction_indices() == (2, 5)
    assert DartsSearchSpace(C=36, layers=20).reduction_indices() == (6, 13)


def test_search_network_structure_and_shapes(darts_opt):
    opt = darts_opt
    graph = opt.graph
    assert {k: tuple(v.shape) for k, v in graph.alphas.items()} == {"normal": (14, 8), "reduce": (14, 8)}
    assert len(opt.architectural_weights) == 2
    net = graph.network
    stem_conv = net.stem[0]
    assert (stem_conv.in_channels, stem_conv.out_channels, stem_conv.kernel_size) == (3, 48, (3, 3))
    assert len(net.cells) == 8
    assert [c.cell_type for c in net.cells] == ["normal"] * 2 + ["reduce"] + ["normal"] * 2 + ["reduce"] + ["normal"] * 2
    assert [type(c.pre0).__name__ for c in net.cells] == (
        ["ReLUConvBN"] * 3 + ["FactorizedReduce"] + ["ReLUConvBN"] * 2 + ["FactorizedReduce", "ReLUConvBN"])
    channels = [16, 16, 32, 32, 32, 64, 64, 64]
    for cell, C in zip(net.cells, channels):
        inner = cell.inner
        assert isinstance(inner, MixedCell) and len(inner.edges) == 14
        reduction = cell.cell_type == "reduce"
        for (src, dst), mixed in zip(EDGES, inner.edges.values()):
            assert isinstance(mixed, MixedOp) and mixed.primitives == OPS
            assert list(mixed.ops) == list(OPS[1:]) and len(mixed.ops) == 7  # 'none' is not built
            stride = 2 if reduction and src < 2 else 1
            ops = mixed.ops
            for pool in ("max_pool_3x3", "avg_pool_3x3"):  # pooling + affine-free BN in search
                assert isinstance(ops[pool], Pool) and ops[pool].stride == stride
                assert ops[pool].bn is not None and not ops[pool].bn.affine
            skip = ops["skip_connect"]
            assert isinstance(skip, FactorizedReduce if stride == 2 else nn.Identity)
            for name, k in (("sep_conv_3x3", 3), ("sep_conv_5x5", 5)):
                sep = ops[name]
                assert isinstance(sep, SepConv)
                for part, s in ((sep.first, stride), (sep.second, 1)):  # (ReLU, depthwise, 1x1, BN) twice
                    assert part.depthwise.kernel_size == (k, k) and part.depthwise.stride == (s, s)
                    assert part.depthwise.groups == C and part.depthwise.dilation == (1, 1)
                    assert part.pointwise.kernel_size == (1, 1) and not part.bn.affine
            for name, k in (("dil_conv_3x3", 3), ("dil_conv_5x5", 5)):
                dil = ops[name]
                assert isinstance(dil, DilConv) and dil.depthwise.dilation == (2, 2)
                assert dil.depthwise.kernel_size == (k, k) and dil.depthwise.stride == (stride, stride)
    assert (net.classifier.in_features, net.classifier.out_features) == (256, 10)

    seen, shapes = [], []
    hooks = [c.inner.register_forward_pre_hook(lambda m, args: seen.append((m, args[1]))) for c in net.cells]
    hooks += [c.register_forward_hook(lambda m, args, out: shapes.append(tuple(out.shape))) for c in net.cells]
    graph.train()
    logits = graph(torch.randn(2, 3, 32, 32))
    for h in hooks:
        h.remove()
    assert logits.shape == (2, 10)
    assert shapes == [(2, 64, 32, 32)] * 2 + [(2, 128, 16, 16)] * 3 + [(2, 256, 8, 8)] * 3
    # one alpha tensor per cell type, shared by every cell of that type
    by_type = {}
    for cell, (inner, w) in zip(net.cells, seen):
        by_type.setdefault(cell.cell_type, []).append(w)
    for name, ws in by_type.items():
        assert all(w is ws[0] for w in ws)
        assert torch.allclose(ws[0], torch.softmax(graph.alphas[name], -1))


def test_search_network_parameter_count(darts_opt):
    # the original DARTS search code reports "param size = 1.930618MB" for C=16, 8 cells
    assert search_params(16, 8) == 1_930_618
    opt = darts_opt
    assert sum(p.numel() for p in opt.graph.weights()) == 1_930_618
    small = adapted(DartsSearchSpace(C=4, layers=5), "cifar100")
    assert sum(p.numel() for p in small.graph.weights()) == search_params(4, 5, 100)
    assert small.graph(torch.randn(2, 3, 32, 32)).shape == (2, 100)


# ------------------------------------------------------------- evaluation network
def test_darts_v2_evaluation_network():
    space = DartsSearchSpace(C=36, layers=20, auxiliary=True)
    net = space.final_network(DARTS_V2, num_classes=10)
    assert len(net.cells) == 20
    assert [i for i, c in enumerate(net.cells) if c.cell_type == "reduce"] == [6, 13]
    assert all(isinstance(c.inner, DiscreteCell) for c in net.cells)
    assert net.aux_index == 13 and net.auxiliary is not None
    main = sum(p.numel() for n, p in net.named_parameters() if not n.startswith("auxiliary."))
    aux = sum(p.numel() for p in net.auxiliary.parameters())
    # the original DARTS code counts 3.349342M parameters (auxiliary head excluded)
    assert (main, aux) == eval_params(DARTS_V2, 36, 20) == (3_349_342, 476_426)
    # the kept ops of a reduction cell: stride 2 on the edges from the cell inputs only
    red = net.cells[6].inner
    assert isinstance(red.edges["0->2"].op, Pool) and red.edges["0->2"].op.stride == 2
    assert red.edges["0->2"].op.bn is None  # no BN after pooling outside search
    assert isinstance(red.edges["2->3"].op, nn.Identity)  # skip from an intermediate node
    assert isinstance(net.cells[7].pre0, FactorizedReduce) and isinstance(net.cells[8].pre0, ReLUConvBN)
    assert all(m.affine for m in net.modules() if isinstance(m, nn.BatchNorm2d))

    x = torch.randn(2, 3, 32, 32)
    net.train()
    logits, aux_logits = net.forward_with_aux(x)
    assert logits.shape == (2, 10) and aux_logits.shape == (2, 10)
    assert net(x).shape == (2, 10)
    net.eval()
    with torch.no_grad():
        plain, none = net.forward_with_aux(x)
        assert none is None and plain.shape == (2, 10)
        net.set_drop_path(0.2)
        assert all(c.inner.drop_prob == 0.2 for c in net.cells)
        assert torch.equal(net(x), plain)  # drop-path is off in evaluation
        net.train()
        torch.manual_seed(0)
        a = net(x)
        torch.manual_seed(1)
        b = net(x)
        assert not torch.allclose(a, b)  # ... and on while training
        net.set_drop_path(0.0)
        assert torch.equal(net(x), net(x))


def test_evaluation_options_and_the_papers_recipe():
    g = DartsGenotype.from_str(
        "Genotype(normal=[('sep_conv_5x5', 1), ('dil_conv_5x5', 0), ('avg_pool_3x3', 2), ('skip_connect', 1), "
        "('dil_conv_3x3', 3), ('sep_conv_3x3', 0), ('max_pool_3x3', 4), ('sep_conv_5x5', 2)], normal_concat=[2, 3, 4, 5], "
        "reduce=[('skip_connect', 0), ('sep_conv_5x5', 1), ('dil_conv_5x5', 0), ('avg_pool_3x3', 2), "
        "('skip_connect', 1), ('dil_conv_3x3', 3), ('sep_conv_3x3', 4), ('skip_connect', 0)], reduce_concat=[2, 3, 4, 5])"
    )
    for C, layers, auxiliary in ((8, 5, True), (6, 6, False)):
        net = DartsSearchSpace(C=C, layers=layers, auxiliary=auxiliary).final_network(g, num_classes=100)
        main, aux = eval_params(g, C, layers, 100)
        assert sum(p.numel() for n, p in net.named_parameters() if not n.startswith("auxiliary.")) == main
        assert (net.auxiliary is not None) is auxiliary
        if auxiliary:
            assert sum(p.numel() for p in net.auxiliary.parameters()) == aux
        net.train()
        logits, aux_logits = net.forward_with_aux(torch.randn(2, 3, 32, 32))
        assert logits.shape == (2, 100) and (aux_logits is not None) is auxiliary
    recipe = DartsSearchSpace.train_recipe
    assert recipe["search_space.C"] == 36 and recipe["search_space.layers"] == 20
    assert recipe["search_space.auxiliary"] is True and recipe["train.auxiliary_weight"] == 0.4
    assert recipe["train.drop_path_prob"] == 0.2 and recipe["augment.cutout"] == 16
    assert recipe["run.epochs"] == 600 and recipe["run.batch_size"] == 96


# -------------------------------------------------------------------- genotypes
def test_genotype_string_forms_round_trip():
    assert DartsGenotype.from_str(DARTS_V2_PRINTED) == DARTS_V2
    # the string form is what the original code's namedtuple prints (with list concats)
    Genotype = collections.namedtuple("Genotype", "normal normal_concat reduce reduce_concat")
    printed = Genotype(normal=[tuple(e) for e in DARTS_V2.normal], normal_concat=[2, 3, 4, 5],
                       reduce=[tuple(e) for e in DARTS_V2.reduce], reduce_concat=[2, 3, 4, 5])
    assert repr(printed) == DARTS_V2.to_str() == str(DARTS_V2)
    with_range = printed._replace(normal_concat=range(2, 6), reduce_concat=range(2, 6))
    assert repr(with_range) == DARTS_V2_PRINTED
    assert DartsGenotype.from_str(DARTS_V2.to_str()) == DARTS_V2
    assert DartsGenotype.from_str(f"  {DARTS_V2_PRINTED}\n") == DARTS_V2
    positional = f"Genotype({list(printed.normal)}, [2, 3, 4, 5], {list(printed.reduce)}, range(2, 6))"
    assert DartsGenotype.from_str(positional) == DARTS_V2
    space = DartsSearchSpace()
    assert space.parse_genotype(DARTS_V2_PRINTED) == DARTS_V2
    data = json.loads(json.dumps(DARTS_V2.to_json()))
    assert data["space"] == "darts" and data["genotype"] == DARTS_V2.to_str()
    assert data["normal"][7] == ["dil_conv_3x3", 2] and data["reduce_concat"] == [2, 3, 4, 5]
    assert DartsGenotype.from_json(data) == DARTS_V2
    assert DartsGenotype.from_json({"space": "darts", "genotype": DARTS_V2_PRINTED}) == DARTS_V2
    assert space.make_genotype(space.genotype_choices(DARTS_V2)) == DARTS_V2


BAD_GENOTYPES = [
    ("Genotype(normal=[('sep_conv_3x3', 0)", "does not parse"),
    ("normal=[('sep_conv_3x3', 0)]", "does not parse"),
    ("Network(normal=[], reduce=[])", "does not parse"),
    (DARTS_V2_PRINTED.replace("'dil_conv_3x3'", "'conv_7x7'"), "'conv_7x7'"),
    (DARTS_V2_PRINTED.replace("'max_pool_3x3', 0", "'nor_conv_3x3', 0", 1), "'nor_conv_3x3'"),
    (DARTS_V2_PRINTED.replace("('dil_conv_3x3', 2)", "('dil_conv_3x3', 5)"), "input 5"),
    (DARTS_V2_PRINTED.replace(", ('dil_conv_3x3', 2)", ""), "8 (op, input) pairs"),
    (DARTS_V2_PRINTED.replace("normal_concat=range(2, 6)", "normal_concat=[2, 3]"), "normal_concat"),
    (DARTS_V2_PRINTED.replace("normal_concat=range(2, 6)", "normal_concat=range(2, 1000000000000)"),
     "normal_concat"),
    (DARTS_V2_PRINTED.replace("reduce_concat=", "extra="), "unknown field 'extra'"),
    (DARTS_V2_PRINTED.replace("Genotype(normal=", "Genotype(foo="), "unknown field 'foo'"),
    ("Genotype(normal=[('sep_conv_3x3', 0)] * 8, reduce=[])", "not a literal"),
    ("Genotype(normal=[(sep_conv_3x3, 0)], reduce=[])", "not a literal"),
    (DARTS_V2_PRINTED.split(", reduce=")[0] + ")", "'reduce'"),
    ("Genotype(normal=5, reduce=5)", "'normal'"),
    ("", "does not parse"),
]


@pytest.mark.parametrize("bad, needle", BAD_GENOTYPES)
def test_bad_genotypes_give_one_clear_line(bad, needle):
    with pytest.raises(NasframeError) as e:
        DartsSearchSpace().parse_genotype(bad)
    single_line(e, needle)


def test_bad_genotype_json_and_ops():
    data = DARTS_V2.to_json()
    with pytest.raises(NasframeError) as e:
        DartsGenotype.from_json({**data, "normal": [["sep_conv_7x7", 0]] * 8})
    single_line(e, "'sep_conv_7x7'")
    with pytest.raises(NasframeError) as e:
        DartsGenotype.from_json({"space": "nasbench201", "genotype": DARTS_V2.to_str()})
    single_line(e, "'nasbench201'")
    with pytest.raises(NasframeError) as e:
        DartsSearchSpace().make_op("conv_7x7", 8, 1, search=True)
    single_line(e, "'conv_7x7'", "sep_conv_3x3")


# ------------------------------------------------------------------ the optimizer
def v2_alphas(opt: DARTSOptimizer) -> None:
    """Alphas whose DARTS discretization is DARTS_V2: 'none' strongest everywhere (it is never
    chosen), then the genotype's two edges per node, its first entry stronger."""
    space = opt.search_space
    with torch.no_grad():
        for cell_type, entries in (("normal", DARTS_V2.normal), ("reduce", DARTS_V2.reduce)):
            alpha = opt.graph.alphas[cell_type]
            alpha.zero_()
            alpha[:, 0] = 10.0
            spec = space.cell_specs()[cell_type]
            for i, (op, src) in enumerate(entries):
                alpha[spec.edge_index[(src, 2 + i // 2)], OPS.index(op)] = 5.0 - (i % 2)


def test_discretization_and_final_architecture(darts_opt):
    opt = darts_opt
    v2_alphas(opt)
    assert opt.get_genotype() == DARTS_V2
    final = opt.get_final_architecture()
    assert final.genotype == DARTS_V2 and len(final.cells) == 8
    sup = opt.graph.network
    mine = final.cells[0].inner.edges["0->2"].op  # sep_conv_3x3 from c_{k-2} in cell 0
    theirs = sup.cells[0].inner.edges["0->2"].ops["sep_conv_3x3"]
    assert torch.equal(mine.first.depthwise.weight, theirs.first.depthwise.weight)
    assert torch.equal(final.cells[3].pre0.conv_1.weight, sup.cells[3].pre0.conv_1.weight)
    assert torch.equal(final.classifier.weight, sup.classifier.weight)
    assert final(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_test_statistics_without_a_table_is_none_and_copies_nothing(monkeypatch, darts_opt):
    assert darts_opt.search_space.benchmark is None
    assert_test_statistics_copies_nothing(monkeypatch, darts_opt, also_refuse=("final_network",))
