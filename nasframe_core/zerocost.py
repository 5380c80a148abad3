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

from .blackbox import Evaluation, Evaluator, TableEvaluator, TrainingEvaluator
from .errors import NasframeError

if TYPE_CHECKING:  # pragma: no cover
    from .engine import RunContext
    from .genotype import Genotype
    from .scoring import Scorer

ZEROCOST = "zerocost"
CHOICES = ("auto", "table", "training", f"{ZEROCOST}:PROXY")


def check_evaluator_name(value: str) -> str:
    """``value`` if it is a valid ``run.evaluator`` (the proxy name is checked when the run starts)."""
    text = str(value).strip()
    kind, sep, proxy = text.partition(":")
    if text in ("auto", "table", "training") or (kind == ZEROCOST and sep and proxy.strip()):
        return text
    raise NasframeError(f"run.evaluator must be one of {', '.join(CHOICES)}, got {value!r}")


def run_scorer(ctx: "RunContext", space, names: Sequence[str]) -> "Scorer":
    """A proxy scorer for this run's space, dataset (``--data-dir`` included), seed and device."""
    from .scoring import make_scorer

    cfg = ctx.config
    return make_scorer(ctx.host, space, list(names), dataset=cfg.dataset.name, dataset_settings=cfg.dataset.settings,
                       data_dir=cfg.run.data_dir, seed=cfg.run.seed, device=ctx.device)


class ZeroCostEvaluator(Evaluator):
    """Scores a genotype with one proxy on its untrained network; charges 0 seconds.

    ``valid_accuracy`` of the evaluation is the proxy's value (an undefined value ranks last, as
    ``-inf``); ``test_accuracy`` the attached table's, when there is one. The dataset is loaded
    at the first evaluation, and only when the proxy reads a batch.
    """

    kind = ZEROCOST
    round_size = 10

    def __init__(self, ctx: "RunContext", space, dataset: str, proxy: str, seed: int):
        super().__init__(seed)
        ctx.host.get("proxy", proxy)  # an unknown proxy fails before anything runs
        self.ctx, self.space, self.dataset, self.proxy = ctx, space, dataset, proxy
        self._scorer: Optional["Scorer"] = None

    def scorer(self) -> "Scorer":
        if self._scorer is None:
            self._scorer = run_scorer(self.ctx, self.space, [self.proxy])
        return self._scorer

    def evaluate(self, genotype: "Genotype") -> Evaluation:
        value = self.scorer().score(genotype)[self.proxy]
        if not math.isfinite(value):
            value = float("-inf")
        return Evaluation(genotype, float(value), 0.0, self.space.test_statistics(genotype, self.dataset))

    def describe(self) -> str:
        return f"zero-cost proxy {self.proxy} of the untrained network (no training)"


def evaluator_for(ctx: "RunContext", space, dataset: str, benchmark, budget, seed: int) -> Evaluator:
    """The evaluator ``run.evaluator`` names; ``auto`` keeps the loop's choice (the table when
    it covers the dataset, else brief training)."""
    name = check_evaluator_name(getattr(ctx.config.run, "evaluator", "auto"))
    has_table = benchmark is not None and space.benchmark_dataset(dataset) is not None
    if name.startswith(ZEROCOST + ":"):
        if budget.seconds is not None:
            raise NasframeError(f"the {name} evaluator charges no time, so optimizer.time_budget never ends the "
                                f"search; set optimizer.evaluations instead")
        evaluator: Evaluator = ZeroCostEvaluator(ctx, space, dataset, name.partition(":")[2].strip(), seed)
    elif name == "table" or (name == "auto" and has_table):
        if not has_table:
            raise NasframeError(f"run.evaluator=table needs the space's benchmark table; pass --benchmark PATH")
        evaluator = TableEvaluator(space, dataset, seed)
    else:
        evaluator = TrainingEvaluator(ctx, budget.train_epochs, seed)
    evaluator.proxy_scorer = lambda names: run_scorer(ctx, space, names)
    return evaluator
