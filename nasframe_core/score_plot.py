"""``nasframe plot`` on a score output: each proxy against the benchmark's accuracy."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure  # no pyplot: nothing global changes


def _wide(values: np.ndarray) -> float:
    """A linear threshold for a symmetric-log axis when the scores span orders of magnitude
    (synflow: 0 and 1e15-1e49; jacob_cov: -5e4 to -60), else 0 (a linear axis)."""
    finite = np.abs(values[np.isfinite(values)])
    nonzero = finite[finite > 0]
    if len(nonzero) and nonzero.max() / nonzero.min() > 1e2:
        return float(nonzero.min())
    return 0.0


def plot_scores(data: dict, out: Path) -> list[Path]:
    """One panel per proxy: its score of each cell against the table's accuracy (the metric
    the correlations use), titled with Spearman's rho and Kendall's tau. Writes ``proxies.png``."""
    rows = data["rows"]
    proxies = list(data["settings"]["proxies"])
    metric = data.get("accuracy") or "test_accuracy"
    acc = np.array([np.nan if r.get(metric) is None else r[metric] for r in rows], dtype=float)
    corr = data.get("correlations") or {}
    cols = min(3, len(proxies))
    nrows = math.ceil(len(proxies) / cols)
    fig = Figure(figsize=(4.2 * cols, 3.4 * nrows))
    axes = np.atleast_1d(fig.subplots(nrows, cols)).ravel()
    for ax, name in zip(axes, proxies):
        raw = np.array([np.nan if r.get(name) is None else r[name] for r in rows], dtype=float)
        keep = np.isfinite(raw) & np.isfinite(acc)
        ax.scatter(raw[keep], acc[keep], s=6, alpha=0.5, c="#1f77b4", linewidths=0)
        threshold = _wide(raw)
        if threshold:
            ax.set_xscale("symlog", linthresh=threshold)
        label = "symmetric log scale" if threshold else "score"
        c = corr.get(name) or {}
        if c.get("spearman") is not None:
            title = f"{name}: rho {c['spearman']:+.3f}, tau {c['kendall']:+.3f}"
        else:
            title = name
        ax.set_title(title, fontsize=10)
        ax.set_xlabel(f"{name} ({label})", fontsize=9)
        ax.set_ylabel(metric.replace("_", " ") + " (%)", fontsize=9)
        if keep.any():  # the worst cells (about 10% accuracy: collapsed) would squash the rest
            low = np.percentile(acc[keep], 5)
            ax.set_ylim(low - 1, acc[keep].max() + 1)
        ax.grid(alpha=0.3)
        ax.tick_params(labelsize=8)
    for ax in axes[len(proxies):]:
        ax.set_visible(False)
    s = data["settings"]
    fig.suptitle(f"{data['cells']} {s.get('search_space')} cells, {s.get('dataset')}, seed {s.get('seed')}: "
                 f"proxy against the benchmark's {metric.replace('_', ' ')} (the lowest 5% of accuracies not shown)",
                 fontsize=11)
    fig.tight_layout()
    path = Path(out) / "proxies.png"
    fig.savefig(path, dpi=110)
    return [path]
