"""DARTS's discretization rule, read from each cell type's spec.

Per intermediate node: score every incoming edge by its strongest allowed op (the ops of
the spec minus ``exclude_from_choice``), keep the ``keep_edges`` best edges (all of them when
``None``), strongest first, and give each kept edge its strongest allowed op. Ties go to
the lower op index and to the earlier edge, as in the original code (first maximum, stable
sort). NB201 keeps every edge and may choose 'none'; the DARTS space keeps two edges per
node and never chooses 'none'.
"""
from __future__ import annotations

from typing import Sequence

import torch

from nasframe_core.space import CellSpec, Choice


def discretize_cell(spec: CellSpec, weights: torch.Tensor | Sequence[Sequence[float]]) -> list[Choice]:
    """The kept edges and ops of one cell type, from its (softmaxed) weights ``[edges, ops]``."""
    rows = weights.detach().cpu().tolist() if isinstance(weights, torch.Tensor) else [list(r) for r in weights]
    allowed = [k for k, op in enumerate(spec.ops) if op not in spec.exclude_from_choice]
    choices: list[Choice] = []
    for node in spec.nodes:
        scored = []
        for edge in spec.in_edges[node]:
            row = rows[spec.edge_index[edge]]
            best = allowed[0]
            for k in allowed[1:]:
                if row[k] > row[best]:
                    best = k
            scored.append((row[best], edge, best))
        if spec.keep_edges is not None:
            scored = sorted(scored, key=lambda s: -s[0])[: spec.keep_edges]
        choices.extend(Choice(edge[0], edge[1], spec.ops[k]) for _, edge, k in scored)
    return choices
