"""docs/reproductions-oneshot.md: every smoke command runs with every NB201 recipe of its method."""
from __future__ import annotations

import json
import math
import re
import shlex
from pathlib import Path

import pytest

from nasframe_core.cli import main
from nasframe_core.plugins import make_plugin_manager
from nasframe_core.recipes import recipes_for
from nasframe_darts import FAMILY

DOC = Path(__file__).resolve().parents[1] / "docs" / "reproductions-oneshot.md"


def smoke_lines() -> list[str]:
    block = re.search(r"```smoke\n(.*?)```", DOC.read_text(), re.S)
    assert block, f"{DOC} has no smoke block"
    return [line.strip() for line in block.group(1).splitlines() if line.strip()]


def cases():
    host = make_plugin_manager()
    out = []
    for line in smoke_lines():
        argv = shlex.split(line)
        optimizer = argv[argv.index("--optimizer") + 1]
        for recipe in recipes_for(host, optimizer, "nasbench201"):
            out.append(pytest.param(argv, recipe.name, id=f"{optimizer}{'-unrolled' if 'unrolled' in line else ''}-{recipe.name}"))
    return out


def test_the_doc_has_a_smoke_line_per_method_and_darts_second_order():
    lines = smoke_lines()
    methods = [shlex.split(line)[shlex.split(line).index("--optimizer") + 1] for line in lines]
    assert sorted(set(methods)) == sorted(FAMILY)
    assert any("optimizer.unrolled=true" in line and "--optimizer darts" in line for line in lines)


@pytest.mark.parametrize("argv, recipe", cases())
def test_smoke_command_runs_with_each_nb201_recipe(argv, recipe, tmp_path):
    assert argv[:2] == ["nasframe", "run"]
    out = tmp_path / "run"
    assert main([*argv[1:], "--recipe", recipe, "--quiet", "--out", str(out)]) == 0
    result = json.loads((out / "result.json").read_text())
    assert result["recipe"]["name"] == recipe and result["epochs"] == 1
    assert math.isfinite(result["final"]["train_loss"]) and math.isfinite(result["final"]["val_loss"])
