"""The ``nasframe`` command's parser and the run configuration it builds: what the command,
studies (:mod:`nasframe_core.study`) and the Python API (:mod:`nasframe_core.api`) share, so a
point of a study or a notebook's search is configured exactly as ``nasframe run`` would be."""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Optional

from .dist import ray_hint
from .errors import NasframeError
from .plugins import PluginHost


EPILOG_KINDS = (("optimizer", "optimizers"), ("search_space", "search spaces"), ("dataset", "datasets"))


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _installed(host: PluginHost) -> str:
    lines = []
    for kind, label in EPILOG_KINDS:
        lines.append(f"installed {label}: {', '.join(host.names(kind)) or 'none'}")
    return "\n".join(lines)


def _default_name(host: PluginHost, kind: str) -> str:
    try:
        return host.default(kind)
    except NasframeError:
        return "none installed"


def _add_run_flags(p: argparse.ArgumentParser, train: bool, host: PluginHost) -> None:
    from .config import Config

    d = Config()
    r = d.run
    # for training, the loop's defaults are the space's evaluation recipe
    recipe = "the space's training recipe"
    g = p.add_argument_group("what to run")
    if not train:
        g.add_argument("--optimizer", help=f"search optimizer (default: {_default_name(host, 'optimizer')})")
        g.add_argument("--recipe", help="the optimizer's search recipe to start from (default: its recipe for the "
                                        "search space; nasframe recipes lists them)")
        g.add_argument("--evaluator", help="how a black-box search scores cells: auto, table, training or "
                                           "zerocost:PROXY, e.g. zerocost:synflow (default: auto)")
    g.add_argument("--search-space", dest="search_space",
                   help="search space (default: the genotype's)" if train else
                   f"search space (default: {_default_name(host, 'search_space')})")
    g.add_argument("--dataset", help=f"dataset (default: {_default_name(host, 'dataset')})")
    g.add_argument("--data-dir", dest="data_dir", help="where the dataset's files are, or go (default: the dataset's own)")
    g.add_argument("--benchmark", metavar="PATH",
                   help="path of the benchmark table for the space (default: $NASFRAME_NB201 for nasbench201)")
    g = p.add_argument_group("loop")
    g.add_argument("--epochs", type=int, help=f"number of epochs (default: {recipe if train else r.epochs})")
    g.add_argument("--batch-size", dest="batch_size", type=int,
                   help=f"batch size per process (default: {recipe if train else r.batch_size})")
    g.add_argument("--steps-per-epoch", dest="steps_per_epoch", type=int,
                   help="cap the steps of an epoch, for smoke runs (default: the whole training split)")
    g.add_argument("--seed", type=int, help=f"the one seed behind every random choice (default: {r.seed})")
    g.add_argument("--device", choices=("auto", "cpu", "cuda"), help=f"default: {r.device} (CUDA when available)")
    g.add_argument("--cpu-kernels", dest="cpu_kernels", action="store_const", const=True,
                   help="run.cpu_kernels=true: native CPU kernels and allocator setting of an installed CPU plugin; faster on "
                        "some CPUs, and the same seed may then take another path (default: off)")
    if not train:
        g = p.add_argument_group("black-box search: where evaluations run")
        g.add_argument("--executor", choices=("serial", "simulated", "ray"),
                       help="serial: one at a time here (default); simulated: virtual workers on the table's "
                            f"charged seconds; ray: Ray tasks ({ray_hint()})")
        g.add_argument("--workers", type=int, help="evaluations at once (default 1)")
        g.add_argument("--address", help="Ray cluster address (default: start a local one, or $RAY_ADDRESS)")
    g = p.add_argument_group("run directory and configuration")
    g.add_argument("--out", help="new run directory, never overwritten (default: runs/<command>-<time>)")
    g.add_argument("--resume", metavar="RUN_DIR", help="continue a stopped run where its last checkpoint left it")
    g.add_argument("--config", metavar="FILE", help="YAML or TOML file of settings (see the README)")
    g.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override one setting, e.g. optimizer.unrolled=true, run.lr_min=0, search_space.C=8")
    g.add_argument("--quiet", action="store_true", help="no progress output (the log file is still written)")


def build_parser(host: PluginHost, genotype_required: bool = False) -> argparse.ArgumentParser:
    """The parser. ``nasframe train`` needs a genotype: the command line makes ``--genotype``
    required unless it may come from ``--resume``, ``--config`` or ``--set genotype=...``."""
    installed = _installed(host)
    parser = _Parser(
        prog="nasframe",
        description="Neural architecture search with plugins: optimizers, search spaces, datasets, benchmarks.",
        epilog=installed,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    from . import __version__

    parser.add_argument("--version", action="version", version=f"nasframe {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    p = sub.add_parser("plugins", help="list the loaded plugins and what they register")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--settings", action="store_true",
                   help="every optimizer's, search space's, dataset's and benchmark's settings: defaults, domains "
                        "and meanings (set them with --set KIND.NAME=VALUE)")

    p = sub.add_parser("run", help="run a search", epilog=installed, formatter_class=argparse.RawDescriptionHelpFormatter,
                       description="Run an architecture search and leave a run directory.")
    _add_run_flags(p, train=False, host=host)

    p = sub.add_parser("train", help="train a found architecture from scratch", epilog=installed,
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       description="Train a genotype from scratch with the space's evaluation recipe.")
    g = p.add_argument_group("required")
    g.add_argument("--genotype", required=genotype_required, metavar="RUN_DIR|FILE|STRING",
                   help="a finished run directory, a genotype file, or the genotype string "
                        "(taken from the run with --resume, or from --config FILE when it has one)")
    _add_run_flags(p, train=True, host=host)

    p = sub.add_parser("recipes", help="list the optimizers' search recipes per search space, with their sources")
    p.add_argument("--json", action="store_true", help="machine-readable output")

    p = sub.add_parser("query", help="look an architecture up in a benchmark table")
    p.add_argument("benchmark_name", metavar="BENCHMARK_NAME",
                   help="name of the benchmark, e.g. nasbench201 (nasframe plugins lists them); the table's file "
                        "is --benchmark PATH")
    p.add_argument("arch", metavar="ARCH", help="architecture string or index")
    p.add_argument("--dataset", default="cifar10", help="benchmark dataset (default cifar10)")
    p.add_argument("--benchmark", metavar="PATH",
                   help="path of the table file (default: $NASFRAME_NB201 for nasbench201)")
    p.add_argument("--json", action="store_true", help="machine-readable output")

    from .score_cmd import add_parser as add_score_parser

    add_score_parser(sub)

    p = sub.add_parser("show", help="summarise a run directory")
    p.add_argument("run_dir", metavar="RUN_DIR")
    p.add_argument("--json", action="store_true", help="machine-readable output")

    p = sub.add_parser("sweep", help="run a study: a grid of runs (methods x seeds x datasets x settings)",
                       description="Run every point of a study file, each an ordinary run directory.")
    p.add_argument("study", nargs="?", metavar="STUDY", help="study file (YAML or TOML; see the docs)")
    p.add_argument("--out", help="new study directory (default: studies/<name>-<time>)")
    p.add_argument("--resume", metavar="DIR", help="continue a study: skip finished points, resume interrupted ones")
    p.add_argument("--executor", choices=("serial", "ray"),
                   help="where points that train run: here one at a time (default) or on Ray; table-scored "
                        "points always run here")
    p.add_argument("--workers", type=int, help="points at once on Ray (default 1)")
    p.add_argument("--address", help="Ray cluster address (default: a local one, or $RAY_ADDRESS)")

    p = sub.add_parser("aggregate", help="mean ± std of a study's runs, beside the published results")
    p.add_argument("study_dir", metavar="DIR")
    p.add_argument("--by", help="keys to group by (default optimizer,dataset)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--json", action="store_true", help='{"rows": [...]}')
    g.add_argument("--csv", action="store_true")
    g.add_argument("--markdown", action="store_true", help="a Markdown table (the default)")

    p = sub.add_parser("plot", help="draw alpha evolution and the final cells of a run, or a score output's "
                                    "proxy-against-accuracy scatter plots, as PNGs")
    p.add_argument("run_dir", metavar="RUN_DIR|STUDY_DIR|SCORE_FILE")
    p.add_argument("--out", help="directory for the PNGs (default: RUN_DIR/plots)")
    return parser


RESUME_FLAGS = ("epochs", "device", "benchmark", "data_dir", "executor", "workers", "address")


def config_from_args(host: PluginHost, args, command: str):
    from .config import Config, load_config_file

    if args.resume:
        from .rundir import CONFIG, RunDir

        path = RunDir.open_existing(Path(args.resume)).file(CONFIG)
        cfg = Config.from_dict(load_config_file(path), str(path))
        refused = [f for f in ("optimizer", "recipe", "search_space", "dataset", "batch_size", "steps_per_epoch",
                               "seed", "cpu_kernels", "config", "out", "genotype", "evaluator")
                   if getattr(args, f, None) is not None] + (["set"] if args.overrides else [])
        if refused:
            flag = "--" + refused[0].replace("_", "-")
            raise NasframeError(
                f"{flag} cannot change a run being resumed; --resume takes only "
                f"{', '.join('--' + f.replace('_', '-') for f in RESUME_FLAGS)}"
            )
        for key in RESUME_FLAGS:
            value = getattr(args, key, None)
            if value is not None:
                cfg.set(f"run.{key}", value)
        return cfg

    file_data = load_config_file(args.config) if args.config else {}
    cfg = Config(command=command)
    if command == "train":
        # the space decides the training recipe, so settle it before the recipe applies
        from .genotype import genotype_source
        from .train import apply_recipe

        chosen = _set_value(args.overrides, "search_space.name") or args.search_space or _name_in(file_data, "search_space")
        from_genotype = genotype_source(args.genotype)[1] if args.genotype else None
        if chosen and from_genotype and chosen != from_genotype:
            raise NasframeError(
                f"the genotype comes from a {from_genotype!r} search but the search space is {chosen!r}; "
                f"drop --search-space or use {from_genotype!r}"
            )
        cfg.search_space.name = chosen or from_genotype or host.default("search_space")
        apply_recipe(cfg, host)
    else:
        # the optimizer's search recipe for the space: under the file, the flags and --set
        from .recipes import apply_recipe as apply_search_recipe, select_recipe

        optimizer = _set_value(args.overrides, "optimizer.name") or args.optimizer or _name_in(file_data, "optimizer")
        space = _set_value(args.overrides, "search_space.name") or args.search_space or _name_in(file_data, "search_space")
        cfg.optimizer.name = optimizer or host.default("optimizer")
        cfg.search_space.name = space or host.default("search_space")
        space_name = host.get("search_space", cfg.search_space.name).name
        apply_search_recipe(cfg, select_recipe(host, cfg.optimizer.name, space_name, getattr(args, "recipe", None)))
    if file_data:
        cfg.update(file_data, str(args.config))
    for flag, key in (("optimizer", "optimizer.name"), ("search_space", "search_space.name"),
                      ("dataset", "dataset.name")):
        value = getattr(args, flag, None)
        if value is not None:
            cfg.set(key, value)
    for key in ("data_dir", "benchmark", "epochs", "batch_size", "steps_per_epoch", "seed", "device", "cpu_kernels",
                "executor", "workers", "address", "evaluator"):
        value = getattr(args, key, None)
        if value is not None:
            cfg.set(f"run.{key}", value)
    if command == "train" and args.genotype is not None:
        cfg.genotype = args.genotype
        _train_on_the_runs_dataset(cfg, args, file_data)
    for item in args.overrides:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise NasframeError(f"--set takes KEY=VALUE, got {item!r}")
        cfg.set(key.strip(), value.strip())
    # check names and settings now, so a typo fails before any data is loaded (unnamed: the defaults)
    cfg.check_plugins(host)
    for key, value in (("epochs", cfg.run.epochs), ("batch_size", cfg.run.batch_size)):
        if value < 1:
            raise NasframeError(f"--{key.replace('_', '-')} must be at least 1, got {value}")
    if cfg.run.steps_per_epoch is not None and cfg.run.steps_per_epoch < 1:
        raise NasframeError(f"--steps-per-epoch must be at least 1, got {cfg.run.steps_per_epoch}")
    return cfg


def _train_on_the_runs_dataset(cfg, args, file_data: dict) -> None:
    """``nasframe train --genotype RUN_DIR`` trains on the dataset the run searched on, unless
    ``--dataset`` (or a config file, or ``--set dataset.name=...``) names another."""
    from .genotype import run_dataset

    if args.dataset or _name_in(file_data, "dataset") or _set_value(args.overrides, "dataset.name"):
        return
    found = run_dataset(args.genotype)
    if not found:
        return
    data_dir = found.pop("data_dir", None)
    cfg.set("dataset.name", found.pop("name"))
    for key, value in found.items():  # the run's dataset settings; --set dataset.KEY still wins
        cfg.set(f"dataset.{key}", value)
    if data_dir and args.data_dir is None:
        cfg.set("run.data_dir", data_dir)


def _set_value(overrides: list[str], key: str) -> Optional[str]:
    """The last ``--set key=value`` for ``key``, if any."""
    found = None
    for item in overrides:
        k, sep, v = item.partition("=")
        if sep and k.strip() == key:
            found = v.strip()
    return found


def _name_in(data: dict, section: str) -> Optional[str]:
    body = data.get(section)
    if isinstance(body, dict):
        return body.get("name")
    return body if isinstance(body, str) else None
