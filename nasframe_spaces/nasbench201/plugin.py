"""Plugin: the NAS-Bench-201 search space and its benchmark table."""
from __future__ import annotations

from nasframe_core import hookimpl

from .tables.codes import ENV_TABLE


def _table(path):
    from .tables import load_nb201_table

    return load_nb201_table(path)


_table.settings_help = {"path": f"the table file (--benchmark PATH, or ${ENV_TABLE})"}


@hookimpl
def nasframe_register_search_spaces(register):
    register("nasbench201", "nasframe_spaces.nasbench201.space:NasBench201SearchSpace", default=True,
             description="NAS-Bench-201 cell space: 6 edges x 5 ops, 15,625 cells")


@hookimpl
def nasframe_register_benchmarks(register):
    register(
        "nasbench201",
        _table,
        description="NAS-Bench-201 results (CSV, NASLib pickle or NATS-tss directory)",
        space="nasbench201",
        env=ENV_TABLE,
    )
