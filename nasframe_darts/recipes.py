"""Each method's search recipes, per search space, with where each one comes from.

A recipe fixes the settings a paper or its official code ran with, under the project's setting
names (``run.epochs``, ``optimizer.learning_rate``, ...). The first recipe listed for a space
is the one ``nasframe run`` applies by default; ``--recipe NAME`` picks another, and the
user's config file, flags and ``--set`` always win over it (:mod:`nasframe_core.recipes`).
Every method also has ``darts``: the DARTS paper's own search settings.

Official files read for these numbers (paths inside each repository):

- DARTS: Liu et al. 2019, Sec. 3.1.1 / A.1.1; NB201: D-X-Y/AutoDL-Projects
  ``configs/nas-benchmark/algos/DARTS.config``, ``scripts-search/NAS-Bench-201-algos/DARTS-V1.sh``.
- GDAS: AutoDL-Projects ``configs/nas-benchmark/algos/GDAS.config``,
  ``scripts-search/NAS-Bench-201-algos/GDAS.sh``, ``exps/NAS-Bench-201-algos/GDAS.py``;
  DARTS space ``configs/search-opts/GDAS-NASNet-CIFAR.config``.
- DrNAS: xiangning-chen/DrNAS ``201-space/train_search.py``, ``architect.py``,
  ``DARTS-space/train_search.py``.
- PC-DARTS: yuhuixu1993/PC-DARTS ``train_search.py``.
- FairDARTS: xiaomi-automl/FairDARTS ``fairdarts/train_search.py``.
- SDARTS: xiangning-chen/SmoothDARTS ``nasbench201/train_search.py``, ``sota/cnn/train_search.py``.
- DARTS-: Meituan-AutoML/DARTS- ``src/search/args.py``, ``scripts/run_darts_minus.sh``.
- beta-DARTS: Sunshine-Ye/Beta-DARTS ``nasbench201/train_search.py``, ``sota/cnn/train_search.py``,
  ``optimizers/darts/architect.py``.
"""
from __future__ import annotations

from typing import Any

NB201 = "nasbench201"
DARTS_SPACE = "darts"

#: the settings every recipe fixes (a recipe may leave one out where its method decides it)
SHARED = ("run.epochs", "run.batch_size", "run.lr_min", "optimizer.learning_rate", "optimizer.momentum",
          "optimizer.nesterov", "optimizer.weight_decay", "optimizer.arch_learning_rate",
          "optimizer.arch_betas", "optimizer.arch_weight_decay")


def settings(epochs: int, batch: int, lr: float, lr_min: float, wd: float, *, nesterov: bool = False,
             momentum: float = 0.9, arch_lr: float = 3e-4, arch_betas=(0.5, 0.999), arch_wd: float | None = 1e-3,
             **method: Any) -> dict[str, Any]:
    out: dict[str, Any] = {
        "run.epochs": epochs, "run.batch_size": batch, "run.lr_min": lr_min,
        "optimizer.learning_rate": lr, "optimizer.momentum": momentum, "optimizer.nesterov": nesterov,
        "optimizer.weight_decay": wd, "optimizer.arch_learning_rate": arch_lr,
        "optimizer.arch_betas": list(arch_betas),
    }
    if arch_wd is not None:
        out["optimizer.arch_weight_decay"] = arch_wd
    out.update({f"optimizer.{k}": v for k, v in method.items()})
    return out


def recipe(name: str, source: str, values: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "source": source, "settings": values}


DARTS_PAPER_SOURCE = ("Liu et al., DARTS (ICLR 2019), Sec. 3.1.1 and A.1.1: 50 epochs, batch 64, SGD lr 0.025 "
                      "cosine to 0.001, momentum 0.9, weight decay 3e-4; Adam 3e-4, betas (0.5, 0.999), wd 1e-3")


def darts_paper(arch_wd: bool = True) -> dict[str, Any]:
    """The DARTS paper's search settings (the ``darts`` recipe of every method and space)."""
    return recipe("darts", DARTS_PAPER_SOURCE,
                  settings(50, 64, 0.025, 0.001, 3e-4, arch_wd=1e-3 if arch_wd else None))


def with_darts(table: dict[str, list[dict]], arch_wd: bool = True) -> dict[str, list[dict]]:
    """``table`` with the ``darts`` recipe added to every space (and to any space, ``*``)."""
    out = {space: list(rows) + ([darts_paper(arch_wd)] if all(r["name"] != "darts" for r in rows) else [])
           for space, rows in table.items()}
    out.setdefault("*", [darts_paper(arch_wd)])
    return out


XAUTODL_DARTS = ("D-X-Y/AutoDL-Projects configs/nas-benchmark/algos/DARTS.config and "
                 "scripts-search/NAS-Bench-201-algos/DARTS-V1.sh (NB201's own DARTS runs: 50 epochs, "
                 "Nesterov, weight decay 5e-4)")

DARTS = with_darts({
    NB201: [recipe("nb201", XAUTODL_DARTS, settings(50, 64, 0.025, 0.001, 5e-4, nesterov=True))],
    DARTS_SPACE: [darts_paper()],
})

GDAS = with_darts({
    NB201: [recipe(
        "nb201",
        "D-X-Y/AutoDL-Projects configs/nas-benchmark/algos/GDAS.config (250 epochs, batch 64, Nesterov, wd 5e-4), "
        "scripts-search/NAS-Bench-201-algos/GDAS.sh (tau 10 -> 0.1, arch lr 3e-4, wd 1e-3), "
        "xautodl/models/cell_searchs/search_cells.py forward_gdas (unsampled ops' straight-through weights added)",
        settings(250, 64, 0.025, 0.001, 5e-4, nesterov=True, tau_max=10.0, tau_min=0.1, unsampled_weights=True))],
    DARTS_SPACE: [recipe(
        "gdas",
        "D-X-Y/AutoDL-Projects configs/search-opts/GDAS-NASNet-CIFAR.config (250 epochs, batch 256, Nesterov, "
        "wd 5e-4), scripts-search/NASNet-space-search-by-GDAS.sh; the NASNet cell's forward_gdas runs the sampled "
        "op alone (search_cells.py), so unsampled_weights is off",
        settings(250, 256, 0.025, 0.001, 5e-4, nesterov=True, tau_max=10.0, tau_min=0.1, unsampled_weights=False))],
})

DRNAS_201 = ("xiangning-chen/DrNAS 201-space/train_search.py defaults (100 epochs, batch 64, lr 0.025 -> 0.001, "
             "wd 3e-4, arch lr 3e-4, reg_type l2, reg_scale 1e-3, k 1) and architect.py (Adam betas (0.5, 0.999); "
             "weight decay = reg_scale for l2, 0 for kl)")
DRNAS = with_darts({
    NB201: [
        recipe("drnas-201", DRNAS_201,
               settings(100, 64, 0.025, 0.001, 3e-4, arch_wd=None, reg_type="l2", reg_scale=1e-3, partial_channels=1)),
        recipe("drnas-201-progressive",
               "xiangning-chen/DrNAS 201-space/train_search_progressive.py (the README's 'with progressively "
               "pruning': 50 + 50 epochs, k 4 then 2, 5 then 3 ops per edge; otherwise as train_search.py)",
               settings(100, 64, 0.025, 0.001, 3e-4, arch_wd=None, reg_type="l2", reg_scale=1e-3,
                        progressive_k=[4, 2], progressive_keep=[5, 3])),
    ],
    DARTS_SPACE: [recipe(
        "drnas-darts",
        "xiangning-chen/DrNAS DARTS-space/train_search.py (C 36, 20 layers, batch 64, lr 0.1 -> 0, wd 3e-4, arch "
        "lr 6e-4, l2 1e-3; 25 + 25 epochs at k 6 then 4, 7 then 4 ops per edge) and DARTS-space/genotypes.py "
        "(no 'none' op)",
        {**settings(50, 64, 0.1, 0.0, 3e-4, arch_lr=6e-4, arch_wd=None, reg_type="l2", reg_scale=1e-3,
                    progressive_k=[6, 4], progressive_keep=[7, 4], none_op=False),
         "search_space.C": 36, "search_space.layers": 20})],
}, arch_wd=False)

PC_DARTS_SOURCE = ("yuhuixu1993/PC-DARTS train_search.py (50 epochs, batch 256, lr 0.1 -> 0, momentum 0.9, "
                   "wd 3e-4, arch lr 6e-4, wd 1e-3, architecture steps from epoch 15, k 4)")
PC_DARTS = with_darts({
    NB201: [recipe(
        "pc-darts",
        PC_DARTS_SOURCE + "; the paper gives no NB201 recipe: its CIFAR-10 search settings are used, the method's "
        "own (the NB201 row we compare to was run by the DrNAS authors, who publish no PC-DARTS script)",
        settings(50, 256, 0.1, 0.0, 3e-4, arch_lr=6e-4, k=4, warmup_epochs=15))],
    DARTS_SPACE: [recipe("pc-darts", PC_DARTS_SOURCE,
                         settings(50, 256, 0.1, 0.0, 3e-4, arch_lr=6e-4, k=4, warmup_epochs=15))],
})

FAIR_SOURCE = ("xiaomi-automl/FairDARTS fairdarts/train_search.py (50 epochs, batch 128, lr 0.005 -> 0.001, "
               "wd 3e-4, Adam 3e-3 betas (0.9, 0.999) wd 1e-3, aux_loss_weight 10, op_threshold 0.85, "
               "threshold_sparse parse) and fairdarts/genotypes.py (no 'none' op)")
FAIR_DARTS = with_darts({
    NB201: [recipe(
        "fair-darts",
        FAIR_SOURCE + "; the paper gives no NB201 recipe: its CIFAR-10 search settings are used, and an edge whose "
        "best weight stays under the threshold becomes 'none' (NB201's absent edge)",
        settings(50, 128, 0.005, 0.001, 3e-4, arch_lr=3e-3, arch_betas=(0.9, 0.999), zero_one_weight=10.0,
                 threshold=0.85))],
    DARTS_SPACE: [recipe("fair-darts", FAIR_SOURCE,
                         settings(50, 128, 0.005, 0.001, 3e-4, arch_lr=3e-3, arch_betas=(0.9, 0.999),
                                  zero_one_weight=10.0, threshold=0.85))],
})

SDARTS = with_darts({
    NB201: [recipe(
        "sdarts-201",
        "xiangning-chen/SmoothDARTS nasbench201/train_search.py (100 epochs, batch 64, lr 0.025 -> 0.001, "
        "wd 3e-4, arch lr 3e-4 wd 1e-3, epsilon 0.03 -> 0.3 over epoch / epochs) and attacker/perturb.py "
        "(PGD with the model in eval mode)",
        settings(100, 64, 0.025, 0.001, 3e-4, epsilon_min=0.03, epsilon_max=0.3))],
    DARTS_SPACE: [recipe(
        "sdarts-darts",
        "xiangning-chen/SmoothDARTS sota/cnn/train_search.py (50 epochs, batch 64, lr 0.025 -> 0.001, wd 3e-4, "
        "arch lr 3e-4 wd 1e-3, epsilon 0.03 -> 0.3)",
        settings(50, 64, 0.025, 0.001, 3e-4, epsilon_min=0.03, epsilon_max=0.3))],
})

DARTS_MINUS = with_darts({
    NB201: [recipe(
        "nb201",
        "Meituan-AutoML/DARTS- has no NB201 script; the paper's NB201 search keeps NB201's DARTS setting, so "
        "NB201's own DARTS config is used: " + XAUTODL_DARTS + "; auxiliary skip 1 -> 0 linearly",
        settings(50, 64, 0.025, 0.001, 5e-4, nesterov=True, aux_skip_start=1.0, aux_skip_decay="linear"))],
    DARTS_SPACE: [recipe(
        "darts-minus",
        "Meituan-AutoML/DARTS- src/search/args.py (50 epochs, batch 64, lr 0.025 -> 0.001, wd 3e-4, arch lr "
        "3e-4 wd 1e-3; skip_beta 1, linear decay: scripts/run_darts_minus.sh)",
        settings(50, 64, 0.025, 0.001, 3e-4, aux_skip_start=1.0, aux_skip_decay="linear"))],
})

BETA_DARTS = with_darts({
    NB201: [recipe(
        "beta-darts-201",
        "Sunshine-Ye/Beta-DARTS nasbench201/train_search.py (100 epochs, batch 64, lr 0.025 -> 0.001, wd 3e-4, "
        "arch lr 3e-4 wd 1e-3) and optimizers/darts/architect.py (lambda = 50 * epoch / 100)",
        settings(100, 64, 0.025, 0.001, 3e-4, beta_weight_start=0.0, beta_weight_end=50.0, beta_weight_epochs=100))],
    DARTS_SPACE: [recipe(
        "beta-darts-darts",
        "Sunshine-Ye/Beta-DARTS sota/cnn/train_search.py (50 epochs, batch 64, lr 0.025 -> 0.001, wd 3e-4, arch "
        "lr 3e-4 wd 1e-3) and optimizers/darts/architect.py (lambda = 50 * epoch / 100, so 24.5 at the last epoch)",
        settings(50, 64, 0.025, 0.001, 3e-4, beta_weight_start=0.0, beta_weight_end=50.0, beta_weight_epochs=100))],
})
