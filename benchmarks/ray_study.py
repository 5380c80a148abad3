#!/usr/bin/env python3
"""A study of trained runs on Ray: how busy 2 workers are, and the wall time against 1 worker.

The study is ``--points`` one-shot searches (DARTS and GDAS over seeds) of a small NAS-Bench-201
supernet on synthetic images, a few seconds of training each on one CPU thread. It runs with
``nasframe sweep --executor ray --workers 1`` and ``--workers 2`` in turn (the order swapped every
round), on one Ray instance of ``--cpus`` CPUs warmed by a first sweep. From each sweep's
``points.jsonl`` (every point's worker, start and finish, in seconds since the sweep began) it
prints each worker's busy share of the sweep's span (first start to last finish), the time both
workers ran at once, and the median wall time of each worker count with their ratio (ideal 2.0).

    python benchmarks/ray_study.py                  # 2 rounds, 8 points a sweep
    python benchmarks/ray_study.py --rounds 3 --points 12 --json
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ray_throughput import machine, machine_line  # noqa: E402

STUDY = """
name: ray-study
grid:
  optimizer: [darts, gdas]
  seed: 0-{last}
search_space: {{name: nasbench201, C: {channels}, N: 1}}
dataset: {{name: synthetic, n_train: {images}, n_test: 32, image_size: 16}}
run: {{epochs: {epochs}, batch_size: 32, device: cpu}}
"""


def sweep(study_file: Path, out: Path, workers: int) -> dict:
    from nasframe_core.cli import main

    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        code = main(["sweep", str(study_file), "--out", str(out), "--executor", "ray", "--workers", str(workers)])
    if code != 0:
        sys.exit(f"ray_study.py: error: the sweep at {workers} worker(s) exited {code}; see {out}")
    records = [json.loads(line) for line in (out / "points.jsonl").read_text().splitlines()]
    failed = [r for r in records if r["status"] != "ok"]
    if failed:
        sys.exit(f"ray_study.py: error: point {failed[0]['point']} failed: {failed[0].get('error')}")
    start, end = min(r["started"] for r in records), max(r["finished"] for r in records)
    span = end - start
    busy: dict[str, float] = {}
    for r in records:
        busy[r["worker"]] = busy.get(r["worker"], 0.0) + r["finished"] - r["started"]
    # seconds during which at least two points ran at once
    events = sorted([(r["started"], 1) for r in records] + [(r["finished"], -1) for r in records])
    running, last, together = 0, start, 0.0
    for t, step in events:
        if running >= 2:
            together += t - last
        running, last = running + step, t
    return {"workers": workers, "points": len(records), "span_seconds": round(span, 3),
            "busy_share": {w: round(b / span, 3) for w, b in sorted(busy.items())},
            "both_running_seconds": round(together, 3),
            "mean_point_seconds": round(statistics.fmean(r["finished"] - r["started"] for r in records), 3)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=2, help="timed sweeps at each worker count (default 2)")
    p.add_argument("--points", type=int, default=8, help="points of the study, an even number (default 8)")
    p.add_argument("--epochs", type=int, default=2, help="search epochs of each point (default 2)")
    p.add_argument("--channels", type=int, default=8, help="search_space.C (default 8)")
    p.add_argument("--images", type=int, default=256, help="synthetic training images (default 256)")
    p.add_argument("--cpus", type=int, default=2, help="CPUs Ray may use (default 2)")
    p.add_argument("--json", action="store_true", help="print the sweeps and the summary as JSON")
    args = p.parse_args(argv)
    if args.rounds < 1 or args.points < 2 or args.points % 2 or args.cpus < 2:
        p.error("--rounds must be at least 1, --points an even number of at least 2, --cpus at least 2")
    try:
        import ray
    except ImportError:
        sys.exit("ray_study.py: error: needs Ray: pip install 'nasframe-darts[ray]'")
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    ray.init(num_cpus=args.cpus, num_gpus=0, include_dashboard=False, log_to_driver=False, configure_logging=False)
    sweeps = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            study = Path(tmp) / "study.yaml"
            study.write_text(STUDY.format(last=args.points // 2 - 1, channels=args.channels, images=args.images,
                                          epochs=args.epochs))
            sweep(study, Path(tmp) / "warm", 2)
            for r in range(args.rounds):
                for workers in ((1, 2) if r % 2 == 0 else (2, 1)):
                    s = sweep(study, Path(tmp) / f"r{r}w{workers}", workers)
                    sweeps.append(s)
                    if not args.json:
                        shares = ", ".join(f"{v:.0%}" for v in s["busy_share"].values())
                        print(f"round {r + 1}, {workers} worker{'s' if workers > 1 else ' '}: {s['points']} points in "
                              f"{s['span_seconds']:.1f} s (a point {s['mean_point_seconds']:.1f} s); busy {shares}; "
                              f"two at once {s['both_running_seconds']:.1f} s", flush=True)
    finally:
        ray.shutdown()
    wall = {w: statistics.median(s["span_seconds"] for s in sweeps if s["workers"] == w) for w in (1, 2)}
    summary = {**machine(), "median_span_1_worker": wall[1], "median_span_2_workers": wall[2],
               "speedup": round(wall[1] / wall[2], 3), "rounds": args.rounds, "points": args.points}
    if args.json:
        print(json.dumps({"sweeps": sweeps, "summary": summary}, indent=2))
        return 0
    print(machine_line(summary))
    print(f"median span: 1 worker {wall[1]:.1f} s, 2 workers {wall[2]:.1f} s; speed-up {wall[1] / wall[2]:.2f}x "
          f"(ideal 2.00x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
