"""Edge margins and the warnings about a found cell (nasframe_darts.diagnostics)."""
from __future__ import annotations

import pytest

from nasframe_darts.diagnostics import edge_margins, noise_level, result_entries, warnings_for
from nasframe_core.structure import cell_structure
from nasframe_spaces.darts.genotype import DARTS_V2, DartsGenotype
from nasframe_spaces.darts.space import DartsSearchSpace
from nasframe_spaces.nasbench201.codec import NB201Genotype
from nasframe_spaces.nasbench201.space import NasBench201SearchSpace

NB201 = NasBench201SearchSpace(C=4, N=1)
# the README's old first run ended on this cell: node 1 has no input, node 2 reaches no output
DEGENERATE = NB201Genotype.from_str("|none~0|+|nor_conv_3x3~0|none~1|+|nor_conv_1x1~0|nor_conv_1x1~1|none~2|")
HEALTHY = NB201Genotype.from_str(
    "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|")
ALL_SKIP = NB201Genotype.from_str("|skip_connect~0|+|skip_connect~0|skip_connect~1|+|skip_connect~0|skip_connect~1|skip_connect~2|")


def decided(n_edges: int = 6, n_ops: int = 5, winner: int = 3, margin: float = 0.2) -> list[list[float]]:
    rest = (1.0 - (1.0 / n_ops + margin)) / (n_ops - 1)
    return [[1.0 / n_ops + margin if k == winner else rest for k in range(n_ops)] for _ in range(n_edges)]


def test_margin_is_strongest_minus_runner_up_per_edge():
    alphas = {"cell": [[0.1, 0.5, 0.4], [0.34, 0.33, 0.33]]}
    assert edge_margins(alphas) == {"cell": pytest.approx([0.1, 0.01])}


def test_margin_ignores_ops_the_discretization_cannot_choose():
    spec = DartsSearchSpace(C=4, layers=3).cell_specs()["normal"]
    row = [0.3] + [0.1] * 7  # 'none' strongest, but DARTS never chooses it
    row[4] = 0.2
    margins = edge_margins({"normal": [row] * spec.num_edges}, {"normal": spec})["normal"]
    assert margins == pytest.approx([0.1] * spec.num_edges)


def test_near_uniform_weights_warn_and_decided_ones_do_not():
    uniform = [[0.2 + (0.001 if k == e % 5 else -0.00025) for k in range(5)] for e in range(6)]
    lines = warnings_for(NB201, HEALTHY, {"cell": uniform})
    assert len(lines) == 1 and "every edge is within noise" in lines[0]
    assert warnings_for(NB201, HEALTHY, {"cell": decided()}) == []
    # one undecided edge is named
    mixed = decided()
    mixed[2] = uniform[2]
    (line,) = warnings_for(NB201, HEALTHY, {"cell": mixed})
    assert "1 of 6 edges (1->2)" in line


def test_noise_level_is_relative_to_the_uniform_weight():
    assert noise_level(5) == pytest.approx(0.01)
    assert noise_level(8) == pytest.approx(0.05 / 8)


def test_degenerate_cell_names_its_dead_and_unused_nodes():
    spec = NB201.cell_specs()["cell"]
    s = cell_structure(spec, NB201.genotype_choices(DEGENERATE)["cell"], NB201.zero_ops)
    assert s == {"dead": [1], "unused": [2], "output_dead": []}
    (line,) = warnings_for(NB201, DEGENERATE, None)
    assert "node 1 gets no input" in line and "node 2 reaches no output" in line
    assert warnings_for(NB201, HEALTHY, None) == []


def test_a_cell_whose_output_is_always_zero():
    cut = NB201Genotype.from_str("|nor_conv_3x3~0|+|nor_conv_3x3~0|none~1|+|none~0|none~1|none~2|")
    (line,) = warnings_for(NB201, cut, None)
    assert "output is always zero" in line
    # node 3's only live edge comes from node 1, which gets nothing: zero all the same
    through_dead = NB201Genotype.from_str("|none~0|+|nor_conv_3x3~0|none~1|+|none~0|skip_connect~1|none~2|")
    spec = NB201.cell_specs()["cell"]
    s = cell_structure(spec, NB201.genotype_choices(through_dead)["cell"], NB201.zero_ops)
    assert s == {"dead": [1, 3], "unused": [2], "output_dead": [3]}


def test_skip_connections_taking_over_warn():
    (line,) = warnings_for(NB201, ALL_SKIP, None)
    assert "skip connections take over" in line and "6 of 6" in line
    darts = DartsSearchSpace(C=4, layers=3)
    collapsed = DartsGenotype(
        tuple(("skip_connect", src) for src in (0, 1, 0, 1, 0, 1, 0, 1)), DARTS_V2.normal_concat,
        DARTS_V2.reduce, DARTS_V2.reduce_concat)
    lines = warnings_for(darts, collapsed, None)
    assert len(lines) == 1 and lines[0].startswith("normal: skip connections take over")
    assert warnings_for(darts, DARTS_V2, None) == []  # the paper's cell: 2 of 8 skips, all nodes used


def test_result_entries_without_alphas_still_judge_the_cell():
    entries = result_entries(NB201, DEGENERATE, None)
    assert "edge_margins" not in entries and len(entries["warnings"]) == 1
    entries = result_entries(NB201, HEALTHY, {"cell": decided()})
    assert entries["edge_margins"]["cell"] == pytest.approx([0.4 - 0.6 / 4] * 6)  # winner 0.4, others 0.15
    assert entries["warnings"] == []
