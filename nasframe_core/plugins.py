"""The plugin manager: finds plugins through entry points and collects what they register.

There is no module-level state: :func:`make_plugin_manager` builds a fresh
:class:`PluginHost` and the caller passes it on explicitly.

Nothing is decided by load order. When two plugins register one name of one kind, both
registrations are kept and the name is ambiguous: ``nasframe plugins`` lists both, and using
the bare name is an error naming both plugins; ``plugin:name`` (e.g. ``myplugin:myoptimizer``) or
``NASFRAME_PLUGINS`` chooses. A plugin hook that matches no hook specification (a typo) is
reported and ignored; the plugin's other hooks load, since dropping them too would turn one
misspelt name into many missing ones. Factories' products are checked against the base class
their hook promises.
"""
from __future__ import annotations

import os
import sys
from importlib.metadata import EntryPoint, entry_points
from typing import Any, Callable, Iterable, Mapping, Optional

import attrs
import pluggy

from . import hookspecs
from .errors import NasframeError, unknown_name

ENTRY_POINT_GROUP = "nasframe"
ENV_PLUGINS = "NASFRAME_PLUGINS"

KINDS = ("optimizer", "search_space", "dataset", "benchmark", "proxy")
_DISCOVERY_HOOK = {
    "optimizer": "nasframe_register_optimizers",
    "search_space": "nasframe_register_search_spaces",
    "dataset": "nasframe_register_datasets",
    "benchmark": "nasframe_register_benchmarks",
    "proxy": "nasframe_register_proxies",
}
#: what each kind's factory must return, as (module, class) pairs of nasframe_core
_PRODUCT = {
    "optimizer": ("nasframe_core.optimizer", "MetaOptimizer", "nasframe_core.blackbox", "BlackBoxOptimizer"),
    "search_space": ("nasframe_core.space", "SearchSpace"),
    "dataset": ("nasframe_core.data", "DatasetSource"),
    "benchmark": ("nasframe_core.benchmark", "Benchmark"),
    "proxy": ("nasframe_core.proxy", "Proxy"),
}
#: separates a plugin name from a registered name: ``myplugin:myoptimizer``
QUALIFIER = ":"
KIND_LABEL = {
    "optimizer": "optimizer",
    "search_space": "search space",
    "dataset": "dataset",
    "benchmark": "benchmark",
    "proxy": "proxy",
}


@attrs.frozen
class Registration:
    """One named thing a plugin provides; ``factory`` is only called when it is used.

    A plugin may register the factory itself or its import path, ``"package.module:Name"``:
    then nothing is imported until the name is used, so commands that only list or look up
    plugins (``nasframe --help``, ``plugins``, ``query``, ``show``) import no torch."""

    kind: str
    name: str
    target: Any  # the factory, or "module:attribute" of it
    plugin: str
    description: str = ""
    options: Mapping[str, Any] = attrs.field(factory=dict)
    _resolved: list = attrs.field(factory=list, eq=False, repr=False)

    @property
    def factory(self) -> Callable[..., Any]:
        if not isinstance(self.target, str):
            return self.target
        if not self._resolved:
            import importlib

            module, _, attr = self.target.partition(":")
            label = f"{KIND_LABEL[self.kind]} {self.name!r} of plugin {self.plugin!r}"
            try:
                found = getattr(importlib.import_module(module), attr)
            except Exception as exc:  # noqa: BLE001 - a broken plugin is named, not raised through
                raise NasframeError(f"{label} cannot be loaded from {self.target} ({_one_line(exc)}); "
                                    f"reinstall the plugin or report it to its author") from None
            if not callable(found):
                raise NasframeError(f"{label}: {self.target} is not callable; report it to the plugin's author")
            self._resolved.append(found)
        return self._resolved[0]


@attrs.define
class PluginInfo:
    """What ``nasframe plugins`` reports about one plugin."""

    name: str
    module: str
    version: Optional[str]
    hooks: list = attrs.field(factory=list)
    registers: dict = attrs.field(factory=lambda: {kind: [] for kind in KINDS})

    def to_json(self) -> dict:
        return {
            "name": self.name,
            "version": self.version,
            "module": self.module,
            "hooks": sorted(self.hooks),
            "registers": {kind: sorted(names) for kind, names in self.registers.items()},
        }


@attrs.frozen
class PluginFailure:
    """A plugin that was skipped (``skipped``), or loaded with a part of it ignored."""

    name: str
    reason: str
    skipped: bool = True

    def line(self) -> str:
        what = "skipped" if self.skipped else "loaded in part"
        return f"nasframe: plugin {self.name!r} {what}: {self.reason}"


class PluginHost:
    """A pluggy manager plus the registries filled by the discovery hooks."""

    def __init__(self, warn: Optional[Callable[[str], None]] = None):
        self.pm = pluggy.PluginManager(hookspecs.PROJECT)
        self.pm.add_hookspecs(hookspecs)
        #: what runs made with this host share (read-only benchmark tables, by file and version)
        self.cache: dict = {}
        self.plugins: dict[str, PluginInfo] = {}
        self.failures: list[PluginFailure] = []
        #: plugins loaded with a part ignored (a hook that matches no specification)
        self.warnings: list[PluginFailure] = []
        #: kind -> name -> its registrations, one per plugin (more than one: ambiguous)
        self._registry: dict[str, dict[str, list[Registration]]] = {kind: {} for kind in KINDS}
        #: installed entry points left out by a plugin selection, and how it was given
        self.filtered_out: list[str] = []
        self.selection: str = ""
        self._warn = warn if warn is not None else _stderr_line

    @property
    def hook(self):
        return self.pm.hook

    # ----------------------------------------------------------------- loading
    def add_plugin(self, plugin: Any, name: str, version: Optional[str] = None) -> bool:
        """Register one plugin object; a broken one is reported and skipped.

        Returns whether the plugin was added.
        """
        if name in self.plugins:
            self._fail(name, "a plugin of this name is already loaded")
            return False
        try:
            self.pm.register(plugin, name=name)
        except Exception as exc:  # pluggy validation errors, bad signatures
            self._fail(name, _one_line(exc))
            return False
        unknown = [
            impl_hook
            for impl_hook in _hook_names_of(self.pm, plugin)
            if self.pm.hook.__dict__[impl_hook].spec is None
        ]
        for hook_name in unknown:
            self._warn_partial(
                name,
                f"hook {hook_name!r} matches no nasframe hook specification and is ignored; its other hooks "
                f"load (check the name against nasframe_core.hookspecs)",
            )
        info = PluginInfo(
            name=name,
            module=getattr(plugin, "__name__", type(plugin).__module__),
            version=version,
            hooks=[h for h in _hook_names_of(self.pm, plugin) if h not in unknown],
        )
        try:
            registrations = self._collect(plugin, name)
        except NasframeError as exc:
            self.pm.unregister(plugin)
            self._fail(name, str(exc))
            return False
        except Exception as exc:
            self.pm.unregister(plugin)
            self._fail(name, f"its registration hook raised {_one_line(exc)}")
            return False
        for reg in registrations:
            self._registry[reg.kind].setdefault(reg.name, []).append(reg)
            info.registers[reg.kind].append(reg.name)
        self.plugins[name] = info
        return True

    def load_entry_points(self, only: Optional[Iterable[str]] = None) -> None:
        """Load the plugins of the ``nasframe`` entry-point group, one by one."""
        eps = sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda ep: ep.name)
        wanted = None if only is None else set(only)
        for ep in eps:
            if wanted is not None and ep.name not in wanted:
                if ep.name not in self.filtered_out:
                    self.filtered_out.append(ep.name)
                continue
            try:
                plugin = ep.load()
            except (Exception, SystemExit) as exc:  # SystemExit: a module that parses argv at import
                self._fail(ep.name, f"import of {ep.value!r} failed: {_one_line(exc)}")
                continue
            self.add_plugin(plugin, ep.name, _version_of(ep))
        if wanted is not None:
            missing = sorted(wanted - {ep.name for ep in eps})
            for name in missing:
                self._fail(
                    name,
                    f"no such plugin in the {ENTRY_POINT_GROUP!r} entry-point group "
                    f"(installed: {', '.join(ep.name for ep in eps) or 'none'})",
                )

    def _collect(self, plugin: Any, plugin_name: str) -> list[Registration]:
        found: list[Registration] = []
        for kind, hook_name in _DISCOVERY_HOOK.items():
            # the implementation pluggy registered, whatever the function is called (specname=...)
            impls = [i for i in getattr(self.pm.hook, hook_name).get_hookimpls() if i.plugin is plugin]
            if not impls:
                continue

            def register(name, factory, description="", _kind=kind, **options):
                if not isinstance(name, str) or not name:
                    raise NasframeError(f"registered a {KIND_LABEL[_kind]} without a name")
                lazy = isinstance(factory, str) and factory.count(":") == 1 and all(factory.split(":"))
                if not (callable(factory) or lazy):
                    raise NasframeError(f"registered {KIND_LABEL[_kind]} {name!r} with a factory that is not callable "
                                        f"(nor a 'module:attribute' path)")
                if QUALIFIER in name:
                    raise NasframeError(
                        f"registered {KIND_LABEL[_kind]} {name!r}: a name may not hold {QUALIFIER!r}, which "
                        f"separates a plugin name from a registered name"
                    )
                if any(r.kind == _kind and r.name == name for r in found):
                    raise NasframeError(f"registered {KIND_LABEL[_kind]} {name!r} twice")
                found.append(Registration(_kind, name, factory, plugin_name, description, dict(options)))

            for impl in impls:
                impl.function(register=register)
        return found

    def _fail(self, name: str, reason: str) -> None:
        failure = PluginFailure(name, reason)
        self.failures.append(failure)
        self._warn(failure.line())

    def _warn_partial(self, name: str, reason: str) -> None:
        warning = PluginFailure(name, reason, skipped=False)
        self.warnings.append(warning)
        self._warn(warning.line())

    # ----------------------------------------------------------------- lookup
    def names(self, kind: str) -> list[str]:
        """The registered names of ``kind`` (an ambiguous one once)."""
        return sorted(self._registry[kind])

    def default(self, kind: str) -> str:
        """The name used when a run names no plugin of ``kind``: the one registration of that kind
        that declares ``default=True`` (``register(name, factory, default=True)``). None or several
        such is an error naming the fix."""
        found = sorted({r.name for r in self.registrations(kind) if r.options.get("default")})
        label = KIND_LABEL[kind]
        flag = "--" + kind.replace("_", "-")
        if len(found) == 1:
            return found[0]
        if not found:
            raise NasframeError(f"no installed plugin declares a default {label}; name one with {flag} "
                                f"(installed: {', '.join(self.names(kind)) or 'none'})" + self._selection_note())
        raise NasframeError(f"several installed plugins declare a default {label} ({', '.join(found)}); name one "
                            f"with {flag}")

    def registrations(self, kind: str) -> list[Registration]:
        """Every registration of ``kind``, by name, then plugin."""
        return [r for n in self.names(kind) for r in sorted(self._registry[kind][n], key=lambda r: r.plugin)]

    def ambiguous(self, kind: str) -> dict[str, list[str]]:
        """Names of ``kind`` that more than one plugin registers -> those plugins."""
        return {
            n: sorted(r.plugin for r in regs) for n, regs in sorted(self._registry[kind].items()) if len(regs) > 1
        }

    def get(self, kind: str, name: str) -> Registration:
        """The registration of ``name``, or of ``plugin:name``.

        An unknown name lists what is installed (and what a plugin selection left out); a name
        that several plugins register is an error naming them and how to choose.
        """
        label = KIND_LABEL[kind]
        registry = self._registry[kind]
        text = str(name)
        plugin, sep, short = text.partition(QUALIFIER)
        if not sep:
            plugin, short = "", text
        regs = registry.get(short)
        if regs is None:
            folded = [n for n in registry if n.lower() == short.lower()]
            if len(folded) == 1:  # 'imagenet16-120' finds 'ImageNet16-120'
                short, regs = folded[0], registry[folded[0]]
        if plugin:
            chosen = [r for r in regs or () if r.plugin == plugin]
            if chosen:
                return chosen[0]
            if plugin not in self.plugins:
                raise NasframeError(
                    f"{label} {text!r}: no plugin {plugin!r} is loaded; loaded plugins: "
                    f"{', '.join(sorted(self.plugins)) or 'none'}{self._selection_note()}"
                )
            others = ", ".join(f"{r.plugin}{QUALIFIER}{r.name}" for r in regs or ())
            raise NasframeError(
                f"plugin {plugin!r} registers no {label} {short!r}"
                + (f"; registered as {others}" if others else f"; installed: {', '.join(self.names(kind)) or 'none'}")
            )
        if regs is None:
            raise NasframeError(str(unknown_name(label, text, registry)) + self._selection_note())
        if len(regs) > 1:
            owners = sorted(r.plugin for r in regs)
            choices = " or ".join(f"'{p}{QUALIFIER}{short}'" for p in owners)
            raise NasframeError(
                f"{label} {short!r} is ambiguous: plugins {' and '.join(repr(p) for p in owners)} both register it; "
                f"choose one as {choices}, or load only one of them with {ENV_PLUGINS}"
            )
        return regs[0]

    def _selection_note(self) -> str:
        if not self.filtered_out:
            return ""
        return (
            f" ({self.selection or 'the plugin selection'} left out the installed plugins "
            f"{', '.join(sorted(self.filtered_out))}: add the one that provides it"
            + (f", or unset {ENV_PLUGINS})" if self.selection.startswith(ENV_PLUGINS) else ")")
        )

    def check_product(self, reg: Registration, product: Any) -> Any:
        """``product`` of ``reg``'s factory, if it is what the kind's hook promises."""
        import importlib

        spec = _PRODUCT[reg.kind]
        names = [f"{m}.{c}" for m, c in zip(spec[::2], spec[1::2])]
        bases = tuple(getattr(importlib.import_module(m), c) for m, c in zip(spec[::2], spec[1::2]))
        if not isinstance(product, bases):
            raise NasframeError(
                f"{KIND_LABEL[reg.kind]} {reg.name!r} of plugin {reg.plugin!r} is broken: its factory returned "
                f"a {type(product).__name__}, not a {' or '.join(names)}; report it to the plugin's author"
            )
        return product

    def create(self, kind: str, name: str, **settings) -> Any:
        """Call the factory of ``name`` with ``settings``; check what it returns."""
        reg = self.get(kind, name)
        from .settings import call_with_settings

        product = call_with_settings(reg.factory, settings, f"{KIND_LABEL[kind]} {name!r}")
        return self.check_product(reg, product)

    def report(self) -> list[dict]:
        return [self.plugins[n].to_json() for n in sorted(self.plugins)]


def make_plugin_manager(
    *,
    entry_points: bool = True,
    only: Optional[Iterable[str]] = None,
    plugins: Iterable[tuple[str, Any]] = (),
    environ: Optional[Mapping[str, str]] = None,
    warn: Optional[Callable[[str], None]] = None,
) -> PluginHost:
    """Build a plugin host.

    ``entry_points``: load the ``nasframe`` entry-point group. ``only``: load only these
    entry points; when not given, ``NASFRAME_PLUGINS`` (comma separated, empty loads none)
    decides, and when that is unset everything loads. ``plugins``: extra ``(name, object)``
    pairs registered directly (tests, embedding). ``warn``: where one-line reports of
    skipped plugins go (standard error by default).
    """
    host = PluginHost(warn=warn)
    env = os.environ if environ is None else environ
    if only is None and ENV_PLUGINS in env:
        only = [p.strip() for p in env[ENV_PLUGINS].split(",") if p.strip()]
        host.selection = f"{ENV_PLUGINS}={env[ENV_PLUGINS].strip()}"
    elif only is not None:
        only = list(only)
        host.selection = f"the plugin selection {', '.join(only) or '(none)'}"
    if entry_points:
        host.load_entry_points(only)
    for name, plugin in plugins:
        host.add_plugin(plugin, name, getattr(plugin, "__version__", None))
    return host


# --------------------------------------------------------------------------- helpers
def _hook_names_of(pm: pluggy.PluginManager, plugin: Any) -> list[str]:
    callers = pm.get_hookcallers(plugin) or []
    return sorted(c.name for c in callers)


def _version_of(ep: EntryPoint) -> Optional[str]:
    dist = getattr(ep, "dist", None)
    return getattr(dist, "version", None)


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _stderr_line(line: str) -> None:
    print(line, file=sys.stderr)
