"""DARTSOptimizer: NASLib's API name for name, the split between weight and architecture
updates, checkpoint/resume, and a short seeded search on synthetic data."""
from __future__ import annotations

import inspect
import io
import logging

import torch
import torch.nn.functional as F
from torch import nn

import pytest

from nasframe_core.data import DatasetInfo
from nasframe_core.errors import NasframeError
from nasframe_core.ops import Zero
from nasframe_core.optimizer import MetaOptimizer
from nasframe_darts.mixed import MixedOp
from nasframe_spaces.darts.space import DartsSearchSpace
from nasframe_spaces.nasbench201.space import NasBench201SearchSpace


SEED_DEFAULTS = {
    "learning_rate": 0.025,
    "momentum": 0.9,
    "weight_decay": 0.0003,
    "grad_clip": 5,
    "unrolled": False,
    "arch_learning_rate": 0.0003,
    "arch_weight_decay": 0.001,
    "op_optimizer": "SGD",
    "arch_optimizer": "Adam",
    "loss_criteria": "CrossEntropyLoss",
}
TOY = DatasetInfo("toy", num_classes=4, in_channels=3, image_size=8)


def nb201():
    return NasBench201SearchSpace(C=4, N=1)


def darts():
    return DartsSearchSpace(C=2, layers=3)


def make(space, info=TOY, seed=0, **settings):
    from nasframe_darts import DARTSOptimizer

    torch.manual_seed(seed)
    opt = DARTSOptimizer(device="cpu", **settings)
    opt.adapt_search_space(space, info)
    opt.before_training()
    return opt


def batch(n=4, seed=0, info=TOY, size=8):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, info.in_channels, size, size, generator=g)
    y = torch.randint(0, info.num_classes, (n,), generator=g)
    return x, y


def weights_of(opt):
    return list(opt.graph.weights())


def clone_all(tensors):
    return [t.detach().clone() for t in tensors]


def all_equal(a, b):
    return len(a) == len(b) and all(torch.equal(x, y) for x, y in zip(a, b))


def none_equal(a, b):
    """Every tensor changed (at least one element of each)."""
    return all(not torch.equal(x, y) for x, y in zip(a, b))


# ------------------------------------------------------------------------- the API
def test_import_and_seed_signature():
    from nasframe_darts import DARTSOptimizer

    assert issubclass(DARTSOptimizer, MetaOptimizer)
    params = inspect.signature(DARTSOptimizer.__init__).parameters
    names = [n for n in params if n != "self"]
    assert names[: len(SEED_DEFAULTS)] == list(SEED_DEFAULTS)  # same order: positional calls work
    for name, default in SEED_DEFAULTS.items():
        assert params[name].default == default and type(params[name].default) is type(default), name
    assert any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    sig = inspect.signature(DARTSOptimizer.adapt_search_space).parameters
    assert list(sig)[:4] == ["self", "search_space", "dataset", "scope"] and sig["scope"].default is None
    for static in ("add_alphas", "update_ops"):
        assert isinstance(inspect.getattr_static(DARTSOptimizer, static), staticmethod)
    for method in ("before_training", "new_epoch", "step", "get_final_architecture", "get_checkpointables",
                   "get_model_size", "get_op_optimizer", "test_statistics"):
        assert callable(getattr(DARTSOptimizer, method)), method


def test_attributes_and_optimizer_settings():
    space = nb201()
    opt = make(space, info="cifar10")
    for name, value in SEED_DEFAULTS.items():
        if name not in ("op_optimizer", "arch_optimizer", "loss_criteria"):
            assert getattr(opt, name) == value, name
    assert opt.search_space is space and opt.dataset == "cifar10" and opt.scope is None
    assert opt.device == torch.device("cpu")
    assert isinstance(opt.loss, nn.CrossEntropyLoss)
    assert isinstance(opt.architectural_weights, nn.ParameterList)
    (alpha,) = list(opt.architectural_weights)
    assert alpha.shape == (6, 5) and alpha is opt.graph.alphas["cell"]
    assert 0 < float(alpha.detach().abs().max()) < 1e-2  # 1e-3 * randn

    sgd = opt.op_optimizer
    assert type(sgd) is torch.optim.SGD
    (group,) = sgd.param_groups
    assert (group["lr"], group["momentum"], group["weight_decay"], group["nesterov"]) == (0.025, 0.9, 3e-4, False)
    adam = opt.arch_optimizer
    assert type(adam) is torch.optim.Adam
    (group,) = adam.param_groups
    assert (group["lr"], tuple(group["betas"]), group["weight_decay"]) == (3e-4, (0.5, 0.999), 1e-3)

    # graph(x) gives the logits
    x = torch.randn(3, 3, 8, 8)
    logits = opt.graph(x)
    assert logits.shape == (3, 10) and logits.dtype == torch.float32


@pytest.mark.parametrize("space_factory", [nb201, darts], ids=["nb201", "darts"])
def test_naslib_style_script(space_factory, caplog):
    """The NASLib search loop, unchanged, on nasframe's spaces."""
    from nasframe_darts import DARTSOptimizer

    torch.manual_seed(0)
    search_space = space_factory()
    optimizer = DARTSOptimizer()  # the seed's defaults; the device defaults to CUDA when there is one
    optimizer.adapt_search_space(search_space, "cifar10")
    optimizer.before_training()
    device = optimizer.device
    assert optimizer.using_step_function
    caplog.set_level(logging.INFO)
    data = [(batch(4, 2 * i, DatasetInfo("c", 10)), batch(4, 2 * i + 1, DatasetInfo("c", 10))) for i in range(2)]
    for epoch in range(2):
        optimizer.new_epoch(epoch)
        data_train, data_val = data[epoch]  # one step per epoch keeps this fast
        out = optimizer.step(data_train, data_val)
        assert isinstance(out, tuple) and len(out) == 4
        logits_train, logits_val, loss_train, loss_val = out
        assert logits_train.shape == (4, 10) and logits_val.shape == (4, 10)
        assert loss_train.dim() == 0 and loss_val.dim() == 0
        assert torch.isfinite(loss_train) and torch.isfinite(loss_val)
        assert torch.allclose(loss_train, F.cross_entropy(logits_train, data_train[1].to(device)))
        assert torch.allclose(loss_val, F.cross_entropy(logits_val, data_val[1].to(device)))
    assert "epoch 1" in caplog.text  # new_epoch logs the architecture weights

    final = optimizer.get_final_architecture()
    assert isinstance(final, nn.Module) and final.genotype == optimizer.get_genotype()
    final.eval()
    assert final(torch.randn(2, 3, 8, 8, device=device)).shape == (2, 10)
    # the final network inherits the supernet's weights
    supernet_state = optimizer.graph.network.state_dict()
    for key, value in final.state_dict().items():
        assert torch.equal(value, supernet_state[key]), key

    size = optimizer.get_model_size()
    assert isinstance(size, float) and size > 0
    assert size == pytest.approx(sum(p.numel() for p in optimizer.graph.network.parameters()) / 1e6, abs=1e-12)

    checkpointables = optimizer.get_checkpointables()
    assert isinstance(checkpointables, dict)
    assert {"model", "op_optimizer", "arch_optimizer"} <= set(checkpointables)
    assert isinstance(checkpointables["model"], nn.Module)
    for obj in checkpointables.values():
        assert callable(obj.state_dict) and callable(obj.load_state_dict)
    assert optimizer.get_op_optimizer() is torch.optim.SGD
    assert optimizer.test_statistics() is None


def test_static_add_alphas_and_update_ops():
    from nasframe_darts import DARTSOptimizer

    space = nb201()

    class Edge:
        def __init__(self):
            self.head, self.tail = 0, 1
            self.data = {"ops": list(space.cell_specs()["cell"].ops),
                         "op_builder": lambda name, edge: space.make_op(name, 4, 1, search=True)}

    edge = Edge()
    DARTSOptimizer.add_alphas(edge)
    alpha = edge.data["alpha"]
    assert isinstance(alpha, nn.Parameter) and alpha.shape == (5,) and float(alpha.detach().abs().max()) < 1e-2
    DARTSOptimizer.update_ops(edge)
    op = edge.data["op"]
    assert isinstance(op, MixedOp) and "none" not in op.ops
    assert op(torch.randn(2, 4, 5, 5), F.softmax(alpha, -1)).shape == (2, 4, 5, 5)


def test_torch_names_for_optimizers_and_loss():
    opt = make(nb201(), op_optimizer="Adam", arch_optimizer="SGD", loss_criteria="MultiMarginLoss",
               learning_rate=0.01, weight_decay=1e-4, arch_learning_rate=0.5, arch_weight_decay=0.25)
    assert opt.get_op_optimizer() is torch.optim.Adam
    assert type(opt.op_optimizer) is torch.optim.Adam
    assert (opt.op_optimizer.param_groups[0]["lr"], opt.op_optimizer.param_groups[0]["weight_decay"]) == (0.01, 1e-4)
    assert type(opt.arch_optimizer) is torch.optim.SGD
    assert (opt.arch_optimizer.param_groups[0]["lr"], opt.arch_optimizer.param_groups[0]["weight_decay"]) == (0.5, 0.25)
    assert type(opt.loss) is nn.MultiMarginLoss
    x, y = batch()
    _, _, loss_train, _ = opt.step((x, y), (x, y))
    assert torch.isfinite(loss_train)


@pytest.mark.parametrize(
    "kwargs, bad, suggested",
    [
        ({"op_optimizer": "SGDx"}, "op_optimizer 'SGDx'", "SGD"),
        ({"op_optimizer": "Optimizer"}, "op_optimizer 'Optimizer'", "SGD"),
        ({"arch_optimizer": "Adamm"}, "arch_optimizer 'Adamm'", "Adam"),
        ({"loss_criteria": "CrossEntropy"}, "loss_criteria 'CrossEntropy'", "CrossEntropyLoss"),
        ({"loss_criteria": "Linear"}, "loss_criteria 'Linear'", "CrossEntropyLoss"),
        ({"loss_criteria": "Module"}, "loss_criteria 'Module'", "CrossEntropyLoss"),
        ({"loss_criteria": "SGD"}, "loss_criteria 'SGD'", "CrossEntropyLoss"),
        ({"nesterv": True}, "'nesterv'", "nesterov"),
    ],
)
def test_unknown_names_raise_one_line_errors(kwargs, bad, suggested):
    from nasframe_darts import DARTSOptimizer

    with pytest.raises(NasframeError) as info:
        DARTSOptimizer(**kwargs)
    message = str(info.value)
    assert "\n" not in message
    assert bad in message, message
    assert suggested in message.replace(bad, ""), message  # it names what would work


def test_adapt_rejects_what_is_not_a_search_space():
    from nasframe_darts import DARTSOptimizer

    with pytest.raises(NasframeError):
        DARTSOptimizer(device="cpu").adapt_search_space("nasbench201", "cifar10")


# --------------------------------------------------------------- resume from checkpoint
@pytest.mark.parametrize("space_factory, unrolled", [(nb201, True), (darts, False)], ids=["nb201-2nd", "darts-1st"])
def test_resume_from_checkpointables_is_bit_for_bit(space_factory, unrolled):
    data = [(batch(4, 10 + 2 * i), batch(4, 11 + 2 * i)) for i in range(4)]
    before, after = (data[:2], data[2:]) if unrolled else (data[:1], data[1:2])  # the DARTS space is slower
    a = make(space_factory(), seed=0, unrolled=unrolled)
    for d in before:
        a.step(*d)
    for group in a.op_optimizer.param_groups:  # as a learning-rate schedule would
        group["lr"] = 0.0173
    buffer = io.BytesIO()
    torch.save({k: v.state_dict() for k, v in a.get_checkpointables().items()}, buffer)

    b = make(space_factory(), seed=123, unrolled=unrolled)
    assert not torch.equal(a.graph.arch_parameters()[0], b.graph.arch_parameters()[0])
    buffer.seek(0)
    state = torch.load(buffer)
    for key, obj in b.get_checkpointables().items():
        obj.load_state_dict(state[key])
    assert b.op_optimizer.param_groups[0]["lr"] == 0.0173

    for d in after:
        out_a, out_b = a.step(*d), b.step(*d)
        assert all(torch.equal(x, y) for x, y in zip(out_a, out_b))
    sa, sb = a.graph.state_dict(), b.graph.state_dict()
    assert list(sa) == list(sb)
    for key in sa:
        assert torch.equal(sa[key], sb[key]), key
    for opt_a, opt_b in ((a.op_optimizer, b.op_optimizer), (a.arch_optimizer, b.arch_optimizer)):
        for pa, pb in zip(opt_a.param_groups[0]["params"], opt_b.param_groups[0]["params"]):
            st_a, st_b = opt_a.state[pa], opt_b.state[pb]
            assert st_a.keys() == st_b.keys() and st_a
            for k in st_a:
                assert torch.equal(torch.as_tensor(st_a[k]), torch.as_tensor(st_b[k])), k
    assert a.get_genotype() == b.get_genotype()


# ---------------------------------------------------- who updates what, and with what
@pytest.mark.parametrize("space_factory", [nb201, darts], ids=["nb201", "darts"])
def test_optimizer_param_groups_are_disjoint(space_factory):
    opt = make(space_factory())
    alphas = {id(a) for a in opt.graph.arch_parameters()}
    weights = {id(w) for w in opt.graph.network.parameters()}
    in_op = {id(p) for g in opt.op_optimizer.param_groups for p in g["params"]}
    in_arch = {id(p) for g in opt.arch_optimizer.param_groups for p in g["params"]}
    assert len(alphas) == len(opt.graph.specs) and alphas == {id(a) for a in opt.architectural_weights}
    assert in_op == weights and not (in_op & alphas)
    assert in_arch == alphas and not (in_arch & weights)
    assert not (weights & alphas)


@pytest.mark.parametrize("unrolled", [False, True], ids=["first-order", "second-order"])
def test_architecture_step_moves_only_alphas(unrolled):
    opt = make(nb201(), unrolled=unrolled)
    alphas, weights = opt.graph.arch_parameters(), weights_of(opt)
    x, y = batch(seed=1)
    xv, yv = batch(seed=2)
    opt.step((x, y), (xv, yv))  # momentum and Adam state exist from here on
    for w in weights:
        w.grad = None
    a0, w0 = clone_all(alphas), clone_all(weights)
    seen = {}
    original = opt.arch_optimizer.step

    def arch_step(*args, **kwargs):
        seen["weight_grads"] = [w.grad for w in weights]
        result = original(*args, **kwargs)
        seen["alphas"], seen["weights"] = clone_all(alphas), clone_all(weights)
        return result

    opt.arch_optimizer.step = arch_step
    opt.step((x, y), (xv, yv))
    assert "alphas" in seen
    # after the architecture part: alphas moved, weights untouched, no weight gradients
    assert none_equal(seen["alphas"], a0)
    assert all_equal(seen["weights"], w0)
    assert all(g is None for g in seen["weight_grads"])
    # after the weight part: weights moved, alphas as the architecture step left them
    assert all_equal(clone_all(alphas), seen["alphas"])
    moved = sum(not torch.equal(w, w_old) for w, w_old in zip(weights, w0))
    assert moved == len(weights)


def test_first_order_architecture_gradient_targets_only_alphas(monkeypatch):
    opt = make(darts())
    alphas = {id(a) for a in opt.graph.arch_parameters()}
    calls = []
    original_grad = torch.autograd.grad
    original_step = opt.arch_optimizer.step

    def grad(outputs, inputs, *args, **kwargs):
        calls.append(("grad", {id(t) for t in ([inputs] if torch.is_tensor(inputs) else inputs)}))
        return original_grad(outputs, inputs, *args, **kwargs)

    def arch_step(*args, **kwargs):
        calls.append(("arch_step", None))
        return original_step(*args, **kwargs)

    monkeypatch.setattr(torch.autograd, "grad", grad)
    opt.arch_optimizer.step = arch_step
    backward_calls = []
    monkeypatch.setattr(torch.Tensor, "backward", lambda *a, **k: backward_calls.append(1))
    opt.step(batch(seed=3), batch(seed=4))
    boundary = calls.index(("arch_step", None))
    before = [c for c in calls[:boundary] if c[0] == "grad"]
    assert before == [("grad", alphas)]  # one gradient call, with respect to the alphas only
    assert all(not (c[1] & alphas) for c in calls[boundary + 1:] if c[0] == "grad")
    assert not backward_calls


def test_zero_architecture_learning_rate_keeps_alphas():
    for unrolled in (False, True):
        opt = make(nb201(), arch_learning_rate=0.0, arch_weight_decay=0.0, unrolled=unrolled)
        a0, w0 = clone_all(opt.graph.arch_parameters()), clone_all(weights_of(opt))
        for i in range(3):
            opt.step(batch(seed=20 + i), batch(seed=30 + i))
        assert all_equal(clone_all(opt.graph.arch_parameters()), a0)
        assert none_equal(clone_all(weights_of(opt)), w0)


def test_zero_weight_learning_rate_keeps_weights():
    opt = make(nb201(), learning_rate=0.0, weight_decay=0.0)
    a0, w0 = clone_all(opt.graph.arch_parameters()), clone_all(weights_of(opt))
    for i in range(3):
        opt.step(batch(seed=20 + i), batch(seed=30 + i))
    assert all_equal(clone_all(weights_of(opt)), w0)
    assert none_equal(clone_all(opt.graph.arch_parameters()), a0)


@pytest.mark.parametrize("space_factory", [nb201, darts], ids=["nb201", "darts"])
def test_none_ops_have_no_modules(space_factory):
    opt = make(space_factory())
    mixed = [m for m in opt.graph.modules() if isinstance(m, MixedOp)]
    spec_edges = sum(s.num_edges for s in opt.graph.specs.values())
    assert len(mixed) >= spec_edges
    for m in mixed:
        assert "none" in m.primitives and "none" not in m.ops
        assert list(m.ops) == [p for p in m.primitives if p != "none"]
        assert all(m.primitives[k] == name for name, k in zip(m.ops, m.columns))
    assert not any(isinstance(m, Zero) for m in opt.graph.modules())


# ------------------------------------------------------------------ a short search
def synthetic_split(n: int, seed: int, templates: torch.Tensor):
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % templates.shape[0]
    x = templates[y] + 0.6 * torch.randn(n, *templates.shape[1:], generator=g)
    return x, y


def search(seed: int, epochs: int = 3, steps: int = 4, bs: int = 8):
    templates = torch.randn(TOY.num_classes, 3, 8, 8, generator=torch.Generator().manual_seed(99))
    x_train, y_train = synthetic_split(steps * bs, 1, templates)
    x_val, y_val = synthetic_split(steps * bs, 2, templates)
    opt = make(nb201(), seed=seed, learning_rate=0.05)
    epoch_losses = []
    for epoch in range(epochs):
        opt.new_epoch(epoch)
        losses = []
        for i in range(steps):
            sl = slice(i * bs, (i + 1) * bs)
            _, _, loss_train, _ = opt.step((x_train[sl], y_train[sl]), (x_val[sl], y_val[sl]))
            losses.append(float(loss_train))
        epoch_losses.append(sum(losses) / len(losses))
    return opt, epoch_losses


def test_short_search_lowers_loss_and_is_seeded():
    opt1, losses1 = search(seed=7)
    assert losses1[-1] < 0.6 * losses1[0], losses1
    opt2, losses2 = search(seed=7)
    assert losses2 == losses1
    assert all_equal(clone_all(opt1.graph.arch_parameters()), clone_all(opt2.graph.arch_parameters()))
    assert opt1.get_genotype() == opt2.get_genotype()
    opt3, _ = search(seed=8)
    assert not torch.equal(opt1.graph.arch_parameters()[0], opt3.graph.arch_parameters()[0])
