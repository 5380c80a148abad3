"""``nasframe score``: zero-cost proxies of untrained cells, and their rank correlation with a
benchmark table's accuracy (see :mod:`nasframe_core.scoring`)."""
from __future__ import annotations

import json
import sys
from pathlib import Path

from .config import PROXY_BATCH_SIZE as DEFAULT_BATCH_SIZE, PROXY_SEED as DEFAULT_SEED
from .errors import NasframeError


def add_parser(sub) -> None:
    p = sub.add_parser("score", help="score untrained cells with zero-cost proxies; correlate with a benchmark",
                       description="Score untrained networks of a search space with zero-cost proxies. With a "
                                   "benchmark table attached, print the Spearman and Kendall rank correlations "
                                   "of every proxy with the table's accuracy.")
    p.add_argument("--proxy", help="comma-separated proxies, e.g. synflow,snip (default: all installed)")
    p.add_argument("--search-space", dest="search_space", default="nasbench201",
                   help="search space (default: nasbench201)")
    p.add_argument("--dataset", default="cifar10", help="dataset of the batch and of the benchmark (default: cifar10)")
    p.add_argument("--data-dir", dest="data_dir", help="where the dataset's files are, as for nasframe run")
    p.add_argument("--benchmark", help="benchmark table for the space (default: $NASFRAME_NB201 for nasbench201)")
    p.add_argument("--sample", type=int, help="score N distinct random cells (default: every cell of the space)")
    p.add_argument("--seed", type=int, default=DEFAULT_SEED,
                   help=f"the seed of the sample, the initialisations and the batches (default: {DEFAULT_SEED})")
    p.add_argument("--batch-size", dest="batch_size", type=int, default=DEFAULT_BATCH_SIZE,
                   help=f"images per batch for proxies without their own (default: {DEFAULT_BATCH_SIZE})")
    p.add_argument("--accuracy", choices=("valid", "test"), default="valid",
                   help="the benchmark accuracy to correlate with: valid, the accuracy of the training run "
                        "the published correlations use (NB201: cifar10-valid, trained on 25k images), or "
                        "test (NB201: the cifar10 run trained on 50k, on the test set) (default: valid)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="cpu", help="default: cpu")
    p.add_argument("--workers", type=int, default=1,
                   help="score in N processes of one thread each (default: 1 process, all threads)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="a search_space.* or dataset.* setting, e.g. search_space.C=8")
    p.add_argument("--out", help="write the scores: FILE.csv (with FILE.json beside it) or FILE.json")
    p.add_argument("--json", action="store_true",
                   help='print {"cells", "correlations", "seconds"} as JSON instead of a table')
    p.add_argument("--quiet", action="store_true", help="no progress output")


def _settings(overrides: list[str]) -> tuple[dict, dict]:
    space, data = {}, {}
    for item in overrides:
        key, sep, value = item.partition("=")
        section, dot, name = key.strip().partition(".")
        if not sep or not dot or not name or section not in ("search_space", "dataset"):
            raise NasframeError(f"--set takes search_space.KEY=VALUE or dataset.KEY=VALUE, got {item!r}")
        (space if section == "search_space" else data)[name] = value.strip()
    return space, data


def cmd_score(host, args) -> int:
    from .benchmark import open_benchmark
    from .context import resolve_device
    from .scoring import make_scorer, proxy_names, sample_genotypes, score_cells, write_scores

    names = proxy_names(host, args.proxy)
    space_settings, data_settings = _settings(args.overrides)
    space = host.create("search_space", args.search_space, **space_settings)
    dataset = host.get("dataset", args.dataset).name
    bench_name = getattr(space, "benchmark_name", None)
    if bench_name:
        space.attach_benchmark(open_benchmark(host, bench_name, args.benchmark))
    elif args.benchmark:
        raise NasframeError(f"the {args.search_space} space has no benchmark table; drop --benchmark")
    genotypes = sample_genotypes(space, args.sample, args.seed)
    device = resolve_device(args.device)
    scorer = make_scorer(host, space, names, dataset=args.dataset, space_settings=space_settings,
                         space_name=args.search_space,
                         dataset_settings=data_settings,
                         data_dir=args.data_dir, batch_size=args.batch_size, seed=args.seed, device=device)
    progress = None
    if not args.quiet and not args.json and sys.stderr.isatty():
        def progress(i, n):
            print(f"\r{i}/{n} cells", end="" if i < n else "\n", file=sys.stderr, flush=True)
    from .scoring import RowWriter

    writer = RowWriter(Path(args.out) if args.out else None, names)
    try:
        result = score_cells(scorer, genotypes, dataset=dataset, accuracy=args.accuracy, progress=progress,
                             workers=args.workers, on_row=writer)
    finally:
        writer.close()
    result["rows_written"] = writer.path is not None
    settings = {"proxies": names, "search_space": args.search_space, "search_space_settings": space_settings,
                "dataset": dataset, "sample": args.sample, "seed": args.seed, "batch_size": args.batch_size,
                "workers": args.workers,
                "benchmark": str(getattr(space.benchmark, "path", "")) or None, "device": str(device)}
    written = write_scores(result, Path(args.out), settings) if args.out else []
    if args.json:
        from .rundir import json_safe

        print(json.dumps(json_safe({k: result[k] for k in ("cells", "correlations", "seconds")}), indent=2))
        return 0
    print(f"scored {result['cells']} {args.search_space} cells with {', '.join(names)} in {result['seconds']:.1f} s")
    if result["correlations"]:
        print(f"rank correlation with the benchmark's {result['accuracy'].replace('_', ' ')} ({dataset}):")
        print(f"  {'proxy':12s} {'spearman':>9s} {'kendall':>9s} {'|rho|':>7s}")
        for name, c in result["correlations"].items():
            rho, tau = c["spearman"], c["kendall"]
            shown = (f"{rho:9.3f} {tau:9.3f} {abs(rho):7.3f}" if rho is not None else f"{'n/a':>9s} {'n/a':>9s}")
            print(f"  {name:12s} {shown}")
    else:
        print("no benchmark table attached: no correlations (pass --benchmark PATH)")
    parts = result["seconds_by_part"]
    print("seconds: " + ", ".join(f"{k} {v:.1f}" for k, v in parts.items()))
    for path in written:
        print(f"wrote {path}")
    return 0
