"""Options of the DARTS step that change how, not what, it computes (and bf16, which does)."""
from __future__ import annotations

import pytest
import torch

from nasframe_core.data import DatasetInfo
from nasframe_core.errors import NasframeError
from nasframe_darts import DARTSOptimizer
from nasframe_spaces import NasBench201SearchSpace

INFO = DatasetInfo("tiny", 10, 3, 8)


def _run(steps=3, **settings):
    torch.manual_seed(0)
    opt = DARTSOptimizer(device="cpu", **settings)
    opt.adapt_search_space(NasBench201SearchSpace(C=4, N=1), INFO)
    opt.before_training()
    g = torch.Generator().manual_seed(1)
    losses = []
    for _ in range(steps):
        x = torch.randn(8, 3, 8, 8, generator=g)
        y = torch.randint(0, 10, (8,), generator=g)
        losses.append(float(opt.step((x, y), (x, y))[2]))
    return losses, [a.detach().clone() for a in opt.graph.arch_parameters()]


def test_bf16_autocast_is_off_by_default_and_close_when_on():
    base, alphas = _run()
    assert DARTSOptimizer().autocast is False
    bf16, alphas16 = _run(autocast="true")
    assert all(torch.isfinite(torch.tensor(bf16)))
    assert bf16 != base  # it does change the numbers, which is why it is opt-in
    assert bf16 == pytest.approx(base, rel=0.05)


def test_flags_reject_nonsense():
    with pytest.raises(NasframeError, match="'compile' must be true or false"):
        DARTSOptimizer(compile="sometimes")
    with pytest.raises(NasframeError, match="channels_last must be auto, true or false"):
        DARTSOptimizer(channels_last="maybe")


@pytest.mark.slow
def test_compiled_step_equals_eager():
    """torch.compile (CUDA graphs on a GPU) computes the same steps as eager execution."""
    eager, a_eager = _run()
    compiled, a_comp = _run(compile=True)
    assert compiled == pytest.approx(eager, rel=1e-5)
    for x, y in zip(a_comp, a_eager):
        assert torch.allclose(x, y, atol=1e-6)


def test_bf16_autocast_runs_the_darts_space_step():
    """bf16 autocast on the DARTS space (grouped 1x1 and depthwise convolutions) steps to finite
    losses, first and second order."""
    from nasframe_spaces import DartsSearchSpace

    for unrolled in (False, True):
        torch.manual_seed(0)
        opt = DARTSOptimizer(device="cpu", autocast="true", unrolled=unrolled)
        opt.adapt_search_space(DartsSearchSpace(C=8, layers=3), INFO)
        opt.before_training()
        g = torch.Generator().manual_seed(1)
        x = torch.randn(4, 3, 8, 8, generator=g)
        y = torch.randint(0, 10, (4,), generator=g)
        loss_train, loss_val = opt.step((x, y), (x, y))[2:]
        assert torch.isfinite(loss_train) and torch.isfinite(loss_val)
