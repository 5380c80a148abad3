"""Zero-cost proxies: each against a value computed by hand on a tiny network, the scorer on
every space, a proxy added from outside, ``nasframe score --json``, black-box searches that
train nothing, REA's warm-up, and the published NB201 correlations (a data test)."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
import torch.nn.functional as F

from nasframe_core import NasframeError, hookimpl, make_plugin_manager
from nasframe_core.cli import main
from nasframe_core.data import ImageData
from nasframe_core.datasets import dataset_info
from nasframe_core.proxy import Proxy, ProxyContext
from nasframe_core.scoring import Scorer, make_scorer, rank_correlations, sample_genotypes, score_cells
from nasframe_proxies import measures as m

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "nasframe-toy-space"
ALL = ("fisher", "flops", "grad_norm", "grasp", "jacob_cov", "naswot", "params", "snip", "synflow")


@pytest.fixture(autouse=True)
def _cpu_env(monkeypatch):
    monkeypatch.delenv("NASFRAME_PLUGINS", raising=False)


def _ctx(model, x=None, y=None, uses=(), input_shape=None, num_classes=3):
    def batch(n, augment):
        return x[:n], y[:n]

    shape = input_shape or tuple(x.shape[1:])
    return ProxyContext(model, input_shape=shape, num_classes=num_classes, batch=None if x is None else batch,
                        default_batch_size=len(x) if x is not None else 2, uses=frozenset(uses))


def _linear(seed=0, d=6, c=3):
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Flatten(), nn.Linear(d, c, bias=False))
    x = torch.randn(5, d)
    y = torch.tensor([0, 1, 2, 1, 0])
    return net, x, y


def _uses(*proxies):
    return {u for p in proxies for u in p.uses}


# ------------------------------------------------------------ proxies by hand
def test_synflow_of_a_linear_net_is_its_closed_form_without_batch_norm():
    torch.manual_seed(1)
    net = nn.Sequential(nn.Flatten(), nn.Linear(12, 5, bias=False), nn.BatchNorm1d(5), nn.Linear(5, 3, bias=False))
    W1, W2 = net[1].weight.detach().abs().double(), net[3].weight.detach().abs().double()
    before = [p.detach().clone() for p in net.parameters()]
    # R = 1' |W2| |W1| 1 with batch norm removed; sum |W * dR/dW| over both layers is 2R
    expected = 2 * float(torch.ones(1, 3, dtype=torch.float64) @ W2 @ W1 @ torch.ones(12, 1, dtype=torch.float64))
    got = m.Synflow().score(_ctx(net, input_shape=(3, 2, 2)))
    assert got == pytest.approx(expected, rel=1e-12)
    assert all(torch.equal(a, b) for a, b in zip(before, net.parameters()))  # scored on a copy
    assert net[1].weight.dtype == torch.float32 and net[1].weight.grad is None


def test_grad_norm_snip_and_fisher_of_one_linear_layer_by_hand():
    net, x, y = _linear()
    W = net[1].weight.detach()
    p = torch.softmax(x @ W.T, 1)
    dlogits = (p - F.one_hot(y, 3)) / len(y)  # d mean-CE / d logits
    grad = dlogits.T @ x
    proxies = (m.GradNorm(), m.Snip(), m.Fisher())
    ctx = _ctx(net, x, y, uses=_uses(*proxies))
    assert proxies[0].score(ctx) == pytest.approx(float(grad.norm()), rel=1e-5)
    assert proxies[1].score(ctx) == pytest.approx(float((W * grad).abs().sum()), rel=1e-5)
    act = x @ W.T
    fisher_per_channel = 0.5 * (act * dlogits).pow(2).mean(0)
    assert proxies[2].score(ctx) == pytest.approx(float(fisher_per_channel.sum()) * 6, rel=1e-5)
    assert net[1].weight.grad is None


def test_grasp_is_minus_weight_times_hessian_gradient():
    net, x, y = _linear(seed=3)
    W = net[1].weight.detach().clone()

    def loss(w):
        return F.cross_entropy(x @ w.reshape(3, 6).T, y)

    g = torch.autograd.functional.jacobian(loss, W.flatten())
    H = torch.autograd.functional.hessian(loss, W.flatten())
    expected = float(-(W.flatten() * (H @ g)).sum())
    proxy = m.Grasp()
    assert proxy.score(_ctx(net, x, y, uses=_uses(proxy))) == pytest.approx(expected, rel=1e-4, abs=1e-9)


def test_jacob_cov_of_uncorrelated_jacobians():
    # rows with zero mean and orthogonal: their correlation matrix is the identity
    J = np.array([[1.0, -1.0, 0.0, 0.0], [0.0, 0.0, 1.0, -1.0], [1.0, 1.0, -1.0, -1.0]])
    k = 1e-5
    assert m.jacob_cov_score(J) == pytest.approx(-3 * (math.log(1 + k) + 1 / (1 + k)))
    assert math.isnan(m.jacob_cov_score(np.ones((3, 4))))  # constant rows: undefined


def test_jacob_cov_reads_the_input_gradient_of_the_summed_logits():
    net, x, y = _linear(seed=5)
    proxy = m.JacobCov()
    # for a linear net every image's Jacobian is the same row (sum of W's rows): correlation 1
    W = net[1].weight.detach()
    rows = W.sum(0).expand(5, 6).numpy() + np.random.default_rng(0).normal(0, 1e-3, (5, 6))
    assert np.isfinite(m.jacob_cov_score(rows))
    got = proxy.score(_ctx(net, x, y, uses=_uses(proxy)))
    assert math.isnan(got) or got < -1e4  # all-equal rows: a singular correlation matrix


def test_naswot_kernel_counts_agreeing_units_and_its_score_is_the_log_determinant():
    codes = torch.tensor([[1.0, -1.0, 2.0], [-1.0, -1.0, 3.0], [1.0, 1.0, 1.0]])
    K = m.hamming_kernel(codes)
    assert K.tolist() == [[3, 2, 2], [2, 3, 1], [2, 1, 3]]

    class TwoReLUs(nn.Module):
        def forward(self, x):
            return F.relu(torch.relu(x) - 0.5)

    x = torch.tensor([[1.0, -1.0, 2.0], [-1.0, -1.0, 3.0], [1.0, 1.0, 1.0], [0.2, 0.7, -3.0]])
    first = m.hamming_kernel(x)
    second = m.hamming_kernel(torch.relu(x) - 0.5)

    class Proxy4(m.NASWOT):
        batch_size = 4

    got = Proxy4().score(_ctx(TwoReLUs(), x, torch.zeros(4, dtype=torch.long), input_shape=(3,)))
    assert got == pytest.approx(float(np.linalg.slogdet((first + second).numpy())[1]))


def test_params_and_flops_of_a_small_conv_net():
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                        nn.Flatten(), nn.Linear(4, 10))
    ctx = _ctx(net, input_shape=(3, 8, 8))
    assert m.Params().score(ctx) == 3 * 4 * 9 + 4 + 8 + 40 + 10
    assert m.Flops().score(ctx) == 8 * 8 * 4 * 3 * 9 + 4 * 10
    assert net.training  # put back as it was


def test_rank_correlations_match_scipy_and_skip_undefined_scores():
    s = [1.0, 2.0, float("nan"), 4.0, 3.0]
    a = [10.0, 20.0, 30.0, 35.0, 40.0]
    c = rank_correlations(s, a)
    assert c["n"] == 4 and c["spearman"] == pytest.approx(0.8) and c["kendall"] == pytest.approx(2 / 3)
    # an infinite score (NASWOT's singular kernel) ranks last rather than being left out
    c = rank_correlations([float("-inf"), 2.0, 3.0, 4.0], [1.0, 2.0, 3.0, 4.0])
    assert c["n"] == 4 and c["spearman"] == pytest.approx(1.0)


# ---------------------------------------------------------------- the scorer
def _synthetic(n=160):
    g = torch.Generator().manual_seed(0)
    return ImageData(torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=g),
                     torch.randint(0, 10, (n,), generator=g))


def _scorer(host, space, names, seed=42, **kw):
    proxies = {n: host.create("proxy", n) for n in names}
    return Scorer(space, proxies, dataset_info("cifar10"), train=_synthetic(), seed=seed, **kw)


@pytest.fixture
def small_spaces(monkeypatch):
    monkeypatch.syspath_prepend(str(EXAMPLE))
    import nasframe_toy_space

    host = make_plugin_manager(plugins=[("toy", nasframe_toy_space)])
    return host, {
        "nasbench201": host.create("search_space", "nasbench201", C=4, N=1),
        "darts": host.create("search_space", "darts", C=4, layers=3),
        "toy": host.create("search_space", "toy", C=4, cells=2),
    }


def test_every_proxy_scores_every_space_and_a_cell_scores_alike_alone_or_in_a_sample(small_spaces):
    host, spaces = small_spaces
    for name, space in spaces.items():
        cells = sample_genotypes(space, 3, seed=7)
        assert len({str(g) for g in cells}) == 3
        scorer = _scorer(host, space, ALL)
        together = [scorer.score(g) for g in cells]
        assert set(together[0]) == set(ALL)
        for values in together:
            finite = [k for k, v in values.items() if math.isfinite(v)]
            assert {"params", "flops", "synflow", "grad_norm", "snip"} <= set(finite), (name, values)
        alone = _scorer(host, space, ALL).score(cells[2])
        assert alone == pytest.approx(together[2], rel=1e-4), name  # per-cell seeds: order does not matter
        other_seed = _scorer(host, space, ("grad_norm",), seed=43).score(cells[2])
        assert other_seed["grad_norm"] != pytest.approx(together[2]["grad_norm"], rel=1e-6)
        assert scorer.cells == 3 and scorer.seconds["build"] > 0


def test_one_shared_pass_gives_what_separate_passes_give(small_spaces):
    host, spaces = small_spaces
    space = spaces["nasbench201"]
    g = sample_genotypes(space, 1, seed=3)[0]
    together = _scorer(host, space, ALL).score(g)
    for name in ("grad_norm", "snip", "fisher", "grasp", "jacob_cov"):
        alone = _scorer(host, space, (name,)).score(g)[name]
        assert alone == pytest.approx(together[name], rel=1e-4, abs=1e-8), name


def test_the_untrained_network_is_freed_after_every_cell(small_spaces):
    import gc
    import weakref

    host, spaces = small_spaces
    space = spaces["nasbench201"]
    built = []
    original = type(space).build_network

    def spy(self, *a, **k):
        net = original(self, *a, **k)
        built.append(weakref.ref(net))
        return net

    scorer = _scorer(host, space, ALL)
    type(space).build_network = spy
    try:
        for g in sample_genotypes(space, 3, seed=1):
            scorer.score(g)
    finally:
        type(space).build_network = original
    gc.collect()
    assert len(built) == 3 and all(r() is None for r in built)


class Const(Proxy):
    name = "const"
    needs_batch = False

    def score(self, ctx):
        return float(len(list(ctx.model.parameters())))


class ThirdParty:
    @hookimpl
    def nasframe_register_proxies(self, register):
        register("const", Const, description="a proxy from outside")


def test_a_proxy_registered_from_outside_is_usable_by_name(small_spaces):
    _, spaces = small_spaces
    host = make_plugin_manager(plugins=[("thirdparty", ThirdParty())])
    assert "const" in host.names("proxy") and host.get("proxy", "const").plugin == "thirdparty"
    space = spaces["darts"]
    scorer = make_scorer(host, space, ["const", "params"], dataset="synthetic")
    result = score_cells(scorer, sample_genotypes(space, 2, seed=0), dataset="synthetic")
    assert result["cells"] == 2 and all(r["const"] > 0 for r in result["rows"])
    assert result["correlations"] == {}  # no table on the DARTS space

    class Broken:
        @hookimpl
        def nasframe_register_proxies(self, register):
            register("broken", dict)

    host = make_plugin_manager(entry_points=False, plugins=[("broken", Broken())])
    with pytest.raises(NasframeError, match="not a nasframe_core.proxy.Proxy"):
        host.create("proxy", "broken")


# -------------------------------------------------------------------- the CLI
def test_score_json_prints_exactly_the_issue_keys(capsys):
    rc = main(["score", "--proxy", "params,flops", "--search-space", "nasbench201", "--set", "search_space.C=4",
               "--set", "search_space.N=1", "--dataset", "synthetic", "--sample", "3", "--json"])
    out = json.loads(capsys.readouterr().out)
    assert rc == 0 and set(out) == {"cells", "correlations", "seconds"} and out["cells"] == 3
    assert out["correlations"] == {}  # no table attached


def test_score_json_correlations_with_the_table(capsys, nb201_csv, tmp_path):
    rc = main(["score", "--proxy", "params,synflow", "--set", "search_space.C=4", "--set", "search_space.N=1",
               "--set", "search_space.table_dataset=cifar10", "--dataset", "synthetic", "--sample", "12", "--benchmark", str(nb201_csv), "--json",
               "--out", str(tmp_path / "s.csv")])
    out = json.loads(capsys.readouterr().out)
    assert rc == 0 and set(out) == {"cells", "correlations", "seconds"}
    assert set(out["correlations"]) == {"params", "synflow"}
    for c in out["correlations"].values():
        assert set(c) == {"spearman", "kendall"} and -1 <= c["spearman"] <= 1 and -1 <= c["kendall"] <= 1
    rows = (tmp_path / "s.csv").read_text().splitlines()
    assert rows[0] == "genotype,params,synflow,test_accuracy,valid_accuracy" and len(rows) == 13
    summary = json.loads((tmp_path / "s.json").read_text())
    assert summary["correlations"] == out["correlations"] and summary["settings"]["seed"] == 42
    # nasframe plot draws a scatter plot per proxy from the score output
    assert main(["plot", str(tmp_path / "s.csv"), "--out", str(tmp_path / "plots")]) == 0
    assert sorted(p.name for p in (tmp_path / "plots").iterdir()) == ["proxies.png"]


@pytest.mark.parametrize("args, message", [
    (["--proxy", "nope"], "unknown proxy 'nope'; installed: "),
    (["--proxy", "params,params"], "--proxy names 'params' twice"),
    (["--sample", "0"], "--sample must be at least 1"),
    (["--set", "optimizer.x=1"], "--set takes search_space.KEY=VALUE or dataset.KEY=VALUE"),
    (["--search-space", "darts"], "score a sample of it with --sample N"),
])
def test_score_refuses_bad_input_in_one_line(capsys, args, message):
    rc = main(["score", "--dataset", "synthetic", *args])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("nasframe: error: ") and message in err and err.count("\n") == 1


# ------------------------------------------------------- black-box, no training
@pytest.fixture
def no_training(monkeypatch):
    from nasframe_core import evaluation

    steps = []

    def refuse(*a, **k):
        steps.append(a)
        raise AssertionError("an optimizer step ran")

    monkeypatch.setattr(torch.optim.Optimizer, "step", refuse)
    monkeypatch.setattr(evaluation.TrainingEvaluator, "score", refuse)
    return steps


@pytest.mark.parametrize("space_args", [
    ["--search-space", "nasbench201", "--set", "search_space.C=4", "--set", "search_space.N=1"],
    ["--search-space", "darts", "--set", "search_space.C=4", "--set", "search_space.layers=3"],
])
def test_blackbox_search_with_a_proxy_evaluator_trains_nothing(tmp_path, no_training, space_args, capsys):
    rc = main(["run", "--optimizer", "re", "--evaluator", "zerocost:synflow", *space_args, "--dataset", "synthetic",
               "--set", "optimizer.evaluations=12", "--set", "optimizer.population_size=4", "--quiet",
               "--out", str(tmp_path / "run")])
    assert rc == 0, capsys.readouterr().err
    result = json.loads((tmp_path / "run" / "result.json").read_text())
    assert result["evaluator"] == "zerocost" and result["evaluations"] == 12 and no_training == []
    assert result["spent_seconds"] == 0
    best = max(result["history"], key=lambda e: e["valid_accuracy"])
    assert result["genotype"] == best["genotype"] and best["valid_accuracy"] > 0


def test_proxy_evaluator_reports_the_table_accuracy_and_refuses_a_time_budget(tmp_path, nb201_csv, no_training, capsys):
    from nasframe_spaces.nasbench201.tables import load_nb201_table

    rc = main(["run", "--optimizer", "rs", "--evaluator", "zerocost:params", "--set", "search_space.C=4",
               "--set", "search_space.N=1", "--dataset", "cifar10", "--benchmark", str(nb201_csv),
               "--set", "optimizer.evaluations=5", "--quiet", "--out", str(tmp_path / "run")])
    assert rc == 0, capsys.readouterr().err
    result = json.loads((tmp_path / "run" / "result.json").read_text())
    test = load_nb201_table(nb201_csv).query(result["genotype"], "cifar10", "test_accuracy")
    assert result["benchmark"]["test_accuracy"] == pytest.approx(test)
    assert result["test_statistics"] == pytest.approx(test)
    capsys.readouterr()
    rc = main(["run", "--optimizer", "rs", "--evaluator", "zerocost:params", "--benchmark", str(nb201_csv),
               "--dataset", "cifar10", "--set", "optimizer.time_budget=1000", "--quiet", "--out", str(tmp_path / "run2")])
    err = capsys.readouterr().err
    assert rc == 2 and "charges no time" in err and err.count("\n") == 1


@pytest.mark.parametrize("evaluator, message", [
    ("bogus", "run.evaluator must be one of auto, table, training, zerocost:PROXY, got 'bogus'"),
    ("zerocost:", "run.evaluator must be one of"),
    ("zerocost:nope", "unknown proxy 'nope'"),
])
def test_run_refuses_a_bad_evaluator_in_one_line(tmp_path, capsys, evaluator, message):
    rc = main(["run", "--optimizer", "rs", "--evaluator", evaluator, "--set", "optimizer.evaluations=2",
               "--quiet", "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert rc == 2 and message in err and err.count("\n") == 1


def test_rea_warmup_starts_from_the_best_by_the_proxy(small_spaces):
    from nasframe_blackbox.optimizers import RegularizedEvolution
    host, spaces = small_spaces
    space = spaces["nasbench201"]

    opt = RegularizedEvolution(population_size=4, warmup_proxy="params", warmup_sample=12, evaluations=6)
    opt.adapt_search_space(space, "cifar10")
    opt.proxy_scorer = lambda names: _scorer(host, space, names)  # what the driver sets
    opt.start(5)
    first = [str(opt.next_proposal()) for _ in range(4)]
    # the same 12 draws from the optimizer's generator, ranked by parameters
    rng = np.random.default_rng(5)
    drawn: dict = {}
    while len(drawn) < 12:
        g = space.random_genotype(rng)
        drawn.setdefault(str(g), g)
    params = {k: _scorer(host, space, ["params"]).score(g)["params"] for k, g in drawn.items()}
    ranked = sorted(drawn, key=lambda k: (-params[k], list(drawn).index(k)))
    assert first == ranked[:4]
    assert opt.warm == []  # the warm-up's population is out; the next proposals are mutations
    with pytest.raises(NasframeError, match="warmup_sample"):
        RegularizedEvolution(population_size=10, warmup_proxy="synflow", warmup_sample=5)


# ------------------------------------------------------------- published numbers
PUBLISHED = {"synflow": 0.737, "jacob_cov": 0.731}  # Abdelfattah et al., NB201 CIFAR-10, |Spearman|


@pytest.mark.slow
def test_200_cells_synflow_and_jacob_cov_match_the_published_correlations(nb201_csv, cifar10_jpeg_dir, capsys):
    rc = main(["score", "--proxy", "synflow,jacob_cov", "--search-space", "nasbench201", "--dataset", "cifar10",
               "--data-dir", str(cifar10_jpeg_dir), "--benchmark", str(nb201_csv), "--sample", "200",
               "--seed", "42", "--workers", "2", "--json"])
    out = json.loads(capsys.readouterr().out)
    assert rc == 0 and out["cells"] == 200
    for name, published in PUBLISHED.items():
        assert abs(out["correlations"][name]["spearman"]) == pytest.approx(published, abs=0.08), name
