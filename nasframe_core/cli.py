"""The ``nasframe`` command.

User errors print one line (``nasframe: error: ...``) and exit non-zero; no traceback.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Optional, Sequence

from .errors import NasframeError
from .plugins import PluginHost, make_plugin_manager

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


def _add_run_flags(p: argparse.ArgumentParser, train: bool) -> None:
    from .config import Config

    d = Config()
    r = d.run
    # for training, the loop's defaults are the space's evaluation recipe
    recipe = "the space's training recipe"
    g = p.add_argument_group("what to run")
    if not train:
        g.add_argument("--optimizer", help=f"search optimizer (default: {d.optimizer.name})")
        g.add_argument("--evaluator", help="how a black-box search scores cells: auto, table, training or "
                                           "zerocost:PROXY, e.g. zerocost:synflow (default: auto)")
    g.add_argument("--search-space", dest="search_space",
                   help="search space (default: the genotype's)" if train else
                   f"search space (default: {d.search_space.name})")
    g.add_argument("--dataset", help=f"dataset (default: {d.dataset.name}, offline; the paper uses cifar10)")
    g.add_argument("--data-dir", dest="data_dir", help="where the dataset's files are, or go (default: the dataset's own)")
    g.add_argument("--benchmark", help="benchmark table for the space (default: $NASFRAME_NB201 for nasbench201)")
    g = p.add_argument_group("loop")
    g.add_argument("--epochs", type=int, help=f"number of epochs (default: {recipe if train else r.epochs})")
    g.add_argument("--batch-size", dest="batch_size", type=int,
                   help=f"batch size per process (default: {recipe if train else r.batch_size})")
    g.add_argument("--steps-per-epoch", dest="steps_per_epoch", type=int,
                   help="cap the steps of an epoch, for smoke runs (default: the whole training split)")
    g.add_argument("--seed", type=int, help=f"the one seed behind every random choice (default: {r.seed})")
    g.add_argument("--device", choices=("auto", "cpu", "cuda"), help=f"default: {r.device} (CUDA when available)")
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

    p = sub.add_parser("run", help="run a search", epilog=installed, formatter_class=argparse.RawDescriptionHelpFormatter,
                       description="Run an architecture search and leave a run directory.")
    _add_run_flags(p, train=False)

    p = sub.add_parser("train", help="train a found architecture from scratch", epilog=installed,
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       description="Train a genotype from scratch with the space's evaluation recipe.")
    g = p.add_argument_group("required")
    g.add_argument("--genotype", required=genotype_required, metavar="RUN_DIR|FILE|STRING",
                   help="a finished run directory, a genotype file, or the genotype string "
                        "(taken from the run with --resume, or from --config FILE when it has one)")
    _add_run_flags(p, train=True)

    p = sub.add_parser("query", help="look an architecture up in a benchmark table")
    p.add_argument("benchmark_name", metavar="BENCHMARK", help="benchmark name, e.g. nasbench201")
    p.add_argument("arch", metavar="ARCH", help="architecture string or index")
    p.add_argument("--dataset", default="cifar10", help="benchmark dataset (default cifar10)")
    p.add_argument("--benchmark", help="path of the table (default: $NASFRAME_NB201 for nasbench201)")
    p.add_argument("--json", action="store_true", help="machine-readable output")

    from .score_cmd import add_parser as add_score_parser

    add_score_parser(sub)

    p = sub.add_parser("show", help="summarise a run directory")
    p.add_argument("run_dir", metavar="RUN_DIR")
    p.add_argument("--json", action="store_true", help="machine-readable output")

    p = sub.add_parser("plot", help="draw alpha evolution and the final cells of a run, or a score output's "
                                    "proxy-against-accuracy scatter plots, as PNGs")
    p.add_argument("run_dir", metavar="RUN_DIR|SCORE_FILE")
    p.add_argument("--out", help="directory for the PNGs (default: RUN_DIR/plots)")
    return parser


# ------------------------------------------------------------------------- commands
def cmd_plugins(host: PluginHost, args) -> int:
    from .plugins import KINDS, QUALIFIER

    report = host.report()
    ambiguous = [{"kind": kind, "name": name, "plugins": plugins}
                 for kind in KINDS for name, plugins in host.ambiguous(kind).items()]
    if args.json:
        failed = [{"name": f.name, "reason": f.reason} for f in host.failures]
        warnings = [{"name": w.name, "reason": w.reason} for w in host.warnings]
        print(json.dumps({"plugins": report, "failed": failed, "warnings": warnings, "ambiguous": ambiguous},
                         indent=2))
        return 0
    for info in report:
        print(f"{info['name']} {info['version'] or ''} ({info['module']})".replace("  ", " "))
        print(f"  hooks: {', '.join(info['hooks'])}")
        for kind, names in info["registers"].items():
            if names:
                plural = "proxies" if kind == "proxy" else kind.replace("_", " ") + "s"
                print(f"  {plural}: {', '.join(names)}")
    if not report:
        print("no plugins loaded")
    for entry in ambiguous:
        choices = ", ".join(f"{p}{QUALIFIER}{entry['name']}" for p in entry["plugins"])
        print(f"ambiguous {entry['kind'].replace('_', ' ')} {entry['name']!r}: registered by "
              f"{', '.join(entry['plugins'])}; name it as one of {choices}, or select plugins with NASFRAME_PLUGINS")
    return 0


RESUME_FLAGS = ("epochs", "device", "benchmark", "data_dir")


def config_from_args(host: PluginHost, args, command: str):
    from .config import Config, load_config_file

    if args.resume:
        from .rundir import CONFIG, RunDir

        path = RunDir.open_existing(Path(args.resume)).file(CONFIG)
        cfg = Config.from_dict(load_config_file(path), str(path))
        refused = [f for f in ("optimizer", "search_space", "dataset", "batch_size", "steps_per_epoch", "seed",
                               "config", "out", "genotype", "evaluator")
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
        cfg.search_space.name = chosen or from_genotype or cfg.search_space.name
        apply_recipe(cfg, host)
    if file_data:
        cfg.update(file_data, str(args.config))
    for flag, key in (("optimizer", "optimizer.name"), ("search_space", "search_space.name"),
                      ("dataset", "dataset.name")):
        value = getattr(args, flag, None)
        if value is not None:
            cfg.set(key, value)
    for key in ("data_dir", "benchmark", "epochs", "batch_size", "steps_per_epoch", "seed", "device", "evaluator"):
        value = getattr(args, key, None)
        if value is not None:
            cfg.set(f"run.{key}", value)
    if command == "train" and args.genotype is not None:
        cfg.genotype = args.genotype
    for item in args.overrides:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise NasframeError(f"--set takes KEY=VALUE, got {item!r}")
        cfg.set(key.strip(), value.strip())
    # check names and settings now, so a typo fails before any data is loaded
    cfg.check_plugins(host)
    for key, value in (("epochs", cfg.run.epochs), ("batch_size", cfg.run.batch_size)):
        if value < 1:
            raise NasframeError(f"--{key.replace('_', '-')} must be at least 1, got {value}")
    if cfg.run.steps_per_epoch is not None and cfg.run.steps_per_epoch < 1:
        raise NasframeError(f"--steps-per-epoch must be at least 1, got {cfg.run.steps_per_epoch}")
    return cfg


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


def cmd_run(host: PluginHost, args, command: str) -> int:
    from .engine import execute

    try:
        cfg = config_from_args(host, args, command)
    except NasframeError as exc:
        _log_to_resumed(args, exc)
        raise
    if command == "train" and not cfg.genotype:
        raise NasframeError("nasframe train needs --genotype RUN_DIR|FILE|STRING")
    execute(cfg, host, out=Path(args.out) if args.out else None,
            resume=Path(args.resume) if args.resume else None, quiet=args.quiet)
    return 0


def _log_to_resumed(args, exc: NasframeError) -> None:
    """A refused ``--resume`` leaves its error in the run's log.txt."""
    if not args.resume:
        return
    from .rundir import RunDir

    try:
        run_dir = RunDir.open_existing(Path(args.resume))
    except NasframeError:
        return  # not a run directory: nothing to write to
    run_dir.log_error(str(exc))


def cmd_query(host: PluginHost, args) -> int:
    from .benchmark import open_benchmark

    bench = open_benchmark(host, args.benchmark_name, args.benchmark, required=True)
    path = bench.path
    describe = getattr(bench, "describe_arch", None)
    arch_info = describe(args.arch) if describe else {"arch": args.arch}
    metrics = bench.query_all(args.arch, args.dataset)
    out = {**arch_info, "dataset": args.dataset, "benchmark": str(path), "metrics": metrics}
    if args.json:
        print(json.dumps(out, indent=2))
        return 0
    for key, value in arch_info.items():
        if value is not None:  # e.g. no index in a table without an index order
            print(f"{key:16s} {value}")
    print(f"{'dataset':16s} {args.dataset}")
    notes = getattr(bench, "metric_notes", lambda d: {})(args.dataset)
    for key, value in metrics.items():
        shown = f"{value:.2f}" if "accuracy" in key else f"{value:.10g}"
        note = f"  ({notes[key]})" if key in notes else ""
        print(f"{key:16s} {shown}{note}")
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        host = make_plugin_manager()
        flags = {a.split("=", 1)[0] for a in argv}
        other_source = flags & {"--resume", "--config"} or any(a.startswith("genotype=") for a in argv)
        parser = build_parser(host, genotype_required=not other_source)
        args = parser.parse_args(argv)
        if args.command is None:
            parser.print_help()
            return 2
        if args.command == "plugins":
            return cmd_plugins(host, args)
        if args.command in ("run", "train"):
            return cmd_run(host, args, args.command)
        if args.command == "query":
            return cmd_query(host, args)
        if args.command == "score":
            from .score_cmd import cmd_score

            return cmd_score(host, args)
        if args.command == "show":
            from .report import cmd_show

            return cmd_show(host, args)
        if args.command == "plot":
            from .report import cmd_plot

            return cmd_plot(host, args)
        parser.error(f"unknown command {args.command!r}")
    except NasframeError as exc:
        print(f"nasframe: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt as exc:
        where = getattr(exc, "run_dir", None)
        if where is not None:
            from .rundir import resume_flag

            print(f"nasframe: interrupted; continue from the last checkpoint with {resume_flag(where)}", file=sys.stderr)
        else:
            print("nasframe: interrupted", file=sys.stderr)
        return 130
    return 0


def _entry() -> None:
    sys.exit(main())


if __name__ == "__main__":
    _entry()
