"""DrNAS's progressive scheme against references written from its official code
(xiangning-chen/DrNAS ``utils.py`` ``prune``/``process_step_vector``, ``net2wider.py``
``InChannelWider``/``OutChannelWider``/``BNWider``/``configure_optimizer``,
``201-space/train_search_progressive.py``)."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from nasframe_core.checkpoint import restore
from nasframe_core.ops import ReLUConvBN
from nasframe_darts import DrNASOptimizer
from nasframe_darts.partial import PartialMixedOp
from nasframe_darts.progressive import move_sgd_state, prune, widen_op
from nasframe_spaces.darts.space import DartsSearchSpace
from nasframe_spaces.nasbench201.space import NasBench201SearchSpace
from test_family_engine import TOY, batches, fingerprint, run_epochs, snapshot


def official_prune(x: torch.Tensor, num_keep: int, mask):
    """utils.py prune (reset=False)."""
    x = x.clone()
    if mask is not None:
        x[~mask] -= 1000000
    src, index = x.topk(k=num_keep, dim=-1)
    new_x = torch.zeros_like(x).scatter(dim=1, index=index, src=src)
    new_mask = torch.zeros_like(x, dtype=torch.bool).scatter(dim=1, index=index, src=torch.ones_like(src, dtype=torch.bool))
    return new_x, new_mask


def test_prune_is_the_official_topk():
    g = torch.Generator().manual_seed(0)
    alpha = torch.randn(6, 5, generator=g)
    ref_x, ref_mask = official_prune(alpha, 3, None)
    got = alpha.clone()
    mask = prune(got, 3, None)
    assert torch.equal(mask, ref_mask) and torch.equal(got, ref_x)
    # a second pruning among the kept ones (the official subtracts 1e6 from the masked-out)
    ref_x2, ref_mask2 = official_prune(ref_x + torch.randn(6, 5, generator=g) * 0, 2, ref_mask)
    mask2 = prune(got, 2, mask)
    assert torch.equal(mask2, ref_mask2) and torch.equal(got, ref_x2)


def test_widening_a_relu_conv_bn_is_net2wider(float64):
    op = ReLUConvBN(4, 4, 3, 1, 1, 1, affine=True, track_running_stats=True)
    with torch.no_grad():
        op.bn.weight.copy_(torch.randn(4))
        op.bn.bias.copy_(torch.randn(4))
        op.bn.running_mean.copy_(torch.randn(4))
        op.bn.running_var.copy_(torch.rand(4) + 0.5)
    w, bw, bb = op.conv.weight.detach().clone(), op.bn.weight.detach().clone(), op.bn.bias.detach().clone()
    rm, rv = op.bn.running_mean.clone(), op.bn.running_var.clone()
    buf = torch.randn(w.shape)
    sgd = torch.optim.SGD(op.parameters(), lr=0.1, momentum=0.9)
    sgd.state[op.conv.weight]["momentum_buffer"] = buf.clone()
    old_conv = op.conv.weight

    ref_gen = torch.Generator().manual_seed(7)
    # InChannelWider, then OutChannelWider (indices: randint(0, old, (new - old,)) each), BNWider on the out index
    in_index = torch.randint(0, 4, (4,), generator=ref_gen)
    out_index = torch.randint(0, 4, (4,), generator=ref_gen)
    ref_w = torch.cat([w, w[:, in_index]], dim=1)
    ref_w = torch.cat([ref_w, ref_w[out_index]], dim=0)
    ref_buf = torch.cat([buf, buf[:, in_index]], dim=1)  # configure_optimizer: in, then out
    ref_buf = torch.cat([ref_buf, ref_buf[out_index]], dim=0)

    replaced = widen_op(op, 4, 8, torch.Generator().manual_seed(7))
    move_sgd_state(sgd, replaced, lambda: list(op.parameters()))
    assert (op.conv.in_channels, op.conv.out_channels, op.bn.num_features) == (8, 8, 8)
    torch.testing.assert_close(op.conv.weight.detach(), ref_w, rtol=0, atol=0)
    torch.testing.assert_close(op.bn.weight.detach(), torch.cat([bw, bw[out_index]]), rtol=0, atol=0)
    torch.testing.assert_close(op.bn.bias.detach(), torch.cat([bb, bb[out_index]]), rtol=0, atol=0)
    torch.testing.assert_close(op.bn.running_mean, torch.cat([rm, rm[out_index]]), rtol=0, atol=0)
    torch.testing.assert_close(op.bn.running_var, torch.cat([rv, rv[out_index]]), rtol=0, atol=0)
    assert old_conv not in sgd.state and op.conv.weight in sgd.state
    torch.testing.assert_close(sgd.state[op.conv.weight]["momentum_buffer"], ref_buf, rtol=0, atol=0)
    assert [id(p) for p in sgd.param_groups[0]["params"]] == [id(p) for p in op.parameters()]
    assert op(torch.randn(2, 8, 5, 5)).shape == (2, 8, 5, 5)


def test_widening_every_op_of_the_darts_space_runs():
    space = DartsSearchSpace(C=8, layers=3)
    g = torch.Generator().manual_seed(0)
    for name in ("max_pool_3x3", "avg_pool_3x3", "skip_connect", "sep_conv_3x3", "sep_conv_5x5", "dil_conv_3x3",
                 "dil_conv_5x5"):
        for stride in (1, 2):
            for old, new in ((4, 8), (6, 9)):  # 36 channels at k 6 -> 4 (DrNAS's DARTS-space search)
                op = space.make_op(name, old, stride, search=True)
                widen_op(op, old, new, g)
                y = op(torch.randn(2, new, 8, 8))
                assert y.shape == (2, new, 8 // stride, 8 // stride), (name, stride, old, new)


def build(seed=0, **settings):
    torch.manual_seed(seed)
    opt = DrNASOptimizer(device="cpu", progressive_k=[4, 2], progressive_keep=[5, 3], **settings)
    opt.adapt_search_space(NasBench201SearchSpace(C=8, N=1), TOY)
    opt.plan_search(4, 2)
    opt.before_training()
    return opt


def test_a_progressive_search_prunes_and_widens_half_way(float64):
    opt = build()
    mixed = [m for m in opt.graph.network.modules() if isinstance(m, PartialMixedOp)]
    assert mixed and all(m.k == 4 for m in mixed)
    conv = mixed[0].ops["nor_conv_3x3"].conv
    assert conv.in_channels == 2  # C=8 at k=4
    data = batches(8)
    run_epochs(opt, [0, 1], data)
    assert opt.stage == 0 and all(m is None for m in opt.masks.values())
    alpha_before = opt.graph.alphas["cell"].detach().clone()
    opt.new_epoch(2)  # half way: prune to 3 ops per edge, k 4 -> 2
    ref_alpha, ref_mask = official_prune(alpha_before, 3, None)
    assert opt.stage == 1 and torch.equal(opt.masks["cell"], ref_mask)
    torch.testing.assert_close(opt.graph.alphas["cell"].detach(), ref_alpha, rtol=0, atol=0)
    assert all(m.k == 2 for m in mixed) and mixed[0].ops["nor_conv_3x3"].conv.in_channels == 4
    # the op weights: a Dirichlet sample with the pruned ops 0 and the rest renormalised
    w = opt.graph.op_weights()["cell"].detach()
    assert (w[~ref_mask] == 0).all() and torch.allclose(w.sum(-1), torch.ones(6))
    mean = opt.discretization_weights()["cell"]
    c = torch.nn.functional.elu(ref_alpha) + 1
    expected = torch.where(ref_mask, c, torch.zeros_like(c))
    torch.testing.assert_close(mean, expected / expected.sum(-1, keepdim=True))
    chosen = opt.search_space.genotype_choices(opt.get_genotype())["cell"]
    ops = opt.graph.specs["cell"].ops
    for ch in chosen:
        row = opt.graph.specs["cell"].edge_index[(ch.src, ch.dst)]
        assert ref_mask[row, ops.index(ch.op)]
    run_epochs(opt, [2, 3], data)  # the widened supernet trains on
    for p in opt.graph.weights():
        assert torch.isfinite(p).all()
    assert {id(p) for p in opt.op_optimizer.param_groups[0]["params"]} == {id(p) for p in opt.graph.weights()}


def test_resume_across_the_stage_change_is_bit_identical():
    data = batches(8)
    whole = build()
    run_epochs(whole, [0, 1, 2], data)  # past the change
    saved = snapshot(whole)
    run_epochs(whole, [3], data)
    resumed = build(seed=123)
    restore(resumed.get_checkpointables(), saved, Path("ckpt"))
    assert resumed.stage == 1 and resumed.k == 2
    run_epochs(resumed, [3], data)
    for a, b in zip(fingerprint(whole), fingerprint(resumed)):
        assert torch.equal(a, b)
    assert all(torch.equal(whole.masks[n], resumed.masks[n]) for n in whole.masks)


def test_darts_space_recipe_has_no_none_and_prunes_7_to_4():
    from nasframe_darts.recipes import DRNAS

    recipe = DRNAS["darts"][0]["settings"]
    assert (recipe["optimizer.progressive_k"], recipe["optimizer.progressive_keep"]) == ([6, 4], [7, 4])
    torch.manual_seed(0)
    opt = DrNASOptimizer(device="cpu", progressive_k=[2, 1], progressive_keep=[7, 4], none_op=False)
    opt.adapt_search_space(DartsSearchSpace(C=4, layers=3), TOY)
    opt.plan_search(2, 1)
    opt.before_training()
    none = opt.graph.specs["normal"].ops.index("none")
    w = opt.graph.op_weights()["normal"].detach()
    assert (w[:, none] == 0).all() and torch.allclose(w.sum(-1), torch.ones(w.shape[0]))
    opt.new_epoch(1)
    assert (opt.masks["normal"].sum(-1) == 4).all() and not opt.masks["normal"][:, none].any()
    opt.step(batches(1)[0][0], batches(1)[0][1])


def test_bad_progressive_settings_are_one_line():
    from nasframe_core.errors import NasframeError

    with pytest.raises(NasframeError, match="one entry per stage"):
        DrNASOptimizer(progressive_k=[4, 2], progressive_keep=[5])
    with pytest.raises(NasframeError, match="only widen"):
        DrNASOptimizer(progressive_k=[2, 4], progressive_keep=[5, 3])
