"""Names, codes and argument checks shared by every NB201 table format.

Every architecture has a *code* 0..15624: its op indices read as a base-5 number. The code is
the space's own order; a benchmark index is a per-file permutation of it (see
:class:`~.base.NB201Table`).
"""
from __future__ import annotations

import operator
from pathlib import Path
from typing import Any, Optional

from nasframe_core.benchmark import METRICS
from nasframe_core.errors import NasframeError

from ..codec import NUM_ARCHS, OPS, NB201Genotype


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


def resolve_arch(arch: Any, table: Optional[Any] = None) -> NB201Genotype:
    """The genotype meant by ``arch``.

    ``arch`` may be an :class:`NB201Genotype`, an arch string ``|op~0|+|op~0|op~1|+|...|``, a
    6-tuple/list of op indices (into ``OPS``), or a benchmark index (an int or a string of
    digits), which needs a ``table`` that knows the benchmark's index order (an ``NB201Table``).
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


def _arch_of_index(index: int, table: Optional[Any]) -> NB201Genotype:
    index = _check_index(index)
    if table is None:
        raise NasframeError(
            f"NB201 index {index} needs a benchmark table to name its architecture: {_HOW_TO_PASS}"
        )
    return table.arch_of(index)



def _not_found(path: Path) -> NasframeError:
    return NasframeError(
        f"NB201 benchmark {path} not found; download nb201_200ep.csv, a NASLib "
        f"nb201_*_full_training.pickle or the NATS-tss-v1_0-3ffb9-simple directory, or pass "
        f"--benchmark PATH / set {ENV_TABLE}"
    )
