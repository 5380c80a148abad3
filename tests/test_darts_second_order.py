"""The architecture gradient DARTSOptimizer hands to its architecture optimizer.

Second order (``unrolled=True``) is checked two ways:

- against an independent implementation of the paper's formula (one virtual SGD step with
  the momentum buffer and weight decay, a finite-difference Hessian-vector term with
  ``eps = 0.01 / ||v||``), on the NB201 and DARTS supernets, in float64;
- against the exact hypergradient (autograd through the virtual step) on a tiny space of
  smooth ops, where the finite difference must converge quadratically in ``eps``.

First order must equal the plain gradient of the validation loss.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call


import nasframe_darts.optimizer as darts_optimizer
from nasframe_core.data import DatasetInfo
from nasframe_core.ops import Zero
from nasframe_core.space import CellSpec, SearchSpace, dense_cell_graph
from nasframe_darts import DARTSOptimizer
from nasframe_spaces.darts.space import DartsSearchSpace
from nasframe_spaces.nasbench201.space import NasBench201SearchSpace


# ----------------------------------------------------------------------------- helpers
def batches(info: DatasetInfo, n: int, count: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    size = info.image_size
    out = []
    for _ in range(count):
        x = torch.randn(n, info.in_channels, size, size, generator=g, dtype=torch.float64)
        y = torch.randint(0, info.num_classes, (n,), generator=g)
        out.append((x.to(torch.get_default_dtype()), y))
    return out


def capture_arch_grads(opt: DARTSOptimizer) -> list:
    """Record, at every architecture-optimizer step, the alphas' .grad and the weights."""
    records = []
    original = opt.arch_optimizer.step

    def step(*args, **kwargs):
        records.append(
            {
                "grads": [a.grad.detach().clone() for a in opt.graph.arch_parameters()],
                "weights": [w.detach().clone() for w in opt.graph.weights()],
            }
        )
        return original(*args, **kwargs)

    opt.arch_optimizer.step = step
    return records


def snapshot(opt: DARTSOptimizer) -> dict:
    """Everything the paper's formula reads, copied before a step."""
    net = opt.graph.network
    group = opt.op_optimizer.param_groups[0]
    params = {n: p.detach().clone() for n, p in net.named_parameters()}
    buffers = {}
    for n, p in net.named_parameters():
        buf = opt.op_optimizer.state.get(p, {}).get("momentum_buffer")
        buffers[n] = torch.zeros_like(p) if buf is None else buf.detach().clone()
    return {
        "params": params,
        "momentum_buffers": buffers,
        "bn_buffers": {n: b.detach().clone() for n, b in net.named_buffers()},
        "alphas": {n: a.detach().clone() for n, a in opt.graph.alphas.items()},
        "lr": group["lr"],
        "momentum": group["momentum"],
        "weight_decay": group["weight_decay"],
    }


def reference_unrolled_grads(opt: DARTSOptimizer, snap: dict, train, val, use_momentum: bool = True) -> dict:
    """The second-order alpha gradient, written out from the paper's formulas."""
    net = opt.graph.network
    names = list(snap["params"])
    alpha = {n: a.clone().requires_grad_(True) for n, a in snap["alphas"].items()}
    xi, mu, wd = snap["lr"], snap["momentum"], snap["weight_decay"]

    def loss(params, batch):
        state = dict(params)
        state.update({n: b.clone() for n, b in snap["bn_buffers"].items()})
        arch = {n: F.softmax(a, dim=-1) for n, a in alpha.items()}
        logits = functional_call(net, state, (batch[0], arch))
        return F.cross_entropy(logits, batch[1])

    w = {n: snap["params"][n].clone().requires_grad_(True) for n in names}
    g_train = torch.autograd.grad(loss(w, train), [w[n] for n in names], allow_unused=True)
    w_prime = {}
    for n, g in zip(names, g_train):
        g = torch.zeros_like(w[n]) if g is None else g
        m = snap["momentum_buffers"][n] if use_momentum else torch.zeros_like(w[n])
        w_prime[n] = (w[n] - xi * (mu * m + g + wd * w[n])).detach().requires_grad_(True)

    a_names = list(alpha)
    grads = torch.autograd.grad(
        loss(w_prime, val), [alpha[n] for n in a_names] + [w_prime[n] for n in names], allow_unused=True
    )
    dalpha = dict(zip(a_names, grads[: len(a_names)]))
    v = [torch.zeros_like(w[n]) if g is None else g for n, g in zip(names, grads[len(a_names):])]
    eps = 0.01 / torch.sqrt(sum((t**2).sum() for t in v)).item()

    w_plus = {n: snap["params"][n] + eps * vv for n, vv in zip(names, v)}
    w_minus = {n: snap["params"][n] - eps * vv for n, vv in zip(names, v)}
    g_plus = torch.autograd.grad(loss(w_plus, train), [alpha[n] for n in a_names])
    g_minus = torch.autograd.grad(loss(w_minus, train), [alpha[n] for n in a_names])
    hessian = {n: (gp - gm) / (2 * eps) for n, gp, gm in zip(a_names, g_plus, g_minus)}
    return {
        "grad": {n: dalpha[n] - xi * hessian[n] for n in a_names},
        "dalpha": dalpha,
        "hessian_term": {n: xi * hessian[n] for n in a_names},
    }


def flat(d: dict) -> torch.Tensor:
    return torch.cat([t.reshape(-1) for t in d.values()])


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).norm() / b.norm()).item()


def make_optimizer(space, info, seed=0, **settings) -> DARTSOptimizer:
    torch.manual_seed(seed)
    opt = DARTSOptimizer(device="cpu", **settings)
    opt.adapt_search_space(space, info)
    opt.before_training()
    return opt


def spread_alphas(opt: DARTSOptimizer, seed: int, scale: float = 1.0) -> None:
    """Move the alphas away from uniform so that every op weight matters."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for a in opt.graph.arch_parameters():
            a.copy_(scale * torch.randn(a.shape, generator=g, dtype=torch.float64))


NB201_INFO = DatasetInfo("toy-nb201", num_classes=5, in_channels=3, image_size=8)
DARTS_INFO = DatasetInfo("toy-darts", num_classes=4, in_channels=3, image_size=8)


# ------------------------------------------------------------- paper formula, NB201
def test_unrolled_gradient_matches_paper_formula_nb201(float64):
    opt = make_optimizer(NasBench201SearchSpace(C=4, N=1), NB201_INFO, learning_rate=0.2, unrolled=True)
    spread_alphas(opt, 3)
    records = capture_arch_grads(opt)
    data = batches(NB201_INFO, 6, 4, seed=11)

    # first step: zero momentum buffer
    snap = snapshot(opt)
    assert all(float(b.abs().max()) == 0.0 for b in snap["momentum_buffers"].values())
    ref = reference_unrolled_grads(opt, snap, data[0], data[1])
    opt.step(data[0], data[1])
    got = torch.cat([g.reshape(-1) for g in records[0]["grads"]])
    expected = flat(ref["grad"])
    # the Hessian term must carry weight, or a wrong eps scaling would go unnoticed
    assert flat(ref["hessian_term"]).norm() > 1e-2 * expected.norm()
    assert rel(got, expected) < 1e-6
    assert rel(got, flat(ref["dalpha"])) > 1e-3  # not just the first-order part
    # the weights are restored exactly before the architecture optimizer steps
    for w_now, (_, w_before) in zip(records[0]["weights"], snap["params"].items()):
        assert torch.equal(w_now, w_before)

    # second step: the momentum buffer is now non-zero and must enter w'; xi is the
    # current learning rate of the weights (a schedule changes it between steps)
    for group in opt.op_optimizer.param_groups:
        group["lr"] = 0.15
    snap = snapshot(opt)
    assert snap["lr"] == 0.15
    assert sum(float(b.abs().sum()) for b in snap["momentum_buffers"].values()) > 0
    ref = reference_unrolled_grads(opt, snap, data[2], data[3])
    ref_no_momentum = reference_unrolled_grads(opt, snap, data[2], data[3], use_momentum=False)
    opt.step(data[2], data[3])
    got = torch.cat([g.reshape(-1) for g in records[1]["grads"]])
    expected = flat(ref["grad"])
    assert rel(flat(ref_no_momentum["grad"]), expected) > 1e-4  # the buffer matters here
    assert rel(got, expected) < 1e-6


def test_unrolled_gradient_matches_paper_formula_darts_space(float64):
    """Both cell types (normal and reduce alphas), weight decay, and a momentum buffer."""
    opt = make_optimizer(
        DartsSearchSpace(C=2, layers=3), DARTS_INFO, learning_rate=0.2, weight_decay=1e-2, unrolled=False
    )
    spread_alphas(opt, 4)
    records = capture_arch_grads(opt)
    data = batches(DARTS_INFO, 4, 4, seed=12)
    opt.step(data[0], data[1])  # a (cheaper) first-order step fills the momentum buffers
    opt.unrolled = True
    snap = snapshot(opt)
    assert sum(float(b.abs().sum()) for b in snap["momentum_buffers"].values()) > 0
    ref = reference_unrolled_grads(opt, snap, data[2], data[3])
    opt.step(data[2], data[3])
    got = torch.cat([g.reshape(-1) for g in records[1]["grads"]])
    expected = flat(ref["grad"])
    assert [a.shape for a in records[1]["grads"]] == [torch.Size([14, 8]), torch.Size([14, 8])]
    assert flat(ref["hessian_term"]).norm() > 1e-2 * expected.norm()
    assert rel(got, expected) < 1e-6


# ------------------------------------------------- exact hypergradient, smooth space
SMOOTH_OPS = ("none", "skip_connect", "conv_tanh", "conv_softplus")


class ConvAct(nn.Module):
    def __init__(self, C: int, kernel: int, act):
        super().__init__()
        self.conv = nn.Conv2d(C, C, kernel, padding=kernel // 2)
        self.act = act

    def forward(self, x):
        return self.act(self.conv(x))


class SmoothNet(nn.Module):
    def __init__(self, space, cell_factory, num_classes, in_channels):
        super().__init__()
        spec = space.cell_specs()["cell"]
        self.stem = nn.Conv2d(in_channels, space.C, 3, padding=1)
        self.cells = nn.ModuleList([cell_factory(spec, space.op_builder(space.C)) for _ in range(2)])
        self.classifier = nn.Linear(space.C, num_classes)

    def forward(self, x, arch_weights=None):
        w = None if arch_weights is None else arch_weights["cell"]
        x = torch.tanh(self.stem(x))
        for cell in self.cells:
            x = cell((x,), w)
        return self.classifier(x.mean((2, 3)))


class SmoothSpace(SearchSpace):
    """Two cells sharing one 3x4 alpha tensor; every op is smooth (no ReLU, no BatchNorm)."""

    name = "smooth-toy"

    def __init__(self, C: int = 3):
        super().__init__()
        self.C = C
        self._spec = CellSpec("cell", dense_cell_graph((0,), (1, 2), SMOOTH_OPS), inputs=(0,), output=(2,))

    def cell_specs(self):
        return {"cell": self._spec}

    def make_op(self, name, C, stride, *, search):
        if name == "none":
            return Zero(stride)
        if name == "skip_connect":
            return nn.Identity()
        if name == "conv_tanh":
            return ConvAct(C, 3, torch.tanh)
        if name == "conv_softplus":
            return ConvAct(C, 1, F.softplus)
        raise ValueError(name)

    def op_builder(self, C):
        return lambda name, edge: self.make_op(name, C, 1, search=True)

    def build_network(self, cell_factory, *, num_classes, in_channels=3, search=True):
        return SmoothNet(self, cell_factory, num_classes, in_channels)

    def make_genotype(self, choices):
        return tuple((c.src, c.dst, c.op) for c in choices["cell"])

    def genotype_choices(self, genotype):
        raise NotImplementedError

    def parse_genotype(self, text):
        raise NotImplementedError


SMOOTH_INFO = DatasetInfo("toy-smooth", num_classes=3, in_channels=2, image_size=6)
SMOOTH_LR, SMOOTH_WD = 0.5, 3e-4


def smooth_optimizer(unrolled: bool) -> DARTSOptimizer:
    opt = make_optimizer(SmoothSpace(), SMOOTH_INFO, seed=0, learning_rate=SMOOTH_LR,
                         weight_decay=SMOOTH_WD, unrolled=unrolled)
    spread_alphas(opt, 5)
    return opt


def arch_grad_of_first_step(opt: DARTSOptimizer, train, val) -> torch.Tensor:
    records = capture_arch_grads(opt)
    opt.step(train, val)
    assert len(records) == 1
    return records[0]["grads"][0]


def exact_hypergradient(opt: DARTSOptimizer, train, val):
    """d/dalpha L_val(w - xi (grad_w L_train(w, alpha) + wd w), alpha), by double backward."""
    net = opt.graph.network
    params = {n: p.detach().clone().requires_grad_(True) for n, p in net.named_parameters()}
    alpha = opt.graph.alphas["cell"].detach().clone().requires_grad_(True)

    def loss(p, batch):
        return F.cross_entropy(functional_call(net, p, (batch[0], {"cell": F.softmax(alpha, -1)})), batch[1])

    g = torch.autograd.grad(loss(params, train), list(params.values()), create_graph=True)
    w_prime = {n: p - SMOOTH_LR * (gi + SMOOTH_WD * p) for (n, p), gi in zip(params.items(), g)}
    exact = torch.autograd.grad(loss(w_prime, val), alpha)[0]
    first_part = torch.autograd.grad(loss({n: p.detach() for n, p in w_prime.items()}, val), alpha)[0]
    plain = torch.autograd.grad(loss({n: p.detach() for n, p in params.items()}, val), alpha)[0]
    return exact, first_part, plain


def test_unrolled_gradient_approaches_exact_hypergradient(float64, monkeypatch):
    train, val = batches(SMOOTH_INFO, 6, 2, seed=1)
    exact, first_part, _ = exact_hypergradient(smooth_optimizer(True), train, val)
    # the second-order part is a large share of the hypergradient
    assert (exact - first_part).norm() > 0.1 * exact.norm()

    assert darts_optimizer.FD_SCALE == 0.01
    errors = []
    for scale in (1.0, 0.5, 0.25):
        monkeypatch.setattr(darts_optimizer, "FD_SCALE", 0.01 * scale)
        got = arch_grad_of_first_step(smooth_optimizer(True), train, val)
        errors.append(rel(got, exact))
    assert errors[0] < 0.03, errors  # within a few percent at the paper's eps
    # central differences: the error falls about 4x when eps halves
    assert errors[0] / errors[1] > 2.5, errors
    assert errors[1] / errors[2] > 2.5, errors
    assert errors[2] > 0  # still above float64 noise, so the ratios mean something


def test_first_order_gradient_is_plain_validation_gradient(float64):
    train, val = batches(SMOOTH_INFO, 6, 2, seed=2)
    exact, _, plain = exact_hypergradient(smooth_optimizer(False), train, val)
    got = arch_grad_of_first_step(smooth_optimizer(False), train, val)
    assert rel(got, plain) < 1e-12
    assert rel(got, exact) > 1e-2  # and it is not the second-order gradient


def test_first_order_gradient_is_plain_validation_gradient_nb201(float64):
    opt = make_optimizer(NasBench201SearchSpace(C=4, N=1), NB201_INFO, seed=1)
    spread_alphas(opt, 6)
    snap = snapshot(opt)
    train, val = batches(NB201_INFO, 6, 2, seed=13)
    alpha = snap["alphas"]["cell"].clone().requires_grad_(True)
    state = {**snap["params"], **snap["bn_buffers"]}
    logits = functional_call(opt.graph.network, state, (val[0], {"cell": F.softmax(alpha, -1)}))
    plain = torch.autograd.grad(F.cross_entropy(logits, val[1]), alpha)[0]
    records = capture_arch_grads(opt)
    opt.step(train, val)
    assert rel(records[0]["grads"][0], plain) < 1e-12
