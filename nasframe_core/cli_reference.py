"""The command reference (``docs/commands.md``), generated from the parser itself.

``python -m nasframe_core.cli_reference`` prints it; ``--write PATH`` writes it. The tests check
that regenerating it gives the committed file, so the reference cannot drift from the parser.
"""
from __future__ import annotations

import argparse
import sys
from typing import Optional, Sequence

HEADER = """# Command reference

Every verb and flag of `nasframe`, generated from its parser by
`python -m nasframe_core.cli_reference --write docs/commands.md` (a test checks that the
file matches). `nasframe COMMAND --help` prints the same, and lists the installed plugins;
`nasframe plugins --settings` lists every plugin's settings for `--set`.
"""


def _flag(action: argparse.Action) -> str:
    if not action.option_strings:
        return f"`{action.metavar or action.dest}`"
    names = ", ".join(action.option_strings)
    if action.nargs == 0:
        return f"`{names}`"
    metavar = action.metavar or (("{" + ",".join(map(str, action.choices)) + "}") if action.choices
                                 else action.dest.upper())
    return f"`{names} {metavar}`".replace("|", "\\|")


def _help(action: argparse.Action) -> str:
    text = " ".join((action.help or "").split()).replace("|", "\\|")
    if action.choices and action.option_strings and action.metavar:
        text += f" (one of {', '.join(map(str, action.choices))})"
    if action.required and action.option_strings:
        text += " (required)"
    return text


def _rows(actions) -> list[str]:
    rows = []
    for action in actions:
        if isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)):
            continue
        rows.append(f"| {_flag(action)} | {_help(action)} |")
    return rows


def reference() -> str:
    """The whole reference as Markdown (independent of the installed plugins and the terminal)."""
    from .parser import build_parser
    from .plugins import make_plugin_manager

    host = make_plugin_manager(entry_points=False, warn=lambda line: None)
    parser = build_parser(host, genotype_required=True)
    lines = [HEADER]
    lines += ["## nasframe", "", parser.description or "", "", "| flag | meaning |", "| --- | --- |"]
    lines += _rows(parser._actions)
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    helps = {choice.dest: choice.help for choice in sub._choices_actions}
    for name, p in sub.choices.items():
        lines += ["", f"## nasframe {name}", "", " ".join((p.description or helps.get(name) or "").split()), ""]
        positionals = [a for a in p._actions if not a.option_strings]
        usage = " ".join(f"{a.metavar or a.dest}" for a in positionals)
        lines += [f"`nasframe {name} [options]{' ' + usage if usage else ''}`", ""]
        groups = [g for g in p._action_groups if g._group_actions]
        for group in groups:
            rows = _rows(group._group_actions)
            if not rows:
                continue
            title = {"positional arguments": "arguments", "options": "options",
                     "optional arguments": "options"}.get(group.title, group.title)
            lines += [f"{title}:", "", "| flag | meaning |", "| --- | --- |", *rows, ""]
        while lines[-1] == "":
            lines.pop()
    return "\n".join(lines).rstrip() + "\n"


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    text = reference()
    if args[:1] == ["--write"] and len(args) == 2:
        with open(args[1], "w") as f:
            f.write(text)
        return 0
    if args:
        print("usage: python -m nasframe_core.cli_reference [--write PATH]", file=sys.stderr)
        return 2
    sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
