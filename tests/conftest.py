"""Shared fixtures. Data from ../shared/data is read in place, never copied."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("NASFRAME_SHARED_DATA", REPO.parent / "shared" / "data"))
NB201_CSV = SHARED_DATA / "nb201" / "nb201_200ep.csv"
CIFAR10_JPEG = SHARED_DATA / "cifar10_jpeg"


def _require(path: Path) -> Path:
    if not path.exists():
        pytest.fail(
            f"test data {path} is missing: put the shared data folder beside the repository "
            f"or point NASFRAME_SHARED_DATA at it"
        )
    return path


@pytest.fixture(scope="session")
def nb201_csv() -> Path:
    """The 200-epoch NAS-Bench-201 table shipped beside the repository."""
    return _require(NB201_CSV)


@pytest.fixture(scope="session")
def table(nb201_csv):
    """The 200-epoch table, loaded once."""
    from nasframe_spaces.nasbench201.tables import load_nb201_table

    return load_nb201_table(nb201_csv)


@pytest.fixture(scope="session")
def cifar10_jpeg_dir() -> Path:
    return _require(CIFAR10_JPEG)


@pytest.fixture(autouse=True)
def _no_ambient_benchmark(monkeypatch):
    """Tests attach benchmark tables explicitly; the environment of the caller does not leak in."""
    monkeypatch.delenv("NASFRAME_NB201", raising=False)


@pytest.fixture(autouse=True, scope="session")
def _one_thread():
    """The tests use tiny tensors: one thread is faster and does not oversubscribe shared CPUs."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def float64():
    """Run a test in float64 (tight comparisons), restoring the default afterwards."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)


def assert_test_statistics_copies_nothing(monkeypatch, opt, also_refuse=()) -> None:
    """``opt.test_statistics()`` without a table is None and copies or builds no network."""
    import copy

    params_before = [p.data_ptr() for p in opt.graph.parameters()]

    def refuse(*args, **kwargs):
        raise AssertionError("test_statistics must not copy or build a network")

    monkeypatch.setattr(copy, "deepcopy", refuse)
    monkeypatch.setattr(copy, "copy", refuse)
    monkeypatch.setattr(opt.search_space, "build_network", refuse)
    for name in also_refuse:
        monkeypatch.setattr(opt.search_space, name, refuse)
    monkeypatch.setattr(type(opt), "get_final_architecture", refuse)
    monkeypatch.setattr(type(opt.graph), "state_dict", refuse)
    assert opt.test_statistics() is None
    assert [p.data_ptr() for p in opt.graph.parameters()] == params_before
