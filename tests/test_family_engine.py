"""The one-shot engine: bit-identical resume of every schedule, settings, spaces, extension."""
from __future__ import annotations

import importlib
import io
from pathlib import Path

import pytest
import torch

from nasframe_core import NasframeError, make_plugin_manager
from nasframe_core.checkpoint import restore, state_of
from nasframe_core.data import DatasetInfo
from nasframe_core.settings import factory_settings
from nasframe_darts import FAMILY, OneShotOptimizer
from nasframe_spaces.darts.space import DartsSearchSpace
from nasframe_spaces.nasbench201.space import NasBench201SearchSpace

TOY = DatasetInfo("toy", num_classes=4, in_channels=3, image_size=8)
EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "nasframe-toy-space"
METHODS = [n for n in FAMILY if n != "darts"]
# settings that make every schedule move within a three-epoch search
SHORT = {"pc_darts": {"warmup_epochs": 1}, "beta_darts": {"beta_weight_epochs": 2},
         "sdarts": {"attack": "adversarial", "attack_steps": 2}}


def batches(n, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [((torch.randn(4, 3, 8, 8, generator=g), torch.randint(0, 4, (4,), generator=g)),
             (torch.randn(4, 3, 8, 8, generator=g), torch.randint(0, 4, (4,), generator=g))) for _ in range(n)]


def build(name, space=None, seed=0, **settings):
    torch.manual_seed(seed)
    opt = FAMILY[name][0](device="cpu", **{**SHORT.get(name, {}), **settings})
    opt.adapt_search_space(space or NasBench201SearchSpace(C=4, N=1), TOY)
    opt.plan_search(3, 2)
    opt.before_training()
    return opt


def run_epochs(opt, epochs, data):
    for epoch in epochs:
        opt.new_epoch(epoch)
        for train, val in data[2 * epoch: 2 * epoch + 2]:
            opt.step(train, val)


def snapshot(opt) -> dict:
    buf = io.BytesIO()
    torch.save(state_of(opt.get_checkpointables()), buf)
    buf.seek(0)
    return torch.load(buf, weights_only=False)


def fingerprint(opt) -> list[torch.Tensor]:
    return [t.detach().clone() for t in list(opt.graph.parameters()) + list(opt.graph.buffers())]


SCHEDULES = {"gdas": "tau", "darts_minus": "aux_skip_weight", "beta_darts": "beta_weight", "sdarts": "epsilon"}


@pytest.mark.parametrize("name", list(FAMILY))
def test_resume_is_bit_identical_for_every_method_and_schedule(name):
    data = batches(6)
    whole = build(name)
    run_epochs(whole, [0], data)
    saved = snapshot(whole)
    run_epochs(whole, [1, 2], data)

    resumed = build(name, seed=123)  # other initial weights: everything must come from the checkpoint
    restore(resumed.get_checkpointables(), saved, Path("ckpt"))
    run_epochs(resumed, [1, 2], data)
    for a, b in zip(fingerprint(whole), fingerprint(resumed)):
        assert torch.isfinite(a).all() and torch.equal(a, b)
    if name in SCHEDULES:
        assert getattr(resumed, SCHEDULES[name]) == getattr(whole, SCHEDULES[name])
        fresh = build(name)
        assert getattr(fresh, SCHEDULES[name]) != getattr(whole, SCHEDULES[name])  # the schedule moved
    if whole.stochastic:  # the draws continue from the checkpoint, not from the seed
        assert not torch.equal(whole.rng.generator.get_state(), build(name).rng.generator.get_state())
        assert torch.equal(whole.rng.generator.get_state(), resumed.rng.generator.get_state())


def test_stochastic_methods_draw_from_their_own_seeded_stream():
    a, b = build("gdas", seed=5), build("gdas", seed=5)
    torch.manual_seed(99)  # the global stream's position does not matter
    wa = a.graph.op_weights()["cell"]
    torch.randn(1000)
    wb = b.graph.op_weights()["cell"]
    assert wa.sampled_index == wb.sampled_index and torch.equal(wa, wb)
    assert build("gdas", seed=6).rng.generator.initial_seed() != a.rng.generator.initial_seed()


def test_every_method_is_registered_with_its_settings():
    pm = make_plugin_manager()
    registered = {}
    pm.hook.nasframe_register_optimizers(register=lambda name, factory, **kw: registered.setdefault(name, factory))
    for name, (cls, _) in FAMILY.items():
        # registered by import path ("module:Class"), so that listing the plugins imports no torch
        module, _, attr = registered[name].partition(":")
        assert getattr(importlib.import_module(module), attr) is cls
        settings = factory_settings(cls)
        assert {"learning_rate", "arch_learning_rate", "unrolled", "fused", "device"} <= set(settings)
    assert factory_settings(FAMILY["gdas"][0])["tau_max"] == 10.0
    assert factory_settings(FAMILY["pc_darts"][0])["learning_rate"] == 0.1
    assert factory_settings(FAMILY["pc_darts"][0])["k"] == 4


def test_settings_given_as_text_are_parsed():
    from nasframe_darts import DARTSOptimizer, GDASOptimizer, SDARTSOptimizer

    assert DARTSOptimizer(fused="false").fused is False and DARTSOptimizer(fused="true").fused is True
    opt = GDASOptimizer(tau_max="5", tau_min="0.5", unrolled="no", fused="0")
    assert (opt.tau_max, opt.tau_min, opt.unrolled, opt.fused) == (5.0, 0.5, False, False)
    with pytest.raises(NasframeError, match="'tau_max' must be a number"):
        GDASOptimizer(tau_max="hot")
    with pytest.raises(NasframeError) as info:
        GDASOptimizer(temperature=1.0)
    assert "'temperature'" in str(info.value) and "tau_max" in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(NasframeError, match="GDAS is first order.*unrolled=false"):
        GDASOptimizer(unrolled="true")
    with pytest.raises(NasframeError, match="attack must be random or adversarial"):
        SDARTSOptimizer(attack="pgd")


def test_op_optimizer_is_an_instance_and_get_op_optimizer_the_class():
    opt = build("gdas")
    assert isinstance(opt.op_optimizer, torch.optim.SGD) and opt.get_op_optimizer() is torch.optim.SGD
    assert isinstance(opt.arch_optimizer, torch.optim.Adam)
    assert FAMILY["darts"][0]().op_optimizer is None  # nothing to optimize before the supernet exists


@pytest.fixture
def toy(monkeypatch):
    monkeypatch.syspath_prepend(str(EXAMPLE))
    import nasframe_toy_space

    return nasframe_toy_space


@pytest.mark.parametrize("name", METHODS)
def test_every_method_searches_the_darts_space_and_a_third_party_space(name, toy):
    data = batches(1)
    for space in (DartsSearchSpace(C=4, layers=3), toy.ToySearchSpace(C=4)):
        opt = build(name, space=space, **({"k": 2} if name == "pc_darts" else {}))
        opt.new_epoch(1)
        _, _, loss_train, loss_val = opt.step(*data[0])
        assert torch.isfinite(loss_train) and torch.isfinite(loss_val)
        final = opt.get_final_architecture()
        assert final.genotype == opt.get_genotype()
        assert final(data[0][0][0]).shape == (4, 4)


def test_a_method_of_a_few_lines_on_the_engine():
    class TemperedDARTS(OneShotOptimizer):
        """Softmax at a temperature that halves every epoch."""

        defaults = {"temperature": 1.0}

        def update_schedules(self, epoch):
            self.current = self.temperature / 2**epoch

        def sample_op_weights(self, name, alpha):
            return torch.softmax(alpha / self.current, dim=-1)

    torch.manual_seed(0)
    opt = TemperedDARTS(device="cpu", temperature="4")
    assert factory_settings(TemperedDARTS)["temperature"] == 1.0
    opt.adapt_search_space(NasBench201SearchSpace(C=4, N=1), TOY)
    opt.plan_search(3, 1)
    opt.before_training()
    opt.new_epoch(2)
    alpha = opt.graph.alphas["cell"]
    torch.testing.assert_close(opt.graph.op_weights()["cell"], torch.softmax(alpha / 1.0, -1))
    opt.step(*batches(1)[0])
    assert opt.get_genotype() is not None


@pytest.mark.parametrize("name", METHODS)
def test_every_method_reports_the_benchmark_accuracy_each_epoch(name, tmp_path, table, nb201_csv):
    import json

    from nasframe_core.cli import main
    from nasframe_spaces.nasbench201.codec import NB201Genotype

    out = tmp_path / name
    extra = ["--set", "optimizer.warmup_epochs=0"] if name == "pc_darts" else []
    assert main(["run", "--optimizer", name, "--dataset", "synthetic", "--set", "dataset.n_train=32",
                 "--set", "dataset.n_test=8", "--set", "dataset.image_size=8", "--set", "search_space.C=4",
                 "--set", "search_space.N=1", "--batch-size", "8", "--device", "cpu", "--quiet", *extra,
                 "--epochs", "2", "--steps-per-epoch", "1", "--benchmark", str(nb201_csv),
                 "--set", "search_space.table_dataset=cifar10", "--out", str(out)]) == 0
    lines = [json.loads(l) for l in (out / "metrics.jsonl").read_text().splitlines()]
    assert len(lines) == 2
    for m in lines:
        expected = table.query(NB201Genotype.from_str(m["genotype"]), "cifar10", "test_accuracy")
        assert m["test_statistics"] == pytest.approx(expected)
    result = json.loads((out / "result.json").read_text())
    assert result["optimizer"] == name and len(result["alphas"]) == 1
