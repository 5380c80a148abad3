"""Shared fixtures.

Real data (the NB201 table, CIFAR-10 as JPEG) is read in place from NASFRAME_SHARED_DATA or
../shared/data beside the repository, never copied. Where it is missing, the tests that need it
skip with one line naming the file and the variable; NASFRAME_REQUIRE_TEST_DATA=1 (set by CI)
turns those skips into failures. Likewise for the native kernels' tests, which need a C
compiler: without one they skip with one line saying so, and fail where that variable is set.
"""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import torch

from nasframe_core.hookspecs import hookimpl

REPO = Path(__file__).resolve().parents[1]
#: where the data-backed tests read real data (NB201 table, CIFAR-10 JPEG): the variable, or
#: ../shared/data beside the repository
DATA_ENV = "NASFRAME_SHARED_DATA"
#: set (to 1) where the data must be there, as in CI: a missing file then fails its tests
REQUIRE_ENV = "NASFRAME_REQUIRE_TEST_DATA"
SHARED_DATA = Path(os.environ.get(DATA_ENV) or REPO.parent / "shared" / "data")
NB201_CSV = SHARED_DATA / "nb201" / "nb201_200ep.csv"
CIFAR10_JPEG = SHARED_DATA / "cifar10_jpeg"


def _data_required() -> bool:
    return os.environ.get(REQUIRE_ENV, "").strip().lower() not in ("", "0", "false", "no")


def _require(path: Path, what: str) -> Path:
    """``path``, or a skip (a failure where REQUIRE_ENV is set) naming it and DATA_ENV."""
    if not path.exists():
        message = (
            f"needs {what} at {path}, which is missing: set {DATA_ENV} to the folder holding "
            f"{path.relative_to(SHARED_DATA)}"
        )
        if _data_required():
            pytest.fail(f"{message} ({REQUIRE_ENV} is set, so missing data fails)", pytrace=False)
        pytest.skip(message)
    return path


@pytest.fixture(scope="session")
def nb201_csv() -> Path:
    """The 200-epoch NAS-Bench-201 table (``nb201/nb201_200ep.csv`` of the shared data)."""
    return _require(NB201_CSV, "the NAS-Bench-201 table")


@pytest.fixture(scope="session")
def table(nb201_csv):
    """The 200-epoch table, loaded once."""
    from nasframe_spaces.nasbench201.tables import load_nb201_table

    return load_nb201_table(nb201_csv)


@pytest.fixture(scope="session")
def cifar10_jpeg_dir() -> Path:
    """CIFAR-10 as JPEG files (``cifar10_jpeg/`` of the shared data)."""
    return _require(CIFAR10_JPEG, "CIFAR-10 as JPEG")


@pytest.fixture
def native_kernels(monkeypatch):
    """:mod:`nasframe_cpu.kernels`, enabled, built and installed as the core's native convolutions
    for the test (a skip, or a failure where REQUIRE_ENV is set, when no C compiler builds them)."""
    from nasframe_core import ops
    from nasframe_cpu import kernels
    from nasframe_cpu.ops import NativeConvolutions

    monkeypatch.setenv(kernels.ENV_SWITCH, "1")
    monkeypatch.setattr(ops, "_native", NativeConvolutions())
    why = kernels.unavailable_reason()
    if why:
        message = f"needs the native kernels of nasframe_cpu/kernels, which are not available: {why}"
        if _data_required():
            pytest.fail(f"{message} ({REQUIRE_ENV} is set, so a missing compiler fails)", pytrace=False)
        pytest.skip(message)
    return kernels


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


def native_and_aten_step(monkeypatch, space, calls: list, optimizer: str = "darts", **settings) -> None:
    """One search step of ``optimizer`` (default: unrolled DARTS) on ``space`` with the native
    kernels on, then the same step with them off: the first records calls in ``calls`` (a
    counting patch the test set up), the second none, and both end with the same weights and
    alphas."""
    from nasframe_cpu import kernels
    from nasframe_core.datasets import dataset_info
    from nasframe_darts import FAMILY

    settings = settings or ({"unrolled": True} if optimizer == "darts" else {})

    def run(native: str):
        monkeypatch.setenv(kernels.ENV_SWITCH, native)
        torch.manual_seed(0)
        opt = FAMILY[optimizer][0](device="cpu", **settings)
        opt.adapt_search_space(space, dataset_info("cifar10"))
        opt.before_training()
        g = torch.Generator().manual_seed(1)
        batch = [(torch.randn(4, 3, 16, 16, generator=g), torch.randint(0, 10, (4,), generator=g)) for _ in range(2)]
        opt.step(*batch)
        return [p.detach().clone() for p in opt.graph.parameters()]

    native = run("1")
    assert calls, "the step did not use the native kernels"
    used = len(calls)
    aten = run("0")
    assert len(calls) == used
    for a, b in zip(native, aten):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def nasframe_in_process(capsys, *args: str) -> subprocess.CompletedProcess:
    """``nasframe ARGS`` as :func:`nasframe_core.cli.main` in this process, seen as the command's
    exit status and output, without NASFRAME_NB201 (as a test's subprocess runs it): a one-line
    message needs no fresh interpreter."""
    from nasframe_core.cli import main

    capsys.readouterr()  # what earlier calls of the test printed is not this command's output
    saved = os.environ.pop("NASFRAME_NB201", None)
    try:
        try:
            code = main(list(args))
        except SystemExit as exc:  # argparse's errors leave through sys.exit, as in the console script
            code = exc.code if isinstance(exc.code, int) else 1
    finally:
        if saved is not None:
            os.environ["NASFRAME_NB201"] = saved
    out, err = capsys.readouterr()
    return subprocess.CompletedProcess(["nasframe", *args], code, out, err)


class StopAt:
    """A plugin that stops a run (as Ctrl-C does) when round or epoch ``round_`` starts."""

    def __init__(self, round_: int):
        self.round = round_

    @hookimpl
    def nasframe_epoch_start(self, run, epoch):
        if epoch == self.round:
            raise KeyboardInterrupt
