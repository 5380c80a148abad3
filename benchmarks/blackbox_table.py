#!/usr/bin/env python3
"""NAS-Bench-201's Table 5 black-box block (REA, RS, REINFORCE) by the product, beside the published means.

Runs ``examples/studies/nb201-table5.yaml`` as ``nasframe sweep`` does and aggregates it as
``nasframe aggregate`` does, in this process, then prints the nine rows (optimizer, dataset,
runs, mean ± std of the found cell's test accuracy, the published mean ± std, the difference of
the means) and the wall and CPU time it took; with ``--json``, ``nasframe aggregate --json``'s
rows and the times. The protocol is the study's, NB201's (docs/blackbox.md): every run searches
cifar10-valid on the 12-epoch proxy under a 12,000 s budget, and its cell is reported on
CIFAR-10, CIFAR-100 and ImageNet16-120.

    python benchmarks/blackbox_table.py                          # the study's 500 runs per method
    python benchmarks/blackbox_table.py --runs 50 --out studies/table5-50
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
STUDY = HERE.parent / "examples" / "studies" / "nb201-table5.yaml"


def default_table() -> Path:
    """``$NASFRAME_NB201``, else ``nb201/nb201_200ep.csv`` of ``$NASFRAME_SHARED_DATA`` (or of
    ../shared/data beside the repository)."""
    if os.environ.get("NASFRAME_NB201"):
        return Path(os.environ["NASFRAME_NB201"])
    shared = os.environ.get("NASFRAME_SHARED_DATA")
    return (Path(shared) if shared else HERE.parent.parent / "shared" / "data") / "nb201" / "nb201_200ep.csv"


def study_data(seeds: range, table: Path) -> dict:
    """The shipped study with the runs' seeds and the table made explicit."""
    from nasframe_core.config import load_config_file

    data = load_config_file(STUDY)
    data["grid"]["seed"] = f"{seeds.start}-{seeds.stop - 1}"
    data["run"] = {**data.get("run", {}), "benchmark": str(table)}
    data["description"] = f"{data.get('description', data['name'])}; here seeds {seeds.start}-{seeds.stop - 1}"
    return data


def sweep(data: dict, out: Path) -> int:
    """``nasframe sweep STUDY --out OUT`` on the study ``data``; what it prints goes to stderr."""
    from nasframe_core.cli import main as nasframe
    from nasframe_core.config import dump_config

    with tempfile.TemporaryDirectory() as folder:
        study = Path(folder) / f"{data['name']}.yaml"
        study.write_text(dump_config(data))
        with contextlib.redirect_stdout(sys.stderr):
            return nasframe(["sweep", str(study), "--out", str(out)])


def aggregate_rows(out: Path) -> list[dict]:
    """``nasframe aggregate OUT --json``'s rows."""
    from nasframe_core.aggregate import DEFAULT_BY, aggregate, published_rows
    from nasframe_core.plugins import make_plugin_manager
    from nasframe_core.study import point_results

    return aggregate(point_results(out), DEFAULT_BY, published_rows(make_plugin_manager(warn=lambda line: None)))


def markdown(rows: list[dict]) -> str:
    lines = ["| optimizer | dataset | runs | test accuracy (mean ± std) | published (mean ± std) | difference |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        test, pub = r["test_accuracy"], r["published"]
        lines.append(f"| {r['optimizer']} | {r['dataset']} | {r['runs']} | {test['mean']:.2f} ± {test['std']:.2f} | "
                     + (f"{pub['mean']:.2f} ± {pub['std']:.2f} | {test['mean'] - pub['mean']:+.2f} |" if pub
                        else "- | - |"))
    sources = sorted({r["published"]["source"] for r in rows if r["published"]})
    return "\n".join(lines + [""] + [f"published: {s}" for s in sources])


def main(argv=None) -> int:
    from nasframe_core.study import Study, parse_seeds

    shipped = parse_seeds(Study.load(STUDY).data["grid"]["seed"])
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=len(shipped),
                   help=f"runs per optimizer (default {len(shipped)}, the study's, as NB201)")
    p.add_argument("--seed", type=int, default=shipped[0],
                   help=f"the first run's seed; the runs have seeds SEED to SEED+RUNS-1 (default {shipped[0]})")
    p.add_argument("--table", type=Path, default=None,
                   help="the NAS-Bench-201 table nb201_200ep.csv, nb201_12ep_minibench.csv beside it "
                        "(default $NASFRAME_NB201, else the shared data's)")
    p.add_argument("--out", type=Path, default=None,
                   help="the study directory to write and keep (default a temporary one, removed at the end)")
    p.add_argument("--json", action="store_true", help="print nasframe aggregate --json's rows and the times")
    args = p.parse_args(argv)
    if args.runs < 2:
        p.error("--runs must be at least 2 (a standard deviation needs two runs)")
    table = args.table or default_table()
    if not table.is_file():
        p.error(f"no NAS-Bench-201 table at {table}; pass --table PATH or set NASFRAME_NB201")
    seeds = range(args.seed, args.seed + args.runs)
    wall, cpu = time.perf_counter(), time.process_time()
    with contextlib.ExitStack() as stack:
        out = args.out or Path(stack.enter_context(tempfile.TemporaryDirectory())) / "table5"
        code = sweep(study_data(seeds, table), out)
        if code != 0:
            return code
        rows = aggregate_rows(out)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    if args.json:
        print(json.dumps({"rows": rows, "wall_seconds": round(wall, 2), "cpu_seconds": round(cpu, 2)}, indent=2))
        return 0
    print(f"NAS-Bench-201 Table 5 by nasframe sweep + aggregate: {STUDY.relative_to(HERE.parent)}, {args.runs} runs "
          f"per optimizer (seeds {seeds.start}-{seeds.stop - 1}), table {table}\n")
    print(markdown(rows))
    print(f"\nwall {wall:.1f} s, CPU {cpu:.1f} s (sweep and aggregate" + (f"; the study is in {out})" if args.out else ")"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
