"""`nasframe run` end to end: outputs, resume, refusals and bad input."""
from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from nasframe_core.cli import main
from nasframe_core.config import Config
from nasframe_core.engine import execute
from nasframe_core.errors import DivergenceError, NasframeError
from nasframe_core.hookspecs import hookimpl
from nasframe_core.plugins import make_plugin_manager
from nasframe_core.rundir import RunDir

from conftest import nasframe_in_process

BASE = ["--set", "search_space.C=4", "--set", "search_space.N=1", "--batch-size", "8", "--device", "cpu", "--quiet"]
TINY = ["--dataset", "synthetic", "--set", "dataset.n_train=64", "--set", "dataset.n_test=16",
        "--set", "dataset.image_size=8", *BASE]


def nasframe(*args: str, env=None, timeout=300) -> subprocess.CompletedProcess:
    full_env = {k: v for k, v in os.environ.items() if k != "NASFRAME_NB201"}
    full_env.update(env or {})
    return subprocess.run([sys.executable, "-m", "nasframe_core.cli", *args], capture_output=True, text=True,
                          env=full_env, timeout=timeout)


def one_error_line(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode != 0, proc.stdout + proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert "Traceback" not in proc.stderr, proc.stderr
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("nasframe: error:"), lines[0]
    return lines[0]


def test_run_writes_the_run_directory(tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["run", *TINY, "--epochs", "2", "--steps-per-epoch", "3", "--out", str(out)])
    assert code == 0
    for name in ("config.yaml", "log.txt", "metrics.jsonl", "checkpoint.pt", "result.json"):
        assert (out / name).is_file(), name
    lines = [json.loads(l) for l in (out / "metrics.jsonl").read_text().splitlines()]
    assert [m["epoch"] for m in lines] == [1, 2]  # counted from 1, as on the console
    for m in lines:
        for key in ("train_loss", "train_acc", "val_loss", "val_acc", "lr", "alphas", "genotype", "seconds"):
            assert key in m, key
        assert "test_statistics" in m
        rows = m["alphas"]["cell"]
        assert len(rows) == 6 and all(abs(sum(r) - 1) < 1e-5 for r in rows)  # softmaxed per edge
    assert lines[0]["lr"] == pytest.approx(0.025)
    assert lines[1]["lr"] == pytest.approx(0.001 + 0.5 * 0.024 * (1 + torch.cos(torch.tensor(torch.pi / 2)).item()))
    result = json.loads((out / "result.json").read_text())
    assert result["genotype"].startswith("|") and result["genotype"].count("~") == 6
    assert isinstance(result["alphas"], list) and len(result["alphas"][0]) == 6 and len(result["alphas"][0][0]) == 5
    assert result["params_millions"] > 0
    assert "test_statistics" in result
    runtime = result["runtime"]  # what decides the last digits of the sums, and so the path
    assert runtime["torch"] == torch.__version__ and runtime["threads"] == torch.get_num_threads()
    assert runtime["native_kernels"] == "on" or runtime["native_kernels"].startswith(("off (", "not used"))
    # (this in-process run sets the allocator for the rest of the test session; test_memory.py
    # checks the setting itself in fresh processes)
    assert runtime["allocator"].startswith(("freed memory", "C library defaults", "as the environment sets it"))
    cfg = (out / "config.yaml").read_text()
    assert "learning_rate: 0.025" in cfg and "epochs: 2" in cfg
    assert "epoch 2/2" in (out / "log.txt").read_text()


def test_same_seed_same_result_and_different_seed_differs(tmp_path):
    results = []
    for name, seed in (("a", "3"), ("b", "3"), ("c", "4")):
        assert main(["run", *TINY, "--epochs", "1", "--steps-per-epoch", "3", "--seed", seed,
                     "--out", str(tmp_path / name)]) == 0
        results.append(json.loads((tmp_path / name / "result.json").read_text())["alphas"])
    assert results[0] == results[1]
    assert results[0] != results[2]


def test_out_refuses_an_existing_run_and_changes_nothing(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["run", *TINY, "--epochs", "1", "--steps-per-epoch", "1", "--out", str(out)]) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    proc = nasframe_in_process(capsys, "run", *TINY, "--epochs", "1", "--steps-per-epoch", "1", "--out", str(out))
    line = one_error_line(proc)
    assert "--resume" in line and str(out) in line
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_the_resume_hint_can_be_pasted_into_a_shell(tmp_path):
    out = tmp_path / "my runs" / "first"
    out.mkdir(parents=True)
    (out / "config.yaml").write_text("command: run\n")
    with pytest.raises(NasframeError) as err:
        RunDir.check_new(out)
    hint = str(err.value).split("--resume ", 1)[1].split(" or pick", 1)[0]
    assert shlex.split(hint) == [str(out)]


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--dataset", "nope"], "unknown dataset 'nope'; installed:"),
        (["--optimizer", "nope"], "unknown optimizer 'nope'; installed: asha, beta_darts, darts, darts_minus, drnas, fair_darts, gdas, hyperband, ls, pc_darts, re, reinforce, rs, sdarts, sh"),
        (["--search-space", "nope"], "unknown search space 'nope'; installed:"),
        (["--set", "run.nope=1"], "unknown config key 'run.nope'"),
        (["--set", "run.epochs=many"], "'run.epochs' must be a whole number"),
        (["--set", "optimizer.lr=0.1"], "unknown setting 'lr'"),
        (["--set", "optimizer.unrolled=maybe"], "must be true or false"),
        (["--set", "bogus.key=1"], "unknown config key 'bogus.key'"),
        (["--epochs", "0"], "--epochs must be at least 1"),
        (["--config", "/nonexistent/c.yaml"], "config file /nonexistent/c.yaml not found"),
        (["--dataset", "cifar10", "--data-dir", "/nonexistent/cifar"], "--data-dir /nonexistent/cifar does not exist"),
        (["--benchmark", "/nonexistent/nb201.csv"], "/nonexistent/nb201.csv"),
        (["--set", "optimizer.arch_optimizer=LBFGS"], "LBFGS needs a closure"),
        (["--set", "optimizer.op_optimizer=Nope"], "unknown op_optimizer 'Nope'"),
        (["--set", "train.learning_rate=0.1"], "applies to nasframe train only"),
        (["--set", "run.train_portion=1.0"], "must be above 0 and below 1"),
        (["--batch-size", "4096"], "smaller than one batch"),
    ],
)
def test_bad_input_is_one_line(tmp_path, capsys, args, needle):
    out = tmp_path / "run"
    base = BASE if "--dataset" in args else TINY
    proc = nasframe_in_process(capsys, "run", *base, "--epochs", "1", *args, "--out", str(out))
    assert needle in one_error_line(proc)
    assert not out.exists()  # settings are checked before the run directory is created


def test_bad_input_in_a_fresh_process_is_one_line_and_exit_2(tmp_path):
    """The command itself, as a shell runs it: one line on stderr, nothing on stdout, status 2."""
    out = tmp_path / "run"
    proc = nasframe("run", *TINY, "--epochs", "1", "--optimizer", "nope", "--out", str(out))
    assert "unknown optimizer 'nope'" in one_error_line(proc)
    assert proc.returncode == 2 and proc.stdout == "" and not out.exists()


def test_bad_config_file_names_the_file(tmp_path, capsys):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("run: {epochs: [1, 2\n")
    run = ("run", *TINY, "--config", str(cfg), "--out", str(tmp_path / "r"))
    assert str(cfg) in one_error_line(nasframe_in_process(capsys, *run))
    cfg.write_text("run:\n  epochz: 3\n")
    assert "run.epochz" in one_error_line(nasframe_in_process(capsys, *run))


def test_config_file_toml_and_yaml_then_flags_then_set(tmp_path):
    from nasframe_core.cli import build_parser, config_from_args

    host = make_plugin_manager()
    toml = tmp_path / "c.toml"
    toml.write_text('[run]\nepochs = 7\nseed = 5\n[optimizer]\nname = "darts"\nunrolled = true\n')
    args = build_parser(host).parse_args(["run", "--config", str(toml), "--seed", "9", "--set", "run.lr_min=0"])
    cfg = config_from_args(host, args, "run")
    assert (cfg.run.epochs, cfg.run.seed, cfg.run.lr_min) == (7, 9, 0.0)
    # the file's value over the recipe's (DARTS on NB201: NB201's own DARTS config)
    assert cfg.optimizer.settings["unrolled"] is True and cfg.recipe["name"] == "nb201"
    assert cfg.optimizer.settings["nesterov"] is True
    yaml = tmp_path / "c.yaml"
    yaml.write_text("search_space: {name: darts, C: 8}\nrun: {batch_size: 16}\n")
    cfg = config_from_args(host, build_parser(host).parse_args(["run", "--config", str(yaml)]), "run")
    assert cfg.search_space.name == "darts" and cfg.search_space.settings == {"C": 8} and cfg.run.batch_size == 16


def test_unwritable_run_directory(tmp_path, capsys):
    if os.geteuid() == 0:
        target = Path("/proc/nasframe-run")  # not creatable even for root
    else:
        locked = tmp_path / "locked"
        locked.mkdir()
        locked.chmod(0o500)
        target = locked / "run"
    line = one_error_line(nasframe_in_process(capsys, "run", *TINY, "--epochs", "1", "--out", str(target)))
    assert "cannot write the run directory" in line


def test_truncated_checkpoint_on_resume_names_the_file(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["run", *TINY, "--epochs", "2", "--steps-per-epoch", "1", "--out", str(out)]) == 0
    ckpt = out / "checkpoint.pt"
    ckpt.write_bytes(ckpt.read_bytes()[: ckpt.stat().st_size // 2])
    truncated = ckpt.read_bytes()
    metrics = (out / "metrics.jsonl").read_bytes()
    line = one_error_line(nasframe_in_process(capsys, "run", "--resume", str(out), "--epochs", "3"))
    assert str(ckpt) in line and "truncated or corrupt" in line
    assert ckpt.read_bytes() == truncated and (out / "metrics.jsonl").read_bytes() == metrics


def test_resume_refuses_changing_flags(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["run", *TINY, "--epochs", "1", "--steps-per-epoch", "1", "--out", str(out)]) == 0
    line = one_error_line(nasframe_in_process(capsys, "run", "--resume", str(out), "--seed", "3"))
    assert "--seed cannot change a run being resumed" in line
    assert "no such run directory" in one_error_line(nasframe_in_process(capsys, "run", "--resume", str(tmp_path / "none")))


def test_resume_extends_a_finished_run_like_a_longer_run(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    common = [*TINY, "--steps-per-epoch", "2", "--seed", "1", "--set", "run.scheduler=constant"]
    assert main(["run", *common, "--epochs", "3", "--out", str(a)]) == 0
    assert main(["run", *common, "--epochs", "2", "--out", str(b)]) == 0
    assert main(["run", "--resume", str(b), "--epochs", "3", "--quiet"]) == 0
    assert "epochs: 3" in (b / "config.yaml").read_text()  # the resumed length is recorded
    ra, rb = (json.loads((d / "result.json").read_text()) for d in (a, b))
    assert ra["alphas"] == rb["alphas"] and ra["genotype"] == rb["genotype"]
    ma = [json.loads(l) for l in (a / "metrics.jsonl").read_text().splitlines()]
    mb = [json.loads(l) for l in (b / "metrics.jsonl").read_text().splitlines()]
    assert [m["train_loss"] for m in ma] == [m["train_loss"] for m in mb]


def test_sigkill_during_an_epoch_then_resume_matches_uninterrupted(tmp_path):
    """A real subprocess is killed with SIGKILL mid-epoch; the resumed run ends identically."""
    args = [*TINY, "--set", "dataset.n_train=256", "--epochs", "4", "--steps-per-epoch", "12", "--seed", "2"]
    full, killed = tmp_path / "full", tmp_path / "killed"
    assert nasframe("run", *args, "--out", str(full)).returncode == 0

    env = {k: v for k, v in os.environ.items() if k != "NASFRAME_NB201"}
    proc = subprocess.Popen([sys.executable, "-m", "nasframe_core.cli", "run", *args, "--out", str(killed)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    metrics = killed / "metrics.jsonl"
    deadline = time.time() + 240
    while time.time() < deadline:
        if metrics.is_file() and len(metrics.read_text().splitlines()) >= 2:
            break
        if proc.poll() is not None:
            pytest.fail(f"the run ended before it could be killed: {proc.stderr.read()}")
        time.sleep(0.02)
    time.sleep(0.3)  # well inside the third epoch
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert not (killed / "result.json").exists()
    done = len(metrics.read_text().splitlines())
    assert 2 <= done < 4

    resumed = nasframe("run", "--resume", str(killed), "--quiet")
    assert resumed.returncode == 0, resumed.stderr
    r_full = json.loads((full / "result.json").read_text())
    r_killed = json.loads((killed / "result.json").read_text())
    assert r_killed["alphas"] == r_full["alphas"]  # bit for bit on the CPU
    assert r_killed["genotype"] == r_full["genotype"]
    assert len((killed / "metrics.jsonl").read_text().splitlines()) == 4


class _Poison:
    """An observer that turns the weights to NaN as the second epoch starts."""

    @hookimpl
    def nasframe_epoch_start(self, run, epoch):
        if epoch == 1:
            with torch.no_grad():
                for p in run.optimizer.graph.weights():
                    p.fill_(float("nan"))


def test_divergence_stops_with_a_clear_message_and_keeps_the_last_good_checkpoint(tmp_path):
    host = make_plugin_manager(plugins=[("poison", _Poison())])
    cfg = Config()
    for a, b in zip(TINY[::2], TINY[1::2]):
        if a == "--set":
            cfg.set(*b.split("=", 1))
    cfg.set("dataset.name", "synthetic")
    cfg.set("run.batch_size", 8)
    cfg.set("run.device", "cpu")
    cfg.set("run.epochs", 3)
    cfg.set("run.steps_per_epoch", 2)
    out = tmp_path / "run"
    with pytest.raises(DivergenceError) as info:
        execute(cfg, host, out=out, quiet=True)
    msg = str(info.value)
    assert "nan" in msg and "epoch 2" in msg and str(out) in msg
    ckpt = torch.load(out / "checkpoint.pt", weights_only=True)
    assert ckpt["epoch"] == 1
    assert all(torch.isfinite(t).all() for t in ckpt["state"]["model"].values() if t.is_floating_point())
    assert not (out / "result.json").exists()


def test_nb201_search_reports_benchmark_accuracy_per_epoch(tmp_path, nb201_csv):
    out = tmp_path / "run"
    assert main(["run", *TINY, "--epochs", "2", "--steps-per-epoch", "2", "--benchmark", str(nb201_csv),
                 "--set", "search_space.table_dataset=cifar10", "--out", str(out)]) == 0
    from nasframe_spaces.nasbench201.codec import NB201Genotype
    from nasframe_spaces.nasbench201.tables import load_nb201_table

    table = load_nb201_table(nb201_csv)
    for m in (json.loads(l) for l in (out / "metrics.jsonl").read_text().splitlines()):
        expected = table.query(NB201Genotype.from_str(m["genotype"]), "cifar10", "test_accuracy")
        assert m["test_statistics"] == pytest.approx(expected)
        assert m["benchmark"]["test_accuracy"] == pytest.approx(expected)
        assert m["benchmark"]["dataset"] == "cifar10"
    result = json.loads((out / "result.json").read_text())
    assert result["test_statistics"] == pytest.approx(
        table.query(NB201Genotype.from_str(result["genotype"]), "cifar10", "test_accuracy"))


def test_show_and_plot(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["run", *TINY, "--epochs", "2", "--steps-per-epoch", "1", "--out", str(out)]) == 0
    capsys.readouterr()
    assert main(["show", str(out)]) == 0
    text = capsys.readouterr().out
    assert "epochs     2 of 2" in text and "genotype" in text
    assert main(["show", str(out), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["finished"] and info["epochs_done"] == 2
    assert main(["plot", str(out)]) == 0
    written = capsys.readouterr().out.split()
    assert {Path(p).name for p in written} == {"alphas.png", "cell.png"}
    for p in written:
        assert Path(p).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


class _Reporter:
    """A plugin of its own using every reporting hook: a figure derived from each epoch, said on
    the epoch's line, in result.json, in the final lines and by `show`, and drawn by `plot`."""

    @hookimpl
    def nasframe_epoch_metrics(self, run, epoch, metrics):
        return {"loss_gap": metrics["val_loss"] - metrics["train_loss"]}

    @hookimpl
    def nasframe_epoch_line(self, metrics):
        return f"loss gap {metrics['loss_gap']:.3f}"

    @hookimpl
    def nasframe_result_entries(self, run, genotype, result):
        assert "benchmark" in result and "optimizer" not in result  # the common entries come first
        return {"gaps_seen": run.epoch + 1, "found": str(genotype)}

    @hookimpl
    def nasframe_summary_lines(self, result, last_epoch):
        if "gaps_seen" in result:
            return [f"loss gap measured over {result['gaps_seen']} epochs"]
        return None

    @hookimpl
    def nasframe_plot_run(self, run_dir, metrics, out):
        path = out / "gap.txt"
        path.write_text(" ".join(str(m["loss_gap"]) for m in metrics) + "\n")
        return [path]


def test_a_plugin_reports_through_every_reporting_hook(tmp_path, capsys, monkeypatch):
    host = make_plugin_manager(plugins=[("reporter", _Reporter())])
    monkeypatch.setattr("nasframe_core.cli.make_plugin_manager", lambda: host)
    out = tmp_path / "run"
    assert main(["run", *TINY, "--epochs", "2", "--steps-per-epoch", "1", "--out", str(out)]) == 0
    final = capsys.readouterr().out.splitlines()
    assert final[0].startswith("found architecture: ") and "loss gap measured over 2 epochs" in final
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    for m in metrics:
        keys = list(m)
        assert m["loss_gap"] == pytest.approx(m["val_loss"] - m["train_loss"])
        assert keys.index("alphas") < keys.index("loss_gap") < keys.index("test_statistics")
    lines = [line for line in (out / "log.txt").read_text().splitlines() if "/2: train loss" in line]
    assert len(lines) == 2 and all("loss gap " in line and "smallest edge margin " in line for line in lines)
    result = json.loads((out / "result.json").read_text())
    keys = list(result)
    assert result["gaps_seen"] == 2 and result["found"] == result["genotype"] and "edge_margins" in result
    assert keys.index("benchmark") < keys.index("gaps_seen") < keys.index("optimizer")

    assert main(["show", str(out)]) == 0
    shown = capsys.readouterr().out.splitlines()
    assert "loss gap measured over 2 epochs" in shown and any(line.startswith("edge margins") for line in shown)
    assert main(["plot", str(out)]) == 0
    written = {Path(p).name for p in capsys.readouterr().out.split()}
    assert written == {"gap.txt", "alphas.png", "cell.png"}
    assert (out / "plots" / "gap.txt").read_text().split() == [str(m["loss_gap"]) for m in metrics]


@pytest.mark.parametrize("command", ["show", "plot"])
def test_show_and_plot_in_a_fresh_process_name_a_missing_run(tmp_path, command):
    """The commands themselves, as a shell runs them: one line on stderr, status 2."""
    missing = tmp_path / "no-such-run"
    proc = nasframe(command, str(missing))
    assert str(missing) in one_error_line(proc)
    assert proc.returncode == 2 and proc.stdout == ""


def test_a_damaged_benchmark_table_fails_before_any_epoch(tmp_path, capsys):
    bad = tmp_path / "nb201.csv"
    bad.write_text("a,b\n1,2\n")
    out = tmp_path / "run"
    line = one_error_line(nasframe_in_process(capsys, "run", *TINY, "--epochs", "1", "--benchmark", str(bad), "--out", str(out)))
    assert str(bad) in line
    assert not (out / "checkpoint.pt").exists() and not (out / "metrics.jsonl").exists()


def test_names_and_values_users_type(tmp_path):
    host = make_plugin_manager()
    assert host.get("dataset", "imagenet16-120").name == "ImageNet16-120"  # case-insensitive when unique
    from nasframe_core.cli import build_parser, config_from_args

    cfg = config_from_args(host, build_parser(host).parse_args(
        ["run", "--set", "optimizer.grad_clip=2.5", "--set", "optimizer.unrolled=yes"]), "run")
    assert (cfg.optimizer.settings["grad_clip"], cfg.optimizer.settings["unrolled"]) == (2.5, True)
    cfg = config_from_args(host, build_parser(host).parse_args(["train", "--set", "genotype=0"]), "train")
    assert cfg.genotype == "0"


def test_a_table_from_the_environment_without_the_run_s_dataset_is_named_at_the_end(tmp_path, nb201_csv, capsys,
                                                                                      monkeypatch):
    """NASFRAME_NB201 set, a search on another dataset: the run says why it has no benchmark accuracy,
    instead of asking for the --benchmark it could not use."""
    monkeypatch.setenv("NASFRAME_NB201", str(nb201_csv))
    out = tmp_path / "run"
    assert main(["run", *TINY, "--epochs", "1", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "no benchmark accuracy: the nasbench201 table has no results for dataset 'synthetic'" in printed
    assert "pass --benchmark PATH" not in printed
    notices = json.loads((out / "result.json").read_text())["runtime"]["notices"]
    assert any("the table (from the environment) is not used for this run" in n for n in notices)
