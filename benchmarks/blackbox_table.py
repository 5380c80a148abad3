#!/usr/bin/env python3
"""Regularized evolution and random search on NAS-Bench-201, beside the published table.

Reproduces the REA and RS rows of NAS-Bench-201 (Dong & Yang, ICLR 2020, Table 5: mean ± std
of the test accuracy over 500 runs) with the tables in /work/shared/data/nb201, and prints a
markdown table (or, with ``--json``, a JSON list of rows with keys ``optimizer``, ``dataset``,
``runs``, ``mean``, ``std``, ``published_mean``, ``published_std``).

The searches are the plugin's optimizer classes (``nasframe_blackbox.optimizers``
``RegularizedEvolution`` and ``RandomSearch``, what ``nasframe run --optimizer re|rs`` runs) on
NB201's space, driven by the driver's serial ask/tell loop under the core's budget rule; only
the evaluator is the script's own, scoring from arrays indexed by op code instead of the table's
rows (at ``--fidelity 200`` a run is exactly ``nasframe run``'s with the same seed;
``tests/test_blackbox.py`` checks that).

Protocol (NB201's ``exps/algos/R_EA.py`` and ``RANDOM.py`` defaults, the published table's):

- budget: 12,000 simulated seconds per run (``--budget``); an evaluation whose time would
  overrun the budget ends the run and is not counted (as NB201's scripts do; NB201 never
  cuts REA's initial population, the core's rule applies to every evaluation);
- searched on: the validation accuracy after 12 epochs of training (``x-valid``; CIFAR-10
  searches on ``cifar10-valid``), charged its 12-epoch training time;
- reported: the 200-epoch test accuracy of the architecture with the best search score
  (CIFAR-10: ``cifar10`` trained on train+valid, ``ori-test``; the others ``x-test``);
- REA: population 10, tournament of 3 drawn with replacement, the child mutates one op of the
  winner (a random node, then a random input of it, then a different op: the NB201 space's
  ``random_neighbour``), the oldest dies;
  RS: uniformly random cells.

Differences from NB201's runs (what the data files support):

- NB201 draws one random seed's 12-epoch accuracy per evaluation; ``nb201_12ep_minibench.csv``
  holds seed-averaged accuracies, so our search signal is less noisy;
- the 12-epoch training time is not in the files: it is the 200-epoch cifar10-valid time x
  12/200, times NATS-Bench's recorded ratio of the dataset's 200-epoch time to cifar10-valid's
  (CIFAR-100 x2, ImageNet16-120 x6.068; ``--time-model data``, the default) or times 1
  (``--time-model equal``: as many evaluations per run as CIFAR-10); ``valid-per-time``
  (seconds) is not charged;
- CIFAR-100 and ImageNet16-120 test accuracies are NATS-Bench's ``x-test`` means.

``--fidelity 200`` searches on the 200-epoch validation accuracy instead (per seed for CIFAR-10,
drawn at random, as NATS-Bench's ``simulate_train_eval``) and charges the 200-epoch time.

    python benchmarks/blackbox_table.py                 # 500 runs per row
    python benchmarks/blackbox_table.py --runs 50 --json
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
DEFAULT_DATA = Path(os.environ.get("NASFRAME_SHARED_DATA", HERE.parent.parent / "shared" / "data")) / "nb201"
DATASETS = ("cifar10", "cifar100", "ImageNet16-120")
#: NAS-Bench-201 (ICLR 2020) Table 5, test accuracy (mean, std over 500 runs)
PUBLISHED = {
    ("REA", "cifar10"): (93.92, 0.30),
    ("REA", "cifar100"): (71.84, 0.99),
    ("REA", "ImageNet16-120"): (45.54, 1.03),
    ("RS", "cifar10"): (93.70, 0.36),
    ("RS", "cifar100"): (71.04, 1.07),
    ("RS", "ImageNet16-120"): (44.57, 1.25),
}
N_OPS, N_EDGES = 5, 6
POWERS = [N_OPS ** k for k in range(N_EDGES)]


class Landscape:
    """One dataset's search signal, cost and reported accuracy, as lists indexed by op code
    (the op indices of a cell's six edges read as a base-5 number)."""

    def __init__(self, arrays, proxy, dataset: str, fidelity: int, time_model: str = "data"):
        from nasframe_spaces.nasbench201.simulate import TIME_SCALE

        codes = arrays.ops @ np.array(POWERS)
        n = len(codes)
        scale = TIME_SCALE[dataset] if time_model == "data" else 1.0
        seconds = arrays.train_time * scale * (fidelity / 200.0)
        test = arrays.test[dataset]
        if fidelity == 12:
            seeds = proxy.valid[dataset][:, None]
        elif dataset == "cifar10":
            seeds = arrays.seed_valid
        else:
            seeds = arrays.valid[dataset][:, None]
        order = np.zeros(N_OPS ** N_EDGES, dtype=np.int64)  # code -> row
        order[codes] = np.arange(n)
        self.dataset = dataset
        self.seconds = seconds[order].tolist()
        self.test = test[order].tolist()
        self.seeds = [[v for v in row if not math.isnan(v)] for row in seeds[order].tolist()]


def landscape_evaluator(land: Landscape, space, seed: int):
    """An evaluator scoring NB201 genotypes from ``land`` as the space's table evaluator does,
    from arrays: one seed's accuracy drawn from the evaluation's own generator (of the seed and
    the evaluation's index), the charged time and the reported test accuracy."""
    from nasframe_core.evaluation import Evaluator, Score
    from nasframe_spaces.nasbench201.codec import OPS

    index = {op: i for i, op in enumerate(OPS)}
    codes: dict = {}

    class LandscapeEvaluator(Evaluator):
        kind = "table"

        def score(self, genotype, i, fidelity=None):
            code = codes.get(genotype.ops)
            if code is None:
                code = codes[genotype.ops] = sum(index[op] * p for op, p in zip(genotype.ops, POWERS))
            seeds = land.seeds[code]
            valid = seeds[int(self.generator(i).integers(len(seeds)))] if len(seeds) > 1 else seeds[0]
            return Score(valid, land.seconds[code], land.test[code])

    return LandscapeEvaluator(space, land.dataset, seed)


def serial_search(optimizer, evaluator) -> list:
    """The driver's loop on the serial executor (``nasframe run``'s default), without a run
    directory: ask, score, tell, under the budget's rules (the evaluation whose seconds would
    overrun the budget ends the search uncounted; a failed one counts and charges nothing)."""
    from nasframe_core.evaluation import FAILED, Evaluation
    from nasframe_core.executors import SerialExecutor

    budget, executor = optimizer.budget, SerialExecutor(evaluator)
    history: list = []
    charged = 0.0
    while not (budget.evaluations is not None and optimizer.asked >= budget.evaluations) and not (
            budget.seconds is not None and charged >= budget.seconds):
        index = optimizer.asked
        genotype = optimizer.next_proposal()
        if genotype is None:
            raise RuntimeError("the optimizer waits for a result while none is running")
        executor.submit(index, genotype)
        (done,) = executor.wait()
        s = done.score
        if s is None:
            e = Evaluation(genotype, None, 0.0, None, FAILED, done.error, index=index)
        else:
            e = Evaluation(genotype, s.valid_accuracy, s.cost, s.test_accuracy, index=index)
            if not budget.admits(charged, e.cost):
                break
        charged += e.cost
        history.append(e)
        optimizer.tell(e)
    return history


def run_search(name: str, space, land: Landscape, budget: float, seed: int) -> tuple[float, int]:
    """One run of the plugin's optimizer (the class ``nasframe run --optimizer re|rs`` runs) on
    NB201's space until the time budget ends it, seeded as ``nasframe run --set run.seed=SEED``:
    (the incumbent's test accuracy, evaluations)."""
    from nasframe_blackbox.optimizers import RandomSearch, RegularizedEvolution
    from nasframe_core.data import _mix

    opt = (RegularizedEvolution if name == "REA" else RandomSearch)(time_budget=budget)
    opt.adapt_search_space(space, land.dataset)
    opt.start(_mix(seed, 0, 31))  # the seeds the driver derives from run.seed
    history = serial_search(opt, landscape_evaluator(land, space, _mix(seed, 0, 37)))
    return opt.best(history).test_accuracy, len(history)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=500, help="runs per optimizer and dataset (default 500, as NB201)")
    p.add_argument("--budget", type=float, default=12000.0, help="simulated seconds per run (default 12000, as NB201)")
    p.add_argument("--fidelity", type=int, choices=(12, 200), default=12,
                   help="epochs of the search signal and its charged time (default 12, as NB201)")
    p.add_argument("--time-model", choices=("data", "equal"), default="data",
                   help="seconds charged on CIFAR-100/ImageNet16-120: NATS-Bench's recorded time ratio to "
                        "cifar10-valid (data, default) or cifar10-valid's own time (equal)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data", default=str(DEFAULT_DATA), help="folder with nb201_200ep.csv and nb201_12ep_minibench.csv")
    p.add_argument("--json", action="store_true", help="print a JSON list of rows")
    args = p.parse_args(argv)
    if args.runs < 2:
        p.error("--runs must be at least 2 (a standard deviation needs two runs)")
    from nasframe_core.errors import NasframeError
    from nasframe_spaces.nasbench201.simulate import NB201Arrays, NB201Proxy12
    from nasframe_spaces.nasbench201.space import NasBench201SearchSpace

    space = NasBench201SearchSpace()

    data = Path(args.data)
    t0 = time.perf_counter()
    try:
        arrays = NB201Arrays(data / "nb201_200ep.csv")
        proxy = NB201Proxy12(data / "nb201_12ep_minibench.csv") if args.fidelity == 12 else None
    except NasframeError as exc:
        sys.exit(f"blackbox_table.py: error: {exc}; pass --data FOLDER or set NASFRAME_SHARED_DATA")
    rows = []
    for dataset in DATASETS:
        land = Landscape(arrays, proxy, dataset, args.fidelity, args.time_model)
        for name in ("REA", "RS"):
            t1 = time.perf_counter()
            results = [run_search(name, space, land, args.budget, 2 * (args.seed * 1_000_003 + k)) for k in range(args.runs)]
            acc = np.array([r[0] for r in results])
            pub = PUBLISHED[(name, dataset)]
            rows.append({
                "optimizer": name, "dataset": dataset, "runs": args.runs,
                "mean": round(float(acc.mean()), 3), "std": round(float(acc.std(ddof=1)), 3),
                "published_mean": pub[0], "published_std": pub[1],
                "evaluations_per_run": round(float(np.mean([r[1] for r in results])), 1),
                "seconds": round(time.perf_counter() - t1, 2),
                "time_model": args.time_model,
            })
    total = time.perf_counter() - t0
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"NAS-Bench-201 black-box search, {args.runs} runs per row, budget {args.budget:g} simulated s "
          f"(time model {args.time_model}), searched on the {args.fidelity}-epoch validation accuracy, reported: "
          f"200-epoch test accuracy; published: NAS-Bench-201 (ICLR 2020) Table 5\n")
    print("| optimizer | dataset | ours (mean ± std) | published | difference | evaluations / run | seconds |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['optimizer']} | {r['dataset']} | {r['mean']:.2f} ± {r['std']:.2f} | "
              f"{r['published_mean']:.2f} ± {r['published_std']:.2f} | {r['mean'] - r['published_mean']:+.2f} | "
              f"{r['evaluations_per_run']:.1f} | {r['seconds']:.1f} |")
    print(f"\ntotal {total:.1f} s (reading the tables included)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
