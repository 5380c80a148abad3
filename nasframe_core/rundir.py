"""The run directory: what a finished or stopped run leaves behind.

``config.yaml`` (the resolved configuration), ``log.txt``, ``metrics.jsonl`` (one line per
epoch), ``checkpoint.pt`` (written atomically after every epoch) and ``result.json`` (at the
end). A directory that already holds a run is never reused: continue it with ``--resume``.
"""
from __future__ import annotations

import json
import logging
import math
import os
import shlex
import shutil
import time
from pathlib import Path
from typing import Any, Iterable, Optional

from .files import write_text_atomic
from .errors import NasframeError

CONFIG = "config.yaml"
LOG = "log.txt"
METRICS = "metrics.jsonl"
CHECKPOINT = "checkpoint.pt"
RESULT = "result.json"
RUN_FILES = (CONFIG, METRICS, CHECKPOINT, RESULT)


def default_run_dir(command: str) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    base = Path("runs") / f"{command}-{stamp}"
    path, n = base, 1
    while path.exists():
        n += 1
        path = base.with_name(f"{base.name}-{n}")
    return path


def json_safe(value: Any) -> Any:
    """Replace non-finite floats (not JSON) by None, recursively."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def resume_flag(path) -> str:
    """``--resume PATH`` as a shell takes it (the path quoted when it needs to be)."""
    return f"--resume {shlex.quote(str(path))}"


class RunDir:
    def __init__(self, path: Path):
        self.path = Path(path)
        #: fsync every write (off for the runs of a study, where a machine failure costs a rerun)
        self.durable = True

    @staticmethod
    def check_new(path: Path) -> None:
        """Refuse, without creating anything, a path that is a file, holds a run, or cannot be written."""
        path = Path(path).expanduser()
        if path.exists() and not path.is_dir():
            raise NasframeError(f"--out {path} is a file; name a new directory")
        if path.is_dir() and any((path / f).exists() for f in RUN_FILES):
            raise NasframeError(f"--out {path} already holds a run; continue it with {resume_flag(path)} or pick a new --out")
        existing = path.absolute()
        while not existing.exists() and existing.parent != existing:
            existing = existing.parent
        if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
            raise NasframeError(f"cannot write the run directory {path}: {existing} is not writable; pick a writable --out")

    @classmethod
    def create(cls, path: Path) -> "RunDir":
        """A new run directory; refuses one that holds a run, or one it cannot write."""
        path = Path(path).expanduser()
        cls.check_new(path)
        try:
            path.mkdir(parents=True, exist_ok=True)
            probe = path / ".write-test"
            probe.write_text("")
            probe.unlink()
        except OSError as exc:
            raise NasframeError(f"cannot write the run directory {path}: {exc.strerror or exc}; pick a writable --out") from None
        return cls(path)

    @classmethod
    def open_existing(cls, path: Path) -> "RunDir":
        path = Path(path).expanduser()
        if not path.is_dir():
            raise NasframeError(f"--resume {path}: no such run directory")
        if not (path / CONFIG).is_file():
            raise NasframeError(f"--resume {path}: not a nasframe run (no {CONFIG})")
        if not os.access(path, os.W_OK):
            raise NasframeError(f"--resume {path}: the run directory is not writable")
        return cls(path)

    def file(self, name: str) -> Path:
        return self.path / name

    def checkpoint_to_resume(self, notes: Optional[list] = None) -> Optional[Path]:
        """The checkpoint ``--resume`` continues from, or ``None`` for a clean start here.

        A run stopped before its first checkpoint left only ``config.yaml`` and ``log.txt``
        (and perhaps an empty ``metrics.jsonl``): there is nothing to continue, so the run starts
        again at epoch 1 in this directory, its old files moved into ``stale-<time>/`` first, so
        that the new run's files never mix with them; ``notes`` (a list, or ``None`` where
        another process moves the files) gets the line that says so. Epochs or a result without
        a checkpoint (a deleted checkpoint, or a directory of something else) are refused: they
        cannot be continued exactly and are not ours to move.
        """
        checkpoint = self.file(CHECKPOINT)
        if checkpoint.exists():
            return checkpoint
        done = len(self.read_metrics()) if self.file(METRICS).is_file() else 0
        if done or self.file(RESULT).exists():
            what = f"{done} epochs in {METRICS}" if done else RESULT
            raise NasframeError(
                f"--resume {self.path}: no {CHECKPOINT} to continue from, although the directory holds {what}; "
                f"it cannot be continued exactly: start a new run with --out NEW_DIR"
            )
        if notes is not None:
            stale = self.path / time.strftime("stale-%Y%m%d-%H%M%S")
            n = 1
            while stale.exists():
                n += 1
                stale = stale.with_name(f"{stale.name.split('.')[0]}.{n}")
            stale.mkdir()
            moved = [name for name in (CONFIG, LOG, METRICS) if self.file(name).exists()]
            for name in moved:
                # config.yaml is copied, not moved: the run starts again from it
                (shutil.copy2 if name == CONFIG else os.replace)(self.file(name), stale / name)
            notes.append(
                f"--resume {self.path}: no {CHECKPOINT} (the run stopped before its first epoch ended), so it "
                f"starts again at epoch 1 here; its earlier files ({', '.join(moved)}) are in {stale}"
            )
        return None

    def write_config(self, text: str) -> None:
        write_text_atomic(self.file(CONFIG), text, self.durable)

    def append_metrics(self, record: dict) -> None:
        with open(self.file(METRICS), "a") as f:
            f.write(json.dumps(json_safe(record)) + "\n")
            f.flush()
            if self.durable:
                os.fsync(f.fileno())

    def rewrite_metrics(self, records: Iterable[dict]) -> None:
        text = "".join(json.dumps(json_safe(r)) + "\n" for r in records)
        write_text_atomic(self.file(METRICS), text, self.durable)

    def write_result(self, result: dict) -> None:
        write_text_atomic(self.file(RESULT), json.dumps(json_safe(result), indent=2) + "\n", self.durable)

    def read_metrics(self) -> list[dict]:
        path = self.file(METRICS)
        if not path.is_file():
            return []
        out = []
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if line.strip():
                try:
                    out.append(json.loads(line))
                except ValueError:
                    raise NasframeError(f"{path} line {n} is not JSON; the file is damaged") from None
        return out

    def read_result(self) -> Optional[dict]:
        path = self.file(RESULT)
        if not path.is_file():
            return None
        try:
            return json.loads(path.read_text())
        except ValueError:
            raise NasframeError(f"{path} is not valid JSON; the file is damaged") from None

    def log_error(self, message: str) -> None:
        """Append a failed command's error to ``log.txt`` (of a directory that already exists)."""
        try:
            with open(self.file(LOG), "a") as f:
                f.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} error: {message}\n")
        except OSError:
            pass  # the command still prints the error

    def log_handler(self) -> logging.Handler:
        handler = logging.FileHandler(self.file(LOG), mode="a")
        handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%Y-%m-%d %H:%M:%S"))
        return handler
