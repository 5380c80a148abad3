"""The parts a one-shot method is composed of.

A method on the engine (:class:`~nasframe_darts.engine.OneShotOptimizer`) is a composition:

==================  ==========================================================================
``sampler``         how alphas become op weights: a forward's (:meth:`Sampler.sample`) and the
                    deterministic ones that discretization and the reports read
                    (:meth:`Sampler.expected`)
``edges``           what runs per edge: every op fused (:class:`MixedEdges`), the sampled op
                    (:class:`SampledEdges`), a fraction of the channels (:class:`PartialEdges`)
``weight_factors``  factors on each edge's op weights (PC-DARTS's edge normalisation)
``perturbation``    the op weights of the weight step, perturbed (SDARTS), or ``None``
``regularizers``    loss terms of the architecture step, summed
``schedules``       what changes with the epoch and is not one of the above (a warm-up without
                    architecture steps, DARTS-'s auxiliary skip)
``discretizer``     how the op weights become the genotype
==================  ==========================================================================

Each part declares its settings (``defaults``, ``settings_domain``, ``settings_help``; they
become the method's settings) and keeps its state on the optimizer (``opt.tau``,
``opt.beta_weight``), which the checkpoint and the schedules' recomputation from the epoch
cover. Every random draw comes from ``opt.rng.generator``, the optimizer's seeded generator,
which is checkpointed for every method. Parts are small stateless objects: compose a new
method with :func:`nasframe_darts.compose` or by naming parts as class attributes of a subclass.
"""
from __future__ import annotations

import math
from typing import Any, Optional

import torch
import torch.nn.functional as F
from torch.distributions import Dirichlet as _DirichletDist, kl_divergence

from nasframe_core.domains import COUNT, NON_NEGATIVE, POSITIVE, PROBABILITY, one_of
from nasframe_core.errors import NasframeError
from nasframe_core.space import Choice

from .bilevel import frozen
from .discretize import discretize_cell
from .progressive import masked
from .samplers import (dirichlet_concentration, dirichlet_rsample, hard_gumbel_softmax, project_rows_to_simplex,
                       uniform)


class Part:
    """One piece of a method. Every hook has a neutral default."""

    #: this part's settings and their defaults (they become the method's settings)
    defaults: dict[str, Any] = {}
    settings_domain: dict[str, Any] = {}
    settings_help: dict[str, str] = {}
    #: whether the part draws random numbers (from ``opt.rng.generator``)
    draws: bool = False
    #: whether the part adds an auxiliary skip to the ``aux_skip_op`` column of every edge
    needs_aux_skip: bool = False

    def setup(self, opt) -> None:
        """Check the settings (on ``opt``) once they are set; initial state."""

    def adapt(self, opt, specs: dict) -> None:
        """After the supernet is built (``opt.graph``)."""

    def extra_arch_parameters(self, opt, specs: dict) -> dict[str, torch.Tensor]:
        """More architecture parameters by name, learned with the alphas."""
        return {}

    def update_schedules(self, opt, epoch: int) -> None:
        """Schedule values for ``epoch``, from ``(epoch, opt.epochs)`` only (so a resume recomputes them)."""

    def arch_step_enabled(self, opt) -> bool:
        """Whether the current epoch (``opt.epoch``) updates the architecture."""
        return True

    def arch_weight_decay(self, opt) -> Optional[float]:
        """The architecture optimizer's weight decay, when this part decides it."""
        return None

    def start_notes(self, opt, epochs: int) -> list[str]:
        """Lines to say before the first epoch of an ``epochs``-epoch search."""
        return []

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


def zero_columns(opt, name: str) -> list[int]:
    """The columns of the space's zero ops (``none``) in cell type ``name``, when the method
    leaves them out (``opt.none_op`` false); else none."""
    if getattr(opt, "none_op", True):
        return []
    spec = opt._require_graph().specs[name]
    zero = getattr(opt.search_space, "zero_ops", ("none",))
    return [k for k, op in enumerate(spec.ops) if op in zero]


# ==================================================================== samplers
class Sampler(Part):
    """Softmax over each edge's ops (DARTS)."""

    #: whether the weights of an edge sum to one (a perturbation projects back on the simplex)
    simplex: bool = True
    #: whether a forward runs one sampled op per edge (the edges must be :class:`SampledEdges`)
    single_op: bool = False

    def sample(self, opt, name: str, alpha: torch.Tensor) -> torch.Tensor:
        return F.softmax(alpha, dim=-1)

    def expected(self, opt, name: str, alpha: torch.Tensor) -> torch.Tensor:
        return F.softmax(alpha, dim=-1)

    def project(self, opt, name: str, weights: torch.Tensor) -> torch.Tensor:
        """Perturbed weights brought back to what this sampler gives: onto the simplex (rows
        sum to one), or into [0, 1] for independent weights."""
        return project_rows_to_simplex(weights) if self.simplex else weights.clamp(0, 1)


Softmax = Sampler


class Sigmoid(Sampler):
    """FairDARTS's independent ``sigmoid(alpha)`` per op; with ``none_op`` off the space's zero
    ops weigh 0 (the official op set has no ``none``)."""

    simplex = False
    defaults = {"none_op": False}
    settings_help = {"none_op": "keep the none op among the candidates (the official FairDARTS has none)"}

    def sample(self, opt, name, alpha):
        keep = torch.ones(alpha.shape[-1], dtype=alpha.dtype, device=alpha.device)
        keep[zero_columns(opt, name)] = 0
        return torch.sigmoid(alpha) * keep

    expected = sample


class HardGumbel(Sampler):
    """GDAS's hard Gumbel-softmax (straight-through), ``tau`` annealed linearly from ``tau_max``
    (first epoch) to ``tau_min`` (last epoch); expected weights: the softmax. First order only:
    the unrolled step's finite differences need one fixed architecture."""

    draws = True
    single_op = True
    defaults = {"tau_max": 10.0, "tau_min": 0.1}
    settings_domain = {"tau_max": POSITIVE, "tau_min": POSITIVE}
    settings_help = {"tau_max": "Gumbel-softmax temperature at the first epoch",
                     "tau_min": "temperature at the last epoch (annealed linearly)"}

    def setup(self, opt):
        if opt.unrolled:
            raise NasframeError(f"{opt.method_label} is first order (each forward samples a new architecture); "
                                "set optimizer.unrolled=false")

    def update_schedules(self, opt, epoch):
        opt.tau = opt.tau_max - (opt.tau_max - opt.tau_min) * opt.progress(epoch)

    def sample(self, opt, name, alpha):
        return hard_gumbel_softmax(alpha, opt.tau, opt.rng.generator)


class Dirichlet(Sampler):
    """DrNAS's op weights: a pathwise Dirichlet sample of ``elu(alpha) + 1`` per edge; expected:
    the Dirichlet mean. ``opt.masks`` (cell type -> boolean ``[edges, ops]`` or ``None``) leaves
    ops out (the zero ops with ``none_op`` off; pruned ops): a Dirichlet over the rest."""

    draws = True
    defaults = {"none_op": True}
    settings_help = {"none_op": "keep the none op among the candidates"}

    def setup(self, opt):
        opt.masks = {}

    def adapt(self, opt, specs):
        zero = getattr(opt.search_space, "zero_ops", ("none",))
        opt.masks = {}
        for name, alpha in opt.graph.alphas.items():
            ops = specs[name].ops
            if opt.none_op or not any(op in zero for op in ops):
                opt.masks[name] = None
            else:
                opt.masks[name] = torch.tensor([op not in zero for op in ops]).expand(alpha.shape).clone()

    @staticmethod
    def _mask(opt, name, like):
        mask = getattr(opt, "masks", {}).get(name)
        return None if mask is None else mask.to(like.device)

    def sample(self, opt, name, alpha):
        w = dirichlet_rsample(dirichlet_concentration(alpha), opt.rng.generator)
        return masked(w, self._mask(opt, name, w))

    def expected(self, opt, name, alpha):
        c = dirichlet_concentration(alpha)
        return masked(c / c.sum(dim=-1, keepdim=True), self._mask(opt, name, c))

    def project(self, opt, name, weights):
        return masked(super().project(opt, name, weights), self._mask(opt, name, weights))  # masked ops stay at 0


# ======================================================================= edges
class MixedEdges(Part):
    """Every op of every edge, weighted and summed; the fused path unless ``fused=false``."""

    def cell_factory(self, opt):
        from .mixed import mixed_cell_factory

        opt._whole_edges = True
        return mixed_cell_factory(opt.fused)

    def inherits_weights(self, opt) -> bool:
        """Whether the discrete network takes every supernet weight by shape."""
        return getattr(opt, "_whole_edges", True)


class SampledEdges(MixedEdges):
    """Only the sampled op of each edge runs (needs a ``single_op`` sampler's weights)."""

    defaults = {"unsampled_weights": True}
    settings_help = {"unsampled_weights": "add the unsampled ops' straight-through weights, as xautodl's cell does"}

    def cell_factory(self, opt):
        from .sampled import sampled_cell_factory

        opt._whole_edges = True
        return sampled_cell_factory(opt.fused, unsampled_weights=opt.unsampled_weights)


class PartialEdges(MixedEdges):
    """PC-DARTS's partial channel connections (:mod:`nasframe_darts.partial`): the ops of every
    edge on 1/k of the channels, the rest bypassing them, a channel shuffle.

    ``setting``: the name of the method's k setting (``k`` for PC-DARTS, ``partial_channels``
    for DrNAS); the live value is ``opt.k`` (a progressive scheme widens it). ``whole_is_mixed``:
    k = 1 runs the ordinary mixed edges (fused) unless a progressive scheme
    (``opt.progressive_k`` with several stages) will widen the edges later.
    """

    def __init__(self, setting: str = "k", default: int = 4, whole_is_mixed: bool = False):
        self.setting, self.whole_is_mixed = setting, whole_is_mixed
        self.defaults = {setting: default}
        self.settings_domain = {setting: COUNT}
        self.settings_help = {setting: "edges run on 1/k of the channels (1: all of them)"}

    def setup(self, opt):
        opt.k = int(getattr(opt, self.setting))

    def cell_factory(self, opt):
        from .partial import partial_cell_factory

        widens = len(getattr(opt, "progressive_k", ()) or ()) > 1
        if self.whole_is_mixed and opt.k <= 1 and not widens:
            return super().cell_factory(opt)
        opt._whole_edges = False
        return partial_cell_factory(opt.search_space, opt.k)

    def __repr__(self):
        return f"PartialEdges({self.setting!r})"


# ================================================================ edge weights
class EdgeNormalisation(Part):
    """PC-DARTS's edge normalisation: every node weights its incoming edges by a softmax over
    their betas, folded into the op weights (row ``j`` times ``beta_j``), in the forward and in
    discretization."""

    def extra_arch_parameters(self, opt, specs):
        scoped = specs if opt.scope is None else [n for n in specs if n in opt.scope]
        opt._node_rows = {
            name: [[specs[name].edge_index[e] for e in specs[name].in_edges[n]] for n in specs[name].nodes]
            for name in scoped
        }
        return {f"betas_{name}": 1e-3 * torch.randn(specs[name].num_edges) for name in scoped}

    def edge_weights(self, opt, name: str) -> torch.Tensor:
        """The betas of cell type ``name`` softmaxed over the incoming edges of every node."""
        betas = opt._require_graph().extra[f"betas_{name}"]
        out = torch.empty_like(betas)
        parts, rows = [], []
        for node_rows in opt._node_rows[name]:
            parts.append(F.softmax(betas[node_rows], dim=0))
            rows.extend(node_rows)
        return out.index_copy(0, torch.tensor(rows, device=betas.device), torch.cat(parts))

    def apply(self, opt, name: str, weights: torch.Tensor) -> torch.Tensor:
        return weights * self.edge_weights(opt, name).unsqueeze(-1)


# ================================================================ perturbation
class Perturbation(Part):
    """SDARTS's perturbed op weights for the weight step: the sampler's expected weights plus
    ``U(-eps, eps)`` (``attack=random``, SDARTS-RS) or after ``attack_steps`` of L-inf PGD on the
    train loss (``attack=adversarial``, SDARTS-ADV: step ``2 eps / attack_steps``, random start,
    kept only if it raises the loss, the supernet in eval mode as the official
    ``Linf_PGD_alpha``), projected back (on the simplex for a softmax-like sampler, else clamped
    to [0, 1]). ``eps`` rises linearly from ``epsilon_min`` to ``epsilon_max`` (``epoch / epochs``)."""

    draws = True
    defaults = {"attack": "random", "epsilon_min": 0.03, "epsilon_max": 0.3, "attack_steps": 7}
    settings_domain = {"attack": one_of("random", "adversarial"), "epsilon_min": NON_NEGATIVE,
                       "epsilon_max": NON_NEGATIVE, "attack_steps": COUNT}
    settings_help = {"attack": "perturbation: random (SDARTS-RS) or adversarial (SDARTS-ADV, PGD)",
                     "epsilon_min": "perturbation size at epoch 0",
                     "epsilon_max": "perturbation size it rises to by the last epoch",
                     "attack_steps": "PGD steps of the adversarial attack"}

    def setup(self, opt):
        if opt.attack not in ("random", "adversarial"):
            raise NasframeError(f"attack must be random or adversarial, got {opt.attack!r}")

    def update_schedules(self, opt, epoch):
        opt.epsilon = opt.epsilon_min + (opt.epsilon_max - opt.epsilon_min) * opt.progress(epoch, inclusive=False)

    def weights(self, opt, x, y) -> dict[str, torch.Tensor]:
        """The perturbed op weights of every cell type: the sampler's expected weights moved and
        projected back by the sampler, then times the method's ``weight_factors``."""
        graph = opt._require_graph()
        scoped = list(graph.alphas)
        with torch.no_grad():
            clean = {n: F.softmax(graph.alpha(n), dim=-1) for n in graph.cell_types}  # outside the scope: uniform
            clean.update({n: opt.sampler.expected(opt, n, graph.alphas[n]) for n in scoped})
        eps = opt.epsilon
        with torch.no_grad():
            noisy = dict(clean)
            for n in scoped:
                noise = uniform(clean[n].shape, -eps, eps, opt.rng.generator).to(clean[n].device, clean[n].dtype)
                noisy[n] = opt.sampler.project(opt, n, clean[n] + noise)
        if opt.attack == "random" or not scoped:
            return self._factored(opt, noisy, scoped)
        training = graph.training
        graph.eval()
        try:
            return self._factored(opt, self._pgd(opt, x, y, clean, dict(noisy), scoped, eps), scoped)
        finally:
            graph.train(training)

    @staticmethod
    def _factored(opt, weights, scoped, grad: bool = False):
        """The method's ``weight_factors`` on the perturbed weights of the scoped cell types
        (``grad``: differentiable in the weights, for the attack's steps; else detached)."""
        if not opt.weight_factors:
            return weights
        with torch.set_grad_enabled(grad):
            return {**weights, **{n: opt.apply_weight_factors(n, weights[n]) for n in scoped}}

    def _pgd(self, opt, x, y, clean, current, scoped, eps):
        step = 2 * eps / opt.attack_steps
        loss = lambda w: opt._loss(x, y, self._factored(opt, w, scoped, grad=True))[1]  # noqa: E731
        with frozen(list(opt.graph.parameters())):
            with torch.no_grad():
                loss_before = loss(clean)
            for _ in range(opt.attack_steps):
                leaves = {n: current[n].detach().requires_grad_(True) for n in scoped}
                grads = torch.autograd.grad(loss({**current, **leaves}), [leaves[n] for n in scoped])
                with torch.no_grad():
                    for n, g in zip(scoped, grads):
                        moved = leaves[n] + step * g.sign()
                        current[n] = opt.sampler.project(opt, n, clean[n] + (moved - clean[n]).clamp(-eps, eps))
            with torch.no_grad():
                loss_after = loss(current)
        return current if float(loss_after) >= float(loss_before) else clean


# ================================================================ regularizers
class Regularizer(Part):
    """A loss term of the architecture step; the terms of a method's regularizers are summed."""

    def term(self, opt) -> Optional[torch.Tensor]:
        return None


class ZeroOneLoss(Regularizer):
    """FairDARTS's ``-zero_one_weight * mean((sigmoid(alpha) - 0.5)^2)`` over every alpha (the
    zero ops' left out with ``none_op`` off), pushing the sigmoid weights to 0 or 1."""

    defaults = {"zero_one_weight": 10.0}
    settings_domain = {"zero_one_weight": NON_NEGATIVE}
    settings_help = {"zero_one_weight": "weight of the zero-one loss pushing sigmoid weights to 0 or 1"}

    def term(self, opt):
        graph = opt._require_graph()
        if not graph.alphas or not opt.zero_one_weight:
            return None
        parts = []
        for name, a in graph.alphas.items():
            keep = [k for k in range(a.shape[-1]) if k not in zero_columns(opt, name)]
            parts.append(torch.sigmoid(a[:, keep]).reshape(-1))
        s = torch.cat(parts)
        return -opt.zero_one_weight * ((s - 0.5) ** 2).mean()


class BetaDecay(Regularizer):
    """β-DARTS's ``lambda * mean_edges(logsumexp(alpha_edge))``; ``lambda`` rises linearly,
    ``beta_weight_start + (beta_weight_end - beta_weight_start) * epoch / beta_weight_epochs``
    (capped at the end value)."""

    defaults = {"beta_weight_start": 0.0, "beta_weight_end": 50.0, "beta_weight_epochs": 100}
    settings_domain = {"beta_weight_start": NON_NEGATIVE, "beta_weight_end": NON_NEGATIVE,
                       "beta_weight_epochs": COUNT}
    settings_help = {"beta_weight_start": "weight of the beta regularizer at epoch 0",
                     "beta_weight_end": "weight it rises to (linearly)",
                     "beta_weight_epochs": "epochs over which it rises"}

    def update_schedules(self, opt, epoch):
        frac = min(1.0, epoch / opt.beta_weight_epochs) if opt.beta_weight_epochs > 0 else 1.0
        opt.beta_weight = opt.beta_weight_start + (opt.beta_weight_end - opt.beta_weight_start) * frac

    def term(self, opt):
        alphas = list(opt._require_graph().alphas.values())
        if not alphas or not opt.beta_weight:
            return None
        smooth_max = torch.cat([torch.logsumexp(a, dim=-1).reshape(-1) for a in alphas])
        return opt.beta_weight * smooth_max.mean()


class DirichletRegularizer(Regularizer):
    """DrNAS's regularizer, as the official code: ``reg_type=l2`` (the default) is the
    architecture optimizer's weight decay ``reg_scale`` (no loss term); ``reg_type=kl`` adds
    ``reg_scale * sum KL(Dir(elu(alpha) + 1) || Dir(prior_concentration))`` with architecture
    weight decay 0. ``arch_weight_decay`` ``auto`` follows that rule; a number overrides it."""

    defaults = {"arch_weight_decay": "auto", "reg_type": "l2", "reg_scale": 0.001, "prior_concentration": 1.0}
    settings_domain = {"reg_type": one_of("kl", "l2"), "reg_scale": NON_NEGATIVE, "prior_concentration": POSITIVE}
    settings_help = {"reg_type": "regularizer: l2 (Adam's weight decay on the concentrations, the official default) or kl",
                     "reg_scale": "weight of the regularizer",
                     "prior_concentration": "concentration of the Dirichlet prior",
                     "arch_weight_decay": "the concentrations' weight decay (auto: reg_scale for l2, 0 for kl)"}

    def setup(self, opt):
        if opt.reg_type not in ("kl", "l2"):
            raise NasframeError(f"reg_type must be kl or l2, got {opt.reg_type!r}")
        if str(opt.arch_weight_decay).strip().lower() != "auto":
            try:
                opt.arch_weight_decay = float(opt.arch_weight_decay)
            except ValueError:
                raise NasframeError(f"arch_weight_decay must be auto or a number, got {opt.arch_weight_decay!r}") from None

    def arch_weight_decay(self, opt):
        if isinstance(opt.arch_weight_decay, str):  # auto: the official rule
            return float(opt.reg_scale) if opt.reg_type == "l2" else 0.0
        return float(opt.arch_weight_decay)

    def term(self, opt):
        if opt.reg_type != "kl":  # l2 is the architecture optimizer's weight decay
            return None
        terms = []
        for alpha in opt._require_graph().alphas.values():
            c = dirichlet_concentration(alpha)
            prior = torch.full_like(c, opt.prior_concentration)
            terms.append(kl_divergence(_DirichletDist(c), _DirichletDist(prior)).sum())
        return opt.reg_scale * sum(terms) if terms else None


# =================================================================== schedules
class ArchWarmup(Part):
    """No architecture step in the first ``warmup_epochs`` epochs (PC-DARTS's warm-up)."""

    defaults = {"warmup_epochs": 15}
    settings_domain = {"warmup_epochs": NON_NEGATIVE}
    settings_help = {"warmup_epochs": "epochs at the start in which the architecture is not updated"}

    def arch_step_enabled(self, opt):
        return opt.epoch >= opt.warmup_epochs

    def start_notes(self, opt, epochs):
        if epochs > opt.warmup_epochs:
            return []
        return [f"the architecture is frozen for the whole run: {opt.method_label} updates it only after "
                f"optimizer.warmup_epochs={opt.warmup_epochs} epochs of weight training, and this run has "
                f"{epochs}; the found cell is its random start. Search longer than {opt.warmup_epochs} epochs "
                f"or lower optimizer.warmup_epochs"]


class AuxiliarySkip(Part):
    """DARTS-'s auxiliary skip: ``beta`` added to the weight of every edge's ``aux_skip_op``
    column, decaying from ``aux_skip_start`` (first epoch) to 0 (last epoch), ``linear`` (the
    paper's) or ``cosine``. Discretization reads the alphas alone."""

    needs_aux_skip = True
    defaults = {"aux_skip_start": 1.0, "aux_skip_decay": "linear", "aux_skip_op": "skip_connect"}
    settings_domain = {"aux_skip_start": NON_NEGATIVE, "aux_skip_decay": one_of("linear", "cosine")}
    settings_help = {"aux_skip_start": "weight of the auxiliary skip at the first epoch (decays to 0)",
                     "aux_skip_decay": "decay of that weight: linear or cosine",
                     "aux_skip_op": "the candidate op that serves as the auxiliary skip"}

    def setup(self, opt):
        if opt.aux_skip_decay not in ("linear", "cosine"):
            raise NasframeError(f"aux_skip_decay must be linear or cosine, got {opt.aux_skip_decay!r}")

    def update_schedules(self, opt, epoch):
        p = opt.progress(epoch)
        factor = 1.0 - p if opt.aux_skip_decay == "linear" else 0.5 * (1.0 + math.cos(math.pi * p))
        opt.aux_skip_weight = opt.aux_skip_start * factor


# ================================================================ discretizers
class Discretizer(Part):
    """The space's rule on the expected op weights (DARTS's parse)."""

    def choices(self, opt, spec, weights: torch.Tensor) -> list:
        return discretize_cell(spec, weights)


class ThresholdParse(Discretizer):
    """FairDARTS's ``threshold_sparse`` parse: the edges DARTS keeps, and a kept edge whose
    strongest weight is under ``threshold`` becomes the space's zero op (``threshold=0``: the
    DARTS parse). The threshold is on independent (sigmoid) weights: beside a softmax sampler,
    whose weights are at most 1/ops on an undecided edge, 0.85 drops nearly every edge."""

    defaults = {"threshold": 0.85}
    settings_domain = {"threshold": PROBABILITY}
    settings_help = {"threshold": "an op is kept at discretization where its sigmoid weight is above this"}

    def choices(self, opt, spec, weights):
        zero = getattr(opt.search_space, "zero_ops", ("none",))
        absent = next((op for op in spec.ops if op in zero), None)
        kept = []
        for c in discretize_cell(spec, weights):
            strongest = float(weights[spec.edge_index[(c.src, c.dst)], spec.ops.index(c.op)])
            if opt.threshold and absent is not None and strongest < opt.threshold:
                c = Choice(c.src, c.dst, absent)  # dropped: the edge carries nothing
            kept.append(c)
        return kept
