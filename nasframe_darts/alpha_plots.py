"""``alphas.png``: the op weights of every edge over the epochs of a one-shot search."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

from matplotlib.figure import Figure  # no pyplot: nothing global (backend, figure registry) changes

from nasframe_core.plotting import cell_label, figure_name


def plot_alphas(metrics: list[dict], out: Path, specs: Optional[dict] = None) -> list[Path]:
    """One figure per cell type: a panel per edge, the softmaxed weight of each op over the epochs.

    The y axis spans at least 0 to twice the uniform weight 1/n (drawn as a dashed line), so
    weights that stay near uniform look flat rather than zoomed into a trend; every epoch is a
    marker, so a one-epoch run shows its points. Each panel's title gives the edge's final
    margin (strongest minus runner-up). ``specs`` (the space's cell specs) name the ops and
    edges; without them they are numbered.
    """
    from matplotlib.ticker import MaxNLocator

    from .diagnostics import edge_margins, noise_level

    records = [m for m in metrics if isinstance(m.get("alphas"), dict)]
    if not records:
        return []
    written = []
    epochs = [m["epoch"] for m in records]
    for cell_type in records[0]["alphas"]:
        series = [m["alphas"][cell_type] for m in records]
        n_edges, n_ops = len(series[0]), len(series[0][0])
        spec = (specs or {}).get(cell_type)
        known = spec is not None and spec.num_ops == n_ops and spec.num_edges == n_edges
        margins = edge_margins({cell_type: series[-1]}, {cell_type: spec} if known else None)[cell_type]
        uniform = 1.0 / n_ops
        top = max(max(max(row) for row in s) for s in series)
        y_max = min(1.0, max(2 * uniform, 1.1 * top))
        cols = min(4, n_edges)
        rows = -(-n_edges // cols)
        fig = Figure(figsize=(3.3 * cols, 2.6 * rows + 0.8))
        axes = fig.subplots(rows, cols, squeeze=False, sharey=True, sharex=True)
        for e in range(n_edges):
            ax = axes[e // cols][e % cols]
            ax.axhline(uniform, color="#888888", ls="--", lw=0.9, label=f"uniform 1/{n_ops}")
            for k in range(n_ops):
                ax.plot(epochs, [s[e][k] for s in series], marker="o", ms=3, lw=1.3,
                        label=spec.ops[k] if known else f"op {k}")
            name = f"{spec.edges[e][0]}->{spec.edges[e][1]}" if known else f"{e}"
            undecided = " (noise)" if margins[e] < noise_level(n_ops) else ""
            ax.set_title(f"edge {name}: margin {margins[e]:.3f}{undecided}", fontsize=9)
            ax.set_ylim(0, y_max)
            if len(epochs) <= 12:
                ax.set_xticks(epochs)
            else:
                ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            if len(epochs) == 1:
                ax.set_xlim(epochs[0] - 0.5, epochs[0] + 0.5)
            ax.tick_params(labelsize=7)
            if e % cols == 0:
                ax.set_ylabel("op weight (softmax)", fontsize=8)
            if e // cols == rows - 1 or e + cols >= n_edges:
                ax.set_xlabel("epoch", fontsize=8)
                ax.tick_params(labelbottom=True)
        for e in range(n_edges, rows * cols):
            axes[e // cols][e % cols].axis("off")
        handles, labels = axes[0][0].get_legend_handles_labels()
        per_row = n_ops + 1 if n_ops + 1 <= 8 else 5
        fig.legend(handles, labels, loc="lower center", ncol=per_row, fontsize=8)
        fig.suptitle(f"{cell_label(cell_type)}: op weights per edge over the epochs "
                     f"(margin = strongest minus runner-up after epoch {epochs[-1]})", fontsize=10)
        legend_rows = -(-(n_ops + 1) // per_row)
        fig.tight_layout(rect=(0, 0.045 * legend_rows + 0.02, 1, 0.95))
        path = out / figure_name("alphas", cell_type)
        fig.savefig(path, dpi=110)
        written.append(path)
    return written
