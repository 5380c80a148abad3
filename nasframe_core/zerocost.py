"""A black-box search that trains nothing: genotypes scored by a zero-cost proxy.

``nasframe run --evaluator zerocost:synflow`` (config key ``run.evaluator``) has every
evaluation of a black-box optimizer score the untrained network of the genotype with the proxy
(:mod:`nasframe_core.scoring`); the proxy's value takes the place of the validation accuracy the
optimizer maximises. An evaluation charges no seconds, so the budget is counted in evaluations
(``optimizer.evaluations``); a time budget is refused. When a benchmark table is attached, each
evaluation still carries the table's test accuracy, which the result reports for the chosen cell.

``run.evaluator``: ``auto`` (the table when one is attached, else brief training), ``table``,
``training`` or ``zerocost:PROXY``.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Optional, Sequence

from .evaluation import Evaluator, Score

if TYPE_CHECKING:  # pragma: no cover
    from .context import RunContext
    from .genotype import Genotype
    from .scoring import Scorer

from .config import ZEROCOST, check_evaluator_name  # noqa: F401 - the names this module's users import


def run_scorer(ctx: "RunContext", space, names: Sequence[str]) -> "Scorer":
    """A proxy scorer for this run's space, dataset (``--data-dir`` included), seed and device."""
    from .scoring import make_scorer

    cfg = ctx.config
    return make_scorer(ctx.host, space, list(names), dataset=cfg.dataset.name, dataset_settings=cfg.dataset.settings,
                       data_dir=cfg.run.data_dir, seed=cfg.run.seed, device=ctx.device)


class ZeroCostEvaluator(Evaluator):
    """Scores a genotype with one proxy on its untrained network; charges 0 seconds.

    The score's ``valid_accuracy`` is the proxy's value (an undefined value ranks last, as
    ``-inf``); ``test_accuracy`` the attached table's, when there is one. The dataset is loaded
    at the first evaluation, and only when the proxy reads a batch. It runs in the driver (the
    scorer holds the run's batch).
    """

    kind = ZEROCOST
    round_size = 10

    def __init__(self, space, dataset: str, seed: int, ctx: "RunContext", proxy: str):
        super().__init__(space, dataset, seed)
        ctx.host.get("proxy", proxy)  # an unknown proxy fails before anything runs
        self.ctx, self.proxy = ctx, proxy
        self._scorer: Optional["Scorer"] = None

    def scorer(self) -> "Scorer":
        if self._scorer is None:
            self._scorer = run_scorer(self.ctx, self.space, [self.proxy])
        return self._scorer

    def score(self, genotype: "Genotype", index: int, fidelity: Optional[int] = None) -> Score:
        value = self.scorer().score(genotype)[self.proxy]
        if not math.isfinite(value):
            value = float("-inf")
        return Score(float(value), 0.0, self.space.test_statistics(genotype, self.dataset))

    def charges_time(self) -> bool:
        return False

    def describe(self) -> str:
        return f"zero-cost proxy {self.proxy} of the untrained network (no training)"
