"""The ``nasframe`` command.

User errors print one line (``nasframe: error: ...``) and exit non-zero; no traceback.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional, Sequence

from .errors import NasframeError
from .parser import build_parser, config_from_args
from .plugins import PluginHost, make_plugin_manager

# ------------------------------------------------------------------------- commands
def cmd_plugins(host: PluginHost, args) -> int:
    from .plugins import KINDS, QUALIFIER

    if args.settings:
        from .settings_report import print_settings

        print_settings(host, args.json)
        return 0
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
            resume=Path(args.resume) if args.resume else None, quiet=args.quiet, owns_process=True)
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

    _check_benchmark_name(host, args)
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


def _check_benchmark_name(host: PluginHost, args) -> None:
    """A table's path given where ``nasframe query`` takes the benchmark's name."""
    import os

    name = args.benchmark_name
    if name in host.names("benchmark") or not (os.path.exists(name) or "/" in name or "." in name):
        return
    known = ", ".join(host.names("benchmark")) or "none installed"
    raise NasframeError(
        f"nasframe query takes the benchmark's name first ({known}), not a file: "
        f"nasframe query NAME ARCH --benchmark {name}"
    )


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
        if args.command == "recipes":
            from .recipes import cmd_recipes

            return cmd_recipes(host, args)
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
        if args.command == "sweep":
            from .study import cmd_sweep

            return cmd_sweep(host, args)
        if args.command == "aggregate":
            from .aggregate import cmd_aggregate

            return cmd_aggregate(host, args)
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
    except BrokenPipeError:
        return _reader_gone()
    return 0


def _reader_gone() -> int:
    """stdout was piped to a reader that closed it (``nasframe show RUN --json | head``): stop
    quietly, as ``git log | head`` does. Later writes (the interpreter's final flush) go nowhere."""
    import os

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):  # no file descriptor behind sys.stdout
        pass
    return 141  # 128 + SIGPIPE, the status of a command a closed pipe stopped


def _entry() -> None:
    sys.exit(main())


if __name__ == "__main__":
    _entry()
