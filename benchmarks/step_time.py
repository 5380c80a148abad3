#!/usr/bin/env python3
"""Time nasframe's search step: the optimizer's own ``step``, not a copy of it.

One step = architecture update on a validation batch + weight update on a train batch,
on random 3x32x32 inputs with 10 classes, the shapes of ``../shared/bench/peer_step.py``
(which times NAS-Bench-201's own supernet, xautodl). Prints one JSON line, with the page
faults and kernel CPU seconds of a step (``page_faults``, ``system_s``; near zero unless memory
is mapped afresh: ``NASFRAME_KEEP_FREED_MEMORY=0`` shows glibc's defaults, see
``nasframe_cpu/memory.py``, with ``--cpu-kernels``).

    python benchmarks/step_time.py --space nasbench201 --mode first --batch 64 --device cpu --threads 2
    python ../shared/bench/peer_step.py --batch 64 --mode first --device cpu --threads 2

``--impl reference`` runs the plain edge-by-edge supernet (same math) for comparison;
``--compile`` the supernet under ``torch.compile`` (``optimizer.compile=true``), compiled
during the warm-up steps (``warmup_s`` says how long they took).
``--optimizer NAME`` times any method of the family (darts, gdas, drnas, pc_darts,
fair_darts, sdarts, darts_minus, beta_darts) with its defaults; PC-DARTS without its
warm-up, so that the architecture step is part of the timed step:

    python benchmarks/step_time.py --optimizer gdas --batch 64 --threads 2
    python ../shared/bench/peer_step.py --space nasbench201 --algo gdas --batch 64 --threads 2
"""
from __future__ import annotations

import argparse
import json
import resource
import statistics
import time

import torch

import nasframe_cpu
from nasframe_core.datasets import dataset_info
from nasframe_darts import FAMILY


def build_space(name: str):
    if name == "nasbench201":
        from nasframe_spaces import NasBench201SearchSpace

        return NasBench201SearchSpace(C=16, N=5)
    from nasframe_spaces import DartsSearchSpace

    return DartsSearchSpace(C=16, layers=8)


def step_arguments(description: str, space: str = "nasbench201", batch: int = 64) -> argparse.ArgumentParser:
    """The options every step benchmark takes: space, order, batch, threads, optimizer."""
    ap = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--space", choices=("nasbench201", "darts"), default=space)
    ap.add_argument("--mode", choices=("first", "second"), default="first")
    ap.add_argument("--batch", type=int, default=batch)
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: leave as is)")
    ap.add_argument("--optimizer", choices=tuple(FAMILY), default="darts")
    ap.add_argument("--cpu-kernels", action="store_true",
                    help="enable nasframe_cpu (native kernels, allocator setting), as run.cpu_kernels=true does")
    ap.add_argument("--set", dest="settings", action="append", default=[], metavar="KEY=VALUE",
                    help="an optimizer setting, e.g. unsampled_weights=false (repeatable)")
    return ap


def step_setup(a, device: str = "cpu", fused: bool = True, compile: bool = False):
    """The optimizer of ``a`` (parsed :func:`step_arguments`) on its space, and a random
    train and validation batch: ``(opt, (x_train, y_train), (x_val, y_val))``."""
    if a.threads:
        torch.set_num_threads(a.threads)
    if a.cpu_kernels:
        nasframe_cpu.enable()
    torch.manual_seed(0)
    settings = {"warmup_epochs": 0} if a.optimizer == "pc_darts" else {}
    for item in getattr(a, "settings", []):
        key, _, value = item.partition("=")
        settings[key.strip()] = value.strip()
    opt = FAMILY[a.optimizer][0](unrolled=a.mode == "second", device=device, fused=fused, compile=compile,
                                 **settings)
    opt.adapt_search_space(build_space(a.space), dataset_info("cifar10"))
    opt.before_training()
    g = torch.Generator().manual_seed(1)
    xt, xv = (torch.randn(a.batch, 3, 32, 32, generator=g).to(device) for _ in range(2))
    yt, yv = (torch.randint(0, 10, (a.batch,), generator=g).to(device) for _ in range(2))
    return opt, (xt, yt), (xv, yv)


def main() -> None:
    ap = step_arguments(__doc__)
    ap.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--impl", choices=("fused", "reference"), default="fused")
    ap.add_argument("--compile", action="store_true", help="torch.compile the supernet (optimizer.compile=true)")
    a = ap.parse_args()
    dev = torch.device(a.device)
    opt, (xt, yt), (xv, yv) = step_setup(a, a.device, fused=a.impl == "fused", compile=a.compile)

    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    t = time.perf_counter()
    for _ in range(a.warmup):
        opt.step((xt, yt), (xv, yv))
    sync()
    warmup_s = time.perf_counter() - t
    times, faults, system_s = [], [], []
    for _ in range(a.steps):
        sync()
        r = resource.getrusage(resource.RUSAGE_SELF)
        t = time.perf_counter()
        opt.step((xt, yt), (xv, yv))
        sync()
        times.append(time.perf_counter() - t)
        r2 = resource.getrusage(resource.RUSAGE_SELF)
        faults.append(r2.ru_minflt - r.ru_minflt)
        system_s.append(r2.ru_stime - r.ru_stime)
    out = {"impl": f"nasframe-{a.impl}" + ("-compiled" if a.compile else ""), "optimizer": a.optimizer, "space": a.space, "mode": a.mode, "batch": a.batch, "device": a.device,
           "threads": torch.get_num_threads(), "warmup_s": warmup_s, "median_s": statistics.median(times),
           "min_s": min(times),
           # page faults and kernel CPU seconds per step (all threads): memory mapped afresh
           "page_faults": int(statistics.median(faults)), "system_s": round(statistics.median(system_s), 3),
           **nasframe_cpu.status(),
           "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    if dev.type == "cuda":
        out["peak_cuda_mb"] = torch.cuda.max_memory_allocated() / 2**20
    print(json.dumps(out))


if __name__ == "__main__":
    main()
