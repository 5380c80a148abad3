"""Multi-fidelity search: successive halving, Hyperband and ASHA over the evaluator's fidelity.

The fidelity is the training epochs an evaluation stands for: the benchmark table's 12 and 200
epochs on NAS-Bench-201, or any number of epochs of the training evaluator. The rungs go from
``min_fidelity`` to ``max_fidelity`` (defaults: the evaluator's smallest and largest table
fidelity, or 1 and ``train_epochs`` epochs for training), a factor ``eta`` apart (for a table:
its fidelities between the two). A cell promoted to the next rung is evaluated again there, from
scratch, and the budget charges what every rung's evaluation costs. The incumbent is the best
cell at the highest rung reached (the driver compares scores at one fidelity only).

- :class:`SuccessiveHalving` (Jamieson & Talwalkar 2016; Li et al. 2017, "Hyperband", Alg. 1's
  inner loop): ``eta**K`` random cells (``K + 1`` rungs; or ``initial``) at the lowest rung, the best ``1/eta`` of each rung
  promoted, bracket after bracket until the budget ends. Synchronous: a rung is complete before
  its best are promoted (with several workers, ``ask`` waits meanwhile).
- :class:`Hyperband` (Li et al., JMLR 2018, Alg. 1): brackets ``s = K .. 0`` in turn, bracket
  ``s`` starting ``ceil((K+1)/(s+1) * eta**s)`` cells at rung ``K - s``.
- :class:`ASHA` (Li et al., MLSys 2020, Alg. 2): asynchronous; whenever a worker is free, the
  best cell of the highest rung that is in the top ``1/eta`` of its rung and not yet promoted
  goes up one rung, else a new random cell starts at the lowest rung.
"""
from __future__ import annotations

import math
from typing import Optional

from nasframe_core.blackbox import BlackBoxOptimizer
from nasframe_core.domains import NON_NEGATIVE, at_least
from nasframe_core.errors import NasframeError
from nasframe_core.evaluation import Evaluation, Proposal


class _Rungs(BlackBoxOptimizer):
    """What the three share: the rungs, and the evaluations at each."""

    settings_domain = {"eta": at_least(2), "min_fidelity": NON_NEGATIVE, "max_fidelity": NON_NEGATIVE}
    settings_help = {"eta": "each rung keeps the best 1/eta of the one below it",
                     "min_fidelity": "the lowest rung's training epochs (0: the evaluator's smallest)",
                     "max_fidelity": "the highest rung's training epochs (0: the evaluator's largest, or train_epochs)"}

    def __init__(self, eta: int = 3, min_fidelity: int = 0, max_fidelity: int = 0, evaluations: int = 0,
                 time_budget: float = 0.0, train_epochs: int = 4, max_attempts: int = 2):
        super().__init__(evaluations, time_budget, train_epochs, max_attempts)
        if eta < 2:
            raise NasframeError(f"optimizer.eta must be at least 2, got {eta}")
        if min_fidelity < 0 or max_fidelity < 0 or (min_fidelity and max_fidelity and min_fidelity > max_fidelity):
            raise NasframeError(f"optimizer.min_fidelity ({min_fidelity}) and max_fidelity ({max_fidelity}) must "
                                f"be positive and in that order (0: the evaluator's)")
        self.eta, self.min_fidelity, self.max_fidelity = int(eta), int(min_fidelity), int(max_fidelity)
        self.rungs: list[int] = []

    def start(self, seed: int) -> None:
        super().start(seed)
        self.rungs = self._make_rungs()
        #: rung -> successful evaluations there, in completion order
        self.results: list[list[Evaluation]] = [[] for _ in self.rungs]
        self.promoted: list[set] = [set() for _ in self.rungs]

    def _make_rungs(self) -> list[int]:
        table = sorted(self.fidelities)
        if table:
            lo = self.min_fidelity or table[0]
            hi = self.max_fidelity or table[-1]
            rungs = [f for f in table if lo <= f <= hi]
            if not rungs:
                raise NasframeError(f"no fidelity of the table ({', '.join(map(str, table))}) lies between "
                                    f"optimizer.min_fidelity {lo} and max_fidelity {hi}")
            return rungs
        hi = self.max_fidelity or self.train_epochs
        lo = self.min_fidelity or 1
        k = int(math.floor(math.log(hi / lo, self.eta) + 1e-9)) if hi > lo else 0
        rungs = sorted({max(1, int(round(hi / self.eta ** (k - i)))) for i in range(k + 1)})
        return rungs

    def rung_of(self, evaluation: Evaluation) -> int:
        return self.rungs.index(evaluation.fidelity) if evaluation.fidelity in self.rungs else 0

    def _propose(self, genotype, rung: int) -> Proposal:
        return Proposal(genotype, self.rungs[rung])

    def _top(self, rung: int, fraction_of: int) -> list[Evaluation]:
        """The best ``fraction_of // eta`` evaluations of ``rung`` (the earliest on ties)."""
        ranked = sorted(self.results[rung], key=lambda e: -e.valid_accuracy)
        return ranked[:fraction_of // self.eta]

    def tell(self, evaluation: Evaluation) -> None:
        if evaluation.ok:
            self.results[self.rung_of(evaluation)].append(evaluation)

    def epoch_report(self) -> dict:
        return {"rungs": self.rungs, "per_rung": [len(r) for r in self.results]}


class _Brackets(_Rungs):
    """Successive halving brackets, one after another (the bracket shapes differ)."""

    def start(self, seed: int) -> None:
        super().start(seed)
        self.bracket = -1
        self._open_bracket()

    def _bracket_shape(self, number: int) -> tuple[int, int]:
        """(cells, first rung) of bracket ``number``."""
        raise NotImplementedError

    def _open_bracket(self) -> None:
        self.bracket += 1
        self.n, self.rung = self._bracket_shape(self.bracket)
        self.queue = [None] * self.n  # None: a new random cell
        self.waiting = 0  # asked at this rung, not told
        self.members: list[Evaluation] = []  # told at this rung in this bracket

    def ask(self):
        if not self.queue:
            if self.waiting:
                return None  # the rung is still being evaluated
            self._advance()
        item = self.queue.pop(0)
        self.waiting += 1
        return self._propose(self.random_genotype() if item is None else item, self.rung)

    def tell(self, evaluation: Evaluation) -> None:
        super().tell(evaluation)
        self.waiting -= 1
        if evaluation.ok:
            self.members.append(evaluation)

    def _advance(self) -> None:
        """The rung is complete: promote its best ``1/eta``, or open the next bracket."""
        keep = len(self.members) // self.eta
        if self.rung + 1 >= len(self.rungs) or keep < 1:
            self._open_bracket()
            return
        best = sorted(self.members, key=lambda e: -e.valid_accuracy)[:keep]
        self.rung += 1
        self.queue = [e.genotype for e in best]
        self.members = []


class SuccessiveHalving(_Brackets):
    """Successive halving, bracket after bracket (see the module's documentation)."""

    settings_domain = {"initial": NON_NEGATIVE}
    settings_help = {"initial": "cells a bracket starts at the lowest rung (0: eta ** (rungs - 1))"}

    def __init__(self, initial: int = 0, eta: int = 3, min_fidelity: int = 0, max_fidelity: int = 0,
                 evaluations: int = 0, time_budget: float = 0.0, train_epochs: int = 4, max_attempts: int = 2):
        super().__init__(eta, min_fidelity, max_fidelity, evaluations, time_budget, train_epochs, max_attempts)
        if initial < 0:
            raise NasframeError(f"optimizer.initial must be at least 0 (0: eta ** rungs), got {initial}")
        self.initial = int(initial)

    def _bracket_shape(self, number: int) -> tuple[int, int]:
        return (self.initial or self.eta ** (len(self.rungs) - 1)), 0


class Hyperband(_Brackets):
    """Hyperband's brackets in turn (see the module's documentation)."""

    def _bracket_shape(self, number: int) -> tuple[int, int]:
        k = len(self.rungs) - 1
        s = k - number % (k + 1)
        return int(math.ceil((k + 1) / (s + 1) * self.eta ** s)), k - s


class ASHA(_Rungs):
    """Asynchronous successive halving (see the module's documentation)."""

    def ask(self):
        for rung in range(len(self.rungs) - 2, -1, -1):
            done = self.results[rung]
            for e in self._top(rung, len(done)):
                key = str(e.genotype)
                if key not in self.promoted[rung]:
                    self.promoted[rung].add(key)
                    return self._propose(e.genotype, rung + 1)
        return self._propose(self.random_genotype(), 0)
