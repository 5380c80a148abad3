"""Fused and reference cell execution are the same function of the same parameters.

For the NB201 and DARTS supernets: logits, loss and the gradients with respect to every
weight and every alpha agree to float tolerance (float64 and float32), whether the switch
is made on the cells (``cell.fused``) or through ``DARTSOptimizer(fused=...)``; and a seeded
short search reaches the same alphas and genotype either way.
"""
from __future__ import annotations

import copy

import torch
import torch.nn.functional as F

import pytest

from nasframe_core.data import DatasetInfo
from nasframe_darts import DARTSOptimizer
from nasframe_darts.mixed import MixedCell
from nasframe_spaces.darts.space import DartsSearchSpace
from nasframe_spaces.nasbench201.space import NasBench201SearchSpace

INFO = DatasetInfo("toy", num_classes=4, in_channels=3, image_size=8)
TOLERANCE = {torch.float64: 1e-10, torch.float32: 1e-5}


@pytest.fixture(params=[torch.float64, torch.float32], ids=["float64", "float32"])
def dtype(request):
    old = torch.get_default_dtype()
    torch.set_default_dtype(request.param)
    yield request.param
    torch.set_default_dtype(old)


def nb201():
    return NasBench201SearchSpace(C=4, N=1)


def darts():
    return DartsSearchSpace(C=2, layers=3)


SPACES = pytest.mark.parametrize("space_factory", [nb201, darts], ids=["nb201", "darts"])


def make(space, fused: bool, seed: int = 0, **settings) -> DARTSOptimizer:
    torch.manual_seed(seed)
    opt = DARTSOptimizer(device="cpu", fused=fused, **settings)
    opt.adapt_search_space(space, INFO)
    opt.before_training()
    return opt


def spread_alphas(opt: DARTSOptimizer, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for a in opt.graph.arch_parameters():
            a.copy_(torch.randn(a.shape, generator=g, dtype=torch.float64))


def data(n: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, 8, 8, generator=g, dtype=torch.float64).to(torch.get_default_dtype())
    return x, torch.randint(0, INFO.num_classes, (n,), generator=g)


def mixed_cells(opt: DARTSOptimizer) -> list:
    cells = [m for m in opt.graph.modules() if isinstance(m, MixedCell)]
    assert cells
    return cells


def set_fused(opt: DARTSOptimizer, fused: bool) -> None:
    for cell in mixed_cells(opt):
        cell.fused = fused


def forward_backward(opt: DARTSOptimizer, x, y):
    params = list(opt.graph.network.parameters()) + opt.graph.arch_parameters()
    logits = opt.graph(x)
    loss = F.cross_entropy(logits, y)
    grads = torch.autograd.grad(loss, params, allow_unused=True)
    grads = [torch.zeros_like(p) if g is None else g for p, g in zip(params, grads)]
    return logits.detach(), loss.detach(), grads


def assert_close(a: torch.Tensor, b: torch.Tensor, tol: float, scale: float, what: str) -> None:
    """Relative to the tensor's own size, with a floor at ``tol * scale`` for tiny tensors."""
    err = float((a - b).norm())
    assert err <= tol * (float(b.norm()) + scale), (what, err, float(b.norm()))


def flat(tensors) -> torch.Tensor:
    return torch.cat([t.reshape(-1) for t in tensors])


def assert_same_results(r_fused, r_ref, tol: float) -> None:
    logits_f, loss_f, grads_f = r_fused
    logits_r, loss_r, grads_r = r_ref
    assert_close(logits_f, logits_r, tol, 0.0, "logits")
    assert_close(loss_f, loss_r, tol, 0.0, "loss")
    total = float(flat(grads_r).norm())
    assert total > 0
    assert_close(flat(grads_f), flat(grads_r), tol, 0.0, "all gradients")
    # tensor by tensor; tensors with a tiny gradient are held to a floor of 1% of the total
    for k, (gf, gr) in enumerate(zip(grads_f, grads_r)):
        assert_close(gf, gr, 2 * tol, 1e-2 * total, f"gradient {k}")


@SPACES
def test_fused_equals_reference_on_the_same_parameters(space_factory, dtype, monkeypatch):
    opt = make(space_factory(), fused=True)
    spread_alphas(opt, 1)
    x, y = data(4, 2)
    calls = {"fused": 0, "reference": 0}
    for name, key in (("forward_fused", "fused"), ("forward_reference", "reference")):
        original = getattr(MixedCell, name)

        def counted(self, *args, _original=original, _key=key, **kwargs):
            calls[_key] += 1
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(MixedCell, name, counted)

    fused = forward_backward(opt, x, y)
    n_cells = len(mixed_cells(opt))
    assert calls == {"fused": n_cells, "reference": 0}
    set_fused(opt, False)
    reference = forward_backward(opt, x, y)
    assert calls == {"fused": n_cells, "reference": n_cells}

    tol = TOLERANCE[dtype]
    assert fused[0].dtype == dtype
    assert_same_results(fused, reference, tol)
    n_alpha = len(opt.graph.arch_parameters())
    for gf, gr in zip(fused[2][-n_alpha:], reference[2][-n_alpha:]):
        assert float(gr.norm()) > 0
        assert_close(gf, gr, tol, 0.0, "alpha gradient")

    # evaluation mode (batch norm without running statistics in NB201, with them in DARTS)
    opt.graph.eval()
    with torch.no_grad():
        ref_eval = opt.graph(x)
        set_fused(opt, True)
        fused_eval = opt.graph(x)
    assert_close(fused_eval, ref_eval, tol, 0.0, "eval logits")


@SPACES
def test_optimizer_fused_setting_selects_the_execution(space_factory, float64):
    fast = make(space_factory(), fused=True, seed=3)
    slow = make(space_factory(), fused=False, seed=3)
    assert all(c.fused for c in mixed_cells(fast)) and not any(c.fused for c in mixed_cells(slow))
    # same seed, same parameters: the fused setting does not change initialisation
    for (n1, p1), (n2, p2) in zip(fast.graph.state_dict().items(), slow.graph.state_dict().items()):
        assert n1 == n2 and torch.equal(p1, p2), n1
    spread_alphas(fast, 4)
    spread_alphas(slow, 4)
    x, y = data(4, 5)
    assert_same_results(forward_backward(fast, x, y), forward_backward(slow, x, y), TOLERANCE[torch.float64])


@pytest.mark.parametrize(
    "space_factory, unrolled", [(nb201, True), (darts, False)], ids=["nb201-2nd", "darts-1st"]
)
def test_seeded_search_gives_same_genotype(space_factory, unrolled, float64):
    results = []
    for fused in (True, False):
        opt = make(space_factory(), fused=fused, seed=6, unrolled=unrolled, arch_learning_rate=0.05)
        spread_alphas(opt, 7)
        start = [a.detach().clone() for a in opt.graph.arch_parameters()]
        for i in range(3 if unrolled else 2):
            opt.step(data(4, 10 + i), data(4, 20 + i))
        alphas = [a.detach().clone() for a in opt.graph.arch_parameters()]
        assert all(float((a - s).abs().max()) > 1e-3 for a, s in zip(alphas, start))  # the search moved them
        weights = torch.cat([p.detach().reshape(-1) for p in opt.graph.network.parameters()])
        results.append((alphas, weights, opt.get_genotype()))
    (alphas_f, weights_f, genotype_f), (alphas_r, weights_r, genotype_r) = results
    for af, ar in zip(alphas_f, alphas_r):
        assert_close(af, ar, 1e-9, 0.0, "alphas")
    assert_close(weights_f, weights_r, 1e-9, 0.0, "weights")
    assert genotype_f == genotype_r


@SPACES
def test_channels_last_gives_the_same_step(space_factory, float64):
    """NHWC activations (the CPU default) compute the same step as NCHW."""
    results = []
    for channels_last in (True, False):
        opt = make(space_factory(), fused=True, seed=8, channels_last=channels_last)
        convs = [m for m in opt.graph.modules() if isinstance(m, torch.nn.Conv2d)]
        assert all(c.weight.is_contiguous(memory_format=torch.channels_last) == channels_last for c in convs
                   if c.weight.shape[-1] > 1 and c.weight.shape[1] > 1)
        spread_alphas(opt, 9)
        out = opt.step(data(4, 30), data(4, 31))
        alphas = [a.detach().clone() for a in opt.graph.arch_parameters()]
        weights = torch.cat([p.detach().reshape(-1) for p in opt.graph.network.parameters()])
        results.append((out[2], out[3], alphas, weights))
    (lt1, lv1, a1, w1), (lt2, lv2, a2, w2) = results
    assert_close(lt1, lt2, 1e-10, 0.0, "train loss")
    assert_close(lv1, lv2, 1e-10, 0.0, "val loss")
    for x, y in zip(a1, a2):
        assert_close(x, y, 1e-10, 0.0, "alphas")
    assert_close(w1, w2, 1e-10, 0.0, "weights")


def batch_norms(opt: DARTSOptimizer) -> list:
    return [m for m in opt.graph.modules() if isinstance(m, torch.nn.BatchNorm2d) and m.track_running_stats]


def spread_running_statistics(opt: DARTSOptimizer, seed: int) -> None:
    """Distinct running statistics in every batch norm, so a mix-up between edges shows."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for bn in batch_norms(opt):
            bn.running_mean.copy_(torch.randn(bn.running_mean.shape, generator=g, dtype=torch.float64))
            bn.running_var.copy_(torch.rand(bn.running_var.shape, generator=g, dtype=torch.float64) + 0.5)


def test_darts_cells_batch_the_edges_leaving_a_node(float64):
    """Every sep/dil conv kind runs once per source node, over all the edges leaving it."""
    from nasframe_darts.mixed import _SepDilGroup

    opt = make(darts(), fused=True)
    for cell in mixed_cells(opt):
        out_degree = {src: sum(e[0] == src for e in cell.spec.edges) for src in cell.spec.inputs + cell.spec.nodes}
        for p in cell._fused_plan:
            groups = [g for g in p.groups if isinstance(g, _SepDilGroup)]
            assert len(groups) == 4 and all(len(g.ops) == out_degree[p.src] for g in groups), p.src
            # what is left to run op by op: at most the strided skip connection
            assert all(type(op).__name__ == "FactorizedReduce" for _, _, op in p.after_relu + p.single)


@pytest.mark.parametrize("channels_last", [True, False], ids=["channels_last", "nchw"])
@pytest.mark.parametrize("unrolled", [False, True], ids=["first", "second"])
def test_darts_steps_write_the_same_running_statistics(dtype, unrolled, channels_last):
    """Two search steps of the DARTS supernet (batch norms with running statistics, 2 and 4
    channels): fused and reference give the same losses, alphas, weights and running
    statistics, and then the same evaluation logits."""
    results = []
    for fused in (True, False):
        opt = make(darts(), fused=fused, seed=11, unrolled=unrolled, channels_last=channels_last,
                   arch_learning_rate=0.05)
        spread_alphas(opt, 12)
        spread_running_statistics(opt, 13)
        losses = []
        for i in range(2):
            out = opt.step(data(4, 40 + i), data(4, 50 + i))
            losses += [out[2], out[3]]
        bns = batch_norms(opt)
        stats = [torch.cat([bn.running_mean for bn in bns]), torch.cat([bn.running_var for bn in bns])]
        tracked = [int(bn.num_batches_tracked) for bn in bns]
        alphas = [a.detach().clone() for a in opt.graph.arch_parameters()]
        weights = torch.cat([p.detach().reshape(-1) for p in opt.graph.network.parameters()])
        opt.graph.eval()
        with torch.no_grad():
            logits = opt.graph(data(4, 60)[0])
        results.append((torch.stack(losses), stats, tracked, alphas, weights, logits))
    (lf, sf, tf, af, wf, ef), (lr, sr, tr, ar, wr, er) = results
    tol = TOLERANCE[dtype]
    assert tf == tr and min(tr) == (10 if unrolled else 4)  # every batch norm ran in every forward (5 or 2 a step)
    assert_close(lf, lr, tol, 0.0, "losses")
    assert_close(sf[0], sr[0], tol, 0.0, "running means")
    assert_close(sf[1], sr[1], tol, 0.0, "running variances")
    for x, y in zip(af, ar):
        assert_close(x, y, 10 * tol, 0.0, "alphas")
    assert_close(wf, wr, 10 * tol, 0.0, "weights")
    assert_close(ef, er, 10 * tol, 0.0, "eval logits")


@pytest.mark.parametrize("needs", ["both", "input", "weight"])
def test_grouped_pointwise_equals_the_grouped_convolution(needs):
    from nasframe_darts.mixed import grouped_pointwise

    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 12, 5, 4, generator=g, dtype=torch.float64).contiguous(memory_format=torch.channels_last)
    w = torch.randn(9, 4, 1, 1, generator=g, dtype=torch.float64)
    x.requires_grad_(needs in ("both", "input"))
    w.requires_grad_(needs in ("both", "weight"))
    inputs = [t for t in (x, w) if t.requires_grad]
    expected = F.conv2d(x, w, None, 1, 0, 1, 3)
    out = grouped_pointwise(x, w, 3)
    # its own weight gradient where one is wanted; with a frozen weight, the plain convolution
    assert out.grad_fn is not None and ("ConvWithOwnWeightGrad" in type(out.grad_fn).__name__) == w.requires_grad
    torch.testing.assert_close(out, expected, rtol=1e-12, atol=1e-12)
    go = torch.randn(expected.shape, generator=g, dtype=torch.float64)
    for a, b in zip(torch.autograd.grad(out, inputs, go), torch.autograd.grad(expected, inputs, go)):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


def _side_by_side(seed: int, n: int = 3, C: int = 4):
    """``n`` affine-free batch norms with distinct running statistics, and a twin set."""
    g = torch.Generator().manual_seed(seed)
    bns = [torch.nn.BatchNorm2d(C, affine=False, momentum=0.3) for _ in range(n)]
    with torch.no_grad():
        for bn in bns:
            bn.running_mean.copy_(torch.randn(C, generator=g))
            bn.running_var.copy_(torch.rand(C, generator=g) + 0.5)
            bn.num_batches_tracked.fill_(int(torch.randint(0, 9, (), generator=g)))
    return bns, [copy.deepcopy(bn) for bn in bns]


def _stack_step(bns, stats, x):
    from nasframe_darts.mixed import _stacked_batch_norm

    return _stacked_batch_norm(x.repeat(1, len(bns), 1, 1), bns, stats)


def _alone_step(bns, x):
    return torch.cat([bn(x) for bn in bns], 1)


def _assert_same_statistics(bns, twins):
    for bn, twin in zip(bns, twins):
        for name in ("running_mean", "running_var", "num_batches_tracked"):
            torch.testing.assert_close(getattr(bn, name), getattr(twin, name), rtol=1e-6, atol=1e-7, msg=name)


def test_side_by_side_statistics_are_the_batch_norms_own_buffers():
    """One stacked batch norm updates every batch norm's own running statistics in place (their
    buffers are slices of the stacked ones), as running each alone does; a buffer replaced
    later (assignment, ``.double()``, ``load_state_dict(assign=True)``) is gathered again."""
    from nasframe_darts.mixed import SideBySideStatistics

    bns, twins = _side_by_side(0)
    stats = SideBySideStatistics(bns)
    g = torch.Generator().manual_seed(1)
    for _ in range(2):
        x = torch.randn(5, 4, 3, 3, generator=g)
        torch.testing.assert_close(_stack_step(bns, stats, x), _alone_step(twins, x))
    _assert_same_statistics(bns, twins)
    mean, var, count = stats.get()
    assert all(bn.running_mean.data_ptr() == mean[4 * i:].data_ptr() for i, bn in enumerate(bns))
    assert [int(c) for c in count] == [int(t.num_batches_tracked) for t in twins]

    # replaced buffers: an assignment, and a load that assigns the given tensors
    for bn, twin in zip(bns[1:2], twins[1:2]):
        bn.running_mean = torch.full((4,), 2.0)
        twin.running_mean = torch.full((4,), 2.0)
    state = {k: v.clone() + 1 for k, v in twins[2].state_dict().items()}
    bns[2].load_state_dict(state, assign=True)
    twins[2].load_state_dict(state)
    x = torch.randn(5, 4, 3, 3, generator=g)
    torch.testing.assert_close(_stack_step(bns, stats, x), _alone_step(twins, x))
    _assert_same_statistics(bns, twins)

    # a copy in place (what load_state_dict does by default) reaches the stacked tensors
    state = {k: v.clone() - 1 for k, v in twins[0].state_dict().items()}
    bns[0].load_state_dict(state)
    twins[0].load_state_dict(state)
    x = torch.randn(5, 4, 3, 3, generator=g)
    torch.testing.assert_close(_stack_step(bns, stats, x), _alone_step(twins, x))
    _assert_same_statistics(bns, twins)

    for m in bns + twins:
        m.double()
    x = torch.randn(5, 4, 3, 3, generator=g, dtype=torch.float64)
    torch.testing.assert_close(_stack_step(bns, stats, x), _alone_step(twins, x))
    _assert_same_statistics(bns, twins)
    assert stats.get()[0].dtype == torch.float64


def assert_buffers_are_slices(opt: DARTSOptimizer) -> None:
    """Every fused batch norm's buffers are slices of its side-by-side statistics (checked
    without a forward, which would gather them again)."""
    held = 0
    for cell in mixed_cells(opt):
        for stats in cell._statistics:
            mean, var, count = stats.stacked
            n = stats.bns[0].num_features
            for i, bn in enumerate(stats.bns):
                assert bn.running_mean.data_ptr() == mean[i * n:].data_ptr()
                assert bn.running_var.data_ptr() == var[i * n:].data_ptr()
                assert bn.num_batches_tracked.data_ptr() == count[i:].data_ptr()
                held += 1
    assert held


def test_side_by_side_statistics_survive_a_checkpoint_round_trip(tmp_path):
    """The buffers are slices from the cell's construction on, and again right after
    ``.double()`` and ``load_state_dict(assign=True)`` (so a list of them taken then stays
    valid); a state dict of slices saves and loads like one of separate buffers; a deep copy
    of the network keeps its statistics apart from the original's."""
    built = DARTSOptimizer(device="cpu", fused=True)
    built.adapt_search_space(darts(), INFO)
    assert_buffers_are_slices(built)  # as built, before anything moves it
    opt = make(darts(), fused=True, seed=5)
    spread_running_statistics(opt, 6)
    opt.step(data(4, 7), data(4, 8))
    torch.save(opt.graph.state_dict(), tmp_path / "graph.pt")
    loaded = torch.load(tmp_path / "graph.pt", weights_only=True)
    other = make(darts(), fused=True, seed=9)
    other.graph.load_state_dict(loaded)
    for (k, a), b in zip(opt.graph.state_dict().items(), other.graph.state_dict().values()):
        assert torch.equal(a, b), k
    assert_buffers_are_slices(other)
    other.graph.load_state_dict({k: v.clone() for k, v in loaded.items()}, assign=True)
    assert_buffers_are_slices(other)
    other.graph.double()
    assert_buffers_are_slices(other)
    # the loaded statistics are what the stacked batch norms use: both step alike
    opt.graph.double()
    x, y = data(4, 12)
    for o in (opt, other):
        o.graph.train()
        o.graph(x.double())
    for a, b in zip(batch_norms(opt), batch_norms(other)):
        torch.testing.assert_close(a.running_mean, b.running_mean, rtol=1e-12, atol=1e-12)
        assert int(a.num_batches_tracked) == int(b.num_batches_tracked)

    twin = copy.deepcopy(opt.graph)
    before = [bn.running_mean.clone() for bn in batch_norms(opt)]
    twin(data(4, 10)[0].double())
    twin_bns = [m for m in twin.modules() if isinstance(m, torch.nn.BatchNorm2d) and m.track_running_stats]
    assert all(torch.equal(a, bn.running_mean) for a, bn in zip(before, batch_norms(opt)))
    assert all(not torch.equal(a, bn.running_mean) for a, bn in zip(before, twin_bns))
