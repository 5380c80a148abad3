"""Time and memory of ``nasframe score``: where the seconds go, and whether memory stays flat.

Runs ``nasframe score`` (every argument after ``--`` is passed on; ``--out`` is required, a
``.csv``) in a child process, samples the resident memory of it and its workers every second,
and prints: wall seconds, cells per minute, the seconds spent per proxy and in building networks
(summed over the workers), the resident memory at the start, middle and end of the scoring and
its peak, and the machine's load average (the machine may be shared: the load says how much of
it the run had).

    python benchmarks/proxy_scoring.py -- --sample 1000 --workers 2 \\
        --data-dir ../shared/data/cifar10_jpeg --benchmark ../shared/data/nb201/nb201_200ep.csv \\
        --out runs/proxies-1000.csv
"""
from __future__ import annotations

import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path


def _children(pid: int) -> list[int]:
    out = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as f:
                out += [int(c) for c in f.read().split()]
    except OSError:
        pass
    return out


def _tree_rss_mb(pid: int) -> float:
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        try:
            with open(f"/proc/{p}/statm") as f:
                total += int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except OSError:
            continue
        todo += _children(p)
    return total / 2**20


def _rows(path: Path) -> int:
    try:
        with open(path) as f:
            return max(0, sum(1 for _ in f) - 1)
    except OSError:
        return 0


def _cpu_model() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "?"


def main(argv: list[str]) -> int:
    if "--" not in argv:
        print(__doc__)
        return 2
    args = argv[argv.index("--") + 1:]
    if "--out" not in args or not args[args.index("--out") + 1].endswith(".csv"):
        print("pass --out FILE.csv to nasframe score (rows are counted as they are written)")
        return 2
    out = Path(args[args.index("--out") + 1])
    load0 = os.getloadavg()
    t0 = time.perf_counter()
    child = subprocess.Popen([sys.executable, "-m", "nasframe_core.cli", "score", *args])
    samples: list[tuple[float, int, float]] = []  # (seconds, rows written, MB)
    while child.poll() is None:
        samples.append((time.perf_counter() - t0, _rows(out), _tree_rss_mb(child.pid)))
        time.sleep(1.0)
    wall = time.perf_counter() - t0
    load1 = os.getloadavg()
    if child.returncode:
        print(f"nasframe score exited with {child.returncode}")
        return child.returncode
    summary = json.loads(out.with_suffix(".json").read_text())
    cells = summary["cells"]
    print(f"cpu: {_cpu_model()}, {os.cpu_count()} logical CPUs; load average {load0[0]:.1f} at the start, "
          f"{load1[0]:.1f} at the end (1-minute)")
    print(f"{cells} cells in {wall:.0f} s wall ({60 * cells / wall:.1f} cells/min; scoring alone "
          f"{summary['seconds']:.0f} s)")
    for name, c in summary["correlations"].items():
        if c["spearman"] is not None:
            print(f"  {name:10s} spearman {c['spearman']:+.3f}  kendall {c['kendall']:+.3f}  (against {summary['accuracy']})")
    parts = summary["seconds_by_part"]
    cpu = summary.get("cpu_seconds_by_part") or {}
    busy = sum(parts.values())
    print("seconds per part, summed over workers: wall (share), and CPU seconds per cell")
    for k, v in sorted(parts.items(), key=lambda kv: -kv[1]):
        c = f"{1000 * cpu[k] / cells:8.1f} CPU ms/cell" if k in cpu else ""
        print(f"  {k:10s} {v:9.1f}  {100 * v / busy:5.1f}%  {1000 * v / cells:8.1f} ms/cell  {c}")
    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    total_cpu = used.ru_utime + used.ru_stime
    print(f"CPU seconds of the command and its workers: {total_cpu:.0f} (on an unshared machine with 2 cores: "
          f"about {total_cpu / 2 / 60:.1f} min for these {cells} cells, {1000 * total_cpu / 2 / cells / 60:.1f} min "
          f"per 1000)")
    scoring = [(t, r, m) for t, r, m in samples if r > 0]
    if scoring:
        def at(frac):
            want = frac * cells
            return next((m for t, r, m in scoring if r >= want), scoring[-1][2])
        peak = max(m for _, _, m in samples)
        print(f"resident memory (process and workers): {at(0.02):.0f} MB after 2% of the cells, {at(0.5):.0f} MB "
              f"at 50%, {at(0.98):.0f} MB at 98%; peak {peak:.0f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
