"""The merged 200-epoch CSV format (``nb201_200ep.csv``)."""
from __future__ import annotations

import csv
import os
from array import array
from typing import Any

from nasframe_core.benchmark import PARAMS_MB, TEST_ACCURACY, TRAIN_TIME_S, VALID_ACCURACY
from nasframe_core.errors import NasframeError

from ..codec import NUM_ARCHS
from .base import ArrayTable
from .codes import C10, C10V, C100, IN16, _code_of_str, _not_found

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


class NB201CsvTable(ArrayTable):
    """The merged 200-epoch CSV (``nb201_200ep.csv``): 15625 rows in benchmark index order.

    Per dataset: ``cifar10-valid`` valid accuracy, params and train time; ``cifar10`` test
    accuracy (valid = the cifar10-valid number) and params; ``cifar100`` / ``ImageNet16-120``
    valid (``*_valid_acc_derived``) and test accuracy and params. Everything else is None.
    """

    format = "csv"
    has_index = True

    def _format_notes(self, dataset: str) -> dict[str, str]:
        if dataset in (C100, IN16):
            approx = ", approximate" if dataset == IN16 else ""
            return {VALID_ACCURACY: f"x-valid accuracy, derived as 2 x valtest - test{approx}"}
        if dataset == C10V:
            return {TRAIN_TIME_S: "NATS train-all-time of the 200-epoch run, in simulated seconds"}
        return {}

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
        # rows are benchmark indices, so the row map is the index map
        self._row_of_code = self._index_of_code = row_of_code
        self._code_of_index = code_of_row
        self._n = n


