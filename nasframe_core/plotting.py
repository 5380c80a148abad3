"""PNG figures of a run: alpha evolution per edge and the final cells."""
from __future__ import annotations

from pathlib import Path

import networkx as nx


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_alphas(metrics: list[dict], out: Path) -> list[Path]:
    """One figure per cell type: a panel per edge, softmaxed weight of each op over the epochs."""
    plt = _pyplot()
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
        fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.4 * rows), squeeze=False, sharey=True)
        names = records[0].get("op_names", {}).get(cell_type) if isinstance(records[0].get("op_names"), dict) else None
        for e in range(n_edges):
            ax = axes[e // cols][e % cols]
            for k in range(n_ops):
                ax.plot(epochs, [s[e][k] for s in series], label=names[k] if names else f"op {k}")
            ax.set_title(f"edge {e}", fontsize=9)
            ax.tick_params(labelsize=7)
        for e in range(n_edges, rows * cols):
            axes[e // cols][e % cols].axis("off")
        handles, labels = axes[0][0].get_legend_handles_labels()
        fig.legend(handles, labels, loc="lower center", ncol=min(n_ops, 8), fontsize=8)
        fig.suptitle(f"{cell_type}: softmax(alpha) per edge over epochs")
        fig.tight_layout(rect=(0, 0.06, 1, 0.96))
        path = out / f"alphas_{cell_type}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    return written


def plot_cells(space, genotype, out: Path) -> list[Path]:
    """One figure per cell type of ``genotype``: its kept edges labelled with their ops."""
    plt = _pyplot()
    written = []
    specs = space.cell_specs()
    for cell_type, choices in space.genotype_choices(genotype).items():
        spec = specs[cell_type]
        g = nx.MultiDiGraph()
        g.add_nodes_from(spec.inputs + spec.nodes)
        for c in choices:
            if c.op != "none":
                g.add_edge(c.src, c.dst, label=c.op)
        layers = {n: (0 if n in spec.inputs else 1 + spec.nodes.index(n)) for n in g.nodes}
        for n, layer in layers.items():
            g.nodes[n]["layer"] = layer
        pos = nx.multipartite_layout(g, subset_key="layer")
        fig, ax = plt.subplots(figsize=(7, 4))
        colors = ["#9ecae1" if n in spec.inputs else "#fdd0a2" for n in g.nodes]
        nx.draw_networkx_nodes(g, pos, node_color=colors, node_size=700, ax=ax)
        nx.draw_networkx_labels(g, pos, ax=ax)
        nx.draw_networkx_edges(g, pos, ax=ax, arrows=True, connectionstyle="arc3,rad=0.15")
        labels = {(u, v): d["label"] for u, v, d in g.edges(data=True)}
        nx.draw_networkx_edge_labels(g, pos, edge_labels=labels, font_size=7, ax=ax)
        ax.set_title(f"{cell_type} cell (output: {spec.combine} of {list(spec.output)})")
        ax.axis("off")
        path = out / f"cell_{cell_type}.png"
        fig.savefig(path, dpi=110, bbox_inches="tight")
        plt.close(fig)
        written.append(path)
    return written
