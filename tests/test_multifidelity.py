"""REINFORCE against a reference written from NB201's script (torch autograd on the same policy),
and the multi-fidelity optimizers: rungs, promotions, brackets, and the driver's incumbent."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from nasframe_core.evaluation import Evaluation, Proposal
from nasframe_spaces.nasbench201.codec import EDGES, OPS
from nasframe_spaces.nasbench201.space import NasBench201SearchSpace


def _evaluation(genotype, valid, fidelity=None, index=0):
    return Evaluation(genotype, valid, 1.0, None, fidelity=fidelity, index=index)


def _reinforce(**settings):
    from nasframe_blackbox.reinforce import Reinforce

    opt = Reinforce(evaluations=50, **settings)
    opt.adapt_search_space(NasBench201SearchSpace(), "cifar10")
    opt.start(3)
    return opt


def test_reinforce_steps_as_nb201s_script_with_torch():
    """xautodl's reinforce.py: theta (6 x 5), softmax policy, Categorical log-prob of the sampled
    ops, EMA baseline (bias-corrected) updated before the advantage, Adam on -log p * advantage."""
    opt = _reinforce(learning_rate=0.5, ema_momentum=0.9)
    theta = torch.nn.Parameter(torch.tensor(opt.theta))
    adam = torch.optim.Adam([theta], lr=0.5)
    num = den = 0.0
    rng = np.random.default_rng(11)
    for step in range(6):
        genotype = opt.next_proposal()
        actions = [OPS.index(op) for op in genotype.ops]
        reward = float(rng.uniform(40, 90))
        opt.tell(_evaluation(genotype, reward))
        # the reference: the script's update written with torch
        num, den = 0.9 * num + 0.1 * reward, 0.9 * den + 0.1
        log_prob = torch.distributions.Categorical(torch.softmax(theta, -1)).log_prob(torch.tensor(actions))
        loss = (-log_prob * (reward - num / den)).sum()
        adam.zero_grad()
        loss.backward()
        adam.step()
        np.testing.assert_allclose(opt.theta, theta.detach().numpy(), rtol=1e-6, atol=1e-9)
    assert len(EDGES) == opt.theta.shape[0] and len(OPS) == opt.theta.shape[1]


def test_reinforce_refuses_a_space_that_keeps_some_edges():
    from nasframe_blackbox.reinforce import Reinforce
    from nasframe_core.errors import NasframeError
    from nasframe_spaces.darts.space import DartsSearchSpace

    with pytest.raises(NasframeError, match="keeps only 2 inputs per node"):
        Reinforce().adapt_search_space(DartsSearchSpace(), "cifar10")


def _mf(name, fidelities=(12, 200), **settings):
    from nasframe_blackbox.multifidelity import ASHA, Hyperband, SuccessiveHalving

    cls = {"sh": SuccessiveHalving, "hyperband": Hyperband, "asha": ASHA}[name]
    opt = cls(evaluations=1000, **settings)
    opt.adapt_search_space(NasBench201SearchSpace(), "cifar10")
    opt.fidelities, opt.default_fidelity = tuple(fidelities), max(fidelities) if fidelities else 9
    opt.start(5)
    return opt


def _score(genotype) -> float:
    return float(sum(OPS.index(op) * (k + 1) for k, op in enumerate(genotype.ops)))


def test_successive_halving_promotes_the_best_third_of_a_complete_rung():
    opt = _mf("sh", fidelities=(), eta=3, min_fidelity=1, max_fidelity=9, train_epochs=9)
    assert opt.rungs == [1, 3, 9]
    first = [opt.next_proposal() for _ in range(9)]
    assert all(isinstance(p, Proposal) and p.fidelity == 1 for p in first)
    assert opt.next_proposal() is None  # the rung is out: wait for it
    for p in first:
        opt.tell(_evaluation(p.genotype, _score(p.genotype), 1))
    second = [opt.next_proposal() for _ in range(3)]
    best = sorted(first, key=lambda p: -_score(p.genotype))[:3]
    assert [p.genotype for p in second] == [p.genotype for p in best] and {p.fidelity for p in second} == {3}
    for p in second:
        opt.tell(_evaluation(p.genotype, _score(p.genotype), 3))
    top = opt.next_proposal()
    assert top.fidelity == 9 and top.genotype == best[0].genotype
    opt.tell(_evaluation(top.genotype, 1.0, 9))
    assert opt.next_proposal().fidelity == 1  # the next bracket


def test_hyperband_brackets_follow_li_et_al():
    """Li et al. 2018, Alg. 1 with R = 9, eta = 3 (s_max = 2): brackets of 9 cells at r = 1,
    5 at r = 3 and 3 at r = 9, in that order, then again."""
    opt = _mf("hyperband", fidelities=(), eta=3, min_fidelity=1, max_fidelity=9)
    assert [opt._bracket_shape(b) for b in range(4)] == [(9, 0), (5, 1), (3, 2), (9, 0)]


def test_asha_promotes_a_top_third_cell_as_soon_as_a_worker_is_free():
    opt = _mf("asha", eta=3)  # the table's 12 and 200 epochs
    assert opt.rungs == [12, 200]
    asked = [opt.next_proposal() for _ in range(2)]
    for p in asked:
        opt.tell(_evaluation(p.genotype, _score(p.genotype), 12))
    assert opt.next_proposal().fidelity == 12  # two results: a third of them is none yet
    third = opt.next_proposal()
    opt.tell(_evaluation(third.genotype, 1e6, 12))  # the best of three
    promoted = opt.next_proposal()
    assert promoted == Proposal(third.genotype, 200)
    assert opt.next_proposal().fidelity == 12  # promoted once only


@pytest.mark.parametrize("name", ["sh", "hyperband", "asha"])
def test_multi_fidelity_runs_on_the_table_and_charges_every_rung(tmp_path, nb201_csv, name):
    import json

    from nasframe_core.cli import main

    out = tmp_path / name
    assert main(["run", "--optimizer", name, "--benchmark", str(nb201_csv), "--dataset", "cifar10",
                 "--set", "optimizer.time_budget=60000", "--set", "run.protocol=per-dataset",
                 "--executor", "simulated", "--workers", "3", "--quiet", "--out", str(out)]) == 0
    result = json.loads((out / "result.json").read_text())
    fidelities = {e["fidelity"] for e in result["history"]}
    assert fidelities == {12, 200}
    assert result["spent_seconds"] == pytest.approx(sum(e["cost"] for e in result["history"]))
    # the incumbent is the best at 200 epochs, never a 12-epoch score
    at_200 = [e for e in result["history"] if e["fidelity"] == 200]
    assert result["best_valid_accuracy"] == max(e["valid_accuracy"] for e in at_200)
    journal = [json.loads(line) for line in (out / "journal.jsonl").read_text().splitlines()]
    assert {e["fidelity"] for e in journal if "ask" in e} == {12, 200}
