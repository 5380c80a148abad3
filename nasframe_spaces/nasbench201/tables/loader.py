"""Choosing the table format for a path."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Union

from nasframe_core.errors import NasframeError

from .base import NB201Table
from .codes import _SUPPORTED, _not_found
from .csv_table import NB201CsvTable
from .naslib import NB201NaslibTable
from .nats import _NATS_META, NB201NatsTable


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
