"""Methods as compositions of parts: the compositions inheritance could not express, regularizers
that sum, a perturbation that follows the sampler, and every method's generator checkpointed."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from nasframe_core import NasframeError
from nasframe_core.checkpoint import restore
from nasframe_core.data import DatasetInfo
from nasframe_core.settings import factory_settings
from nasframe_darts import (BetaDARTSOptimizer, DARTSOptimizer, DrNASOptimizer, FairDARTSOptimizer, OneShotOptimizer,
                            PCDARTSOptimizer, SDARTSOptimizer, compose)
from nasframe_darts.partial import PartialMixedOp
from nasframe_darts.parts import (BetaDecay, Dirichlet, DirichletRegularizer, EdgeNormalisation, PartialEdges,
                                  Perturbation, Sampler, ZeroOneLoss)
from nasframe_spaces.nasbench201.space import NasBench201SearchSpace
from test_family_engine import batches, fingerprint as state, run_epochs, snapshot

TOY = DatasetInfo("toy", num_classes=4, in_channels=3, image_size=8)


def build(cls, seed=0, epochs=3, **settings):
    torch.manual_seed(seed)
    opt = cls(device="cpu", **settings)
    opt.adapt_search_space(NasBench201SearchSpace(C=8, N=1), TOY)
    opt.plan_search(epochs, 2)
    opt.before_training()
    return opt


# ------------------------------------------------------------------ the presets are compositions
def test_each_method_is_a_preset_of_shared_parts():
    # DrNAS's partial channels are PC-DARTS's part, not a second implementation
    assert type(DrNASOptimizer.edges) is type(PCDARTSOptimizer.edges) is PartialEdges
    assert isinstance(DrNASOptimizer.sampler, Dirichlet) and isinstance(SDARTSOptimizer.perturbation, Perturbation)
    assert [type(r) for r in BetaDARTSOptimizer.regularizers] == [BetaDecay]
    assert [type(r) for r in FairDARTSOptimizer.regularizers] == [ZeroOneLoss]
    # a part's settings are the method's settings, with their defaults, domains and meanings
    settings = factory_settings(PCDARTSOptimizer)
    assert settings["k"] == 4 and settings["warmup_epochs"] == 15 and settings["learning_rate"] == 0.1
    assert "partial_channels" in factory_settings(DrNASOptimizer) and "k" not in factory_settings(DrNASOptimizer)


def test_drnas_on_pc_darts_partial_channels_composed_from_parts_is_drnas_with_partial_channels():
    """The DrNAS paper's DARTS-space search: Dirichlet op weights on PC-DARTS's partial edges.
    Composed from the parts alone, it takes DrNAS's steps bit for bit."""
    Composed = compose("DirichletOnPartialEdges", sampler=Dirichlet(), edges=PartialEdges("partial_channels", 1),
                       regularizers=(DirichletRegularizer(),), defaults={"arch_learning_rate": 0.0003})
    data = batches(4)
    a = build(Composed, partial_channels=4, reg_type="kl")
    b = build(DrNASOptimizer, partial_channels=4, reg_type="kl")
    mixed = [m for m in a.graph.network.modules() if isinstance(m, PartialMixedOp)]
    assert mixed and all(m.k == 4 for m in mixed)
    run_epochs(a, [0, 1], data)
    run_epochs(b, [0, 1], data)
    for x, y in zip(state(a), state(b)):
        assert torch.equal(x, y)
    assert str(a.get_genotype()) == str(b.get_genotype())


def test_drnas_with_pc_darts_edge_normalisation_learns_the_betas_and_scales_its_dirichlet_samples():
    """PC-DARTS's whole partial-channel scheme (1/k channels and edge normalisation) under DrNAS's
    Dirichlet sampler: a composition the class hierarchy could not express."""
    Composed = compose("DrNASPC", base=DrNASOptimizer, weight_factors=(EdgeNormalisation(),))
    opt = build(Composed, partial_channels=2)
    assert any(isinstance(m, PartialMixedOp) and m.k == 2 for m in opt.graph.network.modules())
    betas = opt.graph.extra["betas_cell"]
    assert any(p is betas for p in opt.graph.arch_parameters())
    scale = opt.weight_factors[0].edge_weights(opt, "cell")
    with torch.no_grad():
        w = opt.sample_op_weights("cell", opt.graph.alphas["cell"])
        mean = opt.expected_op_weights("cell", opt.graph.alphas["cell"])
    torch.testing.assert_close(w.sum(-1), scale)  # a Dirichlet sample per row (sums to 1), times beta_j
    c = F.elu(opt.graph.alphas["cell"].detach()) + 1
    torch.testing.assert_close(mean, c / c.sum(-1, keepdim=True) * scale.unsqueeze(-1))
    before = betas.detach().clone()
    run_epochs(opt, [0], batches(2))
    assert not torch.equal(before, opt.graph.extra["betas_cell"].detach())  # the architecture step moved them


def test_beta_decay_beside_fair_darts_zero_one_loss_sums_both_terms():
    FairBeta = compose("FairBetaDARTS", base=FairDARTSOptimizer,
                       regularizers=FairDARTSOptimizer.regularizers + (BetaDecay(),))
    assert {"zero_one_weight", "threshold", "beta_weight_end"} <= set(factory_settings(FairBeta))
    opt = build(FairBeta, beta_weight_start=2.0, zero_one_weight=3.0)
    with torch.no_grad():
        opt.graph.alphas["cell"].copy_(torch.randn(opt.graph.alphas["cell"].shape, generator=torch.Generator().manual_seed(1)))
    a = opt.graph.alphas["cell"]
    keep = [k for k, op in enumerate(opt.graph.specs["cell"].ops) if op != "none"]  # FairDARTS has no none
    zero_one = -3.0 * ((torch.sigmoid(a[:, keep]) - 0.5) ** 2).mean()
    beta = 2.0 * torch.logsumexp(a, dim=-1).mean()
    torch.testing.assert_close(opt.regularizer(), zero_one + beta)
    # each alone is what the single-regularizer methods give
    fair = build(FairDARTSOptimizer, zero_one_weight=3.0)
    with torch.no_grad():
        fair.graph.alphas["cell"].copy_(a.detach())
    torch.testing.assert_close(fair.regularizer(), zero_one)
    # and the architecture step follows both gradients
    grads = torch.autograd.grad(opt.regularizer(), [a])[0]
    expected = torch.autograd.grad(zero_one + beta, [a])[0]
    torch.testing.assert_close(grads, expected)


def test_the_perturbation_acts_on_the_sampler_s_weights_not_on_a_softmax():
    FairSmooth = compose("FairSDARTS", base=FairDARTSOptimizer, perturbation=Perturbation())
    opt = build(FairSmooth, epsilon_min=0.1, epsilon_max=0.1)
    x, y = batches(1)[0][0]
    clean = opt.discretization_weights()["cell"]  # sigmoid weights, the zero op at 0
    noisy = opt.weight_step_weights(x, y)["cell"]
    assert (noisy - clean).abs().max() <= 0.1 + 1e-6 and not torch.equal(noisy, clean)
    assert noisy.min() >= 0 and noisy.max() <= 1
    # not projected on the simplex: sigmoid rows do not sum to one
    assert not torch.allclose(noisy.sum(-1), torch.ones(noisy.shape[0]))
    # SDARTS itself (softmax sampler) still projects on the simplex
    sd = build(SDARTSOptimizer)
    torch.testing.assert_close(sd.weight_step_weights(x, y)["cell"].sum(-1), torch.ones(noisy.shape[0]))


def test_compose_refuses_an_unknown_part():
    with pytest.raises(NasframeError, match="compose\\(\\) got 'sampler_'.*the parts are: sampler, edges"):
        compose("X", sampler_=Sampler())


# ------------------------------------------------------------- the generator, always checkpointed
class NoisySoftmax(Sampler):
    """A third party's sampler that draws from the optimizer's generator, and declares nothing."""

    def sample(self, opt, name, alpha):
        noise = torch.empty(alpha.shape).normal_(generator=opt.rng.generator)
        return F.softmax(alpha + 0.5 * noise.to(alpha.dtype), dim=-1)


class NoisyDARTS(OneShotOptimizer):
    sampler = NoisySoftmax()


def test_a_method_that_draws_random_numbers_resumes_exactly_without_any_flag():
    data = batches(6)
    whole = build(NoisyDARTS)
    run_epochs(whole, [0], data)
    saved = snapshot(whole)
    assert "random_streams" in saved
    run_epochs(whole, [1, 2], data)
    resumed = build(NoisyDARTS, seed=7)  # other initial weights and another seeded stream
    restore(resumed.get_checkpointables(), saved, Path("ckpt"))
    run_epochs(resumed, [1, 2], data)
    for a, b in zip(state(whole), state(resumed)):
        assert torch.equal(a, b)


def test_a_checkpoint_written_without_the_generator_still_resumes():
    opt = build(DARTSOptimizer)
    saved = snapshot(opt)
    del saved["random_streams"]  # as a DARTS checkpoint of the previous release
    resumed = build(DARTSOptimizer, seed=3)
    restore(resumed.get_checkpointables(), saved, Path("ckpt"))
    for a, b in zip(state(opt), state(resumed)):
        assert torch.equal(a, b)
    del saved["model"]
    with pytest.raises(NasframeError, match="lacks 'model'"):
        restore(resumed.get_checkpointables(), saved, Path("ckpt"))


# ------------------------------------------------------------- parts that meet in a composition
def test_a_perturbed_weight_step_keeps_edge_normalisation_masks_and_the_auxiliary_skip():
    from nasframe_darts import DARTSMinusOptimizer

    pc = build(compose("SmoothPC", base=PCDARTSOptimizer, perturbation=Perturbation()), k=1)
    x, y = batches(1)[0][0]
    scale = pc.edge_weights("cell")
    torch.testing.assert_close(pc.weight_step_weights(x, y)["cell"].sum(-1), scale)  # rows sum to beta_j, not 1
    adversarial = build(compose("AdversarialPC", base=PCDARTSOptimizer, perturbation=Perturbation()), k=1,
                        attack="adversarial", attack_steps=2)
    w = adversarial.weight_step_weights(x, y)["cell"]  # the attack differentiates through the betas
    assert not w.requires_grad
    torch.testing.assert_close(w.sum(-1), adversarial.edge_weights("cell").detach())

    dr = build(compose("SmoothDrNAS", base=DrNASOptimizer, perturbation=Perturbation()), none_op=False)
    none = dr.graph.specs["cell"].ops.index("none")
    assert torch.all(dr.weight_step_weights(x, y)["cell"][:, none] == 0)  # a masked op stays out

    minus = build(compose("SmoothMinus", base=DARTSMinusOptimizer, perturbation=Perturbation()))
    seen = []
    original = minus._loss
    minus._loss = lambda x, y, weights=None: (seen.append(weights), original(x, y, weights))[1]
    minus.step(*batches(1)[0])
    skip = minus.graph.specs["cell"].ops.index("skip_connect")
    weight_step = seen[-1]["cell"]
    assert minus.aux_skip_weight == 1.0 and bool((weight_step[:, skip] >= 1.0).all())  # beta added to the skip


def test_compositions_that_cannot_work_are_refused_and_the_arguments_checked():
    from nasframe_darts import GDASOptimizer

    with pytest.raises(NasframeError, match="runs one sampled op per edge.*weight factors"):
        compose("GumbelPC", base=GDASOptimizer, weight_factors=(EdgeNormalisation(),))
    with pytest.raises(NasframeError, match="needs part instances.*the class BetaDecay"):
        compose("X", regularizers=(BetaDecay,))
    one = compose("OneTerm", regularizers=BetaDecay())  # a single part for a list of them
    assert [type(r) for r in one.regularizers] == [BetaDecay] and one.method_label == "OneTerm"
    with pytest.raises(NasframeError, match="progressive scheme prunes through the Dirichlet sampler"):
        compose("SoftProgressive", base=DrNASOptimizer, sampler=Sampler())(progressive_k=[2, 1],
                                                                         progressive_keep=[3, 2])


Pickled = compose("Pickled", base=BetaDARTSOptimizer, regularizers=(BetaDecay(), ZeroOneLoss()))


def test_a_composed_class_made_in_a_module_pickles_and_keeps_the_settings_its_bases_declare():
    import pickle

    assert pickle.loads(pickle.dumps(Pickled)) is Pickled and Pickled.__module__ == __name__
    from nasframe_core.domains import at_least, settings_domain, settings_help

    class NarrowPC(PCDARTSOptimizer):
        settings_domain = {"k": at_least(2)}
        settings_help = {"k": "the fraction of channels, at least 2 here"}

    child = compose("NarrowPCChild", base=NarrowPC)
    assert str(settings_domain(child)["k"]) == str(at_least(2))
    assert settings_help(child)["k"] == "the fraction of channels, at least 2 here"


def test_a_drawing_method_s_checkpoint_without_its_generator_is_refused():
    from nasframe_darts import GDASOptimizer

    opt = build(GDASOptimizer)
    saved = snapshot(opt)
    del saved["random_streams"]
    with pytest.raises(NasframeError, match="lacks 'random_streams'"):
        restore(build(GDASOptimizer).get_checkpointables(), saved, Path("ckpt"))
