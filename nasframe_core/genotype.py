"""Genotypes: frozen value objects naming a discrete architecture.

Each space defines its own genotype class; they share this small protocol: a string form
that is also the key of the space's benchmark, a JSON form that records the space, and
round trips for both (``parse(str(g)) == g``, ``from_json(g.to_json()) == g``).
"""
from __future__ import annotations

import abc
import json
from pathlib import Path
from typing import Any, ClassVar, Mapping, Optional

from .errors import NasframeError


class Genotype(abc.ABC):
    """A discrete architecture of one search space."""

    space: ClassVar[str] = "?"

    @abc.abstractmethod
    def to_str(self) -> str:
        """The canonical string form (the benchmark key)."""

    @classmethod
    @abc.abstractmethod
    def from_str(cls, text: str) -> "Genotype":
        """Parse the string form; bad input raises NasframeError."""

    def to_json(self) -> dict[str, Any]:
        return {"space": self.space, "genotype": self.to_str()}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "Genotype":
        if not isinstance(data, Mapping) or "genotype" not in data:
            raise NasframeError("a genotype in JSON needs a 'genotype' key holding its string form")
        space = data.get("space", cls.space)
        if space != cls.space:
            raise NasframeError(f"this genotype belongs to search space {space!r}, not {cls.space!r}")
        return cls.from_str(str(data["genotype"]))

    def __str__(self) -> str:
        return self.to_str()


def read_genotype_text(source: str) -> str:
    """The genotype string behind ``source``: a run directory, a file, or the string itself.

    A run directory yields the ``genotype`` of its ``result.json``; a JSON file its
    ``genotype`` key; any other file its stripped text.
    """
    return genotype_source(source)[0]


def genotype_source(source: str) -> tuple[str, Optional[str]]:
    """The genotype string behind ``source`` and, where it says, its search space's name."""
    path = Path(source)
    try:
        is_dir, is_file = path.is_dir(), path.is_file()
    except OSError:  # a long genotype string is not a valid path on every system
        is_dir = is_file = False
    if is_dir:
        result = path / "result.json"
        if not result.is_file():
            raise NasframeError(f"{path} has no result.json; pass a finished run directory, a genotype file or string")
        return _genotype_from_json_file(result)
    if is_file:
        if path.suffix == ".json":
            return _genotype_from_json_file(path)
        text = path.read_text().strip()
        if not text:
            raise NasframeError(f"genotype file {path} is empty")
        return text, None
    # not a path that exists: the string itself (a space's genotype strings may hold a "/";
    # parse_genotype_argument says "no such file" where it parses in no space)
    return source.strip(), None


def parse_genotype_argument(host, space, source: str):
    """``--genotype``'s value (a run directory, a genotype file or the string) as a genotype of
    ``space``. A string that names no existing path is a genotype string; when it does not parse
    and looks like a path, the error says there is no such file."""
    text = read_genotype_text(source)
    try:
        return parse_in_space(host, space, text)
    except WrongSpace:
        raise
    except NasframeError:
        if text == source.strip() and _looks_like_path(text):
            raise NasframeError(
                f"--genotype {source}: no such run directory or file, nor a genotype string of an installed space; "
                f"pass a finished run directory, a genotype file, or the genotype string"
            ) from None
        raise


def _looks_like_path(text: str) -> bool:
    """Whether ``text`` reads like a path (a separator, a leading ``~`` or ``.``, a file suffix):
    only the wording of the error for a string that is neither an existing path nor a genotype."""
    text = text.strip()
    return ("/" in text or "\\" in text or text.startswith(("~", "."))
            or Path(text).suffix.lower() in (".json", ".txt", ".yaml", ".yml"))


def _genotype_from_json_file(path: Path) -> tuple[str, Optional[str]]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise NasframeError(f"cannot read {path}: {exc}; it should be a JSON file with a 'genotype' key") from None
    if not isinstance(data, dict) or "genotype" not in data:
        raise NasframeError(f"{path} has no 'genotype' key")
    space = data.get("search_space") or data.get("space") or (data.get("genotype_json") or {}).get("space")
    return str(data["genotype"]), (str(space) if space else None)


def run_dataset(source: str) -> Optional[dict[str, Any]]:
    """The dataset a run directory ``source`` searched on, as its ``config.yaml`` records it
    (``name`` and settings, and ``data_dir`` when the run had one); ``None`` for anything else."""
    path = Path(source)
    try:
        config = path / "config.yaml"
        if not (path.is_dir() and config.is_file()):
            return None
    except OSError:
        return None
    from .config import load_config_file

    data = load_config_file(config)
    body = data.get("dataset")
    if isinstance(body, str):
        body = {"name": body}
    if not isinstance(body, Mapping) or not body.get("name"):
        return None
    out = dict(body)
    data_dir = (data.get("run") or {}).get("data_dir")
    if data_dir:
        out["data_dir"] = data_dir
    return out


class WrongSpace(NasframeError):
    """A genotype of another installed space than the one asked for."""


def parse_in_space(host, space, text: str):
    """``text`` parsed as a genotype of ``space``; when it is not one but parses in another
    installed space, the error says which ``--search-space`` to add."""
    try:
        return space.parse_genotype(text)
    except NasframeError:
        fits = []
        for name in host.names("search_space"):
            if name == space.name:
                continue
            try:
                host.create("search_space", name).parse_genotype(text)
            except Exception:  # noqa: BLE001 - any failure: not a genotype of that space
                continue
            fits.append(name)
        if not fits:
            raise
        flags = " or ".join(f"--search-space {n}" for n in fits)
        raise WrongSpace(f"the genotype is not a genotype of the {space.name!r} space but of the {fits[0]!r} "
                            f"space: add {flags}") from None
