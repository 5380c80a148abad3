"""What a new user meets first: resumes without a checkpoint, piped output, notices, messages."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from nasframe_core.cli import main

BASE = ["--set", "search_space.C=4", "--set", "search_space.N=1", "--batch-size", "8", "--device", "cpu", "--quiet"]
TINY = ["--dataset", "synthetic", "--set", "dataset.n_train=64", "--set", "dataset.n_test=16",
        "--set", "dataset.image_size=8", *BASE]


def error_line(capsys) -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("nasframe: error: "), err
    return lines[0]


def epochs_of(run_dir) -> list[int]:
    return [json.loads(line)["epoch"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


# ------------------------------------------------------------------ resume without a checkpoint
def test_resume_without_checkpoint_starts_clean_with_the_old_files_moved_aside(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["run", *TINY, "--epochs", "2", "--steps-per-epoch", "2", "--out", str(run)]) == 0
    # as if killed during the first epoch: no checkpoint, no result, the log of that attempt
    (run / "checkpoint.pt").unlink()
    (run / "result.json").unlink()
    (run / "metrics.jsonl").write_text("")
    (run / "log.txt").write_text("the first attempt\n")
    capsys.readouterr()
    assert main(["run", "--resume", str(run)]) == 0
    assert epochs_of(run) == [1, 2]
    stale = [p for p in run.iterdir() if p.name.startswith("stale-")]
    assert len(stale) == 1 and (stale[0] / "log.txt").read_text() == "the first attempt\n"
    log = (run / "log.txt").read_text()
    assert "the first attempt" not in log and "no checkpoint.pt" in log and "starts again at epoch 1" in log
    assert json.loads((run / "result.json").read_text())["runtime"]["notices"]


def test_resume_of_epochs_without_checkpoint_is_refused_and_mixes_nothing(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["run", *TINY, "--epochs", "2", "--steps-per-epoch", "2", "--out", str(run)]) == 0
    (run / "checkpoint.pt").unlink()
    (run / "result.json").unlink()
    capsys.readouterr()
    assert main(["run", "--resume", str(run)]) == 2
    line = error_line(capsys)
    assert "no checkpoint.pt" in line and "2 epochs" in line and "--out NEW_DIR" in line
    assert epochs_of(run) == [1, 2]


# ------------------------------------------------------------------ output piped to a closed reader
def test_show_piped_into_a_reader_that_stops_exits_quietly(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text("command: run\nsearch_space: {name: nasbench201}\n")
    (run / "result.json").write_text(json.dumps({"genotype": "x", "notes": ["y" * 100] * 20000}))
    proc = subprocess.Popen([sys.executable, "-m", "nasframe_core.cli", "show", str(run), "--json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.read(400)  # `| head -c 400`
    proc.stdout.close()
    err = proc.stderr.read().decode()
    proc.wait(timeout=120)
    assert err == ""  # no BrokenPipeError traceback


# ------------------------------------------------------------------ domains of settings
@pytest.mark.parametrize("args, needle", [
    (["--seed", "-1"], "--seed must be in [0, 2**63 - 1], got -1"),
    (["--set", "search_space.N=0"], "setting 'N' of search space 'nasbench201' must be at least 1, got 0"),
    (["--set", "search_space.C=0"], "setting 'C' of search space 'nasbench201' must be at least 1, got 0"),
    (["--search-space", "darts", "--set", "search_space.layers=2"], "'layers' of search space 'darts' must be at least 3"),
    (["--set", "run.train_portion=1"], "'run.train_portion' must be above 0 and below 1, got 1.0"),
    (["--set", "optimizer.momentum=1.5"], "'momentum' of optimizer 'darts' must be in [0, 1], got 1.5"),
    (["--optimizer", "re", "--set", "optimizer.evaluations=-3"], "'evaluations' of optimizer 're' must be at least 0"),
    (["--optimizer", "drnas", "--set", "optimizer.reg_type=l3"], "'reg_type' of optimizer 'drnas' must be one of kl, l2"),
    (["--dataset", "synthetic", "--set", "dataset.classes=1"], "'classes' of dataset 'synthetic' must be at least 2"),
])
def test_values_outside_a_settings_domain_are_refused_in_one_line(tmp_path, capsys, args, needle):
    out = tmp_path / "run"
    assert main(["run", *args, "--epochs", "1", "--quiet", "--out", str(out)]) == 2
    assert needle in error_line(capsys)
    assert not out.exists()


def test_a_config_file_value_outside_its_domain_is_refused(tmp_path, capsys):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("run:\n  seed: -5\n")
    assert main(["run", "--config", str(cfg), "--quiet", "--out", str(tmp_path / "run")]) == 2
    assert "--seed must be in" in error_line(capsys)


def test_domains_are_declared_for_every_numeric_setting_of_the_spaces():
    from nasframe_core.domains import settings_domain
    from nasframe_core.plugins import make_plugin_manager

    host = make_plugin_manager()
    for name, keys in (("nasbench201", {"C", "N"}), ("darts", {"C", "layers", "stem_multiplier"})):
        assert keys <= set(settings_domain(host.get("search_space", name).factory)), name


# ------------------------------------------------------------------ nasframe plugins --settings
def test_plugins_settings_lists_every_setting_with_its_default_and_meaning(capsys):
    assert main(["plugins", "--settings", "--json"]) == 0
    listing = json.loads(capsys.readouterr().out)["settings"]
    builtin = {"darts", "blackbox", "nasbench201", "darts_space", "datasets", "cpu"}
    by = {(e["kind"], e["name"]): {s["name"]: s for s in e["settings"]} for e in listing if e["plugin"] in builtin}
    assert {k for k, _ in by} == {"optimizer", "search_space", "dataset", "benchmark"}
    assert set(by["search_space", "darts"]) == {"C", "layers", "auxiliary", "stem_multiplier"}
    assert set(by["search_space", "nasbench201"]) == {"C", "N", "table_dataset"}
    assert by["search_space", "nasbench201"]["N"]["default"] == 5
    assert by["search_space", "nasbench201"]["N"]["domain"] == "at least 1"
    assert by["optimizer", "pc_darts"]["warmup_epochs"]["default"] == 15
    assert by["optimizer", "re"]["population_size"]["default"] == 10
    undocumented = [(kind, name, s) for (kind, name), settings in by.items() for s, v in settings.items()
                    if not v["help"]]
    assert undocumented == []
    assert main(["plugins", "--settings"]) == 0
    text = capsys.readouterr().out
    assert "  search_space.N = 5; at least 1  cells per stage" in text
    assert "  optimizer.learning_rate = 0.025; greater than 0  weights' learning rate" in text


# ------------------------------------------------------------------ the command reference
def test_the_command_reference_is_the_parser_regenerated():
    from pathlib import Path

    from nasframe_core.cli_reference import reference

    committed = (Path(__file__).resolve().parents[1] / "docs" / "commands.md").read_text()
    assert reference() == committed, "regenerate: python -m nasframe_core.cli_reference --write docs/commands.md"
    for verb in ("plugins", "run", "train", "query", "show", "plot"):
        assert f"## nasframe {verb}\n" in committed
    for flag in ("--resume RUN_DIR", "--set KEY=VALUE", "--settings", "--genotype RUN_DIR|FILE|STRING"):
        assert flag.replace("|", "\\|") in committed, flag


# ------------------------------------------------------------------ benchmarks: names, paths, variables
def test_query_says_a_path_goes_to_benchmark_not_to_the_name(tmp_path, capsys):
    table = tmp_path / "table.csv"
    table.write_text("index,arch_str\n")
    assert main(["query", str(table), "0"]) == 2
    line = error_line(capsys)
    assert "takes the benchmark's name first (nasbench201)" in line and f"--benchmark {table}" in line


def test_a_table_path_from_the_environment_names_the_variable(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("NASFRAME_NB201", str(tmp_path / "nonexistent.csv"))
    assert main(["run", "--optimizer", "re", "--quiet", "--out", str(tmp_path / "run")]) == 2
    line = error_line(capsys)
    assert f"NASFRAME_NB201={tmp_path / 'nonexistent.csv'}: no such file" in line
    assert "or set NASFRAME_NB201" not in line
    assert main(["query", "nasbench201", "0"]) == 2
    assert "NASFRAME_NB201=" in error_line(capsys)


@pytest.mark.parametrize("name, value", [("NASFRAME_NATIVE_KERNELS", "maybe"), ("NASFRAME_KEEP_FREED_MEMORY", "banana")])
def test_an_invalid_switch_is_one_line_naming_the_variable(tmp_path, capsys, monkeypatch, name, value):
    monkeypatch.setenv(name, value)
    assert main(["run", *TINY, "--cpu-kernels", "--epochs", "1", "--steps-per-epoch", "1",
                 "--out", str(tmp_path / "run")]) == 2
    assert f"{name}='{value}' is neither on nor off" in error_line(capsys)


def test_an_unwritable_cache_directory_is_said_once_on_the_console_and_in_the_log(tmp_path, capsys, monkeypatch):
    blocked = tmp_path / "cache-is-a-file"
    blocked.write_text("")
    monkeypatch.setenv("NASFRAME_CACHE", str(blocked / "nasframe"))
    run = tmp_path / "run"
    args = ["run", *TINY, "--epochs", "1", "--steps-per-epoch", "1", "--out", str(run)]
    args.remove("--quiet")
    assert main(args) == 0
    err = capsys.readouterr().err
    assert err.count("note: the cache directory") == 1 and "set NASFRAME_CACHE to a writable directory" in err
    assert (run / "log.txt").read_text().count("note: the cache directory") == 1


# ------------------------------------------------------------------ training a found genotype
def test_train_of_a_run_directory_takes_the_runs_dataset(tmp_path, capsys):
    search = tmp_path / "search"
    assert main(["run", *TINY, "--epochs", "1", "--steps-per-epoch", "1", "--out", str(search)]) == 0
    trained = tmp_path / "trained"
    assert main(["train", "--genotype", str(search), "--set", "search_space.C=4", "--set", "search_space.N=1",
                 "--batch-size", "8", "--device", "cpu", "--quiet", "--epochs", "1", "--steps-per-epoch", "1",
                 "--out", str(trained)]) == 0
    result = json.loads((trained / "result.json").read_text())
    assert result["dataset"] == "synthetic"  # not the default digits
    import yaml

    dataset = yaml.safe_load((trained / "config.yaml").read_text())["dataset"]
    assert dataset["n_train"] == 64 and dataset["image_size"] == 8  # with the run's dataset settings


DARTS_GENOTYPE = ("Genotype(normal=[('sep_conv_3x3', 0), ('sep_conv_3x3', 1), ('sep_conv_3x3', 0), ('sep_conv_3x3', 1), "
                  "('sep_conv_3x3', 1), ('skip_connect', 0), ('skip_connect', 0), ('dil_conv_3x3', 2)], "
                  "normal_concat=[2, 3, 4, 5], reduce=[('max_pool_3x3', 0), ('max_pool_3x3', 1), ('skip_connect', 2), "
                  "('max_pool_3x3', 1), ('max_pool_3x3', 0), ('skip_connect', 2), ('skip_connect', 2), "
                  "('max_pool_3x3', 1)], reduce_concat=[2, 3, 4, 5])")


def test_a_genotype_of_another_space_names_the_flag_to_add(tmp_path, capsys):
    assert main(["train", "--genotype", DARTS_GENOTYPE, *TINY, "--epochs", "1", "--out", str(tmp_path / "t")]) == 2
    line = error_line(capsys)
    assert "not a genotype of the 'nasbench201' space but of the 'darts' space: add --search-space darts" in line


# ------------------------------------------------------------------ PC-DARTS warm-up longer than the run
def test_pc_darts_says_at_the_start_that_the_architecture_stays_frozen(tmp_path, capsys):
    run = tmp_path / "run"
    args = ["run", "--optimizer", "pc_darts", *TINY, "--epochs", "2", "--steps-per-epoch", "1", "--out", str(run)]
    args.remove("--quiet")
    assert main(args) == 0
    err = capsys.readouterr().err
    assert "the architecture is frozen for the whole run" in err and "optimizer.warmup_epochs=15" in err
    assert err.index("frozen for the whole run") < err.index("epoch 1/2")
    assert "frozen for the whole run" in (run / "log.txt").read_text()
    assert main([*args[:-1], str(tmp_path / "longer"), "--set", "optimizer.warmup_epochs=1"]) == 0
    assert "frozen for the whole run" not in capsys.readouterr().err


# ------------------------------------------------------------------ a benchmark without the run's dataset
@pytest.fixture(scope="module")
def made_up_table(tmp_path_factory):
    """A complete NB201 CSV of made-up numbers (every architecture, the real columns)."""
    from nasframe_spaces.nasbench201.tables.codes import _str_of_code
    from nasframe_spaces.nasbench201.tables.csv_table import _CSV_REQUIRED

    path = tmp_path_factory.mktemp("table") / "made_up.csv"
    columns = [*_CSV_REQUIRED, "c10valid_valid_acc_seeds"]
    rows = [",".join(columns)]
    for code in range(15625):
        acc = 50 + (code * 7919 % 4000) / 100
        values = {"index": str(code), "arch_str": _str_of_code(code), "c10valid_valid_acc_seeds": f"{acc};{acc + 1}",
                  "c10valid_train_time_s": "100.0"}
        rows.append(",".join(values.get(c, f"{acc:.2f}") for c in columns))
    path.write_text("\n".join(rows) + "\n")
    return path


def test_a_benchmark_without_the_runs_dataset_is_an_error_naming_its_datasets(tmp_path, capsys, made_up_table):
    out = tmp_path / "run"
    assert main(["run", "--optimizer", "re", "--benchmark", str(made_up_table), "--dataset", "digits",
                 "--quiet", "--out", str(out)]) == 2
    line = error_line(capsys)
    assert "has no results for dataset 'digits'" in line
    assert "cifar10-valid, cifar10, cifar100, ImageNet16-120" in line and "drop --benchmark" in line
    assert not out.exists()
    assert main(["run", *TINY, "--epochs", "1", "--benchmark", str(made_up_table), "--out", str(out)]) == 2
    assert "has no results for dataset 'synthetic'" in error_line(capsys)


def test_a_table_from_the_environment_without_the_runs_dataset_is_left_out_and_said(tmp_path, capsys, monkeypatch,
                                                                                   made_up_table):
    monkeypatch.setenv("NASFRAME_NB201", str(made_up_table))
    run = tmp_path / "run"
    args = ["run", *TINY, "--epochs", "1", "--steps-per-epoch", "1", "--out", str(run)]
    args.remove("--quiet")
    assert main(args) == 0
    assert "note: the nasbench201 table has no results for dataset 'synthetic'" in capsys.readouterr().err
    result = json.loads((run / "result.json").read_text())
    assert result["benchmark"] is None and result.get("test_statistics") is None


def test_a_stand_in_dataset_reports_the_table_dataset_it_names(tmp_path, made_up_table):
    from nasframe_spaces.nasbench201.codec import NB201Genotype
    from nasframe_spaces.nasbench201.tables import load_nb201_table

    run = tmp_path / "run"
    assert main(["run", *TINY, "--epochs", "1", "--steps-per-epoch", "1", "--benchmark", str(made_up_table),
                 "--set", "search_space.table_dataset=cifar10", "--out", str(run)]) == 0
    result = json.loads((run / "result.json").read_text())
    expected = load_nb201_table(made_up_table).query(NB201Genotype.from_str(result["genotype"]), "cifar10",
                                                     "test_accuracy")
    assert result["benchmark"]["dataset"] == "cifar10"
    assert result["benchmark"]["test_accuracy"] == pytest.approx(expected)


# ------------------------------------------------------------------ plots
def test_plot_of_a_train_run_draws_its_loss_and_accuracy_curves(tmp_path, capsys, monkeypatch):
    from matplotlib.figure import Figure

    run = tmp_path / "trained"
    assert main(["train", "--genotype", "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|"
                 "nor_conv_3x3~1|skip_connect~2|", *TINY, "--epochs", "2", "--steps-per-epoch", "1",
                 "--out", str(run)]) == 0
    saved = []
    real_savefig = Figure.savefig
    monkeypatch.setattr(Figure, "savefig", lambda self, *a, **k: (saved.append(self), real_savefig(self, *a, **k))[1])
    capsys.readouterr()
    assert main(["plot", str(run)]) == 0
    written = {p.rsplit("/", 1)[-1] for p in capsys.readouterr().out.split()}
    assert written == {"training.png", "cell.png"}
    curves = next(f for f in saved if len(f.axes) == 2)
    loss, acc = curves.axes
    assert loss.get_ylabel() == "loss" and acc.get_ylabel() == "accuracy (%)"
    assert sorted(line.get_label() for line in loss.get_lines()) == ["test", "train"]
    metrics = [json.loads(l) for l in (run / "metrics.jsonl").read_text().splitlines()]
    train = next(line for line in acc.get_lines() if line.get_label() == "train")
    assert list(train.get_ydata()) == pytest.approx([m["train_acc"] for m in metrics])


@pytest.mark.parametrize("space_name", ["darts", "nasbench201"])
def test_the_cell_drawings_labels_overlap_neither_each_other_nor_the_nodes(tmp_path, monkeypatch, space_name):
    import numpy as np
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.transforms import Bbox

    from nasframe_core.plotting import plot_cells
    from nasframe_core.plugins import make_plugin_manager

    import io

    saved = []
    real_savefig = Figure.savefig
    # drawn as saved (tight bounding box), into memory
    monkeypatch.setattr(Figure, "savefig", lambda self, *a, **k: (saved.append(self),
                                                                  real_savefig(self, io.BytesIO(), format="png", **k)))
    space = make_plugin_manager().create("search_space", space_name)
    ops = {op for spec in space.cell_specs().values() for op in spec.ops}
    for seed in range(6):
        plot_cells(space, space.random_genotype(np.random.default_rng(seed)), tmp_path)
    assert saved
    for fig in saved:
        renderer = FigureCanvasAgg(fig).get_renderer()
        ax = fig.axes[0]
        labels = [t.get_window_extent(renderer) for t in ax.texts if t.get_text() in ops]
        radius = 0.5 * 700 ** 0.5 * fig.dpi / 72  # the node markers: 700 square points
        nodes = []
        for t in ax.texts:
            if t.get_text().isdigit():
                cx, cy = ax.transData.transform(t.get_position())
                nodes.append(Bbox.from_extents(cx - radius, cy - radius, cx + radius, cy + radius))
        for i, box in enumerate(labels):
            assert not any(box.overlaps(other) for other in labels[:i])
            assert not any(box.overlaps(node) for node in nodes)


# ------------------------------------------------------------------ the Python API page
def _python_blocks() -> list[str]:
    import re
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "docs" / "python-api.md").read_text()
    return re.findall(r"```python\n(.*?)```", text, re.S)


def test_the_python_api_page_has_examples():
    blocks = _python_blocks()
    assert len(blocks) >= 3 and any("search(" in b for b in blocks) and any("batches = " in b for b in blocks)


@pytest.mark.parametrize("index", range(3))
def test_every_example_of_the_python_api_page_runs_as_written(tmp_path, monkeypatch, capsys, index):
    monkeypatch.chdir(tmp_path)
    exec(compile(_python_blocks()[index], f"docs/python-api.md block {index + 1}", "exec"), {"__name__": "__main__"})
    out = capsys.readouterr().out
    assert "|" in out  # each example prints a found cell


def test_search_returns_a_result_object_with_the_genotype_alphas_and_why_no_benchmark(tmp_path):
    from nasframe_core.api import search
    from nasframe_spaces.nasbench201.codec import NB201Genotype

    result = search("darts", "nasbench201", "synthetic", epochs=1,
                    settings={"search_space.C": 4, "search_space.N": 1, "dataset.n_train": 64, "dataset.n_test": 16,
                              "dataset.image_size": 8, "run.batch_size": 8, "run.steps_per_epoch": 1,
                              "run.device": "cpu"}, out=str(tmp_path / "run"))
    assert isinstance(result.genotype, NB201Genotype)
    assert result.run_dir == tmp_path / "run" and (result.run_dir / "result.json").is_file()
    assert set(result.alphas) == {"cell"} and len(result.alphas["cell"]) == 6
    assert result.history is None and result.test_accuracy is None
    assert "NASFRAME_NB201" in result.benchmark_note


def test_test_statistics_without_a_table_says_why_once(caplog):
    import logging

    from nasframe_darts import DARTSOptimizer
    from nasframe_spaces import NasBench201SearchSpace

    optimizer = DARTSOptimizer(device="cpu")
    optimizer.adapt_search_space(NasBench201SearchSpace(C=4, N=1), "cifar10")
    with caplog.at_level(logging.WARNING, logger="nasframe.darts"):
        assert optimizer.test_statistics() is None
        assert optimizer.test_statistics() is None
    said = [r.getMessage() for r in caplog.records if "test_statistics() is None" in r.getMessage()]
    assert len(said) == 1 and "no NAS-Bench-201 table" in said[0] and "NASFRAME_NB201" in said[0]
