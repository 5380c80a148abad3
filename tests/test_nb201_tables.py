"""NAS-Bench-201 tables: the real 200-epoch CSV, small files in every format, bad input."""
from __future__ import annotations

import bz2
import csv
import itertools
import os
import pickle
import random
import tarfile
from collections import OrderedDict
from pathlib import Path

import pytest

from nasframe_core.benchmark import Benchmark
from nasframe_core.errors import NasframeError
from nasframe_spaces.nasbench201.codec import OPS, NB201Genotype
from nasframe_spaces.nasbench201.tables import (
    NB201Table,
    load_nb201_table,
    normalize_dataset,
    resolve_arch,
)

ALL_SKIP = "|skip_connect~0|+|skip_connect~0|skip_connect~1|+|skip_connect~0|skip_connect~1|skip_connect~2|"
BEST_C10 = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_1x1~2|"
OTHER = "|avg_pool_3x3~0|+|nor_conv_1x1~0|skip_connect~1|+|nor_conv_1x1~0|skip_connect~1|skip_connect~2|"
ABSENT = "|none~0|+|none~0|none~1|+|none~0|none~1|none~2|"
FEW = (ALL_SKIP, BEST_C10, OTHER)

CSV_HEADER = [
    "index", "arch_str", "c10valid_valid_acc", "c10_test_acc", "c100_valid_acc_derived", "c100_test_acc",
    "in16_valid_acc_derived", "in16_test_acc", "c100_valtest_acc", "in16_valtest_acc", "c10valid_n_seeds",
    "c10valid_valid_acc_seeds", "c10_params_mb", "c100_params_mb", "in16_params_mb", "c10valid_train_time_s",
]


def single_line_error(excinfo, *needles: str) -> str:
    msg = str(excinfo.value)
    assert "\n" not in msg and msg.strip() == msg and msg
    for needle in needles:
        assert needle in msg, f"{needle!r} not in {msg!r}"
    return msg


def all_arch_strings() -> list[str]:
    return [
        f"|{a}~0|+|{b}~0|{c}~1|+|{d}~0|{e}~1|{f}~2|"
        for a, b, c, d, e, f in itertools.product(OPS, repeat=6)
    ]


def shuffled_archs(seed: int = 7) -> list[str]:
    archs = all_arch_strings()
    random.Random(seed).shuffle(archs)
    return archs


# ============================================================ the real 200-epoch CSV
@pytest.fixture(scope="module")
def real(nb201_csv) -> NB201Table:
    return load_nb201_table(nb201_csv)


def test_real_csv_is_a_lazy_benchmark(nb201_csv):
    table = load_nb201_table(str(nb201_csv))
    assert isinstance(table, NB201Table) and isinstance(table, Benchmark)
    assert table.format == "csv" and table.space == "nasbench201" and table.has_index
    assert table.datasets == ("cifar10-valid", "cifar10", "cifar100", "ImageNet16-120")
    assert table._loaded is False  # constructing reads nothing
    assert len(table) == 15625 and table._loaded


def test_real_csv_all_skip_cell_is_the_darts_collapse_row(real):
    assert real.index_of(ALL_SKIP) == 1835
    assert real.arch_of(1835) == NB201Genotype.from_str(ALL_SKIP)
    test = real.query(ALL_SKIP, "cifar10", "test_accuracy")
    assert test == pytest.approx(54.296667) and f"{test:.2f}" == "54.30"
    assert real.query(ALL_SKIP, "cifar10-valid", "valid_accuracy") == pytest.approx(39.769333)
    assert f"{real.query(1835, 'cifar10-valid', 'valid_accuracy'):.2f}" == "39.77"
    # the protocol: cifar10's valid number is the cifar10-valid selection number
    assert real.query(ALL_SKIP, "cifar10", "valid_accuracy") == pytest.approx(39.769333)
    assert real.query(ALL_SKIP, "cifar10-valid", "test_accuracy") is None
    assert real.query(ALL_SKIP, "cifar100", "valid_accuracy") == pytest.approx(15.033333)
    assert real.query(ALL_SKIP, "cifar100", "test_accuracy") == pytest.approx(15.606667)
    assert real.query(ALL_SKIP, "ImageNet16-120", "valid_accuracy") == pytest.approx(16.433333)
    assert real.query(ALL_SKIP, "imagenet16", "test_accuracy") == pytest.approx(16.322222)


def test_real_csv_best_cells_match_provenance(real):
    assert real.arch_of(6111).to_str() == BEST_C10
    assert real.query(6111, "cifar10", "test_accuracy") == pytest.approx(94.373333)
    assert f"{real.query('6111', 'cifar10', 'test_accuracy'):.2f}" == "94.37"
    assert real.query(BEST_C10, "cifar10-valid", "valid_accuracy") == pytest.approx(91.606667)
    assert round(real.query(6111, "cifar100", "test_accuracy"), 2) == 73.22
    assert round(real.query(6111, "ImageNet16-120", "test_accuracy"), 2) == 46.71
    assert real.query(9930, "cifar100", "test_accuracy") == pytest.approx(73.513333)
    assert real.query(9930, "cifar100", "valid_accuracy") == pytest.approx(73.493333)
    assert real.query(857, "imagenet16-120", "test_accuracy") == pytest.approx(47.311111)


def test_real_csv_other_metrics_and_missing_ones(real):
    c10v = real.query_all(ALL_SKIP, "cifar10-valid")
    assert c10v == pytest.approx({"valid_accuracy": 39.769333, "params_mb": 0.073306, "train_time_s": 574.05866})
    c10 = real.query_all(ALL_SKIP, "cifar10")
    assert c10 == pytest.approx({"valid_accuracy": 39.769333, "test_accuracy": 54.296667, "params_mb": 0.073306})
    assert real.query(ALL_SKIP, "cifar100", "params_mb") == pytest.approx(0.079156)
    assert real.query(ALL_SKIP, "ImageNet16-120", "params_mb") == pytest.approx(0.080456)
    for metric in ("train_accuracy", "train_loss", "valid_loss", "test_loss", "flops_m", "latency_s"):
        assert real.query(ALL_SKIP, "cifar10", metric) is None
    assert real.query(ALL_SKIP, "cifar100", "train_time_s") is None


def test_real_csv_index_round_trip_for_every_index(real):
    seen = set()
    for i in range(15625):
        g = real.arch_of(i)
        assert real.index_of(g) == i
        seen.add(g.op_indices)
    assert len(seen) == 15625
    assert real.arch_of(0).to_str() == OTHER  # NATS' 0-th architecture


def test_resolve_arch_forms(real):
    g = NB201Genotype.from_str(ALL_SKIP)
    assert resolve_arch(g) is g
    assert resolve_arch(ALL_SKIP) == g
    assert resolve_arch(f"  {ALL_SKIP} ") == g
    assert resolve_arch((1, 1, 1, 1, 1, 1)) == g
    assert resolve_arch([1, 1, 1, 1, 1, 1]) == g
    assert resolve_arch(1835, real) == g
    assert resolve_arch("1835", real) == g
    assert real.query((1, 1, 1, 1, 1, 1), "cifar10", "test_accuracy") == real.query(1835, "cifar10", "test_accuracy")


# ===================================================== small files in every format
def made_up(code: int, column: int) -> float:
    """The made-up number of a synthetic CSV: distinct per row and column."""
    return round(10 + column + (code % 997) / 1000, 6)


@pytest.fixture(scope="module")
def synthetic_csv(tmp_path_factory) -> tuple[Path, list[str]]:
    archs = shuffled_archs(seed=3)
    path = tmp_path_factory.mktemp("csv") / "made_up_200ep.csv"
    with open(path, "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(CSV_HEADER)
        for i, a in enumerate(archs):
            nums = [made_up(i, c) for c in range(2, 16)]
            nums[8] = 3  # n_seeds
            nums[9] = "1.0;2.0;3.0"  # per-seed string column
            w.writerow([i, a, *nums])
    return path, archs


def test_csv_small_values(synthetic_csv):
    path, archs = synthetic_csv
    table = load_nb201_table(path)
    col = {name: j for j, name in enumerate(CSV_HEADER)}
    for arch in FEW:
        i = archs.index(arch)
        assert table.index_of(arch) == i and table.arch_of(i).to_str() == arch

        def v(name):
            return made_up(i, col[name])

        assert table.query(arch, "cifar10", "test_accuracy") == v("c10_test_acc")
        assert table.query(arch, "cifar10", "valid_accuracy") == v("c10valid_valid_acc")
        assert table.query(arch, "cifar10-valid", "valid_accuracy") == v("c10valid_valid_acc")
        assert table.query(arch, "cifar10-valid", "test_accuracy") is None
        assert table.query(arch, "cifar10-valid", "train_time_s") == v("c10valid_train_time_s")
        assert table.query(arch, "cifar10", "train_time_s") is None
        assert table.query(arch, "cifar10", "params_mb") == v("c10_params_mb")
        assert table.query(arch, "cifar100", "valid_accuracy") == v("c100_valid_acc_derived")
        assert table.query(arch, "cifar100", "test_accuracy") == v("c100_test_acc")
        assert table.query(arch, "cifar100", "params_mb") == v("c100_params_mb")
        assert table.query(arch, "ImageNet16-120", "valid_accuracy") == v("in16_valid_acc_derived")
        assert table.query(arch, "ImageNet16-120", "test_accuracy") == v("in16_test_acc")
        assert table.query(arch, "imagenet16", "params_mb") == v("in16_params_mb")
        assert table.query(arch, "cifar100", "train_loss") is None


def naslib_entry(base: float) -> dict:
    """One dataset's results the way NASLib stores them (per-epoch lists, cost_info)."""
    epochs = 200
    return {
        "train_acc1es": [base / 2] * (epochs - 1) + [base + 5],
        "eval_acc1es": [base / 3] * (epochs - 1) + [base],
        "train_losses": [2.0] * (epochs - 1) + [base / 100],
        "eval_losses": [2.5] * (epochs - 1) + [base / 50],
        "train_times": [1.0] * epochs,
        "eval_times": [0.5] * epochs,
        "cost_info": {"flops": base * 2, "params": base / 10, "latency": base / 1000, "train_time": base * 3},
    }


@pytest.fixture(scope="module")
def naslib_files(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("naslib")
    c10 = {a: {"cifar10-valid": naslib_entry(60.0 + k)} for k, a in enumerate(FEW)}
    c100 = {a: {"cifar100": naslib_entry(30.0 + k)} for k, a in enumerate(FEW)}
    paths = {}
    for name, data in (("nb201_cifar10_full_training.pickle", c10), ("nb201_cifar100_full_training.pickle", c100)):
        paths[name] = root / name
        with open(paths[name], "wb") as f:
            pickle.dump(data, f, protocol=4)
    return paths


def test_naslib_cifar10_pickle(naslib_files):
    table = load_nb201_table(naslib_files["nb201_cifar10_full_training.pickle"])
    assert table.format == "naslib" and not table.has_index
    assert len(table) == 3
    # a cifar10 file holds no cifar100 or ImageNet16-120 numbers
    assert table.query(FEW[0], "cifar100", "valid_accuracy") is None
    assert table.query(FEW[0], "ImageNet16-120", "valid_accuracy") is None
    for k, arch in enumerate(FEW):
        base = 60.0 + k
        assert table.query(arch, "cifar10-valid", "valid_accuracy") == base
        assert table.query(arch, "cifar10-valid", "train_accuracy") == base + 5
        assert table.query(arch, "cifar10-valid", "train_loss") == base / 100
        assert table.query(arch, "cifar10-valid", "valid_loss") == base / 50
        assert table.query(arch, "cifar10-valid", "params_mb") == base / 10
        assert table.query(arch, "cifar10-valid", "flops_m") == base * 2
        assert table.query(arch, "cifar10-valid", "latency_s") == base / 1000
        assert table.query(arch, "cifar10-valid", "train_time_s") == base * 3
        # NASLib's eval numbers are validation numbers: never test accuracy
        assert table.query(arch, "cifar10-valid", "test_accuracy") is None
        assert table.query(arch, "cifar10", "test_accuracy") is None
        # the protocol: cifar10 selects on the cifar10-valid number
        assert table.query(arch, "cifar10", "valid_accuracy") == base
        assert table.query(arch, "cifar10", "params_mb") == base / 10
        assert table.query(arch, "cifar10", "train_accuracy") is None
        # this file holds no CIFAR-100 results
        assert table.query(arch, "cifar100", "valid_accuracy") is None
    assert table.query_all(ALL_SKIP, "cifar10") == {
        "valid_accuracy": 60.0, "valid_loss": 60.0 / 50, "params_mb": 6.0, "flops_m": 120.0, "latency_s": 0.06,
    }


def test_naslib_cifar100_pickle_and_missing_arch(naslib_files):
    table = load_nb201_table(naslib_files["nb201_cifar100_full_training.pickle"])
    assert table.query(BEST_C10, "cifar100", "valid_accuracy") == 31.0
    assert table.query(BEST_C10, "cifar100", "test_accuracy") is None
    assert table.query(BEST_C10, "cifar10", "valid_accuracy") is None
    with pytest.raises(NasframeError) as e:
        table.query(ABSENT, "cifar100", "valid_accuracy")
    single_line_error(e, ABSENT, "nb201_cifar100_full_training.pickle", "not in")


def test_naslib_has_no_index(naslib_files):
    path = naslib_files["nb201_cifar10_full_training.pickle"]
    table = load_nb201_table(path)
    for call in (lambda: table.query(5, "cifar10", "valid_accuracy"), lambda: table.arch_of(5),
                 lambda: table.index_of(ALL_SKIP), lambda: resolve_arch("5", table)):
        with pytest.raises(NasframeError) as e:
            call()
        single_line_error(e, path.name, "index order")


# ---------------------------------------------------------------- NATS-style directory
NATS_SEEDS = (777, 888)


def nats_run(dataset: str, seed: int, epochs: int, base: float, arch: str) -> dict:
    """A ResultsCount state dict (the per-trial record inside the NATS per-arch files)."""
    last = epochs - 1
    off = 1.0 if seed == NATS_SEEDS[0] else 3.0  # the two seeds differ; means are base + 2
    evals = {"cifar10-valid": ("x-valid", "ori-test"), "cifar10": ("ori-test",)}.get(
        dataset, ("x-valid", "x-test", "ori-test"))
    shift = {"x-valid": 0.0, "x-test": 10.0, "ori-test": 20.0}
    acc, loss, times = {}, {}, {}
    for name in evals:
        for e in range(epochs):
            key = f"{name}@{e}"
            acc[key] = base + shift[name] + off if e == last else 1.0
            loss[key] = (base + shift[name] + off) / 100 if e == last else 9.0
            times[key] = 0.1
    return {
        "name": dataset, "net_state_dict": None,
        "train_acc1es": OrderedDict((e, base + 30 + off if e == last else 2.0) for e in range(epochs)),
        "train_acc5es": None,
        "train_losses": OrderedDict((e, (base + 30 + off) / 1000 if e == last else 3.0) for e in range(epochs)),
        "train_times": OrderedDict((e, 2.0 + off / 10) for e in range(epochs)),
        "arch_config": {"channel": 16, "num_cells": 5, "arch_str": arch, "class_num": 10},
        "params": base / 100, "flop": base, "seed": seed, "epochs": epochs,
        "latency": [0.01 + off / 1000, 0.02 + off / 1000],
        "eval_names": list(evals), "eval_acc1es": acc, "eval_times": times, "eval_losses": loss,
    }


def nats_arch_results(index: int, arch: str, epochs: int, base: float) -> dict:
    """An ArchResults state dict for one schedule ('12' or '200')."""
    datasets = ("cifar10-valid", "cifar10", "cifar100", "ImageNet16-120")
    return {
        "arch_index": index, "arch_str": arch,
        "all_results": {
            (ds, s): nats_run(ds, s, epochs, base + 1000 * k, arch)
            for k, ds in enumerate(datasets) for s in NATS_SEEDS
        },
        "dataset_seed": {ds: list(NATS_SEEDS) for ds in datasets},
        "clear_net_done": True,
    }


def write_pbz2(path: Path, obj) -> None:
    with bz2.BZ2File(path, "wb") as f:
        pickle.dump(obj, f, protocol=4)


@pytest.fixture(scope="module")
def nats_dir(tmp_path_factory) -> tuple[Path, list[str]]:
    archs = shuffled_archs(seed=11)
    root = tmp_path_factory.mktemp("torch_home") / "NATS-tss-v1_0-3ffb9-simple"
    root.mkdir()
    write_pbz2(root / "meta.pickle.pbz2",
               {"meta_archs": archs, "total_archs": len(archs), "arch2infos": None, "evaluated_indexes": set()})
    for k, arch in enumerate(FEW):
        index = archs.index(arch)
        data = OrderedDict([("12", nats_arch_results(index, arch, 12, 5.0 + k)),
                            ("200", nats_arch_results(index, arch, 200, 50.0 + k))])
        write_pbz2(root / f"{index:06d}.pickle.pbz2", data)
    return root, archs


def check_nats_values(table, archs) -> None:
    assert table.format == "nats" and table.has_index and len(table) == 15625
    for k, arch in enumerate(FEW):
        base = 50.0 + k  # the 200-epoch numbers; the '12' ones start at 5
        i = archs.index(arch)
        assert table.index_of(arch) == i and table.arch_of(i).to_str() == arch
        q = table.query
        # seeds 777 / 888 add 1 / 3: their mean adds 2
        assert q(i, "cifar10-valid", "valid_accuracy") == pytest.approx(base + 2)
        assert q(arch, "cifar10-valid", "test_accuracy") == pytest.approx(base + 20 + 2)  # ori-test
        assert q(arch, "cifar10-valid", "train_accuracy") == pytest.approx(base + 30 + 2)
        assert q(arch, "cifar10-valid", "train_loss") == pytest.approx((base + 32) / 1000)
        assert q(arch, "cifar10-valid", "valid_loss") == pytest.approx((base + 2) / 100)
        assert q(arch, "cifar10-valid", "params_mb") == pytest.approx(base / 100)
        assert q(arch, "cifar10-valid", "flops_m") == pytest.approx(base)
        assert q(arch, "cifar10-valid", "latency_s") == pytest.approx(0.015 + 0.002)
        assert q(arch, "cifar10-valid", "train_time_s") == pytest.approx(200 * 2.2)
        c10 = base + 1000
        assert q(arch, "cifar10", "test_accuracy") == pytest.approx(c10 + 20 + 2)  # cifar10 ori-test
        assert q(arch, "cifar10", "valid_accuracy") == pytest.approx(base + 2)  # the cifar10-valid x-valid
        assert q(arch, "cifar10", "valid_loss") == pytest.approx((base + 2) / 100)
        assert q(arch, "cifar10", "params_mb") == pytest.approx(c10 / 100)
        c100 = base + 2000
        assert q(arch, "cifar100", "valid_accuracy") == pytest.approx(c100 + 2)  # x-valid
        assert q(arch, "cifar100", "test_accuracy") == pytest.approx(c100 + 12)  # x-test, not ori-test
        assert q(arch, "cifar100", "test_loss") == pytest.approx((c100 + 12) / 100)
        in16 = base + 3000
        assert q(arch, "imagenet16-120", "valid_accuracy") == pytest.approx(in16 + 2)
        assert q(arch, "ImageNet16-120", "test_accuracy") == pytest.approx(in16 + 12)
        assert q(arch, "ImageNet16-120", "flops_m") == pytest.approx(in16)
        assert set(table.query_all(arch, "cifar10-valid")) == {
            "train_accuracy", "valid_accuracy", "test_accuracy", "train_loss", "valid_loss", "test_loss",
            "params_mb", "flops_m", "latency_s", "train_time_s"}


def test_nats_directory(nats_dir):
    root, archs = nats_dir
    table = load_nb201_table(root)
    assert table._loaded is False
    check_nats_values(table, archs)
    # the parent directory ($TORCH_HOME) works as well
    assert load_nb201_table(root.parent).query(ALL_SKIP, "cifar10", "test_accuracy") == pytest.approx(1050 + 22)


def test_nats_tar(nats_dir, tmp_path):
    root, archs = nats_dir
    tar_path = tmp_path / "NATS-tss-v1_0-3ffb9-simple.tar"
    with tarfile.open(tar_path, "w") as tar:
        tar.add(root, arcname=root.name)
    check_nats_values(load_nb201_table(tar_path), archs)


def test_nats_reads_per_arch_files_on_demand(nats_dir, tmp_path):
    root, archs = nats_dir
    copy = tmp_path / "NATS-tss-v1_0-3ffb9-simple"
    copy.mkdir()
    for p in root.iterdir():
        (copy / p.name).write_bytes(p.read_bytes())
    table = load_nb201_table(copy)
    i_skip, i_best = archs.index(ALL_SKIP), archs.index(BEST_C10)
    assert table.query(ALL_SKIP, "cifar10-valid", "valid_accuracy") == pytest.approx(52.0)
    (copy / f"{i_skip:06d}.pickle.pbz2").unlink()  # cached: still answers
    assert table.query(ALL_SKIP, "cifar10-valid", "valid_accuracy") == pytest.approx(52.0)
    (copy / f"{i_best:06d}.pickle.pbz2").unlink()  # never read: now missing
    with pytest.raises(NasframeError) as e:
        table.query(BEST_C10, "cifar10", "test_accuracy")
    single_line_error(e, f"{i_best:06d}.pickle.pbz2", "not found")
    with pytest.raises(NasframeError) as e:
        table.query(ABSENT, "cifar10", "test_accuracy")
    single_line_error(e, f"{archs.index(ABSENT):06d}.pickle.pbz2")


def test_nats_truncated_files(nats_dir, tmp_path):
    root, archs = nats_dir
    bad = tmp_path / "NATS-tss-v1_0-3ffb9-simple"
    bad.mkdir()
    meta = (root / "meta.pickle.pbz2").read_bytes()
    (bad / "meta.pickle.pbz2").write_bytes(meta)
    i = archs.index(OTHER)
    blob = (root / f"{i:06d}.pickle.pbz2").read_bytes()
    (bad / f"{i:06d}.pickle.pbz2").write_bytes(blob[: len(blob) // 2])
    with pytest.raises(NasframeError) as e:
        load_nb201_table(bad).query(OTHER, "cifar10", "test_accuracy")
    single_line_error(e, f"{i:06d}.pickle.pbz2", "truncated or corrupt")
    (bad / "meta.pickle.pbz2").write_bytes(meta[:1000])
    with pytest.raises(NasframeError) as e:
        load_nb201_table(bad).arch_of(0)
    single_line_error(e, "meta.pickle.pbz2", "truncated or corrupt")


# ================================================================= bad input
def test_missing_path(tmp_path):
    missing = tmp_path / "nb201_200ep.csv"
    with pytest.raises(NasframeError) as e:
        load_nb201_table(missing)
    single_line_error(e, str(missing), "not found", "--benchmark PATH", "NASFRAME_NB201")


def test_unsupported_paths(tmp_path):
    for name, content in (("notes.txt", b"hello"), ("NAS-Bench-201-v1_1-096897.pth", b"PK\x03\x04")):
        p = tmp_path / name
        p.write_bytes(content)
        with pytest.raises(NasframeError) as e:
            load_nb201_table(p)
        single_line_error(e, name, "supported", ".csv", "NASLib", "NATS-tss-v1_0-3ffb9-simple")
    with pytest.raises(NasframeError) as e:
        load_nb201_table(tmp_path)
    single_line_error(e, "meta.pickle.pbz2", "supported")


def test_truncated_real_csv_names_file_and_line(nb201_csv, tmp_path):
    data = nb201_csv.read_bytes()
    lines = data.split(b"\n")
    cut = tmp_path / "cut.csv"
    # cut in the middle of line 101 (the header is line 1)
    cut.write_bytes(b"\n".join(lines[:100]) + b"\n" + lines[100][:40])
    with pytest.raises(NasframeError) as e:
        load_nb201_table(cut).query(ALL_SKIP, "cifar10", "test_accuracy")
    single_line_error(e, "cut.csv", "line 101", "truncated")
    # cut at a line boundary: the row count is wrong
    cut.write_bytes(b"\n".join(lines[:5001]) + b"\n")
    with pytest.raises(NasframeError) as e:
        len(load_nb201_table(cut))
    single_line_error(e, "cut.csv", "5000 rows", "15625")
    # cut inside the last value of the last line
    cut.write_bytes(data.rstrip(b"\n")[:-3])
    with pytest.raises(NasframeError) as e:
        load_nb201_table(cut).arch_of(0)
    single_line_error(e, "cut.csv", "newline", "truncated")


def test_corrupt_csv_values_and_header(synthetic_csv, tmp_path):
    path, archs = synthetic_csv
    text = path.read_text()
    lines = text.split("\n")
    bad = tmp_path / "bad.csv"
    broken = lines[:]
    fields = broken[7].split(",")
    fields[3] = "n/a"
    broken[7] = ",".join(fields)
    bad.write_text("\n".join(broken))
    with pytest.raises(NasframeError) as e:
        load_nb201_table(bad).query(0, "cifar10", "test_accuracy")
    single_line_error(e, "bad.csv", "line 8", "c10_test_acc", "'n/a'")
    broken = lines[:]
    broken[3] = broken[3].replace("~1|", "~7|", 1)
    bad.write_text("\n".join(broken))
    with pytest.raises(NasframeError) as e:
        len(load_nb201_table(bad))
    single_line_error(e, "bad.csv", "line 4", "malformed NB201 arch string")
    bad.write_text("\n".join(["index,arch_str,cifar10-test"] + lines[1:]))
    with pytest.raises(NasframeError) as e:
        len(load_nb201_table(bad))
    single_line_error(e, "bad.csv", "wrong header", "c10valid_valid_acc", "12-epoch")
    bad.write_text("\n".join(lines[:4]) + "\n")  # a well-formed file with only three rows
    with pytest.raises(NasframeError) as e:
        len(load_nb201_table(bad))
    single_line_error(e, "bad.csv", "3 rows", "15625")


def test_truncated_and_hostile_pickles(naslib_files, tmp_path):
    blob = naslib_files["nb201_cifar10_full_training.pickle"].read_bytes()
    cut = tmp_path / "nb201_cifar10_full_training.pickle"
    cut.write_bytes(blob[: len(blob) // 2])
    table = load_nb201_table(cut)  # lazy: nothing read yet
    with pytest.raises(NasframeError) as e:
        table.query(ALL_SKIP, "cifar10", "valid_accuracy")
    single_line_error(e, str(cut), "truncated or corrupt")

    class Payload:
        def __reduce__(self):
            return (os.getcwd, ())

    hostile = tmp_path / "hostile.pkl"
    hostile.write_bytes(pickle.dumps({ALL_SKIP: Payload()}))
    with pytest.raises(NasframeError) as e:
        len(load_nb201_table(hostile))
    single_line_error(e, "hostile.pkl", "getcwd", "refusing")
    wrong = tmp_path / "wrong.pickle"
    wrong.write_bytes(pickle.dumps([1, 2, 3]))
    with pytest.raises(NasframeError) as e:
        len(load_nb201_table(wrong))
    single_line_error(e, "wrong.pickle", "not a NASLib")


def test_unknown_dataset_and_metric(real):
    with pytest.raises(NasframeError) as e:
        real.query(ALL_SKIP, "imagenet", "test_accuracy")
    single_line_error(e, "'imagenet'", "cifar10-valid, cifar10, cifar100, ImageNet16-120")
    with pytest.raises(NasframeError) as e:
        real.query(ALL_SKIP, "cifar10", "test_acc")
    single_line_error(e, "'test_acc'", "test_accuracy", "train_time_s")
    assert normalize_dataset("IMAGENET16-120") == "ImageNet16-120"
    assert normalize_dataset("imagenet16") == "ImageNet16-120"
    assert normalize_dataset("CIFAR10-valid") == "cifar10-valid"


def test_malformed_and_unknown_archs(real):
    for bad in ("|skip_connect~0|+|skip_connect~0|", "|conv~0|+|none~0|none~1|+|none~0|none~1|none~2|",
                ALL_SKIP.replace("~2|", "~3|")):
        with pytest.raises(NasframeError) as e:
            real.query(bad, "cifar10", "test_accuracy")
        single_line_error(e, bad)
    for bad in ((1, 2, 3), (0, 1, 2, 3, 4, 5), 3.5, None):
        with pytest.raises(NasframeError) as e:
            resolve_arch(bad, real)
        single_line_error(e)


def test_index_out_of_range_and_index_without_table(real):
    for bad in (-1, 15625, "15625", 10**9):
        with pytest.raises(NasframeError) as e:
            resolve_arch(bad, real)
        single_line_error(e, "0..15624")
    with pytest.raises(NasframeError) as e:
        real.arch_of(15625)
    single_line_error(e, "0..15624")
    with pytest.raises(NasframeError) as e:
        real.query(-3, "cifar10", "test_accuracy")
    single_line_error(e, "-3", "0..15624")
    for index in (1835, "1835"):
        with pytest.raises(NasframeError) as e:
            resolve_arch(index)
        single_line_error(e, "1835", "benchmark table", "--benchmark PATH", "NASFRAME_NB201")
