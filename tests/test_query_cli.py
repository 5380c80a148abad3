"""`nasframe query nasbench201 ARCH`: the looked-up metrics of one architecture, and bad input."""
from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest

from nasframe_core.cli import main
from nasframe_core.errors import NasframeError
from nasframe_spaces.nasbench201.space import ENV_TABLE
from nasframe_spaces.nasbench201.tables import load_nb201_table

ALL_SKIP = "|skip_connect~0|+|skip_connect~0|skip_connect~1|+|skip_connect~0|skip_connect~1|skip_connect~2|"
BEST_C10 = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_1x1~2|"
LAST = "|nor_conv_1x1~0|+|none~0|nor_conv_1x1~1|+|none~0|nor_conv_1x1~1|nor_conv_1x1~2|"  # index 15624


def query(capsys, *args: str) -> tuple[int, str, str]:
    code = main(["query", "nasbench201", *args])
    out, err = capsys.readouterr()
    return code, out, err


def query_json(capsys, *args: str) -> dict:
    code, out, err = query(capsys, *args, "--json")
    assert (code, err) == (0, "")
    return json.loads(out)


def lines_of(out: str) -> dict[str, str]:
    return {line.split()[0]: line.split(None, 1)[1] for line in out.splitlines()}


def test_all_skip_cell_text(capsys, nb201_csv):
    code, out, err = query(capsys, ALL_SKIP, "--benchmark", str(nb201_csv))
    assert (code, err) == (0, "")
    shown = lines_of(out)
    assert shown["arch"] == ALL_SKIP and shown["index"] == "1835" and shown["dataset"] == "cifar10"
    assert shown["test_accuracy"].startswith("54.30  (") and "cifar10's test" in shown["test_accuracy"]
    assert shown["valid_accuracy"].startswith("39.77  (") and "cifar10-valid's validation" in shown["valid_accuracy"]
    assert shown["params_mb"].startswith("0.073306  (")
    assert list(shown) == ["arch", "index", "dataset", "valid_accuracy", "test_accuracy", "params_mb"]


def test_best_cell_by_index_text(capsys, nb201_csv):
    code, out, err = query(capsys, "6111", "--benchmark", str(nb201_csv))
    assert (code, err) == (0, "")
    shown = lines_of(out)
    assert shown["arch"] == BEST_C10 and shown["index"] == "6111"
    assert shown["test_accuracy"].split()[0] == "94.37" and shown["valid_accuracy"].split()[0] == "91.61"


@pytest.mark.parametrize("index, arch", [(1835, ALL_SKIP), (6111, BEST_C10), (15624, LAST)],
                         ids=["1835", "6111", "15624"])
def test_json_round_trip_by_index_and_by_string(capsys, nb201_csv, table, index, arch):
    by_index = query_json(capsys, str(index), "--benchmark", str(nb201_csv))
    assert by_index["arch"] == arch == table.arch_of(index).to_str() and by_index["index"] == index
    assert by_index["dataset"] == "cifar10" and by_index["benchmark"] == str(nb201_csv)
    by_string = query_json(capsys, by_index["arch"], "--benchmark", str(nb201_csv))
    assert by_string == by_index
    assert by_index["metrics"] == {
        "valid_accuracy": table.query(index, "cifar10-valid", "valid_accuracy"),
        "test_accuracy": table.query(index, "cifar10", "test_accuracy"),
        "params_mb": table.query(index, "cifar10", "params_mb"),
    }
    if index == 1835:
        assert round(by_index["metrics"]["test_accuracy"], 2) == 54.30
        assert round(by_index["metrics"]["valid_accuracy"], 2) == 39.77
    if index == 6111:
        assert round(by_index["metrics"]["test_accuracy"], 2) == 94.37


def test_table_from_the_environment_and_other_datasets(capsys, monkeypatch, nb201_csv, tmp_path):
    monkeypatch.setenv(ENV_TABLE, str(nb201_csv))
    data = query_json(capsys, "1835", "--dataset", "cifar100")
    assert data["benchmark"] == str(nb201_csv) and data["arch"] == ALL_SKIP
    assert round(data["metrics"]["test_accuracy"], 2) == 15.61 and round(data["metrics"]["valid_accuracy"], 2) == 15.03
    code, out, err = query(capsys, ALL_SKIP, "--dataset", "imagenet16-120")
    assert (code, err) == (0, "")
    assert lines_of(out)["test_accuracy"].split()[0] == "16.32"
    assert "x-test" in lines_of(out)["test_accuracy"]
    # --benchmark wins over the environment
    monkeypatch.setenv(ENV_TABLE, str(tmp_path / "nowhere.csv"))
    assert query_json(capsys, "6111", "--benchmark", str(nb201_csv))["index"] == 6111


def test_describe_arch_and_metric_notes(table):
    assert table.describe_arch(ALL_SKIP) == {"arch": ALL_SKIP, "index": 1835}
    assert table.describe_arch(1835) == table.describe_arch(" 1835 ") == table.describe_arch((1,) * 6)
    notes = table.metric_notes("cifar10")
    assert "cifar10-valid" in notes["valid_accuracy"] and "select" in notes["valid_accuracy"]
    assert "cifar10's test" in notes["test_accuracy"] and "report" in notes["test_accuracy"]
    assert "classifier" in notes["params_mb"]
    assert all(isinstance(v, str) and v and "\n" not in v for v in notes.values())
    assert "derived" in table.metric_notes("CIFAR100")["valid_accuracy"]
    assert "approximate" in table.metric_notes("imagenet16")["valid_accuracy"]
    with pytest.raises(NasframeError):
        table.metric_notes("imagenet")
    with pytest.raises(NasframeError):
        table.describe_arch("15625")


def test_table_without_an_index_order(capsys, tmp_path):
    path = tmp_path / "nb201_cifar10_full_training.pickle"
    result = {"eval_acc1es": [30.0, 39.77], "eval_losses": [2.0, 1.7], "cost_info": {"params": 0.073306}}
    path.write_bytes(pickle.dumps({ALL_SKIP: {"cifar10-valid": result}}))
    assert load_nb201_table(path).describe_arch(ALL_SKIP) == {"arch": ALL_SKIP, "index": None}
    data = query_json(capsys, ALL_SKIP, "--benchmark", str(path))
    assert data["index"] is None
    assert data["metrics"] == {"valid_accuracy": 39.77, "valid_loss": 1.7, "params_mb": 0.073306}
    code, out, err = query(capsys, ALL_SKIP, "--benchmark", str(path))
    assert (code, err) == (0, "") and "index" not in lines_of(out)
    assert "eval_acc1es" in lines_of(out)["valid_accuracy"]
    code, out, err = query(capsys, "1835", "--benchmark", str(path))
    assert code != 0 and out == "" and "index order" in err


# ------------------------------------------------------------------------ bad input
def truncated(nb201_csv: Path, path: Path, mid_line: bool = False) -> Path:
    """A copy of the table cut after a third of its lines (or 40 bytes into the next line)."""
    data = nb201_csv.read_bytes()
    cut = data.index(b"\n", len(data) // 3) + 1
    path.write_bytes(data[: cut + 40] if mid_line else data[:cut])
    return path


BAD = [
    ("malformed arch", ["|skip_connect~0|+|skip_connect~0|"], "malformed NB201 arch string"),
    ("wrong source", [ALL_SKIP.replace("~2|", "~1|")], "should read 'op~2'"),
    ("unknown op", [ALL_SKIP.replace("skip_connect~0|+", "conv_3x3~0|+", 1)], "unknown NB201 op 'conv_3x3'"),
    ("index too big", ["15625"], "NB201 index 15625 is out of range"),
    ("negative index", ["-1"], "NB201 index -1 is out of range"),
    ("unknown dataset", ["1835", "--dataset", "imagenet"], "unknown NB201 dataset 'imagenet'"),
    ("missing table", ["1835", "--benchmark", "{tmp}/absent.csv"], "absent.csv not found"),
    ("truncated table", ["1835", "--benchmark", "{truncated}"], "truncated"),
    ("table cut mid-line", ["1835", "--benchmark", "{cut}"], "truncated"),
    ("empty table", ["1835", "--benchmark", "{empty}"], "empty"),
    ("no table", ["1835"], f"pass --benchmark PATH or set {ENV_TABLE}"),
]


@pytest.mark.parametrize("what, args, needle", BAD, ids=[b[0] for b in BAD])
def test_bad_input_gives_one_error_line(capsys, nb201_csv, tmp_path, what, args, needle):
    (tmp_path / "empty.csv").write_bytes(b"")
    paths = {
        "tmp": str(tmp_path),
        "truncated": str(truncated(nb201_csv, tmp_path / "nb201_200ep.csv")),
        "cut": str(truncated(nb201_csv, tmp_path / "cut.csv", mid_line=True)),
        "empty": str(tmp_path / "empty.csv"),
    }
    args = [a.format(**paths) for a in args]
    if "--benchmark" not in args and what != "no table":
        args += ["--benchmark", str(nb201_csv)]
    code, out, err = query(capsys, *args)
    assert code != 0 and out == ""
    assert err.endswith("\n") and err.count("\n") == 1, err
    assert err.startswith("nasframe: error: ") and needle in err and "Traceback" not in err


def test_unknown_benchmark_name(capsys):
    code = main(["query", "nasbench101", "1"])
    out, err = capsys.readouterr()
    assert code != 0 and out == "" and err.count("\n") == 1
    assert err.startswith("nasframe: error: ") and "'nasbench101'" in err and "nasbench201" in err


def test_installed_command(nb201_csv, tmp_path):
    """The console script itself: a truncated table from the environment, one line, no traceback."""
    exe = Path(sys.executable).with_name("nasframe")
    env = {**os.environ, ENV_TABLE: str(truncated(nb201_csv, tmp_path / "nb201_200ep.csv"))}
    proc = subprocess.run([str(exe), "query", "nasbench201", "1835", "--json"], capture_output=True, text=True,
                          env=env, timeout=120)
    assert proc.returncode != 0 and proc.stdout == ""
    err = proc.stderr
    assert err.count("\n") == 1 and err.startswith("nasframe: error: ") and "Traceback" not in err
    assert "truncated" in err and "nb201_200ep.csv" in err
