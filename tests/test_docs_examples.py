"""The complete examples of docs/plugins.md and docs/oneshot.md run as written."""
from __future__ import annotations

import csv
import itertools
import json
import re
import types
from pathlib import Path

import pytest

from nasframe_core import hookimpl
from nasframe_core.config import Config
from nasframe_core.engine import execute
from nasframe_core.errors import NasframeError
from nasframe_core.plugins import make_plugin_manager
from nasframe_core.train import apply_recipe

DOCS = Path(__file__).resolve().parents[1] / "docs"


def python_blocks(page: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", (DOCS / page).read_text(), re.S)


def example(page: str, marker: str) -> types.ModuleType:
    """The block of ``page`` that contains ``marker``, executed as a module."""
    blocks = [b for b in python_blocks(page) if marker in b]
    assert len(blocks) == 1, f"{page}: {len(blocks)} python blocks contain {marker!r}"
    module = types.ModuleType(marker.replace(".py", "").replace("# ", "").split(":")[0].strip())
    exec(compile(blocks[0], f"{page}[{marker}]", "exec"), module.__dict__)
    return module


def config(**settings) -> Config:
    cfg = Config()
    base = {"run.device": "cpu", "run.batch_size": 8, "run.epochs": 1, "run.steps_per_epoch": 2,
            "dataset.name": "synthetic", "dataset.n_train": 48, "dataset.n_test": 16, "dataset.image_size": 8}
    for key, value in {**base, **settings}.items():
        cfg.set(key, value)
    return cfg


@pytest.fixture(scope="module")
def tiny():
    return example("plugins.md", "# nasframe_tiny.py")


def test_the_tiny_space_is_searched_by_darts_and_random_search_and_trained(tiny, tmp_path):
    host = make_plugin_manager(plugins=[("tiny", tiny)])
    space = tiny.TinySearchSpace()
    g = space.parse_genotype("0-1:conv_3x3,0-2:skip_connect,1-2:avg_pool_3x3")
    assert space.parse_genotype(str(g)) == g and "/" not in str(g)
    with pytest.raises(NasframeError, match="malformed tiny genotype"):
        space.parse_genotype("0-1:conv_3x3")

    result = execute(config(**{"search_space.name": "tiny"}), host, out=tmp_path / "darts", quiet=True)
    found = space.parse_genotype(result["genotype"])
    assert "none" not in found.ops  # exclude_from_choice

    rs = config(**{"search_space.name": "tiny", "optimizer.name": "rs", "optimizer.evaluations": 2,
                   "optimizer.train_epochs": 1})
    result = execute(rs, host, out=tmp_path / "rs", quiet=True)
    assert len(result["history"]) == 2

    cfg = Config()
    cfg.command = "train"
    cfg.search_space.name = "tiny"
    apply_recipe(cfg, host)
    assert (cfg.run.epochs, cfg.run.batch_size, cfg.train.learning_rate) == (30, 64, 0.05)
    cfg.genotype = str(g)
    for key, value in {"run.epochs": 1, "run.batch_size": 8, "run.device": "cpu", "dataset.name": "synthetic",
                       "dataset.n_train": 48, "dataset.n_test": 16, "dataset.image_size": 8}.items():
        cfg.set(key, value)
    result = execute(cfg, host, out=tmp_path / "train", quiet=True)
    assert 0.0 <= result["test_acc"] <= 100.0 and result["params"] > 0


def test_the_stripes_dataset_loads_and_is_searched(tiny, tmp_path):
    stripes = example("plugins.md", "# nasframe_stripes.py")
    data = stripes.Stripes(n=40).load()
    assert data.train.images.shape == (32, 1, 16, 16) and data.test.images.shape == (8, 1, 16, 16)
    assert set(data.train.labels.tolist()) <= {0, 1}
    host = make_plugin_manager(plugins=[("tiny", tiny), ("stripes", stripes)])
    cfg = Config()
    for key, value in {"run.device": "cpu", "run.batch_size": 8, "run.epochs": 1, "dataset.name": "stripes",
                       "dataset.n": 80, "search_space.name": "tiny"}.items():
        cfg.set(key, value)
    result = execute(cfg, host, out=tmp_path / "run", quiet=True)
    assert result["genotype"].count(":") == 3


def test_the_tiny_table_scores_a_black_box_search(tiny, tmp_path):
    table_plugin = example("plugins.md", "# nasframe_tiny_table.py")
    path = tmp_path / "tiny.csv"
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["genotype", "dataset", "valid_accuracy", "test_accuracy", "train_time_s"])
        for k, ops in enumerate(itertools.product(("skip_connect", "conv_3x3", "avg_pool_3x3"), repeat=3)):
            w.writerow([str(tiny.TinyGenotype(ops)), "cifar10", 50 + k, 40 + k, 10])

    class TableSpace(tiny.TinySearchSpace):
        benchmark_name = "tiny"

    module = types.ModuleType("tiny_with_table")
    module.nasframe_register_search_spaces = lambda register: register("tiny", TableSpace)
    module.nasframe_register_search_spaces = tiny.hookimpl(module.nasframe_register_search_spaces)
    host = make_plugin_manager(plugins=[("tiny", module), ("tiny_table", table_plugin)])
    cfg = Config()
    for key, value in {"search_space.name": "tiny", "optimizer.name": "re", "optimizer.evaluations": 12,
                       "dataset.name": "cifar10", "run.benchmark": str(path)}.items():
        cfg.set(key, value)
    result = execute(cfg, host, out=tmp_path / "run", quiet=True)
    assert len(result["history"]) == 12
    best = max(result["history"], key=lambda h: h["valid_accuracy"])
    assert result["genotype"] == best["genotype"]
    table = table_plugin.TinyTable(path)
    table.load()
    assert result["test_statistics"] == table.query(result["genotype"], "cifar10", "test_accuracy")
    assert table.query_all(result["genotype"], "cifar10") == {  # what nasframe query prints
        "valid_accuracy": best["valid_accuracy"], "test_accuracy": result["test_statistics"], "train_time_s": 10.0}
    with pytest.raises(NasframeError, match="datasets: cifar10"):
        table.query(result["genotype"], "cifar100", "test_accuracy")


def test_the_patience_observer_adds_a_metric_and_stops_the_search(tiny, tmp_path):
    patience = example("plugins.md", "# nasframe_patience.py")
    patience.PATIENCE = 0  # stop after the first epoch
    host = make_plugin_manager(plugins=[("tiny", tiny), ("patience", patience)])
    out = tmp_path / "run"
    execute(config(**{"search_space.name": "tiny", "run.epochs": 3}), host, out=out, quiet=True)
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert len(metrics) == 1 and metrics[0]["best_val_acc"] == metrics[0]["val_acc"]


def test_the_loss_gap_report_reaches_the_epoch_line_the_result_show_and_plot(tiny, tmp_path, capsys):
    from nasframe_core.report import cmd_plot, cmd_show

    gap = example("plugins.md", "# nasframe_gap.py")
    host = make_plugin_manager(plugins=[("tiny", tiny), ("gap", gap)])
    out = tmp_path / "run"
    result = execute(config(**{"search_space.name": "tiny", "run.epochs": 2}), host, out=out, quiet=True)
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    last = metrics[-1]
    assert result["final_loss_gap"] == last["loss_gap"] == pytest.approx(last["val_loss"] - last["train_loss"])
    assert f"loss gap {last['loss_gap']:.3f}, " in (out / "log.txt").read_text()
    said = f"validation loss above training loss by {last['loss_gap']:.3f} after the last epoch"
    assert said in capsys.readouterr().out.splitlines()
    assert cmd_show(host, types.SimpleNamespace(run_dir=str(out), json=False)) == 0
    assert said in capsys.readouterr().out.splitlines()
    assert cmd_plot(host, types.SimpleNamespace(run_dir=str(out), out=None)) == 0
    assert str(out / "plots" / "loss_gap.png") in capsys.readouterr().out.split()


def test_the_entropy_darts_method_runs_with_its_setting(tiny, tmp_path):
    method = example("plugins.md", "class EntropyDARTS")
    host = make_plugin_manager(plugins=[("tiny", tiny), ("entropy", method)])
    cfg = config(**{"search_space.name": "tiny", "optimizer.name": "entropy_darts",
                    "optimizer.entropy_weight": 0.5, "run.epochs": 2})
    result = execute(cfg, host, out=tmp_path / "run", quiet=True)
    assert result["genotype"].count(":") == 3


def test_the_process_hook_sets_threads_only_when_asked_and_records_it(tiny, tmp_path, monkeypatch):
    import torch

    threads = example("plugins.md", "# nasframe_threads.py")
    host = make_plugin_manager(plugins=[("tiny", tiny), ("threads", threads)])
    before = torch.get_num_threads()
    try:
        monkeypatch.setenv("NASFRAME_THREADS", "1")
        cfg = config(**{"search_space.name": "tiny"})
        result = execute(cfg, host, out=tmp_path / "python", quiet=True)  # a library call: left alone
        assert "threads_from" not in result["runtime"] and torch.get_num_threads() == before
        result = execute(cfg, host, out=tmp_path / "owned", quiet=True, owns_process=True)
        assert result["runtime"]["threads_from"] == "NASFRAME_THREADS=1" and result["runtime"]["threads"] == 1
        monkeypatch.setenv("NASFRAME_THREADS", "many")
        with pytest.raises(NasframeError, match="NASFRAME_THREADS must be a whole number"):
            execute(cfg, host, out=tmp_path / "bad", quiet=True, owns_process=True)
    finally:
        torch.set_num_threads(before)


def test_the_python_api_snippet_runs_as_written(monkeypatch, capsys):
    monkeypatch.delenv("NASFRAME_NB201", raising=False)
    (block,) = [b for b in python_blocks("oneshot.md") if "DARTSOptimizer(unrolled=False)" in b]
    exec(compile(block, "oneshot.md", "exec"), {})
    genotype, statistics = capsys.readouterr().out.splitlines()
    assert genotype.startswith("|") and genotype.count("~") == 6
    assert statistics == "None"  # no table attached


def test_the_readme_is_short_and_its_ci_blocks_and_commands_hold():
    import shlex

    from nasframe_core.cli import build_parser, config_from_args

    readme = DOCS.parent / "README.md"
    text = readme.read_text()
    assert len(text.splitlines()) <= 200
    blocks = re.findall(r"<!-- ci: ([\w-]+) -->\s*```(?:bash|sh)?\n(.*?)```", text, re.S)
    assert [name for name, _ in blocks] == ["first-run", "tests"]
    host = make_plugin_manager()
    (first_run,) = [line for line in blocks[0][1].splitlines() if line.startswith("nasframe run")]
    cfg = config_from_args(host, build_parser(host).parse_args(shlex.split(first_run)[1:]), "run")
    # the flags over the NAS-Bench-201 recipe of DARTS (Nesterov, weight decay 5e-4)
    assert (cfg.run.epochs, cfg.search_space.settings) == (50, {"N": 1})
    assert cfg.optimizer.settings["arch_learning_rate"] == 0.01
    assert cfg.optimizer.settings["nesterov"] is True and cfg.optimizer.settings["weight_decay"] == 0.0005
    for page in ("design", "plugins", "oneshot", "blackbox", "performance", "reproductions"):
        assert f"(docs/{page}.md)" in text and (DOCS / f"{page}.md").is_file(), page


def test_the_readme_installs_torch_and_torchvision_together_from_the_cpu_index_first():
    """`pip install .` keeps a CPU torch only if torchvision came from the same index with it."""
    text = (DOCS.parent / "README.md").read_text()
    cpu = "pip install torch torchvision --index-url https://download.pytorch.org/whl/cpu"
    assert cpu in text
    assert text.index(cpu) < text.index("<!-- ci: first-run -->")
    assert not re.search(r"pip install torch --index-url", text)  # torch alone: torchvision pulls the CUDA build


def test_a_genotype_string_with_a_slash_is_a_genotype_not_a_path(tiny, tmp_path):
    """A space whose string form holds '/': the training evaluation of a black-box search and
    ``nasframe train --genotype STRING`` take it as the genotype it is."""

    class SlashGenotype(tiny.TinyGenotype):
        def to_str(self):
            return "/".join(f"{s}-{d}:{op}" for (s, d), op in zip(tiny.EDGES, self.ops))

        @classmethod
        def from_str(cls, text):
            return super().from_str(str(text).replace("/", ","))

    class SlashSpace(tiny.TinySearchSpace):
        name = "slash"

        def make_genotype(self, choices):
            return SlashGenotype(super().make_genotype(choices).ops)

        def parse_genotype(self, text):
            return SlashGenotype.from_str(text)

    class Plugin:
        @hookimpl
        def nasframe_register_search_spaces(self, register):
            register("slash", SlashSpace, description="the tiny space, '/' in its genotype strings")

    host = make_plugin_manager(plugins=[("tiny", tiny), ("slash", Plugin())])
    data = {"run.device": "cpu", "run.batch_size": 8, "dataset.name": "synthetic", "dataset.n_train": 48,
            "dataset.n_test": 16, "dataset.image_size": 8, "search_space.name": "slash"}
    rs = config(**data, **{"optimizer.name": "rs", "optimizer.evaluations": 2, "optimizer.train_epochs": 1})
    result = execute(rs, host, out=tmp_path / "rs", quiet=True)
    assert [h["status"] for h in result["history"]] == ["ok", "ok"] and "/" in result["history"][0]["genotype"]

    cfg = config(**data, **{"run.epochs": 1})
    cfg.command, cfg.genotype = "train", "0-1:conv_3x3/0-2:skip_connect/1-2:avg_pool_3x3"
    result = execute(cfg, host, out=tmp_path / "train", quiet=True)
    assert result["genotype"] == cfg.genotype
    cfg.genotype = str(tmp_path / "no" / "such" / "run")
    with pytest.raises(NasframeError, match="no such run directory or file, nor a genotype string of an installed"):
        execute(cfg, host, out=tmp_path / "train2", quiet=True)
    # a '/' string of another installed space: the hint names the space, not a missing file
    cfg.genotype, cfg.search_space.name = "0-1:conv_3x3/0-2:skip_connect/1-2:avg_pool_3x3", "tiny"
    with pytest.raises(NasframeError, match="but of the 'slash' space: add --search-space slash"):
        execute(cfg, host, out=tmp_path / "train3", quiet=True)
