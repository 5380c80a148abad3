"""Black-box search: the loop without data or networks, the spaces' random genotypes and
neighbours, random search, regularized evolution, local search and resume."""
from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from nasframe_core.blackbox import BlackBoxOptimizer, Budget, Evaluation
from nasframe_core.cli import main
from nasframe_core.config import Config
from nasframe_core.engine import execute
from nasframe_core.errors import NasframeError
from nasframe_core.evaluation import Evaluator, Score
from nasframe_core.hookspecs import hookimpl
from nasframe_core.plugins import make_plugin_manager
from nasframe_spaces.darts.space import DartsSearchSpace
from nasframe_spaces.nasbench201.codec import NB201Genotype
from nasframe_spaces.nasbench201.space import NasBench201SearchSpace

from conftest import StopAt

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "examples" / "nasframe-toy-space"))
from nasframe_toy_space import ToySearchSpace  # noqa: E402


def _differences(space, a, b) -> int:
    ca, cb = space.genotype_choices(a), space.genotype_choices(b)
    assert ca.keys() == cb.keys()
    n = 0
    for name in ca:
        assert [(c.src, c.dst) for c in ca[name]] == [(c.src, c.dst) for c in cb[name]]  # same edges kept
        n += sum(x.op != y.op for x, y in zip(ca[name], cb[name]))
    return n


SPACES = [NasBench201SearchSpace, DartsSearchSpace, ToySearchSpace]


# ------------------------------------------------------------------ spaces
@pytest.mark.parametrize("make", SPACES, ids=lambda c: c.name)
def test_random_genotypes_are_seeded_and_valid(make):
    space = make()
    a = [space.random_genotype(np.random.default_rng(5)) for _ in range(2)]
    assert a[0] == a[1]
    draws = {str(space.random_genotype(np.random.default_rng(s))) for s in range(20)}
    assert len(draws) > 10
    for text in draws:  # every draw is a genotype of the space (round trip through its parser)
        assert str(space.parse_genotype(text)) == text


def test_nb201_random_genotypes_are_uniform_over_ops():
    space, rng = NasBench201SearchSpace(), np.random.default_rng(0)
    counts = Counter(op for _ in range(2000) for op in space.random_genotype(rng).ops)
    assert set(counts) == {"none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3"}
    for op, n in counts.items():  # 12000 draws, 2400 expected each; 5 sigma is about 220
        assert abs(n - 2400) < 250, counts


@pytest.mark.parametrize("make", SPACES, ids=lambda c: c.name)
def test_neighbours_change_exactly_one_op(make):
    space = make()
    g = space.random_genotype(np.random.default_rng(1))
    specs = space.cell_specs()
    kept = sum(len(c) for c in space.genotype_choices(g).values())
    choosable = {n: len(space.choosable_ops(s)) for n, s in specs.items()}
    n_expected = sum(len(c) * (choosable[n] - 1) for n, c in space.genotype_choices(g).items())
    options = space.neighbours(g)
    assert len(options) == n_expected and kept > 0
    assert len({str(o) for o in options}) == len(options)
    for o in options:
        assert _differences(space, g, o) == 1
    rng = np.random.default_rng(2)
    for _ in range(20):
        m = space.random_neighbour(g, rng)
        assert _differences(space, g, m) == 1
        assert str(m) in {str(o) for o in options}


def test_darts_neighbours_never_choose_none():
    space = DartsSearchSpace()
    g = space.random_genotype(np.random.default_rng(0))
    for o in space.neighbours(g):
        assert all(c.op != "none" for cs in space.genotype_choices(o).values() for c in cs)


# ------------------------------------------------------------ the optimizers
class Landscape(Evaluator):
    """A synthetic NB201 landscape: the score is a fixed function of the ops; no table, no data."""

    kind = "synthetic"

    def __init__(self, space=None, dataset="cifar10", seed=0):
        super().__init__(space, dataset, seed)
        self.weights = np.random.default_rng(123).normal(size=(6, 5))
        self.calls = 0

    def value(self, g) -> float:
        idx = g.op_indices
        # a rugged function: additive part plus a pairwise interaction, so local optima exist
        return float(sum(self.weights[e, i] for e, i in enumerate(idx)) + 0.8 * np.cos(3.0 * idx[0] * idx[5] + idx[2]))

    def score(self, g, index, fidelity=None) -> Score:
        self.calls += 1
        return Score(self.value(g), 1.0, None)


class Drive:
    """The driver's serial loop, by hand: ask, score, tell."""

    def __init__(self, opt, evaluator):
        self.opt, self.evaluator, self.history = opt, evaluator, []

    def ask(self):
        index = self.opt.asked
        genotype = self.opt.next_proposal()
        assert genotype is not None, "a serial search was told everything it asked and still waits"
        return index, genotype

    def tell(self, index, genotype) -> Evaluation:
        s = self.evaluator.score(genotype, index)
        e = Evaluation(genotype, s.valid_accuracy, s.cost, s.test_accuracy, index=index)
        self.history.append(e)
        self.opt.tell(e)
        return e

    def step(self) -> Evaluation:
        return self.tell(*self.ask())


def _optimizer(name, **settings):
    from nasframe_blackbox.optimizers import LocalSearch, RandomSearch, RegularizedEvolution

    cls = {"rs": RandomSearch, "re": RegularizedEvolution, "ls": LocalSearch}[name]
    opt = cls(**settings)
    space = NasBench201SearchSpace()
    opt.adapt_search_space(space, "cifar10")
    opt.start(7)
    return Drive(opt, Landscape(space))


def test_regularized_evolution_tournament_mutation_and_aging():
    drive = _optimizer("re", population_size=5, sample_size=3, evaluations=40)
    opt = drive.opt
    for _ in range(5):
        drive.step()
    assert list(opt.population) == drive.history  # the first members are random
    for k in range(25):
        before = list(opt.population)
        # the child mutates exactly one op of its tournament's winner (the earliest drawn on ties)
        child = drive.step()
        assert len(opt.last_tournament) == 3 and all(m in before for m in opt.last_tournament)
        parent = max(opt.last_tournament, key=lambda m: m.valid_accuracy)
        assert sum(a != b for a, b in zip(parent.genotype.ops, child.genotype.ops)) == 1
        # the child joined, the oldest died
        assert list(opt.population) == before[1:] + [child]
    assert list(opt.population) == drive.history[-5:]


def test_asynchronous_evolution_updates_the_population_on_arrival():
    """A child per free worker: proposals are made before earlier ones are told, and the
    population takes the evaluations in the order they arrive; a failed one joins nothing."""
    drive = _optimizer("re", population_size=4, sample_size=2, evaluations=40)
    opt = drive.opt
    asked = [drive.ask() for _ in range(6)]  # six workers: four random members, two children
    assert opt.asked == 6 and not opt.population
    # nothing told yet: the two beyond the population are random too (there is no parent)
    assert not opt.last_tournament
    arrival = [3, 0, 5, 1]
    told = [drive.tell(*asked[i]) for i in arrival]
    assert list(opt.population) == told
    failed = Evaluation(asked[2][1], None, 0.0, status="failed", error="boom", index=asked[2][0])
    opt.tell(failed)
    assert list(opt.population) == told
    last = drive.tell(*asked[4])
    assert list(opt.population) == told[1:] + [last]  # the oldest to arrive died
    child_index, child = drive.ask()
    assert child_index == 6 and all(m in opt.population for m in opt.last_tournament)
    parent = max(opt.last_tournament, key=lambda m: m.valid_accuracy)
    assert sum(a != b for a, b in zip(parent.genotype.ops, child.ops)) == 1


def test_local_search_stops_at_local_optima():
    drive = _optimizer("ls", evaluations=400)
    opt, land = drive.opt, drive.evaluator
    while len(opt.local_optima) < 2:
        drive.step()
    space = opt.search_space
    for optimum in opt.local_optima:
        best_neighbour = max(land.value(n) for n in space.neighbours(optimum.genotype))
        assert best_neighbour <= optimum.valid_accuracy
    # it climbed: each optimum is at least as good as where its climb started
    assert opt.local_optima[0].valid_accuracy >= drive.history[0].valid_accuracy
    # no genotype was scored twice within a climb (neighbours seen before are reused)
    assert land.calls == len(drive.history)


def test_local_search_waits_for_its_neighbourhood_with_several_workers():
    """Asked with results outstanding, local search hands out the whole neighbourhood, then
    answers None (wait) until every neighbour is told; the move comes after."""
    drive = _optimizer("ls", evaluations=400)
    opt = drive.opt
    start = drive.step()  # initial=1: the start, told at once
    n = len(opt.search_space.neighbours(start.genotype))
    asked = [drive.ask() for _ in range(n)]
    assert {str(g) for _, g in asked} == {str(g) for g in opt.search_space.neighbours(start.genotype)}
    assert opt.next_proposal() is None and opt.asked == n + 1  # a None is not a proposal
    for index, g in asked[:-1]:
        drive.tell(index, g)
        assert opt.next_proposal() is None
    drive.tell(*asked[-1])
    index, g = drive.ask()  # the move: the best neighbour's neighbourhood, or a restart
    assert index == n + 1 and g is not None


def test_random_search_proposes_seeded_random_cells():
    a, b = _optimizer("rs", evaluations=5), _optimizer("rs", evaluations=5)
    ga = [a.step().genotype for _ in range(5)]
    gb = [b.step().genotype for _ in range(5)]
    assert ga == gb and len(set(map(str, ga))) == 5
    assert BlackBoxOptimizer.best(a.history).genotype == max(a.history, key=lambda e: e.valid_accuracy).genotype


def test_evaluator_generators_depend_on_the_seed_and_the_index_only():
    land = Landscape(NasBench201SearchSpace(), "cifar10", seed=11)
    draws = [land.generator(i).random(3).tolist() for i in (0, 1, 2)]
    assert draws == [land.generator(i).random(3).tolist() for i in (0, 1, 2)]  # in any order, as often as asked
    assert draws[2] == Landscape(None, "cifar10", seed=11).generator(2).random(3).tolist()
    assert len({tuple(d) for d in draws}) == 3
    assert draws[0] != Landscape(None, "cifar10", seed=12).generator(0).random(3).tolist()


def test_budget_needs_a_limit_and_settings_are_checked():
    with pytest.raises(NasframeError, match="needs a budget"):
        Budget()
    assert Budget(evaluations=3).spent(3, 0.0) and not Budget(seconds=10).spent(99, 9.9)
    with pytest.raises(NasframeError, match="must not be negative"):
        _optimizer("rs", evaluations=-1)
    with pytest.raises(NasframeError, match="max_attempts"):
        _optimizer("rs", max_attempts=0)


# ------------------------------------------------------------ through the loop
class Frugal(BlackBoxOptimizer):
    """An optimizer written against BlackBoxOptimizer alone: nothing but ``ask`` (no DARTS
    attribute, no supernet, no steps, no state of its own)."""

    def __init__(self, evaluations: int = 6):
        super().__init__(evaluations=evaluations)

    def ask(self):
        return self.search_space.random_genotype(self.rng)


class FrugalPlugin:
    @hookimpl
    def nasframe_register_optimizers(self, register):
        register("frugal", Frugal)


def _config(optimizer, table, **settings) -> Config:
    cfg = Config()
    cfg.set("optimizer.name", optimizer)
    cfg.set("dataset.name", "cifar10")
    cfg.set("run.benchmark", str(table))
    cfg.set("run.device", "cpu")
    for k, v in settings.items():
        cfg.set(k, v)
    return cfg


def test_the_loop_runs_an_optimizer_without_darts_attributes_and_touches_no_data(tmp_path, nb201_csv, monkeypatch):
    from nasframe_core import data

    def refuse(*a, **k):
        raise AssertionError("a black-box search on a table loaded data or built a network")

    monkeypatch.setattr(data.DatasetSource, "load", refuse, raising=False)
    for cls in data.DatasetSource.__subclasses__():
        monkeypatch.setattr(cls, "load", refuse)
    monkeypatch.setattr(NasBench201SearchSpace, "build_network", refuse)
    host = make_plugin_manager(plugins=[("frugal", FrugalPlugin())])
    cfg = _config("frugal", nb201_csv, **{"run.eval_test": "true"})
    result = execute(cfg, host, out=tmp_path / "run", quiet=True)
    for key in ("genotype", "genotype_json", "benchmark", "test_statistics", "history"):
        assert key in result
    assert "alphas" not in result
    assert len(result["history"]) == 6 and result["evaluations"] == 6
    assert all(e["status"] == "ok" for e in result["history"])  # a refused load would have failed one
    g = NB201Genotype.from_str(result["genotype"])
    best = max(result["history"], key=lambda e: e["valid_accuracy"])
    assert best["genotype"] == result["genotype"]
    from nasframe_spaces.nasbench201.tables import load_nb201_table

    test = load_nb201_table(nb201_csv).query(g, "cifar10", "test_accuracy")
    assert result["benchmark"]["test_accuracy"] == pytest.approx(test)
    assert best["test_accuracy"] == pytest.approx(test)


def test_table_scores_are_one_seed_and_charge_the_training_time(nb201_csv):
    from nasframe_spaces.nasbench201.simulate import arrays_for

    space = NasBench201SearchSpace()
    from nasframe_spaces.nasbench201.tables import load_nb201_table

    space.attach_benchmark(load_nb201_table(nb201_csv))
    arrays = arrays_for(str(nb201_csv))
    g = NB201Genotype.from_str("|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_1x1~2|")
    row = arrays.row(g)
    assert row == 6111
    seeds = set(arrays.seed_valid[row][: arrays.n_seeds[row]].tolist())
    rng = np.random.default_rng(0)
    drawn = {space.simulate_train_eval(g, "cifar10", rng) for _ in range(40)}
    assert {v for v, _ in drawn} == seeds  # every seed's accuracy, nothing else (not the mean)
    assert [t for _, t in drawn] == pytest.approx([2879.749334] * len(drawn))


def test_table_evaluator_scores_depend_on_the_index_not_the_order(nb201_csv):
    from nasframe_core.evaluation import TableEvaluator
    from nasframe_spaces.nasbench201.tables import load_nb201_table

    space = NasBench201SearchSpace()
    space.attach_benchmark(load_nb201_table(nb201_csv))
    evaluator = TableEvaluator(space, "cifar10", 5, protocol="per-dataset")  # 200 epochs: one seed per evaluation
    g = NB201Genotype.from_str("|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_1x1~2|")
    forward = [evaluator.score(g, i) for i in range(30)]
    backward = [evaluator.score(g, i) for i in reversed(range(30))][::-1]
    assert forward == backward  # any executor, any order of completion: the same scores
    assert len({s.valid_accuracy for s in forward}) > 1  # each index draws its own seed
    assert {s.test_accuracy for s in forward} == {space.test_statistics(g, "cifar10")}
    assert [s.valid_accuracy for s in forward] != [s.valid_accuracy for s in
                                                   (TableEvaluator(space, "cifar10", 6, protocol="per-dataset").score(g, i) for i in range(30))]


def test_re_command_on_the_table_prints_the_cell_and_its_accuracies(tmp_path, nb201_csv, capsys):
    out = tmp_path / "run"
    assert main(["run", "--optimizer", "re", "--search-space", "nasbench201", "--benchmark", str(nb201_csv),
                 "--dataset", "cifar10", "--set", "optimizer.time_budget=20000", "--out", str(out), "--quiet"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("found architecture: |")
    assert "simulated seconds" in lines[1] and "budget 20000 simulated seconds" in lines[1]
    assert lines[2].startswith("benchmark nasbench201 (cifar10): test accuracy")
    result = json.loads((out / "result.json").read_text())
    spent = np.cumsum([e["cost"] for e in result["history"]]).tolist()
    assert spent[-1] == pytest.approx(result["spent_seconds"]) and result["spent_seconds"] <= 20000  # NB201's rule: the overrunning evaluation is dropped
    assert main(["show", str(out)]) == 0
    shown = capsys.readouterr().out
    assert f"budget     {len(spent)} evaluations" in shown and "epochs" not in shown
    assert main(["plot", str(out)]) == 0
    written = {Path(p).name for p in capsys.readouterr().out.split()}
    assert written == {"incumbent.png", "cell.png"}


@pytest.mark.parametrize("name", ["re", "rs"])
def test_the_evaluation_that_would_overrun_the_time_budget_ends_the_run_uncounted(tmp_path, nb201_csv, capsys, name):
    """NB201's R_EA.py / RANDOM.py rule: the run stops at the first evaluation whose cost would take
    the charged seconds past the budget, and that evaluation is not counted."""
    timed, counted = tmp_path / "timed", tmp_path / "counted"
    args = ["run", "--optimizer", name, "--search-space", "nasbench201", "--benchmark", str(nb201_csv),
            "--dataset", "cifar10", "--quiet"]
    assert main([*args, "--set", "optimizer.time_budget=20000", "--out", str(timed)]) == 0
    timed_history = json.loads((timed / "result.json").read_text())["history"]
    n = len(timed_history)
    # the same seed with one more evaluation allowed makes the dropped evaluation: it overruns
    assert main([*args, "--set", f"optimizer.evaluations={n + 1}", "--out", str(counted)]) == 0
    counted_history = json.loads((counted / "result.json").read_text())["history"]
    assert [e["genotype"] for e in counted_history[:n]] == [e["genotype"] for e in timed_history]
    spent = np.cumsum([e["cost"] for e in counted_history]).tolist()
    assert spent[n - 1] <= 20000 < spent[n]
    capsys.readouterr()


def test_budget_admits_an_evaluation_only_within_the_seconds():
    budget = Budget(seconds=100.0)
    assert budget.admits(60.0, 40.0) and not budget.admits(60.0, 40.5)
    assert Budget(evaluations=3).admits(1e9, 1e9)


def wall_clock_free(history: list[dict]) -> list[dict]:
    """A history without ``started`` and ``finished``: the serial executor's are wall-clock seconds."""
    return [{k: v for k, v in e.items() if k not in ("started", "finished")} for e in history]


@pytest.mark.parametrize("executor", ["serial", "simulated"])
@pytest.mark.parametrize("name", ["re", "ls", "rs"])
def test_resume_of_a_black_box_run_is_bit_identical(tmp_path, nb201_csv, name, executor):
    # rounds of 100 table evaluations: the run is stopped before its third round
    settings = {"optimizer.evaluations": 247, "run.seed": 3, "run.executor": executor,
                "run.workers": 4 if executor == "simulated" else 1}
    full = execute(_config(name, nb201_csv, **settings), make_plugin_manager(), out=tmp_path / "full", quiet=True)
    cut = tmp_path / "cut"
    with pytest.raises(KeyboardInterrupt):
        execute(_config(name, nb201_csv, **settings), make_plugin_manager(plugins=[("stop", StopAt(2))]),
                out=cut, quiet=True)
    assert len((cut / "metrics.jsonl").read_text().splitlines()) == 2
    resumed = execute(Config.from_dict(__import__("yaml").safe_load((cut / "config.yaml").read_text())),
                      make_plugin_manager(), resume=cut, quiet=True)
    if executor == "serial":
        assert wall_clock_free(resumed["history"]) == wall_clock_free(full["history"])
    else:  # simulated clocks: the resumed workers start when and where they did
        assert resumed["history"] == full["history"]
        assert resumed["search_wall_seconds"] == full["search_wall_seconds"]
        assert len({e["worker"] for e in full["history"]}) == 4
    assert resumed["genotype"] == full["genotype"] and len(full["history"]) == 247


def test_without_a_table_each_cell_is_trained_briefly(tmp_path):
    cfg = Config()
    for key, value in {"optimizer.name": "rs", "optimizer.evaluations": 2, "optimizer.train_epochs": 1,
                       "search_space.C": 2, "search_space.N": 1, "dataset.name": "synthetic",
                       "dataset.n_train": 32, "dataset.n_test": 8, "dataset.image_size": 8,
                       "run.batch_size": 8, "run.device": "cpu"}.items():
        cfg.set(key, value)
    result = execute(cfg, make_plugin_manager(), out=tmp_path / "run", quiet=True)
    assert result["evaluator"] == "training" and len(result["history"]) == 2
    for e in result["history"]:
        assert 0.0 <= e["valid_accuracy"] <= 100.0 and e["cost"] > 0 and e["test_accuracy"] is None
    assert result["benchmark"] is None


def test_a_time_budget_with_a_table_without_times_is_refused(tmp_path, nb201_csv, monkeypatch):
    monkeypatch.setattr(NasBench201SearchSpace, "simulate_train_eval", lambda self, g, d, rng, fidelity=None: (50.0, 0.0))
    with pytest.raises(NasframeError, match="set optimizer.evaluations"):
        execute(_config("rs", nb201_csv, **{"optimizer.time_budget": 100}), make_plugin_manager(),
                out=tmp_path / "run", quiet=True)


def test_the_documented_optimizer_plugin_runs(tmp_path, nb201_csv):
    import re
    import types

    text = (REPO / "docs" / "plugins.md").read_text()
    block = next(b for b in re.findall(r"```python\n(.*?)```", text, re.S) if "GreedyMutation" in b)
    module = types.ModuleType("docs_greedy")
    exec(compile(block, "docs/plugins.md", "exec"), module.__dict__)
    host = make_plugin_manager(plugins=[("greedy", module)])
    result = execute(_config("greedy", nb201_csv, **{"optimizer.evaluations": 30, "optimizer.explore": 0.5}),
                     host, out=tmp_path / "run", quiet=True)
    assert len(result["history"]) == 30 and result["benchmark"]["test_accuracy"] > 0


def test_nb201_neighbour_draws_a_node_then_one_of_its_inputs():
    """NB201's mutate_arch: node 1's only edge is mutated a third of the time, each of node 3's
    three edges a ninth (a uniform edge would be a sixth each)."""
    space = NasBench201SearchSpace()
    g = NB201Genotype.from_str("|none~0|+|skip_connect~0|nor_conv_1x1~1|+|nor_conv_3x3~0|avg_pool_3x3~1|none~2|")
    rng = np.random.default_rng(0)
    counts = Counter()
    for _ in range(9000):
        m = space.random_neighbour(g, rng)
        (k,) = [i for i, (a, b) in enumerate(zip(g.ops, m.ops)) if a != b]
        counts[k] += 1
    assert abs(counts[0] - 3000) < 250, counts  # edge 1<-0; sd about 45
    for k in (1, 2):  # node 2's edges: a sixth each
        assert abs(counts[k] - 1500) < 200, counts
    for k in (3, 4, 5):  # node 3's edges: a ninth each
        assert abs(counts[k] - 1000) < 200, counts
