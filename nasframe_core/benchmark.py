"""The benchmark-query protocol: tabular results looked up by architecture.

A benchmark answers ``query(arch, dataset, metric)`` with a number, or ``None`` when its
table does not hold that metric. ``arch`` may be a genotype of the benchmark's space, its
string form or any other key the benchmark documents (NAS-Bench-201 also takes an index).
"""
from __future__ import annotations

import abc
import os
from pathlib import Path
from typing import Any, Optional

from .errors import NasframeError

TRAIN_ACCURACY = "train_accuracy"
VALID_ACCURACY = "valid_accuracy"
TEST_ACCURACY = "test_accuracy"
TRAIN_LOSS = "train_loss"
VALID_LOSS = "valid_loss"
TEST_LOSS = "test_loss"
PARAMS_MB = "params_mb"
FLOPS_M = "flops_m"
LATENCY_S = "latency_s"
TRAIN_TIME_S = "train_time_s"

METRICS = (
    TRAIN_ACCURACY,
    VALID_ACCURACY,
    TEST_ACCURACY,
    TRAIN_LOSS,
    VALID_LOSS,
    TEST_LOSS,
    PARAMS_MB,
    FLOPS_M,
    LATENCY_S,
    TRAIN_TIME_S,
)


class Benchmark(abc.ABC):
    """A loaded table of results for one search space."""

    #: registry name of the search space the table covers
    space: str = "?"
    #: the datasets the table can answer for
    datasets: tuple[str, ...] = ()

    def __init__(self, path: Path):
        self.path = Path(path)

    @abc.abstractmethod
    def query(self, arch: Any, dataset: str, metric: str) -> Optional[float]:
        """The value of ``metric`` for ``arch`` on ``dataset`` (``None`` if the table lacks it).

        Unknown architectures, datasets or metrics raise NasframeError.
        """

    def load(self) -> None:
        """Read the table now, so that a missing or damaged file fails before any work starts.

        Raises NasframeError naming the file. The default does nothing: a benchmark that reads
        lazily (at its first query) overrides it.
        """

    def query_all(self, arch: Any, dataset: str) -> dict[str, Optional[float]]:
        """Every metric the table holds for ``arch`` on ``dataset``."""
        values = {m: self.query(arch, dataset, m) for m in METRICS}
        return {m: v for m, v in values.items() if v is not None}


def open_benchmark(host, name: str, path: Optional[str] = None, *, required: bool = False) -> Optional[Benchmark]:
    """The benchmark ``name`` read from ``path``, or from its environment variable.

    The file is read here, so a missing or damaged table fails before any work starts.
    Without a path: ``None``, or an error naming both ways to give one when ``required``.
    """
    reg = host.get("benchmark", name)
    env = reg.options.get("env")
    from_env = None
    if path is None and env:
        path = os.environ.get(env) or None
        from_env = env if path else None
    if path is None:
        if required:
            raise NasframeError(f"no {name} table given: pass --benchmark PATH" + (f" or set {env}" if env else ""))
        return None
    if from_env:
        check_env_path(from_env, path, name)
    # a table is read once per process and file version: the runs of a study share it
    try:
        st = os.stat(os.path.expanduser(str(path)))
        key = (name, os.path.realpath(os.path.expanduser(str(path))), st.st_mtime_ns, st.st_size)
    except OSError:
        key = None
    cache = host.cache.setdefault("benchmarks", {})
    if key is not None and key in cache:
        return cache[key]
    bench = host.check_product(reg, reg.factory(path))
    try:
        bench.load()
    except NasframeError as exc:
        if from_env:
            raise NasframeError(f"{exc} (the path is {from_env}'s; fix or unset {from_env})") from None
        raise
    if key is not None:
        cache[key] = bench
    return bench


def check_env_path(env: str, path: str, name: str) -> None:
    """Refuse a table path taken from the environment variable ``env`` that names no file,
    naming the variable (the usual hint, "set it", would point at what is already set)."""
    if not os.path.exists(os.path.expanduser(path)):
        raise NasframeError(
            f"{env}={path}: no such file; point {env} at the {name} table, or unset it and pass --benchmark PATH"
        )


def attach_for_dataset(space, bench: Optional[Benchmark], dataset: Optional[str], *, explicit: bool,
                       notes: Optional[list] = None) -> Optional[Benchmark]:
    """Attach ``bench`` to ``space`` for a run on ``dataset``; the benchmark the run uses.

    A table without results for the run's dataset (as the space maps it,
    :meth:`~nasframe_core.space.SearchSpace.benchmark_dataset`) would score and report the
    run with another dataset's numbers: given explicitly (``--benchmark``) that is an error
    naming the datasets the table has; taken from the environment, the table is left out for
    this run and ``notes`` gets a line saying so.
    """
    if bench is None:
        return None
    space.attach_benchmark(bench)
    if dataset is None:
        return bench
    try:
        space.benchmark_dataset(dataset)
        return bench
    except NasframeError as exc:
        if explicit:
            raise NasframeError(f"{exc}; run on one of them (--dataset) or drop --benchmark") from None
        space.attach_benchmark(None)
        if notes is not None:
            notes.append(f"{exc}; the table (from the environment) is not used for this run")
        return None
