"""Black-box optimizers: strategies that propose architectures (``ask``) and learn from their
evaluations (``tell``).

The driver (:class:`~nasframe_core.blackbox_job.ProposalJob`) owns everything else: the
budget, the executors that run evaluations (one at a time, on simulated workers, or on Ray),
the journal of evaluations that a resume replays, and the incumbent. It calls:

1. :meth:`BlackBoxOptimizer.adapt_search_space` once, then :meth:`BlackBoxOptimizer.start`
   with the seed of the optimizer's generator (``self.rng``), also on resume;
2. :meth:`ask` whenever a worker is free, so several proposals may be outstanding at once;
3. :meth:`tell` with every finished evaluation, in the order they finish (a failed one too:
   ``evaluation.ok`` is False and its accuracy ``None``).

A resumed search replays the journal (the same asks and tells, in the same order) into a
fresh optimizer, so an optimizer needs no checkpoint of its own: it must only draw every
random number from ``self.rng`` and decide from what it was told. A minimal optimizer::

    class RandomSearch(BlackBoxOptimizer):
        def ask(self):
            return self.search_space.random_genotype(self.rng)

Settings every black-box optimizer takes (the driver reads them): ``evaluations`` (0: no
limit), ``time_budget`` (seconds charged by the evaluator, simulated from the table; 0: no
limit; with neither set the search makes 100 evaluations), ``train_epochs`` (epochs of
training per evaluation when the space has no benchmark table) and ``max_attempts`` (starts of
an evaluation whose worker died, before it is recorded as failed).
"""
from __future__ import annotations

import abc
from typing import TYPE_CHECKING, Any, Optional

import numpy as np

from .domains import COUNT, NON_NEGATIVE
from .errors import NasframeError
from .evaluation import Budget, Evaluation, Proposal

if TYPE_CHECKING:  # pragma: no cover
    from .genotype import Genotype

__all__ = ["BlackBoxOptimizer", "Budget", "Evaluation", "Proposal"]


class BlackBoxOptimizer(abc.ABC):
    """The base of black-box optimizers (see the module's documentation)."""

    #: the settings every black-box optimizer shares (subclasses add theirs; see nasframe_core.domains)
    settings_domain = {"evaluations": NON_NEGATIVE, "time_budget": NON_NEGATIVE, "train_epochs": COUNT,
                       "max_attempts": COUNT}
    settings_help = {
        "evaluations": "evaluations to make (0: no limit; with no time_budget either, 100)",
        "time_budget": "seconds charged by the evaluator (simulated from the table; 0: no limit)",
        "train_epochs": "epochs of training per evaluation when no benchmark table scores the space",
        "max_attempts": "starts of an evaluation whose worker died before it is recorded as failed",
    }

    def __init__(self, evaluations: int = 0, time_budget: float = 0.0, train_epochs: int = 4,
                 max_attempts: int = 2):
        if evaluations < 0 or time_budget < 0:
            raise NasframeError("optimizer.evaluations and optimizer.time_budget must not be negative")
        if train_epochs < 1:
            raise NasframeError(f"optimizer.train_epochs must be at least 1, got {train_epochs}")
        if max_attempts < 1:
            raise NasframeError(f"optimizer.max_attempts must be at least 1, got {max_attempts}")
        if not evaluations and not time_budget:
            evaluations = 100
        self.budget = Budget(evaluations or None, time_budget or None)
        self.train_epochs = int(train_epochs)
        self.max_attempts = int(max_attempts)
        self.search_space: Any = None
        self.dataset: Any = None
        self.rng = np.random.default_rng(0)
        #: proposals made so far (``ask`` calls)
        self.asked = 0
        #: set by the driver before :meth:`start`: the fidelities (training epochs) the evaluator
        #: scores at (empty: any whole number) and the one a plain genotype is scored at
        self.fidelities: tuple[int, ...] = ()
        self.default_fidelity: Optional[int] = None
        #: set by the driver: ``proxy_scorer(names)`` gives a zero-cost proxy scorer for the run's
        #: space and data (:mod:`nasframe_core.scoring`), for strategies that use proxies (a warm-up)
        self.proxy_scorer = None

    # ------------------------------------------------------------- the driver's calls
    def adapt_search_space(self, search_space, dataset, scope=None, **kwargs) -> None:
        self.search_space = search_space
        self.dataset = dataset

    def start(self, seed: int) -> None:
        """Called once per run (also on resume, before the journal is replayed)."""
        self.rng = np.random.default_rng(seed)
        self.asked = 0

    def next_proposal(self) -> "Optional[Genotype]":
        """What the driver calls: :meth:`ask`, counted in ``self.asked`` (unless it is ``None``)."""
        genotype = self.ask()
        if genotype is not None:
            self.asked += 1
        return genotype

    @abc.abstractmethod
    def ask(self) -> "Optional[Genotype]":
        """The next genotype to evaluate (``self.asked`` proposals were made before it), a
        :class:`~nasframe_core.evaluation.Proposal` (a genotype and the fidelity to score it at:
        multi-fidelity methods), or
        ``None`` when the strategy must wait for an outstanding result first (the driver then
        waits for one and asks again; a ``None`` must leave the optimizer as it was)."""

    def tell(self, evaluation: Evaluation) -> None:
        """Learn from a finished evaluation (called in completion order; also for failed ones)."""

    # ---------------------------------------------------------------- reports
    def epoch_report(self) -> dict[str, Any]:
        """JSON-serialisable entries for each round's line of ``metrics.jsonl``. Default: nothing."""
        return {}

    def result_report(self) -> dict[str, Any]:
        """JSON-serialisable entries for ``result.json``. Default: nothing."""
        return {}

    def random_genotype(self) -> "Genotype":
        return self.search_space.random_genotype(self.rng)

    @staticmethod
    def best(evaluations) -> Optional[Evaluation]:
        """The successful evaluation with the best validation accuracy (the earliest on ties)."""
        found = None
        for e in evaluations:
            if e.ok and (found is None or e.valid_accuracy > found.valid_accuracy):
                found = e
        return found
