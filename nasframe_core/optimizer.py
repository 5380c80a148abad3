"""The abstract base of every search optimizer (NASLib's ``MetaOptimizer`` API)."""
from __future__ import annotations

import abc
from typing import Any, Optional

import torch


class MetaOptimizer(abc.ABC):
    """A one-shot or black-box search strategy, driven step by step by the search loop.

    The loop calls, in order: :meth:`adapt_search_space` once, :meth:`before_training`
    once, then per epoch :meth:`new_epoch` followed by :meth:`step` for every pair of
    batches; :meth:`get_final_architecture` at the end. :meth:`get_checkpointables`
    returns every object (with ``state_dict``/``load_state_dict``) that a resume needs.
    """

    #: whether this optimizer trains a supernet with gradient steps (and so needs data)
    using_step_function: bool = True

    def __init__(self) -> None:
        self.search_space = None
        self.dataset = None
        self.device = torch.device("cpu")

    @abc.abstractmethod
    def adapt_search_space(self, search_space: Any, dataset: Any, scope: Optional[str] = None, **kwargs) -> None:
        """Build the optimizer's view of ``search_space`` (its supernet) for ``dataset``."""

    def before_training(self) -> None:
        """Move what the optimizer owns to ``self.device``; called once before the first step."""

    def new_epoch(self, epoch: int) -> None:
        """Called at the start of every epoch."""

    @abc.abstractmethod
    def step(self, data_train: tuple, data_val: tuple) -> tuple:
        """One search step; returns ``(logits_train, logits_val, loss_train, loss_val)``."""

    @abc.abstractmethod
    def get_final_architecture(self) -> Any:
        """The discrete network the search found (with a ``genotype`` attribute)."""

    def get_genotype(self) -> Any:
        """The genotype of the current architecture (cheap: no network is built)."""
        return self.get_final_architecture().genotype

    @abc.abstractmethod
    def get_op_optimizer(self) -> type:
        """The class of the optimizer of the operation weights."""

    @abc.abstractmethod
    def get_checkpointables(self) -> dict[str, Any]:
        """Everything a bit-for-bit resume needs, by name, each with ``state_dict``."""

    def get_model_size(self) -> float:
        """Size of the searched model's weights, in MB (millions of parameters)."""
        return 0.0

    def train_statistics(self) -> Any:
        return None

    def test_statistics(self) -> Optional[float]:
        """The benchmark test accuracy of the current architecture, if the space is queryable."""
        return None
