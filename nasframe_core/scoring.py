"""Scoring untrained networks with zero-cost proxies (``nasframe score``).

:class:`Scorer` builds the discrete network of a genotype once (the network ``nasframe train``
trains: the space's ``final_network``, else its discrete cells in ``build_network``), runs every
requested :class:`~nasframe_core.proxy.Proxy` on it through one
:class:`~nasframe_core.proxy.ProxyContext`, and frees it. Everything random about a cell (the
weights' initialisation, which training images form its batch, their crops and flips) is drawn
from generators seeded by ``(seed, genotype)``: a cell's scores do not depend on which other
cells are scored, or in which order, and the process's global generators are left untouched.

:func:`score_cells` scores a sample of cells and, with a benchmark table attached to the space,
rank-correlates each proxy with the table's accuracy (Spearman's rho and Kendall's tau-b, over
the cells whose score is finite).
"""
from __future__ import annotations

import csv
import gc
import json
import time
import zlib
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Optional, Sequence

import numpy as np
import torch
from torch import nn

from .config import PROXY_BATCH_SIZE as DEFAULT_BATCH_SIZE, PROXY_SEED as DEFAULT_SEED
from .errors import NasframeError
from .proxy import Proxy, ProxyContext
from .rundir import json_safe

if TYPE_CHECKING:  # pragma: no cover
    from .data import Augment, DatasetInfo, ImageData
    from .genotype import Genotype
    from .space import SearchSpace

#: what ``--accuracy`` may name: the benchmark metric the correlations use
ACCURACY_METRICS = ("valid", "test")


def build_untrained(space: "SearchSpace", genotype: "Genotype", *, num_classes: int, in_channels: int) -> nn.Module:
    """The discrete network of ``genotype``, freshly initialised, in training mode (the network
    ``nasframe train`` would train)."""
    final = getattr(space, "final_network", None)
    if final is not None:
        model = final(genotype, num_classes=num_classes, in_channels=in_channels)
    else:
        from .cells import discrete_cell_factory

        model = space.build_network(discrete_cell_factory(space.genotype_choices(genotype)),
                                    num_classes=num_classes, in_channels=in_channels, search=False)
    return model.train()


def cell_stream(genotype: Any) -> int:
    """A stable 32-bit number of a genotype (its string form), for per-cell seeds."""
    return zlib.crc32(str(genotype).encode())


def proxy_names(host, text: Optional[str]) -> list[str]:
    """The proxies named by ``--proxy`` (comma separated; ``all`` or nothing: every installed one)."""
    installed = host.names("proxy")
    if text is None or text.strip() in ("", "all"):
        if not installed:
            raise NasframeError("no proxy is installed; install a plugin that registers proxies (nasframe_proxies)")
        return installed
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise NasframeError(f"--proxy {text!r} names no proxy; installed: {', '.join(installed) or 'none'}")
    seen = []
    for n in names:
        host.get("proxy", n)  # an unknown name fails here, listing what is installed
        if n in seen:
            raise NasframeError(f"--proxy names {n!r} twice")
        seen.append(n)
    return seen


class Scorer:
    """Scores genotypes of ``space`` with ``proxies`` (name -> :class:`Proxy`).

    ``train``: the dataset's training split (uint8 images in memory), needed only when a proxy
    reads a batch; ``info``: the dataset's classes, channels and normalisation; ``augment``: the
    dataset's training augmentation, for proxies whose protocol augments.
    """

    def __init__(self, space: "SearchSpace", proxies: dict[str, Proxy], info: "DatasetInfo", *,
                 train: Optional["ImageData"] = None, augment: Optional["Augment"] = None,
                 batch_size: int = DEFAULT_BATCH_SIZE, seed: int = DEFAULT_SEED,
                 device: torch.device = torch.device("cpu")):
        from .data import Augment, Normalizer

        if batch_size < 2:
            raise NasframeError(f"--batch-size must be at least 2 for the proxies, got {batch_size}")
        self.space, self.proxies, self.info = space, dict(proxies), info
        self.batch_size, self.seed, self.device = int(batch_size), int(seed), device
        self.needs_batch = any(p.needs_batch for p in self.proxies.values())
        self.uses = frozenset(u for p in self.proxies.values() for u in p.uses)
        #: convolutions run fastest in channels-last layout on the CPU (2-3x on NB201 cells)
        self.memory_format = torch.channels_last if device.type == "cpu" else torch.contiguous_format
        self.max_batch = max([p.batch_size or self.batch_size for p in self.proxies.values() if p.needs_batch],
                             default=0)
        if self.needs_batch:
            if train is None:
                raise NasframeError("the proxies " + ", ".join(n for n, p in self.proxies.items() if p.needs_batch)
                                    + " need a dataset's training images; none were loaded")
            if len(train) < self.max_batch:
                raise NasframeError(f"the training split has {len(train)} images, fewer than the batch of "
                                    f"{self.max_batch} the proxies need; lower --batch-size")
        self.train = None if train is None else train.to(device)
        self.augment = augment if augment is not None else Augment()
        self.normalize = Normalizer(info, device) if self.needs_batch else None
        self.input_shape = (info.in_channels, info.image_size, info.image_size)
        #: seconds spent per proxy (and in building networks: ``"build"``), summed over cells
        self.seconds: dict[str, float] = {"build": 0.0, "batch": 0.0, **{n: 0.0 for n in self.proxies}}
        #: the same in CPU seconds of the process (all its threads): what an unshared machine would spend
        self.cpu_seconds: dict[str, float] = dict.fromkeys(self.seconds, 0.0)
        self.cells = 0

    def _batches(self, genotype) -> Callable[[int, bool], tuple[torch.Tensor, torch.Tensor]]:
        from .data import EpochBatches

        made: dict[bool, tuple[torch.Tensor, torch.Tensor]] = {}
        stream = cell_stream(genotype)

        def batch(n: int, augment: bool) -> tuple[torch.Tensor, torch.Tensor]:
            if n > self.max_batch:
                raise NasframeError(f"a proxy asked for a batch of {n}, more than the {self.max_batch} drawn")
            if augment not in made:
                t0, c0 = time.perf_counter(), time.process_time()
                # the same images for both: one order from (seed, cell); crops and flips on top
                epoch = EpochBatches(self.train, self.max_batch, seed=self.seed, epoch=stream, stream=4201,
                                     normalize=self.normalize, augment=self.augment if augment else None)
                x, y = epoch.batch(0)
                made[augment] = (x.contiguous(memory_format=self.memory_format), y)
                self.seconds["batch"] += time.perf_counter() - t0
                self.cpu_seconds["batch"] += time.process_time() - c0
            x, y = made[augment]
            return x[:n], y[:n]

        return batch

    def score(self, genotype: "Genotype") -> dict[str, float]:
        """Every proxy's value for ``genotype`` (NaN where a proxy's value is undefined)."""
        from .data import _mix

        t0, c0 = time.perf_counter(), time.process_time()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(_mix(self.seed, cell_stream(genotype), 4202) % 2**63)
            model = build_untrained(self.space, genotype, num_classes=self.info.num_classes,
                                    in_channels=self.info.in_channels)
            model = model.to(self.device, memory_format=self.memory_format)
        self.seconds["build"] += time.perf_counter() - t0
        self.cpu_seconds["build"] += time.process_time() - c0
        ctx = ProxyContext(model, input_shape=self.input_shape, num_classes=self.info.num_classes,
                           batch=self._batches(genotype) if self.needs_batch else None,
                           default_batch_size=self.batch_size, device=self.device, uses=self.uses)
        out: dict[str, float] = {}
        try:
            for name, proxy in self.proxies.items():
                t1, c1 = time.perf_counter(), time.process_time()
                value = proxy.score(ctx)
                model.zero_grad(set_to_none=True)
                self.seconds[name] += time.perf_counter() - t1
                self.cpu_seconds[name] += time.process_time() - c1
                out[name] = float(value) if value is not None else float("nan")
        finally:
            ctx.release()
            del model, ctx
        self.cells += 1
        return out


# ------------------------------------------------------------------------- samples
def sample_genotypes(space: "SearchSpace", n: Optional[int], seed: int) -> list["Genotype"]:
    """``n`` distinct genotypes drawn uniformly (the same ones for the same seed), or every
    genotype of the space when ``n`` is ``None`` (spaces whose cells keep every edge)."""
    if n is None:
        return all_genotypes(space)
    if n < 1:
        raise NasframeError(f"--sample must be at least 1, got {n}")
    rng = np.random.default_rng(seed)
    seen: dict[str, Any] = {}
    tries = 0
    while len(seen) < n:
        g = space.random_genotype(rng)
        seen.setdefault(str(g), g)
        tries += 1
        if tries > 50 * n + 1000:
            raise NasframeError(f"the {space.name} space yielded only {len(seen)} distinct cells in {tries} draws; "
                                f"lower --sample")
    return list(seen.values())


def all_genotypes(space: "SearchSpace", limit: int = 1_000_000) -> list["Genotype"]:
    """Every genotype of a space whose cells keep all their edges (NB201: 15,625)."""
    import itertools

    from .space import Choice

    specs = space.cell_specs()
    per_cell = []
    total = 1
    for name, spec in specs.items():
        if spec.keep_edges is not None and any(len(spec.in_edges[n]) > spec.keep_edges for n in spec.nodes):
            raise NasframeError(f"the {space.name} space chooses edges as well as ops; score a sample of it with --sample N")
        ops = space.choosable_ops(spec)
        total *= len(ops) ** len(spec.edges)
        per_cell.append((name, spec.edges, ops))
    if total > limit:
        raise NasframeError(f"the {space.name} space has {total} cells; score a sample of it with --sample N")
    out = []
    per_cell_choices = [
        [(name, [Choice(s, d, op) for (s, d), op in zip(edges, combo)]) for combo in itertools.product(ops, repeat=len(edges))]
        for name, edges, ops in per_cell
    ]
    for combo in itertools.product(*per_cell_choices):
        out.append(space.make_genotype(dict(combo)))
    return out


# ----------------------------------------------------------------------- statistics
def rank_correlations(scores: Sequence[float], accuracies: Sequence[float]) -> dict[str, Any]:
    """Spearman's rho and Kendall's tau-b of ``scores`` against ``accuracies`` over the cells
    whose score is defined (not NaN; an infinite score ranks first or last, as NASWOT's
    ``-inf`` for a singular kernel) and whose accuracy is known; ``n`` says how many."""
    from scipy import stats

    s = np.asarray(scores, dtype=np.float64)
    a = np.asarray(accuracies, dtype=np.float64)
    keep = ~np.isnan(s) & np.isfinite(a)
    n = int(keep.sum())
    if n < 3 or np.all(s[keep] == s[keep][0]):
        return {"spearman": None, "kendall": None, "n": n}
    rho = stats.spearmanr(s[keep], a[keep]).statistic
    tau = stats.kendalltau(s[keep], a[keep]).statistic
    return {"spearman": float(rho), "kendall": float(tau), "n": n}


# --------------------------------------------------------------------------- the run
def score_cells(scorer: Scorer, genotypes: Iterable["Genotype"], *, dataset: str, accuracy: str = "valid",
                progress: Optional[Callable[[int, int], None]] = None, workers: int = 1,
                on_row: Optional[Callable[[dict], None]] = None) -> dict[str, Any]:
    """Score ``genotypes``; with a benchmark on the space, correlate with its accuracy.

    Returns ``{"cells", "correlations", "seconds"}`` (``correlations`` empty without a table)
    plus ``rows`` (one dict per cell: genotype, the proxies' values, the table's test and
    validation accuracy), ``accuracy`` (the metric correlated), ``correlations_other`` (against
    the other accuracy column), ``defined_scores`` (cells whose score is not NaN, per proxy) and
    ``seconds_by_part`` / ``cpu_seconds_by_part``.

    ``workers > 1`` scores in that many processes of one thread each, every one with its own
    scorer rebuilt from ``scorer.recipe`` (plugins found through entry points); per-cell seeds
    make the scores those of one process, up to floating-point summation order. ``on_row`` is
    called with every row as it is scored (a CSV written as it goes survives an interrupt).
    """
    from .benchmark import TEST_ACCURACY, VALID_ACCURACY

    if accuracy not in ACCURACY_METRICS:
        raise NasframeError(f"--accuracy must be one of {', '.join(ACCURACY_METRICS)}, got {accuracy!r}")
    if workers < 1:
        raise NasframeError(f"--workers must be at least 1, got {workers}")
    space = scorer.space
    genotypes = list(genotypes)
    t0 = time.perf_counter()
    rows = []
    if workers > 1 and len(genotypes) > 1:
        scored = _score_in_workers(scorer, genotypes, workers, progress)
    else:
        scored = ((g, scorer.score(g)) for g in genotypes)
    for i, (g, values) in enumerate(scored):
        row: dict[str, Any] = {"genotype": str(g), **values}
        row["test_accuracy"] = space.query(g, dataset, TEST_ACCURACY)
        row["valid_accuracy"] = space.query(g, dataset, VALID_ACCURACY)
        rows.append(row)
        if on_row is not None:
            on_row(row)
        if progress is not None:
            progress(i + 1, len(genotypes))
        if (i + 1) % 50 == 0:
            gc.collect()
    seconds = time.perf_counter() - t0
    metric = f"{accuracy}_accuracy"
    other = "valid_accuracy" if accuracy == "test" else "test_accuracy"
    correlations: dict[str, dict] = {}
    correlations_other: dict[str, dict] = {}
    if any(r[metric] is not None for r in rows):
        for name in scorer.proxies:
            scores = [r[name] for r in rows]
            c = rank_correlations(scores, [np.nan if r[metric] is None else r[metric] for r in rows])
            correlations[name] = {"spearman": c["spearman"], "kendall": c["kendall"]}
            if any(r[other] is not None for r in rows):
                o = rank_correlations(scores, [np.nan if r[other] is None else r[other] for r in rows])
                correlations_other[name] = {"spearman": o["spearman"], "kendall": o["kendall"], "n": o["n"]}
    defined = {name: int((~np.isnan(np.asarray([r[name] for r in rows], dtype=float))).sum())
               for name in scorer.proxies}
    return {
        "cells": len(rows),
        "correlations": correlations,
        "seconds": round(seconds, 3),
        "accuracy": metric if correlations else None,
        "correlations_other": {other: correlations_other} if correlations_other else {},
        "defined_scores": defined,
        "seconds_by_part": {k: round(v, 3) for k, v in scorer.seconds.items()},
        "cpu_seconds_by_part": {k: round(v, 3) for k, v in scorer.cpu_seconds.items()},
        "rows": rows,
    }


_WORKER: dict = {}


def _worker_init(recipe: dict) -> None:
    torch.set_num_threads(1)
    from .plugins import make_plugin_manager

    host = make_plugin_manager(warn=lambda line: None)
    space = host.create("search_space", recipe["search_space"], **recipe["search_space_settings"])
    _WORKER["scorer"] = make_scorer(host, space, recipe["proxies"], dataset=recipe["dataset"],
                                    dataset_settings=recipe["dataset_settings"], data_dir=recipe["data_dir"],
                                    batch_size=recipe["batch_size"], seed=recipe["seed"],
                                    device=torch.device(recipe["device"]))


def _worker_score(text: str) -> tuple[str, dict, dict, dict]:
    scorer: Scorer = _WORKER["scorer"]
    before, before_cpu = dict(scorer.seconds), dict(scorer.cpu_seconds)
    values = scorer.score(scorer.space.parse_genotype(text))
    return (text, values, {k: v - before.get(k, 0.0) for k, v in scorer.seconds.items()},
            {k: v - before_cpu.get(k, 0.0) for k, v in scorer.cpu_seconds.items()})


def _score_in_workers(scorer: Scorer, genotypes: list, workers: int, progress):
    import multiprocessing

    recipe = getattr(scorer, "recipe", None)
    if recipe is None:
        raise NasframeError("scoring in several processes needs a scorer made by make_scorer")
    by_text = {str(g): g for g in genotypes}
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(workers, initializer=_worker_init, initargs=(recipe,)) as pool:
        for text, values, seconds, cpu in pool.imap(_worker_score, list(by_text), chunksize=2):
            for k, v in seconds.items():
                scorer.seconds[k] = scorer.seconds.get(k, 0.0) + v
            for k, v in cpu.items():
                scorer.cpu_seconds[k] = scorer.cpu_seconds.get(k, 0.0) + v
            scorer.cells += 1
            yield by_text[text], values


class RowWriter:
    """Writes the rows of a ``.csv`` output as they are scored (nothing for ``.json``)."""

    def __init__(self, path: Optional[Path], proxies: Sequence[str]):
        self.fields = ["genotype", *proxies, "test_accuracy", "valid_accuracy"]
        self.path = None if path is None or Path(path).suffix.lower() != ".csv" else Path(path).expanduser()
        self._file = None
        if self.path is not None:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._file = open(self.path, "w", newline="")
            except OSError as exc:
                raise NasframeError(f"cannot write {self.path}: {exc.strerror or exc}; pass a writable --out FILE") from None
            self._csv = csv.DictWriter(self._file, fieldnames=self.fields)
            self._csv.writeheader()

    def __call__(self, row: dict) -> None:
        if self._file is not None:
            self._csv.writerow({k: ("" if row.get(k) is None else row[k]) for k in self.fields})
            self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def write_scores(result: dict, path: Path, settings: dict) -> list[Path]:
    """``.csv``: one row per cell, and the summary beside it as ``<name>.json``; otherwise one
    JSON document holding both."""
    path = Path(path).expanduser()
    summary = {k: v for k, v in result.items() if k not in ("rows", "rows_written")}
    summary["settings"] = settings
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.suffix.lower() == ".csv":
            if not result.get("rows_written"):
                writer = RowWriter(path, settings["proxies"])
                for r in result["rows"]:
                    writer(r)
                writer.close()
            side = path.with_suffix(".json")
            side.write_text(json.dumps(json_safe({**summary, "scores_csv": path.name}), indent=2) + "\n")
            return [path, side]
        path.write_text(json.dumps(json_safe({**summary, "rows": result["rows"]}), indent=1) + "\n")
        return [path]
    except OSError as exc:
        raise NasframeError(f"cannot write {path}: {exc.strerror or exc}; pass a writable --out FILE") from None



def read_scores(path: Path) -> Optional[dict]:
    """A score output (a ``.json`` from ``--out``, a ``.csv`` with its summary beside it, or a
    directory holding one) as ``{"settings", "rows", ...}``; ``None`` when ``path`` is none."""
    path = Path(path).expanduser()
    if path.is_dir():
        found = sorted(p for p in path.glob("*.json") if _is_summary(p))
        if not found:
            return None
        path = found[0]
    if path.suffix.lower() == ".csv":
        side = path.with_suffix(".json")
        data = _load_json(side) if side.is_file() else None
        if data is None or "settings" not in data:
            return None
        return {**data, "rows": _read_csv(path, data["settings"]["proxies"])}
    if path.suffix.lower() == ".json" and path.is_file():
        data = _load_json(path)
        if not data or "settings" not in data or "cells" not in data:
            return None
        if "rows" not in data and data.get("scores_csv"):
            data["rows"] = _read_csv(path.parent / data["scores_csv"], data["settings"]["proxies"])
        return data
    return None


def _is_summary(p: Path) -> bool:
    data = _load_json(p)
    return bool(data) and "settings" in data and "cells" in data


def _load_json(p: Path) -> Optional[dict]:
    try:
        data = json.loads(p.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _read_csv(path: Path, proxies: Sequence[str]) -> list[dict]:
    rows = []
    with open(path, newline="") as f:
        for r in csv.DictReader(f):
            row: dict[str, Any] = {"genotype": r["genotype"]}
            for k in [*proxies, "test_accuracy", "valid_accuracy"]:
                v = r.get(k, "")
                row[k] = float(v) if v not in ("", None) else None
            rows.append(row)
    return rows


# ----------------------------------------------------------------- set-up from names
def dataset_source(host, name: str, settings: Optional[dict] = None, data_dir: Optional[str] = None):
    """The dataset plugin's source for ``name``, given ``--data-dir`` as ``nasframe run`` does."""
    from .settings import factory_settings

    settings = dict(settings or {})
    if data_dir is not None:
        if "data_dir" not in factory_settings(host.get("dataset", name).factory):
            raise NasframeError(f"dataset {name!r} takes no --data-dir")
        settings["data_dir"] = data_dir
    return host.create("dataset", name, **settings)


def make_scorer(host, space: "SearchSpace", names: Sequence[str], *, dataset: str,
                space_settings: Optional[dict] = None, space_name: Optional[str] = None,
                dataset_settings: Optional[dict] = None, data_dir: Optional[str] = None,
                batch_size: int = DEFAULT_BATCH_SIZE, seed: int = DEFAULT_SEED,
                device: torch.device = torch.device("cpu")) -> Scorer:
    """A :class:`Scorer` for the named proxies; the dataset is loaded only when one of them
    reads a batch."""
    from .datasets import dataset_info

    proxies = {n: host.create("proxy", n) for n in names}
    source = dataset_source(host, dataset, dataset_settings, data_dir)
    info = dataset_info(source)
    train = None
    if any(p.needs_batch for p in proxies.values()):
        train = source.load().train
    scorer = Scorer(space, proxies, info, train=train, augment=getattr(source, "augment", None),
                    batch_size=batch_size, seed=seed, device=device)
    #: what a worker process needs to build the same scorer
    scorer.recipe = {
        "search_space": space_name or space.name, "search_space_settings": dict(space_settings or {}), "proxies": list(names),
        "dataset": dataset, "dataset_settings": dict(dataset_settings or {}), "data_dir": data_dir,
        "batch_size": batch_size, "seed": seed, "device": str(device),
    }
    return scorer
