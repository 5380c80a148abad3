"""What a user reads: final lines, `show`, `plot`, help and error messages."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from matplotlib.figure import Figure

from nasframe_core.cli import main

TINY = ["--dataset", "synthetic", "--set", "dataset.n_train=64", "--set", "dataset.n_test=16",
        "--set", "dataset.image_size=8", "--set", "search_space.C=4", "--set", "search_space.N=1",
        "--batch-size", "8", "--device", "cpu", "--quiet"]


def top2(row):
    a, b = sorted(row, reverse=True)[:2]
    return a - b


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished two-epoch search (tiny: its margins are noise)."""
    out = tmp_path_factory.mktemp("runs") / "run"
    assert main(["run", *TINY, "--epochs", "2", "--steps-per-epoch", "2", "--out", str(out)]) == 0
    return out


def test_edge_margins_in_metrics_and_result(finished):
    lines = [json.loads(line) for line in (finished / "metrics.jsonl").read_text().splitlines()]
    assert [m["epoch"] for m in lines] == [1, 2]
    for m in lines:
        assert m["edge_margins"]["cell"] == pytest.approx([top2(r) for r in m["alphas"]["cell"]])
    result = json.loads((finished / "result.json").read_text())
    assert set(result["edge_margins"]) == {"cell"} and len(result["edge_margins"]["cell"]) == 6
    assert result["edge_margins"]["cell"] == pytest.approx([top2(r) for r in result["alphas_softmax"]["cell"]])
    # two epochs of two steps cannot move the weights: every edge is within noise, and it says so
    assert any("every edge is within noise" in w for w in result["warnings"])
    assert "best_test_acc" not in result and result["params_millions"] > 0


def test_show_judges_a_stopped_run_from_its_last_epoch(finished, tmp_path, capsys):
    import shutil

    stopped = tmp_path / "stopped"
    shutil.copytree(finished, stopped)
    (stopped / "result.json").unlink()
    assert main(["show", str(stopped)]) == 0
    text = capsys.readouterr().out
    assert "stopped" in text and "warning: cell: every edge is within noise" in text


def test_final_lines_and_show_report_margins_and_warnings(finished, capsys):
    assert main(["show", str(finished)]) == 0
    text = capsys.readouterr().out
    assert "edge margins" in text and "0->1 " in text and "warning: cell: every edge is within noise" in text
    last = next(line for line in text.splitlines() if line.startswith("last epoch"))
    assert last.startswith("last epoch 2: ")
    for number in last.split(": ", 1)[1].replace("%", "").replace(",", "").split():
        if number[0].isdigit():
            assert len(number.split(".")[-1]) <= 5, last  # rounded, not 2.302585092994046
    log = (finished / "log.txt").read_text()
    assert "edge margins" in log and "before epoch 1:" in log and "epoch 0" not in log


def _capture_figures(monkeypatch) -> list:
    figures = []
    real = Figure.savefig

    def keep(self, path, *args, **kwargs):
        figures.append((Path(path).name, self))
        return real(self, path, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", keep)
    return figures


def test_plot_of_a_one_epoch_run_shows_points_on_a_sensible_scale(tmp_path, monkeypatch, capsys):
    out = tmp_path / "run"
    assert main(["run", *TINY, "--epochs", "1", "--steps-per-epoch", "1", "--out", str(out)]) == 0
    figures = _capture_figures(monkeypatch)
    capsys.readouterr()
    assert main(["plot", str(out)]) == 0
    assert {Path(p).name for p in capsys.readouterr().out.split()} == {"alphas.png", "cell.png"}
    alphas = dict(figures)["alphas.png"]
    panels = [ax for ax in alphas.axes if ax.lines]
    assert len(panels) == 6
    for ax in panels:
        low, high = ax.get_ylim()
        assert low == 0 and high >= 0.4  # at least twice the uniform weight 1/5: noise looks flat
        uniform = [line for line in ax.lines if line.get_label() == "uniform 1/5"]
        assert uniform and list(uniform[0].get_ydata()) == [0.2, 0.2]
        ops = [line for line in ax.lines if line not in uniform]
        assert len(ops) == 5 and all(line.get_marker() == "o" for line in ops)  # one epoch: visible points
        assert [t for t in ax.get_xticks() if ax.get_xlim()[0] <= t <= ax.get_xlim()[1]] == [1]
    assert any(ax.get_xlabel() == "epoch" for ax in panels) and any(ax.get_ylabel() for ax in panels)


def test_cell_drawing_explains_none_edges_and_dead_nodes(tmp_path, monkeypatch):
    from nasframe_core.plotting import plot_cells
    from nasframe_spaces.nasbench201.codec import NB201Genotype
    from nasframe_spaces.nasbench201.space import NasBench201SearchSpace

    figures = _capture_figures(monkeypatch)
    g = NB201Genotype.from_str("|none~0|+|nor_conv_3x3~0|none~1|+|nor_conv_1x1~0|nor_conv_1x1~1|none~2|")
    (path,) = plot_cells(NasBench201SearchSpace(C=4, N=1), g, tmp_path)
    assert path.name == "cell.png"
    fig = figures[0][1]
    texts = [t.get_text() for ax in fig.axes for t in ax.texts] + [t.get_text() for t in fig.texts]
    assert texts.count("none") == 3  # none edges are drawn (dashed), not hidden
    assert "always zero" in texts and "unused" in texts
    caption = " ".join(t.get_text() for t in fig.texts)
    assert "node 1 receives nothing" in caption and "node 2 reaches no output" in caption


def test_plot_into_an_unwritable_directory_is_one_line(finished, tmp_path, monkeypatch, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert main(["plot", str(finished), "--out", str(blocker / "plots")]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("nasframe: error: cannot create")

    def refuse(self, path, *args, **kwargs):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(Figure, "savefig", refuse)  # a plots/ directory this user may not write
    assert main(["plot", str(finished), "--out", str(tmp_path / "plots")]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cannot write the plots" in err[0] and "Permission denied" in err[0]


def test_failed_command_leaves_no_run_directory(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    for bad in (["--set", "run.train_portion=1.0"], ["--batch-size", "4096"],
                ["--dataset", "cifar10", "--data-dir", str(tmp_path / "none")]):
        assert main(["run", *TINY, "--epochs", "1", *bad]) != 0
    assert main(["train", *TINY, "--genotype", str(tmp_path / "no" / "such" / "run")]) != 0
    err = capsys.readouterr().err
    assert "no such run directory or file" in err and "malformed" not in err
    assert not (tmp_path / "runs").exists()


def test_refused_resume_writes_its_error_to_the_log(finished, capsys):
    assert main(["run", "--resume", str(finished), "--seed", "3"]) != 0
    err = capsys.readouterr().err
    assert "--seed cannot change" in err
    assert "error: --seed cannot change" in (finished / "log.txt").read_text()


def test_interrupt_names_the_run_directory(tmp_path, monkeypatch, capsys):
    from nasframe_core.search import SearchJob

    def interrupted(self, epoch, progress):
        raise KeyboardInterrupt

    monkeypatch.setattr(SearchJob, "run_epoch", interrupted)
    out = tmp_path / "run"
    assert main(["run", *TINY, "--epochs", "1", "--out", str(out)]) == 130
    err = capsys.readouterr().err
    assert f"--resume {out}" in err and "RUN_DIR" not in err
    assert "interrupted" in (out / "log.txt").read_text()


def test_help_shows_defaults_and_the_required_genotype(capsys):
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "number of epochs (default: 50)" in text and "(default: 64)" in text and "(default: 0)" in text
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    usage = capsys.readouterr().out.split("\n\n")[0]
    assert "--genotype RUN_DIR|FILE|STRING" in usage and "[--genotype" not in usage
    with pytest.raises(SystemExit) as exited:
        main(["train", "--dataset", "synthetic"])
    assert exited.value.code == 2
    assert "required: --genotype" in capsys.readouterr().err
