#!/usr/bin/env python3
"""What the native CPU kernels (``nasframe_cpu/kernels``) change in a whole search step.

Alternates steps of one optimizer with the kernels on and off (``NASFRAME_NATIVE_KERNELS``,
read at every call) in one process, on the same batches, so the machine's drift hits both
alike. Prints the median step time of each and their ratio as one JSON line.

    python benchmarks/native_step.py --space darts --mode second --batch 16 --threads 2 --rounds 5
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import torch

from nasframe_cpu import kernels
from step_time import step_arguments, step_setup


def require_native_kernels() -> None:
    """Exit with one line saying why, when the native kernels are not available."""
    why = kernels.unavailable_reason()
    if why:
        raise SystemExit(f"the native kernels are not available: {why}")


def kernel_arguments(description: str) -> argparse.Namespace:
    """The options of a kernel benchmark (``--threads``, ``--repeats``), applied; exits when
    the native kernels are not available."""
    ap = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: leave as is)")
    ap.add_argument("--repeats", type=int, default=7)
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    require_native_kernels()
    return a


def main() -> None:
    ap = step_arguments(__doc__, space="darts", batch=16)
    ap.add_argument("--rounds", type=int, default=5)
    a = ap.parse_args()
    require_native_kernels()
    a.cpu_kernels = True  # the kernels installed; the switch below turns them off step by step
    opt, train, val = step_setup(a)
    settings = {"native": "1", "aten": "0"}
    times: dict[str, list[float]] = {name: [] for name in settings}
    before = os.environ.get(kernels.ENV_SWITCH)
    try:
        for rnd in range(a.rounds + 1):  # round 0 warms both up
            for name, value in settings.items():
                os.environ[kernels.ENV_SWITCH] = value
                t = time.perf_counter()
                opt.step(train, val)
                if rnd:
                    times[name].append(time.perf_counter() - t)
    finally:
        if before is None:
            os.environ.pop(kernels.ENV_SWITCH, None)
        else:
            os.environ[kernels.ENV_SWITCH] = before
    native, aten = (statistics.median(times[n]) for n in ("native", "aten"))
    print(json.dumps({"optimizer": a.optimizer, "space": a.space, "mode": a.mode, "batch": a.batch,
                      "threads": torch.get_num_threads(), "rounds": a.rounds, "native_s": native, "aten_s": aten,
                      "native_over_aten": native / aten}))


if __name__ == "__main__":
    main()
