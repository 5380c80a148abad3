"""Running a search from Python (a notebook, a script) and getting a result object.

:func:`search` runs what ``nasframe run`` runs (the same configuration path: the optimizer's
search recipe for the space, then the settings; unnamed plugins are the installed defaults), with
the same run directory, and returns a :class:`SearchResult`::

    from nasframe_core.api import search

    result = search(epochs=2, settings={"search_space.C": 4, "search_space.N": 1, "run.steps_per_epoch": 5})
    result.genotype        # the found cell, a Genotype of the space
    result.alphas          # one-shot searches: the op weights per cell type
    result.history         # black-box searches: every evaluation
    result.test_accuracy   # the benchmark's test accuracy, or None (result.benchmark_note says why)

``settings`` takes the keys of ``--set`` (``optimizer.unrolled``, ``search_space.C``, ``run.lr_min``,
...); ``nasframe plugins --settings`` lists them. Bad input raises :class:`~nasframe_core.errors.NasframeError`
with the one-line message the command prints.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Optional

import attrs


@attrs.frozen
class SearchResult:
    """What a finished search leaves, read back from its ``result.json``."""

    #: the run directory (``config.yaml``, ``metrics.jsonl``, ``result.json``, ...)
    run_dir: Optional[Path]
    #: the found architecture, parsed by the search space (``str(genotype)`` is its benchmark key)
    genotype: Any
    #: one-shot searches: the final architecture weights by name, rows = edges, columns = ops
    #: (``raw["alphas_softmax"]`` holds their softmax; ``None`` for black-box searches)
    alphas: Optional[dict]
    #: black-box searches: every evaluation in order (``None`` for one-shot searches)
    history: Optional[list]
    #: the benchmark's numbers for the genotype (name, dataset, test and validation accuracy), or ``None``
    benchmark: Optional[dict]
    #: why there are no benchmark numbers (``None`` when there are)
    benchmark_note: Optional[str]
    #: the whole ``result.json``
    raw: dict

    @property
    def test_accuracy(self) -> Optional[float]:
        """The benchmark's test accuracy of :attr:`genotype`, or ``None`` (see :attr:`benchmark_note`)."""
        return (self.benchmark or {}).get("test_accuracy")


def search(optimizer: Optional[str] = None, search_space: Optional[str] = None, dataset: Optional[str] = None, *,
           epochs: Optional[int] = None, seed: Optional[int] = None, benchmark: Optional[str] = None,
           settings: Optional[Mapping[str, Any]] = None, out: Optional[str] = None, quiet: bool = True,
           host=None) -> SearchResult:
    """Run a search as ``nasframe run`` does and return its :class:`SearchResult`.

    ``benchmark``: the table's path (default: the benchmark's environment variable, e.g.
    ``NASFRAME_NB201``). ``out``: the run directory (default ``runs/run-<time>``). ``quiet``: no
    progress lines (``log.txt`` is written either way). ``host``: a plugin host
    (:func:`~nasframe_core.plugins.make_plugin_manager`; default: every installed plugin).
    """
    from .parser import build_parser, config_from_args
    from .engine import execute
    from .plugins import make_plugin_manager

    host = host if host is not None else make_plugin_manager()
    argv = ["run"]
    for flag, value in (("--optimizer", optimizer), ("--search-space", search_space), ("--dataset", dataset),
                        ("--epochs", epochs), ("--seed", seed), ("--benchmark", benchmark)):
        if value is not None:
            argv += [flag, str(value)]
    for key, value in (settings or {}).items():
        text = ("true" if value else "false") if isinstance(value, bool) else str(value)
        argv += ["--set", f"{key}={text}"]
    cfg = config_from_args(host, build_parser(host).parse_args(argv), "run")
    from .rundir import default_run_dir

    run_dir = Path(out) if out is not None else default_run_dir("run")
    raw = execute(cfg, host, out=run_dir, quiet=quiet)
    return _result(host, cfg, raw, run_dir)


def _result(host, cfg, raw: dict, run_dir: Path) -> SearchResult:
    space = host.create("search_space", cfg.search_space.name, **cfg.search_space.settings)
    genotype = space.parse_genotype(raw["genotype"]) if raw.get("genotype") else None
    bench = raw.get("benchmark")
    note = None
    if not bench or bench.get("test_accuracy") is None:
        note = space.no_statistics_reason(raw.get("dataset")) or "the benchmark table holds no test accuracy here"
    alphas = raw.get("alphas")
    if isinstance(alphas, list) and len(raw.get("alpha_names") or ()) == len(alphas):
        alphas = dict(zip(raw["alpha_names"], alphas))
    return SearchResult(run_dir=run_dir, genotype=genotype, alphas=alphas, history=raw.get("history"),
                        benchmark=bench, benchmark_note=note, raw=raw)

