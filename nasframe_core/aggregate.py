"""``nasframe aggregate``: a study's finished points as mean ± std rows, beside the published ones.

A row groups the points that share the ``--by`` keys (default ``optimizer,dataset``): the number
of runs; mean ± std (sample standard deviation) of the found cell's benchmark test and
validation accuracy and of its parameters; the search cost (evaluations or epochs, charged and
wall-clock seconds); and the published row with its source where a plugin declares one
(:func:`~nasframe_core.hookspecs.nasframe_published_results`). A run whose protocol reports its
cell on several datasets (``result.json``'s ``transferred``: a search that is the same for all of
them) counts once per dataset, as NAS-Bench-201's Table 5 reports its runs.
"""
from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path
from typing import Any, Optional

from .errors import NasframeError

DEFAULT_BY = ("optimizer", "dataset")
KEYS = ("optimizer", "dataset", "search_space", "seed")


def _stat(values: list[float]) -> Optional[dict]:
    values = [v for v in values if v is not None and isinstance(v, (int, float)) and math.isfinite(v)]
    if not values:
        return None
    n = len(values)
    mean = sum(values) / n
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else 0.0
    return {"mean": mean, "std": std}


def run_records(point: dict) -> list[dict]:
    """One record per dataset a finished point reports on: its keys and its numbers."""
    result, values, cfg = point["result"], point["values"], point["config"]
    optimizer = cfg.get("optimizer") or {}
    base = {
        # a grid label (``{name: myopt, label: myopt-2nd, ...}``) names the row; else the plugin
        "optimizer": values.get("optimizer") or result.get("optimizer") or optimizer.get("name"),
        "_optimizer": (optimizer.get("name"), {k: v for k, v in optimizer.items() if k != "name"}),
        "search_space": result.get("search_space") or (cfg.get("search_space") or {}).get("name"),
        "seed": result.get("seed"),
        **{k: v for k, v in values.items() if k not in KEYS},
        "protocol": (result.get("protocol") or {}).get("name"),
        "evaluations": result.get("evaluations"),
        "epochs": result.get("epochs") if "evaluations" not in result else None,
        "charged_seconds": result.get("spent_seconds"),
        "wall_seconds": result.get("seconds"),
        "params_millions": result.get("params_millions"),
    }
    transferred = result.get("transferred")
    if transferred and "dataset" not in values:
        return [{**base, "dataset": d, "test_accuracy": r.get("test_accuracy"), "valid_accuracy": r.get("valid_accuracy")}
                for d, r in transferred.items()]
    bench = result.get("benchmark") or {}
    return [{**base, "dataset": result.get("dataset") or (cfg.get("dataset") or {}).get("name"),
             "test_accuracy": bench.get("test_accuracy", result.get("test_statistics", result.get("test_acc"))),
             "valid_accuracy": bench.get("valid_accuracy")}]


def published_rows(host) -> list[dict]:
    rows = []
    for found in host.hook.nasframe_published_results():
        rows.extend(found or [])
    return rows


def _published_for(published: list[dict], key: dict, search_space, protocols: set,
                   optimizers: set) -> Optional[dict]:
    """The published row of a group: same dataset, search space and protocol, and the group's
    optimizer (its registered name, with every setting the row names: ``settings``)."""
    for row in published:
        if "dataset" in key and row.get("dataset") != key["dataset"]:
            continue
        if len(optimizers) != 1:
            continue
        name, settings = next(iter(optimizers))
        settings = json.loads(settings)
        if row.get("optimizer") != name or any(settings.get(k) != v for k, v in (row.get("settings") or {}).items()):
            continue
        if row.get("search_space") not in (None, search_space):
            continue
        if row.get("protocol") is not None and protocols != {row["protocol"]}:
            continue
        return {"mean": row["mean"], "std": row.get("std"), "source": row["source"], "runs": row.get("runs"),
                "protocol_note": row.get("protocol_note")}
    return None


def aggregate(points: list[dict], by: tuple[str, ...], published: list[dict]) -> list[dict]:
    records = [r for p in points for r in run_records(p)]
    if records:
        known = {k for k in records[0] if not k.startswith("_")}
        unknown = [k for k in by if k not in known]
        if unknown:
            raise NasframeError(f"--by {unknown[0]!r} is not a key of this study's runs; use some of "
                                f"{', '.join(sorted(k for k in known if k not in ('test_accuracy', 'valid_accuracy')))}")
    groups: dict[tuple, list[dict]] = {}
    for r in records:
        groups.setdefault(tuple(_key_text(r.get(k)) for k in by), []).append(r)
    rows = []
    for key, members in groups.items():
        k = dict(zip(by, key))
        spaces = {m["search_space"] for m in members}
        protocols = {m["protocol"] for m in members}
        rows.append({
            **k,
            **({} if "optimizer" in k else {"optimizer": ",".join(sorted({str(m["optimizer"]) for m in members}))}),
            **({} if "dataset" in k else {"dataset": ",".join(sorted({str(m["dataset"]) for m in members}))}),
            "search_space": ",".join(sorted(str(s) for s in spaces)),
            "protocol": ",".join(sorted(str(p) for p in protocols)) if protocols != {None} else None,
            "runs": len(members),
            "test_accuracy": _stat([m["test_accuracy"] for m in members]),
            "valid_accuracy": _stat([m["valid_accuracy"] for m in members]),
            "params_millions": _stat([m["params_millions"] for m in members]),
            "cost": {"evaluations": _stat([m["evaluations"] for m in members]),
                     "epochs": _stat([m["epochs"] for m in members]),
                     "charged_seconds": _stat([m["charged_seconds"] for m in members]),
                     "wall_seconds": _stat([m["wall_seconds"] for m in members])},
            "published": _published_for(published, k, next(iter(spaces)) if len(spaces) == 1 else None, protocols,
                                        {(m["_optimizer"][0], json.dumps(m["_optimizer"][1], sort_keys=True, default=str))
                                         for m in members}),
        })
    return rows


def _key_text(value: Any) -> Any:
    return value if isinstance(value, (str, int, float, bool)) or value is None else str(value)


def _pm(stat: Optional[dict], digits: int = 2) -> str:
    return "-" if stat is None else f"{stat['mean']:.{digits}f} ± {stat['std']:.{digits}f}"


def markdown(rows: list[dict], by: tuple[str, ...]) -> str:
    """The rows as a Markdown table; the published rows' sources as numbered notes below it."""
    head = [*by, "runs", "test accuracy", "validation accuracy", "evaluations or epochs", "charged s", "published"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    sources: list[str] = []
    for r in rows:
        pub = r["published"]
        if pub is None:
            shown = "-"
        else:
            if pub["source"] not in sources:
                sources.append(pub["source"])
            shown = (f"{pub['mean']:.2f}" + (f" ± {pub['std']:.2f}" if pub.get("std") is not None else "")
                     + f" [{sources.index(pub['source']) + 1}]")
        lines.append("| " + " | ".join([
            *(str(r.get(k)) for k in by), str(r["runs"]), _pm(r["test_accuracy"]), _pm(r["valid_accuracy"]),
            _pm(r["cost"]["evaluations"] or r["cost"]["epochs"], 1), _pm(r["cost"]["charged_seconds"], 0), shown,
        ]) + " |")
    if sources:
        lines.append("")
        lines += [f"[{i}] {source}" for i, source in enumerate(sources, 1)]
    return "\n".join(lines)


def csv_text(rows: list[dict], by: tuple[str, ...]) -> str:
    out = io.StringIO()
    w = csv.writer(out)
    w.writerow([*by, "runs", "test_mean", "test_std", "valid_mean", "valid_std", "evaluations_mean",
                "charged_seconds_mean", "wall_seconds_mean", "published_mean", "published_std", "published_source"])
    for r in rows:
        t, v, c, pub = r["test_accuracy"] or {}, r["valid_accuracy"] or {}, r["cost"], r["published"] or {}
        w.writerow([*(r.get(k) for k in by), r["runs"], t.get("mean"), t.get("std"), v.get("mean"), v.get("std"),
                    (c["evaluations"] or {}).get("mean"), (c["charged_seconds"] or {}).get("mean"),
                    (c["wall_seconds"] or {}).get("mean"), pub.get("mean"), pub.get("std"), pub.get("source")])
    return out.getvalue()


def cmd_aggregate(host, args) -> int:
    from .study import STUDY_FILE, point_results

    study_dir = Path(args.study_dir).expanduser()
    if not (study_dir / STUDY_FILE).is_file():
        raise NasframeError(f"{study_dir} is not a study directory (no {STUDY_FILE}); make one with nasframe sweep")
    by = tuple(k.strip() for k in (args.by or ",".join(DEFAULT_BY)).split(",") if k.strip())
    if not by:
        raise NasframeError("--by needs at least one key, e.g. --by optimizer,dataset")
    points = point_results(study_dir)
    if not points:
        raise NasframeError(f"{study_dir} has no finished point yet; run or resume it with nasframe sweep --resume {study_dir}")
    rows = aggregate(points, by, published_rows(host))
    if args.json:
        print(json.dumps({"rows": rows}, indent=2))
    elif args.csv:
        print(csv_text(rows, by), end="")
    else:
        print(markdown(rows, by))
    return 0
