"""The NATS-Bench topology directory ``NATS-tss-v1_0-3ffb9-simple/`` (or an uncompressed ``.tar`` of it)."""
from __future__ import annotations

import bz2
import io
import os
import tarfile
from array import array
from collections import OrderedDict
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
)
from nasframe_core.errors import NasframeError

from ..codec import NUM_ARCHS, NB201Genotype
from .base import NB201Table
from .codes import C10, C10V, DATASETS, _code_of, _code_of_str, _str_of_code
from .pickles import _CORRUPT, _at, _corrupt, _mean, _num, _unpickle

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
    has_index = True

    def __init__(self, path: Union[str, os.PathLike]):
        super().__init__(path)
        self._source: Union[_NatsDir, _NatsTar] = _NatsDir(self.path) if self.path.is_dir() else _NatsTar(self.path)
        self._cache: "OrderedDict[int, dict[tuple[str, str], float]]" = OrderedDict()

    def _format_notes(self, dataset: str) -> dict[str, str]:
        return {TRAIN_TIME_S: "the summed epoch train times of the 200-epoch run, in simulated seconds"}

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
