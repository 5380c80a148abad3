"""The plugin manager: finds plugins through entry points and collects what they register.

There is no module-level state: :func:`make_plugin_manager` builds a fresh
:class:`PluginHost` and the caller passes it on explicitly.
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

KINDS = ("optimizer", "search_space", "dataset", "benchmark")
_DISCOVERY_HOOK = {
    "optimizer": "nasframe_register_optimizers",
    "search_space": "nasframe_register_search_spaces",
    "dataset": "nasframe_register_datasets",
    "benchmark": "nasframe_register_benchmarks",
}
KIND_LABEL = {
    "optimizer": "optimizer",
    "search_space": "search space",
    "dataset": "dataset",
    "benchmark": "benchmark",
}


@attrs.frozen
class Registration:
    """One named thing a plugin provides; ``factory`` is only called when it is used."""

    kind: str
    name: str
    factory: Callable[..., Any]
    plugin: str
    description: str = ""
    options: Mapping[str, Any] = attrs.field(factory=dict)


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
    name: str
    reason: str

    def line(self) -> str:
        return f"nasframe: plugin {self.name!r} skipped: {self.reason}"


class PluginHost:
    """A pluggy manager plus the registries filled by the discovery hooks."""

    def __init__(self, warn: Optional[Callable[[str], None]] = None):
        self.pm = pluggy.PluginManager(hookspecs.PROJECT)
        self.pm.add_hookspecs(hookspecs)
        self.plugins: dict[str, PluginInfo] = {}
        self.failures: list[PluginFailure] = []
        self._registry: dict[str, dict[str, Registration]] = {kind: {} for kind in KINDS}
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
        if unknown:
            self.pm.unregister(plugin)
            self._fail(
                name,
                f"hook {unknown[0]!r} matches no nasframe hook specification "
                f"(check the name against nasframe_core.hookspecs)",
            )
            return False
        info = PluginInfo(
            name=name,
            module=getattr(plugin, "__name__", type(plugin).__module__),
            version=version,
            hooks=_hook_names_of(self.pm, plugin),
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
            self._registry[reg.kind][reg.name] = reg
            info.registers[reg.kind].append(reg.name)
        self.plugins[name] = info
        return True

    def load_entry_points(self, only: Optional[Iterable[str]] = None) -> None:
        """Load the plugins of the ``nasframe`` entry-point group, one by one."""
        eps = sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda ep: ep.name)
        wanted = None if only is None else set(only)
        for ep in eps:
            if wanted is not None and ep.name not in wanted:
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
                if not callable(factory):
                    raise NasframeError(f"registered {KIND_LABEL[_kind]} {name!r} with a factory that is not callable")
                existing = self._registry[_kind].get(name) or next(
                    (r for r in found if r.kind == _kind and r.name == name), None
                )
                if existing is not None:
                    raise NasframeError(
                        f"{KIND_LABEL[_kind]} {name!r} is already registered by plugin {existing.plugin!r}"
                    )
                found.append(Registration(_kind, name, factory, plugin_name, description, dict(options)))

            for impl in impls:
                impl.function(register=register)
        return found

    def _fail(self, name: str, reason: str) -> None:
        failure = PluginFailure(name, reason)
        self.failures.append(failure)
        self._warn(failure.line())

    # ----------------------------------------------------------------- lookup
    def names(self, kind: str) -> list[str]:
        return sorted(self._registry[kind])

    def registrations(self, kind: str) -> list[Registration]:
        return [self._registry[kind][n] for n in self.names(kind)]

    def get(self, kind: str, name: str) -> Registration:
        """The registration of ``name``; an unknown name lists what is installed."""
        registry = self._registry[kind]
        if name in registry:
            return registry[name]
        folded = [n for n in registry if n.lower() == str(name).lower()]
        if len(folded) == 1:  # 'imagenet16-120' finds 'ImageNet16-120'
            return registry[folded[0]]
        raise unknown_name(KIND_LABEL[kind], name, registry)

    def create(self, kind: str, name: str, **settings) -> Any:
        """Call the factory of ``name`` with ``settings``."""
        reg = self.get(kind, name)
        from .settings import call_with_settings

        return call_with_settings(reg.factory, settings, f"{KIND_LABEL[kind]} {name!r}")

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
