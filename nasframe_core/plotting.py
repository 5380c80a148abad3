"""PNG figures of a run: alpha evolution per edge and the final cells."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

from matplotlib.figure import Figure  # no pyplot: nothing global (backend, figure registry) changes


def plot_alphas(metrics: list[dict], out: Path, specs: Optional[dict] = None) -> list[Path]:
    """One figure per cell type: a panel per edge, softmaxed weight of each op over the epochs.

    ``specs`` (the space's cell specs) name the ops and edges; without them they are numbered.
    """
    records = [m for m in metrics if isinstance(m.get("alphas"), dict)]
    if not records:
        return []
    written = []
    epochs = [m["epoch"] + 1 for m in records]
    for cell_type in records[0]["alphas"]:
        series = [m["alphas"][cell_type] for m in records]
        n_edges, n_ops = len(series[0]), len(series[0][0])
        cols = min(4, n_edges)
        rows = -(-n_edges // cols)
        fig = Figure(figsize=(3.2 * cols, 2.4 * rows))
        axes = fig.subplots(rows, cols, squeeze=False, sharey=True)
        spec = (specs or {}).get(cell_type)
        known = spec is not None and spec.num_ops == n_ops and spec.num_edges == n_edges
        for e in range(n_edges):
            ax = axes[e // cols][e % cols]
            for k in range(n_ops):
                ax.plot(epochs, [s[e][k] for s in series], label=spec.ops[k] if known else f"op {k}")
            src, dst = spec.edges[e] if known else (None, None)
            ax.set_title(f"edge {src}->{dst}" if known else f"edge {e}", fontsize=9)
            ax.tick_params(labelsize=7)
        for e in range(n_edges, rows * cols):
            axes[e // cols][e % cols].axis("off")
        handles, labels = axes[0][0].get_legend_handles_labels()
        fig.legend(handles, labels, loc="lower center", ncol=min(n_ops, 8), fontsize=8)
        fig.suptitle(f"{cell_type}: softmax(alpha) per edge over epochs")
        fig.tight_layout(rect=(0, 0.06, 1, 0.96))
        path = out / f"alphas_{cell_type}.png"
        fig.savefig(path, dpi=110)
        written.append(path)
    return written


def plot_cells(space, genotype, out: Path) -> list[Path]:
    """One figure per cell type of ``genotype``: nodes on a line, each kept edge an arc
    labelled with its op (arcs alternate above and below the line so labels stay apart)."""
    from matplotlib.patches import FancyArrowPatch

    written = []
    specs = space.cell_specs()
    for cell_type, choices in space.genotype_choices(genotype).items():
        spec = specs[cell_type]
        nodes = list(spec.inputs) + [n for n in spec.nodes if n not in spec.inputs]
        x = {n: float(i) for i, n in enumerate(nodes)}
        kept = [c for c in choices if c.op != "none"]
        fig = Figure(figsize=(1.6 * len(nodes) + 2, 4.5))
        ax = fig.subplots()
        for i, c in enumerate(sorted(kept, key=lambda c: (x[c.dst] - x[c.src], c.dst, c.src))):
            span = x[c.dst] - x[c.src]
            side = 1 if i % 2 == 0 else -1
            rad = -0.35 * side  # arc3: negative bends to the left of the direction, i.e. up
            ax.add_patch(FancyArrowPatch((x[c.src], 0), (x[c.dst], 0), connectionstyle=f"arc3,rad={rad}",
                                         arrowstyle="-|>", mutation_scale=12, shrinkA=14, shrinkB=14, lw=1.2))
            ax.text((x[c.src] + x[c.dst]) / 2, side * 0.35 * span / 2 * 1.0, c.op, ha="center",
                    va="bottom" if side > 0 else "top", fontsize=8,
                    bbox=dict(boxstyle="round,pad=0.15", fc="white", ec="none", alpha=0.85))
        for n in nodes:
            color = "#9ecae1" if n in spec.inputs else "#fdd0a2"
            ax.scatter([x[n]], [0], s=700, c=color, zorder=3, edgecolors="#555555")
            ax.text(x[n], 0, str(n), ha="center", va="center", zorder=4)
        reach = 0.35 * (len(nodes) - 1) / 2 + 0.4
        ax.set_xlim(-0.6, len(nodes) - 0.4)
        ax.set_ylim(-reach, reach)
        ax.set_aspect("equal")  # arc3 bends in display space: equal axes put the labels on the arcs
        ax.set_title(f"{cell_type} cell; output: {spec.combine} of nodes {list(spec.output)}")
        ax.axis("off")
        path = out / f"cell_{cell_type}.png"
        fig.savefig(path, dpi=110, bbox_inches="tight")
        written.append(path)
    return written


def incumbent_trace(evaluated: list[dict]) -> list[dict]:
    """The incumbent after every evaluation of a black-box search: the best validation
    accuracy so far (the earliest on ties) with its test accuracy and the budget spent."""
    trace, best = [], None
    for e in evaluated:
        if best is None or e["valid_accuracy"] > best["valid_accuracy"]:
            best = e
        trace.append({"evaluation": e["evaluation"], "spent_seconds": e["spent_seconds"],
                      "valid_accuracy": best["valid_accuracy"], "test_accuracy": best.get("test_accuracy")})
    return trace


def plot_incumbent(metrics: list[dict], out: Path, title: str = "") -> list[Path]:
    """For a black-box search: the incumbent's validation accuracy (searched on) and its
    benchmark test accuracy over the budget (charged seconds, or evaluations when no time
    is charged). Rounds without ``evaluated`` entries (one-shot runs) draw nothing."""
    evaluated = [e for m in metrics for e in m.get("evaluated", ())]
    if not evaluated:
        return []
    trace = incumbent_trace(evaluated)
    by_time = trace[-1]["spent_seconds"] > 0
    x = [t["spent_seconds"] if by_time else t["evaluation"] for t in trace]
    fig = Figure(figsize=(6.4, 4.0))
    ax = fig.subplots()
    ax.step(x, [t["valid_accuracy"] for t in trace], where="post", label="best validation accuracy (searched on)")
    tests = [t["test_accuracy"] for t in trace]
    if all(v is not None for v in tests):
        ax.step(x, tests, where="post", label="its benchmark test accuracy")
    ax.scatter(x, [e["valid_accuracy"] for e in evaluated], s=8, c="#999999", zorder=0, label="each evaluation")
    ax.set_xlabel("seconds charged to the budget" if by_time else "evaluations")
    ax.set_ylabel("accuracy (%)")
    # the axis shows the incumbent and most evaluations; the worst tenth (collapsed cells) may fall below
    scores = sorted(e["valid_accuracy"] for e in evaluated)
    low = min(min(t["valid_accuracy"] for t in trace), scores[len(scores) // 10])
    top = max(max(t["valid_accuracy"] for t in trace), max((v for v in tests if v is not None), default=low))
    ax.set_ylim(low - 0.15 * (top - low + 1), top + 0.1 * (top - low + 1))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    ax.set_title(f"incumbent over the budget{': ' + title if title else ''}", fontsize=10)
    fig.tight_layout()
    path = out / "incumbent.png"
    fig.savefig(path, dpi=110)
    return [path]
