"""Black-box search: optimizers that propose architectures and have them scored.

A black-box optimizer (``using_step_function = False``) trains nothing itself. The loop gives
it an :class:`Evaluator`; each :meth:`BlackBoxOptimizer.search_step` proposes one genotype,
has it scored and returns the :class:`Evaluation`. The budget is counted in evaluations
and/or in seconds charged by the evaluator (simulated seconds for a benchmark table), never
in epochs x steps.

Evaluators:

- :class:`TableEvaluator`: the space's benchmark table (as NB201/NATS ``simulate_train_eval``):
  the space's :meth:`~nasframe_core.space.SearchSpace.simulate_train_eval` gives one
  validation accuracy (one seed, drawn from the evaluator's seeded generator) and the training
  time charged; the reported number is the table's test accuracy. No data, no network.
- :class:`TrainingEvaluator`: for spaces without a table. Trains the genotype for a few epochs
  with the code of ``nasframe train`` on the search-train split and scores it on the
  search-validation split; the data is loaded at the first evaluation. The seconds charged are
  measured wall-clock seconds, so only an ``evaluations`` budget is reproducible with it.
"""
from __future__ import annotations

import abc
import copy
import logging
import time
from typing import TYPE_CHECKING, Any, Optional

import attrs
import numpy as np

from .errors import NasframeError
from .optimizer import MetaOptimizer

if TYPE_CHECKING:  # pragma: no cover
    from .engine import RunContext
    from .genotype import Genotype
    from .space import SearchSpace

log = logging.getLogger("nasframe")


@attrs.frozen
class Evaluation:
    """One scored architecture.

    ``valid_accuracy`` is what the search may use; ``cost`` the seconds charged to the budget;
    ``test_accuracy`` (if known) is only reported, never searched on.
    """

    genotype: "Genotype"
    valid_accuracy: float
    cost: float
    test_accuracy: Optional[float] = None

    def to_json(self) -> dict[str, Any]:
        return {"genotype": str(self.genotype), "valid_accuracy": self.valid_accuracy, "cost": self.cost,
                "test_accuracy": self.test_accuracy}


@attrs.frozen
class Budget:
    """A search budget: at most ``evaluations`` evaluations and/or ``seconds`` charged seconds.

    The seconds rule is NB201's (``R_EA.py``, ``RANDOM.py``): an evaluation whose cost would
    take the charged seconds past ``seconds`` ends the search and is not counted (it joins
    neither the history nor the population), so a run never charges more than its budget.
    """

    evaluations: Optional[int] = None
    seconds: Optional[float] = None
    #: epochs of training per evaluation when no benchmark table scores the space
    train_epochs: int = 4

    def __attrs_post_init__(self) -> None:
        if self.evaluations is None and self.seconds is None:
            raise NasframeError("a black-box search needs a budget: set optimizer.evaluations or optimizer.time_budget")

    def spent(self, evaluations: int, seconds: float) -> bool:
        return (self.evaluations is not None and evaluations >= self.evaluations) or (
            self.seconds is not None and seconds >= self.seconds)

    def admits(self, seconds: float, cost: float) -> bool:
        """Whether an evaluation costing ``cost`` seconds, made with ``seconds`` already charged,
        counts; when it does not, the search ends there."""
        return self.seconds is None or seconds + cost <= self.seconds

    def fraction(self, evaluations: int, seconds: float) -> float:
        parts = []
        if self.evaluations:
            parts.append(evaluations / self.evaluations)
        if self.seconds:
            parts.append(seconds / self.seconds)
        return min(1.0, max(parts, default=0.0))

    def describe(self) -> str:
        parts = []
        if self.evaluations is not None:
            parts.append(f"{self.evaluations} evaluations")
        if self.seconds is not None:
            parts.append(f"{self.seconds:g} simulated seconds")
        return " or ".join(parts)


class Evaluator(abc.ABC):
    """Scores genotypes for a black-box optimizer; its state (a seeded generator) is checkpointed."""

    #: short name written to result.json (``table`` or ``training``)
    kind: str = "?"
    #: how many evaluations the loop groups into one checkpointed round
    round_size: int = 10
    #: set by the loop: ``proxy_scorer(names)`` gives a :class:`~nasframe_core.scoring.Scorer` of
    #: zero-cost proxies for the run's space and data (an optimizer's warm-up uses it)
    proxy_scorer = None

    def __init__(self, seed: int):
        self.rng = np.random.default_rng(seed)

    @abc.abstractmethod
    def evaluate(self, genotype: "Genotype") -> Evaluation:
        """Score ``genotype``."""

    def describe(self) -> str:
        return self.kind

    def state_dict(self) -> dict:
        return {"rng": self.rng.bit_generator.state}

    def load_state_dict(self, state: dict) -> None:
        self.rng.bit_generator.state = state["rng"]


class TableEvaluator(Evaluator):
    """Scores from the space's benchmark table (see :meth:`SearchSpace.simulate_train_eval`)."""

    kind = "table"
    round_size = 10

    def __init__(self, space: "SearchSpace", dataset: str, seed: int):
        super().__init__(seed)
        self.space, self.dataset = space, dataset

    def evaluate(self, genotype: "Genotype") -> Evaluation:
        valid, seconds = self.space.simulate_train_eval(genotype, self.dataset, self.rng)
        return Evaluation(genotype, float(valid), float(seconds), self.space.test_statistics(genotype, self.dataset))

    def describe(self) -> str:
        bench = self.space.benchmark
        return f"table {self.space.benchmark_name} ({getattr(bench, 'path', '?')})"


class TrainingEvaluator(Evaluator):
    """Trains each genotype for ``epochs`` epochs (the code of ``nasframe train``) and scores it
    on the search-validation split. Data is loaded at the first evaluation."""

    kind = "training"
    round_size = 1

    def __init__(self, ctx: "RunContext", epochs: int, seed: int):
        super().__init__(seed)
        if epochs < 1:
            raise NasframeError(f"optimizer.train_epochs must be at least 1, got {epochs}")
        self.ctx, self.epochs = ctx, int(epochs)
        self._splits = None
        self.count = 0

    def _proxy_splits(self):
        if self._splits is None:
            from .data import Splits, split_train_val

            cfg, host = self.ctx.config, self.ctx.host
            source = host.create("dataset", cfg.dataset.name, **_dataset_settings(cfg, host))
            loaded = source.load()
            train, val = split_train_val(loaded.train, cfg.run.train_portion, cfg.run.seed)
            self._splits = (source, Splits(train=train, test=val))
        return self._splits

    def evaluate(self, genotype: "Genotype") -> Evaluation:
        from .data import _mix
        from .engine import RunContext, seed_everything

        source, splits = self._proxy_splits()
        cfg = copy.deepcopy(self.ctx.config)
        cfg.command, cfg.genotype = "train", str(genotype)
        cfg.run.epochs = self.epochs
        sub = RunContext(cfg, self.ctx.host, None, self.ctx.device)
        seed_everything(_mix(cfg.run.seed, self.count, 4242) % 2**62)
        self.count += 1
        t0 = time.perf_counter()
        job = _proxy_train_job(sub, source, splits)
        metrics: dict = {}
        for epoch in range(self.epochs):
            metrics = job.run_epoch(epoch, _NoProgress())
        seconds = time.perf_counter() - t0
        space = self.ctx.job.space if self.ctx.job is not None else None
        test = space.test_statistics(genotype, cfg.dataset.name) if space is not None else None
        return Evaluation(genotype, float(metrics["test_acc"]), seconds, test)

    def describe(self) -> str:
        return (f"training for {self.epochs} epoch{'s' if self.epochs != 1 else ''} on {self.ctx.config.dataset.name} "
                f"(search-validation accuracy)")

    def state_dict(self) -> dict:
        return {**super().state_dict(), "count": self.count}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.count = int(state["count"])


def _dataset_settings(cfg, host) -> dict:
    from .settings import factory_settings

    settings = dict(cfg.dataset.settings)
    if cfg.run.data_dir is not None:
        if "data_dir" not in factory_settings(host.get("dataset", cfg.dataset.name).factory):
            raise NasframeError(f"dataset {cfg.dataset.name!r} takes no --data-dir")
        settings["data_dir"] = cfg.run.data_dir
    return settings


class _NoProgress:
    def update(self, step: int, **values: float) -> None:
        pass


def _proxy_train_job(ctx, source, splits):
    """``nasframe train``'s job (imported here: train.py imports the search module)."""
    from .train import TrainJob

    class ProxyTrainJob(TrainJob):
        """``nasframe train``'s job on data loaded once: train = search-train, test = search-validation."""

        def __init__(self, ctx, source, splits):
            self._preloaded = (source, splits)
            super().__init__(ctx)

        def _make_dataset(self):
            return self._preloaded[0]

        def _load_splits(self):
            return self._preloaded[1]

        def _attach_benchmark(self):
            return None

    return ProxyTrainJob(ctx, source, splits)


# ----------------------------------------------------------------------------- optimizers
class BlackBoxOptimizer(MetaOptimizer):
    """The base of black-box optimizers: budget settings, the evaluated history, the incumbent.

    Subclasses implement :meth:`propose` (the next genotype to evaluate) and may override
    :meth:`observe` (called with every evaluation, in order) and ``state_dict`` /
    ``load_state_dict`` for their own state (call the base's). ``self.rng`` is a
    ``numpy.random.Generator`` seeded by the loop from the run's seed.

    Settings shared by every black-box optimizer: ``evaluations`` (0: no limit),
    ``time_budget`` (seconds charged by the evaluator, simulated from the table; 0: no limit;
    with neither set the search makes 100 evaluations), ``train_epochs`` (epochs of training
    per evaluation when the space has no benchmark table).
    """

    using_step_function = False

    def __init__(self, evaluations: int = 0, time_budget: float = 0.0, train_epochs: int = 4):
        super().__init__()
        if evaluations < 0 or time_budget < 0:
            raise NasframeError("optimizer.evaluations and optimizer.time_budget must not be negative")
        if not evaluations and not time_budget:
            evaluations = 100
        self.budget = Budget(evaluations or None, time_budget or None, train_epochs)
        self.history: list[Evaluation] = []
        #: seconds charged by the evaluations in ``history`` (added in order, as the loop does)
        self.charged = 0.0
        self.rng = np.random.default_rng(0)
        self.evaluator: Optional[Evaluator] = None

    # ------------------------------------------------------------- the loop's calls
    def adapt_search_space(self, search_space, dataset, scope=None, **kwargs) -> None:
        self.search_space = search_space
        self.dataset = dataset

    def search_budget(self) -> Budget:
        return self.budget

    def start_search(self, evaluator: Evaluator, seed: int) -> None:
        """Called once per run (also on resume, before the state is restored)."""
        self.evaluator = evaluator
        self.rng = np.random.default_rng(seed)

    def search_step(self) -> Optional[Evaluation]:
        """Propose one genotype, have it evaluated, learn from it; return the evaluation.

        An evaluation the budget does not admit (:meth:`Budget.admits`, NB201's rule) is
        dropped unlearnt and ``None`` returned: the search is over.
        """
        evaluation = self.evaluator.evaluate(self.propose())
        if not self.budget.admits(self.charged, evaluation.cost):
            return None
        self.charged += evaluation.cost
        self.history.append(evaluation)
        self.observe(evaluation)
        return evaluation

    # ------------------------------------------------------------- for subclasses
    @abc.abstractmethod
    def propose(self) -> "Genotype":
        """The next genotype to evaluate."""

    def observe(self, evaluation: Evaluation) -> None:
        """Learn from ``evaluation`` (already appended to ``self.history``)."""

    def random_genotype(self) -> "Genotype":
        return self.search_space.random_genotype(self.rng)

    # ---------------------------------------------------------------- results
    def incumbent(self) -> Optional[Evaluation]:
        """The evaluation with the best validation accuracy so far (the earliest on ties)."""
        best = None
        for e in self.history:
            if best is None or e.valid_accuracy > best.valid_accuracy:
                best = e
        return best

    def get_final_architecture(self) -> Any:
        """A black-box optimizer's final architecture is the incumbent's genotype."""
        inc = self.incumbent()
        if inc is None:
            raise NasframeError("the search evaluated no architecture; raise optimizer.evaluations or optimizer.time_budget")
        return inc.genotype

    def get_genotype(self) -> Any:
        return self.get_final_architecture()

    def test_statistics(self) -> Optional[float]:
        inc = self.incumbent()
        return None if inc is None else inc.test_accuracy

    def step(self, data_train, data_val):
        raise NasframeError(f"{type(self).__name__} is a black-box optimizer; it takes no training steps")

    def get_checkpointables(self) -> dict[str, Any]:
        return {"blackbox": self}

    def state_dict(self) -> dict:
        return {"rng": self.rng.bit_generator.state, "history": [self._save(e) for e in self.history]}

    def load_state_dict(self, state: dict) -> None:
        self.rng.bit_generator.state = state["rng"]
        self.history = [self._load(e) for e in state["history"]]
        self.charged = 0.0
        for e in self.history:
            self.charged += e.cost

    def _save(self, e: Evaluation) -> dict:
        return e.to_json()

    def _load(self, data: dict) -> Evaluation:
        return Evaluation(self.search_space.parse_genotype(data["genotype"]), data["valid_accuracy"], data["cost"],
                          data["test_accuracy"])
