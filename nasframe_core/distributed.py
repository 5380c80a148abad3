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


def init_from_env(device: torch.device, timeout_s: float = 300.0) -> None:
    """Join the process group that ``torchrun`` describes in the environment."""
    if dist.is_initialized() or not launched_by_torchrun():
        return
    from datetime import timedelta

    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
    dist.init_process_group(backend=backend, timeout=timedelta(seconds=timeout_s))


def all_reduce_mean_(tensors: Sequence[Optional[torch.Tensor]]) -> None:
    """Average ``tensors`` over all ranks in place, with one collective call."""
    if not active():
        return
    present = [t for t in tensors if t is not None]
    if not present:
        return
    flat = torch.cat([t.reshape(-1) for t in present])
    dist.all_reduce(flat)
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
        dist.broadcast(t.data, src)


def barrier() -> None:
    if active():
        dist.barrier()
