"""Plugin: the differentiable family and its answers to the core's search-phase hooks.

The step, adaptation and discretization hooks answer for every :class:`OneShotOptimizer`,
so a third-party method built on the engine needs to register only its name.

The reporting hooks say how sure a search is, from the op weights (``alphas``) that any
optimizer may put in its ``epoch_report``: edge margins in ``metrics.jsonl``, the epoch line
and ``result.json``, warnings about the found cell, and ``alphas.png`` (see
:mod:`nasframe_darts.diagnostics`). They import nothing heavy until a run has weights to judge.
"""
from __future__ import annotations

from nasframe_core import hookimpl


def _owns(optimizer) -> bool:
    from .engine import OneShotOptimizer

    return isinstance(optimizer, OneShotOptimizer)


@hookimpl
def nasframe_register_optimizers(register):
    from .family import METHODS

    for name, (path, description) in METHODS.items():
        # DARTS is what `nasframe run` searches with when no optimizer is named
        register(name, path, description=description, default=name == "darts")


@hookimpl
def nasframe_adapt_search_space(optimizer, search_space, dataset):
    if _owns(optimizer):
        optimizer.adapt_search_space(search_space, dataset)
        return True
    return None


@hookimpl
def nasframe_step(optimizer, data_train, data_val):
    if _owns(optimizer):
        return optimizer.step(data_train, data_val)
    return None


@hookimpl
def nasframe_discretize(optimizer):
    if _owns(optimizer):
        return optimizer.get_genotype()
    return None


@hookimpl
def nasframe_search_start(run):
    """Say, before the first epoch, what the optimizer notes about the planned run (e.g. an
    architecture that a warm-up longer than the run keeps frozen)."""
    import logging

    optimizer = run.optimizer
    if not _owns(optimizer) or run.epoch:
        return
    for line in optimizer.start_notes(run.config.run.epochs):
        logging.getLogger("nasframe").warning("warning: %s", line)


# ----------------------------------------------------------------------------- reports
@hookimpl
def nasframe_epoch_metrics(run, metrics):
    """``edge_margins`` beside the epoch's ``alphas``."""
    alphas = metrics.get("alphas")
    if not isinstance(alphas, dict):
        return None
    from .diagnostics import edge_margins

    return {"edge_margins": edge_margins(alphas, run.space.cell_specs())}


@hookimpl
def nasframe_epoch_line(metrics):
    from .diagnostics import epoch_words

    return epoch_words(metrics)


@hookimpl
def nasframe_result_entries(run, genotype):
    """``edge_margins`` (when the optimizer reports op weights) and ``warnings`` about the cell."""
    from .diagnostics import result_entries

    return result_entries(run.space, genotype, run.optimizer.epoch_report().get("alphas"))


@hookimpl
def nasframe_summary_lines(result, last_epoch, space):
    from .diagnostics import report_lines

    return report_lines(result, last_epoch, space)


@hookimpl
def nasframe_plot_run(metrics, out, space):
    if not any(isinstance(m.get("alphas"), dict) for m in metrics):
        return None  # nothing to draw: matplotlib stays unloaded
    from .alpha_plots import plot_alphas

    return plot_alphas(metrics, out, space.cell_specs() if space is not None else None)
