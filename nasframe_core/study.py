"""Studies: a grid of runs (methods x seeds x datasets x any setting), each an ordinary run
directory, run on the executors, aggregated into mean ± std tables.

A study file (YAML or TOML)::

    grid:
      optimizer: [re, rs, reinforce]
      seed: 0-499                 # a list, or a range "A-B" (both ends included)
      dataset: [cifar10, cifar100, ImageNet16-120]
      optimizer.time_budget: [12000]   # any setting, as --set spells it
    search_space: {name: nasbench201}   # fixed settings: the sections of a config file
    run: {epochs: 50}

``nasframe sweep STUDY`` makes the study directory (``--out DIR``, default
``studies/<name>-<time>``): ``study.yaml`` (the study as given), ``config.yaml`` (its fixed
settings), one run directory per point, named by its point (``optimizer=re,dataset=cifar10,seed=0``),
and ``points.jsonl`` (one line per point that ended: ``ok`` or ``failed`` with its reason).
Every point's configuration goes through the same path as ``nasframe run --config config.yaml
--optimizer ... --set ...``, and is checked before any point starts. Table-scored points
(a black-box optimizer on a space whose benchmark table is attached) run in this process, one
after the other; the others run on the executor (``serial``: here, one at a time; ``ray``: one
point per Ray task, at most ``--workers`` at once, one GPU each where there are GPUs). A point
whose worker dies is started again from its last checkpoint. ``--resume DIR`` skips the finished
points and resumes the interrupted ones from their checkpoints.
"""
from __future__ import annotations

import itertools
import json
import logging
import os
import re
import socket
import sys
import time
from pathlib import Path
from typing import Any, Optional

from .errors import NasframeError

STUDY_FILE = "study.yaml"
FIXED_CONFIG = "config.yaml"
POINTS = "points.jsonl"
#: top-level keys of a study file besides the config sections
STUDY_KEYS = ("name", "description", "grid")
#: grid keys that map to command-line flags
FLAG_KEYS = {"optimizer": "--optimizer", "dataset": "--dataset", "seed": "--seed", "search_space": "--search-space"}

log = logging.getLogger("nasframe.study")


# ------------------------------------------------------------------------ the study file
def parse_seeds(value: Any) -> list[int]:
    """``0-499``, ``7``, ``[0, 1, 2]`` or ``"0-4,10"`` as a list of seeds."""
    if isinstance(value, bool):
        raise NasframeError(f"study grid 'seed' must be whole numbers or a range such as 0-499, got {value!r}")
    if isinstance(value, int):
        return [value]
    if isinstance(value, (list, tuple)):
        out: list[int] = []
        for v in value:
            out.extend(parse_seeds(v))
        return out
    text = str(value).strip()
    out = []
    for part in text.split(","):
        part = part.strip()
        m = re.fullmatch(r"(\d+)\s*-\s*(\d+)", part)
        if m:
            a, b = int(m.group(1)), int(m.group(2))
            if b < a:
                raise NasframeError(f"study grid 'seed': the range {part!r} ends before it starts; write it as {b}-{a}")
            out.extend(range(a, b + 1))
        elif re.fullmatch(r"\d+", part):
            out.append(int(part))
        else:
            raise NasframeError(f"study grid 'seed': {part!r} is not a seed or a range such as 0-499")
    return out


class Study:
    """A parsed study: its fixed settings and its points (``[(name, {key: value})]``)."""

    def __init__(self, data: dict, origin: str):
        from .config import SECTIONS

        self.origin = origin
        self.data = data
        unknown = [k for k in data if k not in STUDY_KEYS and k not in SECTIONS and k != "genotype"]
        if unknown:
            raise NasframeError(f"{origin}: unknown key {unknown[0]!r}; a study has {', '.join(STUDY_KEYS)} and the "
                                f"config sections {', '.join(SECTIONS)}")
        grid = data.get("grid")
        if not isinstance(grid, dict) or not grid:
            raise NasframeError(f"{origin}: the study needs a non-empty 'grid' mapping of settings to lists, "
                                f"e.g. grid: {{optimizer: [re, rs], seed: 0-4}}")
        self.name = str(data.get("name") or Path(origin).stem)
        if not re.fullmatch(r"[\w.-]+", self.name):
            raise NasframeError(f"{origin}: the study name {self.name!r} may hold letters, digits, '.', '-' and '_' only")
        self.fixed = {k: v for k, v in data.items() if k not in STUDY_KEYS}
        axes = []
        for key, values in grid.items():
            key = str(key)
            if key == "seed":
                values = parse_seeds(values)
            elif not isinstance(values, (list, tuple)):
                values = [values]
            if key in PLUGIN_KEYS:
                values = [Variant.of(v, key, origin) for v in values]
            if not values:
                raise NasframeError(f"{origin}: grid key {key!r} has no values; give at least one")
            if "." not in key and key not in FLAG_KEYS:
                raise NasframeError(f"{origin}: unknown grid key {key!r}; use optimizer, dataset, seed, search_space "
                                    f"or a setting as --set spells it (section.key)")
            axes.append((key, list(values)))
        self.keys = [k for k, _ in axes]
        self.points = []
        seen = set()
        for combo in itertools.product(*(v for _, v in axes)):
            values = dict(zip(self.keys, combo))
            name = ",".join(f"{k}={_text(v)}" for k, v in values.items())
            if name in seen:
                raise NasframeError(f"{origin}: grid point {name} appears twice; remove the repeated value")
            seen.add(name)
            self.points.append((name, values))

    @classmethod
    def load(cls, path: Path) -> "Study":
        from .config import load_config_file

        return cls(load_config_file(path), str(path))


PLUGIN_KEYS = ("optimizer", "search_space", "dataset")


class Variant:
    """A plugin named in a grid with settings of its own: ``{name: myopt, label: myopt-2nd,
    unrolled: true}`` (the label names the point and its row; default: the name)."""

    def __init__(self, name: str, label: str, settings: dict):
        self.name, self.label, self.settings = name, label, settings

    @classmethod
    def of(cls, value: Any, key: str, origin: str) -> "Variant":
        if isinstance(value, dict):
            body = dict(value)
            name = body.pop("name", None)
            if not name:
                raise NasframeError(f"{origin}: a grid entry of {key!r} given as a mapping needs its 'name'")
            label = str(body.pop("label", name))
            if not re.fullmatch(r"[\w.:-]+", label):
                raise NasframeError(f"{origin}: grid label {label!r} may hold letters, digits, '.', ':', '-', '_' only")
            return cls(str(name), label, body)
        return cls(str(value), str(value), {})

    def __str__(self) -> str:
        return self.label

    def __eq__(self, other) -> bool:
        return isinstance(other, Variant) and (self.name, self.label, self.settings) == (
            other.name, other.label, other.settings)

    def __hash__(self) -> int:
        return hash((self.name, self.label))


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def point_argv(config_file: Path, values: dict, out: Optional[Path] = None) -> list[str]:
    """The ``nasframe run`` command line of one point."""
    argv = ["run", "--config", str(config_file)]
    for key, value in values.items():
        if isinstance(value, Variant):
            argv += [FLAG_KEYS[key], value.name]
            argv += [a for k, v in value.settings.items() for a in ("--set", f"{key}.{k}={_text(v)}")]
        elif key in FLAG_KEYS:
            argv += [FLAG_KEYS[key], _text(value)]
        else:
            argv += ["--set", f"{key}={_text(value)}"]
    if out is not None:
        argv += ["--out", str(out)]
    return argv + ["--quiet"]


def point_config(host, config_file: Path, values: dict, parser=None):
    """The resolved configuration of one point, exactly as ``nasframe run`` would build it
    (``parser``: the command's parser, built once for a whole study)."""
    from .parser import build_parser, config_from_args

    args = (parser or build_parser(host)).parse_args(point_argv(config_file, values))
    return config_from_args(host, args, "run")


# ------------------------------------------------------------------------ running
def _table_scored(host, cfg) -> bool:
    """Whether the point's search is scored from a benchmark table (so it runs in-process)."""
    from .benchmark import open_benchmark
    from .blackbox import BlackBoxOptimizer

    factory = host.get("optimizer", cfg.optimizer.name).factory
    if not (isinstance(factory, type) and issubclass(factory, BlackBoxOptimizer)):
        return False
    space_cls = host.get("search_space", cfg.search_space.name).factory
    name = getattr(space_cls, "benchmark_name", None)
    if name is None or name not in host.names("benchmark"):
        return False
    try:
        return open_benchmark(host, name, cfg.run.benchmark) is not None
    except NasframeError:
        return False


def _finished(run_dir: Path) -> bool:
    return (run_dir / "result.json").exists()


def _resumable(run_dir: Path) -> bool:
    return (run_dir / "checkpoint.pt").exists()


def _record(study_dir: Path, name: str, status: str, error: Optional[str] = None, timing: Optional[dict] = None) -> None:
    """A line of ``points.jsonl``: the point, its status and error, and where and when it ran
    (``worker``; ``started`` and ``finished`` in seconds since this sweep began)."""
    entry = {"point": name, "status": status, **({"error": error} if error else {}), **(timing or {})}
    with open(study_dir / POINTS, "a", encoding="utf-8") as f:
        f.write(json.dumps(entry) + "\n")


def _worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _timing(worker: str, started: float, finished: float, wall0: float) -> dict:
    """Where a point ran, and when (wall-clock times, as seconds since the sweep began at ``wall0``)."""
    return {"worker": worker, "started": round(started - wall0, 3), "finished": round(finished - wall0, 3)}


def _run_point(host, cfg, run_dir: Path) -> None:
    """One point in this process: resumed from its checkpoint, or started afresh (a directory
    left without a checkpoint by a point killed at its start is started again)."""
    from .engine import execute

    if run_dir.exists() and not _resumable(run_dir):
        import shutil

        shutil.rmtree(run_dir)
    if run_dir.exists():
        from .parser import build_parser, config_from_args

        args = build_parser(host).parse_args(["run", "--resume", str(run_dir), "--quiet"])
        cfg = config_from_args(host, args, "run")
        execute(cfg, host, resume=run_dir, quiet=True, summary=False, durable=False)
    else:
        execute(cfg, host, out=run_dir, quiet=True, summary=False, durable=False)


def _point_task(study_dir: str, name: str, values: dict, threads: int) -> dict:
    """A Ray task: one point in a worker process (resumed from its checkpoint when it has one);
    returns its error (``None``), the worker and the wall-clock times it started and finished."""
    import torch

    from .plugins import make_plugin_manager

    started = time.time()
    torch.set_num_threads(max(1, int(threads)))
    host = make_plugin_manager(warn=lambda line: None)
    study = Path(study_dir)
    cfg = point_config(host, study / FIXED_CONFIG, values)
    try:
        _run_point(host, cfg, study / name)
        error = None
    except NasframeError as exc:
        error = str(exc)
    return {"error": error, "worker": _worker_name(), "started": started, "finished": time.time()}


def run_study(host, study: Study, study_dir: Path, *, executor: str = "serial", workers: int = 1,
              address: Optional[str] = None, resume: bool = False) -> dict:
    """Run every point of ``study`` not finished yet; return counts."""
    if executor not in ("serial", "ray"):
        raise NasframeError(f"nasframe sweep runs points serially or on Ray; --executor {executor!r} is neither")
    if workers < 1:
        raise NasframeError(f"--workers must be at least 1, got {workers}")
    study_dir.mkdir(parents=True, exist_ok=True)
    config_file = study_dir / FIXED_CONFIG
    if not resume:
        from .config import dump_config

        config_file.write_text(dump_config(study.fixed))
    # every point checked before any starts: a typo fails at once, in one line
    configs = {}
    built: set = set()
    from .parser import build_parser

    parser = build_parser(host)
    for name, values in study.points:
        try:
            cfg = configs[name] = point_config(host, config_file, values, parser)
            # the plugins' own checks of their settings (constructors build nothing heavy)
            for kind in ("optimizer", "search_space", "dataset"):
                choice = getattr(cfg, kind)
                key = (kind, choice.name, json.dumps(choice.settings, sort_keys=True, default=str))
                if key not in built:
                    host.create(kind, choice.name, **choice.settings)
                    built.add(key)
        except NasframeError as exc:
            raise NasframeError(f"study point {name}: {exc}") from None
    scored = {n: _table_scored(host, c) for n, c in configs.items()}
    for name, cfg in configs.items():
        if cfg.run.evaluator == "table" and not scored[name]:
            raise NasframeError(f"study point {name}: run.evaluator is table, but no benchmark table is attached to "
                                f"space {cfg.search_space.name!r}; pass it as run.benchmark in the study or set its "
                                f"environment variable (NASFRAME_NB201 for nasbench201)")
    todo = [(n, v) for n, v in study.points if not _finished(study_dir / n)]
    print(f"study {study.name}: {len(study.points)} points in {study_dir}, {len(study.points) - len(todo)} done before",
          file=sys.stderr, flush=True)
    t0, wall0 = time.perf_counter(), time.time()
    done = failed = 0
    local = [(n, v) for n, v in todo if executor == "serial" or scored[n]]
    remote = [(n, v) for n, v in todo if (n, v) not in local]
    total = len(todo)
    step = max(1, total // 20)

    def progress():
        if (done + failed) % step == 0 or done + failed == total:
            print(f"study {study.name}: {done + failed}/{total} points ({failed} failed), "
                  f"{time.perf_counter() - t0:.1f} s", file=sys.stderr, flush=True)

    for name, values in local:
        started = time.time()
        try:
            _run_point(host, configs[name], study_dir / name)
            _record(study_dir, name, "ok", timing=_timing(_worker_name(), started, time.time(), wall0))
            done += 1
        except NasframeError as exc:
            _record(study_dir, name, "failed", str(exc), timing=_timing(_worker_name(), started, time.time(), wall0))
            failed += 1
        except KeyboardInterrupt as exc:
            exc.run_dir = None  # type: ignore[attr-defined]
            raise StudyInterrupted(study_dir) from None
        progress()
    if remote:
        d, f = _run_on_ray(study_dir, remote, workers, address, wall0)
        done, failed = done + d, failed + f
        for name, _ in remote:
            progress()
    return {"points": len(study.points), "ran": total, "ok": done, "failed": failed,
            "skipped": len(study.points) - total, "seconds": round(time.perf_counter() - t0, 2)}


class StudyInterrupted(KeyboardInterrupt):
    def __init__(self, study_dir: Path):
        super().__init__()
        self.study_dir = study_dir


def _run_on_ray(study_dir: Path, points: list, workers: int, address: Optional[str], wall0: float) -> tuple[int, int]:
    """Points as Ray tasks, at most ``workers`` at once; a point whose worker died starts again
    from its checkpoint (twice at most), then is recorded as failed."""
    from .executors import RAY_HINT

    try:
        import ray
    except ImportError:
        raise NasframeError(f"--executor ray needs Ray, which is not installed; {RAY_HINT}") from None
    owns = not ray.is_initialized()
    if owns:
        ray.init(address=address or os.environ.get("RAY_ADDRESS") or None, include_dashboard=False,
                 log_to_driver=False, configure_logging=False)
    try:
        gpus = ray.cluster_resources().get("GPU", 0) > 0
        resources = {"num_gpus": 1, "num_cpus": 1} if gpus else {"num_cpus": 1}
        task = ray.remote(_point_task)
        queue = list(points)
        running: dict = {}
        done = failed = 0
        attempts: dict[str, int] = {}
        while queue or running:
            while queue and len(running) < workers:
                name, values = queue.pop(0)
                attempts[name] = attempts.get(name, 0) + 1
                ref = task.options(max_retries=0, **resources).remote(str(study_dir), name, values, 1)
                running[ref] = (name, values)
            ready, _ = ray.wait(list(running), num_returns=1)
            for ref in ready:
                name, values = running.pop(ref)
                timing = None
                try:
                    out = ray.get(ref)
                    error = out["error"]
                    timing = _timing(out["worker"], out["started"], out["finished"], wall0)
                except ray.exceptions.RayError as exc:
                    if attempts[name] < 3 and isinstance(exc, (ray.exceptions.WorkerCrashedError,
                                                               ray.exceptions.NodeDiedError)):
                        queue.insert(0, (name, values))  # resumed from its checkpoint
                        continue
                    error = f"the worker died ({type(exc).__name__})"
                if error is None:
                    _record(study_dir, name, "ok", timing=timing)
                    done += 1
                else:
                    _record(study_dir, name, "failed", error, timing=timing)
                    failed += 1
        return done, failed
    finally:
        if owns:
            ray.shutdown()


# ------------------------------------------------------------------------ the results
def point_results(study_dir: Path) -> list[dict]:
    """Every finished point: its grid values, resolved config and result.json."""
    from .config import load_config_file

    study = Study.load(study_dir / STUDY_FILE)
    rows = []
    for name, values in study.points:
        run_dir = study_dir / name
        if not _finished(run_dir):
            continue
        try:
            result = json.loads((run_dir / "result.json").read_text())
            cfg = load_config_file(run_dir / "config.yaml")
        except (OSError, ValueError, NasframeError):
            continue
        shown = {k: (v.label if isinstance(v, Variant) else v) for k, v in values.items()}
        rows.append({"point": name, "values": shown, "config": cfg, "result": result, "run_dir": run_dir})
    return rows


def default_study_dir(name: str) -> Path:
    return Path("studies") / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}"


def cmd_sweep(host, args) -> int:
    """``nasframe sweep STUDY [--out DIR] [--executor serial|ray] [--workers N] [--address A]``
    or ``nasframe sweep --resume DIR``."""
    import shutil

    if args.resume and args.study:
        raise NasframeError("give a study file or --resume DIR, not both")
    if args.resume:
        study_dir = Path(args.resume).expanduser()
        if not (study_dir / STUDY_FILE).is_file():
            raise NasframeError(f"{study_dir} is not a study directory (no {STUDY_FILE}); start one with "
                                f"nasframe sweep STUDY.yaml")
        if args.out:
            raise NasframeError("--out cannot change a study being resumed; drop it")
        study = Study.load(study_dir / STUDY_FILE)
    else:
        if not args.study:
            raise NasframeError("nasframe sweep needs a study file (STUDY.yaml) or --resume DIR")
        path = Path(args.study).expanduser()
        if not path.is_file():
            raise NasframeError(f"study file {path} not found")
        study = Study.load(path)
        study_dir = Path(args.out).expanduser() if args.out else default_study_dir(study.name)
        if study_dir.exists() and any(study_dir.iterdir()):
            raise NasframeError(f"{study_dir} exists and is not empty; choose another --out, or continue it with "
                                f"nasframe sweep --resume {study_dir}")
        study_dir.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, study_dir / STUDY_FILE)
    try:
        counts = run_study(host, study, study_dir, executor=args.executor or "serial", workers=args.workers or 1,
                           address=args.address, resume=bool(args.resume))
    except NasframeError:
        if not args.resume and not any((study_dir / name).exists() for name, _ in study.points):
            shutil.rmtree(study_dir, ignore_errors=True)  # refused before any point started: nothing left behind
        raise
    except StudyInterrupted:
        print(f"nasframe: interrupted; continue with nasframe sweep --resume {study_dir}", file=sys.stderr)
        return 130
    print(f"study {study.name}: {counts['ok']} points finished, {counts['failed']} failed, {counts['skipped']} "
          f"already done, in {counts['seconds']:.1f} s; results in {study_dir}")
    if counts["failed"]:
        print(f"the failed points and their reasons are in {study_dir / POINTS}")
    print(f"aggregate with: nasframe aggregate {study_dir}")
    return 0 if not counts["failed"] else 1
