"""``nasframe show`` and ``nasframe plot``: reading a run directory back."""
from __future__ import annotations

import json
import os
from pathlib import Path

from .errors import NasframeError
from .rundir import CONFIG, RunDir


def _open(path: str) -> RunDir:
    p = Path(path).expanduser()
    if not p.is_dir() or not (p / CONFIG).is_file():
        raise NasframeError(f"{p} is not a nasframe run directory (no {CONFIG})")
    return RunDir(p)


def summary(run: RunDir, cfg: dict) -> dict:
    """What ``nasframe show --json`` prints; ``cfg``: the run's loaded config.yaml."""
    metrics = run.read_metrics()
    result = run.read_result()
    epochs = (cfg.get("run") or {}).get("epochs")
    return {
        "run_dir": str(run.path),
        "command": cfg.get("command", "run"),
        "optimizer": (cfg.get("optimizer") or {}).get("name"),
        "search_space": (cfg.get("search_space") or {}).get("name"),
        "dataset": (cfg.get("dataset") or {}).get("name"),
        "epochs_done": len(metrics),
        "epochs": epochs,
        "finished": result is not None,
        "last_epoch": metrics[-1] if metrics else None,
        "result": result,
    }


def cmd_show(host, args) -> int:
    from .config import load_config_file

    run = _open(args.run_dir)
    cfg = load_config_file(run.file(CONFIG))
    info = summary(run, cfg)
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    state = "finished" if info["finished"] else "stopped (continue with --resume)"
    print(f"run        {info['run_dir']} ({info['command']}, {state})")
    if info["command"] != "train":
        print(f"search     {info['optimizer']} on {info['search_space']}, dataset {info['dataset']}")
    else:
        print(f"train      {info['search_space']}, dataset {info['dataset']}")
    last = info["last_epoch"]
    if last and "evaluations" in last:  # a black-box search: rounds of evaluations
        print(f"budget     {last['evaluations']} evaluations, {last['spent_seconds']:.0f} s charged "
              f"({100 * last['budget_fraction']:.0f}% of the budget)")
        if last.get("best_valid_accuracy") is not None:
            print(f"best score {last['best_valid_accuracy']:.2f}% (validation accuracy searched on)")
        last = None
    else:
        print(f"epochs     {info['epochs_done']} of {info['epochs']}")
    if last:
        shown = ", ".join(
            _metric(k, last[k]) for k in ("train_loss", "train_acc", "val_loss", "val_acc", "test_loss", "test_acc", "lr")
            if isinstance(last.get(k), (int, float))
        )
        print(f"last epoch {last.get('epoch', info['epochs_done'])}: {shown}")
    result = info["result"] or {}
    genotype = result.get("genotype") or (last or {}).get("genotype")
    if genotype:
        print(f"genotype   {genotype}")
    bench = result.get("benchmark") or (last or {}).get("benchmark")
    if bench and bench.get("test_accuracy") is not None:
        print(f"benchmark  {bench['name']} ({bench['dataset']}): test accuracy {bench['test_accuracy']:.2f}%")
    if result.get("test_acc") is not None:
        print(f"test accuracy {result['test_acc']:.2f}% (after the last epoch)")
    params = result.get("params_millions")
    if params is not None:
        what = "parameters" if info["command"] == "train" else "supernet parameters"
        print(f"{what} {params:.3f} million")
    # what plugins say about the outcome, as the search said it when it ended
    for part in host.hook.nasframe_summary_lines(result=result, last_epoch=info["last_epoch"],
                                                 space=_space_once(host, cfg)):
        for line in part:
            print(line)
    return 0


def _metric(key: str, value: float) -> str:
    if key.endswith("_acc"):
        return f"{key.replace('_', ' ')} {value:.2f}%"
    if key == "lr":
        return f"lr {value:.5f}"
    return f"{key.replace('_', ' ')} {value:.4f}"


def _space_of(host, cfg: dict):
    """The run's search space, built from its loaded config.yaml (``None`` when it names none)."""
    space_cfg = cfg.get("search_space") or {}
    if not space_cfg.get("name"):
        return None
    return host.create("search_space", space_cfg["name"], **{k: v for k, v in space_cfg.items() if k != "name"})


def _space_once(host, cfg: dict):
    """A callable that builds the run's search space on its first call and then returns it again
    (``None`` when the run names none or it cannot be built here, e.g. its plugin is missing)."""
    built: list = []

    def space():
        if not built:
            try:
                built.append(_space_of(host, cfg))
            except NasframeError:
                built.append(None)
        return built[0]

    return space


def _plot_dir(out: Path) -> Path:
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise NasframeError(f"cannot create {out}: {exc.strerror or exc}; pass a writable --out DIR") from None
    if not os.access(out, os.W_OK | os.X_OK):
        raise NasframeError(f"cannot write to {out}: permission denied; pass a writable --out DIR")
    return out


def cmd_plot(host, args) -> int:
    from .scoring import read_scores
    from .study import STUDY_FILE

    scores = read_scores(Path(args.run_dir))
    if scores is not None:  # a `nasframe score` output: proxy against accuracy
        return _plot_scores(scores, Path(args.run_dir), args.out)
    if (Path(args.run_dir).expanduser() / STUDY_FILE).is_file():  # a study: curves per dataset, the table
        from .study_plot import plot_study

        study_dir = Path(args.run_dir).expanduser()
        out = _plot_dir(Path(args.out).expanduser() if args.out else study_dir / "plots")
        for path in plot_study(host, study_dir, out):
            print(path)
        return 0
    run = _open(args.run_dir)
    metrics = run.read_metrics()
    if not metrics:
        raise NasframeError(f"{run.path} has no epochs in metrics.jsonl yet; nothing to plot")
    out = _plot_dir(Path(args.out).expanduser() if args.out else run.path / "plots")
    from .config import load_config_file
    from .plotting import plot_cells, plot_incumbent, plot_training

    cfg = load_config_file(run.file(CONFIG))
    space = _space_of(host, cfg)
    title = (f"{(cfg.get('optimizer') or {}).get('name')} on {(cfg.get('search_space') or {}).get('name')}, "
             f"{(cfg.get('dataset') or {}).get('name')}")
    result = run.read_result() or {}
    genotype = result.get("genotype") or metrics[-1].get("genotype")
    try:
        drawn = host.hook.nasframe_plot_run(run_dir=run, metrics=metrics, out=out, space=space)
        written = [path for paths in drawn for path in paths]
        written += plot_incumbent(metrics, out, title=title)
        if cfg.get("command") == "train":
            written += plot_training(metrics, out, title=f"{(cfg.get('search_space') or {}).get('name')}, "
                                                          f"{(cfg.get('dataset') or {}).get('name')}")
        if genotype and space is not None:
            written += plot_cells(space, space.parse_genotype(genotype), out)
    except OSError as exc:
        raise NasframeError(f"cannot write the plots to {out}: {exc.strerror or exc}; pass a writable --out DIR") from None
    for path in written:
        print(path)
    return 0


def _plot_scores(scores: dict, where: Path, out_arg) -> int:
    from .score_plot import plot_scores

    base = where if where.is_dir() else where.parent
    out = Path(out_arg).expanduser() if out_arg else base / "plots"
    try:
        out.mkdir(parents=True, exist_ok=True)
        written = plot_scores(scores, out)
    except OSError as exc:
        raise NasframeError(f"cannot write the plots to {out}: {exc.strerror or exc}; pass a writable --out DIR") from None
    for path in written:
        print(path)
    return 0
