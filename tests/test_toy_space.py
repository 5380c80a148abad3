"""The third-party example ``examples/nasframe-toy-space``.

The first part installs the example into a fresh virtual environment and shows that its
entry point alone makes the ``toy`` space appear in ``nasframe plugins`` and usable with
``--search-space toy``. The new environment sees this environment's packages (nasframe,
torch) through a ``.pth`` file, so nothing is downloaded or rebuilt.

The second part checks the space itself, imported from the example's source.
"""
from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import os
import re
import shutil
import site
import subprocess
import sys
import sysconfig
import types
from pathlib import Path

import pytest
import torch
from torch import nn

from nasframe_core import NasframeError, make_plugin_manager

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "nasframe-toy-space"
TOY_OPS = ("none", "skip_connect", "conv_3x3", "avg_pool_3x3")
GENOTYPE_RE = re.compile(r"^0-1:(\w+),0-2:(\w+),1-2:(\w+)$")


# ------------------------------------------------------------- a fresh environment
def _site_dirs() -> list[str]:
    """The site-packages folders of the running interpreter."""
    dirs = list(site.getsitepackages())
    paths = sysconfig.get_paths()
    dirs += [paths["purelib"], paths["platlib"]]
    out: list[str] = []
    for d in dirs:
        if os.path.isdir(d) and d not in out:
            out.append(d)
    return out


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "NASFRAME_PLUGINS")}
    env.update(PIP_NO_INDEX="1", PIP_DISABLE_PIP_VERSION_CHECK="1", PYTHONDONTWRITEBYTECODE="1")
    # the toy network is tiny: one thread avoids contention on busy machines (and changes no result)
    env["OMP_NUM_THREADS"] = "1"
    return env


def _run(args: list[str], cwd: Path, timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run(args, capture_output=True, text=True, env=_env(), cwd=cwd, timeout=timeout)


def _nasframe(python: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return _run([str(python), "-m", "nasframe_core.cli", *args], cwd)


def _plugins(python: Path, cwd: Path) -> dict:
    proc = _nasframe(python, cwd, "plugins", "--json")
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    return json.loads(proc.stdout)


@pytest.fixture(scope="module")
def toy_env(tmp_path_factory):
    """A new venv, its plugin list before the example is installed, then the example installed."""
    root = tmp_path_factory.mktemp("toyenv")
    venv = root / "venv"
    # pip comes through the .pth below when this interpreter has it; installing it is slow
    with_pip = importlib.util.find_spec("pip") is None
    cmd = [sys.executable, "-m", "venv", str(venv)] + ([] if with_pip else ["--without-pip"])
    subprocess.run(cmd, check=True, timeout=300)
    python = venv / ("Scripts" if os.name == "nt" else "bin") / "python"
    purelib = _run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], root)
    new_site = Path(purelib.stdout.strip())
    assert new_site.is_dir() and new_site.resolve().is_relative_to(venv.resolve()), purelib
    # addsitedir rather than a bare path: it also runs the .pth files of those folders
    # (an editable install of nasframe lives in one)
    lines = [f"import site; site.addsitedir({d!r})" for d in _site_dirs()]
    (new_site / "_nasframe_parent_env.pth").write_text("\n".join(lines) + "\n")

    before = _plugins(python, root)

    source = root / "src"
    shutil.copytree(EXAMPLE, source, ignore=shutil.ignore_patterns("*.egg-info", "build", "__pycache__"))
    install = _run([str(python), "-m", "pip", "install", "--no-deps", "--no-build-isolation", "-q", str(source)],
                   root, timeout=300)
    assert install.returncode == 0, install.stdout + install.stderr
    assert (new_site / "nasframe_toy_space").is_dir()
    return types.SimpleNamespace(root=root, python=python, before=before)


def test_toy_is_not_installed_here():
    with pytest.raises(importlib.metadata.PackageNotFoundError):
        importlib.metadata.distribution("nasframe-toy-space")
    host = make_plugin_manager(environ={}, warn=[].append)
    assert "toy" not in host.names("search_space") and "toy" not in host.plugins
    with pytest.raises(NasframeError, match="unknown search space 'toy'"):
        host.get("search_space", "toy")


def test_installing_the_example_adds_the_toy_plugin(toy_env):
    before = {p["name"]: p for p in toy_env.before["plugins"]}
    assert {"darts", "nasbench201", "darts_space", "datasets"} <= set(before)  # the new venv sees nasframe
    assert "toy" not in before
    assert not any("toy" in p["registers"]["search_space"] for p in before.values())

    after = _plugins(toy_env.python, toy_env.root)
    assert after["failed"] == []
    by_name = {p["name"]: p for p in after["plugins"]}
    assert set(by_name) == set(before) | {"toy"}
    assert by_name["toy"] == {
        "name": "toy",
        "version": "0.1.0",
        "module": "nasframe_toy_space",
        "hooks": ["nasframe_register_search_spaces"],
        "registers": {"optimizer": [], "search_space": ["toy"], "dataset": [], "benchmark": [], "proxy": []},
    }


def test_help_of_the_new_environment_names_toy(toy_env):
    proc = _nasframe(toy_env.python, toy_env.root, "run", "--help")
    assert proc.returncode == 0, proc.stderr
    assert "installed search spaces: darts, nasbench201, toy\n" in proc.stdout


def test_run_with_the_toy_space(toy_env):
    out = toy_env.root / "run"
    proc = _nasframe(
        toy_env.python, toy_env.root,
        "run", "--search-space", "toy", "--dataset", "synthetic", "--epochs", "1", "--steps-per-epoch", "2",
        "--batch-size", "8", "--device", "cpu", "--out", str(out),
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    output = proc.stdout + proc.stderr
    assert "Traceback" not in output
    result = json.loads((out / "result.json").read_text())
    assert result["search_space"] == "toy" and result["optimizer"] == "darts" and result["epochs"] == 1
    match = GENOTYPE_RE.match(result["genotype"])
    assert match, result["genotype"]
    assert set(match.groups()) <= set(TOY_OPS) - {"none"}  # 'none' is never chosen
    assert result["genotype_json"] == {"space": "toy", "genotype": result["genotype"]}
    assert result["alpha_names"] == ["cell"]
    assert [len(result["alphas"][0]), len(result["alphas"][0][0])] == [3, 4]  # 3 edges x 4 ops
    assert f"found architecture: {result['genotype']}" in output
    lines = (out / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 1 and json.loads(lines[0])["genotype"] == result["genotype"]


# --------------------------------------------------------------- the space itself
@pytest.fixture
def toy(monkeypatch):
    monkeypatch.syspath_prepend(str(EXAMPLE))
    import nasframe_toy_space

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny tensors: threads only add contention
    yield nasframe_toy_space
    torch.set_num_threads(threads)


def _has_batch_norm(module: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.batchnorm._NormBase) for m in module.modules())


def test_toy_plugin_registers_a_search_space(toy):
    from nasframe_core.space import SearchSpace

    lines: list[str] = []
    host = make_plugin_manager(entry_points=False, plugins=[("toy", toy)], warn=lines.append)
    assert lines == [] and host.names("search_space") == ["toy"]
    space = host.create("search_space", "toy", C="4", cells="3")
    assert isinstance(space, SearchSpace) and (space.C, space.cells) == (4, 3)
    with pytest.raises(NasframeError, match="known settings: C, cells"):
        host.create("search_space", "toy", width=4)
    spec = space.cell_specs()["cell"]
    assert spec.edges == ((0, 1), (0, 2), (1, 2)) and spec.ops == TOY_OPS
    assert spec.inputs == (0,) and spec.output == (2,)


def test_toy_genotype_round_trips(toy):
    from nasframe_core.genotype import Genotype
    from nasframe_core.space import Choice

    space = toy.ToySearchSpace()
    g = toy.ToyGenotype(("conv_3x3", "skip_connect", "avg_pool_3x3"))
    assert isinstance(g, Genotype)
    assert str(g) == "0-1:conv_3x3,0-2:skip_connect,1-2:avg_pool_3x3"
    assert space.parse_genotype(str(g)) == g
    assert space.parse_genotype(" 1-2:avg_pool_3x3, 0-1:conv_3x3,0-2:skip_connect ") == g  # any order
    assert toy.ToyGenotype.from_json(g.to_json()) == g and g.to_json()["space"] == "toy"
    assert hash(g) == hash(space.parse_genotype(str(g)))
    with pytest.raises(Exception):
        g.ops = ("none",) * 3  # frozen
    choices = space.genotype_choices(g)
    assert choices == {"cell": [Choice(0, 1, "conv_3x3"), Choice(0, 2, "skip_connect"), Choice(1, 2, "avg_pool_3x3")]}
    assert space.make_genotype({"cell": list(reversed(choices["cell"]))}) == g
    for bad in ("", "0-1:conv_3x3", "0-1:conv_3x3,0-2:skip_connect,1-2:sep_conv", "0-1:a,0-1:a,1-2:a",
                "0-3:conv_3x3,0-2:skip_connect,1-2:none", "conv_3x3,skip_connect,none"):
        with pytest.raises(NasframeError):
            space.parse_genotype(bad)
    with pytest.raises(NasframeError, match="missing"):
        space.make_genotype({"cell": choices["cell"][:2]})


def test_toy_supernet_has_no_batch_norm_and_matches_its_discrete_network(toy):
    from nasframe_darts import DARTSOptimizer

    torch.manual_seed(0)
    opt = DARTSOptimizer(device="cpu")
    opt.adapt_search_space(toy.ToySearchSpace(C=4), "cifar10")
    opt.before_training()
    assert not _has_batch_norm(opt.graph)
    assert [tuple(a.shape) for a in opt.graph.arch_parameters()] == [(3, 4)]
    assert sum(1 for _ in opt.graph.network.cells) == 2

    x = torch.randn(4, 3, 8, 8)
    y = torch.tensor([0, 1, 2, 3])
    logits_train, logits_val, loss_train, loss_val = opt.step((x, y), (x, y))
    assert logits_train.shape == (4, 10) and torch.isfinite(loss_train) and torch.isfinite(loss_val)

    # make the alphas one-hot on a chosen cell: the supernet then computes the discrete network
    chosen = ("conv_3x3", "avg_pool_3x3", "skip_connect")
    with torch.no_grad():
        alpha = opt.graph.arch_parameters()[0]
        alpha.fill_(-1e4)
        for row, op in enumerate(chosen):
            alpha[row, TOY_OPS.index(op)] = 1e4
    final = opt.get_final_architecture()
    assert str(final.genotype) == "0-1:conv_3x3,0-2:avg_pool_3x3,1-2:skip_connect"
    assert not _has_batch_norm(final)
    with torch.no_grad():
        torch.testing.assert_close(final(x), opt.graph(x), rtol=1e-5, atol=1e-6)


def test_toy_supernet_treats_every_sample_alone(toy):
    # no batch statistics anywhere: a batch split in two gives the same outputs (what makes
    # data-parallel runs equal single-process ones)
    from nasframe_darts.mixed import mixed_cell_factory

    torch.manual_seed(1)
    space = toy.ToySearchSpace(C=4)
    net = space.build_network(mixed_cell_factory(), num_classes=5, in_channels=1)
    weights = {"cell": torch.softmax(torch.randn(3, 4), dim=-1)}
    x = torch.randn(6, 1, 8, 8)
    with torch.no_grad():
        whole = net(x, weights)
        halves = torch.cat([net(x[:3], weights), net(x[3:], weights)])
    assert whole.shape == (6, 5)
    torch.testing.assert_close(whole, halves, rtol=1e-5, atol=1e-6)
