"""torch.distributed helpers: data-parallel search and training without wrapping modules.

Every rank runs the same step on its shard of the batch; gradients (of weights and of
architecture weights) are averaged over ranks before each optimizer step, so parameters
stay identical on every rank. Ranks start from rank 0's parameters.
"""
from __future__ import annotations

import os
from typing import Iterable, Optional, Sequence

import torch
import torch.distributed as dist

from .errors import NasframeError
from .rundir import resume_flag


class RankLost(NasframeError):
    """A collective failed because another rank died or the connection to it broke."""

    exit_code = 4


#: the run directory, once every rank knows it (see :func:`share_run_dir`)
_run_dir: Optional[str] = None


def _resume_hint() -> str:
    if _run_dir is None:
        return "continue with --resume and the run's directory"
    return f"continue with {resume_flag(_run_dir)}"


def _collective(fn, *args) -> None:
    try:
        fn(*args)
    except RuntimeError as exc:  # gloo/NCCL errors (DistBackendError is a RuntimeError)
        detail = " ".join(str(exc).split())[:160]
        raise RankLost(
            f"rank {rank()} stopped because another rank failed ({detail}); "
            f"the last checkpoint is kept ({_resume_hint()})"
        ) from None


def share_run_dir(path) -> None:
    """Tell every rank the run directory that rank 0 created (``path`` on rank 0; other
    ranks pass anything), so that a rank that stops names the directory to resume."""
    global _run_dir
    shared = [None if path is None else str(path)]
    if active():
        _collective(dist.broadcast_object_list, shared, 0)
    _run_dir = shared[0]


def active() -> bool:
    """Whether a process group with more than one rank is running."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def is_main() -> bool:
    return rank() == 0


def launched_by_torchrun() -> bool:
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ and int(os.environ["WORLD_SIZE"]) > 1


def init_from_env(device: torch.device, timeout_s: Optional[float] = None) -> bool:
    """Join the process group that ``torchrun`` describes in the environment.

    Returns whether a group was created here (the caller then destroys it). A rank that
    the launcher stops (SIGTERM, after another rank failed) says so in one line and exits
    instead of waiting in a collective.
    """
    if dist.is_initialized() or not launched_by_torchrun():
        return False
    import signal
    import sys
    from datetime import timedelta

    if timeout_s is None:
        timeout_s = float(os.environ.get("NASFRAME_DIST_TIMEOUT", 300))
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group(backend=backend, timeout=timedelta(seconds=timeout_s))
    my_rank = dist.get_rank()

    def stopped(signum, frame):  # pragma: no cover - exercised in a subprocess
        print(
            f"nasframe: error: rank {my_rank} stopped because another rank failed or the launcher stopped "
            f"the job; the last checkpoint is kept ({_resume_hint()})",
            file=sys.stderr,
            flush=True,
        )
        os._exit(143)

    signal.signal(signal.SIGTERM, stopped)
    return True


def shutdown() -> None:
    global _run_dir
    _run_dir = None
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def local_device(kind: str) -> torch.device:
    """The device of this process: ``cuda:LOCAL_RANK`` under torchrun."""
    if kind == "cuda" and launched_by_torchrun():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    return torch.device(kind)


def all_reduce_mean_(tensors: Sequence[Optional[torch.Tensor]]) -> None:
    """Average ``tensors`` over all ranks in place, with one collective call."""
    if not active():
        return
    present = [t for t in tensors if t is not None]
    if not present:
        return
    flat = torch.cat([t.reshape(-1) for t in present])
    _collective(dist.all_reduce, flat)
    flat.div_(dist.get_world_size())
    offset = 0
    for t in present:
        n = t.numel()
        t.copy_(flat[offset : offset + n].view_as(t))
        offset += n


def broadcast_(tensors: Iterable[torch.Tensor], src: int = 0) -> None:
    """Copy rank ``src``'s values of ``tensors`` to every rank."""
    if not active():
        return
    for t in tensors:
        _collective(dist.broadcast, t.data, src)


def barrier() -> None:
    if active():
        _collective(dist.barrier)
