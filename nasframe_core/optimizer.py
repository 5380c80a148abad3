"""The abstract base of every search optimizer (NASLib's ``MetaOptimizer`` API)."""
from __future__ import annotations

import abc
from typing import Any, Optional

import torch



class MetaOptimizer(abc.ABC):
    """A one-shot search strategy, driven step by step by the search loop.

    The loop calls, in order: :meth:`adapt_search_space` once, :meth:`before_training`
    once, then per epoch :meth:`new_epoch` followed by :meth:`step` for every pair of
    batches; :meth:`get_final_architecture` at the end. :meth:`get_checkpointables`
    returns every object (with ``state_dict``/``load_state_dict``) that a resume needs.
    """

    #: NASLib's flag, kept for its users: a ``MetaOptimizer`` always trains with steps. The loop
    #: does not read it; which driver runs an optimizer is decided by its base class (black-box
    #: optimizers derive from :class:`~nasframe_core.blackbox.BlackBoxOptimizer` instead).
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

    def get_op_optimizer(self) -> Optional[type]:
        """The class of the optimizer of the operation weights (``None``: no weights)."""
        return None

    @abc.abstractmethod
    def get_checkpointables(self) -> dict[str, Any]:
        """Everything a bit-for-bit resume needs, by name, each with ``state_dict``."""

    def get_model_size(self) -> float:
        """Size of the searched model's weights, in MB (millions of parameters)."""
        return 0.0

    def test_statistics(self) -> Optional[float]:
        """The benchmark test accuracy of the current architecture, if the space is queryable."""
        return None

    # ------------------------------------------------- what the search loop asks
    # Everything the loop reads from an optimizer is one of these methods (each with a
    # default), so an optimizer needs nothing beyond this class.

    def plan_search(self, epochs: int, steps_per_epoch: int) -> None:
        """Called once per run (also on resume), after :meth:`adapt_search_space` and before
        :meth:`before_training`, with the length of the search. Schedules that depend on the
        search's progress (a temperature, a decaying weight) read ``self.epochs`` and
        ``self.steps_per_epoch`` and are computed from ``(epoch, epochs)`` in
        :meth:`new_epoch`, so that a resumed run continues them exactly."""
        self.epochs = epochs
        self.steps_per_epoch = steps_per_epoch

    def scheduled_optimizers(self) -> list[torch.optim.Optimizer]:
        """The torch optimizers whose learning rate follows ``run.scheduler``.

        Before every epoch the loop sets each param group's ``lr`` from the value it had when
        the run was built (cosine decay to ``run.lr_min`` by default). Default: none.
        """
        return []

    def evaluation_network(self) -> Optional[torch.nn.Module]:
        """The network ``run.eval_test`` scores on the test split after every epoch
        (for one-shot methods, the supernet); ``None``: nothing to score."""
        return None

    def epoch_report(self) -> dict[str, Any]:
        """JSON-serialisable entries for this epoch's line of ``metrics.jsonl``.

        The core writes them as they are; plugins' reporting hooks may read them (e.g.
        :func:`~nasframe_core.hookspecs.nasframe_epoch_metrics`). Default: nothing.
        """
        return {}

    def result_report(self) -> dict[str, Any]:
        """JSON-serialisable entries that ``result.json`` carries beyond the common ones
        (``genotype``, ``genotype_json``, ``benchmark``, ``test_statistics``, ...).
        One-shot methods put their architecture weights here. Default: nothing."""
        return {}
