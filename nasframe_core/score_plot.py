"""``nasframe plot`` on a score output: each proxy against the benchmark's accuracy."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure  # no pyplot: nothing global changes


def _axis_values(values: np.ndarray) -> tuple[np.ndarray, str]:
    """Scores spanning orders of magnitude (synflow: 1e15-1e40) are drawn as log10."""
    finite = values[np.isfinite(values)]
    if len(finite) and finite.min() > 0 and finite.max() / finite.min() > 1e3:
        return np.log10(values), "log10 score"
    return values, "score"


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
        x, label = _axis_values(raw)
        keep = np.isfinite(x) & np.isfinite(acc)
        ax.scatter(x[keep], acc[keep], s=6, alpha=0.5, c="#1f77b4", linewidths=0)
        c = corr.get(name) or {}
        if c.get("spearman") is not None:
            title = f"{name}: rho {c['spearman']:+.3f}, tau {c['kendall']:+.3f}"
        else:
            title = name
        ax.set_title(title, fontsize=10)
        ax.set_xlabel(f"{name} ({label})", fontsize=9)
        ax.set_ylabel(metric.replace("_", " ") + " (%)", fontsize=9)
        if keep.any():  # the worst cells (collapsed, ~10%) would squash the rest
            low = np.percentile(acc[keep], 2)
            ax.set_ylim(low - 1, acc[keep].max() + 1)
        ax.grid(alpha=0.3)
        ax.tick_params(labelsize=8)
    for ax in axes[len(proxies):]:
        ax.set_visible(False)
    s = data["settings"]
    fig.suptitle(f"{data['cells']} {s.get('search_space')} cells, {s.get('dataset')}, seed {s.get('seed')}: "
                 f"proxy against the benchmark's {metric.replace('_', ' ')}", fontsize=11)
    fig.tight_layout()
    path = Path(out) / "proxies.png"
    fig.savefig(path, dpi=110)
    return [path]
