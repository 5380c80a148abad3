"""The DARTS family against independent float64 references written from each paper's formula."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from nasframe_core.data import DatasetInfo
from nasframe_spaces.darts.space import DartsSearchSpace
from nasframe_spaces.nasbench201.space import NasBench201SearchSpace

TOY = DatasetInfo("toy", num_classes=4, in_channels=3, image_size=8)


def make(cls, space, seed=0, epochs=None, **settings):
    torch.manual_seed(seed)
    opt = cls(device="cpu", **settings)
    opt.adapt_search_space(space, TOY)
    if epochs:
        opt.plan_search(epochs, 1)
    opt.before_training()
    return opt


def batch(n=4, seed=0, size=8):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, size, size, generator=g), torch.randint(0, 4, (n,), generator=g)


def randomize_alphas(opt) -> list[list[float]]:
    """Give every alpha tensor standard normal values; returns all rows."""
    rows = []
    for a in opt.graph.alphas.values():
        with torch.no_grad():
            a.copy_(torch.randn(a.shape))
        rows.extend(a.detach().tolist())
    return rows


def clone_generator(gen: torch.Generator) -> torch.Generator:
    out = torch.Generator()
    out.set_state(gen.get_state())
    return out


# ------------------------------------------------------------------------------ GDAS
def test_gdas_weights_are_hard_gumbel_with_straight_through_gradient(float64):
    from nasframe_darts import GDASOptimizer

    opt = make(GDASOptimizer, NasBench201SearchSpace(C=4, N=1), epochs=5)
    opt.new_epoch(2)
    tau = 10.0 - (10.0 - 0.1) * 2 / 4
    assert opt.tau == pytest.approx(tau)
    alpha = opt.graph.alphas["cell"]
    with torch.no_grad():
        alpha.copy_(torch.randn(alpha.shape))
    ref_gen = clone_generator(opt.rng.generator)
    hard = opt.graph.op_weights()["cell"]

    # reference: Gumbel noise -log(E), E ~ Exp(1), drawn from the same generator state
    g = -torch.empty(alpha.shape).exponential_(generator=ref_gen).log()
    a = alpha.detach().clone().requires_grad_(True)
    logits = F.log_softmax(a, dim=-1) + g
    index = logits.argmax(dim=-1)
    torch.testing.assert_close(hard.detach(), F.one_hot(index, a.shape[-1]).double(), rtol=0, atol=1e-12)
    assert hard.sampled_index == index.tolist()

    upstream = torch.randn(alpha.shape)
    (grad,) = torch.autograd.grad((hard * upstream).sum(), alpha)
    soft = F.softmax(logits / tau, dim=-1)
    (ref,) = torch.autograd.grad((soft * upstream).sum(), a)  # straight-through: d hard = d soft
    torch.testing.assert_close(grad, ref, rtol=1e-10, atol=1e-12)


def test_gdas_cell_runs_only_the_sampled_op_and_returns_its_output(float64):
    from nasframe_darts import GDASOptimizer

    opt = make(GDASOptimizer, NasBench201SearchSpace(C=4, N=1))
    cell = next(m for m in opt.graph.modules() if type(m).__name__ == "SampledCell")
    calls = []
    for key, mixed in cell.edges.items():
        for name, op in mixed.ops.items():
            op.register_forward_hook(lambda m, i, o, key=key, name=name: calls.append((key, name)))
    spec = cell.spec
    index = [1, 2, 3, 4, 2, 0]  # per edge (0 is 'none')
    weights = F.one_hot(torch.tensor(index), spec.num_ops).double().requires_grad_(True)
    weights.sampled_index = index
    x = torch.randn(2, 4, 8, 8)
    cell.fused = False  # op by op: the forward hooks see which ops run
    cell([x], weights)
    expected_calls = {(f"{s}->{d}", spec.ops[index[spec.edge_index[(s, d)]]]) for s, d in spec.edges
                      if spec.ops[index[spec.edge_index[(s, d)]]] != "none"}
    assert set(calls) == expected_calls and len(calls) == len(expected_calls)
    cell.fused = True  # the fused forms: only the sampled ops' parameters take part
    out = cell([x], weights)

    # reference, xautodl's NAS201SearchCell.forward_gdas: per edge
    # sum(w[k] * op_k(x) if k == sampled else w[k]); the unsampled w[k] are 0 in value, not in gradient
    def reference(with_unsampled: bool):
        w_ref = weights.detach().clone().requires_grad_(True)
        states = {spec.inputs[0]: x}
        for node in spec.nodes:
            total = torch.zeros_like(x)
            for s, _ in spec.in_edges[node]:
                row = spec.edge_index[(s, node)]
                for k, op_name in enumerate(spec.ops):
                    if k == index[row]:
                        if op_name != "none":
                            total = total + w_ref[row, k] * cell.edges[f"{s}->{node}"].ops[op_name](states[s])
                    elif with_unsampled:
                        total = total + w_ref[row, k]
            states[node] = total
        return states[spec.output[0]], w_ref

    ref, w_ref = reference(True)
    flat = [p for m in cell.edges.values() for op in m.ops.values() for p in op.parameters()]

    def used(y):
        grads = torch.autograd.grad(y.sum(), flat, allow_unused=True, retain_graph=True)
        return {id(p) for p, g in zip(flat, grads) if g is not None}

    sampled_params = {id(p) for key, name in expected_calls for p in cell.edges[key].ops[name].parameters()}
    assert used(out) == used(ref) and used(out) <= sampled_params and used(out)
    torch.testing.assert_close(out.detach(), ref.detach(), rtol=1e-12, atol=1e-12)

    # every alpha of an edge gets a gradient through its straight-through weight
    upstream = torch.randn(out.shape)
    (grad,) = torch.autograd.grad((out * upstream).sum(), weights)
    (grad_ref,) = torch.autograd.grad((ref * upstream).sum(), w_ref)
    torch.testing.assert_close(grad, grad_ref, rtol=1e-10, atol=1e-12)
    assert (grad[0] != 0).all()  # edge 1<-0 reaches the output: all five of its alphas
    unsampled_mask = F.one_hot(torch.tensor(index), spec.num_ops) == 0
    assert (grad[unsampled_mask] != 0).sum() >= 12

    # unsampled_weights off (xautodl's NASNet cell): only the sampled ops' weights carry a gradient
    cell.unsampled_weights = False
    out = cell([x], weights)
    ref, w_ref = reference(False)
    torch.testing.assert_close(out.detach(), ref.detach(), rtol=1e-12, atol=1e-12)
    (grad,) = torch.autograd.grad((out * upstream).sum(), weights)
    (grad_ref,) = torch.autograd.grad((ref * upstream).sum(), w_ref)
    torch.testing.assert_close(grad, grad_ref, rtol=1e-10, atol=1e-12)
    assert grad[0, index[0]] != 0 and (grad[F.one_hot(torch.tensor(index), spec.num_ops) == 0] == 0).all()


def test_gdas_every_alpha_gets_a_gradient_in_a_search_step():
    """The default (xautodl's NB201 cell): after one step every alpha has a gradient; off: only sampled ones."""
    from nasframe_darts import GDASOptimizer

    for unsampled, expect_all in ((True, True), (False, False)):
        opt = make(GDASOptimizer, NasBench201SearchSpace(C=4, N=1), unsampled_weights=unsampled)
        opt.step(batch(), batch(seed=1))
        grad = opt.graph.alphas["cell"].grad
        assert bool((grad != 0).all()) is expect_all, grad


# ----------------------------------------------------------------------------- DrNAS
def _dirichlet_kl(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """KL(Dir(a) || Dir(b)) per row, the closed form."""
    a0, b0 = a.sum(-1), b.sum(-1)
    return (torch.lgamma(a0) - torch.lgamma(a).sum(-1) - torch.lgamma(b0) + torch.lgamma(b).sum(-1)
            + ((a - b) * (torch.digamma(a) - torch.digamma(a0).unsqueeze(-1))).sum(-1))


@pytest.mark.parametrize("reg_type", ["kl", "l2"])
def test_drnas_regularizer_is_the_papers(float64, reg_type):
    """kl: reg_scale * KL(Dir(elu(alpha) + 1) || Dir(prior)), no weight decay; l2 (the official
    code's default, DrNAS architect.py): no loss term, Adam's weight decay is reg_scale."""
    from nasframe_darts import DrNASOptimizer

    opt = make(DrNASOptimizer, DartsSearchSpace(C=2, layers=3), reg_type=reg_type, reg_scale=0.25,
               prior_concentration=1.5)
    total = 0.0
    for alpha in opt.graph.alphas.values():
        with torch.no_grad():
            alpha.copy_(torch.randn(alpha.shape) * 2)
        c = torch.where(alpha > 0, alpha, torch.exp(alpha) - 1) + 1  # elu + 1
        prior = torch.full_like(c, 1.5)
        total = total + _dirichlet_kl(c, prior).sum()
    decay = opt.arch_optimizer.param_groups[0]["weight_decay"]
    if reg_type == "kl":
        torch.testing.assert_close(opt.regularizer(), 0.25 * total, rtol=1e-10, atol=1e-12)
        assert decay == 0.0
    else:
        assert opt.regularizer() is None and decay == 0.25


def test_drnas_op_weights_follow_the_dirichlet_distribution(float64):
    from nasframe_darts import DrNASOptimizer

    opt = make(DrNASOptimizer, NasBench201SearchSpace(C=4, N=1))
    alpha = opt.graph.alphas["cell"]
    with torch.no_grad():
        alpha.copy_(torch.tensor([[2.0, 0.5, -0.5, 1.0, 0.0]] * alpha.shape[0]))
    c = torch.tensor([3.0, 1.5, math.exp(-0.5), 2.0, 1.0])
    c0 = c.sum()
    draws = torch.stack([opt.graph.op_weights()["cell"].detach() for _ in range(800)]).reshape(-1, 5)
    mean, var = c / c0, c * (c0 - c) / (c0**2 * (c0 + 1))
    torch.testing.assert_close(draws.mean(0), mean, rtol=0, atol=4 * (var / len(draws)).sqrt().max().item())
    torch.testing.assert_close(draws.var(0), var, rtol=0.1, atol=0)
    torch.testing.assert_close(draws.sum(-1), torch.ones(len(draws)))
    # pathwise: the sample carries a gradient back to the alphas
    (grad,) = torch.autograd.grad(opt.graph.op_weights()["cell"][:, 0].sum(), alpha)
    assert grad.abs().sum() > 0
    # discretization reads the Dirichlet mean
    torch.testing.assert_close(opt.discretization_weights()["cell"][0], mean)


# -------------------------------------------------------------------------- PC-DARTS
def test_pc_darts_edge_sends_first_channels_through_ops_and_shuffles(float64):
    from nasframe_darts import PCDARTSOptimizer

    k = 4
    opt = make(PCDARTSOptimizer, DartsSearchSpace(C=4, layers=3), k=k)
    cell = opt.graph.network.cells[1].inner  # a reduction cell
    assert cell.spec.name == "reduce"
    for stride_edge, key in ((2, "0->2"), (1, "2->3")):
        mixed = cell.edges[key]
        assert mixed.stride == stride_edge
        C = 8  # the reduction cell doubles C=4
        conv = mixed.ops["sep_conv_3x3"]
        assert next(m for m in conv.modules() if isinstance(m, torch.nn.Conv2d)).in_channels == C // k
        x = torch.randn(2, C, 8, 8)
        w = torch.softmax(torch.randn(len(cell.spec.ops)), -1) * 0.7  # the row sums to the edge's beta
        out = mixed(x, w)
        with torch.no_grad():
            part = x[:, : C // k]
            mixed_part = sum(w[cell.spec.ops.index(n)] * op(part) for n, op in mixed.ops.items())
            rest = x[:, C // k:]
            if stride_edge == 2:
                rest = F.max_pool2d(rest, 2, 2)
            joined = torch.cat([mixed_part, 0.7 * rest], 1)
        # shuffle with k groups: output channel c * k + g is joined channel g * (C / k) + c
        expected = torch.empty_like(joined)
        for g in range(k):
            for c in range(C // k):
                expected[:, c * k + g] = joined[:, g * (C // k) + c]
        torch.testing.assert_close(out.detach(), expected, rtol=1e-12, atol=1e-12)


def test_pc_darts_discretization_uses_edge_normalised_betas(float64):
    from nasframe_darts import PCDARTSOptimizer

    opt = make(PCDARTSOptimizer, DartsSearchSpace(C=4, layers=3), k=2)
    spec = opt.graph.specs["normal"]
    with torch.no_grad():
        for a in opt.graph.alphas.values():
            a.copy_(torch.tensor([0.0, 0, 0, 0, 1.0, 0, 0, 0]).expand_as(a))  # every edge: sep_conv_3x3
        betas = opt.graph.extra["betas_normal"]
        betas.copy_(torch.randn(betas.shape))
    # reference: per node, edge weight softmax(betas over its incoming edges); keep the two best
    expected = set()
    for node in spec.nodes:
        rows = [spec.edge_index[e] for e in spec.in_edges[node]]
        norm = torch.softmax(betas.detach()[rows], 0)
        order = sorted(range(len(rows)), key=lambda i: -norm[i].item())[:2]
        expected |= {(spec.in_edges[node][i][0], node) for i in order}
    choices = opt.search_space.genotype_choices(opt.get_genotype())["normal"]
    assert {(c.src, c.dst) for c in choices} == expected
    assert {c.op for c in choices} == {"sep_conv_3x3"}
    w = opt.discretization_weights()["normal"]
    rows = [spec.edge_index[e] for e in spec.in_edges[spec.nodes[1]]]
    torch.testing.assert_close(w[rows].sum(-1), torch.softmax(betas.detach()[rows], 0))


def test_pc_darts_waits_for_the_warm_up_before_architecture_steps():
    from nasframe_darts import PCDARTSOptimizer

    opt = make(PCDARTSOptimizer, NasBench201SearchSpace(C=4, N=1), warmup_epochs=1, epochs=3)
    before = [a.detach().clone() for a in opt.graph.arch_parameters()]
    opt.new_epoch(0)
    opt.step(batch(), batch(seed=1))
    assert all(torch.equal(a, b) for a, b in zip(opt.graph.arch_parameters(), before))
    opt.new_epoch(1)
    opt.step(batch(), batch(seed=1))
    assert not all(torch.equal(a, b) for a, b in zip(opt.graph.arch_parameters(), before))


# ------------------------------------------------------------------------- FairDARTS
def test_fair_darts_sigmoid_weights_and_zero_one_loss(float64):
    """sigmoid weights; L01 = -w * mean((sigmoid - 0.5)^2) over the ops of the official op set (no 'none')."""
    from nasframe_darts import FairDARTSOptimizer

    opt = make(FairDARTSOptimizer, DartsSearchSpace(C=2, layers=3), zero_one_weight=3.0)
    rows = randomize_alphas(opt)
    none = opt.graph.specs["normal"].ops.index("none")
    s = [1 / (1 + math.exp(-v)) for row in rows for k, v in enumerate(row) if k != none]
    ref = -3.0 * sum((x - 0.5) ** 2 for x in s) / len(s)
    assert opt.regularizer().item() == pytest.approx(ref, rel=1e-12)
    a = opt.graph.alphas["normal"]
    expected = 1 / (1 + torch.exp(-a))
    expected[:, none] = 0.0
    torch.testing.assert_close(opt.graph.op_weights()["normal"], expected)
    # none_op=true: 'none' takes part as any other op (the former behaviour)
    opt = make(FairDARTSOptimizer, DartsSearchSpace(C=2, layers=3), zero_one_weight=3.0, none_op=True)
    values = [v for row in randomize_alphas(opt) for v in row]
    s = [1 / (1 + math.exp(-v)) for v in values]
    assert opt.regularizer().item() == pytest.approx(-3.0 * sum((x - 0.5) ** 2 for x in s) / len(s), rel=1e-12)


# -------------------------------------------------------------------------- beta-DARTS
def test_beta_darts_term_and_its_linear_weight(float64):
    from nasframe_darts import BetaDARTSOptimizer

    opt = make(BetaDARTSOptimizer, DartsSearchSpace(C=2, layers=3), epochs=50)
    rows = randomize_alphas(opt)
    for epoch, lam in ((0, 0.0), (10, 5.0), (49, 24.5)):
        opt.new_epoch(epoch)
        ref = lam * sum(math.log(sum(math.exp(v) for v in r)) for r in rows) / len(rows)
        reg = opt.regularizer()
        assert (0.0 if reg is None else reg.item()) == pytest.approx(ref, rel=1e-12, abs=1e-15)


def test_regularizer_gradient_reaches_the_architecture_step():
    from nasframe_darts import BetaDARTSOptimizer

    plain = make(BetaDARTSOptimizer, NasBench201SearchSpace(C=4, N=1), beta_weight_start=0.0, beta_weight_end=0.0)
    strong = make(BetaDARTSOptimizer, NasBench201SearchSpace(C=4, N=1), beta_weight_start=1e4, beta_weight_end=1e4)
    plain.step(batch(), batch(seed=1))
    strong.step(batch(), batch(seed=1))
    assert not torch.equal(plain.graph.alphas["cell"], strong.graph.alphas["cell"])


# ----------------------------------------------------------------------------- DARTS-
def test_darts_minus_auxiliary_skip_decays_linearly_to_zero(float64):
    from nasframe_darts import DARTSMinusOptimizer

    opt = make(DARTSMinusOptimizer, NasBench201SearchSpace(C=4, N=1), epochs=5)
    skip = opt.graph.specs["cell"].ops.index("skip_connect")
    alpha = opt.graph.alphas["cell"]
    x = torch.randn(2, 3, 8, 8)
    for epoch in range(5):
        opt.new_epoch(epoch)
        beta = 1.0 - epoch / 4
        assert opt.aux_skip_weight == pytest.approx(beta, abs=1e-15)
        ref = torch.softmax(alpha.detach(), -1)
        ref[:, skip] += beta
        torch.testing.assert_close(opt.graph.op_weights()["cell"].detach(), ref)
        with torch.no_grad():  # the supernet: mixed output + beta * skip(x) on every edge
            torch.testing.assert_close(opt.graph(x), opt.graph(x, {"cell": ref}))
    assert opt.aux_skip_weight == 0.0
    torch.testing.assert_close(opt.discretization_weights()["cell"], torch.softmax(alpha.detach(), -1))


# ----------------------------------------------------------------------------- SDARTS
def test_sdarts_random_smoothing_stays_within_epsilon(float64):
    from nasframe_darts import SDARTSOptimizer

    opt = make(SDARTSOptimizer, NasBench201SearchSpace(C=4, N=1), epochs=10)
    for epoch in (0, 5, 9):
        opt.new_epoch(epoch)
        eps = 0.03 + (0.3 - 0.03) * epoch / 10
        assert opt.epsilon == pytest.approx(eps)
        ref_gen = clone_generator(opt.rng.generator)
        w = opt.weight_step_weights(*batch())["cell"]
        clean = torch.softmax(opt.graph.alphas["cell"].detach(), -1)
        noise = torch.empty(clean.shape).uniform_(-eps, eps, generator=ref_gen)
        assert noise.abs().max() <= eps
        ref = (clean + noise).clamp(0, 1)
        ref = ref / ref.sum(-1, keepdim=True)
        torch.testing.assert_close(w, ref, rtol=1e-12, atol=1e-12)
        assert (w >= 0).all() and torch.allclose(w.sum(-1), torch.ones(w.shape[0]))


def test_sdarts_adversarial_perturbation_is_bounded_and_raises_the_loss(float64):
    from nasframe_darts import SDARTSOptimizer

    opt = make(SDARTSOptimizer, NasBench201SearchSpace(C=4, N=1), attack="adversarial", attack_steps=3,
               epsilon_min=0.2, epsilon_max=0.2)
    x, y = batch()
    w = opt.weight_step_weights(x, y)["cell"]
    clean = torch.softmax(opt.graph.alphas["cell"].detach(), -1)
    assert (w >= 0).all() and torch.allclose(w.sum(-1), torch.ones(w.shape[0]))
    # the last projection renormalises rows whose clamped entries stayed within eps of clean
    assert (w - clean).abs().max() <= 0.2 * clean.shape[-1] + 1e-12
    with torch.no_grad():
        assert opt._loss(x, y, {"cell": w})[1] >= opt._loss(x, y, {"cell": clean})[1]


def test_gdas_step_when_a_whole_node_samples_none():
    from nasframe_darts import GDASOptimizer

    opt = make(GDASOptimizer, NasBench201SearchSpace(C=4, N=1))
    spec = opt.graph.specs["cell"]
    with torch.no_grad():  # every edge: 'none' (index 0) wins the Gumbel argmax with certainty
        opt.graph.alphas["cell"].copy_(torch.tensor([[50.0, 0, 0, 0, 0]] * spec.num_edges))
    _, _, loss_train, loss_val = opt.step(batch(), batch(seed=1))
    assert torch.isfinite(loss_train) and torch.isfinite(loss_val)
    assert opt.graph.alphas["cell"].grad is not None
