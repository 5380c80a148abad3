"""``nasframe plot`` on a study directory: per dataset, the incumbent's test accuracy over the
budget for every method (mean line, std band over the runs), and the aggregate table as a picture."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Optional

from matplotlib.figure import Figure

from .errors import NasframeError

GRID = 200  # points along the budget axis


def _series_blackbox(result: dict, dataset: str, test_of) -> Optional[tuple[list[float], list[float]]]:
    """(charged seconds, the incumbent's test accuracy on ``dataset``) after every evaluation."""
    history = result.get("history")
    if not history:
        return None
    xs, ys, charged, best = [], [], 0.0, None
    for e in history:
        charged += float(e.get("cost") or 0.0)
        if e.get("status", "ok") == "ok" and e.get("valid_accuracy") is not None and (
                best is None or e["valid_accuracy"] > best["valid_accuracy"]):
            best = e
        if best is not None:
            xs.append(charged)
            ys.append(test_of(best, dataset))
    return (xs, ys) if xs and all(y is not None for y in ys) else None


def _series_epochs(run_dir: Path) -> Optional[tuple[list[float], list[float]]]:
    """(epoch, the current cell's benchmark test accuracy) of a one-shot run's metrics."""
    import json

    xs, ys = [], []
    try:
        lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        try:
            m = json.loads(line)
        except ValueError:
            continue
        bench = m.get("benchmark") or {}
        if bench.get("test_accuracy") is not None:
            xs.append(float(m["epoch"]))
            ys.append(float(bench["test_accuracy"]))
    return (xs, ys) if xs else None


def _on_grid(xs: list[float], ys: list[float], grid: list[float]) -> list[float]:
    """The step function (xs, ys) sampled on ``grid`` (NaN before its first point)."""
    out, k = [], -1
    for g in grid:
        while k + 1 < len(xs) and xs[k + 1] <= g:
            k += 1
        out.append(ys[k] if k >= 0 else math.nan)
    return out


def plot_study(host, study_dir: Path, out: Path) -> list[Path]:
    from .aggregate import aggregate, published_rows, run_records
    from .study import point_results

    points = point_results(study_dir)
    if not points:
        raise NasframeError(f"{study_dir} has no finished point yet; nothing to plot")
    spaces: dict = {}
    # which dataset each point reports, and its curves
    curves: dict[str, dict[str, list]] = {}  # dataset -> optimizer -> [(xs, ys)]
    unit: dict[str, str] = {}
    for p in points:
        result = p["result"]
        for record in run_records(p):
            dataset, optimizer = str(record["dataset"]), str(record["optimizer"])
            if result.get("history"):
                space = _space(host, spaces, p["config"])
                series = _series_blackbox(result, dataset, lambda e, d: _lookup(space, e, d))
                unit[dataset] = "seconds charged to the budget"
            else:
                series = _series_epochs(p["run_dir"])
                unit.setdefault(dataset, "epoch")
            if series:
                curves.setdefault(dataset, {}).setdefault(optimizer, []).append(series)
    written = []
    for dataset, by_method in curves.items():
        fig = Figure(figsize=(7.0, 4.4))
        ax = fig.subplots()
        end = max(max(xs[-1] for xs, _ in runs) for runs in by_method.values())
        grid = [end * (i + 1) / GRID for i in range(GRID)]
        for optimizer, runs in sorted(by_method.items()):
            sampled = [_on_grid(xs, ys, grid) for xs, ys in runs]
            mean, std = [], []
            for i in range(GRID):
                col = [s[i] for s in sampled if not math.isnan(s[i])]
                if len(col) < len(runs):  # drawn from where every run has an incumbent
                    mean.append(math.nan)
                    std.append(math.nan)
                    continue
                m = sum(col) / len(col)
                mean.append(m)
                std.append(math.sqrt(sum((v - m) ** 2 for v in col) / (len(col) - 1)) if len(col) > 1 else 0.0)
            line, = ax.plot(grid, mean, lw=1.6, label=f"{optimizer} ({len(runs)} runs)")
            ax.fill_between(grid, [m - s for m, s in zip(mean, std)], [m + s for m, s in zip(mean, std)],
                            color=line.get_color(), alpha=0.18, lw=0)
        ax.set_xlabel(unit.get(dataset, "budget"))
        ax.set_ylabel(f"incumbent's test accuracy on {dataset} (%)")
        finals = [v for runs in by_method.values() for _, ys in runs for v in ys[-1:]]
        lows = sorted(finals)
        if lows:
            low = lows[max(0, len(lows) // 20 - 1)]
            ax.set_ylim(low - 0.6 * (max(finals) - low + 0.5), max(finals) + 0.15 * (max(finals) - low + 0.5))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="lower right")
        ax.set_title(f"{study_dir.name}: {dataset}, mean ± std over runs", fontsize=10)
        fig.tight_layout()
        path = out / f"incumbent_{dataset}.png"
        fig.savefig(path, dpi=110)
        written.append(path)
    rows = aggregate(points, ("optimizer", "dataset"), published_rows(host))
    written.append(_table_picture(rows, out / "aggregate.png", study_dir.name))
    return written


def _space(host, cache: dict, cfg: dict):
    name = (cfg.get("search_space") or {}).get("name")
    if name not in cache:
        from .benchmark import open_benchmark

        settings = {k: v for k, v in (cfg.get("search_space") or {}).items() if k != "name"}
        space = host.create("search_space", name, **settings)
        bench_name = getattr(space, "benchmark_name", None)
        if bench_name and bench_name in host.names("benchmark"):
            bench = open_benchmark(host, bench_name, (cfg.get("run") or {}).get("benchmark"))
            if bench is not None:
                space.attach_benchmark(bench)
        cache[name] = space
    return cache[name]


def _lookup(space, evaluation: dict, dataset: str):
    from .benchmark import TEST_ACCURACY

    genotype = space.parse_genotype(evaluation["genotype"])
    value = space.query(genotype, dataset, TEST_ACCURACY) if space.benchmark is not None else None
    return value if value is not None else evaluation.get("test_accuracy")


def _table_picture(rows: list[dict], path: Path, title: str) -> Path:
    head = ["optimizer", "dataset", "runs", "test accuracy", "published", "evaluations"]

    def pm(stat, digits=2):
        return "-" if not stat else f"{stat['mean']:.{digits}f} ± {stat['std']:.{digits}f}"

    cells = [[str(r["optimizer"]), str(r["dataset"]), str(r["runs"]), pm(r["test_accuracy"]),
              "-" if not r["published"] else (f"{r['published']['mean']:.2f}" + (
                  f" ± {r['published']['std']:.2f}" if r["published"].get("std") is not None else "")),
              pm(r["cost"]["evaluations"], 1)] for r in rows]
    fig = Figure(figsize=(8.2, 0.5 + 0.32 * (len(cells) + 1)))
    ax = fig.subplots()
    ax.axis("off")
    table = ax.table(cellText=cells, colLabels=head, loc="center", cellLoc="center")
    table.auto_set_font_size(False)
    table.set_fontsize(9)
    table.scale(1, 1.3)
    for (r, _), cell in table.get_celld().items():
        if r == 0:
            cell.set_text_props(weight="bold")
            cell.set_facecolor("#e8e8e8")
    sources = sorted({r["published"]["source"] for r in rows if r["published"]})
    ax.set_title(title + ("\npublished: " + "; ".join(sources) if sources else ""), fontsize=8, wrap=True)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return path
