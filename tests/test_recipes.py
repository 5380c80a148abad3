"""Search recipes: declared per method and space, applied under the user's settings, recorded."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from nasframe_core.cli import build_parser, config_from_args, main
from nasframe_core.errors import NasframeError
from nasframe_core.plugins import make_plugin_manager
from nasframe_darts import FAMILY

SPACES = ("nasbench201", "darts")
SMOKE = ["--dataset", "synthetic", "--set", "dataset.n_train=64", "--set", "dataset.n_test=16",
         "--set", "dataset.image_size=8", "--set", "search_space.C=4", "--set", "search_space.N=1",
         "--batch-size", "8", "--device", "cpu", "--quiet"]


@pytest.fixture(scope="module")
def host():
    return make_plugin_manager()


def configure(host, *argv):
    args = build_parser(host).parse_args(["run", *argv])
    return config_from_args(host, args, "run")


def recipes_json(capsys) -> list[dict]:
    assert main(["recipes", "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_recipes_json_lists_every_method_and_space_with_a_source(capsys):
    rows = recipes_json(capsys)
    assert all(set(r) == {"optimizer", "search_space", "name", "source", "settings"} for r in rows)
    for name in FAMILY:
        for space in SPACES:
            mine = [r for r in rows if r["optimizer"] == name and r["search_space"] == space]
            assert mine, (name, space)
            assert all(r["source"].strip() and r["settings"] for r in mine)
            assert "darts" in {r["name"] for r in mine}  # the DARTS paper's, for every method
            assert {"run.epochs", "run.batch_size", "optimizer.learning_rate"} <= set(mine[0]["settings"])


def test_recipes_text_names_each_recipe(capsys):
    assert main(["recipes"]) == 0
    out = capsys.readouterr().out
    assert "gdas on search space nasbench201:" in out and "GDAS.config" in out


@pytest.mark.parametrize("optimizer, epochs, batch", [
    ("darts", 50, 64), ("gdas", 250, 64), ("drnas", 100, 64), ("pc_darts", 50, 256), ("fair_darts", 50, 128),
    ("sdarts", 100, 64), ("darts_minus", 50, 64), ("beta_darts", 100, 64),
])
def test_each_method_runs_its_nb201_recipe_by_default(host, optimizer, epochs, batch):
    cfg = configure(host, "--optimizer", optimizer, "--search-space", "nasbench201")
    assert (cfg.run.epochs, cfg.run.batch_size) == (epochs, batch)
    assert cfg.recipe["name"] != "darts" and cfg.recipe["source"]


def test_gdas_nb201_is_xautodls_config(host):
    cfg = configure(host, "--optimizer", "gdas", "--search-space", "nasbench201")
    s = cfg.optimizer.settings
    assert cfg.run.epochs == 250 and cfg.run.lr_min == 0.001
    assert (s["learning_rate"], s["momentum"], s["nesterov"], s["weight_decay"]) == (0.025, 0.9, True, 5e-4)
    assert (s["tau_max"], s["tau_min"], s["arch_learning_rate"], s["arch_weight_decay"]) == (10.0, 0.1, 3e-4, 1e-3)
    assert "GDAS.config" in cfg.recipe["source"]


def test_the_users_values_win_over_the_recipe(host, tmp_path):
    cfg = configure(host, "--optimizer", "gdas", "--search-space", "nasbench201", "--epochs", "3",
                    "--set", "optimizer.nesterov=false", "--set", "run.lr_min=0")
    assert (cfg.run.epochs, cfg.optimizer.settings["nesterov"], cfg.run.lr_min) == (3, False, 0.0)
    assert cfg.optimizer.settings["weight_decay"] == 5e-4  # the rest is the recipe's
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"optimizer": {"name": "gdas", "weight_decay": 1e-4}, "run": {"batch_size": 32}}))
    cfg = configure(host, "--search-space", "nasbench201", "--config", str(path))
    assert (cfg.optimizer.settings["weight_decay"], cfg.run.batch_size, cfg.run.epochs) == (1e-4, 32, 250)


def test_recipe_flag_picks_the_darts_papers_settings(host):
    cfg = configure(host, "--optimizer", "gdas", "--search-space", "nasbench201", "--recipe", "darts")
    s = cfg.optimizer.settings
    assert cfg.recipe["name"] == "darts" and cfg.run.epochs == 50
    assert (s["nesterov"], s["weight_decay"], s["arch_betas"]) == (False, 3e-4, [0.5, 0.999])


def test_an_unknown_recipe_is_one_line(capsys):
    code = main(["run", "--optimizer", "gdas", "--search-space", "nasbench201", "--recipe", "gdass"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert "no recipe 'gdass'" in err[0] and "nb201" in err[0] and "darts" in err[0]


def test_a_space_without_a_recipe_of_its_own_gets_the_darts_papers(host):
    from nasframe_core.recipes import select_recipe

    assert select_recipe(host, "gdas", "some-third-party-space").name == "darts"


def test_run_records_the_recipe_and_every_setting_and_resume_keeps_them(tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["run", "--optimizer", "gdas", "--search-space", "nasbench201", *SMOKE, "--epochs", "1",
                 "--steps-per-epoch", "1", "--out", str(out)])
    assert code == 0
    config = yaml.safe_load((out / "config.yaml").read_text())
    assert config["optimizer"]["nesterov"] is True and config["optimizer"]["weight_decay"] == 5e-4
    assert config["run"]["batch_size"] == 8 and config["recipe"]["name"] == "nb201"
    log = (out / "log.txt").read_text()
    first = [line for line in log.splitlines() if line.strip()][:2]
    assert any("recipe: nb201" in line and "GDAS.config" in line for line in first), first
    result = json.loads((out / "result.json").read_text())
    assert result["recipe"]["name"] == "nb201" and "GDAS.config" in result["recipe"]["source"]
    assert result["settings"]["optimizer"]["nesterov"] is True
    assert result["settings"]["optimizer"]["unsampled_weights"] is True

    assert main(["run", "--resume", str(out), "--epochs", "2", "--quiet"]) == 0
    result = json.loads((out / "result.json").read_text())
    assert result["recipe"]["name"] == "nb201" and result["epochs"] == 2
    assert result["settings"]["optimizer"]["nesterov"] is True and result["settings"]["run"]["batch_size"] == 8
    code = main(["run", "--resume", str(out), "--recipe", "darts"])
    assert code == 2 and "--recipe cannot change a run being resumed" in capsys.readouterr().err


def test_the_config_yaml_of_a_default_gdas_run_says_250_epochs_and_nesterov(host, tmp_path):
    """What nasframe run --optimizer gdas --search-space nasbench201 writes (built, not run)."""
    from nasframe_core.config import dump_config

    cfg = configure(host, "--optimizer", "gdas", "--search-space", "nasbench201")
    text = dump_config(cfg.to_dict())
    data = yaml.safe_load(text)
    assert "epochs: 250" in text and data["optimizer"]["nesterov"] is True


def test_recipe_settings_are_the_names_set_takes(host):
    """Every setting of every recipe is accepted by the run's configuration (no typo in a table)."""
    from nasframe_core.config import Config
    from nasframe_core.recipes import all_recipes

    for r in all_recipes(host):
        cfg = Config(command="run")
        cfg.optimizer.name = r.optimizer
        if r.search_space != "*":
            cfg.search_space.name = r.search_space
        for key, value in r.settings.items():
            cfg.set(key, value)
        try:
            cfg.check_plugins(host)
        except NasframeError as exc:
            pytest.fail(f"{r.optimizer}/{r.search_space}/{r.name}: {exc}")
