"""``nasframe plugins --settings``: every plugin's settings, their defaults and meanings.

Settings are read from the factories' signatures (:func:`~nasframe_core.settings.factory_settings`),
their domains and one-line meanings from the factories' ``settings_domain`` and ``settings_help``
(:mod:`nasframe_core.domains`).
"""
from __future__ import annotations

import json
from typing import Any

from .domains import settings_domain, settings_help
from .plugins import KIND_LABEL, KINDS
from .settings import factory_settings

#: the ``--set`` prefix of each kind's settings (benchmarks take their table path from --benchmark)
SET_PREFIX = {"optimizer": "optimizer.", "search_space": "search_space.", "dataset": "dataset.", "benchmark": None,
              "proxy": None}


def _jsonable(value: Any) -> Any:
    try:
        json.dumps(value)
        return value
    except TypeError:
        return repr(value)


def settings_listing(host) -> list[dict]:
    """One entry per registered plugin product: kind, name, plugin, description and settings."""
    out = []
    for kind in KINDS:
        for reg in host.registrations(kind):
            domains, helps = settings_domain(reg.factory), settings_help(reg.factory)
            settings = []
            for name, default in factory_settings(reg.factory).items():
                settings.append({
                    "name": name,
                    "default": _jsonable(default),
                    "domain": str(domains[name]) if name in domains else None,
                    "help": helps.get(name, ""),
                })
            out.append({"kind": kind, "name": reg.name, "plugin": reg.plugin, "description": reg.description,
                        "set_prefix": SET_PREFIX[kind], "settings": settings})
    return out


def print_settings(host, as_json: bool) -> None:
    listing = settings_listing(host)
    if as_json:
        print(json.dumps({"settings": listing}, indent=2))
        return
    for entry in listing:
        head = f"{KIND_LABEL[entry['kind']]} {entry['name']} ({entry['plugin']})"
        print(head + (f": {entry['description']}" if entry["description"] else ""))
        if not entry["settings"]:
            print("  no settings")
        prefix = entry["set_prefix"]
        for s in entry["settings"]:
            key = f"{prefix}{s['name']}" if prefix else s["name"]
            default = "none" if s["default"] is None else json.dumps(s["default"])
            domain = f"; {s['domain']}" if s["domain"] else ""
            print(f"  {key} = {default}{domain}" + (f"  {s['help']}" if s["help"] else ""))
