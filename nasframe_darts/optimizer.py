"""DARTS (Liu, Simonyan & Yang, ICLR 2019) with NASLib's ``DARTSOptimizer`` API."""
from __future__ import annotations

import inspect
import logging
from typing import Any, Iterable, Optional

import torch
from torch import nn
from torch.nn.modules.loss import _Loss

from nasframe_core import distributed
from nasframe_core.cells import discrete_cell_factory
from nasframe_core.data import dataset_info
from nasframe_core.errors import NasframeError
from nasframe_core.optimizer import MetaOptimizer
from nasframe_core.settings import coerce
from nasframe_core.space import SearchSpace

from .discretize import discretize_cell
from .mixed import MixedOp, mixed_cell_factory
from .supernet import SuperNet

log = logging.getLogger("nasframe.darts")

ARCH_BETAS = (0.5, 0.999)
#: the finite-difference step of the unrolled Hessian-vector term: eps = FD_SCALE / ||v||
FD_SCALE = 0.01


def _resolve(kind: str, value: Any, module: Any, base: type, example: str = "SGD") -> type:
    """A torch class from its name (``'SGD'``), or the class itself.

    Only public proper subclasses of ``base`` count: for a loss, ``'Linear'`` or ``'Module'``
    is as unknown as a misspelt name.
    """
    if isinstance(value, type):
        return value

    def usable(name: str, cls: Any) -> bool:
        return not name.startswith("_") and isinstance(cls, type) and issubclass(cls, base) and cls is not base

    if isinstance(value, str):
        cls = getattr(module, value, None)
        if usable(value, cls):
            return cls
        known = sorted(n for n, c in vars(module).items() if usable(n, c))
        raise NasframeError(f"unknown {kind} {value!r}; use a torch name: {', '.join(known)}")
    raise NasframeError(f"{kind} must be a torch class name like {example!r}, got {value!r}")


def _flag(value: Any, name: str) -> bool:
    return coerce(value, False, name)


def _build_optimizer(cls: type, params: list, kind: str, **settings) -> torch.optim.Optimizer:
    """``cls(params, ...)`` with the settings its constructor takes; a refusal is one line."""
    closure = inspect.signature(cls.step).parameters.get("closure")
    if closure is not None and closure.default is inspect.Parameter.empty:
        raise NasframeError(f"{kind} {cls.__name__} needs a closure to step; choose one such as SGD or Adam")
    kwargs = {k: v for k, v in settings.items() if k == "lr" or _accepts(cls, k)}
    try:
        return cls(params, **kwargs)
    except (TypeError, ValueError, RuntimeError) as exc:
        raise NasframeError(f"{kind} {cls.__name__} cannot optimize these parameters: {' '.join(str(exc).split())}") from None


def _step(optimizer: torch.optim.Optimizer, kind: str) -> None:
    try:
        optimizer.step()
    except RuntimeError as exc:
        if "sparse" not in str(exc).lower():
            raise
        raise NasframeError(f"{kind} {type(optimizer).__name__} cannot take these gradients: "
                            f"{' '.join(str(exc).split())}") from None


def _accepts(cls: type, name: str) -> bool:
    try:
        return name in inspect.signature(cls.__init__).parameters
    except (TypeError, ValueError):
        return False


class DARTSOptimizer(MetaOptimizer):
    """Differentiable architecture search.

    Every cell type of the space gets one architecture-weight tensor ``[edges, ops]``
    (``1e-3 * randn``), shared by all cells of that type; every edge becomes a
    :class:`~nasframe_darts.mixed.MixedOp`. One :meth:`step` updates the architecture on a
    validation batch (first order, or the paper's unrolled second-order step when
    ``unrolled``), then the weights on a train batch with gradient-norm clipping.

    Extra settings beyond NASLib's: ``device`` (default: CUDA when available),
    ``fused`` (the fast cell execution, same math; ``False`` runs edge by edge),
    ``channels_last`` (NHWC activations; ``auto``: on the CPU, where it is faster),
    ``compile`` (``torch.compile`` the supernet; on CUDA with CUDA graphs, mode
    ``reduce-overhead``) and ``autocast`` (bfloat16 autocast; off by default, it changes
    the numbers).
    """

    extra_settings = {"device": None, "fused": True, "channels_last": "auto", "compile": False, "autocast": False}

    def __init__(
        self,
        learning_rate: float = 0.025,
        momentum: float = 0.9,
        weight_decay: float = 0.0003,
        grad_clip: float = 5,
        unrolled: bool = False,
        arch_learning_rate: float = 0.0003,
        arch_weight_decay: float = 0.001,
        op_optimizer: str = "SGD",
        arch_optimizer: str = "Adam",
        loss_criteria: str = "CrossEntropyLoss",
        **kwargs,
    ):
        super().__init__()
        unknown = sorted(set(kwargs) - set(self.extra_settings))
        if unknown:
            raise NasframeError(
                f"unknown DARTSOptimizer setting {unknown[0]!r}; extra settings are: {', '.join(self.extra_settings)}"
            )
        self.learning_rate = learning_rate
        self.momentum = momentum
        self.weight_decay = weight_decay
        self.grad_clip = grad_clip
        self.unrolled = unrolled
        self.arch_learning_rate = arch_learning_rate
        self.arch_weight_decay = arch_weight_decay
        self.op_optimizer = _resolve("op_optimizer", op_optimizer, torch.optim, torch.optim.Optimizer)
        self.arch_optimizer = _resolve("arch_optimizer", arch_optimizer, torch.optim, torch.optim.Optimizer)
        if isinstance(loss_criteria, nn.Module):
            self.loss = loss_criteria
        else:
            self.loss = _resolve("loss_criteria", loss_criteria, nn, _Loss, "CrossEntropyLoss")()
        self.fused = bool(kwargs.get("fused", True))
        channels_last = kwargs.get("channels_last", "auto")
        if isinstance(channels_last, str):
            channels_last = {"true": True, "false": False, "auto": "auto"}.get(channels_last.lower(), channels_last)
        if channels_last not in ("auto", True, False):
            raise NasframeError(f"channels_last must be auto, true or false, got {channels_last!r}")
        self.channels_last = channels_last
        self.compile = _flag(kwargs.get("compile", False), "compile")
        self.autocast = _flag(kwargs.get("autocast", False), "autocast")
        self._compiled = None
        device = kwargs.get("device")
        self.device = torch.device(device if device else ("cuda" if torch.cuda.is_available() else "cpu"))
        self._op_optimizer_cls = self.op_optimizer
        self.architectural_weights = nn.ParameterList()
        self.graph: Optional[SuperNet] = None
        self.scope = None
        self.num_classes = None
        self.in_channels = None

    # ------------------------------------------------------------- NASLib statics
    @staticmethod
    def add_alphas(edge) -> None:
        """Give ``edge`` its architecture weights: ``1e-3 * randn(number of candidate ops)``.

        ``edge`` is anything with a ``data`` mapping (or attribute holder) that lists the
        candidate op names under ``ops``; the alphas are stored under ``alpha``.
        """
        data = edge.data
        ops = data["ops"] if isinstance(data, dict) else data.ops
        alpha = nn.Parameter(1e-3 * torch.randn(len(ops)))
        if isinstance(data, dict):
            data["alpha"] = alpha
        else:
            data.alpha = alpha

    @staticmethod
    def update_ops(edge) -> None:
        """Replace the candidate op names of ``edge`` by a MixedOp (``data.op``).

        The edge data must provide ``ops`` (names) and ``op_builder(name, edge)``.
        """
        data = edge.data
        get = data.get if isinstance(data, dict) else lambda k: getattr(data, k)
        op = MixedOp(get("ops"), get("op_builder"), (edge.head, edge.tail) if hasattr(edge, "head") else (0, 0))
        if isinstance(data, dict):
            data["op"] = op
        else:
            data.op = op

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

        class _Edge:
            def __init__(self, spec):
                self.data = {"ops": spec.ops}

        alphas = {}
        for name, spec in specs.items():
            rows = []
            for _ in spec.edges:
                e = _Edge(spec)
                self.add_alphas(e)
                rows.append(e.data["alpha"].data)
            alphas[name] = torch.stack(rows)
        network = search_space.build_network(
            mixed_cell_factory(self.fused), num_classes=info.num_classes, in_channels=info.in_channels, search=True
        )
        self.graph = SuperNet(network, specs, alphas, scope=self.scope)
        self.architectural_weights = nn.ParameterList(self.graph.arch_parameters())
        self.op_optimizer = self._make_op_optimizer(self.graph.weights())
        self.arch_optimizer = self._make_arch_optimizer(self.graph.arch_parameters())

    def _make_op_optimizer(self, params: Iterable[nn.Parameter]) -> torch.optim.Optimizer:
        return _build_optimizer(self._op_optimizer_cls, list(params), "op_optimizer", lr=self.learning_rate,
                                weight_decay=self.weight_decay, momentum=self.momentum)

    def _make_arch_optimizer(self, params: list[nn.Parameter]) -> torch.optim.Optimizer:
        cls = self.arch_optimizer if isinstance(self.arch_optimizer, type) else type(self.arch_optimizer)
        if not params:  # every cell type out of scope: nothing to learn, keep a valid optimizer
            params = [nn.Parameter(torch.zeros(0))]
        return _build_optimizer(cls, params, "arch_optimizer", lr=self.arch_learning_rate,
                                weight_decay=self.arch_weight_decay, betas=ARCH_BETAS)

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
        """Log the softmaxed alphas and the current genotype."""
        graph = self._require_graph()
        for name, w in graph.arch_weights().items():
            log.info("before epoch %d: %s alphas (softmax)\n%s", epoch + 1, name, _format_matrix(w))
        log.info("before epoch %d: genotype %s", epoch + 1, self.get_genotype())

    # ---------------------------------------------------------------------- steps
    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.compile and self._compiled is None:
            mode = "reduce-overhead" if self.device.type == "cuda" else "default"
            self._compiled = torch.compile(self.graph, mode=mode)
        fn = self._compiled if self._compiled is not None else self.graph
        if self.autocast:
            with torch.autocast(device_type=self.device.type, dtype=torch.bfloat16):
                return fn(x)
        return fn(x)

    def _graph_owned_outputs(self) -> bool:
        """Whether outputs live in CUDA-graph memory that the next replay overwrites."""
        return self.compile and self.device.type == "cuda"

    def _loss(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self._forward(x)
        if logits.dtype in (torch.float16, torch.bfloat16):  # autocast: the loss in float32
            logits = logits.float()
        return logits, self.loss(logits, y)

    def step(self, data_train, data_val):
        """One DARTS step: architecture on ``data_val``, then weights on ``data_train``.

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
        if alphas:
            if self.unrolled:
                logits_val, loss_val, grads = self._unrolled_alpha_grads(x_train, y_train, x_val, y_val, weights, alphas)
            else:
                with _frozen(weights):
                    logits_val, loss_val = self._loss(x_val, y_val)
                    grads = torch.autograd.grad(loss_val, alphas)
            if graphs_on_gpu:  # keep them past the weight step's graph replay
                logits_val, loss_val = logits_val.detach().clone(), loss_val.detach().clone()
            distributed.all_reduce_mean_(grads)
            for a, g in zip(alphas, grads):
                a.grad = g
            _step(self.arch_optimizer, "arch_optimizer")
        else:
            with torch.no_grad():
                logits_val, loss_val = self._loss(x_val, y_val)

        # weight step: only weight gradients
        with _frozen(alphas):
            logits_train, loss_train = self._loss(x_train, y_train)
            grads = torch.autograd.grad(loss_train, weights, allow_unused=True)
        distributed.all_reduce_mean_(grads)
        for w, g in zip(weights, grads):
            w.grad = g
        if self.grad_clip:
            nn.utils.clip_grad_norm_(weights, self.grad_clip)
        _step(self.op_optimizer, "op_optimizer")
        return logits_train.detach(), logits_val.detach(), loss_train.detach(), loss_val.detach()

    def current_lr(self) -> float:
        return float(self.op_optimizer.param_groups[0]["lr"])

    def _unrolled_alpha_grads(self, x_train, y_train, x_val, y_val, weights, alphas):
        """The second-order architecture gradient of the paper (finite-difference Hessian term).

        w' = w - xi (momentum * m + grad_w L_train(w) + wd * w); dalpha = grad_alpha L_val(w');
        v = grad_w' L_val(w'); eps = FD_SCALE / ||v|| (0.01, the paper's); the result is
        dalpha - xi (grad_alpha L_train(w + eps v) - grad_alpha L_train(w - eps v)) / (2 eps).
        Every quantity stays on the device (no host synchronisation).
        """
        xi = self.current_lr()
        group = self.op_optimizer.param_groups[0]
        momentum = group.get("momentum", 0.0) or 0.0
        wd = group.get("weight_decay", 0.0) or 0.0

        with _frozen(alphas):
            g_train = torch.autograd.grad(self._loss(x_train, y_train)[1], weights, allow_unused=True)
        g_train = [torch.zeros_like(w) if g is None else g for w, g in zip(weights, g_train)]
        distributed.all_reduce_mean_(g_train)
        with torch.no_grad():
            backup = [w.detach().clone() for w in weights]
            update = torch._foreach_add(g_train, weights, alpha=wd) if wd else g_train
            if momentum:
                for u, w in zip(update, weights):
                    buf = self.op_optimizer.state.get(w, {}).get("momentum_buffer")
                    if buf is not None:
                        u.add_(buf, alpha=momentum)
            torch._foreach_add_(weights, update, alpha=-xi)

        logits_val, loss_val = self._loss(x_val, y_val)
        grads = torch.autograd.grad(loss_val, list(alphas) + weights, allow_unused=True)
        dalpha = list(grads[: len(alphas)])
        v = [torch.zeros_like(w) if g is None else g for w, g in zip(weights, grads[len(alphas):])]
        if self._graph_owned_outputs():  # needed after later replays: own copies (small tensors)
            dalpha = [g.clone() for g in dalpha]
            logits_val, loss_val = logits_val.detach().clone(), loss_val.detach().clone()
        distributed.all_reduce_mean_(dalpha + v)

        with torch.no_grad():
            _copy_(weights, backup)
            norm = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(v)).double())
            eps = (FD_SCALE / norm.clamp_min(1e-12)).to(v[0].dtype)
            step = torch._foreach_mul(v, eps)
            torch._foreach_add_(weights, step)
        with _frozen(weights):
            g_pos = torch.autograd.grad(self._loss(x_train, y_train)[1], alphas)
        if self._graph_owned_outputs():
            g_pos = [g.clone() for g in g_pos]
        with torch.no_grad():
            torch._foreach_sub_(weights, step)
            torch._foreach_sub_(weights, step)
        with _frozen(weights):
            g_neg = torch.autograd.grad(self._loss(x_train, y_train)[1], alphas)
        distributed.all_reduce_mean_(list(g_pos) + list(g_neg))
        with torch.no_grad():
            _copy_(weights, backup)
            scale = xi / (2 * eps)
            out = [da - scale * (gp - gn) for da, gp, gn in zip(dalpha, g_pos, g_neg)]
        return logits_val, loss_val, out

    # ------------------------------------------------------------------- results
    def get_genotype(self):
        """The genotype of the current alphas (no network is built)."""
        graph = self._require_graph()
        with torch.no_grad():
            weights = graph.arch_weights()
        choices = {name: discretize_cell(spec, weights[name]) for name, spec in graph.specs.items()}
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
        if missing:
            raise RuntimeError(f"discrete network does not match the supernet at {missing[:3]}")
        network.load_state_dict({k: source[k] for k in target})
        network.genotype = genotype
        return network.to(self.device)

    def get_op_optimizer(self) -> type:
        return self._op_optimizer_cls

    def get_checkpointables(self) -> dict[str, Any]:
        graph = self._require_graph()
        return {
            "model": graph,
            "arch_weights": self.architectural_weights,
            "op_optimizer": self.op_optimizer,
            "arch_optimizer": self.arch_optimizer,
        }

    def get_model_size(self) -> float:
        graph = self._require_graph()
        return sum(p.numel() for p in graph.weights()) / 1e6

    def test_statistics(self) -> Optional[float]:
        if self.graph is None or self.search_space is None:
            return None
        return self.search_space.test_statistics(self.get_genotype(), self.dataset)

    def softmax_json(self) -> dict[str, list]:
        with torch.no_grad():
            return {name: w.cpu().tolist() for name, w in self._require_graph().arch_weights().items()}

    # ------------------------------------------------- the search loop's questions
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
        return {
            "alphas": [w.detach().cpu().tolist() for w in self.architectural_weights],
            "alpha_names": list(graph.alphas.keys()),
            "alphas_softmax": self.softmax_json(),
        }


class _frozen:
    """Temporarily stop autograd from tracking ``params`` (so no gradient is computed for them)."""

    def __init__(self, params):
        self.params = [p for p in params if p.requires_grad]

    def __enter__(self):
        for p in self.params:
            p.requires_grad_(False)

    def __exit__(self, *exc):
        for p in self.params:
            p.requires_grad_(True)
        return False


def _copy_(dst: list[torch.Tensor], src: list[torch.Tensor]) -> None:
    copy = getattr(torch, "_foreach_copy_", None)
    if copy is not None:
        copy(dst, src)
    else:  # older torch
        for d, s in zip(dst, src):
            d.copy_(s)


def _format_matrix(w: torch.Tensor) -> str:
    return "\n".join("  " + " ".join(f"{v:.4f}" for v in row) for row in w.detach().cpu().tolist())
