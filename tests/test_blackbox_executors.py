"""Black-box search on executors: simulated workers, failed evaluations, a driver killed and
resumed, Ray workers (one killed mid-evaluation), and Ray missing."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from nasframe_core.cli import main
from nasframe_core.evaluation import TableEvaluator
from nasframe_spaces.nasbench201.space import NasBench201SearchSpace

from conftest import StopAt

REPO = Path(__file__).resolve().parents[1]
#: what every history row of result.json records (the issue's names)
HISTORY_KEYS = {"genotype", "valid_accuracy", "test_accuracy", "cost", "worker", "started", "finished",
                "status", "attempts", "error"}


def _run(capsys, out: Path, *extra: str, optimizer: str = "re", table=None) -> dict:
    args = ["run", "--optimizer", optimizer, "--search-space", "nasbench201", "--dataset", "cifar10",
            "--out", str(out), "--quiet"]
    if table is not None:
        args += ["--benchmark", str(table)]
    rc = main([*args, *extra])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    assert "Traceback" not in captured.out + captured.err
    return json.loads((out / "result.json").read_text())


def wall_clock_free(history: list[dict]) -> list[dict]:
    """A history without ``started`` and ``finished`` (wall-clock seconds on the serial executor)."""
    return [{k: v for k, v in e.items() if k not in ("started", "finished")} for e in history]


def _most_at_once(history: list[dict]) -> int:
    """The most evaluations running at the same moment."""
    events = sorted([(e["started"], 1) for e in history] + [(e["finished"], -1) for e in history],
                    key=lambda t: (t[0], t[1]))
    running = most = 0
    for _, step in events:
        running += step
        most = max(most, running)
    return most


# ------------------------------------------------------------------ simulated workers
def test_simulated_workers_give_the_same_history_for_the_same_seed(tmp_path, nb201_csv, capsys):
    sim = ["--executor", "simulated", "--workers", "8", "--set", "optimizer.time_budget=100000"]
    a = _run(capsys, tmp_path / "a", *sim, "--seed", "5", table=nb201_csv)
    b = _run(capsys, tmp_path / "b", *sim, "--seed", "5", table=nb201_csv)
    other = _run(capsys, tmp_path / "c", *sim, "--seed", "6", table=nb201_csv)
    assert a["executor"] == "simulated" and a["workers"] == 8
    assert a["history"] == b["history"] and a["search_wall_seconds"] == b["search_wall_seconds"]
    assert a["genotype"] == b["genotype"]
    assert [e["genotype"] for e in other["history"]] != [e["genotype"] for e in a["history"]]
    history = a["history"]
    for e in history:
        assert HISTORY_KEYS <= e.keys()
        assert e["status"] == "ok" and e["error"] is None and e["attempts"] == 1
        assert e["finished"] == pytest.approx(e["started"] + e["cost"])  # simulated clocks: the table's seconds
        assert 0 <= e["worker"] < 8
    assert {e["worker"] for e in history} == set(range(8)) and _most_at_once(history) == 8
    # told in the order they finished, which is not the order they were proposed
    assert [e["finished"] for e in history] == sorted(e["finished"] for e in history)
    assert [e["index"] for e in history] != sorted(e["index"] for e in history)
    # a worker runs one evaluation at a time
    for w in range(8):
        mine = sorted((e["started"], e["finished"]) for e in history if e["worker"] == w)
        assert all(f <= s for (_, f), (s, _) in zip(mine, mine[1:]))


def test_asynchronous_evolution_on_8_workers_spends_the_budget_in_an_eighth_of_the_time(tmp_path, nb201_csv, capsys):
    budget = 400000
    runs = {w: _run(capsys, tmp_path / f"w{w}", "--executor", "simulated", "--workers", str(w),
                    "--set", f"optimizer.time_budget={budget}", table=nb201_csv) for w in (1, 8)}
    most = max(e["cost"] for r in runs.values() for e in r["history"])
    for r in runs.values():  # the same simulated budget spent (to within one evaluation)
        assert budget - most < r["spent_seconds"] <= budget
    one, eight = runs[1], runs[8]
    assert one["search_wall_seconds"] == pytest.approx(one["spent_seconds"])  # one worker, never idle
    ratio = one["search_wall_seconds"] / eight["search_wall_seconds"]
    assert 7.0 < ratio <= 8.0 * one["spent_seconds"] / eight["spent_seconds"] + 1e-9, ratio
    assert abs(one["evaluations"] - eight["evaluations"]) < 0.1 * one["evaluations"]


def test_one_simulated_worker_runs_the_serial_search(tmp_path, nb201_csv, capsys):
    serial = _run(capsys, tmp_path / "serial", "--set", "optimizer.evaluations=40", table=nb201_csv)
    sim = _run(capsys, tmp_path / "sim", "--executor", "simulated", "--workers", "1",
               "--set", "optimizer.evaluations=40", table=nb201_csv)
    assert serial["executor"] == "serial"
    assert wall_clock_free(sim["history"]) == wall_clock_free(serial["history"])


def test_executor_choices_that_cannot_work_are_refused_in_one_line(tmp_path, nb201_csv, capsys):
    assert main(["run", "--optimizer", "rs", "--search-space", "nasbench201", "--benchmark", str(nb201_csv),
                 "--dataset", "cifar10", "--workers", "2", "--out", str(tmp_path / "a"), "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("nasframe: error: the serial executor") and "--executor" in err[0]
    # without a table the evaluations are trained and charge measured seconds: nothing to simulate
    assert main(["run", "--optimizer", "rs", "--search-space", "nasbench201", "--dataset", "synthetic",
                 "--executor", "simulated", "--workers", "2", "--set", "optimizer.evaluations=2",
                 "--out", str(tmp_path / "b"), "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--executor simulated needs" in err[0] and "ray" in err[0]


# ------------------------------------------------------------------ failed evaluations
def _raise_for_avg_pool_first(monkeypatch, exc):
    original = NasBench201SearchSpace.simulate_train_eval

    def simulate(self, genotype, dataset, rng, fidelity=None):
        if genotype.ops[0] == "avg_pool_3x3":
            raise exc
        return original(self, genotype, dataset, rng, fidelity)

    monkeypatch.setattr(NasBench201SearchSpace, "simulate_train_eval", simulate)


@pytest.mark.parametrize("executor,workers", [("serial", 1), ("simulated", 4)])
def test_an_evaluator_that_raises_records_a_failed_evaluation_and_the_search_goes_on(
        tmp_path, nb201_csv, capsys, monkeypatch, executor, workers):
    _raise_for_avg_pool_first(monkeypatch, RuntimeError("CUDA out of memory.\n  Tried to allocate 2.00 GiB"))
    out = tmp_path / "run"
    rc = main(["run", "--optimizer", "re", "--search-space", "nasbench201", "--benchmark", str(nb201_csv),
               "--dataset", "cifar10", "--executor", executor, "--workers", str(workers),
               "--set", "optimizer.evaluations=60", "--out", str(out)])
    captured = capsys.readouterr()
    assert rc == 0 and "Traceback" not in captured.out + captured.err
    result = json.loads((out / "result.json").read_text())
    history = result["history"]
    assert result["evaluations"] == len(history) == 60  # the budget is spent in full
    failed = [e for e in history if e["status"] == "failed"]
    assert failed and len(failed) == sum(e["genotype"].startswith("|avg_pool_3x3~0|") for e in history)
    assert result["failed_evaluations"] == len(failed)
    for e in failed:
        assert HISTORY_KEYS <= e.keys()
        assert e["error"] == "RuntimeError: CUDA out of memory. Tried to allocate 2.00 GiB"  # one line
        assert e["valid_accuracy"] is None and e["cost"] == 0.0 and e["attempts"] == 1
    ok = [e for e in history if e["status"] == "ok"]
    assert all(e["error"] is None and e["valid_accuracy"] is not None for e in ok)
    assert result["genotype"] == max(ok, key=lambda e: e["valid_accuracy"])["genotype"]
    assert f"{len(failed)} evaluation(s) failed" in captured.out


def test_a_search_whose_every_evaluation_fails_ends_with_one_line(tmp_path, nb201_csv, capsys, monkeypatch):
    from nasframe_core.errors import NasframeError

    def simulate(self, genotype, dataset, rng, fidelity=None):
        raise NasframeError(f"cannot build {genotype}")

    monkeypatch.setattr(NasBench201SearchSpace, "simulate_train_eval", simulate)
    out = tmp_path / "run"
    assert main(["run", "--optimizer", "rs", "--search-space", "nasbench201", "--benchmark", str(nb201_csv),
                 "--dataset", "cifar10", "--set", "optimizer.evaluations=5", "--out", str(out), "--quiet"]) == 2
    captured = capsys.readouterr()
    err = captured.err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("nasframe: error: the search evaluated no architecture")
    assert "Traceback" not in captured.out + captured.err
    # every failure is in the journal with its reason (a NasframeError's text, without its type)
    tells = [json.loads(line)["tell"] for line in (out / "journal.jsonl").read_text().splitlines() if '"tell"' in line]
    assert len(tells) == 5 and all(t["status"] == "failed" and t["error"].startswith("cannot build |") for t in tells)


# ------------------------------------------------------------------ the driver killed
CALLS_WRAPPER = """
import os, sys, time
from nasframe_core.evaluation import TableEvaluator

original = TableEvaluator.score
calls = open(os.environ["NASFRAME_TEST_CALLS"], "a")

def score(self, genotype, index, fidelity=None):
    calls.write(f"{index}\\n")
    calls.flush()
    time.sleep(float(os.environ.get("NASFRAME_TEST_SLOW", "0")))
    return original(self, genotype, index, fidelity)

TableEvaluator.score = score
from nasframe_core.cli import main
sys.exit(main(sys.argv[1:]))
"""


def _tells(journal: Path) -> list[dict]:
    out = []
    for line in journal.read_text().splitlines():
        try:
            event = json.loads(line)
        except json.JSONDecodeError:  # the line a kill cut short
            continue
        if "tell" in event:
            out.append(event["tell"])
    return out


ROUND = TableEvaluator.round_size  # table evaluations between checkpoints


@pytest.mark.parametrize("executor,workers,kill_at", [("serial", 1, ROUND + 5), ("simulated", 8, ROUND + 5),
                                                      ("serial", 1, 3)],
                         ids=["serial", "simulated-8", "serial-before-the-first-checkpoint"])
def test_the_driver_killed_mid_search_resumes_without_running_a_finished_evaluation_again(
        tmp_path, nb201_csv, capsys, monkeypatch, executor, workers, kill_at):
    """SIGKILL once ``kill_at`` evaluations are told (after a round and its checkpoint, or
    before the first), then ``nasframe run --resume``."""
    budget = ROUND + 50
    flags = ["--executor", executor, "--workers", str(workers), "--seed", "4", "--set", f"optimizer.evaluations={budget}"]
    full = _run(capsys, tmp_path / "full", *flags, table=nb201_csv)  # uninterrupted, for comparison
    args = ["run", "--optimizer", "re", "--search-space", "nasbench201", "--benchmark", str(nb201_csv),
            "--dataset", "cifar10", *flags, "--quiet"]

    cut = tmp_path / "cut"
    wrapper = tmp_path / "calls_wrapper.py"
    wrapper.write_text(CALLS_WRAPPER)
    calls = tmp_path / "calls.txt"
    env = {**os.environ, "NASFRAME_TEST_CALLS": str(calls), "NASFRAME_TEST_SLOW": "0.02"}
    proc = subprocess.Popen([sys.executable, str(wrapper), *args, "--out", str(cut)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    journal = cut / "journal.jsonl"
    deadline = time.monotonic() + 120
    try:
        while not (journal.exists() and len(_tells(journal)) >= kill_at):
            assert proc.poll() is None, proc.stderr.read().decode()
            assert time.monotonic() < deadline, "the search did not get going"
            time.sleep(0.005)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    told_before = [t["index"] for t in _tells(journal)]
    assert kill_at <= len(told_before) < budget  # killed mid-search
    if kill_at < ROUND:  # nothing but the journal says what was done
        assert len(told_before) < ROUND and not (cut / "checkpoint.pt").exists()
    asked = [json.loads(line)["ask"] for line in journal.read_text().splitlines() if line.startswith('{"ask"')]
    in_flight = set(asked) - set(told_before)
    if workers > 1:
        assert in_flight  # proposals out on the other workers when the driver died
    scored_before = [int(x) for x in calls.read_text().split()]

    resumed_scores: list[int] = []
    original = TableEvaluator.score

    def counting(self, genotype, index, fidelity=None):
        resumed_scores.append(index)
        return original(self, genotype, index, fidelity)

    monkeypatch.setattr(TableEvaluator, "score", counting)
    assert main(["run", "--resume", str(cut), "--quiet"]) == 0
    captured = capsys.readouterr()
    assert "Traceback" not in captured.out + captured.err
    result = json.loads((cut / "result.json").read_text())
    # no finished evaluation ran again; what was in flight at the kill ran once more
    assert not set(resumed_scores) & set(told_before)
    assert len(resumed_scores) == len(set(resumed_scores))
    assert sorted(told_before + resumed_scores) == list(range(budget))
    assert (set(scored_before) - set(told_before)) | in_flight <= set(resumed_scores)
    assert result["evaluations"] == len(result["history"]) == budget  # the budget's count, exactly
    assert sorted(e["index"] for e in result["history"]) == list(range(budget))
    if executor == "serial":
        assert wall_clock_free(result["history"]) == wall_clock_free(full["history"])
    else:
        assert result["history"] == full["history"]
    assert result["genotype"] == full["genotype"]
    # the journal holds each proposal and each result once: a second kill would resume as well
    events = [json.loads(line) for line in journal.read_text().splitlines() if line.strip().endswith("}")]
    assert sorted(e["ask"] for e in events if "ask" in e) == list(range(budget))
    assert sorted(e["tell"]["index"] for e in events if "tell" in e) == list(range(budget))


def test_a_journal_line_cut_short_is_dropped_when_the_search_resumes(tmp_path, nb201_csv):
    """Only the last line can be cut short (a kill mid-write); the resumed search drops it
    before it appends, so the journal stays readable for the next resume."""
    import yaml

    from nasframe_core.config import Config
    from nasframe_core.engine import execute
    from nasframe_core.plugins import make_plugin_manager

    def config():
        cfg = Config()
        for k, v in {"optimizer.name": "re", "dataset.name": "cifar10", "run.benchmark": str(nb201_csv),
                     "run.device": "cpu", "optimizer.evaluations": ROUND + 35, "run.executor": "simulated",
                     "run.workers": 4}.items():
            cfg.set(k, v)
        return cfg

    full = execute(config(), make_plugin_manager(), out=tmp_path / "full", quiet=True)
    cut = tmp_path / "cut"
    with pytest.raises(KeyboardInterrupt):
        execute(config(), make_plugin_manager(plugins=[("stop", StopAt(1))]), out=cut, quiet=True)
    journal = cut / "journal.jsonl"
    with open(journal, "a") as f:
        f.write('{"tell": {"genotype": "|nor_conv_3x3~0|+|nor_c')
    resumed = execute(Config.from_dict(yaml.safe_load((cut / "config.yaml").read_text())), make_plugin_manager(),
                      resume=cut, quiet=True)
    assert resumed["history"] == full["history"]
    events = [json.loads(line) for line in journal.read_text().splitlines()]  # every line reads
    assert sorted(e["tell"]["index"] for e in events if "tell" in e) == list(range(ROUND + 35))
    damaged = journal.read_text().splitlines()
    damaged[3] = damaged[3][:20]
    journal.write_text("\n".join(damaged) + "\n")
    from nasframe_core.errors import NasframeError

    with pytest.raises(NasframeError, match="line 4 is damaged"):
        execute(Config.from_dict(yaml.safe_load((cut / "config.yaml").read_text())), make_plugin_manager(),
                resume=cut, quiet=True)


# ------------------------------------------------------------------ Ray
def test_without_ray_the_ray_executor_says_how_to_install_it(tmp_path, nb201_csv, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray raises ImportError
    assert main(["run", "--optimizer", "rs", "--search-space", "nasbench201", "--benchmark", str(nb201_csv),
                 "--dataset", "cifar10", "--executor", "ray", "--workers", "2", "--set", "optimizer.evaluations=3",
                 "--out", str(tmp_path / "run"), "--quiet"]) == 2
    captured = capsys.readouterr()
    err = captured.err.strip().splitlines()
    assert len(err) == 1 and "Traceback" not in captured.err
    assert err[0].startswith("nasframe: error: --executor ray needs Ray") and "pip install 'nasframe-darts[ray]'" in err[0]


def test_the_ray_extra_named_by_the_hint_exists():
    try:
        import tomllib
    except ImportError:  # Python 3.10
        import tomli as tomllib
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    assert any(req.startswith("ray") for req in extras["ray"])
    # the test extra brings Ray, so that the tests below run wherever the tests do
    assert any(req.startswith("ray") or "[ray]" in req for req in extras["test"])


RAY_HOOKS = '''
"""A training evaluator for the Ray tests: its worker process dies on chosen attempts, and it
notes every data load and every score in files the test reads."""
import os
from pathlib import Path

from nasframe_core.evaluation import TrainingEvaluator


class KillingEvaluator(TrainingEvaluator):
    folder = ""
    deaths = {}  # evaluation index -> how many of its attempts die

    def _note(self, name, text):
        with open(Path(self.folder) / name, "a") as f:
            f.write(text + "\\n")

    def _proxy_splits(self):
        if self._splits is None:
            self._note("loads.txt", str(os.getpid()))
        return super()._proxy_splits()

    def score(self, genotype, index, fidelity=None):
        attempt = len(list(Path(self.folder).glob(f"died-{index}-*")))
        if attempt < self.deaths.get(index, 0):
            (Path(self.folder) / f"died-{index}-{attempt}").write_text(str(os.getpid()))
            os.kill(os.getpid(), 9)
        self._note("scores.txt", f"{os.getpid()} {index}")
        return super().score(genotype, index)
'''


@pytest.fixture
def ray_hooks(tmp_path, monkeypatch):
    """Ray (its local cluster shut down afterwards) and the evaluator above in every search:
    importable in the Ray workers through PYTHONPATH, which they inherit from this process."""
    ray = pytest.importorskip("ray", reason="the Ray executor's tests need Ray: pip install 'nasframe-darts[ray]'")
    from nasframe_core import blackbox_job

    hooks = tmp_path / "hooks"
    hooks.mkdir()
    (hooks / "nasframe_test_ray_hooks.py").write_text(RAY_HOOKS)
    monkeypatch.syspath_prepend(str(hooks))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(hooks), *filter(None, [os.environ.get("PYTHONPATH")])]))
    import nasframe_test_ray_hooks as module

    settings = {"folder": str(tmp_path), "deaths": {}}
    make = blackbox_job.ProposalJob._make_evaluator

    def make_killing(self, seed):
        evaluator = make(self, seed)
        killing = module.KillingEvaluator.__new__(module.KillingEvaluator)
        killing.__dict__.update(evaluator.__dict__, **settings)
        return killing

    monkeypatch.setattr(blackbox_job.ProposalJob, "_make_evaluator", make_killing)
    yield settings
    if ray.is_initialized():
        ray.shutdown()


def _ray_search(tmp_path, capsys, evaluations: int) -> dict:
    """Brief training on a tiny space, two Ray workers of one CPU each (local ray.init)."""
    out = tmp_path / "run"
    rc = main(["run", "--optimizer", "rs", "--search-space", "nasbench201", "--dataset", "synthetic",
               "--executor", "ray", "--workers", "2", "--out", str(out), "--quiet",
               "--set", f"optimizer.evaluations={evaluations}", "--set", "optimizer.train_epochs=1",
               "--set", "search_space.C=4", "--set", "search_space.N=1", "--set", "dataset.n_train=256",
               "--set", "dataset.n_test=64", "--set", "dataset.image_size=16", "--set", "run.batch_size=32"])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    assert "Traceback" not in captured.out
    result = json.loads((out / "result.json").read_text())
    assert result["executor"] == "ray" and result["workers"] == 2 and result["evaluator"] == "training"
    assert result["evaluations"] == len(result["history"]) == evaluations
    assert sorted(e["index"] for e in result["history"]) == list(range(evaluations))
    for e in result["history"]:
        assert HISTORY_KEYS <= e.keys() and e["worker"] in (0, 1)
        if e["status"] == "ok":
            assert e["error"] is None and 0.0 <= e["valid_accuracy"] <= 100.0
            assert e["cost"] > 0 and e["started"] < e["finished"]
    # scored in worker processes (not here); the killed attempts never got to score
    scores = [line.split() for line in (tmp_path / "scores.txt").read_text().splitlines()]
    assert str(os.getpid()) not in {pid for pid, _ in scores}
    assert sorted(int(i) for _, i in scores) == sorted(e["index"] for e in result["history"] if e["status"] == "ok")
    # the data is loaded once per worker process, not once per evaluation
    loads = (tmp_path / "loads.txt").read_text().split()
    assert len(loads) == len(set(loads)), loads
    return result


def test_ray_workers_overlap_and_a_killed_worker_is_retried(tmp_path, ray_hooks, capsys):
    """The evaluations overlap in time; evaluation 2's worker process is killed on its first
    attempt, the evaluation is started again (attempts 2) and the search completes its budget."""
    ray_hooks["deaths"] = {2: 1}
    result = _ray_search(tmp_path, capsys, 4)
    history = {e["index"]: e for e in result["history"]}
    assert all(e["status"] == "ok" for e in history.values()) and result["failed_evaluations"] == 0
    assert [history[i]["attempts"] for i in range(4)] == [1, 1, 2, 1]
    assert (tmp_path / "died-2-0").exists() and len(list(tmp_path.glob("died-*"))) == 1
    assert _most_at_once(result["history"]) == 2  # two evaluations ran at the same time
    assert {e["worker"] for e in result["history"]} == {0, 1}


@pytest.mark.slow
def test_a_ray_evaluation_whose_worker_always_dies_is_recorded_failed(tmp_path, ray_hooks, capsys):
    """optimizer.max_attempts (2) starts, both killed: a failed evaluation saying why; the search
    goes on with the other worker and completes its budget."""
    ray_hooks["deaths"] = {1: 2}
    result = _ray_search(tmp_path, capsys, 5)
    history = {e["index"]: e for e in result["history"]}
    e = history[1]
    assert e["status"] == "failed" and e["attempts"] == 2 and e["valid_accuracy"] is None
    assert "died 2 times" in e["error"] and "optimizer.max_attempts is 2" in e["error"]
    assert result["failed_evaluations"] == 1
    assert all(history[i]["status"] == "ok" and history[i]["attempts"] == 1 for i in (0, 2, 3, 4))
