"""NAS-Bench-201 benchmark tables: look results up by architecture.

Three file formats are read (see ``load_nb201_table``):

- ``csv``: the merged 200-epoch table (the layout of ``nb201_200ep.csv``: one row per
  architecture, ``index`` 0..15624 in benchmark order, ``arch_str`` and numeric columns).
- ``naslib``: NASLib's ``nb201_{cifar10,cifar100,ImageNet16}_full_training.pickle``, a dict
  keyed by arch string whose values hold ``'cifar10-valid'``, ``'cifar100'`` or
  ``'ImageNet16-120'`` results (per-epoch lists, the last entry is used).
- ``nats``: the NATS-Bench topology directory ``NATS-tss-v1_0-3ffb9-simple/`` (or an
  uncompressed ``.tar`` of it): ``meta.pickle.pbz2`` holds ``meta_archs`` (the arch strings in
  index order) and each ``{index:06d}.pickle.pbz2`` holds that architecture's results for the
  ``'12'``- and ``'200'``-epoch schedules. The 200-epoch results are used, averaged over seeds.

Datasets are NB201's ``cifar10-valid``, ``cifar10``, ``cifar100`` and ``ImageNet16-120`` (the
aliases ``imagenet16-120`` and ``imagenet16`` are accepted). Accuracies are in %.

The CIFAR-10 protocol: architectures are *selected* on the validation accuracy of
``cifar10-valid`` (trained on the 25k train split) and *reported* by the test accuracy of
``cifar10`` (trained on train+valid). Hence ``query(a, "cifar10", "valid_accuracy")`` returns the
``cifar10-valid`` validation accuracy (the selection number; also for ``valid_loss``), and
``query(a, "cifar10", "test_accuracy")`` the ``cifar10`` test accuracy. NASLib's pickles only
hold validation numbers, which are never reported as test accuracy here.

Loading is lazy: constructing a table only records the path; the file is read at the first
query. CSV and NASLib tables are kept as compact float arrays; NATS per-architecture files
are read on demand through a small LRU cache.

Pickles are read with a restricted unpickler that only builds plain containers and numbers
(builtins, ``collections``, numpy), so a file that is not a benchmark table cannot run code.
"""
from __future__ import annotations

import abc
import bz2
import csv
import io
import math
import operator
import os
import pickle
import tarfile
from array import array
from collections import OrderedDict
from pathlib import Path
from typing import Any, Callable, Iterable, Optional, Union

from nasframe_core.benchmark import (
    FLOPS_M,
    LATENCY_S,
    METRICS,
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

from .codec import NUM_ARCHS, OPS, NB201Genotype

__all__ = [
    "NB201Table",
    "NB201CsvTable",
    "NB201NaslibTable",
    "NB201NatsTable",
    "load_nb201_table",
    "resolve_arch",
    "normalize_dataset",
    "DATASETS",
]

C10V, C10, C100, IN16 = "cifar10-valid", "cifar10", "cifar100", "ImageNet16-120"
DATASETS: tuple[str, ...] = (C10V, C10, C100, IN16)
_DATASET_ALIASES = {name.lower(): name for name in DATASETS}
_DATASET_ALIASES["imagenet16"] = IN16

ENV_TABLE = "NASFRAME_NB201"
_HOW_TO_PASS = f"pass --benchmark PATH or set {ENV_TABLE}"
_SUPPORTED = (
    "supported NB201 tables: a .csv with the columns of nb201_200ep.csv, a NASLib pickle "
    "(nb201_cifar10_full_training.pickle and the like), or the NATS-Bench topology directory "
    "NATS-tss-v1_0-3ffb9-simple/ (or an uncompressed .tar of it)"
)

_NAN = float("nan")
_NUM_EDGES = 6
_NUM_OPS = len(OPS)


# ---------------------------------------------------------------------------- arch codes
# Every architecture has a code 0..15624: its op indices read as a base-5 number. The code
# is the space's own order; the benchmark index is a per-table permutation of it.
def _code_of(genotype: NB201Genotype) -> int:
    code = 0
    for i in genotype.op_indices:
        code = code * _NUM_OPS + i
    return code


def _ops_of_code(code: int) -> tuple[str, ...]:
    digits = []
    for _ in range(_NUM_EDGES):
        code, d = divmod(code, _NUM_OPS)
        digits.append(OPS[d])
    return tuple(reversed(digits))


def _str_of_code(code: int) -> str:
    o = _ops_of_code(code)
    return f"|{o[0]}~0|+|{o[1]}~0|{o[2]}~1|+|{o[3]}~0|{o[4]}~1|{o[5]}~2|"


_STR2CODE: Optional[dict[str, int]] = None


def _str2code() -> dict[str, int]:
    global _STR2CODE
    if _STR2CODE is None:
        _STR2CODE = {_str_of_code(c): c for c in range(NUM_ARCHS)}
    return _STR2CODE


def _code_of_str(text: str, where: str) -> int:
    """The code of an arch string read from a file; a bad string names ``where``."""
    code = _str2code().get(text)
    if code is None:
        code = _str2code().get(str(text).strip())
    if code is None:
        try:
            code = _code_of(NB201Genotype.from_str(str(text)))
        except NasframeError as exc:
            raise NasframeError(f"{where}: {exc}") from None
    return code


# ------------------------------------------------------------------------- arguments
def normalize_dataset(dataset: Any) -> str:
    """NB201's name for ``dataset`` (case-insensitive; ``imagenet16`` means ImageNet16-120)."""
    name = _DATASET_ALIASES.get(str(dataset).strip().lower()) if dataset is not None else None
    if name is None:
        raise NasframeError(
            f"unknown NB201 dataset {dataset!r}; valid datasets: {', '.join(DATASETS)} "
            f"(aliases: imagenet16-120, imagenet16)"
        )
    return name


def _check_metric(metric: Any) -> str:
    if metric not in METRICS:
        raise NasframeError(f"unknown benchmark metric {metric!r}; valid metrics: {', '.join(METRICS)}")
    return metric


def _check_index(index: Any) -> int:
    if isinstance(index, bool):
        raise NasframeError(f"an NB201 index must be an integer, got {index!r}")
    try:
        i = operator.index(index)
    except TypeError:
        raise NasframeError(f"an NB201 index must be an integer, got {index!r}") from None
    if not 0 <= i < NUM_ARCHS:
        raise NasframeError(f"NB201 index {i} is out of range; valid indices are 0..{NUM_ARCHS - 1}")
    return i


def resolve_arch(arch: Any, table: Optional["NB201Table"] = None) -> NB201Genotype:
    """The genotype meant by ``arch``.

    ``arch`` may be an :class:`NB201Genotype`, an arch string ``|op~0|+|op~0|op~1|+|...|``, a
    6-tuple/list of op indices (into ``OPS``), or a benchmark index (an int or a string of
    digits), which needs a ``table`` that knows the benchmark's index order.
    """
    if isinstance(arch, NB201Genotype):
        return arch
    if isinstance(arch, str):
        text = arch.strip()
        if _is_int_text(text):
            return _arch_of_index(int(text), table)
        return NB201Genotype.from_str(text)
    if isinstance(arch, (tuple, list)):
        if len(arch) == _NUM_EDGES and all(isinstance(x, str) for x in arch):
            return NB201Genotype(tuple(arch))
        try:
            indices = tuple(operator.index(x) for x in arch)
        except TypeError:
            raise NasframeError(
                f"NB201 op indices must be {_NUM_EDGES} integers in 0..{_NUM_OPS - 1}, got {arch!r}"
            ) from None
        return NB201Genotype.from_op_indices(indices)
    if not isinstance(arch, bool):
        try:
            index = operator.index(arch)
        except TypeError:
            index = None
        if index is not None:
            return _arch_of_index(index, table)
    to_str = getattr(arch, "to_str", None)
    if callable(to_str) and getattr(arch, "space", None) in (None, NB201Genotype.space):
        return NB201Genotype.from_str(to_str())
    raise NasframeError(
        f"cannot read an NB201 architecture from {arch!r}; give an arch string "
        f"'|op~0|+|op~0|op~1|+|op~0|op~1|op~2|', 6 op indices or a benchmark index"
    )


def _is_int_text(text: str) -> bool:
    """Whether ``text`` spells an integer (``"42"``, ``"-1"``): it is meant as an index."""
    digits = text[1:] if text[:1] in ("+", "-") else text
    return digits.isdigit()


def _arch_of_index(index: int, table: Optional["NB201Table"]) -> NB201Genotype:
    index = _check_index(index)
    if table is None:
        raise NasframeError(
            f"NB201 index {index} needs a benchmark table to name its architecture: {_HOW_TO_PASS}"
        )
    return table.arch_of(index)


# ---------------------------------------------------------------------------- pickles
_SAFE_BUILTINS = frozenset(
    {"dict", "list", "tuple", "set", "frozenset", "int", "float", "complex", "str", "bytes",
     "bytearray", "bool", "slice", "range", "object"}
)


class _Refused(pickle.UnpicklingError):
    """A pickle that names a class or function no benchmark table holds."""


class _TableUnpickler(pickle.Unpickler):
    """Builds plain containers and numbers only; anything else is not a benchmark table."""

    def find_class(self, module: str, name: str) -> Any:
        ok = (
            (module == "builtins" and name in _SAFE_BUILTINS)
            or module == "collections"
            or module == "numpy"
            or module.startswith("numpy.")
            or (module == "copyreg" and name == "_reconstructor")
            or (module == "_codecs" and name == "encode")
        )
        if not ok:
            raise _Refused(f"it refers to {module}.{name}, which no benchmark table holds")
        return super().find_class(module, name)


#: what a truncated or corrupt pickle/bz2 stream raises
_CORRUPT = (EOFError, OSError, pickle.UnpicklingError, ValueError, TypeError, AttributeError,
            ImportError, IndexError, KeyError, RecursionError)


def _unpickle(fileobj: Any) -> Any:
    return _TableUnpickler(fileobj).load()


def _corrupt(kind: str, where: str, exc: BaseException) -> NasframeError:
    detail = str(exc) or type(exc).__name__
    if isinstance(exc, _Refused):
        return NasframeError(f"refusing to load {kind} {where}: {detail}, so it is not an NB201 table; {_SUPPORTED}")
    return NasframeError(
        f"cannot read {kind} {where}: the file is truncated or corrupt ({type(exc).__name__}: {detail}); "
        f"download it again"
    )


def _num(value: Any) -> Optional[float]:
    if value is None or isinstance(value, (str, bytes)):
        return None
    try:
        x = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(x) else x


def _at(container: Any, key: Any) -> Optional[float]:
    """``container[key]`` as a float, or None where it is absent."""
    if container is None:
        return None
    try:
        return _num(container[key])
    except (KeyError, IndexError, TypeError):
        return None


def _last(values: Any) -> Optional[float]:
    """The final-epoch value of a per-epoch list (or dict keyed by epoch, or a plain number)."""
    if isinstance(values, (list, tuple)):
        return _num(values[-1]) if values else None
    if isinstance(values, dict):
        if not values:
            return None
        try:
            return _num(values[max(values)])
        except TypeError:
            return None
    return _num(values)


def _mean(values: Iterable[Optional[float]]) -> Optional[float]:
    xs = [v for v in values if v is not None]
    return sum(xs) / len(xs) if xs else None


# ------------------------------------------------------------------------------ tables
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
    format: str = "?"

    def __init__(self, path: Union[str, os.PathLike]):
        super().__init__(Path(path))
        self._loaded = False

    # -- to implement -------------------------------------------------------------
    @abc.abstractmethod
    def _load(self) -> None:
        """Read the file (called once, at the first use)."""

    @abc.abstractmethod
    def _lookup(self, genotype: NB201Genotype, dataset: str, metric: str) -> Optional[float]:
        """The value for a resolved genotype, normalised dataset and checked metric."""

    # -- public -------------------------------------------------------------------
    def _ensure_loaded(self) -> None:
        if not self._loaded:
            self._load()
            self._loaded = True

    def query(self, arch: Any, dataset: str, metric: str) -> Optional[float]:
        ds = normalize_dataset(dataset)
        metric = _check_metric(metric)
        genotype = resolve_arch(arch, self)
        self._ensure_loaded()
        return self._lookup(genotype, ds, metric)

    @property
    def has_index(self) -> bool:
        """Whether this file knows the benchmark's index order (0..15624)."""
        return False

    def index_of(self, arch: Any) -> int:
        """The benchmark index of ``arch``."""
        self._no_index()
        raise AssertionError  # pragma: no cover

    def arch_of(self, index: int) -> NB201Genotype:
        """The architecture at benchmark index ``index``."""
        _check_index(index)
        self._no_index()
        raise AssertionError  # pragma: no cover

    def _no_index(self) -> None:
        raise NasframeError(
            f"the {self.format} table {self.path} does not record the NB201 index order; name the "
            f"architecture by its arch string, or load nb201_200ep.csv or the NATS-tss-v1_0-3ffb9-simple "
            f"directory to use indices"
        )

    @property
    def available_datasets(self) -> tuple[str, ...]:
        """The datasets this file holds numbers for (the others answer None)."""
        return self.datasets

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

    def _format_notes(self, dataset: str) -> dict[str, str]:
        """Notes that hold for this file format only (overriding the general ones)."""
        return {}

    def __len__(self) -> int:
        self._ensure_loaded()
        return self._len()

    @abc.abstractmethod
    def _len(self) -> int:
        ...

    def __repr__(self) -> str:
        return f"{type(self).__name__}(format={self.format!r}, path={str(self.path)!r})"


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


class _ArrayTable(NB201Table):
    """A table held as float arrays indexed by row, with a code->row map."""

    def __init__(self, path: Union[str, os.PathLike]):
        super().__init__(path)
        self._row_of_code: array = array("l")
        self._n = 0
        #: (dataset, metric) -> array of floats by row (NaN = absent)
        self._columns: dict[tuple[str, str], array] = {}

    def _row(self, genotype: NB201Genotype) -> int:
        row = self._row_of_code[_code_of(genotype)]
        if row < 0:
            raise NasframeError(
                f"architecture {genotype.to_str()} is not in the {self.format} table {self.path} "
                f"({self._n} architectures)"
            )
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


# --------------------------------------------------------------------------------- CSV
#: CSV column -> the (dataset, metric) pairs it answers
_CSV_COLUMNS: dict[str, tuple[tuple[str, str], ...]] = {
    "c10valid_valid_acc": ((C10V, VALID_ACCURACY), (C10, VALID_ACCURACY)),
    "c10_test_acc": ((C10, TEST_ACCURACY),),
    "c100_valid_acc_derived": ((C100, VALID_ACCURACY),),
    "c100_test_acc": ((C100, TEST_ACCURACY),),
    "in16_valid_acc_derived": ((IN16, VALID_ACCURACY),),
    "in16_test_acc": ((IN16, TEST_ACCURACY),),
    "c10_params_mb": ((C10V, PARAMS_MB), (C10, PARAMS_MB)),
    "c100_params_mb": ((C100, PARAMS_MB),),
    "in16_params_mb": ((IN16, PARAMS_MB),),
    "c10valid_train_time_s": ((C10V, TRAIN_TIME_S),),
}
_CSV_REQUIRED = ("index", "arch_str", *_CSV_COLUMNS)


class NB201CsvTable(_ArrayTable):
    """The merged 200-epoch CSV (``nb201_200ep.csv``): 15625 rows in benchmark index order.

    Per dataset: ``cifar10-valid`` valid accuracy, params and train time; ``cifar10`` test
    accuracy (valid = the cifar10-valid number) and params; ``cifar100`` / ``ImageNet16-120``
    valid (``*_valid_acc_derived``) and test accuracy and params. Everything else is None.
    """

    format = "csv"

    def __init__(self, path: Union[str, os.PathLike]):
        super().__init__(path)
        self._code_of_row: array = array("l")

    def _format_notes(self, dataset: str) -> dict[str, str]:
        if dataset in (C100, IN16):
            approx = ", approximate" if dataset == IN16 else ""
            return {VALID_ACCURACY: f"x-valid accuracy, derived as 2 x valtest - test{approx}"}
        if dataset == C10V:
            return {TRAIN_TIME_S: "NATS train-all-time of the 200-epoch run, in simulated seconds"}
        return {}

    @property
    def has_index(self) -> bool:
        return True

    def index_of(self, arch: Any) -> int:
        genotype = resolve_arch(arch, self)
        self._ensure_loaded()
        return self._row(genotype)

    def arch_of(self, index: int) -> NB201Genotype:
        index = _check_index(index)
        self._ensure_loaded()
        return NB201Genotype(_ops_of_code(self._code_of_row[index]))

    def _error(self, line: int, what: str) -> NasframeError:
        return NasframeError(f"NB201 table {self.path} line {line}: {what}; the file is truncated or corrupt, download it again")

    def _load(self) -> None:
        path = self.path
        try:
            with open(path, "rb") as fb:
                fb.seek(0, os.SEEK_END)
                size = fb.tell()
                if size:
                    fb.seek(size - 1)
                    ends_with_newline = fb.read(1) in (b"\n", b"\r")
                else:
                    ends_with_newline = False
            with open(path, "r", encoding="utf-8-sig", newline="") as f:
                self._parse(csv.reader(f), ends_with_newline)
        except FileNotFoundError:
            raise _not_found(path) from None
        except UnicodeDecodeError as exc:
            raise NasframeError(f"NB201 table {path} is not a UTF-8 text CSV ({exc.reason}); the file is corrupt, download it again") from None
        except csv.Error as exc:
            raise NasframeError(f"NB201 table {path}: unreadable CSV ({exc}); the file is corrupt, download it again") from None
        except OSError as exc:
            raise NasframeError(f"cannot read NB201 table {path}: {exc}") from None

    def _parse(self, reader: Any, ends_with_newline: bool) -> None:
        path = self.path
        header = next(reader, None)
        if header is None:
            raise NasframeError(f"NB201 table {path} is empty; download nb201_200ep.csv again")
        header = [h.strip() for h in header]
        missing = [c for c in _CSV_REQUIRED if c not in header]
        if missing:
            hint = ""
            if "cifar10-test" in header:
                hint = " (this looks like the 12-epoch nb201_12ep_minibench.csv; use nb201_200ep.csv)"
            raise NasframeError(
                f"NB201 table {path} has the wrong header: missing column(s) {', '.join(missing)}{hint}; "
                f"expected the columns of nb201_200ep.csv"
            )
        width = len(header)
        i_index, i_arch = header.index("index"), header.index("arch_str")
        numeric = [(header.index(name), array("d", bytes(8 * NUM_ARCHS))) for name in _CSV_COLUMNS]
        row_of_code = array("l", [-1]) * NUM_ARCHS
        code_of_row = array("l", bytes(array("l").itemsize * NUM_ARCHS))
        row = -1
        for row, fields in enumerate(reader):
            line = reader.line_num
            if len(fields) != width:
                if not fields:
                    raise self._error(line, "empty line")
                raise self._error(line, f"{len(fields)} fields, expected {width}")
            if row >= NUM_ARCHS:
                raise self._error(line, f"more than {NUM_ARCHS} rows")
            if fields[i_index].strip() != str(row):
                raise self._error(line, f"index {fields[i_index]!r}, expected {row} (rows must list indices 0..{NUM_ARCHS - 1} in order)")
            code = _code_of_str(fields[i_arch], f"NB201 table {path} line {line}")
            if row_of_code[code] >= 0:
                raise self._error(line, f"architecture {fields[i_arch]} repeats row {row_of_code[code]}")
            row_of_code[code] = row
            code_of_row[row] = code
            for col, values in numeric:
                text = fields[col]
                try:
                    values[row] = float(text)
                except ValueError:
                    raise self._error(line, f"column {header[col]} holds {text!r}, not a number") from None
        n = row + 1
        if n != NUM_ARCHS:
            raise NasframeError(
                f"NB201 table {path} has {n} rows, expected {NUM_ARCHS}; the file is truncated, download it again"
            )
        if not ends_with_newline:
            raise NasframeError(
                f"NB201 table {path} does not end with a newline (its last line may be cut off); "
                f"the file is truncated, download it again"
            )
        columns: dict[tuple[str, str], array] = {}
        for (col, values), name in zip(numeric, _CSV_COLUMNS):
            for key in _CSV_COLUMNS[name]:
                columns[key] = values
        self._columns = columns
        self._row_of_code = row_of_code
        self._code_of_row = code_of_row
        self._n = n


# ------------------------------------------------------------------------------ NASLib
_NASLIB_DATASETS = (C10V, C100, IN16)
_NASLIB_FIELDS: tuple[tuple[str, Callable[[dict], Optional[float]]], ...] = (
    (TRAIN_ACCURACY, lambda d: _last(d.get("train_acc1es"))),
    (TRAIN_LOSS, lambda d: _last(d.get("train_losses"))),
    (VALID_ACCURACY, lambda d: _last(d.get("eval_acc1es"))),
    (VALID_LOSS, lambda d: _last(d.get("eval_losses"))),
    (PARAMS_MB, lambda d: _at(d.get("cost_info"), "params")),
    (FLOPS_M, lambda d: _at(d.get("cost_info"), "flops")),
    (LATENCY_S, lambda d: _at(d.get("cost_info"), "latency")),
    (TRAIN_TIME_S, lambda d: _at(d.get("cost_info"), "train_time")),
)
#: what ``cifar10`` borrows from ``cifar10-valid`` (the selection numbers and the costs of the
#: same network; train numbers and train time belong to a different training set)
_C10_FROM_C10V = (VALID_ACCURACY, VALID_LOSS, PARAMS_MB, FLOPS_M, LATENCY_S)


class NB201NaslibTable(_ArrayTable):
    """A NASLib NB201 pickle: ``data[arch_str][dataset]`` with per-epoch lists and ``cost_info``.

    NASLib's ``eval_*`` numbers are validation results, so they answer ``valid_accuracy`` /
    ``valid_loss``; ``test_accuracy`` is None. ``cifar10`` answers its valid and cost metrics
    from ``cifar10-valid`` (the selection protocol) and None for the rest. Datasets the file
    does not hold (a cifar10 file holds only ``cifar10-valid``) answer None. The file has no
    index order. Its train_time_s is NASLib's ``cost_info['train_time']`` as stored.
    """

    format = "naslib"

    def __init__(self, path: Union[str, os.PathLike]):
        super().__init__(path)
        self._present: tuple[str, ...] = ()

    def _format_notes(self, dataset: str) -> dict[str, str]:
        source = C10V if dataset in (C10, C10V) else dataset
        notes = {
            VALID_ACCURACY: f"{source}'s final-epoch eval_acc1es, NASLib's validation accuracy",
            VALID_LOSS: f"{source}'s final-epoch eval_losses",
            TRAIN_TIME_S: "NASLib's cost_info['train_time'], as stored",
        }
        if dataset == C10:
            notes[VALID_ACCURACY] += ": select on this"
        return notes

    @property
    def available_datasets(self) -> tuple[str, ...]:
        self._ensure_loaded()
        return self._present

    def _load(self) -> None:
        path = self.path
        try:
            with open(path, "rb") as f:
                data = _unpickle(f)
        except FileNotFoundError:
            raise _not_found(path) from None
        except _CORRUPT as exc:
            raise _corrupt("NASLib pickle", str(path), exc) from None
        if not isinstance(data, dict) or not data:
            raise NasframeError(f"{path} is not a NASLib NB201 pickle (expected a dict keyed by arch string); {_SUPPORTED}")
        n = len(data)
        row_of_code = array("l", [-1]) * NUM_ARCHS
        columns: dict[tuple[str, str], array] = {}
        present: set[str] = set()
        where = f"NASLib pickle {path}"
        for row, (arch_str, entry) in enumerate(data.items()):
            if not isinstance(arch_str, str):
                raise NasframeError(f"{where}: key {arch_str!r} is not an NB201 arch string; {_SUPPORTED}")
            code = _code_of_str(arch_str, where)
            if row_of_code[code] >= 0:
                raise NasframeError(f"{where}: architecture {arch_str} appears twice")
            row_of_code[code] = row
            found = False
            if isinstance(entry, dict):
                for ds in _NASLIB_DATASETS:
                    result = entry.get(ds)
                    if not isinstance(result, dict):
                        continue
                    found = True
                    present.add(ds)
                    for metric, get in _NASLIB_FIELDS:
                        value = get(result)
                        if value is None:
                            continue
                        col = columns.get((ds, metric))
                        if col is None:
                            col = columns[(ds, metric)] = array("d", [_NAN]) * n
                        col[row] = value
            if not found:
                keys = list(entry)[:6] if isinstance(entry, dict) else type(entry).__name__
                raise NasframeError(
                    f"{where}: the entry for {arch_str} holds {keys}, not the results of "
                    f"{', '.join(_NASLIB_DATASETS)}; {_SUPPORTED}"
                )
        del data  # the big dict goes now; only the arrays stay
        for metric in _C10_FROM_C10V:
            if (C10V, metric) in columns:
                columns[(C10, metric)] = columns[(C10V, metric)]
        if C10V in present:
            present.add(C10)
        self._present = tuple(ds for ds in DATASETS if ds in present)
        self._columns = columns
        self._row_of_code = row_of_code
        self._n = n


# -------------------------------------------------------------------------------- NATS
_NATS_META = "meta.pickle.pbz2"
_NATS_HP = "200"
_LRU_SIZE = 256


class _NatsDir:
    def __init__(self, root: Path):
        self.root = root

    def where(self, name: str) -> str:
        return str(self.root / name)

    def read(self, name: str) -> Optional[bytes]:
        try:
            return (self.root / name).read_bytes()
        except FileNotFoundError:
            return None


class _NatsTar:
    """Members of an uncompressed tar, read by offset (the tar is scanned once)."""

    def __init__(self, path: Path):
        self.path = path
        self._members: Optional[dict[str, tuple[int, int]]] = None

    def where(self, name: str) -> str:
        return f"{self.path}:{name}"

    def _scan(self) -> dict[str, tuple[int, int]]:
        if self._members is None:
            members: dict[str, tuple[int, int]] = {}
            try:
                with tarfile.open(self.path, "r:") as tar:
                    for info in tar:
                        if info.isfile():
                            members[info.name.rsplit("/", 1)[-1]] = (info.offset_data, info.size)
            except tarfile.ReadError as exc:
                raise NasframeError(
                    f"cannot read {self.path} as an uncompressed tar ({exc}); extract it and pass the "
                    f"NATS-tss-v1_0-3ffb9-simple directory instead"
                ) from None
            except (EOFError, OSError, tarfile.TarError) as exc:
                raise _corrupt("NATS tar", str(self.path), exc) from None
            self._members = members
        return self._members

    def read(self, name: str) -> Optional[bytes]:
        entry = self._scan().get(name)
        if entry is None:
            return None
        offset, size = entry
        with open(self.path, "rb") as f:
            f.seek(offset)
            data = f.read(size)
        if len(data) != size:
            raise NasframeError(f"NATS tar {self.path} is truncated inside {name}; download it again")
        return data


class NB201NatsTable(NB201Table):
    """The NATS-Bench topology directory ``NATS-tss-v1_0-3ffb9-simple/`` (fast-mode files).

    ``meta.pickle.pbz2``: ``{'meta_archs': [arch_str] * 15625, 'total_archs', 'arch2infos': None,
    'evaluated_indexes'}``. ``{index:06d}.pickle.pbz2``: ``{'12': ArchResults, '200': ArchResults}``
    as state dicts: ``{'arch_index', 'arch_str', 'dataset_seed': {dataset: [seed]},
    'all_results': {(dataset, seed): ResultsCount}}``, a ResultsCount being ``{'epochs',
    'train_acc1es', 'train_losses', 'train_times' (epoch -> s), 'eval_acc1es' / 'eval_losses'
    ('x-valid@199', 'x-test@199', 'ori-test@199'), 'params' (MB), 'flop' (M), 'latency' ([s])}``.

    Numbers are the final epoch of the ``'200'`` results, averaged over seeds (NATS'
    ``get_more_info(..., hp='200', is_random=False)``): valid = ``x-valid`` (for ``cifar10``,
    the ``cifar10-valid`` x-valid), test = ``ori-test`` for cifar10 and cifar10-valid,
    ``x-test`` for cifar100 and ImageNet16-120; train_time_s = the summed epoch train times.
    """

    format = "nats"

    def __init__(self, path: Union[str, os.PathLike]):
        super().__init__(path)
        self._source: Union[_NatsDir, _NatsTar] = _NatsDir(self.path) if self.path.is_dir() else _NatsTar(self.path)
        self._code_of_index: array = array("l")
        self._index_of_code: array = array("l")
        self._cache: "OrderedDict[int, dict[tuple[str, str], float]]" = OrderedDict()

    def _format_notes(self, dataset: str) -> dict[str, str]:
        return {TRAIN_TIME_S: "the summed epoch train times of the 200-epoch run, in simulated seconds"}

    @property
    def has_index(self) -> bool:
        return True

    def index_of(self, arch: Any) -> int:
        genotype = resolve_arch(arch, self)
        self._ensure_loaded()
        return self._index_of_code[_code_of(genotype)]

    def arch_of(self, index: int) -> NB201Genotype:
        index = _check_index(index)
        self._ensure_loaded()
        return NB201Genotype(_ops_of_code(self._code_of_index[index]))

    def _len(self) -> int:
        return len(self._code_of_index)

    def _read_pickle(self, name: str) -> Any:
        where = self._source.where(name)
        data = self._source.read(name)
        if data is None:
            return None
        try:
            return _unpickle(io.BytesIO(bz2.decompress(data)))
        except _CORRUPT as exc:
            raise _corrupt("NATS file", where, exc) from None

    def _load(self) -> None:
        where = self._source.where(_NATS_META)
        meta = self._read_pickle(_NATS_META)
        if meta is None:
            raise NasframeError(f"{where} not found; {self.path} is not a complete NATS-tss-v1_0-3ffb9-simple download")
        archs = meta.get("meta_archs") if isinstance(meta, dict) else None
        if not isinstance(archs, (list, tuple)):
            raise NasframeError(f"{where} has no 'meta_archs' list; it is not NATS-Bench topology (tss) metadata")
        if len(archs) != NUM_ARCHS:
            raise NasframeError(
                f"{where} lists {len(archs)} architectures, expected {NUM_ARCHS}; it is truncated or not "
                f"NATS-Bench topology (tss) metadata"
            )
        code_of_index = array("l", bytes(array("l").itemsize * NUM_ARCHS))
        index_of_code = array("l", [-1]) * NUM_ARCHS
        for index, arch_str in enumerate(archs):
            code = _code_of_str(arch_str, f"{where} meta_archs[{index}]")
            if index_of_code[code] >= 0:
                raise NasframeError(f"{where}: architecture {arch_str} appears twice in meta_archs")
            index_of_code[code] = index
            code_of_index[index] = code
        self._code_of_index = code_of_index
        self._index_of_code = index_of_code

    def _lookup(self, genotype: NB201Genotype, dataset: str, metric: str) -> Optional[float]:
        index = self._index_of_code[_code_of(genotype)]
        return self._record(index).get((dataset, metric))

    def _record(self, index: int) -> dict[tuple[str, str], float]:
        record = self._cache.get(index)
        if record is not None:
            self._cache.move_to_end(index)
            return record
        name = f"{index:06d}.pickle.pbz2"
        data = self._read_pickle(name)
        if data is None:
            data = self._read_pickle(f"{index}.pickle.pbz2")
        if data is None:
            raise NasframeError(
                f"{self._source.where(name)} not found; the NATS directory {self.path} is incomplete, download it again"
            )
        record = self._extract(index, data, self._source.where(name))
        self._cache[index] = record
        if len(self._cache) > _LRU_SIZE:
            self._cache.popitem(last=False)
        return record

    def _extract(self, index: int, data: Any, where: str) -> dict[tuple[str, str], float]:
        if not isinstance(data, dict):
            raise NasframeError(f"{where} holds a {type(data).__name__}, not NATS results by schedule ('12', '200')")
        state = data.get(_NATS_HP, data.get(int(_NATS_HP)))
        if not isinstance(state, dict):
            raise NasframeError(f"{where} has no 200-epoch ('200') results, only {sorted(map(str, data))}")
        expected = _str_of_code(self._code_of_index[index])
        if state.get("arch_str") not in (None, expected):
            raise NasframeError(
                f"{where} describes {state.get('arch_str')}, but meta_archs[{index}] is {expected}; the directory mixes files"
            )
        seeds_of = state.get("dataset_seed") or {}
        runs_of = state.get("all_results") or {}
        per_ds: dict[str, dict[str, Optional[float]]] = {}
        for ds in DATASETS:
            runs = [runs_of.get((ds, seed)) for seed in (seeds_of.get(ds) or ())]
            runs = [r for r in runs if isinstance(r, dict)]
            if runs:
                per_ds[ds] = _nats_average(runs)
        out: dict[tuple[str, str], float] = {}

        def put(ds: str, metric: str, value: Optional[float]) -> None:
            if value is not None:
                out[(ds, metric)] = value

        for ds, vals in per_ds.items():
            test = "ori-test" if ds in (C10, C10V) else "x-test"
            put(ds, TRAIN_ACCURACY, vals["train_acc"])
            put(ds, TRAIN_LOSS, vals["train_loss"])
            put(ds, VALID_ACCURACY, vals["x-valid_acc"])
            put(ds, VALID_LOSS, vals["x-valid_loss"])
            put(ds, TEST_ACCURACY, vals[f"{test}_acc"])
            put(ds, TEST_LOSS, vals[f"{test}_loss"])
            put(ds, PARAMS_MB, vals["params"])
            put(ds, FLOPS_M, vals["flops"])
            put(ds, LATENCY_S, vals["latency"])
            put(ds, TRAIN_TIME_S, vals["train_time"])
        # the CIFAR-10 protocol: cifar10 is selected on the cifar10-valid validation numbers
        out.pop((C10, VALID_ACCURACY), None)
        out.pop((C10, VALID_LOSS), None)
        if C10V in per_ds:
            put(C10, VALID_ACCURACY, per_ds[C10V]["x-valid_acc"])
            put(C10, VALID_LOSS, per_ds[C10V]["x-valid_loss"])
        return out


def _nats_average(runs: list[dict]) -> dict[str, Optional[float]]:
    """Final-epoch numbers of one dataset's runs (one per seed), averaged over the seeds."""
    cols: dict[str, list[Optional[float]]] = {}

    def add(key: str, value: Optional[float]) -> None:
        cols.setdefault(key, []).append(value)

    for r in runs:
        epochs = _num(r.get("epochs"))
        if epochs is None:
            train = r.get("train_acc1es")
            epochs = len(train) if isinstance(train, (list, tuple, dict)) else 0
        epochs = int(epochs)
        last = epochs - 1
        add("train_acc", _at(r.get("train_acc1es"), last))
        add("train_loss", _at(r.get("train_losses"), last))
        for name in ("x-valid", "x-test", "ori-test"):
            add(f"{name}_acc", _at(r.get("eval_acc1es"), f"{name}@{last}"))
            add(f"{name}_loss", _at(r.get("eval_losses"), f"{name}@{last}"))
        add("params", _num(r.get("params")))
        add("flops", _num(r.get("flop")))
        latency = r.get("latency")
        lat = _mean(_num(x) for x in latency) if isinstance(latency, (list, tuple)) and latency else _num(latency)
        add("latency", lat if lat is not None and lat > 0 else None)
        times = r.get("train_times")
        total = None
        if isinstance(times, (dict, list, tuple)) and epochs > 0:
            parts = [_at(times, i) for i in range(epochs)]
            if all(p is not None for p in parts):
                total = sum(parts)  # type: ignore[arg-type]
        add("train_time", total)
    return {key: _mean(values) for key, values in cols.items()}


# ------------------------------------------------------------------------------ loading
def _not_found(path: Path) -> NasframeError:
    return NasframeError(
        f"NB201 benchmark {path} not found; download nb201_200ep.csv, a NASLib "
        f"nb201_*_full_training.pickle or the NATS-tss-v1_0-3ffb9-simple directory, or pass "
        f"--benchmark PATH / set {ENV_TABLE}"
    )


def load_nb201_table(path: Union[str, os.PathLike]) -> NB201Table:
    """A lazily loaded NB201 table for ``path``, chosen by what the path is.

    A ``.csv`` file (the layout of ``nb201_200ep.csv``), a NASLib pickle (``.pickle``/``.pkl``),
    a NATS-Bench topology directory holding ``meta.pickle.pbz2`` (or a directory holding
    ``NATS-tss-v1_0-3ffb9-simple/``, such as ``$TORCH_HOME``), or an uncompressed ``.tar`` of that
    directory. Only the path is checked here; the file is read at the first query.
    """
    p = Path(os.path.expanduser(os.fspath(path)))
    if not p.exists():
        raise _not_found(p)
    if p.is_dir():
        if (p / _NATS_META).is_file():
            return NB201NatsTable(p)
        inner = p / "NATS-tss-v1_0-3ffb9-simple"
        if (inner / _NATS_META).is_file():
            return NB201NatsTable(inner)
        raise NasframeError(f"directory {p} holds no {_NATS_META}, so it is not a NATS-Bench topology directory; {_SUPPORTED}")
    name = p.name.lower()
    if name.endswith(".csv"):
        return NB201CsvTable(p)
    if name.endswith((".pickle", ".pkl", ".p")):
        return NB201NaslibTable(p)
    if name.endswith(".tar"):
        return NB201NatsTable(p)
    if name.endswith(".pbz2"):
        if name == _NATS_META or name.split(".")[0].isdigit():
            raise NasframeError(f"{p} is one file of a NATS-Bench directory; pass the directory that holds it ({p.parent})")
        raise NasframeError(
            f"{p} is a single-file NATS/NB201 archive, which is not read here; {_SUPPORTED}"
        )
    if name.endswith((".pth", ".pt")):
        raise NasframeError(f"{p} is a NAS-Bench-201 .pth file, which is not read here; {_SUPPORTED}")
    if name.endswith((".tar.gz", ".tgz", ".tar.bz2", ".tar.xz", ".zip")):
        raise NasframeError(f"{p} is a compressed archive; extract it and pass the directory inside; {_SUPPORTED}")
    # no telling extension: sniff the first bytes
    try:
        with open(p, "rb") as f:
            head = f.read(64)
    except OSError as exc:
        raise NasframeError(f"cannot read NB201 benchmark {p}: {exc}") from None
    if head.startswith(b"\x80"):
        return NB201NaslibTable(p)
    if head.lstrip(b"\xef\xbb\xbf").startswith(b"index,arch_str"):
        return NB201CsvTable(p)
    raise NasframeError(f"{p} is not a file format this loader knows; {_SUPPORTED}")
