"""Checkpoints: written atomically, read with errors that name the file."""
from __future__ import annotations

import os
import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch

from .errors import NasframeError

FORMAT = "nasframe-checkpoint"
VERSION = 1


def save_atomic(obj: Any, path: Path) -> None:
    """``torch.save`` to a temporary file beside ``path``, fsync, then rename over it."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as f:
        torch.save(obj, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def write_text_atomic(path: Path, text: str) -> None:
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
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


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Read a checkpoint; a missing, truncated or foreign file gives one line naming it."""
    path = Path(path)
    if not path.is_file():
        raise NasframeError(f"checkpoint {path} not found; the run stopped before its first epoch ended")
    try:
        data = torch.load(path, map_location="cpu", weights_only=False)
    except (RuntimeError, EOFError, pickle.UnpicklingError, zipfile.BadZipFile, OSError, ValueError) as exc:
        reason = " ".join(str(exc).split())[:120] or type(exc).__name__
        raise NasframeError(f"checkpoint {path} is truncated or corrupt ({reason}); it cannot be resumed") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise NasframeError(f"{path} is not a nasframe checkpoint")
    if data.get("version") != VERSION:
        raise NasframeError(f"checkpoint {path} has version {data.get('version')}, this nasframe reads {VERSION}")
    return data


def state_of(objects: dict[str, Any]) -> dict[str, Any]:
    """``state_dict()`` of every checkpointable object."""
    return {name: obj.state_dict() for name, obj in objects.items() if hasattr(obj, "state_dict")}


def restore(objects: dict[str, Any], states: dict[str, Any], path: Path) -> None:
    """Load ``states`` into ``objects``; a mismatch names the checkpoint."""
    for name, obj in objects.items():
        if not hasattr(obj, "load_state_dict"):
            continue
        if name not in states:
            raise NasframeError(f"checkpoint {path} lacks {name!r}; it was written by a different setup")
        try:
            obj.load_state_dict(states[name])
        except (RuntimeError, KeyError, ValueError) as exc:
            reason = " ".join(str(exc).split())[:160]
            raise NasframeError(
                f"checkpoint {path} does not fit this run's {name} ({reason}); resume with the run's own config"
            ) from None
