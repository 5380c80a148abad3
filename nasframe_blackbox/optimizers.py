"""Random search, regularized evolution and local search over any space's genotypes.

Each proposes genotypes through the space (``random_genotype``, ``random_neighbour``,
``neighbours``) when the driver asks, and learns from the evaluations it is told, in the order
they finish; the budget, the executors and the incumbent are the driver's (see
:mod:`nasframe_core.blackbox`).
"""
from __future__ import annotations

from collections import deque
from typing import Optional

from nasframe_core.blackbox import BlackBoxOptimizer, Evaluation
from nasframe_core.domains import COUNT, NON_NEGATIVE
from nasframe_core.errors import NasframeError


class RandomSearch(BlackBoxOptimizer):
    """Random search: every proposal is a uniformly random genotype."""

    def ask(self):
        return self.random_genotype()


class RegularizedEvolution(BlackBoxOptimizer):
    """Regularized evolution (Real et al., AAAI 2019), with NB201's settings by default.

    The first ``population_size`` proposals are random. After that, each proposal is a
    mutation (one op of one kept edge changed) of the best of ``sample_size`` members drawn
    from the population (with replacement, as NB201/NATS's script); the new child joins the
    population when its evaluation arrives and the oldest member dies. With several workers
    this is the asynchronous form: a child per free worker, the population updated on arrival
    (a failed evaluation joins nothing). The mutation is the space's ``random_neighbour``:
    by default a uniformly drawn kept edge; NB201's space draws a node, then one of its inputs,
    as NB201's script (``examples/studies/nb201-table5.yaml`` runs this class on NB201's table).

    Warm-up (Abdelfattah et al., ICLR 2021): with ``warmup_proxy`` (e.g. ``synflow``) and
    ``warmup_sample`` (e.g. 3000), the initial population is the best ``population_size`` by
    that zero-cost proxy among ``warmup_sample`` random cells, instead of random cells.
    """

    settings_domain = {"population_size": COUNT, "sample_size": COUNT, "warmup_sample": NON_NEGATIVE}
    settings_help = {"population_size": "members of the population (the oldest dies)",
                     "sample_size": "members drawn for each tournament",
                     "warmup_proxy": "a zero-cost proxy choosing the initial population (e.g. synflow; empty: random)",
                     "warmup_sample": "random cells the warm-up proxy chooses the initial population among"}

    def __init__(self, population_size: int = 10, sample_size: int = 3, evaluations: int = 0,
                 time_budget: float = 0.0, train_epochs: int = 4, max_attempts: int = 2, warmup_proxy: str = "",
                 warmup_sample: int = 0):
        super().__init__(evaluations, time_budget, train_epochs, max_attempts)
        if population_size < 1 or not 1 <= sample_size:
            raise NasframeError(
                f"optimizer.population_size and optimizer.sample_size must be at least 1, got {population_size} and {sample_size}")
        self.population_size, self.sample_size = int(population_size), int(sample_size)
        self.population: deque[Evaluation] = deque()
        self.last_tournament: list[Evaluation] = []
        self.warmup_proxy, self.warmup_sample = str(warmup_proxy or "").strip(), int(warmup_sample)
        if self.warmup_proxy and self.warmup_sample < self.population_size:
            raise NasframeError(
                f"optimizer.warmup_sample ({self.warmup_sample}) must be at least optimizer.population_size "
                f"({self.population_size}) to choose the initial population by {self.warmup_proxy}")
        if self.warmup_sample and not self.warmup_proxy:
            raise NasframeError("optimizer.warmup_sample needs optimizer.warmup_proxy, e.g. synflow")
        #: the warm-up's initial population still to be proposed (best by the proxy first)
        self.warm: Optional[list] = None

    def tournament(self) -> Evaluation:
        """The best of ``sample_size`` members drawn with replacement (the earliest drawn on ties)."""
        members = list(self.population)
        sample = [members[int(i)] for i in self.rng.integers(len(members), size=self.sample_size)]
        self.last_tournament = sample
        best = sample[0]
        for e in sample[1:]:
            if e.valid_accuracy > best.valid_accuracy:
                best = e
        return best

    def ask(self):
        if self.asked < self.population_size:
            if self.warmup_proxy:
                if self.warm is None:
                    self.warm = self.warmup_population()
                return self.warm.pop(0)
            return self.random_genotype()
        if not self.population:
            return self.random_genotype()
        return self.search_space.random_neighbour(self.tournament().genotype, self.rng)

    def warmup_population(self) -> list:
        """Abdelfattah et al.'s warm-up: the best ``population_size`` by ``warmup_proxy`` among
        ``warmup_sample`` random cells (distinct, drawn from the optimizer's generator; ties keep
        the draw order). Scoring them charges nothing to the budget."""
        make = self.proxy_scorer
        if make is None:
            raise NasframeError("optimizer.warmup_proxy needs a run that provides zero-cost proxies (nasframe run)")
        scorer = make([self.warmup_proxy])
        drawn: dict[str, object] = {}
        tries = 0
        while len(drawn) < self.warmup_sample and tries < 50 * self.warmup_sample + 1000:
            g = self.random_genotype()
            drawn.setdefault(str(g), g)
            tries += 1
        cells = list(drawn.values())
        scores = [scorer.score(g)[self.warmup_proxy] for g in cells]
        keyed = [(-(v if v == v else float("-inf")), i) for i, v in enumerate(scores)]
        order = [i for _, i in sorted(keyed)]
        return [cells[i] for i in order[: self.population_size]]

    def tell(self, evaluation: Evaluation) -> None:
        if not evaluation.ok:
            return
        self.population.append(evaluation)
        if len(self.population) > self.population_size:
            self.population.popleft()  # the oldest dies


class LocalSearch(BlackBoxOptimizer):
    """Local search (White et al., "Local search is state of the art for NAS benchmarks", 2021).

    Start from the best of ``initial`` random genotypes; evaluate the current genotype's
    neighbours (one op changed) in a random order; when all are evaluated, move to the best if
    it beats the current one, else the current genotype is a local optimum (recorded in
    ``local_optima``) and the search restarts from a random genotype. Evaluated genotypes are
    not evaluated again; the budget decides when it ends. The search is sequential: with
    several workers, a neighbourhood's evaluations run side by side, and the next move waits
    for all of them (``ask`` answers ``None`` meanwhile).
    """

    settings_domain = {"initial": COUNT}
    settings_help = {"initial": "random genotypes evaluated at each (re)start"}

    def __init__(self, initial: int = 1, evaluations: int = 0, time_budget: float = 0.0, train_epochs: int = 4,
                 max_attempts: int = 2):
        super().__init__(evaluations, time_budget, train_epochs, max_attempts)
        if initial < 1:
            raise NasframeError(f"optimizer.initial must be at least 1, got {initial}")
        self.initial = int(initial)
        self.starting = True  # drawing the initial random genotypes of a (re)start
        self.starts_left = self.initial
        self.current: Optional[Evaluation] = None
        self.queue: list = []  # neighbours of current still to evaluate (popped from the end)
        self.round: list[Evaluation] = []  # evaluated neighbours of current
        self.local_optima: list[Evaluation] = []
        self.seen: dict[str, Evaluation] = {}
        self.pending = 0  # proposals of the current phase not told yet
        self.phase_asks = 0  # proposals made in the current phase (a start, or a neighbourhood)

    def ask(self):
        while True:
            if self.starting:
                if self.phase_asks >= self.starts_left:
                    return None  # every start is out; the move waits for their scores
                self.phase_asks += 1
                self.pending += 1
                return self.random_genotype()
            self._drain_seen()
            if self.queue:
                self.pending += 1
                return self.queue.pop()
            if self.pending:
                return None  # the neighbourhood is out; the move waits for its scores
            self._advance()

    def tell(self, evaluation: Evaluation) -> None:
        self.pending -= 1
        if not evaluation.ok:
            if self.starting:
                self.starts_left -= 1
                self.phase_asks -= 1
                self._started()
            return
        self.seen[str(evaluation.genotype)] = evaluation
        if not self.starting:
            self._drain_seen()  # as an ask that waited would have, so a replayed search keeps the order
            self.round.append(evaluation)
            return
        if self.current is None or evaluation.valid_accuracy > self.current.valid_accuracy:
            self.current = evaluation
        self.starts_left -= 1
        self.phase_asks -= 1
        self._started()

    def _drain_seen(self) -> None:
        """Neighbours at the top of the queue that were scored before join the round with their
        score (spending no budget)."""
        while self.queue and str(self.queue[-1]) in self.seen:
            self.round.append(self.seen[str(self.queue.pop())])

    def _started(self) -> None:
        """After a start's evaluation: once every start is scored, the best one's neighbourhood
        (or, when every start failed, new starts)."""
        if self.starts_left > 0:
            return
        if self.current is None:
            self.starts_left = self.initial
            return
        self.starting = False
        self._start_neighbourhood()

    def _start_neighbourhood(self) -> None:
        options = self.search_space.neighbours(self.current.genotype)
        order = self.rng.permutation(len(options))
        self.queue = [options[int(i)] for i in order[::-1]]
        self.round = []

    def _advance(self) -> None:
        """Every neighbour of the current genotype is scored: move to the best, or, when none
        is better, record a local optimum and restart."""
        best = None
        for e in self.round:
            if best is None or e.valid_accuracy > best.valid_accuracy:
                best = e
        if best is not None and best.valid_accuracy > self.current.valid_accuracy:
            self.current = best
            self._start_neighbourhood()
            return
        self.local_optima.append(self.current)
        self.current, self.round = None, []
        self.starting, self.starts_left, self.phase_asks = True, self.initial, 0

    def result_report(self) -> dict:
        return {"local_optima": [str(e.genotype) for e in self.local_optima]}
