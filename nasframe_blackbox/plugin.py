"""Plugin: the black-box optimizers (random search, regularized evolution, local search,
REINFORCE, successive halving, Hyperband, ASHA) and the published rows of NB201's Table 5."""
from __future__ import annotations

from nasframe_core import hookimpl

#: registry name -> ("module:Class", one line); the classes load when a run uses them
OPTIMIZERS = {
    "rs": ("nasframe_blackbox.optimizers:RandomSearch",
           "random search: uniformly random cells, the best validation accuracy wins"),
    "re": ("nasframe_blackbox.optimizers:RegularizedEvolution",
           "regularized evolution (Real et al. 2019): tournament, one-op mutation, the oldest dies"),
    "ls": ("nasframe_blackbox.optimizers:LocalSearch",
           "local search (White et al. 2021): move to the best one-op neighbour"),
    "reinforce": ("nasframe_blackbox.reinforce:Reinforce",
                  "REINFORCE as NAS-Bench-201 ran it: a policy over each edge's op, EMA reward baseline"),
    "sh": ("nasframe_blackbox.multifidelity:SuccessiveHalving",
           "successive halving over the evaluator's fidelity (table epochs or training epochs)"),
    "hyperband": ("nasframe_blackbox.multifidelity:Hyperband",
                  "Hyperband (Li et al. 2018): successive-halving brackets in turn"),
    "asha": ("nasframe_blackbox.multifidelity:ASHA",
             "ASHA (Li et al. 2020): asynchronous successive halving, a promotion per free worker"),
}


@hookimpl
def nasframe_register_optimizers(register):
    for name, (path, description) in OPTIMIZERS.items():
        register(name, path, description=description)


#: NAS-Bench-201 (Dong & Yang, ICLR 2020), Table 5: test accuracy (%) of the chosen cell, mean
#: and std over 500 runs, each run searching cifar10-valid with the 12-epoch proxy under a
#: 12,000 s budget and its cell looked up on the three datasets
_NB201_TABLE5 = {
    "re": ((93.92, 0.30), (71.84, 0.99), (45.54, 1.03)),
    "rs": ((93.70, 0.36), (71.04, 1.07), (44.57, 1.25)),
    "reinforce": ((93.85, 0.37), (71.71, 1.09), (45.24, 1.18)),
}


@hookimpl
def nasframe_published_results():
    source = ("NAS-Bench-201 (Dong & Yang, ICLR 2020), Table 5: 500 runs searching cifar10-valid "
              "(12-epoch proxy, 12,000 s), the cell reported on each dataset")
    return [{"optimizer": name, "search_space": "nasbench201", "dataset": dataset, "mean": mean, "std": std,
             "source": source, "protocol": "nb201", "runs": 500}
            for name, rows in _NB201_TABLE5.items()
            for dataset, (mean, std) in zip(("cifar10", "cifar100", "ImageNet16-120"), rows)]
