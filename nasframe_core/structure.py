"""What a discrete cell computes: the nodes that always output zero and those computed for nothing.

Reads only a :class:`~nasframe_core.space.CellSpec` and a genotype's kept edges
(:meth:`~nasframe_core.space.SearchSpace.genotype_choices`), so it imports no torch.
"""
from __future__ import annotations

from typing import Any, Sequence


def cell_structure(spec: Any, choices: Sequence[Any], zero_ops: Sequence[str]) -> dict[str, list[int]]:
    """Dead nodes (no live input) and nodes that reach no output, in the discrete cell.

    Edges whose op is one of ``zero_ops`` are dropped; a node fed by no live node always outputs
    zero (``dead``), a live node from which no output node is reached is ``unused``, and
    ``output_dead`` lists the output nodes that are dead.
    """
    live_edges = [(c.src, c.dst) for c in choices if c.op not in zero_ops]
    live = set(spec.inputs)
    for n in spec.nodes:  # topological order
        if any(src in live for src, dst in live_edges if dst == n):
            live.add(n)
    reaches = set(spec.output)
    for n in reversed(spec.nodes):
        if any(dst in reaches for src, dst in live_edges if src == n):
            reaches.add(n)
    dead = [n for n in spec.nodes if n not in live]
    unused = [n for n in spec.nodes if n in live and n not in reaches]
    return {"dead": dead, "unused": unused, "output_dead": [n for n in spec.output if n not in live]}
