"""Files written atomically (a temporary file beside the target, fsync, rename): what run
directories and checkpoints share, without importing torch."""
from __future__ import annotations

import os
from pathlib import Path


def write_text_atomic(path: Path, text: str, fsync: bool = True) -> None:
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        if fsync:
            os.fsync(f.fileno())
    os.replace(tmp, path)


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
