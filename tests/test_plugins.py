"""The plugin manager and the commands that show what it loaded.

Plugins come in three ways here: objects passed to ``make_plugin_manager(plugins=...)``,
fake distributions (a ``*.dist-info`` with an ``entry_points.txt``) put on ``sys.path`` so
that the real entry-point lookup finds them, and the same on ``PYTHONPATH`` for a
subprocess.
"""
from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import textwrap
import types
from pathlib import Path

import pytest

from nasframe_core import NasframeError, hookimpl, make_plugin_manager
from nasframe_core.cli import main
from nasframe_core.data import DatasetSource
from nasframe_core.plugins import PluginHost

BUILTINS = {
    "darts": {"optimizer": ["beta_darts", "darts", "darts_minus", "drnas", "fair_darts", "gdas", "pc_darts", "sdarts"], "search_space": [], "dataset": [], "benchmark": [], "proxy": []},
    "nasbench201": {"optimizer": [], "search_space": ["nasbench201"], "dataset": [], "benchmark": ["nasbench201"], "proxy": []},
    "darts_space": {"optimizer": [], "search_space": ["darts"], "dataset": [], "benchmark": [], "proxy": []},
    "blackbox": {"optimizer": ["asha", "hyperband", "ls", "re", "reinforce", "rs", "sh"], "search_space": [], "dataset": [], "benchmark": [], "proxy": []},
    "proxies": {"optimizer": [], "search_space": [], "dataset": [], "benchmark": [],
                "proxy": ["fisher", "flops", "grad_norm", "grasp", "jacob_cov", "naswot", "params", "snip", "synflow"]},
}
BUILTIN_DATASETS = {"digits", "synthetic", "cifar10"}

_serial = itertools.count()


# ------------------------------------------------------------------------------ helpers
def plugin(**hooks) -> types.ModuleType:
    """A plugin module whose attributes are ``hooks`` (decorate them with @hookimpl)."""
    module = types.ModuleType(f"fake_plugin_{next(_serial)}")
    for name, fn in hooks.items():
        setattr(module, name, fn)
    return module


def registers(kind: str, *names: str):
    """A discovery hook implementation registering ``names`` (factories: ``dict``)."""

    def impl(register):
        for n in names:
            register(n, dict, description=f"{n} for tests")

    impl.__name__ = {
        "optimizer": "nasframe_register_optimizers",
        "search_space": "nasframe_register_search_spaces",
        "dataset": "nasframe_register_datasets",
        "benchmark": "nasframe_register_benchmarks",
    }[kind]
    return hookimpl(impl)


def host_with(*named_plugins, lines=None) -> PluginHost:
    return make_plugin_manager(
        entry_points=False, plugins=list(named_plugins), warn=(lines.append if lines is not None else None)
    )


class FakeDists:
    """Writes distributions with ``nasframe`` entry points into folders of ``sys.path``."""

    def __init__(self, root: Path, monkeypatch: pytest.MonkeyPatch):
        self.root = root
        self.monkeypatch = monkeypatch
        self.modules: list[str] = []

    def write(self, entry_points: dict[str, str], modules: dict[str, str], *, version: str = "1.2.3",
              on_sys_path: bool = True) -> Path:
        n = next(_serial)
        site = self.root / f"site{n}"
        dist = site / f"nasframe_fake_{n}-{version}.dist-info"
        dist.mkdir(parents=True)
        (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: nasframe-fake-{n}\nVersion: {version}\n")
        lines = [f"{name} = {target}" for name, target in entry_points.items()]
        (dist / "entry_points.txt").write_text("[nasframe]\n" + "\n".join(lines) + "\n")
        for module, source in modules.items():
            (site / f"{module}.py").write_text(textwrap.dedent(source))
            self.modules.append(module)
        if on_sys_path:
            self.monkeypatch.syspath_prepend(str(site))
        return site

    def cleanup(self) -> None:
        for module in self.modules:
            sys.modules.pop(module, None)


@pytest.fixture
def dists(tmp_path, monkeypatch):
    monkeypatch.delenv("NASFRAME_PLUGINS", raising=False)
    d = FakeDists(tmp_path, monkeypatch)
    yield d
    d.cleanup()


def unique(name: str) -> str:
    """A module name no other test uses (modules stay in sys.modules once imported)."""
    return f"{name}_{os.getpid()}_{next(_serial)}"


GOOD_SOURCE = """
    from nasframe_core import hookimpl

    @hookimpl
    def nasframe_register_datasets(register):
        register("fake-data", dict, description="a fake dataset")
"""


# -------------------------------------------------------------------- entry points
def test_builtin_plugins_load_through_entry_points():
    lines: list[str] = []
    host = make_plugin_manager(environ={}, warn=lines.append)
    assert lines == [] and host.failures == []
    assert set(BUILTINS) | {"datasets"} <= set(host.plugins)
    report = {p["name"]: p for p in host.report()}
    for name, expected in BUILTINS.items():
        assert report[name]["registers"] == expected
        assert report[name]["version"]  # taken from the installed distribution
    assert BUILTIN_DATASETS <= set(report["datasets"]["registers"]["dataset"])
    assert report["darts"]["module"] == "nasframe_darts.plugin"
    assert report["darts"]["hooks"] == sorted(
        ["nasframe_register_optimizers", "nasframe_adapt_search_space", "nasframe_step", "nasframe_discretize",
         "nasframe_search_start", "nasframe_epoch_metrics", "nasframe_epoch_line", "nasframe_result_entries",
         "nasframe_summary_lines", "nasframe_plot_run"]
    )
    assert host.get("search_space", "darts").plugin == "darts_space"
    assert host.get("optimizer", "darts").plugin == "darts"


def test_broken_import_is_one_line_naming_the_plugin_and_the_rest_load(dists):
    good, broken = unique("good"), unique("broken")
    dists.write(
        {"fake_good": good, "fake_broken": broken},
        {good: GOOD_SOURCE, broken: "raise RuntimeError('no module named\\n  frobnicate')\n"},
    )
    lines: list[str] = []
    host = make_plugin_manager(environ={}, warn=lines.append)
    assert len(lines) == 1
    assert "'fake_broken'" in lines[0] and broken in lines[0]
    assert "RuntimeError: no module named frobnicate" in lines[0] and "\n" not in lines[0]
    assert [f.name for f in host.failures] == ["fake_broken"]
    assert "fake_broken" not in host.plugins
    info = host.plugins["fake_good"].to_json()
    assert info["version"] == "1.2.3" and info["module"] == good
    assert host.get("dataset", "fake-data").plugin == "fake_good"
    assert set(BUILTINS) <= set(host.plugins)  # the built-ins are unaffected


def test_default_report_goes_to_stderr_as_one_line(dists, capsys):
    broken = unique("broken")
    dists.write({"fake_broken": broken}, {broken: "import nasframe_no_such_module_anywhere\n"})
    host = make_plugin_manager(only=["fake_broken", "datasets"])
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("nasframe: plugin 'fake_broken' skipped: import of")
    assert "ModuleNotFoundError" in err
    assert list(host.plugins) == ["datasets"]


def test_import_calling_sys_exit_is_reported_and_skipped(dists):
    # e.g. a plugin module that parses the command line at import
    good, exiting = unique("good"), unique("exiting")
    dists.write({"fake_good": good, "fake_exit": exiting}, {good: GOOD_SOURCE, exiting: "raise SystemExit(2)\n"})
    lines: list[str] = []
    host = make_plugin_manager(only=["fake_good", "fake_exit"], warn=lines.append)
    assert len(lines) == 1 and "'fake_exit'" in lines[0] and "SystemExit" in lines[0]
    assert list(host.plugins) == ["fake_good"]


@pytest.mark.parametrize(
    "value, loaded",
    [
        ("fake_a,datasets", {"fake_a", "datasets"}),
        (" fake_a , fake_b ,", {"fake_a", "fake_b"}),
        ("", set()),
        (",", set()),
    ],
)
def test_env_variable_selects_entry_points(dists, monkeypatch, value, loaded):
    a, b, broken = unique("a"), unique("b"), unique("broken")
    dists.write(
        {"fake_a": a, "fake_b": b, "fake_broken": broken},
        {
            a: GOOD_SOURCE,
            b: GOOD_SOURCE.replace("fake-data", "fake-data-b"),
            broken: "raise ImportError('must not be imported')\n",
        },
    )
    monkeypatch.setenv("NASFRAME_PLUGINS", value)
    lines: list[str] = []
    host = make_plugin_manager(warn=lines.append)
    assert set(host.plugins) == loaded
    assert lines == []  # the broken plugin was not selected, so it was never imported
    assert broken not in sys.modules


def test_env_variable_unknown_name_is_reported(dists):
    lines: list[str] = []
    host = make_plugin_manager(environ={"NASFRAME_PLUGINS": "datasets,nosuchplugin"}, warn=lines.append)
    assert list(host.plugins) == ["datasets"]
    assert len(lines) == 1
    assert "'nosuchplugin'" in lines[0]
    assert "installed:" in lines[0] and "darts_space" in lines[0] and "nasbench201" in lines[0]


def test_only_argument_wins_over_the_env_variable(dists):
    host = make_plugin_manager(only=["darts_space"], environ={"NASFRAME_PLUGINS": "datasets"}, warn=[].append)
    assert list(host.plugins) == ["darts_space"]


def test_two_distributions_with_one_entry_point_name(dists):
    first, second = unique("first"), unique("second")
    dists.write({"fake_twin": first}, {first: GOOD_SOURCE})
    dists.write({"fake_twin": second}, {second: GOOD_SOURCE.replace("fake-data", "other-data")})
    lines: list[str] = []
    host = make_plugin_manager(only=["fake_twin"], warn=lines.append)
    assert list(host.plugins) == ["fake_twin"]
    assert len(lines) == 1 and "'fake_twin'" in lines[0] and "already loaded" in lines[0]


def test_entry_point_lookup_is_patchable(monkeypatch):
    from importlib.metadata import EntryPoint

    import nasframe_core.plugins as plugins_module

    fake = [EntryPoint(name="patched", value="nasframe_core.dataset_plugin", group="nasframe")]
    monkeypatch.setattr(plugins_module, "entry_points", lambda group: fake if group == "nasframe" else [])
    host = make_plugin_manager(environ={}, warn=[].append)
    assert list(host.plugins) == ["patched"]
    assert "synthetic" in host.names("dataset")


# ----------------------------------------------------------- validation of plugins
def test_misspelled_hook_is_reported_and_the_plugins_other_hooks_still_load():
    @hookimpl
    def nasframe_register_search_space(register):  # singular: no such hook
        raise AssertionError("a hook that matches no specification is never called")

    typo = plugin(
        nasframe_register_search_space=nasframe_register_search_space,
        nasframe_register_datasets=registers("dataset", "typo-data"),
    )
    good = plugin(nasframe_register_datasets=registers("dataset", "good-data"))
    lines: list[str] = []
    host = host_with(("typo", typo), ("good", good), lines=lines)
    assert len(lines) == 1
    assert lines[0].startswith("nasframe: plugin 'typo' loaded in part: hook 'nasframe_register_search_space' ")
    assert "matches no nasframe hook specification and is ignored" in lines[0]
    # the typo costs only itself: the plugin's correct hooks load
    assert list(host.plugins) == ["typo", "good"] and host.failures == []
    assert [(w.name, w.skipped) for w in host.warnings] == [("typo", False)]
    assert host.names("dataset") == ["good-data", "typo-data"] and host.names("search_space") == []
    assert host.plugins["typo"].hooks == ["nasframe_register_datasets"]
    assert len(host.hook.nasframe_register_datasets.get_hookimpls()) == 2


def test_hook_with_wrong_argument_name_is_rejected():
    @hookimpl
    def nasframe_register_datasets(regster):
        regster("x", dict)

    lines: list[str] = []
    host = host_with(("badargs", plugin(nasframe_register_datasets=nasframe_register_datasets)), lines=lines)
    assert len(lines) == 1 and "'badargs'" in lines[0] and "regster" in lines[0]
    assert host.plugins == {} and host.names("dataset") == []


def test_register_hook_that_raises_registers_nothing():
    @hookimpl
    def nasframe_register_datasets(register):
        register("half-done", dict)
        raise ValueError("cannot find my files")

    @hookimpl
    def nasframe_epoch_start(run, epoch):
        raise AssertionError("a skipped plugin must not observe anything")

    bad = plugin(nasframe_register_datasets=nasframe_register_datasets, nasframe_epoch_start=nasframe_epoch_start)
    good = plugin(nasframe_register_datasets=registers("dataset", "fine"))
    lines: list[str] = []
    host = host_with(("bad", bad), ("good", good), lines=lines)
    assert lines == ["nasframe: plugin 'bad' skipped: its registration hook raised ValueError: cannot find my files"]
    assert host.names("dataset") == ["fine"]
    assert list(host.plugins) == ["good"]
    host.hook.nasframe_epoch_start(run=None, epoch=0)  # the bad observer is gone


def test_register_without_callable_factory_is_reported():
    @hookimpl
    def nasframe_register_optimizers(register):
        register("nofactory", "not callable")

    lines: list[str] = []
    host = host_with(("odd", plugin(nasframe_register_optimizers=nasframe_register_optimizers)), lines=lines)
    assert len(lines) == 1 and "'odd'" in lines[0] and "'nofactory'" in lines[0] and "not callable" in lines[0]
    assert host.names("optimizer") == []


def test_same_name_from_two_plugins_is_ambiguous_and_both_load():
    first = plugin(nasframe_register_datasets=registers("dataset", "shared", "only-first"))
    second = plugin(
        nasframe_register_datasets=registers("dataset", "shared"),
        nasframe_register_optimizers=registers("optimizer", "second-opt"),
    )
    lines: list[str] = []
    host = host_with(("first", first), ("second", second), lines=lines)
    assert lines == [] and host.failures == []
    assert list(host.plugins) == ["first", "second"]
    # their other registrations load
    assert host.names("dataset") == ["only-first", "shared"] and host.names("optimizer") == ["second-opt"]
    assert host.get("dataset", "only-first").plugin == "first"
    assert host.ambiguous("dataset") == {"shared": ["first", "second"]}
    # the bare name chooses neither, whatever the load order
    for order in ((("first", first), ("second", second)), (("second", second), ("first", first))):
        with pytest.raises(NasframeError) as info:
            host_with(*order).get("dataset", "shared")
        assert str(info.value) == (
            "dataset 'shared' is ambiguous: plugins 'first' and 'second' both register it; choose one as "
            "'first:shared' or 'second:shared', or load only one of them with NASFRAME_PLUGINS"
        )
    # a qualified name chooses
    assert host.get("dataset", "first:shared").plugin == "first"
    assert host.get("dataset", "second:shared").plugin == "second"
    assert host.get("dataset", "first:only-first").plugin == "first"
    with pytest.raises(NasframeError, match="plugin 'second' registers no dataset 'only-first'; registered as "
                                            "first:only-first"):
        host.get("dataset", "second:only-first")
    with pytest.raises(NasframeError, match="no plugin 'third' is loaded; loaded plugins: first, second"):
        host.get("dataset", "third:shared")


def test_registered_name_may_not_hold_the_qualifier():
    lines: list[str] = []
    host = host_with(("colon", plugin(nasframe_register_datasets=registers("dataset", "a:b"))), lines=lines)
    assert len(lines) == 1 and "'colon'" in lines[0] and "'a:b'" in lines[0] and "':'" in lines[0]
    assert host.names("dataset") == []


def test_same_name_twice_in_one_plugin_is_reported():
    twice = plugin(nasframe_register_datasets=registers("dataset", "dup", "dup"))
    lines: list[str] = []
    host = host_with(("twice", twice), lines=lines)
    assert len(lines) == 1 and "'dup'" in lines[0] and host.names("dataset") == []


def test_same_name_in_different_kinds_is_fine():
    both = plugin(
        nasframe_register_optimizers=registers("optimizer", "same"),
        nasframe_register_search_spaces=registers("search_space", "same"),
    )
    lines: list[str] = []
    host = host_with(("both", both), lines=lines)
    assert lines == []
    assert host.plugins["both"].to_json()["registers"] == {
        "optimizer": ["same"], "search_space": ["same"], "dataset": [], "benchmark": [], "proxy": []
    }


def test_plugin_name_used_twice_is_reported():
    lines: list[str] = []
    host = host_with(
        ("twin", plugin(nasframe_register_datasets=registers("dataset", "one"))),
        ("twin", plugin(nasframe_register_datasets=registers("dataset", "two"))),
        lines=lines,
    )
    assert len(lines) == 1 and "'twin'" in lines[0]
    assert host.names("dataset") == ["one"]


def test_hosts_share_no_state():
    extra = plugin(nasframe_register_datasets=registers("dataset", "private"))
    with_extra = host_with(("extra", extra))
    without = host_with()
    assert with_extra.names("dataset") == ["private"]
    assert without.names("dataset") == [] and without.plugins == {}
    assert with_extra.pm is not without.pm


def test_hooks_are_called_through_the_host():
    seen = []

    @hookimpl
    def nasframe_epoch_end(run, epoch, metrics):
        metrics["observed"] = epoch
        seen.append(epoch)

    @hookimpl
    def nasframe_discretize(optimizer):
        return f"genotype of {optimizer}" if optimizer == "mine" else None

    host = host_with(
        ("observer", plugin(nasframe_epoch_end=nasframe_epoch_end)),
        ("owner", plugin(nasframe_discretize=nasframe_discretize)),
    )
    metrics: dict = {}
    host.hook.nasframe_epoch_end(run=None, epoch=3, metrics=metrics)
    assert seen == [3] and metrics == {"observed": 3}
    assert host.hook.nasframe_discretize(optimizer="mine") == "genotype of mine"  # firstresult: not a list
    assert host.hook.nasframe_discretize(optimizer="other") is None
    assert host.plugins["observer"].hooks == ["nasframe_epoch_end"]


# ----------------------------------------------------------- lookups and settings
def test_get_unknown_name_lists_what_is_installed():
    host = host_with(
        ("p", plugin(
            nasframe_register_search_spaces=registers("search_space", "beta", "alpha"),
            nasframe_register_benchmarks=registers("benchmark", "table"),
        ))
    )
    with pytest.raises(NasframeError) as info:
        host.get("search_space", "gamma")
    message = str(info.value)
    assert message == "unknown search space 'gamma'; installed: alpha, beta"
    with pytest.raises(NasframeError, match="unknown optimizer 'x'; installed: none installed"):
        host.get("optimizer", "x")
    assert host.get("benchmark", "table").description == "table for tests"


class Made(DatasetSource):
    """A dataset product holding the settings it was made with."""

    def __init__(self, **settings):
        self.settings = settings

    def load(self):
        raise AssertionError("not loaded in these tests")


class Widget(Made):
    extra_settings = {"colour": "red"}

    def __init__(self, size: int = 3, rate: float = 0.5, flag: bool = False, label: str = "a",
                 dims: tuple = (1, 2), anything=None, **kwargs):
        self.size, self.rate, self.flag, self.label, self.dims, self.anything = size, rate, flag, label, dims, anything
        self.kwargs = kwargs


@pytest.fixture
def widget_host():
    @hookimpl
    def nasframe_register_datasets(register):
        register("widget", Widget)
        register("fn", lambda depth=2, name="x": Made(depth=depth, name=name))

    return host_with(("widgets", plugin(nasframe_register_datasets=nasframe_register_datasets)))


def test_create_converts_strings_to_the_defaults_types(widget_host):
    w = widget_host.create("dataset", "widget", size="7", rate="0.25", flag="yes", label=5, dims="3, 4",
                           anything="kept", colour="blue")
    assert (w.size, w.rate, w.flag, w.label, w.dims, w.anything) == (7, 0.25, True, "5", (3, 4), "kept")
    assert type(w.size) is int and type(w.rate) is float and w.kwargs == {"colour": "blue"}
    assert widget_host.create("dataset", "widget", flag="off", rate=1).flag is False
    assert widget_host.create("dataset", "fn", depth="5").settings == {"depth": 5, "name": "x"}
    w = widget_host.create("dataset", "widget")
    assert (w.size, w.flag) == (3, False)


def test_create_rejects_unknown_settings_listing_the_known_ones(widget_host):
    with pytest.raises(NasframeError) as info:
        widget_host.create("dataset", "widget", sise=4)
    assert str(info.value) == (
        "unknown setting 'sise' for dataset 'widget'; known settings: anything, colour, dims, flag, label, rate, size"
    )
    with pytest.raises(NasframeError, match="known settings: depth, name"):
        widget_host.create("dataset", "fn", width=1)


@pytest.mark.parametrize(
    "key, value, message",
    [
        ("size", "seven", "'size' must be a whole number, got 'seven'"),
        ("size", "2.5", "'size' must be a whole number"),
        ("rate", "fast", "'rate' must be a number"),
        ("flag", "maybe", "'flag' must be true or false"),
    ],
)
def test_create_rejects_values_of_the_wrong_type(widget_host, key, value, message):
    with pytest.raises(NasframeError, match=message):
        widget_host.create("dataset", "widget", **{key: value})


def test_create_of_a_builtin_checks_its_settings():
    host = make_plugin_manager(only=["darts", "nasbench201"], warn=[].append)
    space = host.create("search_space", "nasbench201", C="4", N="1")
    assert (space.C, space.N) == (4, 1)
    with pytest.raises(NasframeError, match="unknown setting 'channels' for search space 'nasbench201'; "
                                            "known settings: C, N"):
        host.create("search_space", "nasbench201", channels=4)
    opt = host.create("optimizer", "darts", unrolled="true", learning_rate="0.1", device="cpu")
    assert opt.unrolled is True and opt.learning_rate == 0.1


# ----------------------------------------------------------------------------- CLI
@pytest.fixture
def cli_env(monkeypatch):
    monkeypatch.delenv("NASFRAME_PLUGINS", raising=False)


def test_cli_plugins_json_lists_the_builtins(cli_env, capsys):
    assert main(["plugins", "--json"]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    data = json.loads(out)
    assert data["failed"] == []
    by_name = {p["name"]: p for p in data["plugins"]}
    assert set(BUILTINS) | {"datasets"} <= set(by_name)
    for name, expected in BUILTINS.items():
        assert by_name[name]["registers"] == expected
        assert by_name[name]["module"].startswith("nasframe_") and by_name[name]["version"]
        assert by_name[name]["hooks"]
    assert BUILTIN_DATASETS <= set(by_name["datasets"]["registers"]["dataset"])
    assert by_name["datasets"]["hooks"] == ["nasframe_register_datasets"]


def test_cli_plugins_text(cli_env, capsys):
    assert main(["plugins"]) == 0
    out = capsys.readouterr().out
    assert "nasbench201 " in out and "(nasframe_spaces.nasbench201.plugin)" in out
    assert "  search spaces: nasbench201" in out and "  benchmarks: nasbench201" in out
    assert "  optimizers: beta_darts, darts, darts_minus, drnas, fair_darts, gdas, pc_darts, sdarts" in out
    assert ("  hooks: nasframe_adapt_search_space, nasframe_discretize, nasframe_epoch_line, nasframe_epoch_metrics, "
            "nasframe_plot_run, nasframe_register_optimizers, nasframe_result_entries, nasframe_search_start, "
            "nasframe_step, nasframe_summary_lines") in out


def test_cli_plugins_with_nothing_loaded(monkeypatch, capsys):
    monkeypatch.setenv("NASFRAME_PLUGINS", "")
    assert main(["plugins", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"plugins": [], "failed": [], "warnings": [], "ambiguous": []}
    assert main(["plugins"]) == 0
    assert capsys.readouterr().out == "no plugins loaded\n"


@pytest.mark.parametrize("argv", [["--help"], ["run", "--help"]])
def test_cli_help_names_installed_optimizers_and_spaces(dists, capsys, argv):
    extra = unique("extra")
    dists.write(
        {"fake_extra": extra},
        {extra: """
            from nasframe_core import hookimpl

            @hookimpl
            def nasframe_register_search_spaces(register):
                register("zzz-space", dict)
        """},
    )
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert "installed optimizers: asha, beta_darts, darts, darts_minus, drnas, fair_darts, gdas, hyperband, ls, pc_darts, re, reinforce, rs, sdarts, sh\n" in out
    assert "installed search spaces: darts, nasbench201, zzz-space\n" in out  # found through its entry point
    datasets_line = next(line for line in out.splitlines() if line.startswith("installed datasets: "))
    assert BUILTIN_DATASETS <= set(datasets_line.removeprefix("installed datasets: ").split(", "))
    if argv[0] == "run":
        assert "--search-space" in out and "--optimizer" in out


@pytest.mark.parametrize(
    "flag, message",
    [
        ("--optimizer", "nasframe: error: unknown optimizer 'nope'; installed: asha, beta_darts, darts, darts_minus, drnas, fair_darts, gdas, hyperband, ls, pc_darts, re, reinforce, rs, sdarts, sh"),
        ("--search-space", "nasframe: error: unknown search space 'nope'; installed: darts, nasbench201"),
    ],
)
def test_cli_unknown_plugin_name_is_one_line(cli_env, capsys, tmp_path, flag, message):
    out_dir = tmp_path / "run"
    rc = main(["run", flag, "nope", "--dataset", "synthetic", "--epochs", "1", "--device", "cpu",
               "--out", str(out_dir)])
    out, err = capsys.readouterr()
    assert rc != 0
    assert err == message + "\n"
    assert "Traceback" not in out + err
    assert not out_dir.exists()  # refused before anything was created


def test_cli_unknown_dataset_is_one_line(cli_env, capsys):
    rc = main(["run", "--dataset", "nope", "--epochs", "1"])
    err = capsys.readouterr().err
    assert rc != 0 and err.count("\n") == 1
    assert err.startswith("nasframe: error: unknown dataset 'nope'; installed: ") and "synthetic" in err


def test_cli_broken_plugin_in_a_subprocess(dists, tmp_path):
    broken = unique("broken")
    site = dists.write({"fake_broken": broken}, {broken: "1/0\n"}, version="0.0.1", on_sys_path=False)
    env = {k: v for k, v in os.environ.items() if k != "NASFRAME_PLUGINS"}
    env["PYTHONPATH"] = str(site)
    proc = subprocess.run(
        [sys.executable, "-m", "nasframe_core.cli", "plugins", "--json"],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.splitlines() == [
        f"nasframe: plugin 'fake_broken' skipped: import of {broken!r} failed: ZeroDivisionError: division by zero"
    ]
    data = json.loads(proc.stdout)
    assert data["failed"] == [
        {"name": "fake_broken",
         "reason": f"import of {broken!r} failed: ZeroDivisionError: division by zero"}
    ]
    names = {p["name"] for p in data["plugins"]}
    assert set(BUILTINS) | {"datasets"} <= names and "fake_broken" not in names


def test_hookimpl_under_another_function_name_registers():
    # pluggy's specname: the function's own name differs from the hook's
    @hookimpl(specname="nasframe_register_datasets")
    def my_datasets(register):
        register("renamed", dict)

    lines: list[str] = []
    host = host_with(("renamed", plugin(my_datasets=my_datasets)), lines=lines)
    assert lines == []
    assert host.names("dataset") == ["renamed"]
    assert host.plugins["renamed"].to_json()["registers"]["dataset"] == ["renamed"]


# --------------------------------------------------- impostors, products, selection
IMPOSTOR_SOURCE = """
    from nasframe_core import hookimpl

    def hijacked(**settings):
        raise AssertionError("the impostor's factory must never run")

    @hookimpl
    def nasframe_register_optimizers(register):
        register("darts", hijacked, description="not the real DARTS")

    @hookimpl
    def nasframe_register_datasets(register):
        register("hijack-data", dict)
"""


def test_an_impostor_registering_darts_neither_replaces_nor_hides_the_builtin(dists, monkeypatch, capsys, tmp_path):
    module = unique("aa_hijack")
    dists.write({"aa_hijack": module}, {module: IMPOSTOR_SOURCE})
    lines: list[str] = []
    host = make_plugin_manager(environ={}, warn=lines.append)
    assert lines == [] and host.failures == []
    names = list(host.plugins)
    assert names.index("aa_hijack") < names.index("darts")  # the impostor loads first
    assert "darts" in host.plugins["darts"].registers["optimizer"]  # the built-in is whole
    assert "gdas" in host.plugins["darts"].registers["optimizer"]
    assert host.get("dataset", "hijack-data").plugin == "aa_hijack"  # its other names load
    assert host.ambiguous("optimizer") == {"darts": ["aa_hijack", "darts"]}
    opt = host.create("optimizer", "darts:darts", device="cpu")
    assert type(opt).__module__.startswith("nasframe_darts")

    # `nasframe run` names both plugins and how to choose, and runs neither
    out = tmp_path / "run"
    assert main(["run", "--dataset", "synthetic", "--epochs", "1", "--device", "cpu", "--out", str(out)]) != 0
    err = capsys.readouterr().err
    assert err == (
        "nasframe: error: optimizer 'darts' is ambiguous: plugins 'aa_hijack' and 'darts' both register it; "
        "choose one as 'aa_hijack:darts' or 'darts:darts', or load only one of them with NASFRAME_PLUGINS\n"
    )
    assert main(["plugins"]) == 0
    text = capsys.readouterr().out
    assert "ambiguous optimizer 'darts': registered by aa_hijack, darts; name it as one of aa_hijack:darts, darts:darts" in text
    assert main(["plugins", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["ambiguous"] == [{"kind": "optimizer", "name": "darts", "plugins": ["aa_hijack", "darts"]}]

    # choosing the plugins resolves it
    monkeypatch.setenv("NASFRAME_PLUGINS", "darts,nasbench201,datasets")
    assert make_plugin_manager(warn=lines.append).get("optimizer", "darts").plugin == "darts"


def test_a_qualified_name_runs_end_to_end(dists, capsys, tmp_path):
    module = unique("aa_hijack")
    dists.write({"aa_hijack": module}, {module: IMPOSTOR_SOURCE})
    out = tmp_path / "run"
    assert main(["run", "--optimizer", "darts:darts", "--dataset", "synthetic", "--set", "dataset.n_train=32",
                 "--set", "dataset.n_test=8", "--set", "dataset.image_size=8", "--set", "search_space.C=4",
                 "--set", "search_space.N=1", "--batch-size", "8", "--steps-per-epoch", "1", "--epochs", "1",
                 "--device", "cpu", "--quiet", "--out", str(out)]) == 0
    assert json.loads((out / "result.json").read_text())["optimizer"] == "darts:darts"


@pytest.mark.parametrize(
    "kind, base",
    [
        ("optimizer", "nasframe_core.optimizer.MetaOptimizer or nasframe_core.blackbox.BlackBoxOptimizer"),
        ("search_space", "nasframe_core.space.SearchSpace"),
        ("dataset", "nasframe_core.data.DatasetSource"),
    ],
)
def test_a_factory_product_is_checked_against_its_hooks_base_class(kind, base):
    impl = registers(kind, "thing")  # its factory is dict
    host = host_with(("odd", plugin(**{impl.__name__: impl})))
    with pytest.raises(NasframeError) as info:
        host.create(kind, "thing")
    label = kind.replace("_", " ")
    assert str(info.value) == (
        f"{label} 'thing' of plugin 'odd' is broken: its factory returned a dict, not a {base}; "
        f"report it to the plugin's author"
    )


def test_open_benchmark_asks_only_what_benchmark_declares(tmp_path):
    from nasframe_core.benchmark import Benchmark, open_benchmark

    loads = []

    class Minimal(Benchmark):  # query and load only: no __len__
        def query(self, arch, dataset, metric):
            return 1.0

        def load(self):
            loads.append(self.path)

    @hookimpl
    def nasframe_register_benchmarks(register):
        register("minimal", Minimal)
        register("not-a-benchmark", lambda path: {"path": path})

    host = host_with(("tables", plugin(nasframe_register_benchmarks=nasframe_register_benchmarks)))
    bench = open_benchmark(host, "minimal", str(tmp_path))
    assert isinstance(bench, Minimal) and loads == [tmp_path]  # read at once, so a bad file fails early
    with pytest.raises(NasframeError, match="benchmark 'not-a-benchmark' of plugin 'tables' is broken: its factory "
                                            "returned a dict, not a nasframe_core.benchmark.Benchmark"):
        open_benchmark(host, "not-a-benchmark", str(tmp_path))


def test_an_unknown_name_says_what_nasframe_plugins_left_out(capsys, monkeypatch):
    host = make_plugin_manager(environ={"NASFRAME_PLUGINS": "darts"}, warn=[].append)
    with pytest.raises(NasframeError) as info:
        host.get("search_space", "nasbench201")
    message = str(info.value)
    assert message.startswith("unknown search space 'nasbench201'; installed: none installed (NASFRAME_PLUGINS=darts "
                              "left out the installed plugins ")
    assert "nasbench201" in message.split("left out", 1)[1] and "darts_space" in message
    assert message.endswith(": add the one that provides it, or unset NASFRAME_PLUGINS)")
    # the same through the command
    monkeypatch.setenv("NASFRAME_PLUGINS", "darts")
    assert main(["run", "--dataset", "synthetic", "--epochs", "1"]) != 0
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "NASFRAME_PLUGINS=darts left out" in err
    # without a selection the message stays as it was
    with pytest.raises(NasframeError) as info:
        make_plugin_manager(environ={}, warn=[].append).get("search_space", "nope")
    assert "left out" not in str(info.value)


@pytest.mark.parametrize("argv", [["--help"], ["plugins"], ["plugins", "--json"], ["query", "nasbench201", "0"],
                                  ["show", "RUN"]])
def test_listing_and_lookup_commands_import_no_torch(tmp_path, argv, nb201_csv):
    """Registrations are lazy ("module:Class" paths): --help, plugins, query and show need no
    torch, so they start in a fraction of a second."""
    from nasframe_core.rundir import RunDir

    run = RunDir.create(tmp_path / "run")
    run.write_config("command: run\noptimizer: {name: re}\nsearch_space: {name: nasbench201}\n"
                     "dataset: {name: cifar10}\nrun: {epochs: 1}\n")
    argv = [str(run.path) if a == "RUN" else a for a in argv]
    code = ("import sys; from nasframe_core.cli import main\n"
            "try:\n    main(sys.argv[1:])\nexcept SystemExit:\n    pass\n"
            "assert 'torch' not in sys.modules, 'torch was imported'\n")
    env = {**os.environ, "NASFRAME_NB201": str(nb201_csv)}
    done = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]


def test_a_registration_by_path_loads_on_first_use_and_a_bad_path_is_one_line():
    def register_paths(register):
        register("lazy-rs", "nasframe_blackbox.optimizers:RandomSearch", description="by path")
        register("missing", "nasframe_blackbox.nowhere:Nothing", description="a path to nothing")

    register_paths = hookimpl(specname="nasframe_register_optimizers")(register_paths)
    host = host_with(("paths", plugin(nasframe_register_optimizers=register_paths)))
    reg = host.get("optimizer", "lazy-rs")
    assert reg.target == "nasframe_blackbox.optimizers:RandomSearch"
    from nasframe_blackbox.optimizers import RandomSearch

    assert reg.factory is RandomSearch and isinstance(host.create("optimizer", "lazy-rs"), RandomSearch)
    with pytest.raises(NasframeError, match=r"optimizer 'missing' of plugin 'paths' cannot be loaded from "
                                            r"nasframe_blackbox.nowhere:Nothing \(.*\); reinstall the plugin"):
        host.create("optimizer", "missing")


def test_the_default_plugins_come_from_the_registry(capsys):
    from nasframe_core.config import Config

    host = make_plugin_manager(environ={})
    cfg = Config()
    assert cfg.optimizer.name is None  # the core names no plugin
    cfg.fill_defaults(host)
    assert (cfg.optimizer.name, cfg.search_space.name, cfg.dataset.name) == ("darts", "nasbench201", "digits")

    def two_defaults(register):
        register("mine", "nasframe_blackbox.optimizers:RandomSearch", default=True)

    two_defaults = hookimpl(specname="nasframe_register_optimizers")(two_defaults)
    other = make_plugin_manager(environ={}, plugins=[("mine", plugin(nasframe_register_optimizers=two_defaults))])
    with pytest.raises(NasframeError, match=r"several installed plugins declare a default optimizer \(darts, mine\); "
                                            r"name one with --optimizer"):
        other.default("optimizer")
    bare = host_with(("odd", plugin(**{registers("optimizer", "only").__name__: registers("optimizer", "only")})))
    with pytest.raises(NasframeError, match=r"no installed plugin declares a default optimizer; name one with "
                                            r"--optimizer \(installed: only\)"):
        bare.default("optimizer")


def test_the_core_names_no_plugin_and_no_cpu_kernel():
    """The core is the contract, the loop and the CLI: no source of it names the one-shot plugin
    or imports the CPU package, and it holds no C source."""
    import re as _re

    core = Path(__file__).resolve().parents[1] / "nasframe_core"
    assert not list(core.rglob("*.c"))
    for path in core.rglob("*.py"):
        text = path.read_text()
        assert not _re.search(r"darts", text, _re.I), path
        assert "nasframe_cpu" not in text, path


def test_the_core_reads_no_op_weights():
    """What a one-shot search says about its op weights (edge margins, the warnings they raise,
    their figure) is the one-shot plugin's, behind the reporting hooks; the core keeps no module
    for it and names neither the weights nor the margins. The Python API alone reads the weights
    back from result.json, as data."""
    import re as _re

    core = Path(__file__).resolve().parents[1] / "nasframe_core"
    assert not (core / "confidence.py").exists()
    for path in core.rglob("*.py"):
        text = path.read_text()
        assert not _re.search(r"edge[ _]margin|plot_alphas", text, _re.I), path
        if path.name != "api.py":
            assert not _re.search(r"\balphas\b", text), path
