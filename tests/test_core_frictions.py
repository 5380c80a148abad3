"""What a third-party author hit in the core: a finished run resumed, run.eval_test without an
evaluation network."""
from __future__ import annotations

from nasframe_core.cli import main


def _blackbox(tmp_path, nb201_csv, *extra):
    out = tmp_path / "run"
    argv = ["run", "--optimizer", "rs", "--benchmark", str(nb201_csv), "--dataset", "cifar10",
            "--set", "optimizer.evaluations=20", "--quiet", *extra]
    assert main([*argv, "--out", str(out)]) == 0
    return out


def test_resuming_a_finished_run_leaves_its_results_as_they_were(tmp_path, nb201_csv, capsys):
    out = _blackbox(tmp_path, nb201_csv)
    before = {name: (out / name).read_bytes() for name in ("result.json", "metrics.jsonl", "config.yaml")}
    capsys.readouterr()
    assert main(["run", "--resume", str(out), "--quiet"]) == 0
    assert capsys.readouterr().out.strip() == f"results in {out}"
    assert {name: (out / name).read_bytes() for name in before} == before
    assert "is finished" in (out / "log.txt").read_text()


def test_eval_test_without_an_evaluation_network_says_so(tmp_path, nb201_csv, capsys):
    out = _blackbox(tmp_path, nb201_csv, "--set", "run.eval_test=true")
    assert "run.eval_test: a black-box search trains no network" in (out / "log.txt").read_text()
