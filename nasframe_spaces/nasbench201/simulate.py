"""Simulated training on NAS-Bench-201 for black-box search, as NB201/NATS ``simulate_train_eval``.

NB201 and NATS-Bench score an architecture for a black-box search with one random seed's
validation accuracy and charge its training time (``train-all-time + valid-per-time``) to a
simulated-seconds budget; the reported number is the chosen cell's test accuracy. This module
holds that data as numpy arrays indexed by benchmark row (architecture index), read once from
the merged CSV (``nb201_200ep.csv``) and, for the 12-epoch proxy, ``nb201_12ep_minibench.csv``.

What the files support, and the approximations (also stated in docs/blackbox.md):

- per-seed validation accuracies and the 200-epoch training time exist for ``cifar10-valid``
  only (the search signal NB201 uses for CIFAR-10);
- CIFAR-100 and ImageNet16-120 have a seed-averaged validation accuracy (derived, see
  PROVENANCE.md), so their score is that mean, and no training time column: their time is the
  cifar10-valid time x :data:`TIME_SCALE`, the ratio of NATS-Bench's recorded 200-epoch times
  (``runtime`` in ``raw/constrained_tpe_metric_vals.pkl``), which is the same for every
  architecture: 2.0 for CIFAR-100 and 6.068 for ImageNet16-120;
- the 12-epoch table has seed-averaged accuracies and no times; its time is the 200-epoch
  time x 12/200 (the same network and per-epoch cost, 12 epochs);
- ``valid-per-time`` (a few seconds) is not in the files and is not charged.
"""
from __future__ import annotations

import csv
import functools
import os
from pathlib import Path
from typing import Optional, Union

import numpy as np

from nasframe_core.errors import NasframeError

from .codec import EDGES, NUM_ARCHS, OPS, NB201Genotype

C10V, C10, C100, IN16 = "cifar10-valid", "cifar10", "cifar100", "ImageNet16-120"
#: training time of a dataset relative to the cifar10-valid time the table holds (NATS-Bench's
#: recorded 200-epoch times; the ratio is the same for all 15,625 architectures)
TIME_SCALE = {C10V: 1.0, C10: 1.0, C100: 2.0, IN16: 6.068}
#: dataset -> (CSV column of the validation accuracy, of the test accuracy) in nb201_200ep.csv
_COLUMNS_200 = {
    C10V: ("c10valid_valid_acc", "c10_test_acc"),
    C10: ("c10valid_valid_acc", "c10_test_acc"),
    C100: ("c100_valid_acc_derived", "c100_test_acc"),
    IN16: ("in16_valid_acc_derived", "in16_test_acc"),
}
#: dataset -> validation column in nb201_12ep_minibench.csv (cifar10 searches on cifar10-valid)
_COLUMNS_12 = {C10V: "cifar10-val", C10: "cifar10-val", C100: "cifar100-val", IN16: "imagenet-val"}
SEEDS_COLUMN = "c10valid_valid_acc_seeds"
TIME_COLUMN = "c10valid_train_time_s"
_POWERS = np.array([len(OPS) ** k for k in range(len(EDGES))])


def arch_code(genotype: NB201Genotype) -> int:
    """A genotype's position in the 5^6 op-index space (not the benchmark index)."""
    return int(np.dot(genotype.op_indices, _POWERS))


def _read_csv(path: Path) -> tuple[list[str], list[list[str]]]:
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            rows = list(csv.reader(f))
    except OSError as exc:
        raise NasframeError(f"cannot read {path}: {exc.strerror or exc}") from None
    if not rows:
        raise NasframeError(f"{path} is empty")
    return rows[0], rows[1:]


class NB201Arrays:
    """The 200-epoch table as arrays by benchmark row: per-seed cifar10-valid accuracies
    (NaN-padded), the cifar10-valid training time, validation and test accuracy per dataset."""

    def __init__(self, path: Union[str, os.PathLike]):
        self.path = Path(path)
        header, rows = _read_csv(self.path)
        col = {name: i for i, name in enumerate(header)}
        need = [SEEDS_COLUMN, TIME_COLUMN, "arch_str"] + [c for pair in _COLUMNS_200.values() for c in pair]
        missing = [c for c in need if c not in col]
        if missing:
            raise NasframeError(f"{self.path} lacks the column(s) {', '.join(sorted(set(missing)))} of nb201_200ep.csv")
        n = len(rows)
        self.n = n
        try:
            seeds = [[float(v) for v in r[col[SEEDS_COLUMN]].split(";") if v] for r in rows]
            self.seed_valid = np.full((n, max(len(s) for s in seeds)), np.nan)
            for i, s in enumerate(seeds):
                self.seed_valid[i, :len(s)] = s
            self.n_seeds = np.array([len(s) for s in seeds])
            self.train_time = np.array([float(r[col[TIME_COLUMN]]) for r in rows])
            self.valid = {d: np.array([float(r[col[v]]) for r in rows]) for d, (v, _) in _COLUMNS_200.items()}
            self.test = {d: np.array([float(r[col[t]]) for r in rows]) for d, (_, t) in _COLUMNS_200.items()}
            op_index = {op: i for i, op in enumerate(OPS)}
            # the op indices of every row (rows x edges, NB201 edge order), for vectorised search
            self.arch = [r[col["arch_str"]] for r in rows]
            self.ops = np.array([[op_index[item.partition("~")[0]] for item in r[col["arch_str"]].replace("+", "").split("|")
                                  if item] for r in rows], dtype=np.int64)
        except (ValueError, IndexError, KeyError) as exc:
            raise NasframeError(f"{self.path} has a malformed row ({exc}); the file is truncated or corrupt") from None
        if self.ops.shape != (n, len(EDGES)):
            raise NasframeError(f"{self.path} has malformed arch strings; the file is truncated or corrupt")
        self.row_of_code = np.full(NUM_ARCHS, -1, dtype=np.int64)
        self.row_of_code[self.ops @ _POWERS] = np.arange(n)

    def row(self, genotype: NB201Genotype) -> int:
        r = int(self.row_of_code[arch_code(genotype)])
        if r < 0:
            raise NasframeError(f"architecture {genotype} is not in {self.path}")
        return r

    def simulate(self, row: int, dataset: str, rng: np.random.Generator) -> tuple[float, float]:
        """(validation accuracy, seconds) of one simulated 200-epoch training of ``row``."""
        seconds = float(self.train_time[row]) * TIME_SCALE[dataset]
        if dataset in (C10, C10V):
            k = int(rng.integers(self.n_seeds[row]))
            return float(self.seed_valid[row, k]), seconds
        return float(self.valid[dataset][row]), seconds


class NB201Proxy12:
    """The 12-epoch validation accuracies (``nb201_12ep_minibench.csv``) by benchmark row
    (rows in the file's order; :meth:`simulate` maps the 200-epoch table's rows to them by
    architecture string)."""

    def __init__(self, path: Union[str, os.PathLike]):
        self.path = Path(path)
        header, rows = _read_csv(self.path)
        col = {name: i for i, name in enumerate(header)}
        missing = [c for c in set(_COLUMNS_12.values()) if c not in col]
        if missing:
            raise NasframeError(f"{self.path} lacks the column(s) {', '.join(sorted(missing))} of nb201_12ep_minibench.csv")
        try:
            self.valid = {d: np.array([float(r[col[c]]) for r in rows]) for d, c in _COLUMNS_12.items()}
            self.arch = [r[col["arch_str"]] for r in rows] if "arch_str" in col else None
        except (ValueError, IndexError) as exc:
            raise NasframeError(f"{self.path} has a malformed row ({exc}); the file is truncated or corrupt") from None
        self.n = len(rows)
        self._rows: Optional[np.ndarray] = None

    def rows_of(self, arrays: "NB201Arrays") -> np.ndarray:
        """For each row of the 200-epoch ``arrays``, this file's row of the same architecture."""
        if self._rows is None:
            if self.arch is None:
                if self.n != arrays.n:
                    raise NasframeError(f"{self.path} has {self.n} rows and no arch_str column; it cannot be "
                                        f"matched to the {arrays.n} rows of {arrays.path}")
                self._rows = np.arange(self.n)
            else:
                where = {a: i for i, a in enumerate(self.arch)}
                missing = [a for a in arrays.arch if a not in where]
                if missing:
                    raise NasframeError(f"{self.path} lacks {len(missing)} architecture(s) of {arrays.path}, "
                                        f"e.g. {missing[0]}")
                self._rows = np.array([where[a] for a in arrays.arch])
        return self._rows

    def simulate(self, arrays: "NB201Arrays", row: int, dataset: str) -> tuple[float, float]:
        """(validation accuracy, seconds) of one simulated 12-epoch training of ``row`` of the
        200-epoch table: the seed-averaged 12-epoch accuracy, the 200-epoch time x 12/200."""
        seconds = float(arrays.train_time[row]) * TIME_SCALE[dataset] * 12.0 / 200.0
        return float(self.valid[dataset][self.rows_of(arrays)[row]]), seconds


ENV_PROXY12 = "NASFRAME_NB201_12EP"
PROXY12_NAME = "nb201_12ep_minibench.csv"


@functools.lru_cache(maxsize=4)
def proxy12_for(table_path: str) -> NB201Proxy12:
    """The 12-epoch table for the 200-epoch table at ``table_path``: ``$NASFRAME_NB201_12EP``,
    else ``nb201_12ep_minibench.csv`` beside it."""
    env = os.environ.get(ENV_PROXY12)
    path = Path(env) if env else Path(table_path).with_name(PROXY12_NAME)
    if not path.exists():
        where = f"{ENV_PROXY12}={env}" if env else f"{path} (beside the 200-epoch table)"
        raise NasframeError(f"a 12-epoch NAS-Bench-201 search needs the 12-epoch table, not found at {where}; set "
                            f"{ENV_PROXY12} to its path or search on 200 epochs (--set run.fidelity=200)")
    return NB201Proxy12(path)


@functools.lru_cache(maxsize=4)
def arrays_for(path: str) -> Optional[NB201Arrays]:
    """The arrays of the CSV table at ``path`` (cached), or ``None`` if it is no merged CSV."""
    p = Path(path)
    if p.suffix.lower() != ".csv":
        return None
    with open(p, newline="", encoding="utf-8-sig") as f:
        header = next(csv.reader(f), [])
    if SEEDS_COLUMN not in header:
        return None
    return NB201Arrays(p)

