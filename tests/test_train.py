"""`nasframe train`: a found genotype trained from scratch."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from nasframe_core.cli import build_parser, config_from_args, main
from nasframe_core.engine import execute
from nasframe_core.hookspecs import hookimpl
from nasframe_core.plugins import make_plugin_manager
from nasframe_spaces.darts.genotype import DARTS_V2

from conftest import nasframe_in_process

DATA = ["--dataset", "synthetic", "--set", "dataset.n_train=48", "--set", "dataset.n_test=16",
        "--set", "dataset.image_size=8", "--device", "cpu", "--quiet"]
DARTS_SMALL = ["--search-space", "darts", "--set", "search_space.C=4", "--set", "search_space.layers=3"]


def cli(*args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "NASFRAME_NB201"}
    return subprocess.run([sys.executable, "-m", "nasframe_core.cli", *args], capture_output=True, text=True,
                          env=env, timeout=300)


def test_darts_recipe_is_the_default_and_overridable():
    host = make_plugin_manager()
    args = build_parser(host).parse_args(["train", "--search-space", "darts", "--genotype", str(DARTS_V2)])
    cfg = config_from_args(host, args, "train")
    run, hp = cfg.run, cfg.train
    assert (run.epochs, run.batch_size, hp.learning_rate, hp.auxiliary_weight, hp.drop_path_prob) == (
        600, 96, 0.025, 0.4, 0.2)
    assert cfg.augment.cutout == 16 and run.lr_min == 0.0 and hp.grad_clip == 5.0
    assert cfg.search_space.settings == {"C": 36, "layers": 20, "auxiliary": True}
    args = build_parser(host).parse_args(["train", "--search-space", "darts", "--genotype", str(DARTS_V2),
                                          "--epochs", "7", "--set", "train.drop_path_prob=0", "--set", "search_space.C=16"])
    cfg = config_from_args(host, args, "train")
    assert cfg.run.epochs == 7 and cfg.train.drop_path_prob == 0.0 and cfg.search_space.settings["C"] == 16
    args = build_parser(host).parse_args(["train", "--search-space", "nasbench201", "--genotype", "0"])
    cfg = config_from_args(host, args, "train")
    assert (cfg.run.epochs, cfg.run.batch_size, cfg.train.learning_rate, cfg.train.nesterov) == (200, 256, 0.1, True)


def test_genotype_of_a_finished_search_trains_and_reports(tmp_path, capsys):
    search = tmp_path / "search"
    assert main(["run", *DARTS_SMALL, *DATA, "--batch-size", "8", "--epochs", "1", "--steps-per-epoch", "2",
                 "--out", str(search)]) == 0
    found = json.loads((search / "result.json").read_text())["genotype"]
    train = tmp_path / "train"
    assert main(["train", *DARTS_SMALL, *DATA, "--genotype", str(search), "--epochs", "2", "--batch-size", "8",
                 "--out", str(train)]) == 0
    result = json.loads((train / "result.json").read_text())
    assert result["genotype"] == found
    assert isinstance(result["params"], int) and result["params"] > 0
    lines = [json.loads(l) for l in (train / "metrics.jsonl").read_text().splitlines()]
    # the final epoch's accuracy over the 16 test images: a whole number of them
    assert result["test_acc"] == lines[-1]["test_acc"]
    assert result["test_acc"] * 16 / 100 == pytest.approx(round(result["test_acc"] * 16 / 100), abs=1e-6)
    assert [m["epoch"] for m in lines] == [1, 2]  # counted from 1, as on the console
    assert lines[0]["drop_path_prob"] == 0.0 and lines[1]["drop_path_prob"] == pytest.approx(0.1)
    assert (train / "model.pt").is_file()
    assert "test accuracy" in capsys.readouterr().out


def test_published_genotype_string_trains(tmp_path):
    printed = str(DARTS_V2).replace("normal_concat=[2, 3, 4, 5]", "normal_concat=range(2, 6)")
    out = tmp_path / "t"
    assert main(["train", *DARTS_SMALL, *DATA, "--genotype", printed, "--epochs", "1", "--batch-size", "8",
                 "--steps-per-epoch", "2", "--out", str(out)]) == 0
    assert json.loads((out / "result.json").read_text())["genotype"] == str(DARTS_V2)


def test_nb201_genotype_trains_with_its_recipe(tmp_path):
    out = tmp_path / "t"
    arch = "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|"
    assert main(["train", "--search-space", "nasbench201", *DATA, "--genotype", arch, "--epochs", "1",
                 "--batch-size", "8", "--set", "search_space.C=4", "--set", "search_space.N=1", "--out", str(out)]) == 0
    result = json.loads((out / "result.json").read_text())
    assert result["genotype"] == arch and result["params"] > 0


class _Interrupt:
    @hookimpl
    def nasframe_epoch_start(self, run, epoch):
        if epoch == 1:
            raise KeyboardInterrupt


def test_training_resumes_exactly(tmp_path):
    common = [*DARTS_SMALL, *DATA, "--genotype", str(DARTS_V2), "--epochs", "2", "--batch-size", "8",
              "--steps-per-epoch", "3"]
    full = tmp_path / "full"
    assert main(["train", *common, "--out", str(full)]) == 0
    host = make_plugin_manager(plugins=[("interrupt", _Interrupt())])
    args = build_parser(host).parse_args(["train", *common])
    cfg = config_from_args(host, args, "train")
    part = tmp_path / "part"
    with pytest.raises(KeyboardInterrupt):
        execute(cfg, host, out=part, quiet=True)
    assert not (part / "result.json").exists()
    assert main(["train", "--resume", str(part), "--quiet"]) == 0
    a = [json.loads(l) for l in (full / "metrics.jsonl").read_text().splitlines()]
    b = [json.loads(l) for l in (part / "metrics.jsonl").read_text().splitlines()]
    for key in ("train_loss", "test_loss", "test_acc"):
        assert [m[key] for m in a] == [m[key] for m in b]


@pytest.mark.parametrize(
    "genotype, needle",
    [
        ("Genotype(normal=[('sep_conv_3x3', 0)", "genotype does not parse"),
        (str(DARTS_V2).replace("sep_conv_3x3", "conv_7x7", 1), "op 'conv_7x7', which the DARTS space lacks"),
        ("not a genotype", "genotype does not parse"),
    ],
)
def test_bad_genotype_is_one_line(tmp_path, capsys, genotype, needle):
    proc = nasframe_in_process(capsys, "train", *DARTS_SMALL, *DATA, "--genotype", genotype, "--epochs", "1", "--out", str(tmp_path / "t"))
    assert proc.returncode != 0
    lines = [l for l in proc.stderr.splitlines() if l.strip()]
    assert len(lines) == 1 and "Traceback" not in proc.stderr
    assert needle in lines[0]


def test_train_needs_a_genotype(tmp_path, capsys):
    proc = nasframe_in_process(capsys, "train", *DARTS_SMALL, *DATA, "--out", str(tmp_path / "t"))
    assert proc.returncode != 0 and "required: --genotype" in proc.stderr
    config = tmp_path / "c.yaml"  # a config file may hold the genotype; this one does not
    config.write_text("run: {epochs: 1}\n")
    proc = nasframe_in_process(capsys, "train", *DARTS_SMALL, *DATA, "--config", str(config), "--out", str(tmp_path / "t"))
    assert proc.returncode != 0 and "needs --genotype" in proc.stderr
    assert not (tmp_path / "t").exists()


def test_darts_v2_builds_the_published_size():
    from nasframe_core.train import count_parameters
    from nasframe_spaces import DartsSearchSpace

    net = DartsSearchSpace(C=36, layers=20, auxiliary=True).final_network(DARTS_V2, num_classes=10)
    # the paper's 3.3M is the original code's 3,349,342, counted without the auxiliary head
    assert count_parameters(net) == 3_349_342
    assert sum(p.numel() for p in net.parameters()) == 3_349_342 + 476_426


def test_space_of_the_recipe_comes_from_set_or_from_the_genotype_source(tmp_path, capsys):
    host = make_plugin_manager()
    args = build_parser(host).parse_args(["train", "--set", "search_space.name=darts", "--genotype", str(DARTS_V2)])
    cfg = config_from_args(host, args, "train")
    assert cfg.search_space.name == "darts" and cfg.run.epochs == 600 and cfg.search_space.settings["C"] == 36
    run_dir = tmp_path / "search"
    run_dir.mkdir()
    (run_dir / "result.json").write_text(json.dumps({"genotype": str(DARTS_V2), "search_space": "darts"}))
    cfg = config_from_args(host, build_parser(host).parse_args(["train", "--genotype", str(run_dir)]), "train")
    assert cfg.search_space.name == "darts" and cfg.train.auxiliary_weight == 0.4
    proc = nasframe_in_process(capsys, "train", "--search-space", "nasbench201", "--genotype", str(run_dir),
                          "--out", str(tmp_path / "t"))
    lines = [l for l in proc.stderr.splitlines() if l.strip()]
    assert proc.returncode != 0 and len(lines) == 1 and "comes from a 'darts' search" in lines[0]


def test_train_in_a_fresh_process_bad_genotype_is_one_line_and_exit_2(tmp_path):
    """The command itself, as a shell runs it: one line on stderr, nothing on stdout, status 2."""
    proc = cli("train", *DARTS_SMALL, *DATA, "--genotype", "not a genotype", "--epochs", "1",
               "--out", str(tmp_path / "t"))
    lines = [l for l in proc.stderr.splitlines() if l.strip()]
    assert len(lines) == 1 and "Traceback" not in proc.stderr
    assert lines[0].startswith("nasframe: error:") and "genotype does not parse" in lines[0]
    assert proc.returncode == 2 and proc.stdout == "" and not (tmp_path / "t").exists()
