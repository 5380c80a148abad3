"""Zero-cost proxies: a score of an untrained network from at most one batch.

A proxy plugin registers a :class:`Proxy` subclass through ``nasframe_register_proxies``.
The scorer (:mod:`nasframe_core.scoring`) builds each cell's network once, hands it to every
requested proxy through one :class:`ProxyContext`, and frees it. What a proxy declares lets the
scorer share that one build and one batch:

- ``needs_batch``: whether it reads images (``ctx.batch``); data-free proxies (synflow,
  params, FLOPs) read only ``ctx.input_shape``.
- ``batch_size``: the batch its protocol uses, or ``None`` for the scorer's ``--batch-size``
  (64, Abdelfattah et al.). Every proxy of a cell draws from the same images: a proxy asking
  for fewer gets the first ones.
- ``augment``: whether its protocol augments the batch (the training augmentation of the
  dataset: random crop and flip); NASWOT's does not.

- ``uses``: names of computations it shares with other proxies; the scorer passes the union
  over the proxies of a cell as ``ctx.uses``, so that one shared pass computes everything any
  of them needs at once (one forward and backward serves grad_norm, snip, fisher, grasp and
  jacob_cov), and nothing that none of them needs.

A proxy must leave ``ctx.model`` as it found it (weights, forward methods, hooks): one that
needs to change the network works on ``ctx.copy()``. Gradients left in ``.grad`` are cleared
by the scorer between proxies. ``ctx.shared(key, compute)`` caches a computation that several
proxies read.
"""
from __future__ import annotations

import abc
import copy
from typing import Any, Callable, ClassVar, Optional

import torch
from torch import nn
import torch.nn.functional as F

__all__ = ["Proxy", "ProxyContext", "weight_layers"]


def weight_layers(model: nn.Module) -> list[nn.Module]:
    """The convolutions and linear layers of ``model``, in module order: the layers whose
    weights the pruning-at-initialisation scores sum over (as the authors' code)."""
    return [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]


class ProxyContext:
    """What a proxy may read about the one network being scored.

    ``model``: the untrained network in training mode (batch norm on batch statistics), on
    ``device``. ``batch(n, augment)``: ``n`` labelled images ``(x, y)`` of this cell's batch,
    normalised (and augmented) as the dataset is for training. ``loss``: the loss of logits
    and labels (cross-entropy). ``input_shape``: ``(C, H, W)``. ``num_classes``.
    """

    def __init__(self, model: nn.Module, *, input_shape: tuple[int, int, int], num_classes: int,
                 batch: Optional[Callable[[int, bool], tuple[torch.Tensor, torch.Tensor]]] = None,
                 default_batch_size: int = 64, loss: Callable = F.cross_entropy,
                 device: torch.device = torch.device("cpu"), uses: frozenset = frozenset()):
        self.model = model
        self.input_shape = tuple(int(v) for v in input_shape)
        self.num_classes = int(num_classes)
        self.default_batch_size = int(default_batch_size)
        self.loss = loss
        self.device = device
        self._batch = batch
        self._shared: dict[Any, Any] = {}
        #: the union of ``Proxy.uses`` over the proxies scored on this network
        self.uses = frozenset(uses)

    def batch(self, n: Optional[int] = None, augment: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        if self._batch is None:
            from .errors import NasframeError

            raise NasframeError("this proxy needs a labelled batch, and none was given to the scorer")
        return self._batch(self.default_batch_size if n is None else int(n), bool(augment))

    def copy(self) -> nn.Module:
        """A deep copy of the network, for a proxy that changes weights or modules."""
        return copy.deepcopy(self.model)

    def shared(self, key: Any, compute: Callable[[], Any]) -> Any:
        """``compute()`` the first time ``key`` is asked for on this network, then its result."""
        if key not in self._shared:
            self._shared[key] = compute()
        return self._shared[key]

    def release(self) -> None:
        """Drop the network and everything cached for it (called by the scorer)."""
        self._shared.clear()
        self.model = None  # type: ignore[assignment]


class Proxy(abc.ABC):
    """A zero-cost proxy: ``score(ctx)`` of an untrained network, a float (higher: better
    predicted accuracy, as far as the proxy's definition goes; NaN when undefined).

    Subclasses set ``name`` (usually the registered name) and what they need (see the module
    docstring). The factory registered for a proxy is called with its settings
    (``--set proxy.<setting>`` is not offered: a proxy's protocol is its definition).
    """

    name: ClassVar[str] = "?"
    #: whether the proxy reads images from ``ctx.batch``
    needs_batch: ClassVar[bool] = True
    #: the batch size of the proxy's protocol (None: the scorer's batch size)
    batch_size: ClassVar[Optional[int]] = None
    #: whether the proxy's batch is augmented (random crop and flip) as for training
    augment: ClassVar[bool] = True
    #: shared computations it reads (see ``ctx.uses``)
    uses: ClassVar[tuple[str, ...]] = ()

    @abc.abstractmethod
    def score(self, ctx: ProxyContext) -> float:
        """The proxy's value for ``ctx.model``."""

    def describe(self) -> str:
        return self.name
