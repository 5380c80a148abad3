"""Evaluations of proposed architectures: what a black-box search learns from.

An :class:`Evaluator` scores one genotype; the :class:`~nasframe_core.blackbox_job.ProposalJob`
(the driver of a black-box search) has executors run evaluators and charges each
:class:`Evaluation` to the :class:`Budget`. An evaluation's outcome depends only on the run's
seed, the evaluation's index (its place in the order of proposals) and the genotype, never on
which worker ran it or when: the same seed gives the same search on one worker or many.

Evaluators:

- :class:`TableEvaluator`: the space's benchmark table (as NB201/NATS ``simulate_train_eval``):
  the space's :meth:`~nasframe_core.space.SearchSpace.simulate_train_eval` gives one
  validation accuracy (one seed, drawn from the evaluation's own generator) and the training
  time charged; the reported number is the table's test accuracy. No data, no network.
- :class:`TrainingEvaluator`: for spaces without a table. Trains the genotype for a few epochs
  with the code of ``nasframe train`` on the search-train split and scores it on the
  search-validation split; the data is loaded at the first evaluation of each process. The
  seconds charged are measured wall-clock seconds, so only an ``evaluations`` budget is
  reproducible with it.
"""
from __future__ import annotations

import abc
import copy
import time
from typing import TYPE_CHECKING, Any, Optional

import attrs
import numpy as np

from .data import _mix
from .errors import NasframeError

if TYPE_CHECKING:  # pragma: no cover
    from .genotype import Genotype
    from .space import SearchSpace

#: statuses of an evaluation
OK, FAILED = "ok", "failed"


@attrs.frozen
class Evaluation:
    """One scored (or failed) architecture.

    ``valid_accuracy`` is what the search may use; ``cost`` the seconds charged to the budget;
    ``test_accuracy`` (if known) is only reported, never searched on. ``worker``, ``started``
    and ``finished`` (seconds since the search started, wall-clock or simulated) say where and
    when it ran; ``attempts`` how many times it was started; a ``failed`` one has ``error``.
    """

    genotype: "Genotype"
    valid_accuracy: Optional[float]
    cost: float
    test_accuracy: Optional[float] = None
    status: str = OK
    error: Optional[str] = None
    worker: int = 0
    started: float = 0.0
    finished: float = 0.0
    attempts: int = 1
    #: the evaluation's place in the order of proposals (0-based)
    index: int = 0
    #: the training epochs it stands for (``None``: the evaluator's only kind)
    fidelity: Optional[int] = None

    @property
    def ok(self) -> bool:
        return self.status == OK

    def to_json(self) -> dict[str, Any]:
        return {"genotype": str(self.genotype), "valid_accuracy": self.valid_accuracy, "cost": self.cost,
                "test_accuracy": self.test_accuracy, "worker": self.worker, "started": self.started,
                "finished": self.finished, "status": self.status, "attempts": self.attempts,
                "error": self.error, "index": self.index, "fidelity": self.fidelity}

    @classmethod
    def from_json(cls, data: dict, space: "SearchSpace") -> "Evaluation":
        return cls(space.parse_genotype(data["genotype"]), data["valid_accuracy"], float(data["cost"]),
                   data.get("test_accuracy"), data.get("status", OK), data.get("error"), int(data.get("worker", 0)),
                   float(data.get("started", 0.0)), float(data.get("finished", 0.0)), int(data.get("attempts", 1)),
                   int(data.get("index", 0)), data.get("fidelity"))


@attrs.frozen
class Proposal:
    """A genotype to evaluate after ``fidelity`` epochs of training (``None``: the evaluator's
    default). A black-box optimizer's ``ask`` returns a genotype, or a proposal for multi-fidelity
    methods."""

    genotype: "Genotype"
    fidelity: Optional[int] = None


def as_proposal(value) -> Proposal:
    return value if isinstance(value, Proposal) else Proposal(value)


@attrs.frozen
class Score:
    """What an evaluator returns: the search's accuracy, the seconds charged, the reported
    test accuracy."""

    valid_accuracy: float
    cost: float
    test_accuracy: Optional[float] = None


@attrs.frozen
class Budget:
    """A search budget: at most ``evaluations`` evaluations and/or ``seconds`` charged seconds.

    The seconds rule is NB201's (``R_EA.py``, ``RANDOM.py``): an evaluation whose cost would
    take the charged seconds past ``seconds`` ends the search and is not counted (it joins
    neither the history nor the population), so a run never charges more than its budget.
    Failed evaluations count as evaluations and charge what they cost.
    """

    evaluations: Optional[int] = None
    seconds: Optional[float] = None

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
    """Scores genotypes for a black-box search.

    ``score(genotype, index, fidelity)`` must depend only on the genotype, the fidelity (training
    epochs; ``None``: the evaluator's default), the evaluator's seed and the evaluation's ``index``: draw random numbers from :meth:`generator` (index), never from a
    generator shared across evaluations, so that evaluations may run in any order, on any
    worker, and a resumed search scores exactly as an uninterrupted one. Raise
    :class:`~nasframe_core.errors.NasframeError` (or any exception) for a genotype that
    cannot be scored: the driver records a failed evaluation with its one-line reason.
    """

    #: short name written to result.json (``table``, ``training``, ...)
    kind: str = "?"
    #: whether evaluations are worth a worker process (training); cheap ones (a table look-up)
    #: run in the driver whatever the executor
    remote: bool = False
    #: how many evaluations the loop groups into one checkpointed round
    round_size: int = 10

    def __init__(self, space: "SearchSpace", dataset: str, seed: int):
        self.space, self.dataset, self.seed = space, dataset, int(seed)

    def generator(self, index: int) -> np.random.Generator:
        """The random generator of evaluation ``index``."""
        return np.random.default_rng(_mix(self.seed, index, 37))

    @abc.abstractmethod
    def score(self, genotype: "Genotype", index: int, fidelity: Optional[int] = None) -> Score:
        """Score ``genotype`` (evaluation number ``index``) after ``fidelity`` epochs of training."""

    def fidelities(self) -> tuple[int, ...]:
        """The fidelities (training epochs) the evaluator can score at; empty: any whole number."""
        return ()

    def default_fidelity(self) -> Optional[int]:
        """The fidelity of an evaluation that names none."""
        return None

    def describe(self) -> str:
        return self.kind

    def charges_time(self) -> bool:
        """Whether evaluations charge seconds (so a time budget can end)."""
        return True


class TableEvaluator(Evaluator):
    """Scores from the space's benchmark table (see :meth:`SearchSpace.simulate_train_eval`)
    under one of the space's search protocols: the search scores on
    ``space.search_dataset(dataset, protocol)`` after ``fidelity`` epochs; the reported test
    accuracy is ``dataset``'s (the requested one)."""

    kind = "table"
    #: look-ups take microseconds: a checkpointed round every 100 (the journal has every one)
    round_size = 100

    def __init__(self, space: "SearchSpace", dataset: str, seed: int, protocol: Optional[str] = None,
                 fidelity: Optional[int] = None):
        super().__init__(space, dataset, seed)
        self.protocol = space.search_protocol(protocol)
        self.search_on = space.search_dataset(dataset, self.protocol)
        self.fidelity = fidelity if fidelity is not None else space.default_fidelity(self.protocol)
        if self.fidelity is not None and space.fidelities() and self.fidelity not in space.fidelities():
            raise NasframeError(f"run.fidelity={self.fidelity}: the {space.benchmark_name} table has results after "
                                f"{', '.join(map(str, space.fidelities()))} epochs")

    def score(self, genotype: "Genotype", index: int, fidelity: Optional[int] = None) -> Score:
        fidelity = self.fidelity if fidelity is None else fidelity
        valid, seconds = self.space.simulate_train_eval(genotype, self.search_on, self.generator(index), fidelity)
        return Score(float(valid), float(seconds), self.space.test_statistics(genotype, self.dataset))

    def fidelities(self) -> tuple[int, ...]:
        return tuple(self.space.fidelities())

    def default_fidelity(self) -> Optional[int]:
        return self.fidelity

    def protocol_report(self) -> dict:
        """What result.json records of the protocol."""
        return {"name": self.protocol, "description": self.space.search_protocols[self.protocol],
                "searched_on": self.search_on, "fidelity_epochs": self.fidelity, "reported_on": self.dataset}

    def transfers(self) -> bool:
        """Whether the search is the same whatever dataset it reports on (it scores on one
        dataset for all), so its cell can be reported on every dataset of the table."""
        return all(self.space.search_dataset(d, self.protocol) == self.search_on
                   for d in self.space.report_datasets())

    def describe(self) -> str:
        bench = self.space.benchmark
        after = f" after {self.fidelity} epochs" if self.fidelity else ""
        return (f"table {self.space.benchmark_name} ({getattr(bench, 'path', '?')}), protocol {self.protocol}: "
                f"searched on {self.search_on}{after}, reported on {self.dataset}")


class TrainingEvaluator(Evaluator):
    """Trains each genotype for ``epochs`` epochs (the code of ``nasframe train``) and scores it
    on the search-validation split. Data is loaded at the first evaluation (of each worker)."""

    kind = "training"
    remote = True
    round_size = 1

    def __init__(self, space: "SearchSpace", dataset: str, seed: int, config, host, device, epochs: int):
        super().__init__(space, dataset, seed)
        if epochs < 1:
            raise NasframeError(f"optimizer.train_epochs must be at least 1, got {epochs}")
        self.config, self.host, self.device, self.epochs = config, host, device, int(epochs)
        self._splits = None

    def __getstate__(self) -> dict:
        # sent to worker processes: the loaded data and the plugin host stay behind (a worker
        # loads the data itself and builds its own host)
        state = dict(self.__dict__)
        state["_splits"] = None
        state["host"] = None
        return state

    def _host(self):
        if self.host is None:
            from .plugins import make_plugin_manager

            self.host = make_plugin_manager(warn=lambda line: None)
        return self.host

    def _proxy_splits(self):
        if self._splits is None:
            from .data import Splits, split_train_val

            cfg, host = self.config, self._host()
            source = host.create("dataset", cfg.dataset.name, **_dataset_settings(cfg, host))
            loaded = source.load()
            train, val = split_train_val(loaded.train, cfg.run.train_portion, cfg.run.seed)
            self._splits = (source, Splits(train=train, test=val))
        return self._splits

    def default_fidelity(self) -> Optional[int]:
        return self.epochs

    def score(self, genotype: "Genotype", index: int, fidelity: Optional[int] = None) -> Score:
        from .context import RunContext, seed_everything

        epochs = self.epochs if fidelity is None else int(fidelity)
        if epochs < 1:
            raise NasframeError(f"a training evaluation needs at least 1 epoch, got {epochs}")
        source, splits = self._proxy_splits()
        cfg = copy.deepcopy(self.config)
        cfg.command, cfg.genotype = "train", str(genotype)
        cfg.run.epochs = epochs
        sub = RunContext(cfg, self._host(), None, self.device)
        seed_everything(_mix(cfg.run.seed, index, 4242) % 2**62)
        t0 = time.perf_counter()
        job = _proxy_train_job(sub, source, splits, genotype)  # the object itself: no string is read as a path
        metrics: dict = {}
        for epoch in range(epochs):
            metrics = job.run_epoch(epoch, _NoProgress())
        seconds = time.perf_counter() - t0
        return Score(float(metrics["test_acc"]), seconds, self.space.test_statistics(genotype, self.dataset))

    def describe(self) -> str:
        return (f"training for {self.epochs} epoch{'s' if self.epochs != 1 else ''} on {self.config.dataset.name} "
                f"(search-validation accuracy)")


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


def _proxy_train_job(ctx, source, splits, genotype):
    """``nasframe train``'s job on data loaded once: train = search-train, test = search-validation."""
    from .train import TrainJob

    class ProxyTrainJob(TrainJob):
        def __init__(self, ctx, source, splits, genotype):
            self._preloaded = (source, splits)
            super().__init__(ctx, genotype)

        def _make_dataset(self):
            return self._preloaded[0]

        def _load_splits(self):
            return self._preloaded[1]

        def _attach_benchmark(self):
            return None

    return ProxyTrainJob(ctx, source, splits, genotype)


def run_evaluation(evaluator: Evaluator, proposal, index: int) -> tuple[Optional[Score], Optional[str]]:
    """``evaluator.score(...)`` of a proposal (a genotype, or a :class:`Proposal` with its
    fidelity), or ``(None, reason)`` with a one-line reason when it raises (a network that cannot
    be built, out of memory, a diverging loss): a failed evaluation never ends the search."""
    p = as_proposal(proposal)
    try:
        return evaluator.score(p.genotype, index, p.fidelity), None
    except KeyboardInterrupt:
        raise
    except Exception as exc:  # noqa: BLE001 - every failure of one evaluation is recorded, not raised
        text = " ".join(str(exc).split()) or type(exc).__name__
        return None, f"{type(exc).__name__}: {text}" if not isinstance(exc, NasframeError) else text
