#!/usr/bin/env python3
"""Side-by-side step times: nasframe vs the peer, xautodl (the NB201 authors' code).

For NAS-Bench-201 the peer is NAS-Bench-201's own DARTS supernet; for the DARTS space it is
xautodl's DARTS search network in the paper's layout (``peer_step.py --space darts``).
Runs ``benchmarks/step_time.py`` and the peer script alternately, in fresh processes, for
several rounds (shared machines drift; alternating keeps the ratio honest), then prints a
Markdown table of the median step time, the median per-round ratio and peak memory.

    pip install --no-deps xautodl==1.0.0          # the peer, once
    python benchmarks/compare.py --device cpu --threads 2 --rounds 3
    python benchmarks/compare.py --spaces darts --darts-batches 16,64 --rounds 3

``--gdas 1`` (default) adds GDAS on NAS-Bench-201 (first order) against xautodl's GDAS
supernet (``peer_step.py --algo gdas``), alternating the same way.
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEFAULT_PEER = HERE.parent.parent / "shared" / "bench" / "peer_step.py"


def run(cmd: list[str]) -> dict:
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--modes", default="first,second")
    ap.add_argument("--peer", default=str(DEFAULT_PEER), help="path of peer_step.py ('' to skip the peer)")
    ap.add_argument("--spaces", default="nasbench201,darts")
    ap.add_argument("--darts-batches", default="16,64", help="batch sizes for the DARTS space")
    ap.add_argument("--gdas", type=int, default=1, help="also compare GDAS against xautodl's GDAS (0: skip)")
    ap.add_argument("--cpu-kernels", action="store_true", help="our steps with nasframe_cpu enabled (run.cpu_kernels)")
    a = ap.parse_args()
    a.ours = ["--cpu-kernels"] if a.cpu_kernels else []
    spaces = a.spaces.split(",")
    common = ["--device", a.device, "--threads", str(a.threads), "--steps", str(a.steps), "--warmup", str(a.warmup)]
    rows = []
    runs = [(space, mode, batch) for mode in a.modes.split(",")
            for space, batches in (("nasbench201", [a.batch]), ("darts", a.darts_batches.split(",")))
            if space in spaces for batch in batches]
    for space, mode, batch in runs:
        ours, peer = [], []
        for _ in range(a.rounds):
            args = ["--space", space, "--mode", mode, "--batch", str(batch), *common]
            ours.append(run([sys.executable, str(HERE / "step_time.py"), *args, *a.ours]))
            if a.peer:
                peer.append(run([sys.executable, a.peer, *args]))
        rows.append((space, mode, int(batch), ours, peer))
    if a.gdas:
        rows.append(gdas_rows(a, common))

    mem_key = "peak_cuda_mb" if a.device.startswith("cuda") else "peak_rss_mb"
    print(f"machine: {platform.processor() or platform.machine()}, {a.threads} threads, device {a.device}, "
          f"{a.rounds} alternating rounds of {a.steps} timed steps, nasframe_cpu {'on' if a.cpu_kernels else 'off'}")
    print()
    print(f"| space | order | batch | nasframe s/step | xautodl s/step | speed-up | nasframe {mem_key} | xautodl {mem_key} |")
    print("|---|---|---|---|---|---|---|---|")
    for space, mode, batch, ours, peer in rows:
        o = statistics.median(r["median_s"] for r in ours)
        om = max(r.get(mem_key, 0.0) for r in ours)
        if peer:
            p = statistics.median(r["median_s"] for r in peer)
            pm = max(r.get(mem_key, 0.0) for r in peer)
            ratio = statistics.median(q["median_s"] / r["median_s"] for q, r in zip(peer, ours))
            print(f"| {space} | {mode} | {batch} | {o:.3f} | {p:.3f} | {ratio:.2f}x | {om:.0f} | {pm:.0f} |")
        else:
            print(f"| {space} | {mode} | {batch} | {o:.3f} | - | - | {om:.0f} | - |")
    print()
    print("raw:", json.dumps([{"space": s, "mode": m, "ours": o, "peer": p} for s, m, _, o, p in rows]))


def gdas_rows(a, common: list[str]) -> tuple:
    """GDAS (first order, NAS-Bench-201): ours and xautodl's, alternating in fresh processes."""
    ours, peer = [], []
    for _ in range(a.rounds):
        ours.append(run([sys.executable, str(HERE / "step_time.py"), "--optimizer", "gdas", "--space", "nasbench201",
                         "--mode", "first", "--batch", str(a.batch), *common, *a.ours]))
        if a.peer:
            peer.append(run([sys.executable, a.peer, "--space", "nasbench201", "--algo", "gdas", "--mode", "first",
                             "--batch", str(a.batch), *common]))
    return ("nasbench201", "gdas", a.batch, ours, peer)


if __name__ == "__main__":
    main()
