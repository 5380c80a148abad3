"""Studies: nasframe sweep (grids, bad study files, resume, failed points), nasframe aggregate
(keys, mean ± std, published rows), NB201's Table 5 protocol, and the study plots."""
from __future__ import annotations

import json
import math
import statistics
from pathlib import Path

import pytest

from nasframe_core.cli import main
from nasframe_core.study import Study, parse_seeds

REPO = Path(__file__).resolve().parents[1]


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


TABLE_STUDY = """
name: small
grid:
  optimizer: [re, rs]
  seed: 0-3
search_space: {name: nasbench201}
dataset: {name: cifar10}
optimizer: {time_budget: 6000}
run: {protocol: nb201, evaluator: table, benchmark: %s}
"""


def _sweep(tmp_path, nb201_csv, capsys, name="study", text=TABLE_STUDY):
    study = _write(tmp_path / f"{name}.yaml", text % nb201_csv)
    out = tmp_path / name
    assert main(["sweep", str(study), "--out", str(out)]) == 0
    capsys.readouterr()
    return out


def _aggregate(out, capsys, *extra):
    assert main(["aggregate", str(out), "--json", *extra]) == 0
    return json.loads(capsys.readouterr().out)["rows"]


# ------------------------------------------------------------------ the study file
def test_seed_ranges_and_lists_parse():
    assert parse_seeds("0-4") == [0, 1, 2, 3, 4]
    assert parse_seeds([1, "3-4", 9]) == [1, 3, 4, 9]
    assert parse_seeds("2, 5-6") == [2, 5, 6]
    assert parse_seeds(7) == [7]


@pytest.mark.parametrize("text, needle", [
    ("grid: {optimizer: [re]}\nbogus: 1\n", "unknown key 'bogus'"),
    ("grid: {}\n", "non-empty 'grid'"),
    ("grid: {optimizer: []}\n", "grid key 'optimizer' has no values"),
    ("grid: {seed: 5-x}\n", "'5-x' is not a seed or a range"),
    ("grid: {seed: 9-3}\n", "ends before it starts"),
    ("grid: {optimizer: [nope]}\n", "unknown optimizer 'nope'"),
    ("grid: {optimizer: [re], lr: [1]}\n", "unknown grid key 'lr'"),
    ("grid: {optimizer: [re], optimizer.population_size: [0]}\n", "population_size"),
])
def test_a_bad_study_fails_in_one_line_before_anything_starts(tmp_path, capsys, text, needle):
    study = _write(tmp_path / "bad.yaml", text)
    out = tmp_path / "out"
    assert main(["sweep", str(study), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert needle in err and err.count("\n") == 1 and "Traceback" not in err
    assert not out.exists()  # nothing was started, nothing left behind


def test_a_grid_entry_may_be_a_plugin_with_settings_of_its_own(tmp_path):
    from nasframe_core.study import point_argv

    study = Study({"grid": {"optimizer": ["darts", {"name": "darts", "label": "darts-2nd", "unrolled": True}],
                            "seed": [0]}}, "s.yaml")
    names = [n for n, _ in study.points]
    assert names == ["optimizer=darts,seed=0", "optimizer=darts-2nd,seed=0"]
    argv = point_argv(tmp_path / "c.yaml", study.points[1][1])
    assert argv[argv.index("--optimizer") + 1] == "darts" and "optimizer.unrolled=true" in argv


def test_points_are_the_grid_product_named_by_their_values():
    study = Study({"grid": {"optimizer": ["re", "rs"], "seed": "0-1", "optimizer.population_size": [5]}}, "s.yaml")
    assert [n for n, _ in study.points] == [
        "optimizer=re,seed=0,optimizer.population_size=5", "optimizer=re,seed=1,optimizer.population_size=5",
        "optimizer=rs,seed=0,optimizer.population_size=5", "optimizer=rs,seed=1,optimizer.population_size=5"]


# ------------------------------------------------------------------ sweep and aggregate
def test_sweep_runs_every_point_as_a_run_directory_and_aggregates(tmp_path, nb201_csv, capsys):
    out = _sweep(tmp_path, nb201_csv, capsys)
    dirs = sorted(p.name for p in out.iterdir() if p.is_dir())
    assert dirs == [f"optimizer={o},seed={s}" for o in ("re", "rs") for s in range(4)]
    # each point is an ordinary run: show works on it
    assert main(["show", str(out / "optimizer=re,seed=0")]) == 0
    capsys.readouterr()
    rows = _aggregate(out, capsys)
    # NB201's protocol: every run's cell is reported on the three datasets -> 2 x 3 rows of 4 runs
    assert {(r["optimizer"], r["dataset"]) for r in rows} == {
        (o, d) for o in ("re", "rs") for d in ("cifar10", "cifar100", "ImageNet16-120")}
    for r in rows:
        assert set(r) >= {"optimizer", "dataset", "runs", "test_accuracy", "valid_accuracy", "cost", "published"}
        assert r["runs"] == 4 and set(r["test_accuracy"]) == {"mean", "std"}
        assert r["published"]["source"].startswith("NAS-Bench-201") and r["published"]["runs"] == 500
    # the row is the mean and sample std of the points' own result.json
    tests = []
    for s in range(4):
        result = json.loads((out / f"optimizer=re,seed={s}" / "result.json").read_text())
        assert result["protocol"]["searched_on"] == "cifar10-valid" and result["protocol"]["fidelity_epochs"] == 12
        tests.append(result["transferred"]["cifar100"]["test_accuracy"])
    row = next(r for r in rows if (r["optimizer"], r["dataset"]) == ("re", "cifar100"))
    assert row["test_accuracy"]["mean"] == pytest.approx(statistics.mean(tests))
    assert row["test_accuracy"]["std"] == pytest.approx(statistics.stdev(tests))
    # markdown and csv forms of the same rows
    assert main(["aggregate", str(out)]) == 0
    md = capsys.readouterr().out.splitlines()
    table = [line for line in md if line.startswith("|")]
    assert md[0].startswith("| optimizer | dataset | runs | test accuracy") and len(table) == 2 + len(rows)
    assert all(line.endswith("[1] |") for line in table[2:])  # every row's published mean, its source below
    assert md[-1].startswith("[1] NAS-Bench-201 (Dong & Yang, ICLR 2020), Table 5")
    assert main(["aggregate", str(out), "--csv", "--by", "optimizer"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("optimizer,runs,") and len(lines) == 3


def test_a_resumed_study_skips_finished_points_and_equals_an_uninterrupted_one(tmp_path, nb201_csv, capsys):
    full = _sweep(tmp_path, nb201_csv, capsys, "full")
    part = _sweep(tmp_path, nb201_csv, capsys, "part")
    # as if the driver died: two points never finished, one of them had started (no result.json)
    import shutil

    shutil.rmtree(part / "optimizer=rs,seed=3")
    (part / "optimizer=rs,seed=2" / "result.json").unlink()
    before = (part / "optimizer=re,seed=0" / "result.json").stat().st_mtime_ns
    assert main(["sweep", "--resume", str(part)]) == 0
    err = capsys.readouterr().err
    assert "6 done before" in err
    assert (part / "optimizer=re,seed=0" / "result.json").stat().st_mtime_ns == before  # not rerun
    def searched(rows):  # everything but the wall-clock seconds, which differ from run to run
        return [{**r, "cost": {k: v for k, v in r["cost"].items() if k != "wall_seconds"}} for r in rows]

    assert searched(_aggregate(part, capsys)) == searched(_aggregate(full, capsys))


def test_a_failing_point_is_recorded_and_the_study_goes_on(tmp_path, nb201_csv, capsys, monkeypatch):
    from nasframe_core.blackbox_job import ProposalJob
    from nasframe_core.errors import NasframeError

    real = ProposalJob.run_epoch

    def run_epoch(self, epoch, progress):
        if self.config.optimizer.name == "rs" and self.config.run.seed == 2:
            raise NasframeError("the evaluations of this point broke")
        return real(self, epoch, progress)

    monkeypatch.setattr(ProposalJob, "run_epoch", run_epoch)
    study = _write(tmp_path / "s.yaml", TABLE_STUDY % nb201_csv)
    assert main(["sweep", str(study), "--out", str(tmp_path / "s")]) == 1
    captured = capsys.readouterr()
    assert "7 points finished, 1 failed" in captured.out and "Traceback" not in captured.err
    records = [json.loads(line) for line in (tmp_path / "s" / "points.jsonl").read_text().splitlines()]
    failed = [r for r in records if r["status"] == "failed"]
    assert len(records) == 8 and [r["point"] for r in failed] == ["optimizer=rs,seed=2"]
    assert "the evaluations of this point broke" in failed[0]["error"]


def test_the_study_plots_draw_every_dataset_and_the_table(tmp_path, nb201_csv, capsys):
    out = _sweep(tmp_path, nb201_csv, capsys)
    assert main(["plot", str(out)]) == 0
    written = capsys.readouterr().out.split()
    names = sorted(Path(p).name for p in written)
    assert names == ["aggregate.png", "incumbent_ImageNet16-120.png", "incumbent_cifar10.png",
                     "incumbent_cifar100.png"]
    assert all(Path(p).stat().st_size > 10_000 for p in written)


def test_the_shipped_table5_study_parses_to_1500_points():
    study = Study.load(REPO / "examples" / "studies" / "nb201-table5.yaml")
    assert len(study.points) == 1500 and study.keys == ["optimizer", "seed"]
    assert {str(v["optimizer"]) for _, v in study.points} == {"re", "rs", "reinforce"}


@pytest.mark.slow
def test_table5_by_the_product(tmp_path, nb201_csv, capsys, monkeypatch):
    """NB201's Table 5 black-box block through nasframe sweep + aggregate: REA and RS within
    0.3 points of every published mean (REINFORCE is reported, see docs/blackbox.md)."""
    monkeypatch.setenv("NASFRAME_NB201", str(nb201_csv))
    out = tmp_path / "table5"
    assert main(["sweep", str(REPO / "examples" / "studies" / "nb201-table5.yaml"), "--out", str(out)]) == 0
    capsys.readouterr()
    rows = _aggregate(out, capsys)
    assert len(rows) == 9
    for r in rows:
        assert r["runs"] == 500
        if r["optimizer"] in ("re", "rs"):
            assert math.isclose(r["test_accuracy"]["mean"], r["published"]["mean"], abs_tol=0.3), r


@pytest.mark.slow
def test_the_oneshot_smoke_study_runs_every_method(tmp_path, capsys):
    out = tmp_path / "smoke"
    assert main(["sweep", str(REPO / "examples" / "studies" / "nb201-oneshot-smoke.yaml"), "--out", str(out)]) == 0
    capsys.readouterr()
    rows = _aggregate(out, capsys)
    assert [r["optimizer"] for r in rows] == ["darts", "darts-2nd", "gdas", "drnas", "pc_darts", "darts_minus",
                                             "beta_darts", "fair_darts", "sdarts"]
    from nasframe_core.config import load_config_file

    assert load_config_file(out / "optimizer=darts-2nd,seed=0" / "config.yaml")["optimizer"]["unrolled"] is True
    assert all(r["runs"] == 1 and r["cost"]["epochs"]["mean"] == 1 for r in rows)


TRAINED_STUDY = """
name: trained
grid:
  optimizer: [darts, gdas]
  seed: [0, 1]
search_space: {name: nasbench201, C: 4, N: 1}
dataset: {name: synthetic, n_train: 64, n_test: 16, image_size: 8}
run: {epochs: 3, steps_per_epoch: 2, batch_size: 8, device: cpu}
"""


@pytest.mark.slow
def test_a_killed_study_of_trained_runs_resumes_to_the_uninterrupted_aggregate(tmp_path, capsys):
    import os
    import signal
    import subprocess
    import sys
    import time

    study = _write(tmp_path / "trained.yaml", TRAINED_STUDY)
    full = tmp_path / "full"
    assert main(["sweep", str(study), "--out", str(full)]) == 0
    killed = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "nasframe_core.cli", "sweep", str(study), "--out", str(killed)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    first = killed / "optimizer=darts,seed=0" / "result.json"
    deadline = time.time() + 300
    while not first.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert first.exists()
    kept = first.stat().st_mtime_ns
    capsys.readouterr()
    assert main(["sweep", "--resume", str(killed)]) == 0
    assert first.stat().st_mtime_ns == kept  # the finished point was not run again
    capsys.readouterr()

    def searched(rows):
        return [{**r, "cost": {k: v for k, v in r["cost"].items() if k != "wall_seconds"}} for r in rows]

    assert searched(_aggregate(killed, capsys)) == searched(_aggregate(full, capsys))


@pytest.mark.slow
def test_a_study_of_trained_runs_on_ray_keeps_two_workers_busy_and_matches_the_serial_study(tmp_path, capsys):
    """Two Ray workers of one CPU each: the points run in two processes at once, each records
    where and when it ran, and the found cells are those of the serial sweep."""
    pytest.importorskip("ray", reason="studies on Ray need Ray: pip install 'nasframe-darts[ray]'")
    study = _write(tmp_path / "trained.yaml", TRAINED_STUDY)
    serial, on_ray = tmp_path / "serial", tmp_path / "ray"
    assert main(["sweep", str(study), "--out", str(serial)]) == 0
    assert main(["sweep", str(study), "--out", str(on_ray), "--executor", "ray", "--workers", "2"]) == 0
    capsys.readouterr()
    records = [json.loads(line) for line in (on_ray / "points.jsonl").read_text().splitlines()]
    assert len(records) == 4 and all(r["status"] == "ok" for r in records)
    assert len({r["worker"] for r in records}) == 2
    spans = sorted((r["started"], r["finished"]) for r in records)
    assert any(b[0] < a[1] for a, b in zip(spans, spans[1:]))  # two points at once
    for name in ("optimizer=darts,seed=0", "optimizer=gdas,seed=1"):
        a, b = (json.loads((d / name / "result.json").read_text()) for d in (serial, on_ray))
        assert a["genotype"] == b["genotype"]
    local = [json.loads(line) for line in (serial / "points.jsonl").read_text().splitlines()]
    assert len({r["worker"] for r in local}) == 1 and all(r["finished"] >= r["started"] >= 0 for r in local)
