"""How sure a one-shot search is: edge margins and warnings about the chosen cells.

The plugin's reporting hooks (:mod:`nasframe_darts.plugin`) call these functions. They read
plain data only: the ``alphas`` entry that one-shot optimizers return from
:meth:`~nasframe_core.optimizer.MetaOptimizer.epoch_report` (cell type -> ``[edges][ops]`` op
weights, each row summing to one), the space's :meth:`cell_specs` and the kept edges of a
genotype (:meth:`genotype_choices`), so they import no torch. What an op *means* comes from the
space: ``SearchSpace.zero_ops`` (ops whose output is zero, e.g. ``none``) and
``SearchSpace.skip_ops`` (identity-like shortcuts, e.g. ``skip_connect``).

- **Edge margin**: per edge, the weight of the strongest op minus that of the runner-up, among
  the ops the discretization may choose. It is what decides the edge's op.
- **Within noise**: a margin below :data:`NOISE_FRACTION` of the uniform weight ``1/n``. For
  small differences ``margin * n`` is the gap between the two ops' logits, so the threshold
  means: the runner-up gets more than 95% of the winner's weight. The initial weights differ
  from uniform by about 1e-3 and one optimizer step moves them by about as much, so a gap
  this small is the kind of difference the last few mini-batches decide, not the data.
- **Dead / disconnected nodes**: in the discrete cell (edges whose op is a zero op dropped), a
  node fed by no live node always outputs zero, and a node that reaches no output node is
  computed for nothing (:func:`nasframe_core.structure.cell_structure`).
- **Skip connections taking over**: at least half of a cell's kept edges (and at least two)
  are skip ops. This is the known failure of differentiable search (Zela et al., ICLR 2020; Chu et al., 2020):
  parameter-free ops win the bilevel game and the cell degenerates.
"""
from __future__ import annotations

from typing import Any, Callable, Mapping, Optional, Sequence

from nasframe_core.errors import NasframeError
from nasframe_core.structure import cell_structure

#: a margin below this fraction of the uniform weight 1/n counts as noise (see the module doc)
NOISE_FRACTION = 0.05
#: skip ops on at least this fraction of a cell's kept edges (and at least two) is a collapse
SKIP_FRACTION = 0.5


def _matching_spec(spec: Any, weights: Sequence[Sequence[float]]):
    if spec is None or not weights:
        return None
    if spec.num_edges != len(weights) or spec.num_ops != len(weights[0]):
        return None
    return spec


def choosable(spec: Any, n_ops: int) -> list[int]:
    """Indices of the ops the discretization may choose (all of them without a spec)."""
    if spec is None:
        return list(range(n_ops))
    return [k for k, op in enumerate(spec.ops) if op not in spec.exclude_from_choice]


def edge_margins(alphas: Mapping[str, Sequence[Sequence[float]]], specs: Optional[Mapping[str, Any]] = None
                 ) -> dict[str, list[float]]:
    """Cell type -> per edge, top-1 minus top-2 op weight among the choosable ops."""
    out: dict[str, list[float]] = {}
    for cell_type, weights in alphas.items():
        spec = _matching_spec((specs or {}).get(cell_type), weights)
        margins = []
        for row in weights:
            vals = sorted((float(row[k]) for k in choosable(spec, len(row))), reverse=True)
            margins.append(vals[0] - vals[1] if len(vals) > 1 else 1.0)
        out[cell_type] = margins
    return out


def noise_level(n_ops: int) -> float:
    """The margin below which an edge counts as undecided, for ``n_ops`` candidate ops."""
    return NOISE_FRACTION / n_ops


def noise_warnings(alphas: Mapping[str, Sequence[Sequence[float]]], specs: Optional[Mapping[str, Any]] = None
                   ) -> list[str]:
    lines = []
    margins = edge_margins(alphas, specs)
    for cell_type, weights in alphas.items():
        if not weights:
            continue
        n_ops = len(weights[0])
        level = noise_level(n_ops)
        spec = _matching_spec((specs or {}).get(cell_type), weights)
        low = [e for e, m in enumerate(margins[cell_type]) if m < level]
        if not low:
            continue
        if len(low) == len(weights):
            what = "every edge is"
        else:
            what = f"{len(low)} of {len(weights)} edges ({', '.join(_edge_name(spec, e) for e in low)}) are"
        lines.append(
            f"{cell_type}: {what} within noise: the two strongest ops differ by less than {level:.4f} "
            f"({NOISE_FRACTION:.0%} of the uniform weight 1/{n_ops}), so the op chosen there is a coin toss; "
            f"search longer or with a larger architecture learning rate"
        )
    return lines


def _edge_name(spec: Any, e: int) -> str:
    if spec is None:
        return f"edge {e}"
    src, dst = spec.edges[e]
    return f"{src}->{dst}"


def structure_warnings(space: Any, genotype: Any) -> list[str]:
    lines = []
    specs = space.cell_specs()
    zero_ops = tuple(getattr(space, "zero_ops", ()))
    skip_ops = tuple(getattr(space, "skip_ops", ()))
    for cell_type, choices in space.genotype_choices(genotype).items():
        spec = specs.get(cell_type)
        if spec is None:
            continue
        s = cell_structure(spec, choices, zero_ops)
        parts = []
        if len(s["output_dead"]) == len(spec.output):
            parts.append("its output is always zero (no path from an input reaches it)")
        elif s["dead"]:
            parts.append(_nodes(s["dead"], "gets", "get") + " no input (every edge into it is "
                         + "/".join(zero_ops) + " or comes from a dead node), so it is always zero")
        if s["unused"]:
            parts.append(_nodes(s["unused"], "reaches", "reach") + " no output, so computed for nothing")
        if parts:
            lines.append(f"{cell_type}: degenerate cell: " + "; ".join(parts))
        kept = [c for c in choices if c.op not in zero_ops]
        skips = [c for c in kept if c.op in skip_ops]
        if kept and len(skips) >= 2 and len(skips) >= SKIP_FRACTION * len(kept):
            lines.append(
                f"{cell_type}: skip connections take over: {len(skips)} of {len(kept)} kept edges are "
                f"{'/'.join(sorted({c.op for c in skips}))} (the known collapse of differentiable search; the cell has almost nothing "
                f"to learn); search shorter, regularise, or limit the skip connections"
            )
    return lines


def _nodes(nodes: Sequence[int], one: str = "has", many: str = "have") -> str:
    if len(nodes) == 1:
        return f"node {nodes[0]} {one}"
    return f"nodes {', '.join(map(str, nodes))} {many}"


def warnings_for(space: Any, genotype: Any, alphas: Optional[Mapping[str, Any]]) -> list[str]:
    """Every warning about a search result: noisy margins (with alphas) and the cell's structure."""
    lines = []
    if alphas:
        lines += noise_warnings(alphas, space.cell_specs())
    lines += structure_warnings(space, genotype)
    return lines


def format_margins(margins: Mapping[str, Sequence[float]], specs: Optional[Mapping[str, Any]] = None) -> list[str]:
    """One line per cell type: ``edge margin`` pairs, e.g. ``0->1 0.041``."""
    lines = []
    for cell_type, values in margins.items():
        spec = (specs or {}).get(cell_type)
        if spec is not None and spec.num_edges != len(values):
            spec = None
        shown = "  ".join(f"{_edge_name(spec, e)} {m:.4f}" for e, m in enumerate(values))
        lines.append(f"{cell_type}: {shown}")
    return lines


def result_entries(space: Any, genotype: Any, alphas: Optional[Mapping[str, Any]]) -> dict[str, Any]:
    """What ``result.json`` says about how sure the result is: ``edge_margins`` (with alphas)
    and ``warnings`` (a list of one-line texts, empty when nothing looks wrong)."""
    out: dict[str, Any] = {}
    if isinstance(alphas, Mapping) and alphas:
        out["edge_margins"] = edge_margins(alphas, space.cell_specs())
    out["warnings"] = warnings_for(space, genotype, alphas if isinstance(alphas, Mapping) else None)
    return out


def summary_lines(result: Mapping[str, Any], specs: Optional[Mapping[str, Any]] = None) -> list[str]:
    """The lines a finished search prints (and ``nasframe show`` repeats) about its margins."""
    lines = []
    margins = result.get("edge_margins")
    if margins:
        header = "edge margins (weight of the strongest op minus the runner-up's, per edge"
        n_ops = {spec.num_ops for spec in (specs or {}).values()}
        if len(n_ops) == 1:
            n = n_ops.pop()
            header += f"; uniform weight 1/{n}, noise below {noise_level(n):.4f}"
        lines.append(header + "):")
        lines += ["  " + line for line in format_margins(margins, specs)]
    lines += [f"warning: {w}" for w in result.get("warnings") or ()]
    return lines


def epoch_words(metrics: Mapping[str, Any]) -> Optional[str]:
    """The epoch line's words about the margins: the smallest of every cell type's edges."""
    margins = [v for values in (metrics.get("edge_margins") or {}).values() for v in values]
    return f"smallest edge margin {min(margins):.4f}" if margins else None


def report_lines(result: Mapping[str, Any], last_epoch: Optional[Mapping[str, Any]],
                 space: Callable[[], Any]) -> list[str]:
    """:func:`summary_lines` for a finished search or a run directory read back.

    The margins are ``result``'s, else the last epoch's; a run that stopped before writing
    ``result.json`` (``result`` empty) has its latest cell judged as a finished run's would be.
    Edges are named after the space's cells where ``space()`` builds it, numbered otherwise.
    """
    last = last_epoch or {}
    margins = result.get("edge_margins") or last.get("edge_margins")
    specs, warnings = None, result.get("warnings")
    if margins:
        try:
            built = space()
            specs = built.cell_specs()
            genotype = result.get("genotype") or last.get("genotype")
            if not result and genotype and isinstance(last.get("alphas"), dict):
                warnings = warnings_for(built, built.parse_genotype(genotype), last["alphas"])
        except (NasframeError, AttributeError):
            pass  # e.g. the space's plugin is not installed here: edges are numbered
    return summary_lines({"edge_margins": margins, "warnings": warnings}, specs)
