"""The base of every NB201 table format: argument handling, the index API and metric notes.

A format is a subclass of :class:`NB201Table` that implements three things:

- ``_load()``: read the file (called once, at the first query);
- ``_lookup(genotype, dataset, metric)``: one number, or None where the file lacks it;
- ``_len()``: how many architectures the file holds.

A format whose file records the benchmark's index order (0..15624) sets ``has_index = True``
and fills ``_code_of_index`` / ``_index_of_code`` in ``_load``; the base answers
``index_of`` / ``arch_of`` from them. ``format`` names the format in messages and
``_format_notes`` refines what a metric means in that format. Table-backed formats that keep
their numbers as float columns share :class:`ArrayTable`.
"""
from __future__ import annotations

import abc
import math
import os
from array import array
from pathlib import Path
from typing import Any, Optional, Union

from nasframe_core.benchmark import (
    FLOPS_M,
    LATENCY_S,
    PARAMS_MB,
    TEST_ACCURACY,
    TEST_LOSS,
    TRAIN_ACCURACY,
    TRAIN_LOSS,
    TRAIN_TIME_S,
    VALID_ACCURACY,
    VALID_LOSS,
    Benchmark,
)
from nasframe_core.errors import NasframeError

from ..codec import NB201Genotype
from .codes import (
    C10,
    C10V,
    C100,
    DATASETS,
    IN16,
    _check_index,
    _check_metric,
    _code_of,
    _ops_of_code,
    normalize_dataset,
    resolve_arch,
)


class NB201Table(Benchmark):
    """A NAS-Bench-201 table: ``query(arch, dataset, metric)`` with NB201 semantics.

    ``arch`` is anything :func:`resolve_arch` reads (a benchmark index needs :attr:`has_index`).
    ``dataset`` is one of :attr:`datasets` or an alias. Returns ``None`` where the file lacks
    the number. CIFAR-10 protocol: ``query(a, "cifar10", "valid_accuracy")`` (and
    ``"valid_loss"``) return the ``cifar10-valid`` validation numbers used for selection, and
    ``query(a, "cifar10", "test_accuracy")`` the ``cifar10`` test accuracy that is reported.
    """

    space = "nasbench201"
    datasets = DATASETS
    #: the format's name, used in messages
    format: str = "?"
    #: whether the file records the benchmark's index order (0..15624)
    has_index: bool = False

    def __init__(self, path: Union[str, os.PathLike]):
        super().__init__(Path(path))
        self._loaded = False
        #: benchmark index -> arch code, and arch code -> benchmark index (-1: absent); filled
        #: by ``_load`` in formats with ``has_index``
        self._code_of_index: array = array("l")
        self._index_of_code: array = array("l")

    # -- to implement -------------------------------------------------------------
    @abc.abstractmethod
    def _load(self) -> None:
        """Read the file (called once, at the first use)."""

    @abc.abstractmethod
    def _lookup(self, genotype: NB201Genotype, dataset: str, metric: str) -> Optional[float]:
        """The value for a resolved genotype, normalised dataset and checked metric."""

    @abc.abstractmethod
    def _len(self) -> int:
        """How many architectures the file holds."""

    def _format_notes(self, dataset: str) -> dict[str, str]:
        """Notes that hold for this file format only (overriding the general ones)."""
        return {}

    # -- public -------------------------------------------------------------------
    def _ensure_loaded(self) -> None:
        if not self._loaded:
            self._load()
            self._loaded = True

    def load(self) -> None:
        """Read the file now (otherwise it is read at the first query)."""
        self._ensure_loaded()

    def query(self, arch: Any, dataset: str, metric: str) -> Optional[float]:
        ds = normalize_dataset(dataset)
        metric = _check_metric(metric)
        genotype = resolve_arch(arch, self)
        self._ensure_loaded()
        return self._lookup(genotype, ds, metric)

    def index_of(self, arch: Any) -> int:
        """The benchmark index of ``arch``."""
        if not self.has_index:
            raise self._no_index()
        genotype = resolve_arch(arch, self)
        self._ensure_loaded()
        index = self._index_of_code[_code_of(genotype)]
        if index < 0:
            raise self._absent(genotype)
        return index

    def arch_of(self, index: int) -> NB201Genotype:
        """The architecture at benchmark index ``index``."""
        index = _check_index(index)
        if not self.has_index:
            raise self._no_index()
        self._ensure_loaded()
        return NB201Genotype(_ops_of_code(self._code_of_index[index]))

    def describe_arch(self, arch: Any) -> dict[str, Any]:
        """``{'arch': arch string, 'index': benchmark index, or None where the file has no index order}``."""
        genotype = resolve_arch(arch, self)
        return {"arch": genotype.to_str(), "index": self.index_of(genotype) if self.has_index else None}

    def metric_notes(self, dataset: str) -> dict[str, str]:
        """What each metric of ``dataset`` means in this table (metric -> one-line note)."""
        ds = normalize_dataset(dataset)
        notes = dict(_COMMON_NOTES)
        notes.update(_DATASET_NOTES[ds])
        notes.update(self._format_notes(ds))
        return notes

    def __len__(self) -> int:
        self._ensure_loaded()
        return self._len()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(format={self.format!r}, path={str(self.path)!r})"

    # -- messages -----------------------------------------------------------------
    def _no_index(self) -> NasframeError:
        return NasframeError(
            f"the {self.format} table {self.path} does not record the NB201 index order; name the "
            f"architecture by its arch string, or load nb201_200ep.csv or the NATS-tss-v1_0-3ffb9-simple "
            f"directory to use indices"
        )

    def _absent(self, genotype: NB201Genotype) -> NasframeError:
        return NasframeError(
            f"architecture {genotype.to_str()} is not in the {self.format} table {self.path} "
            f"({self._len()} architectures)"
        )


_COMMON_NOTES = {
    PARAMS_MB: "parameters in millions, classifier included",
    FLOPS_M: "FLOPs in millions",
    LATENCY_S: "latency in seconds",
    TRAIN_TIME_S: "simulated 200-epoch training time in seconds",
}

_DATASET_NOTES: dict[str, dict[str, str]] = {
    C10: {
        VALID_ACCURACY: "cifar10-valid's validation accuracy, trained on the 25k train split: select on this",
        VALID_LOSS: "cifar10-valid's validation loss",
        TEST_ACCURACY: "cifar10's test accuracy, trained on train+valid: report this",
        TEST_LOSS: "cifar10's test loss",
        TRAIN_ACCURACY: "cifar10's train accuracy, on train+valid",
        TRAIN_LOSS: "cifar10's train loss, on train+valid",
    },
    C10V: {
        VALID_ACCURACY: "x-valid accuracy: the 25k validation split, trained on the 25k train split",
        VALID_LOSS: "x-valid loss: the 25k validation split",
        TEST_ACCURACY: "test-set accuracy of the network trained on the 25k train split, not the reported cifar10 test",
        TEST_LOSS: "test-set loss of the network trained on the 25k train split",
        TRAIN_ACCURACY: "accuracy on the 25k train split",
        TRAIN_LOSS: "loss on the 25k train split",
    },
    C100: {
        VALID_ACCURACY: "x-valid accuracy: one 5k half of the CIFAR-100 test set",
        VALID_LOSS: "x-valid loss",
        TEST_ACCURACY: "x-test accuracy: the other 5k half",
        TEST_LOSS: "x-test loss",
        TRAIN_ACCURACY: "train accuracy",
        TRAIN_LOSS: "train loss",
    },
    IN16: {
        VALID_ACCURACY: "x-valid accuracy: one half of the ImageNet16-120 validation set",
        VALID_LOSS: "x-valid loss",
        TEST_ACCURACY: "x-test accuracy: the other half",
        TEST_LOSS: "x-test loss",
        TRAIN_ACCURACY: "train accuracy",
        TRAIN_LOSS: "train loss",
    },
}


class ArrayTable(NB201Table):
    """A table held as float columns indexed by row, with a code -> row map."""

    def __init__(self, path: Union[str, os.PathLike]):
        super().__init__(path)
        self._row_of_code: array = array("l")
        self._n = 0
        #: (dataset, metric) -> array of floats by row (NaN = absent)
        self._columns: dict[tuple[str, str], array] = {}

    def _row(self, genotype: NB201Genotype) -> int:
        row = self._row_of_code[_code_of(genotype)]
        if row < 0:
            raise self._absent(genotype)
        return row

    def _lookup(self, genotype: NB201Genotype, dataset: str, metric: str) -> Optional[float]:
        row = self._row(genotype)
        col = self._columns.get((dataset, metric))
        if col is None:
            return None
        value = col[row]
        return None if math.isnan(value) else value

    def _len(self) -> int:
        return self._n
