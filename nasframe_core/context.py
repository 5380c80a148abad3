"""What a run's parts share: the :class:`RunContext` that observers and jobs see, the device,
the seeding, the learning-rate schedule and the finiteness check. Imported by the jobs and
the loop; imports neither."""
from __future__ import annotations

import math
import random
from typing import Any, Optional

import numpy as np
import torch

from . import distributed
from .errors import DivergenceError, NasframeError


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise NasframeError("--device cuda was asked for, but torch sees no CUDA device; use --device cpu or auto")
    if name in ("cpu", "cuda"):
        return distributed.local_device(name)
    try:
        return torch.device(name)
    except RuntimeError:
        raise NasframeError(f"unknown device {name!r}; use auto, cpu or cuda") from None


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def cosine_lr(epoch: int, epochs: int, lr_max: float, lr_min: float) -> float:
    """The learning rate of ``epoch`` (0-based) under cosine decay from lr_max towards lr_min."""
    if epochs <= 0:
        return lr_max
    return lr_min + 0.5 * (lr_max - lr_min) * (1.0 + math.cos(math.pi * epoch / epochs))


def scheduled_lr(run, epoch: int, lr_max: float) -> float:
    """The learning rate of ``epoch`` under ``run.scheduler`` (cosine to ``run.lr_min``, or constant)."""
    if run.scheduler == "constant":
        return lr_max
    return cosine_lr(epoch, run.epochs, lr_max, run.lr_min)


class RunContext:
    """What observers see (the hooks' ``run``): ``config``, ``host``, ``run_dir`` (``None`` off
    rank 0), ``device``, ``epoch`` (or round of a black-box search), ``optimizer``, ``space``
    (the run's search space, once the job has built it), ``stop_reason`` and
    :meth:`request_stop`. ``job`` is the loop's own object, no part of the contract."""

    def __init__(self, config, host, run_dir, device: torch.device):
        self.config = config
        self.host = host
        self.run_dir = run_dir
        self.device = device
        self.job: Any = None
        self.epoch = 0
        self.stop_reason: Optional[str] = None
        #: what besides the seed decides a run's last digits (torch, threads, plugins' entries)
        self.runtime: dict = {"torch": torch.__version__, "threads": torch.get_num_threads()}
        #: whether the run fsyncs what it writes, and prints its outcome on stdout
        self.durable, self.summary = True, True

    @property
    def optimizer(self):
        return getattr(self.job, "optimizer", None)

    @property
    def space(self):
        return getattr(self.job, "space", None)

    def request_stop(self, reason: str) -> None:
        """Ask the loop to stop after the current epoch (early stopping)."""
        self.stop_reason = reason


def check_finite(value: float, what: str, epoch: int, step: int, run_dir) -> None:
    if not math.isfinite(value):
        where = f"the last good checkpoint is kept in {run_dir.path}" if run_dir else "no checkpoint was written"
        raise DivergenceError(
            f"{what} became {value} at epoch {epoch + 1} step {step + 1}; the run stopped and {where}; "
            f"lower the learning rate or check the data"
        )

