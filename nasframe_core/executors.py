"""Executors: where a black-box search's evaluations run.

- ``serial``: one at a time, in the driver's process (the default).
- ``simulated``: ``workers`` virtual workers whose clocks advance by the seconds each
  evaluation charges (a benchmark table's training time). Evaluations are computed at once and
  delivered in the order their simulated runs finish, so an asynchronous search on a table is
  deterministic and reproducible on one core, with the wall-clock behaviour of ``workers`` real
  workers (as Syne Tune's simulator backend).
- ``ray``: Ray core tasks (the distribution's ``ray`` extra), at most ``workers`` at once:
  ``ray.init()`` on this machine, or ``address`` for an existing cluster; one GPU per task where
  the cluster has GPUs, one CPU otherwise. A task whose worker process dies is started again,
  up to ``max_attempts`` starts in all, then recorded as failed. Cheap evaluators (a table
  look-up, ``Evaluator.remote`` False) run in the driver: a task would cost more than they do.

Every executor hands back :class:`Done` records; the driver turns them into evaluations. An
evaluation's outcome depends only on the seed, its index and its genotype (see
:mod:`nasframe_core.evaluation`), so every executor gives the same scores.
"""
from __future__ import annotations

import abc
import heapq
import os
import time
import uuid
from typing import TYPE_CHECKING, Any, Optional

import attrs

from .dist import ray_hint
from .errors import NasframeError
from .evaluation import Score, run_evaluation

if TYPE_CHECKING:  # pragma: no cover
    from .evaluation import Evaluator
    from .genotype import Genotype

EXECUTORS = ("serial", "simulated", "ray")
RAY_HINT = ray_hint()


@attrs.frozen
class Done:
    """One finished (or given up) evaluation as an executor reports it."""

    index: int
    #: what was submitted: a genotype, or a :class:`~nasframe_core.evaluation.Proposal`
    genotype: Any
    score: Optional[Score]
    error: Optional[str]
    worker: int
    started: float
    finished: float
    attempts: int = 1


class Executor(abc.ABC):
    """Runs evaluations for the driver: :meth:`submit` while :meth:`free` > 0, then
    :meth:`wait` for at least one to finish."""

    name = "?"

    def __init__(self, evaluator: "Evaluator", workers: int = 1, max_attempts: int = 2):
        if workers < 1:
            raise NasframeError(f"--workers must be at least 1, got {workers}")
        self.evaluator, self.workers, self.max_attempts = evaluator, int(workers), int(max_attempts)
        self.t0 = time.perf_counter()

    def now(self) -> float:
        """Seconds since the search started (wall-clock)."""
        return time.perf_counter() - self.t0

    @abc.abstractmethod
    def free(self) -> int:
        """How many evaluations may be submitted now."""

    @abc.abstractmethod
    def submit(self, index: int, genotype: "Genotype", at: Optional[tuple[int, float]] = None) -> tuple[int, float]:
        """Start evaluation ``index`` of ``genotype``; return ``(worker, started)``. ``at``: the
        worker and start a resumed search recorded for it (the simulated clocks keep them)."""

    def restore(self, finished: list[tuple[int, float]]) -> None:
        """Before a resumed search submits again: the ``(worker, finished)`` of every evaluation
        that finished before the stop."""

    @abc.abstractmethod
    def wait(self) -> list[Done]:
        """Block until at least one submitted evaluation finishes; return the finished ones
        (empty when none is running)."""

    def discard(self) -> None:
        """Drop every evaluation still running (the search is over)."""

    def close(self) -> None:
        """Release what the executor holds."""

    def describe(self) -> str:
        return self.name if self.workers == 1 else f"{self.name} ({self.workers} workers)"


class SerialExecutor(Executor):
    """One evaluation at a time, in this process."""

    name = "serial"

    def __init__(self, evaluator, workers: int = 1, max_attempts: int = 2):
        super().__init__(evaluator, 1, max_attempts)
        self.done: list[Done] = []

    def free(self) -> int:
        return 0 if self.done else 1

    def submit(self, index, genotype, at=None) -> tuple[int, float]:
        started = self.now()
        score, error = run_evaluation(self.evaluator, genotype, index)
        self.done.append(Done(index, genotype, score, error, 0, started, self.now()))
        return 0, started

    def wait(self) -> list[Done]:
        done, self.done = self.done, []
        return done

    def describe(self) -> str:
        return "serial"


class SimulatedExecutor(Executor):
    """``workers`` virtual workers on simulated clocks (see the module's documentation)."""

    name = "simulated"

    def __init__(self, evaluator, workers: int = 1, max_attempts: int = 2):
        super().__init__(evaluator, workers, max_attempts)
        self.clock = [0.0] * self.workers
        self.idle = list(range(self.workers))  # free workers, lowest first
        self.running: list[tuple[float, int, Done]] = []  # heap of (finished, index, done)

    def free(self) -> int:
        return len(self.idle)

    def submit(self, index, genotype, at=None) -> tuple[int, float]:
        if at is not None:  # resumed: the worker and start it had
            worker, started = int(at[0]), float(at[1])
            self.idle.remove(worker)
        else:
            worker = self.idle.pop(0)
            started = self.clock[worker]
        score, error = run_evaluation(self.evaluator, genotype, index)
        cost = score.cost if score is not None else 0.0
        done = Done(index, genotype, score, error, worker, started, started + cost)
        heapq.heappush(self.running, (done.finished, index, done))
        return worker, started

    def restore(self, finished: list[tuple[int, float]]) -> None:
        for worker, t in finished:
            if 0 <= worker < self.workers:
                self.clock[worker] = max(self.clock[worker], t)

    def wait(self) -> list[Done]:
        if not self.running:
            return []
        _, _, done = heapq.heappop(self.running)
        self.clock[done.worker] = done.finished
        self.idle.append(done.worker)
        self.idle.sort()
        return [done]

    def discard(self) -> None:
        self.running = []


class RayExecutor(Executor):
    """Ray core tasks (see the module's documentation)."""

    name = "ray"

    def __init__(self, evaluator, workers: int = 1, max_attempts: int = 2, address: Optional[str] = None):
        super().__init__(evaluator, workers, max_attempts)
        try:
            import ray
        except ImportError:
            raise NasframeError(f"--executor ray needs Ray, which is not installed; {RAY_HINT}") from None
        self.ray = ray
        if not ray.is_initialized():
            try:
                ray.init(address=address, include_dashboard=False, log_to_driver=False,
                         configure_logging=False, ignore_reinit_error=True)
            except Exception as exc:  # noqa: BLE001 - a cluster that cannot be reached is the user's to fix
                where = f"the Ray cluster at {address}" if address else "a local Ray cluster"
                raise NasframeError(f"could not start or reach {where}: {' '.join(str(exc).split())}") from None
            self._owns_ray = True
        else:
            self._owns_ray = False
        gpus = ray.cluster_resources().get("GPU", 0) > 0
        self.resources = {"num_gpus": 1, "num_cpus": 1} if gpus else {"num_cpus": 1}
        self.local = SerialExecutor(evaluator) if not evaluator.remote else None
        self.task = ray.remote(_evaluate_in_worker) if not self.local else None
        self.evaluator_ref = ray.put(evaluator) if not self.local else None
        self.key = uuid.uuid4().hex  # names this search's evaluator in the worker processes
        self.slots = list(range(self.workers))
        self.running: dict[Any, tuple[int, Any, int, int]] = {}  # ref -> (index, genotype, slot, attempts)
        self.epoch0 = time.time() - self.now()

    def free(self) -> int:
        return self.local.free() if self.local else len(self.slots)

    def _start(self, index, genotype, slot: int, attempts: int) -> None:
        ref = self.task.options(max_retries=0, **self.resources).remote(
            self.evaluator_ref, self.key, genotype, index, self.resources["num_cpus"])
        self.running[ref] = (index, genotype, slot, attempts)

    def submit(self, index, genotype, at=None) -> tuple[int, float]:
        if self.local:
            return self.local.submit(index, genotype)
        slot = self.slots.pop(0)
        self._start(index, genotype, slot, 1)
        return slot, self.now()

    def wait(self) -> list[Done]:
        if self.local:
            return self.local.wait()
        if not self.running:
            return []
        ready, _ = self.ray.wait(list(self.running), num_returns=1)
        done = []
        for ref in ready:
            index, genotype, slot, attempts = self.running.pop(ref)
            try:
                score, error, started, finished = self.ray.get(ref)
            except (self.ray.exceptions.WorkerCrashedError, self.ray.exceptions.NodeDiedError,
                    self.ray.exceptions.LocalRayletDiedError) as exc:
                if attempts < self.max_attempts:
                    self._start(index, genotype, slot, attempts + 1)
                    continue
                now = self.now()
                error = (f"the worker died {attempts} time{'s' if attempts > 1 else ''} "
                         f"({type(exc).__name__}); optimizer.max_attempts is {self.max_attempts}")
                done.append(Done(index, genotype, None, error, slot, now, now, attempts))
                self.slots.append(slot)
                continue
            except self.ray.exceptions.RayError as exc:
                score, error = None, " ".join(str(exc).split())[:300]
                started = finished = time.time()
            self.slots.append(slot)
            done.append(Done(index, genotype, score, error, slot, started - self.epoch0, finished - self.epoch0,
                             attempts))
        self.slots.sort()
        return done

    def discard(self) -> None:
        for ref in list(self.running):
            self.ray.cancel(ref, force=True)
        self.running = {}

    def close(self) -> None:
        self.discard()
        if self._owns_ray:
            self.ray.shutdown()


#: in a Ray worker process: ``(key, evaluator)`` of the search it last evaluated for. Ray hands
#: each task a fresh copy of its arguments; the kept evaluator holds what it loaded at its first
#: evaluation (a training evaluator's data), so a worker process loads it once, not per task.
_WORKER_EVALUATOR: list = [None, None]


def _evaluate_in_worker(evaluator, key: str, genotype, index: int, threads: int):
    """A Ray task: one evaluation in a worker process, with ``threads`` torch threads."""
    import torch

    from .context import resolve_device

    torch.set_num_threads(max(1, int(threads)))
    if _WORKER_EVALUATOR[0] == key:
        evaluator = _WORKER_EVALUATOR[1]
    else:
        if hasattr(evaluator, "config"):
            evaluator.device = resolve_device(evaluator.config.run.device)
        _WORKER_EVALUATOR[:] = [key, evaluator]
    started = time.time()
    score, error = run_evaluation(evaluator, genotype, index)
    return score, error, started, time.time()


def make_executor(name: str, evaluator: "Evaluator", workers: int, max_attempts: int,
                  address: Optional[str] = None) -> Executor:
    """The executor ``name`` (``serial``, ``simulated`` or ``ray``)."""
    if name == "serial":
        if workers != 1:
            raise NasframeError(f"the serial executor runs one evaluation at a time; drop --workers {workers} "
                                f"or choose --executor simulated or ray")
        return SerialExecutor(evaluator, 1, max_attempts)
    if name == "simulated":
        if not evaluator.charges_time() or evaluator.kind != "table":
            raise NasframeError(
                f"--executor simulated needs evaluations that charge simulated seconds (a benchmark table); "
                f"the {evaluator.kind} evaluator measures real time, so use --executor ray or serial")
        return SimulatedExecutor(evaluator, workers, max_attempts)
    if name == "ray":
        return RayExecutor(evaluator, workers, max_attempts, address or os.environ.get("RAY_ADDRESS") or None)
    raise NasframeError(f"unknown executor {name!r}; choose one of {', '.join(EXECUTORS)}")
