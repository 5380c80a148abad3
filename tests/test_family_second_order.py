"""The unrolled (second-order) architecture step of every method that allows it, against the
exact hypergradient on a small smooth model (as ``test_darts_second_order`` does for DARTS).

exact = d/dtheta [ L_val(w - xi (grad_w L_train(w, theta) + wd w), theta) + R(theta) ], by double
backward, where theta are all architecture parameters (PC-DARTS's betas too), the op weights are
the method's own (sigmoid, Dirichlet sample, auxiliary skip, edge normalisation) and R is its
regularizer. The step's finite difference must be within a few percent at the paper's eps and
converge quadratically as eps shrinks. A stochastic method's step differentiates one sample:
every forward of the step draws the same op weights.

GDAS is first order only (each forward samples another architecture; xautodl has no unrolled GDAS).
"""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.func import functional_call

import nasframe_darts.bilevel as bilevel
from nasframe_darts import FAMILY
from test_darts_second_order import (SMOOTH_INFO, SMOOTH_LR, SMOOTH_WD, SmoothSpace, batches, capture_arch_grads,
                                     make_optimizer, rel, spread_alphas)

#: per method, settings that make its own part of the step matter on the smooth model
SETTINGS = {
    "darts": {},
    "drnas": {"reg_type": "kl", "reg_scale": 0.002},
    "pc_darts": {"k": 2, "warmup_epochs": 0},
    "fair_darts": {"zero_one_weight": 10.0},
    "darts_minus": {"aux_skip_start": 0.7},
    "beta_darts": {"beta_weight_start": 0.2, "beta_weight_end": 0.2},
    "sdarts": {},
}
SECOND_ORDER = sorted(SETTINGS)


def method_optimizer(name: str, unrolled: bool):
    cls = FAMILY[name][0]
    torch.manual_seed(0)
    opt = cls(device="cpu", learning_rate=SMOOTH_LR, weight_decay=SMOOTH_WD, unrolled=unrolled, **SETTINGS[name])
    opt.adapt_search_space(SmoothSpace(C=4), SMOOTH_INFO)
    opt.before_training()
    spread_alphas(opt, 5)
    return opt


def exact_hypergradient(opt, train, val):
    """The exact second-order gradient of every architecture parameter (plus the regularizer's)."""
    graph = opt.graph
    net = graph.network
    arch = list(graph.arch_parameters())
    state = opt.rng.generator.get_state()  # one architecture sample for every forward

    def loss(params, batch):
        opt.rng.generator.set_state(state)
        weights = {n: opt._forward_op_weights(n, graph.alphas[n]) for n in graph.alphas}
        return F.cross_entropy(functional_call(net, params, (batch[0], weights)), batch[1])

    params = {n: p.detach().clone().requires_grad_(True) for n, p in net.named_parameters()}
    g = torch.autograd.grad(loss(params, train), list(params.values()), create_graph=True, allow_unused=True)
    w_prime = {n: p - SMOOTH_LR * ((0 if gi is None else gi) + SMOOTH_WD * p) for (n, p), gi in zip(params.items(), g)}
    exact = list(torch.autograd.grad(loss(w_prime, val), arch, allow_unused=True))
    first = list(torch.autograd.grad(loss({n: p.detach() for n, p in w_prime.items()}, val), arch,
                                     allow_unused=True))
    reg = opt.regularizer()
    if reg is not None:
        extra = torch.autograd.grad(reg, arch, allow_unused=True)
        exact = [e if r is None else e + r for e, r in zip(exact, extra)]
        first = [e if r is None else e + r for e, r in zip(first, extra)]
    opt.rng.generator.set_state(state)
    flat = lambda ts: torch.cat([t.reshape(-1) for t in ts])  # noqa: E731
    return flat(exact), flat(first)


def arch_grads_of_first_step(opt, train, val) -> torch.Tensor:
    records = capture_arch_grads(opt)
    opt.step(train, val)
    assert len(records) == 1
    return torch.cat([g.reshape(-1) for g in records[0]["grads"]])


@pytest.mark.parametrize("name", SECOND_ORDER)
def test_unrolled_step_approaches_the_exact_hypergradient(name, float64, monkeypatch):
    train, val = batches(SMOOTH_INFO, 6, 2, seed=1)
    exact, first_part = exact_hypergradient(method_optimizer(name, True), train, val)
    share = rel(first_part, exact)  # how far the first-order part alone is from the exact gradient
    assert share > 0.02

    errors = []
    for scale in (1.0, 0.5, 0.25):
        monkeypatch.setattr(bilevel, "FD_SCALE", 0.01 * scale)
        if name == "darts":
            import nasframe_darts.optimizer as darts_optimizer

            monkeypatch.setattr(darts_optimizer, "FD_SCALE", 0.01 * scale)
        got = arch_grads_of_first_step(method_optimizer(name, True), train, val)
        errors.append(rel(got, exact))
    assert errors[0] < min(0.03, 0.3 * share), (errors, share)  # far closer than the first-order part
    assert errors[0] / errors[1] > 2.5, errors  # central differences: about 4x per halving of eps
    assert errors[1] / errors[2] > 2.5, errors
    assert errors[2] > 0


@pytest.mark.parametrize("name", SECOND_ORDER)
def test_first_order_step_is_the_plain_validation_gradient(name, float64):
    train, val = batches(SMOOTH_INFO, 6, 2, seed=2)
    opt = method_optimizer(name, False)
    graph = opt.graph
    state = opt.rng.generator.get_state()
    weights = {n: opt._forward_op_weights(n, graph.alphas[n]) for n in graph.alphas}
    arch = list(graph.arch_parameters())
    plain = torch.autograd.grad(F.cross_entropy(graph.network(val[0], weights), val[1]), arch, allow_unused=True)
    reg = opt.regularizer()
    if reg is not None:
        plain = [p + r for p, r in zip(plain, torch.autograd.grad(reg, arch))]
    opt.rng.generator.set_state(state)
    got = arch_grads_of_first_step(opt, train, val)
    assert rel(got, torch.cat([p.reshape(-1) for p in plain])) < 1e-12


def test_gdas_refuses_the_unrolled_step():
    from nasframe_core.errors import NasframeError
    from nasframe_darts import GDASOptimizer

    with pytest.raises(NasframeError, match="first order"):
        GDASOptimizer(unrolled=True)


def test_the_unrolled_step_follows_nesterov_momentum(float64):
    """With Nesterov the virtual step is the one SGD takes: d + mu (mu m + d), d = g + wd w."""
    from test_darts_second_order import NB201_INFO, reference_unrolled_grads, snapshot
    from nasframe_spaces.nasbench201.space import NasBench201SearchSpace

    opt = make_optimizer(NasBench201SearchSpace(C=4, N=1), NB201_INFO, learning_rate=0.2, unrolled=False,
                         nesterov=True)
    assert opt.op_optimizer.param_groups[0]["nesterov"] is True
    spread_alphas(opt, 3)
    records = capture_arch_grads(opt)
    data = batches(NB201_INFO, 6, 4, seed=11)
    opt.step(data[0], data[1])  # fills the momentum buffers
    opt.unrolled = True
    snap = snapshot(opt)
    mu = snap["momentum"]
    # a Nesterov step from w equals a plain-momentum step with buffer mu * m + d ... written out:
    # w' = w - xi (d + mu (mu m + d)) = w - xi ((1 + mu) d + mu^2 m); in the reference's terms
    # (w - xi (mu m' + d')) that is m' = mu m with d' = (1 + mu) d
    scaled = dict(snap)
    scaled["momentum_buffers"] = {n: mu * b for n, b in snap["momentum_buffers"].items()}
    scaled["lr"] = snap["lr"] * (1 + mu)
    scaled["momentum"] = mu / (1 + mu)
    scaled["weight_decay"] = snap["weight_decay"]
    ref = reference_unrolled_grads(opt, scaled, data[2], data[3])
    opt.step(data[2], data[3])
    got = torch.cat([g.reshape(-1) for g in records[1]["grads"]])
    # the reference's xi multiplies the Hessian term too; rescale that part back to the real xi
    expected = torch.cat([(ref["dalpha"][n] - ref["hessian_term"][n] / (1 + mu)).reshape(-1) for n in ref["dalpha"]])
    assert rel(got, expected) < 1e-6
