"""NASLib's NB201 pickles (``nb201_{cifar10,cifar100,ImageNet16}_full_training.pickle``)."""
from __future__ import annotations

from array import array
from typing import Callable, Optional

from nasframe_core.benchmark import (
    FLOPS_M,
    LATENCY_S,
    PARAMS_MB,
    TRAIN_ACCURACY,
    TRAIN_LOSS,
    TRAIN_TIME_S,
    VALID_ACCURACY,
    VALID_LOSS,
)
from nasframe_core.errors import NasframeError

from ..codec import NUM_ARCHS
from .base import ArrayTable
from .codes import C10, C10V, C100, IN16, _NAN, _SUPPORTED, _code_of_str, _not_found
from .pickles import _CORRUPT, _at, _corrupt, _last, _unpickle

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


class NB201NaslibTable(ArrayTable):
    """A NASLib NB201 pickle: ``data[arch_str][dataset]`` with per-epoch lists and ``cost_info``.

    NASLib's ``eval_*`` numbers are validation results, so they answer ``valid_accuracy`` /
    ``valid_loss``; ``test_accuracy`` is None. ``cifar10`` answers its valid and cost metrics
    from ``cifar10-valid`` (the selection protocol) and None for the rest. Datasets the file
    does not hold (a cifar10 file holds only ``cifar10-valid``) answer None. The file has no
    index order. Its train_time_s is NASLib's ``cost_info['train_time']`` as stored.
    """

    format = "naslib"

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
        self._columns = columns
        self._row_of_code = row_of_code
        self._n = n
