"""Checkpoints: written atomically, read with errors that name the file."""
from __future__ import annotations

import os
import pickle
import re
import warnings
import zipfile
from pathlib import Path
from typing import Any, Optional

import torch

from .errors import NasframeError
from .files import _fsync_dir, write_text_atomic  # noqa: F401 - re-exported

FORMAT = "nasframe-checkpoint"
VERSION = 1


def save_atomic(obj: Any, path: Path, fsync: bool = True) -> None:
    """``torch.save`` to a temporary file beside ``path``, fsync, then rename over it (without
    ``fsync`` still atomic for the process: a killed process leaves the old file or the new one,
    only a machine that fails may lose the last one)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as f:
        torch.save(obj, f)
        f.flush()
        if fsync:
            os.fsync(f.fileno())
    os.replace(tmp, path)
    if fsync:
        _fsync_dir(path.parent)


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Read a checkpoint; a missing, truncated or foreign file gives one line naming it.

    Only tensors and plain values are read (``weights_only=True``), so resuming a run directory
    written elsewhere cannot run code hidden in its pickle.
    """
    path = Path(path)
    if not path.is_file():
        raise NasframeError(f"checkpoint {path} not found; the run stopped before its first epoch ended")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch's notes on the pickle protocol of foreign files
            data = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        refused = _refused_global(str(exc))
        if refused:
            raise NasframeError(
                f"refusing to load checkpoint {path}: it refers to {refused}, and only tensors and plain values "
                f"are read from a checkpoint; it was not written by nasframe"
            ) from None
        if "Weights only load failed" in str(exc):
            raise NasframeError(
                f"checkpoint {path} cannot be read as tensors and plain values; it is truncated, corrupt or "
                f"not written by nasframe"
            ) from None
        raise _corrupt(path, exc) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError, TypeError, AttributeError,
            KeyError, IndexError) as exc:
        raise _corrupt(path, exc) from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise NasframeError(f"{path} is not a nasframe checkpoint")
    if data.get("version") != VERSION:
        raise NasframeError(f"checkpoint {path} has version {data.get('version')}, this nasframe reads {VERSION}")
    return data


def _corrupt(path: Path, exc: BaseException) -> NasframeError:
    text = " ".join(str(exc).split())[:120]
    reason = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return NasframeError(f"checkpoint {path} is truncated or corrupt ({reason}); it cannot be resumed")


def _refused_global(message: str) -> Optional[str]:
    """The global a weights-only load refused, as torch's message names it."""
    found = re.search(r"(?:unsupported|Unsupported global:) GLOBAL ([\w.]+)", message)
    return found.group(1) if found else None


def _check_checkpointable(name: str, obj: Any) -> None:
    missing = [m for m in ("state_dict", "load_state_dict") if not callable(getattr(obj, m, None))]
    if missing:
        raise NasframeError(
            f"checkpointable {name!r} is a {type(obj).__name__} without {' and '.join(missing)}, so a resume "
            f"would lose its state; get_checkpointables() must return objects with state_dict and "
            f"load_state_dict (torch modules and optimizers, for example)"
        )


def state_of(objects: dict[str, Any]) -> dict[str, Any]:
    """``state_dict()`` of every checkpointable object (each must have one)."""
    for name, obj in objects.items():
        _check_checkpointable(name, obj)
    return {name: obj.state_dict() for name, obj in objects.items()}


def restore(objects: dict[str, Any], states: dict[str, Any], path: Path) -> None:
    """Load ``states`` into ``objects``; a mismatch names the checkpoint."""
    for name, obj in objects.items():
        _check_checkpointable(name, obj)
        if name not in states:
            if getattr(obj, "checkpoint_optional", False):  # added after the checkpoint was written: keeps its fresh state
                continue
            raise NasframeError(f"checkpoint {path} lacks {name!r}; it was written by a different setup")
        try:
            obj.load_state_dict(states[name])
        except (RuntimeError, KeyError, ValueError) as exc:
            reason = " ".join(str(exc).split())[:160]
            raise NasframeError(
                f"checkpoint {path} does not fit this run's {name} ({reason}); resume with the run's own config"
            ) from None
