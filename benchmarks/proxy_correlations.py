"""The correlation table of one or more ``nasframe score`` CSV outputs of the same sample.

    python benchmarks/proxy_correlations.py scores.csv [more.csv ...] [--first N]

Rows are matched by genotype (several runs may score different proxies of one sample); each
proxy is correlated over the cells it scored (its first N with ``--first``), against both
accuracy columns, with ``nasframe_core.scoring.rank_correlations`` (NaN scores left out,
infinite ones ranked). Published |Spearman| values (NB201 CIFAR-10, all 15,625 cells) are shown
beside them: Abdelfattah et al. (ICLR 2021) for the six pruning-at-initialisation proxies and the
baselines, Mellor et al. (ICML 2021) for NASWOT as the issue quotes it.
"""
from __future__ import annotations

import csv
import sys

from nasframe_core.scoring import rank_correlations

PUBLISHED = {"grad_norm": 0.594, "snip": 0.596, "grasp": 0.514, "fisher": 0.36, "synflow": 0.737,
             "jacob_cov": 0.731, "naswot": 0.78}


def _f(v):
    return float(v) if v not in ("", None) else float("nan")


def main(argv: list[str]) -> int:
    first = None
    if "--first" in argv:
        i = argv.index("--first")
        first = int(argv[i + 1])
        argv = argv[:i] + argv[i + 2:]
    if not argv:
        print(__doc__)
        return 2
    columns: dict[str, list[tuple[float, float, float]]] = {}
    for path in argv:
        with open(path, newline="") as f:
            for row in csv.DictReader(f):
                for k, v in row.items():
                    if k in ("genotype", "test_accuracy", "valid_accuracy"):
                        continue
                    columns.setdefault(k, []).append((_f(v), _f(row["valid_accuracy"]), _f(row["test_accuracy"])))
    print(f"{'proxy':10s} {'cells':>5s}  {'rho valid':>9s} {'tau valid':>9s}  {'rho test':>8s} {'tau test':>8s}"
          f"  {'published |rho|':>15s}")
    for name, vals in columns.items():
        vals = vals[:first] if first else vals
        s = [v[0] for v in vals]
        cv = rank_correlations(s, [v[1] for v in vals])
        ct = rank_correlations(s, [v[2] for v in vals])
        pub = f"{PUBLISHED[name]:.3f}" if name in PUBLISHED else "-"
        print(f"{name:10s} {len(vals):5d}  {cv['spearman']:+9.3f} {cv['kendall']:+9.3f}  {ct['spearman']:+8.3f} "
              f"{ct['kendall']:+8.3f}  {pub:>15s}   (defined: {cv['n']})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
