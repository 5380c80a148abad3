#!/usr/bin/env python3
"""One epoch of real search, data pipeline included: images per second.

Runs the same code as ``nasframe run`` (dataset plugin, device-side batching and
augmentation, the optimizer step, metrics, checkpoint) for one epoch and prints one JSON
line: seconds of the epoch, steps, and images/s (train + validation images per second).

    python benchmarks/search_epoch.py --data-dir ../shared/data/cifar10_jpeg --device cpu --steps 20
    python benchmarks/search_epoch.py --data-dir ../shared/data/cifar10_jpeg --device cuda --set optimizer.compile=true
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from nasframe_core.config import Config
from nasframe_core.engine import execute
from nasframe_core.plugins import make_plugin_manager


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", default="cifar10")
    ap.add_argument("--data-dir", default=str(Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar10_jpeg"))
    ap.add_argument("--search-space", default="nasbench201")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--steps", type=int, default=0, help="cap the epoch (0: the whole epoch)")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--cpu-kernels", action="store_true",
                    help="enable nasframe_cpu (native kernels, allocator setting), as nasframe run --cpu-kernels does")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    cfg = Config()
    cfg.set("dataset.name", a.dataset)
    cfg.set("search_space.name", a.search_space)
    cfg.set("run.data_dir", a.data_dir)
    cfg.set("run.device", a.device)
    cfg.set("run.batch_size", a.batch)
    cfg.set("run.epochs", 1)
    cfg.set("run.cpu_kernels", a.cpu_kernels)
    if a.steps:
        cfg.set("run.steps_per_epoch", a.steps)
    for item in a.overrides:
        key, _, value = item.partition("=")
        cfg.set(key, value)
    host = make_plugin_manager()
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        # this script owns its process, as the nasframe command does
        result = execute(cfg, host, out=Path(tmp) / "run", quiet=True, owns_process=True)
        total = time.perf_counter() - t0
        metrics = json.loads((Path(tmp) / "run" / "metrics.jsonl").read_text().splitlines()[0])
    steps = metrics.get("steps") or (a.steps or None)
    seconds = metrics["seconds"]
    out = {"dataset": a.dataset, "space": a.search_space, "device": a.device, "batch": a.batch,
           "epoch_seconds": seconds, "total_seconds": round(total, 3), "steps": steps,
           "images_per_s": (2 * a.batch * steps / seconds) if steps else None,
           "genotype": result["genotype"], "runtime": result.get("runtime")}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
