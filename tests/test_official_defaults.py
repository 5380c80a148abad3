"""Each method's defaults as its official code runs it, against references written from that code.

The files read: xiangning-chen/DrNAS ``architect.py`` and ``201-space/train_search.py``;
xiaomi-automl/FairDARTS ``fairdarts/train_search.py``, ``fairdarts/utils.py`` (``parse``,
``threshold_sparse``) and ``fairdarts/genotypes.py``; xiangning-chen/SmoothDARTS
``attacker/perturb.py`` (``Linf_PGD_alpha``); Sunshine-Ye/Beta-DARTS ``optimizers/darts/architect.py``.
(GDAS's straight-through weights: ``test_family_methods``; run lengths and batch sizes: ``test_recipes``.)
"""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from nasframe_spaces.darts.space import DartsSearchSpace
from nasframe_spaces.nasbench201.space import NasBench201SearchSpace
from test_family_methods import batch, clone_generator, make


# ----------------------------------------------------------------------------- DrNAS
def test_drnas_defaults_are_the_201_codes():
    """201-space/train_search.py: arch lr 3e-4, reg_type l2, reg_scale 1e-3; architect.py:
    Adam(betas=(0.5, 0.999), weight_decay=reg_scale if l2 else 0), and no loss term for l2."""
    from nasframe_darts import DrNASOptimizer

    opt = make(DrNASOptimizer, NasBench201SearchSpace(C=4, N=1))
    group = opt.arch_optimizer.param_groups[0]
    assert (group["lr"], tuple(group["betas"]), group["weight_decay"]) == (3e-4, (0.5, 0.999), 1e-3)
    assert opt.reg_type == "l2" and opt.regularizer() is None
    kl = make(DrNASOptimizer, NasBench201SearchSpace(C=4, N=1), reg_type="kl")
    assert kl.arch_optimizer.param_groups[0]["weight_decay"] == 0.0 and kl.regularizer() is not None
    given = make(DrNASOptimizer, NasBench201SearchSpace(C=4, N=1), reg_type="kl", arch_weight_decay="1e-3")
    assert given.arch_optimizer.param_groups[0]["weight_decay"] == 1e-3  # a number overrides the rule


def test_drnas_l2_step_is_adam_with_weight_decay_on_the_validation_gradient(float64):
    from nasframe_darts import DrNASOptimizer

    opt = make(DrNASOptimizer, NasBench201SearchSpace(C=4, N=1), reg_scale=0.5)
    alpha = opt.graph.alphas["cell"]
    with torch.no_grad():
        alpha.copy_(torch.randn(alpha.shape))
    start = alpha.detach().clone()
    train, val = batch(), batch(seed=1)
    gen = clone_generator(opt.rng.generator)
    # reference: the same Dirichlet draw, the plain validation gradient, one Adam step with coupled L2
    a = start.clone().requires_grad_(True)
    conc = F.elu(a) + 1
    z = torch._standard_gamma(conc, generator=gen)
    w = z / z.sum(-1, keepdim=True)
    params = dict(opt.graph.network.named_parameters())
    logits = torch.func.functional_call(opt.graph.network, params, (val[0], {"cell": w}))
    (g,) = torch.autograd.grad(F.cross_entropy(logits, val[1]), a)
    g = g + 0.5 * start
    m, v = (1 - 0.5) * g, (1 - 0.999) * g * g
    expected = start - 3e-4 * (m / (1 - 0.5)) / ((v / (1 - 0.999)).sqrt() + 1e-8)
    opt.step(train, val)
    torch.testing.assert_close(alpha.detach(), expected, rtol=1e-9, atol=1e-12)


# ------------------------------------------------------------------------- FairDARTS
def test_fair_darts_defaults_are_the_official_search():
    from nasframe_darts import FairDARTSOptimizer

    opt = make(FairDARTSOptimizer, DartsSearchSpace(C=2, layers=3))
    group = opt.arch_optimizer.param_groups[0]
    assert opt.op_optimizer.param_groups[0]["lr"] == 0.005
    assert (group["lr"], tuple(group["betas"])) == (3e-3, (0.9, 0.999))
    assert (opt.threshold, opt.zero_one_weight, opt.none_op) == (0.85, 10.0, False)


PRIMITIVES = ["max_pool_3x3", "avg_pool_3x3", "skip_connect", "sep_conv_3x3", "sep_conv_5x5", "dil_conv_3x3",
              "dil_conv_5x5"]  # FairDARTS's fairdarts/genotypes.py: no 'none'


def official_threshold_sparse(W, op_threshold: float, steps: int = 4):
    """fairdarts/utils.py parse(..., 'threshold_sparse'): per node the 2 edges with the largest
    op weight, each kept with its best op only if that weight reaches the threshold."""
    gene, start, n = [], 0, 2
    for i in range(steps):
        rows = W[start:start + n]
        edges = sorted(range(i + 2), key=lambda x: -max(rows[x]))[:2]
        for j in edges:
            k_best = max(range(len(rows[j])), key=lambda k: (rows[j][k], -k))
            if rows[j][k_best] >= op_threshold:
                gene.append((PRIMITIVES[k_best], i + 2, j))
        start, n = start + n, n + 1
    return gene


def test_fair_darts_discretization_is_the_official_threshold_parse(float64):
    from nasframe_darts import FairDARTSOptimizer

    opt = make(FairDARTSOptimizer, DartsSearchSpace(C=2, layers=3))
    spec = opt.graph.specs["normal"]
    assert spec.ops[0] == "none" and list(spec.ops[1:]) == PRIMITIVES
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for a in opt.graph.alphas.values():
            a.copy_(torch.randn(a.shape, generator=g) * 2.5)
    genotype = opt.get_genotype()
    assert sum(op == "none" for op, _ in genotype.normal + genotype.reduce) >= 2  # the threshold dropped some
    for name in ("normal", "reduce"):
        # the spec's edge order is the official (node 2: 0, 1; node 3: 0, 1, 2; ...)
        W = torch.sigmoid(opt.graph.alphas[name].detach())[:, 1:].tolist()
        expected = official_threshold_sparse(W, 0.85)
        cell = getattr(genotype, name)
        got = [(op, 2 + i // 2, j) for i, (op, j) in enumerate(cell) if op != "none"]
        assert sorted(got) == sorted(expected)
        # every node still names its two strongest edges; a dropped one carries 'none'
        for i in range(4):
            rows = W[sum(range(2, i + 2)):sum(range(2, i + 3))]
            strongest = sorted(range(i + 2), key=lambda x: -max(rows[x]))[:2]
            assert sorted(j for _, j in cell[2 * i:2 * i + 2]) == sorted(strongest)


def test_fair_darts_threshold_on_nb201_drops_an_edge_to_none(float64):
    from nasframe_darts import FairDARTSOptimizer

    opt = make(FairDARTSOptimizer, NasBench201SearchSpace(C=4, N=1))
    ops = opt.graph.specs["cell"].ops
    rows = []
    for e in range(6):  # edge e: nor_conv_3x3 strong on even edges, weak (sigmoid < 0.85) on odd ones
        row = [-3.0] * len(ops)
        row[ops.index("none")] = 5.0  # 'none' is out of the op set: its alpha never wins
        row[ops.index("nor_conv_3x3")] = 2.5 if e % 2 == 0 else 1.0
        rows.append(row)
    with torch.no_grad():
        opt.graph.alphas["cell"].copy_(torch.tensor(rows))
    choices = opt.search_space.genotype_choices(opt.get_genotype())["cell"]
    spec = opt.graph.specs["cell"]
    for c in choices:
        e = spec.edge_index[(c.src, c.dst)]
        assert c.op == ("nor_conv_3x3" if e % 2 == 0 else "none")
    opt.threshold = 0.0  # the DARTS parse: every edge keeps its best op
    assert {c.op for c in opt.search_space.genotype_choices(opt.get_genotype())["cell"]} == {"nor_conv_3x3"}


# ----------------------------------------------------------------------------- SDARTS
def test_sdarts_attack_runs_in_eval_mode_as_the_official_pgd(float64):
    """attacker/perturb.py Linf_PGD_alpha: model.eval() for the attack (batch norm on running
    statistics, left unchanged), random start, steps of 2 eps / steps along the gradient's sign,
    clamped to eps around the clean weights and clipped; kept only if it raised the loss."""
    from nasframe_darts import SDARTSOptimizer
    from nasframe_darts.samplers import project_rows_to_simplex

    steps, eps = 3, 0.2
    opt = make(SDARTSOptimizer, DartsSearchSpace(C=2, layers=3), attack="adversarial", attack_steps=steps,
               epsilon_min=eps, epsilon_max=eps)
    graph = opt.graph
    x, y = batch()
    with torch.no_grad():  # running statistics away from their initial values
        for _ in range(3):
            graph(batch(seed=7)[0])
    stats = {n: b.clone() for n, b in graph.named_buffers()}
    assert any("running_mean" in n for n in stats)
    gen = clone_generator(opt.rng.generator)

    names = list(graph.alphas)
    clean = {n: F.softmax(graph.alphas[n].detach(), -1) for n in names}

    def loss(weights):
        return F.cross_entropy(graph.network(x, weights), y)

    graph.eval()
    with torch.no_grad():
        loss_before = loss(clean)
        current = {n: project_rows_to_simplex(clean[n] + torch.empty(clean[n].shape).uniform_(-eps, eps, generator=gen))
                   for n in names}
    for _ in range(steps):
        leaves = {n: current[n].clone().requires_grad_(True) for n in names}
        grads = torch.autograd.grad(loss(leaves), [leaves[n] for n in names])
        with torch.no_grad():
            for n, gr in zip(names, grads):
                moved = leaves[n] + (2 * eps / steps) * gr.sign()
                current[n] = project_rows_to_simplex(clean[n] + (moved - clean[n]).clamp(-eps, eps))
    with torch.no_grad():
        expected = clean if loss_before > loss(current) else current
    graph.train()
    for n, b in graph.named_buffers():  # the reference left them alone too
        assert torch.equal(b, stats[n]), n

    got = opt.weight_step_weights(x, y)
    assert graph.training
    for n in names:
        torch.testing.assert_close(got[n], expected[n], rtol=1e-10, atol=1e-12)
    for n, b in graph.named_buffers():
        assert torch.equal(b, stats[n]), n  # the attack moved no running statistic


# ------------------------------------------------------------------------- beta-DARTS
def test_beta_darts_lambda_of_its_nb201_recipe_reaches_49_5(float64):
    """optimizers/darts/architect.py: lambda = 0 + 50 * epoch / 100; the NB201 code runs 100 epochs."""
    from nasframe_darts import BetaDARTSOptimizer
    from nasframe_darts.recipes import BETA_DARTS

    settings = {k.split(".", 1)[1]: v for k, v in BETA_DARTS["nasbench201"][0]["settings"].items()
                if k.startswith("optimizer.") and k.split(".", 1)[1].startswith("beta_")}
    epochs = BETA_DARTS["nasbench201"][0]["settings"]["run.epochs"]
    opt = make(BetaDARTSOptimizer, NasBench201SearchSpace(C=4, N=1), epochs=epochs, **settings)
    for epoch in (0, 10, epochs - 1):
        opt.new_epoch(epoch)
        assert opt.beta_weight == pytest.approx(50 * epoch / 100)
    assert opt.beta_weight == pytest.approx(49.5)
