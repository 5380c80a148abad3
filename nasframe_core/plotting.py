"""PNG figures of a run: the final cells, the incumbent of a black-box search, training curves.

Plugins draw their own figures of a run through
:func:`~nasframe_core.hookspecs.nasframe_plot_run`, with :func:`figure_name` and
:func:`cell_label` to name them as these are named.
"""
from __future__ import annotations

from pathlib import Path

from matplotlib.figure import Figure  # no pyplot: nothing global (backend, figure registry) changes


def figure_name(kind: str, cell_type: str) -> str:
    """``KIND.png`` for a space with one cell type named ``cell`` (``cell.png``);
    ``KIND_normal.png``, ``KIND_reduce.png``... otherwise."""
    return f"{kind}.png" if cell_type in ("cell", kind) else f"{kind}_{cell_type}.png"


def cell_label(cell_type: str) -> str:
    """How a figure's title names a cell type: ``cell``, ``normal cell``..."""
    return "cell" if cell_type == "cell" else f"{cell_type} cell"


def plot_cells(space, genotype, out: Path) -> list[Path]:
    """One figure per cell type of ``genotype``: nodes on a line, each kept edge an arc
    labelled with its op (arcs alternate above and below the line so labels stay apart).

    Edges whose op is one of the space's ``zero_ops`` (``none``) are drawn faint and dashed:
    they carry nothing. Nodes that receive nothing are grey ("always zero"), nodes whose
    result reaches no output are hatched ("unused"), and the caption says so, so that no node
    floats without an explanation.
    """
    from matplotlib.patches import FancyArrowPatch

    from .structure import cell_structure

    written = []
    specs = space.cell_specs()
    zero_ops = tuple(getattr(space, "zero_ops", ()))
    for cell_type, choices in space.genotype_choices(genotype).items():
        spec = specs[cell_type]
        nodes = list(spec.inputs) + [n for n in spec.nodes if n not in spec.inputs]
        x = {n: float(i) for i, n in enumerate(nodes)}
        structure = cell_structure(spec, choices, zero_ops)
        dead, unused = set(structure["dead"]), set(structure["unused"])
        fig = Figure(figsize=(1.7 * len(nodes) + 2, 5.0))
        ax = fig.subplots()
        ordered = sorted(choices, key=lambda c: (x[c.dst] - x[c.src], c.dst, c.src))
        for i, c in enumerate(ordered):
            zero = c.op in zero_ops
            span = x[c.dst] - x[c.src]
            side = 1 if i % 2 == 0 else -1
            rad = -0.35 * side  # arc3: negative bends to the left of the direction, i.e. up
            color = "#bbbbbb" if zero else ("#999999" if c.src in dead else "#222222")
            ax.add_patch(FancyArrowPatch((x[c.src], 0), (x[c.dst], 0), connectionstyle=f"arc3,rad={rad}",
                                         arrowstyle="-|>", mutation_scale=12, shrinkA=14, shrinkB=14,
                                         lw=0.9 if zero else 1.3, ls="--" if zero else "-", color=color))
            ax.text((x[c.src] + x[c.dst]) / 2, side * 0.35 * span / 2, c.op, ha="center",
                    va="bottom" if side > 0 else "top", fontsize=8, color="#999999" if zero else "black",
                    bbox=dict(boxstyle="round,pad=0.15", fc="white", ec="none", alpha=0.85))
        for n in nodes:
            if n in spec.inputs:
                color, hatch = "#9ecae1", None
            elif n in dead:
                color, hatch = "#d9d9d9", None
            else:
                color, hatch = "#fdd0a2", ("///" if n in unused else None)
            ax.scatter([x[n]], [0], s=700, c=color, zorder=3, edgecolors="#555555", hatch=hatch)
            ax.text(x[n], 0, str(n), ha="center", va="center", zorder=4)
            note = "always zero" if n in dead else ("unused" if n in unused else None)
            if note:
                ax.text(x[n], -0.2, note, ha="center", va="top", fontsize=7, color="#b2182b", zorder=4)
        reach = 0.35 * (len(nodes) - 1) / 2 + 0.4
        ax.set_xlim(-0.6, len(nodes) - 0.4)
        ax.set_ylim(-reach, reach)
        ax.set_aspect("equal")  # arc3 bends in display space: equal axes put the labels on the arcs
        output = f"node {spec.output[0]}" if len(spec.output) == 1 else f"{spec.combine} of nodes {list(spec.output)}"
        ax.set_title(f"{cell_label(cell_type)}: input: node{'s' if len(spec.inputs) > 1 else ''} "
                     f"{', '.join(map(str, spec.inputs))}; output: {output}", fontsize=10)
        notes = []
        if zero_ops and any(c.op in zero_ops for c in choices):
            notes.append(f"dashed: {'/'.join(zero_ops)} edges (they carry nothing)")
        if dead:
            notes.append(f"grey: node{'s' if len(dead) > 1 else ''} {', '.join(map(str, sorted(dead)))} "
                         f"receive{'s' if len(dead) == 1 else ''} nothing, so always zero")
        if unused:
            notes.append(f"hatched: node{'s' if len(unused) > 1 else ''} {', '.join(map(str, sorted(unused)))} "
                         f"reach{'es' if len(unused) == 1 else ''} no output")
        if notes:
            fig.text(0.5, 0.02, "; ".join(notes), ha="center", fontsize=8, color="#444444")
        ax.axis("off")
        path = out / figure_name("cell", cell_type)
        fig.savefig(path, dpi=110, bbox_inches="tight")
        written.append(path)
    return written


def incumbent_trace(evaluated: list[dict]) -> list[dict]:
    """The incumbent after every successful evaluation of a black-box search: the best
    validation accuracy so far (the earliest on ties) with its test accuracy and the budget
    spent (failed evaluations, which score nothing, are left out)."""
    trace, best = [], None
    for e in evaluated:
        if e.get("status", "ok") != "ok" or e.get("valid_accuracy") is None:
            continue
        if best is None or e["valid_accuracy"] > best["valid_accuracy"]:
            best = e
        trace.append({"evaluation": e["evaluation"], "spent_seconds": e["spent_seconds"],
                      "valid_accuracy": best["valid_accuracy"], "test_accuracy": best.get("test_accuracy")})
    return trace


def plot_incumbent(metrics: list[dict], out: Path, title: str = "") -> list[Path]:
    """For a black-box search: the incumbent's validation accuracy (searched on) and its
    benchmark test accuracy over the budget (charged seconds, or evaluations when no time
    is charged). Rounds without ``evaluated`` entries (one-shot runs) draw nothing."""
    evaluated = [e for m in metrics for e in m.get("evaluated", ())
                 if e.get("status", "ok") == "ok" and e.get("valid_accuracy") is not None]
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


#: (metric key, label) drawn by :func:`plot_training`, losses in one panel and accuracies in the other
_CURVES = {
    "loss": (("train_loss", "train"), ("val_loss", "validation"), ("test_loss", "test")),
    "accuracy (%)": (("train_acc", "train"), ("val_acc", "validation"), ("test_acc", "test")),
}


def plot_training(metrics: list[dict], out: Path, title: str = "") -> list[Path]:
    """``training.png``: the loss and accuracy curves over the epochs (train, and test or
    validation where the run measured them), one marker per epoch. Nothing when the epochs
    record no losses (a black-box search)."""
    from matplotlib.ticker import MaxNLocator

    records = [m for m in metrics if isinstance(m.get("train_loss"), (int, float))]
    if not records:
        return []
    epochs = [m.get("epoch", i + 1) for i, m in enumerate(records)]
    fig = Figure(figsize=(9.0, 3.8))
    axes = fig.subplots(1, 2)
    for ax, (ylabel, keys) in zip(axes, _CURVES.items()):
        for key, label in keys:
            values = [m.get(key) for m in records]
            if all(isinstance(v, (int, float)) for v in values):
                ax.plot(epochs, values, marker="o", ms=3, lw=1.3, label=label)
        ax.set_xlabel("epoch")
        ax.set_ylabel(ylabel)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        if len(epochs) == 1:
            ax.set_xlim(epochs[0] - 0.5, epochs[0] + 0.5)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    fig.suptitle(f"training curves{': ' + title if title else ''}", fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.94))
    path = out / "training.png"
    fig.savefig(path, dpi=110)
    return [path]
