"""The one-shot engine: differentiable architecture search, with the parts a method changes.

:class:`OneShotOptimizer` builds the supernet of any :class:`~nasframe_core.space.SearchSpace`
(one alpha tensor ``[edges, ops]`` per cell type, a MixedCell per cell with the fused and
reference paths), runs the bilevel step (architecture on a validation batch, first or second
order, then weights on a train batch with gradient clipping), discretizes with the spec's
rule and answers everything the search loop asks (:class:`~nasframe_core.optimizer.MetaOptimizer`).

A method is a composition of parts (:mod:`nasframe_darts.parts`), named as class attributes:
``sampler`` (how alphas become op weights), ``edges`` (what runs per edge), ``weight_factors``
(PC-DARTS's edge normalisation), ``perturbation`` (SDARTS), ``regularizers`` (summed),
``schedules`` and ``discretizer``. Each method of the family is a short preset of them, and
:func:`compose` makes new ones (DrNAS on PC-DARTS's partial channels,
β-DARTS's regularizer beside FairDARTS's). The methods below ask the parts; a subclass may still
override any of them:

========================================  ==============================================
:meth:`sample_op_weights`                 the sampler's op weights of a forward, times the
                                          ``weight_factors``
:meth:`expected_op_weights`               the deterministic weights that discretization and
                                          the reports read
:meth:`build_cell_factory`                the ``edges`` part's cells
:meth:`regularizer`                       the sum of the ``regularizers``' terms
:meth:`weight_step_weights`               the ``perturbation``'s op weights for the weight step
``aux_skip_weight``                       an auxiliary skip: added to the weight of the
                                          ``aux_skip_op`` column of every edge
:meth:`extra_arch_parameters`             the parts' extra architecture parameters
:meth:`update_schedules`                  every part's schedules from ``(epoch, self.epochs)``
:meth:`arch_step_enabled`                 whether this epoch updates the architecture
========================================  ==============================================

Settings: every key of the parts' ``defaults`` and of the class attribute ``defaults``
(merged along the class hierarchy, the class's over the parts') is a setting; values given as strings are converted to the type of the default. Random
draws come from :attr:`rng`, a seeded generator (seeded from the run's seed, never from the
global stream) checkpointed with every method's run, and schedules are recomputed from the epoch in
:meth:`new_epoch`, so a resumed search continues bit-identically.
"""
from __future__ import annotations

import logging
from typing import Any, Callable, Iterable, Optional

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules.loss import _Loss

from nasframe_core import distributed
from nasframe_core.cells import discrete_cell_factory
from nasframe_core.datasets import dataset_info
from nasframe_core.domains import NON_NEGATIVE, POSITIVE, PROBABILITY
from nasframe_core.errors import NasframeError
from nasframe_core.optimizer import MetaOptimizer
from nasframe_core.settings import coerce
from nasframe_core.space import SearchSpace

from . import bilevel, parts as P
from .bilevel import frozen
from .recipes import darts_paper
from .options import DEFAULTS as OPTION_DEFAULTS, ExecutionOptions
from .supernet import SuperNet
from .torch_names import build_optimizer, resolve_class, step_optimizer

log = logging.getLogger("nasframe.darts")

ARCH_BETAS = (0.5, 0.999)

#: the settings every one-shot optimizer has (DARTS's, then the execution options);
#: ``nesterov``: Nesterov momentum for the weights (NB201's configs use it, the DARTS paper
#: does not); ``arch_betas``: the betas of an Adam architecture optimizer
BASE_DEFAULTS: dict[str, Any] = {
    "learning_rate": 0.025, "momentum": 0.9, "nesterov": False, "weight_decay": 0.0003, "grad_clip": 5.0,
    "unrolled": False, "arch_learning_rate": 0.0003, "arch_betas": list(ARCH_BETAS), "arch_weight_decay": 0.001,
    "op_optimizer": "SGD", "arch_optimizer": "Adam", "loss_criteria": "CrossEntropyLoss", **OPTION_DEFAULTS,
}


#: the parts of a method: class attribute -> ``tuple`` for a list of parts, ``object`` for one
PART_SLOTS: dict[str, type] = {"sampler": object, "edges": object, "weight_factors": tuple, "perturbation": object,
                               "regularizers": tuple, "schedules": tuple, "discretizer": object}


class RandomStreams:
    """The seeded CPU generator of a method's random draws, checkpointable.

    Seeded from ``torch.initial_seed()`` (the run's seed) plus ``offset``, so it neither
    consumes nor depends on the global stream's position; ``state_dict`` carries its state.
    """

    def __init__(self, offset: int = 0):
        self.offset = offset
        self.generator = torch.Generator()
        self.reseed()

    #: whether a checkpoint may lack it (the engine sets it: true where no part draws)
    checkpoint_optional = False

    def reseed(self) -> None:
        self.generator.manual_seed((torch.initial_seed() + 7919 * (self.offset + 1)) % (2**63))

    def state_dict(self) -> dict[str, Any]:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.generator.set_state(state["generator"])


def _setting(value: Any, default: Any, key: str) -> Any:
    """``value`` converted to the type of ``default`` when it is text (or a number for a bool)."""
    if isinstance(value, str) or (isinstance(default, bool) and not isinstance(value, bool) and value is not None):
        return coerce(value, default, key)
    if isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


class OneShotOptimizer(MetaOptimizer):
    """Differentiable search on a supernet; see the module docstring for the extension points."""

    #: this class's settings and defaults; subclasses list theirs (and changed base defaults)
    defaults: dict[str, Any] = BASE_DEFAULTS
    # the composition (see nasframe_darts.parts); DARTS: softmax over every op of every edge
    sampler: P.Sampler = P.Softmax()
    edges: P.MixedEdges = P.MixedEdges()
    weight_factors: tuple = ()
    perturbation: Optional[P.Perturbation] = None
    regularizers: tuple = ()
    schedules: tuple = ()
    discretizer: P.Discretizer = P.Discretizer()
    #: the method's name in what the run says (default: the class name)
    method_label: Optional[str] = None
    #: whether the discrete network must inherit every supernet weight by shape (where the
    #: ``edges`` part allows it)
    strict_weight_inheritance: bool = True
    #: search recipes per space (:mod:`nasframe_core.recipes`); a method on the engine has ``darts``
    search_recipes: dict[str, list] = {"*": [darts_paper()]}
    all_defaults: dict[str, Any] = dict(BASE_DEFAULTS)
    extra_settings: dict[str, Any] = dict(BASE_DEFAULTS)
    #: the domains and one-line meanings of the shared settings (see nasframe_core.domains)
    settings_domain = {"learning_rate": POSITIVE, "momentum": PROBABILITY, "weight_decay": NON_NEGATIVE,
                       "grad_clip": NON_NEGATIVE, "arch_learning_rate": NON_NEGATIVE,
                       "arch_weight_decay": NON_NEGATIVE}
    settings_help = {
        "learning_rate": "weights' learning rate (SGD), decayed by the cosine schedule to run.lr_min",
        "momentum": "weights' SGD momentum",
        "nesterov": "Nesterov momentum for the weights (NB201's and NASLib's searches use it; the DARTS paper does not)",
        "weight_decay": "weights' weight decay",
        "grad_clip": "gradient-norm clip of the weights (0: none)",
        "unrolled": "second-order (unrolled) architecture step instead of first order",
        "arch_learning_rate": "architecture weights' learning rate (Adam)",
        "arch_weight_decay": "architecture weights' weight decay",
        "op_optimizer": "torch.optim class of the weights",
        "arch_optimizer": "torch.optim class of the architecture weights (Adam)",
        "arch_betas": "Adam betas of the architecture weights (the DARTS paper's: 0.5, 0.999)",
        "loss_criteria": "torch.nn loss class",
        "device": "where the supernet runs (default: CUDA when available)",
        "fused": "fast fused cell execution (same math); false: edge by edge",
        "channels_last": "NHWC activations (auto: on the CPU)",
        "compile": "torch.compile the supernet (on CUDA with CUDA graphs)",
        "autocast": "bfloat16 autocast (changes the numbers)",
    }

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if cls.sampler.single_op and (cls.weight_factors or any(p.needs_aux_skip for p in cls.parts())):
            raise NasframeError(f"{cls.__name__}: {type(cls.sampler).__name__} runs one sampled op per edge, so "
                                f"weight factors and an auxiliary skip cannot act on its weights; drop them")
        # the class's own declarations, kept apart from what the parts bring
        cls._declared = {attr: dict(cls.__dict__.get(attr, {}))
                         for attr in ("defaults", "settings_domain", "settings_help")}
        merged: dict[str, Any] = dict(BASE_DEFAULTS)
        domains: dict[str, Any] = dict(OneShotOptimizer.settings_domain)
        helps: dict[str, str] = dict(OneShotOptimizer.settings_help)
        for part in cls.parts():
            merged.update(part.defaults)
            domains.update(part.settings_domain)
            helps.update(part.settings_help)
        for klass in reversed(cls.__mro__):  # then the classes, a subclass over its bases
            declared = klass.__dict__.get("_declared")
            if declared is not None:
                merged.update(declared["defaults"])
                domains.update(declared["settings_domain"])
                helps.update(declared["settings_help"])
        cls.all_defaults = merged
        if "extra_settings" not in cls.__dict__:
            cls.extra_settings = dict(merged)
        cls.settings_domain = domains
        cls.settings_help = helps

    @classmethod
    def parts(cls) -> list:
        """Every part of the composition, in the order their hooks run."""
        out = [cls.sampler, cls.edges, *cls.weight_factors]
        if cls.perturbation is not None:
            out.append(cls.perturbation)
        return out + [*cls.regularizers, *cls.schedules, cls.discretizer]

    @property
    def stochastic(self) -> bool:
        """Whether a part draws random numbers (every method's generator is checkpointed anyway)."""
        return any(p.draws for p in self.parts())

    def __init__(self, **settings):
        super().__init__()
        known = self.all_defaults
        unknown = sorted(set(settings) - set(known))
        if unknown:
            raise NasframeError(f"unknown {type(self).__name__} setting {unknown[0]!r}; "
                                f"settings are: {', '.join(known)}")
        values = {k: _setting(settings.get(k, d), d, k) for k, d in known.items()}
        self.aux_skip_weight = 0.0
        self.aux_skip_op = "skip_connect"
        self._aux_columns: dict[str, int] = {}
        for key, value in values.items():
            if key not in OPTION_DEFAULTS and key not in ("op_optimizer", "arch_optimizer", "loss_criteria"):
                setattr(self, key, value)
        self.op_optimizer_cls = resolve_class("op_optimizer", values["op_optimizer"], torch.optim, torch.optim.Optimizer)
        self.arch_optimizer_cls = resolve_class("arch_optimizer", values["arch_optimizer"], torch.optim,
                                                torch.optim.Optimizer)
        loss = values["loss_criteria"]
        self.loss = loss if isinstance(loss, nn.Module) else resolve_class("loss_criteria", loss, nn, _Loss,
                                                                           "CrossEntropyLoss")()
        self.options = ExecutionOptions.parse(values)
        self.device = self.options.device
        self.fused = self.options.fused
        self.channels_last = self.options.channels_last
        self.compile = self.options.compile
        self.autocast = self.options.autocast
        self._compiled = None
        self.op_optimizer: Optional[torch.optim.Optimizer] = None
        self.arch_optimizer: Optional[torch.optim.Optimizer] = None
        self.architectural_weights = nn.ParameterList()
        self.graph: Optional[SuperNet] = None
        self.scope = None
        self.num_classes = None
        self.in_channels = None
        self.epochs: Optional[int] = None
        self.steps_per_epoch: Optional[int] = None
        self.epoch = 0
        self.rng = RandomStreams()
        if self.method_label is None:
            self.method_label = type(self).__name__
        # a checkpoint without the generator (written before every method saved one) resumes
        # only where no part draws: for a method that draws it is another setup's
        self.rng.checkpoint_optional = not self.stochastic
        for part in self.parts():
            part.setup(self)
        for part in self.parts():
            part.update_schedules(self, 0)

    # ============================================================ extension points
    def sample_op_weights(self, name: str, alpha: torch.Tensor) -> torch.Tensor:
        """The op weights of one forward for cell type ``name`` (rows: edges): the sampler's,
        times the ``weight_factors``."""
        return self.apply_weight_factors(name, self.sampler.sample(self, name, alpha))

    def expected_op_weights(self, name: str, alpha: torch.Tensor) -> torch.Tensor:
        """Deterministic op weights, read by discretization and the reports: the sampler's
        expected ones, times the ``weight_factors``."""
        return self.apply_weight_factors(name, self.sampler.expected(self, name, alpha))

    def apply_weight_factors(self, name: str, w: torch.Tensor) -> torch.Tensor:
        """``w`` (a sampler's op weights of cell type ``name``) times the ``weight_factors``."""
        for factor in self.weight_factors:
            w = factor.apply(self, name, w)
        return w

    def build_cell_factory(self) -> Callable:
        """The cell factory of the supernet (what runs per edge): the ``edges`` part's."""
        return self.edges.cell_factory(self)

    def regularizer(self) -> Optional[torch.Tensor]:
        """The sum of the ``regularizers``' terms (functions of the alphas) added to the
        architecture step's loss, or ``None`` when none has one."""
        total = None
        for part in self.regularizers:
            term = part.term(self)
            if term is not None:
                total = term if total is None else total + term
        return total

    def weight_step_weights(self, x: torch.Tensor, y: torch.Tensor) -> Optional[dict[str, torch.Tensor]]:
        """Op weights (detached) for the weight step instead of the sampled ones (the
        ``perturbation``'s), or ``None``."""
        return None if self.perturbation is None else self.perturbation.weights(self, x, y)

    def extra_arch_parameters(self, specs: dict) -> dict[str, torch.Tensor]:
        """More architecture parameters by name, learned with the alphas: the parts'."""
        out: dict[str, torch.Tensor] = {}
        for part in self.parts():
            out.update(part.extra_arch_parameters(self, specs))
        return out

    def update_schedules(self, epoch: int) -> None:
        """Set every part's schedule values for ``epoch`` from ``(epoch, self.epochs)``."""
        for part in self.parts():
            part.update_schedules(self, epoch)

    def arch_step_enabled(self) -> bool:
        """Whether the current epoch updates the architecture (every part agrees)."""
        return all(part.arch_step_enabled(self) for part in self.parts())

    # ------------------------------------------------------------- schedule help
    def progress(self, epoch: int, inclusive: bool = True) -> float:
        """How far the search is at ``epoch``: 0 at the first epoch, 1 at the last
        (``inclusive``) or at ``self.epochs`` (not inclusive); 0 before :meth:`plan_search`."""
        if not self.epochs:
            return 0.0
        span = self.epochs - 1 if inclusive else self.epochs
        return min(1.0, epoch / span) if span > 0 else 1.0

    # ------------------------------------------------------------------ adapting
    def adapt_search_space(self, search_space: SearchSpace, dataset: Any, scope: Optional[Any] = None, **kwargs):
        """Build the supernet of ``search_space`` for ``dataset`` and both optimizers.

        ``scope``: the cell types that get architecture weights (a name or a list;
        ``None``: all). Other cell types mix their ops uniformly and stay fixed.
        """
        if not isinstance(search_space, SearchSpace):
            raise NasframeError(f"adapt_search_space needs a nasframe SearchSpace, got {type(search_space).__name__}")
        info = dataset_info(dataset)
        specs = search_space.cell_specs()
        if isinstance(scope, str):
            scope = [scope]
        if scope is not None:
            unknown = sorted(set(scope) - set(specs))
            if unknown:
                raise NasframeError(f"scope names cell type {unknown[0]!r}; this space has: {', '.join(specs)}")
        self.search_space = search_space
        self.dataset = info.name
        self.scope = None if scope is None else list(scope)
        self.num_classes, self.in_channels = info.num_classes, info.in_channels
        alphas = {name: self.initial_alphas(spec) for name, spec in specs.items()}
        if self.aux_skip_op_needed():
            missing = [n for n, s in specs.items() if self.aux_skip_op not in s.ops]
            if missing:
                raise NasframeError(f"{self.method_label} adds an auxiliary {self.aux_skip_op!r} but cell type "
                                    f"{missing[0]!r} has no such op; set optimizer.aux_skip_op to one of "
                                    f"{', '.join(specs[missing[0]].ops)}")
            self._aux_columns = {n: s.ops.index(self.aux_skip_op) for n, s in specs.items()}
        network = search_space.build_network(
            self.build_cell_factory(), num_classes=info.num_classes, in_channels=info.in_channels, search=True
        )
        self.graph = SuperNet(network, specs, alphas, scope=self.scope)
        for name, value in self.extra_arch_parameters(specs).items():
            self.graph.extra[name] = nn.Parameter(value)
        for part in self.parts():
            part.adapt(self, specs)
        self.graph.sampler = self._forward_op_weights
        self.architectural_weights = nn.ParameterList(list(self.graph.alphas.values()))
        self.op_optimizer = self._make_op_optimizer(self.graph.weights())
        self.arch_optimizer = self._make_arch_optimizer(self.graph.arch_parameters())

    def initial_alphas(self, spec) -> torch.Tensor:
        """``1e-3 * randn(edges, ops)`` (row by row, from the global stream, as DARTS)."""
        return torch.stack([1e-3 * torch.randn(spec.num_ops) for _ in spec.edges])

    def aux_skip_op_needed(self) -> bool:
        return any(part.needs_aux_skip for part in self.parts())

    def _forward_op_weights(self, name: str, alpha: torch.Tensor) -> torch.Tensor:
        return self._with_aux_skip(name, self.sample_op_weights(name, alpha))

    def _with_aux_skip(self, name: str, w: torch.Tensor) -> torch.Tensor:
        """``w`` with the auxiliary skip's weight added to its column (DARTS-)."""
        if self.aux_skip_weight and name in self._aux_columns:
            col = self._aux_columns[name]
            w = w + self.aux_skip_weight * F.one_hot(torch.tensor(col, device=w.device), w.shape[-1]).to(w.dtype)
        return w

    def _make_op_optimizer(self, params: Iterable[nn.Parameter]) -> torch.optim.Optimizer:
        # foreach: the same updates as the per-parameter loop, bit for bit, in fewer kernel calls
        nesterov = bool(self.nesterov) and bool(self.momentum)
        return build_optimizer(self.op_optimizer_cls, list(params), "op_optimizer", lr=self.learning_rate,
                               weight_decay=self.weight_decay, momentum=self.momentum, foreach=True,
                               **({"nesterov": True} if nesterov else {}))

    def _make_arch_optimizer(self, params: list[nn.Parameter]) -> torch.optim.Optimizer:
        if not params:  # every cell type out of scope: nothing to learn, keep a valid optimizer
            params = [nn.Parameter(torch.zeros(0))]
        return build_optimizer(self.arch_optimizer_cls, params, "arch_optimizer", lr=self.arch_learning_rate,
                               weight_decay=self.effective_arch_weight_decay(), betas=self._arch_betas())

    def effective_arch_weight_decay(self) -> float:
        """The architecture optimizer's weight decay: a part's (DrNAS's rule), else ``arch_weight_decay``."""
        for part in self.parts():
            decay = part.arch_weight_decay(self)
            if decay is not None:
                return decay
        return self.arch_weight_decay

    def _arch_betas(self) -> tuple[float, float]:
        betas = tuple(float(b) for b in self.arch_betas)
        if len(betas) != 2 or not all(0.0 <= b < 1.0 for b in betas):
            raise NasframeError(f"arch_betas must be two numbers in [0, 1), got {self.arch_betas!r}")
        return betas

    def _require_graph(self) -> SuperNet:
        if self.graph is None:
            raise NasframeError("call adapt_search_space(search_space, dataset) before using the optimizer")
        return self.graph

    def before_training(self) -> None:
        """Move the supernet and the alphas to ``self.device``; start all ranks alike."""
        graph = self._require_graph()
        graph.to(self.device)
        if self._use_channels_last():
            # mkldnn convolutions are much faster on NHWC tensors; activations follow the weights
            graph.to(memory_format=torch.channels_last)
        graph.train()
        distributed.broadcast_(list(graph.parameters()) + list(graph.buffers()))

    def _use_channels_last(self) -> bool:
        if self.channels_last == "auto":
            return self.device.type == "cpu"
        return bool(self.channels_last)

    def new_epoch(self, epoch: int) -> None:
        """Recompute the schedules for ``epoch``; log the op weights and the current genotype."""
        self._require_graph()
        self.epoch = epoch
        self.update_schedules(epoch)
        for name, w in self.discretization_weights().items():
            log.info("before epoch %d: %s op weights\n%s", epoch + 1, name, _format_matrix(w))
        log.info("before epoch %d: genotype %s", epoch + 1, self.get_genotype())

    # ---------------------------------------------------------------------- steps
    def _forward(self, x: torch.Tensor, weights: Optional[dict] = None) -> torch.Tensor:
        if self.compile and self._compiled is None:
            mode = "reduce-overhead" if self.device.type == "cuda" else "default"
            self._compiled = torch.compile(self.graph, mode=mode)
        fn = self._compiled if self._compiled is not None else self.graph
        args = (x,) if weights is None else (x, weights)
        if self.autocast:
            with torch.autocast(device_type=self.device.type, dtype=torch.bfloat16):
                return fn(*args)
        return fn(*args)

    def _graph_owned_outputs(self) -> bool:
        """Whether outputs live in CUDA-graph memory that the next replay overwrites."""
        return self.compile and self.device.type == "cuda"

    def _loss(self, x: torch.Tensor, y: torch.Tensor, weights: Optional[dict] = None):
        logits = self._forward(x, weights)
        if logits.dtype in (torch.float16, torch.bfloat16):  # autocast: the loss in float32
            logits = logits.float()
        return logits, self.loss(logits, y)

    def _same_draws(self, loss_fn: Callable) -> Callable:
        """``loss_fn`` with every call drawing the same random op weights (the generator's state
        at the start of the step is restored before each call): the unrolled step's forwards
        (train, unrolled validation, the two finite-difference points) then differentiate one
        architecture sample, so the step is the hypergradient of that sample's losses."""
        state = self.rng.generator.get_state()

        def call(x, y, weights=None):
            self.rng.generator.set_state(state)
            return loss_fn(x, y, weights)

        return call

    def finite_difference_scale(self) -> float:
        """eps = scale / ||v|| in the unrolled step's Hessian-vector term."""
        return bilevel.FD_SCALE

    def step(self, data_train, data_val):
        """One step: architecture on ``data_val`` (plus :meth:`regularizer`), then weights on
        ``data_train`` (with :meth:`weight_step_weights` when given).

        In second order, ``logits_val``/``loss_val`` are those of the unrolled weights w',
        the objective of the architecture step.
        """
        graph = self._require_graph()
        graphs_on_gpu = self._graph_owned_outputs()
        if graphs_on_gpu and hasattr(torch.compiler, "cudagraph_mark_step_begin"):
            torch.compiler.cudagraph_mark_step_begin()  # a new iteration: earlier graph outputs may be reused
        x_train, y_train = (t.to(self.device, non_blocking=True) for t in data_train)
        x_val, y_val = (t.to(self.device, non_blocking=True) for t in data_val)
        alphas = graph.arch_parameters()
        weights = [p for p in graph.weights() if p.requires_grad]

        # architecture step: only alpha gradients are computed (weights are frozen meanwhile)
        if alphas and self.arch_step_enabled():
            if self.unrolled:
                logits_val, loss_val, grads = bilevel.unrolled_alpha_grads(
                    self._same_draws(self._loss), self.op_optimizer, x_train, y_train, x_val, y_val, weights, alphas,
                    self.finite_difference_scale(), graphs_on_gpu)
            else:
                with frozen(weights):
                    logits_val, loss_val = self._loss(x_val, y_val)
                    grads = torch.autograd.grad(loss_val, alphas)
            if graphs_on_gpu:  # keep them past the weight step's graph replay
                logits_val, loss_val = logits_val.detach().clone(), loss_val.detach().clone()
            reg = self.regularizer()
            if reg is not None:
                extra = torch.autograd.grad(reg, alphas, allow_unused=True)
                grads = [g if e is None else g + e for g, e in zip(grads, extra)]
            distributed.all_reduce_mean_(grads)
            for a, g in zip(alphas, grads):
                a.grad = g
            step_optimizer(self.arch_optimizer, "arch_optimizer")
        else:
            with torch.no_grad():
                logits_val, loss_val = self._loss(x_val, y_val)

        # weight step: only weight gradients
        override = self.weight_step_weights(x_train, y_train)
        if override is not None and self.aux_skip_weight:  # a perturbed weight step keeps the auxiliary skip
            override = {n: self._with_aux_skip(n, w) for n, w in override.items()}
        with frozen(alphas):
            logits_train, loss_train = self._loss(x_train, y_train, override)
            grads = torch.autograd.grad(loss_train, weights, allow_unused=True)
        distributed.all_reduce_mean_(grads)
        for w, g in zip(weights, grads):
            w.grad = g
        if self.grad_clip:
            nn.utils.clip_grad_norm_(weights, self.grad_clip)
        step_optimizer(self.op_optimizer, "op_optimizer")
        return logits_train.detach(), logits_val.detach(), loss_train.detach(), loss_val.detach()

    def current_lr(self) -> float:
        return float(self.op_optimizer.param_groups[0]["lr"])

    # ------------------------------------------------------------------- results
    def discretization_weights(self) -> dict[str, torch.Tensor]:
        """The :meth:`expected_op_weights` of every cell type (uniform outside the scope)."""
        graph = self._require_graph()
        with torch.no_grad():
            return {name: self.expected_op_weights(name, graph.alphas[name]) if name in graph.alphas
                    else F.softmax(graph.alpha(name), dim=-1) for name in graph.cell_types}

    def get_genotype(self):
        """The genotype of the current alphas (no network is built)."""
        graph = self._require_graph()
        weights = self.discretization_weights()
        choices = {name: self.discretizer.choices(self, spec, weights[name]) for name, spec in graph.specs.items()}
        return self.search_space.make_genotype(choices)

    def get_final_architecture(self) -> nn.Module:
        """The discretized network, inheriting the supernet's weights; ``.genotype`` names it."""
        graph = self._require_graph()
        genotype = self.get_genotype()
        choices = self.search_space.genotype_choices(genotype)
        network = self.search_space.build_network(
            discrete_cell_factory(choices), num_classes=self.num_classes, in_channels=self.in_channels, search=True
        )
        source = graph.network.state_dict()
        target = network.state_dict()
        missing = [k for k in target if k not in source or source[k].shape != target[k].shape]
        if missing and self.strict_weight_inheritance and self.edges.inherits_weights(self):
            raise RuntimeError(f"discrete network does not match the supernet at {missing[:3]}")
        network.load_state_dict({k: source[k] if k not in missing else target[k] for k in target})
        network.genotype = genotype
        return network.to(self.device)

    def get_op_optimizer(self) -> type:
        return self.op_optimizer_cls

    def get_checkpointables(self) -> dict[str, Any]:
        graph = self._require_graph()
        out = {
            "model": graph,
            "arch_weights": self.architectural_weights,
            "op_optimizer": self.op_optimizer,
            "arch_optimizer": self.arch_optimizer,
            "random_streams": self.rng,  # every method's: a part that draws needs no flag to resume exactly
        }
        return out

    def get_model_size(self) -> float:
        graph = self._require_graph()
        return sum(p.numel() for p in graph.weights()) / 1e6

    def test_statistics(self) -> Optional[float]:
        """The benchmark test accuracy of the current genotype; ``None`` (said once, with why, on
        the ``nasframe.darts`` logger) when there is no number to look up."""
        if self.graph is None or self.search_space is None:
            self._say_no_statistics("adapt_search_space(search_space, dataset) has not been called yet")
            return None
        value = self.search_space.test_statistics(self.get_genotype(), self.dataset)
        if value is None:
            self._say_no_statistics(self.search_space.no_statistics_reason(getattr(self.dataset, "name", self.dataset)))
        return value

    def _say_no_statistics(self, reason: Optional[str]) -> None:
        said = self.__dict__.setdefault("_said_no_statistics", set())
        if reason and reason not in said:  # each reason once, not at every epoch
            said.add(reason)
            log.warning("test_statistics() is None: %s", reason)

    def softmax_json(self) -> dict[str, list]:
        """The op weights that discretization reads (softmax for DARTS), as lists."""
        return {name: w.cpu().tolist() for name, w in self.discretization_weights().items()}

    # ------------------------------------------------- the search loop's questions
    def plan_search(self, epochs: int, steps_per_epoch: int) -> None:
        super().plan_search(epochs, steps_per_epoch)
        self.update_schedules(self.epoch)

    def start_notes(self, epochs: int) -> list[str]:
        """Lines to say before the first epoch of an ``epochs``-epoch search: the parts' (an
        architecture that a warm-up longer than the run keeps frozen)."""
        return [line for part in self.parts() for line in part.start_notes(self, epochs)]

    def scheduled_optimizers(self) -> list[torch.optim.Optimizer]:
        """The weight optimizer: its learning rate follows the run's cosine schedule."""
        self._require_graph()
        return [self.op_optimizer]

    def evaluation_network(self) -> nn.Module:
        return self._require_graph()

    def epoch_report(self) -> dict[str, Any]:
        return {"alphas": self.softmax_json()}

    def result_report(self) -> dict[str, Any]:
        graph = self._require_graph()
        out = {
            "alphas": [w.detach().cpu().tolist() for w in self.architectural_weights],
            "alpha_names": list(graph.alphas.keys()),
            "alphas_softmax": self.softmax_json(),
        }
        if len(graph.extra):
            out["extra_arch_parameters"] = {k: v.detach().cpu().tolist() for k, v in graph.extra.items()}
        return out


def compose(name: str, base: Optional[type] = None, *, defaults: Optional[dict] = None, doc: str = "",
            **parts: Any) -> type:
    """A new method class: ``base`` (the engine by default) with the named parts replaced
    (``sampler=``, ``edges=``, ``weight_factors=``, ``perturbation=``, ``regularizers=``,
    ``schedules=``, ``discretizer=``) and ``defaults`` changed. ``regularizers`` and the other
    tuples replace the base's: pass ``base.regularizers + (BetaDecay(),)`` to add one."""
    import sys

    base = base or OneShotOptimizer
    unknown = sorted(set(parts) - set(PART_SLOTS))
    if unknown:
        raise NasframeError(f"compose() got {unknown[0]!r}; the parts are: {', '.join(PART_SLOTS)}")
    body: dict[str, Any] = {}
    for slot, value in parts.items():
        if PART_SLOTS[slot] is tuple:
            value = (value,) if isinstance(value, P.Part) else tuple(value)
            items = value
        else:
            items = () if value is None and slot == "perturbation" else (value,)
        for item in items:
            if not isinstance(item, P.Part):
                what = f"the class {item.__name__}" if isinstance(item, type) else f"a {type(item).__name__}"
                raise NasframeError(f"compose() {slot}= needs part instances (e.g. BetaDecay()), got {what}")
        body[slot] = value
    body["defaults"] = dict(defaults or {})
    body["method_label"] = name
    body["__doc__"] = doc or f"{name}: {base.__name__} with " + ", ".join(f"{k}={v!r}" for k, v in parts.items())
    body["__module__"] = sys._getframe(1).f_globals.get("__name__", __name__)  # where it is made, for pickle
    body["__qualname__"] = name
    return type(name, (base,), body)


def _format_matrix(w: torch.Tensor) -> str:
    return "\n".join("  " + " ".join(f"{v:.4f}" for v in row) for row in w.detach().cpu().tolist())
