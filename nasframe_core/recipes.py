"""Search recipes: the settings a method's paper or official code ran with, per search space.

An optimizer plugin declares them as the attribute ``search_recipes`` of its factory: a
mapping from a search space's registered name (or ``"*"``: any space) to a list of recipes,
each a mapping with ``name``, ``source`` (the paper's section or the official file's path;
where a paper gives no recipe for the space, which one is used and why) and ``settings``
(``section.key`` -> value, the names ``--set`` takes). The first recipe of a space is its
default. A run applies its recipe as a layer between the built-in defaults and the user's
config file, flags and ``--set`` (the user's values always win); ``config.yaml`` keeps the
recipe's name and source, so ``--resume`` keeps the recipe the run started with.
"""
from __future__ import annotations

from typing import Any, Mapping, Optional

import attrs

from .errors import NasframeError

ANY_SPACE = "*"


@attrs.frozen
class Recipe:
    optimizer: str
    search_space: str
    name: str
    source: str
    settings: Mapping[str, Any]

    def record(self) -> dict[str, str]:
        """What a run directory keeps of it: name and source."""
        return {"name": self.name, "source": self.source}

    def row(self) -> dict[str, Any]:
        return {"optimizer": self.optimizer, "search_space": self.search_space, "name": self.name,
                "source": self.source, "settings": dict(self.settings)}


def declared(factory: Any) -> dict[str, list[Mapping[str, Any]]]:
    """The ``search_recipes`` table of an optimizer factory (empty when it declares none)."""
    table = getattr(factory, "search_recipes", None) or {}
    if callable(table):
        table = table()
    if not isinstance(table, Mapping):
        return {}
    return {str(space): list(rows) for space, rows in table.items()}


def recipes_for(host, optimizer: str, search_space: str) -> list[Recipe]:
    """The recipes of ``optimizer`` on ``search_space`` (the space's own first, then any-space ones)."""
    reg = host.get("optimizer", optimizer)
    table = declared(reg.factory)
    rows = list(table.get(search_space, []))
    names = {r["name"] for r in rows}
    rows += [r for r in table.get(ANY_SPACE, []) if r["name"] not in names]
    return [Recipe(reg.name, search_space, str(r["name"]), str(r.get("source", "")), dict(r.get("settings", {})))
            for r in rows]


def all_recipes(host) -> list[Recipe]:
    """Every declared recipe of every installed optimizer, by optimizer then space."""
    out = []
    for reg in host.registrations("optimizer"):
        for space, rows in declared(reg.factory).items():
            out += [Recipe(reg.name, space, str(r["name"]), str(r.get("source", "")), dict(r.get("settings", {})))
                    for r in rows]
    return out


def select_recipe(host, optimizer: str, search_space: str, name: Optional[str] = None) -> Optional[Recipe]:
    """The recipe a run uses: ``name``, or the space's default; ``None`` when none is declared."""
    found = recipes_for(host, optimizer, search_space)
    if name is None:
        return found[0] if found else None
    for r in found:
        if r.name == name:
            return r
    known = ", ".join(r.name for r in found) or "none"
    raise NasframeError(f"optimizer {optimizer!r} has no recipe {name!r} for search space {search_space!r}; "
                        f"its recipes there: {known} (see nasframe recipes)")


def apply_recipe(cfg, recipe: Optional[Recipe]) -> None:
    """Set ``recipe``'s settings on ``cfg`` and record it (call before the user's layers)."""
    if recipe is None:
        cfg.recipe = None
        return
    for key, value in recipe.settings.items():
        cfg.set(key, value)
    cfg.recipe = recipe.record()


def format_value(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return ",".join(format_value(v) for v in value)
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def cmd_recipes(host, args) -> int:
    """``nasframe recipes [--json]``."""
    import json

    rows = [r.row() for r in all_recipes(host)]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    if not rows:
        print("no optimizer declares a search recipe")
        return 0
    last = None
    for r in rows:
        if (r["optimizer"], r["search_space"]) != last:
            last = (r["optimizer"], r["search_space"])
            space = "any search space" if r["search_space"] == ANY_SPACE else f"search space {r['search_space']}"
            print(f"{r['optimizer']} on {space}:")
        print(f"  {r['name']}: {r['source']}")
        print("    " + " ".join(f"{k}={format_value(v)}" for k, v in r["settings"].items()))
    print("the first recipe of a space is its default; pick another with nasframe run --recipe NAME")
    return 0
