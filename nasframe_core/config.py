"""Run configuration: attrs classes with the paper's defaults, files and ``--set`` overrides.

Layers, later wins: the defaults below, then ``--config FILE`` (YAML or TOML), then the
command-line flags, then ``--set key=value``. Keys are ``section.name``:

- ``run.*``: the loop (epochs, batch size, seed, device, ...); a bare key means ``run.<key>``.
- ``train.*``: ``nasframe train`` only (learning rate, auxiliary weight, drop-path, ...).
- ``optimizer.name`` and ``optimizer.<setting>``: checked against the optimizer's factory.
- ``search_space.name`` and ``search_space.<setting>``: likewise for the space.
- ``dataset.name``, ``dataset.<setting>``: likewise for the dataset.
- ``augment.*``: crop padding, flip, cutout (defaults come from the dataset).
"""
from __future__ import annotations

import functools
import json
import typing
from pathlib import Path
from typing import Any, Mapping, Optional

import attrs

from .errors import NasframeError
from .settings import check_settings, coerce, factory_settings

try:  # Python 3.11+
    import tomllib
except ModuleNotFoundError:  # pragma: no cover
    import tomli as tomllib  # type: ignore[no-redef]


@attrs.define
class RunSettings:
    """The loop's settings, for search and training alike.

    Defaults are the first one-shot paper's search (Liu et al. 2019: 50 epochs, batch 64, the training set split 50/50,
    cosine schedule down to 0.001); the dataset default is the offline ``digits``.
    """

    epochs: int = 50
    batch_size: int = 64
    steps_per_epoch: Optional[int] = None
    train_portion: float = 0.5
    seed: int = 0
    device: str = "auto"
    data_dir: Optional[str] = None
    benchmark: Optional[str] = None
    lr_min: float = 0.001
    scheduler: str = "cosine"
    eval_test: bool = False
    #: let a plugin that provides native CPU kernels run them, in a process the
    #: ``nasframe`` command owns; off by default so a seed gives the same search on every machine
    cpu_kernels: bool = False
    #: where a black-box search's evaluations run: serial, simulated or ray
    executor: str = "serial"
    #: how many evaluations run at once (simulated or Ray workers)
    workers: int = 1
    #: the Ray cluster to use (default: a local one, or $RAY_ADDRESS)
    address: Optional[str] = None
    #: what scores a black-box search's proposals: auto (the table when one is attached, else brief
    #: training), table (refused without a table), training, or an evaluator a plugin registers
    evaluator: str = "auto"
    #: a table-scored black-box search's protocol (the space's ``search_protocols``; default: its first)
    protocol: Optional[str] = None
    #: epochs of training a table score stands for (default: the protocol's)
    fidelity: Optional[int] = None


@attrs.define
class TrainSettings:
    """``nasframe train`` only: the weights' optimizer and the evaluation protocol.

    Defaults are Liu et al. 2019's evaluation protocol; each space's ``train_recipe`` sets its own.
    """

    learning_rate: float = 0.025
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 3e-4
    grad_clip: float = 5.0
    auxiliary_weight: float = 0.4
    drop_path_prob: float = 0.2
    label_smoothing: float = 0.0


SECTIONS = ("run", "train", "optimizer", "search_space", "dataset", "augment")
ZEROCOST = "zerocost"
#: the batch size and seed of Abdelfattah et al.'s NAS-Bench-201 protocol (proxies' defaults)
PROXY_BATCH_SIZE = 64
PROXY_SEED = 42
EVALUATOR_CHOICES = ("auto", "table", "training", f"{ZEROCOST}:PROXY")


def check_evaluator_name(value: str) -> str:
    """``value`` if it is a valid ``run.evaluator`` (the proxy name is checked when the run starts)."""
    text = str(value).strip()
    kind, sep, proxy = text.partition(":")
    if text in ("auto", "table", "training") or (kind == ZEROCOST and sep and proxy.strip()):
        return text
    raise NasframeError(f"run.evaluator must be one of {', '.join(EVALUATOR_CHOICES)}, got {value!r}")
RUN_CHOICES = {"device": ("auto", "cpu", "cuda"), "scheduler": ("cosine", "constant"),
               "executor": ("serial", "simulated", "ray")}


def _domains() -> dict:
    from .domains import COUNT, NON_NEGATIVE, POSITIVE, PROBABILITY, SEED, Domain

    return {
        "run": {"epochs": COUNT, "batch_size": COUNT, "steps_per_epoch": COUNT, "seed": SEED,
                "train_portion": Domain(0, 1, low_inclusive=False, high_inclusive=False),
                "lr_min": NON_NEGATIVE},
        "train": {"learning_rate": POSITIVE, "momentum": PROBABILITY, "weight_decay": NON_NEGATIVE,
                  "grad_clip": NON_NEGATIVE, "auxiliary_weight": NON_NEGATIVE, "drop_path_prob": PROBABILITY,
                  "label_smoothing": PROBABILITY},
        "augment": {"crop_padding": NON_NEGATIVE, "cutout": NON_NEGATIVE},
    }


#: run settings that have a command-line flag of their own
_RUN_FLAGS = ("epochs", "batch_size", "steps_per_epoch", "seed")
#: the domain of each numeric setting of the loop, by section (checked wherever a value is set)
DOMAINS = _domains()


@attrs.define
class AugmentSettings:
    crop_padding: Optional[int] = None
    flip: Optional[bool] = None
    cutout: Optional[int] = None


@attrs.define
class PluginChoice:
    """A plugin name and the settings passed to its factory."""

    name: Optional[str]
    settings: dict = attrs.field(factory=dict)


@attrs.define
class Config:
    command: str = "run"
    # no name: the installed default (a registration with default=True; see fill_defaults)
    optimizer: PluginChoice = attrs.field(factory=lambda: PluginChoice(None))
    search_space: PluginChoice = attrs.field(factory=lambda: PluginChoice(None))
    dataset: PluginChoice = attrs.field(factory=lambda: PluginChoice(None))
    run: RunSettings = attrs.field(factory=RunSettings)
    train: TrainSettings = attrs.field(factory=TrainSettings)
    augment: AugmentSettings = attrs.field(factory=AugmentSettings)
    genotype: Optional[str] = None
    #: the search recipe applied under the user's settings: name and source (nasframe_core.recipes)
    recipe: Optional[dict] = None

    # ------------------------------------------------------------------- edits
    def set(self, key: str, value: Any) -> None:
        """Apply one ``section.name=value`` override (strings are converted)."""
        section, _, name = key.partition(".")
        if section == "genotype" and not name:
            self.genotype = None if value is None else str(value)
            return
        if not name:
            section, name = "run", section
        if section == "run":
            _set_attr(self.run, RunSettings, name, value, "run")
            if name == "evaluator":
                self.run.evaluator = check_evaluator_name(self.run.evaluator)
            allowed = RUN_CHOICES.get(name)
            if allowed and getattr(self.run, name) not in allowed:
                raise NasframeError(f"config key 'run.{name}' must be one of {', '.join(allowed)}, got {value!r}")
        elif section == "augment":
            _set_attr(self.augment, AugmentSettings, name, value, "augment")
        elif section == "train":
            if self.command != "train":
                raise NasframeError(f"config key {key!r} applies to nasframe train only; a search is set up by optimizer.*")
            _set_attr(self.train, TrainSettings, name, value, "train")
        elif section in ("optimizer", "search_space", "dataset"):
            choice: PluginChoice = getattr(self, section)
            if name == "name":
                choice.name = str(value)
            else:
                choice.settings[name] = value
        else:
            raise NasframeError(f"unknown config key {key!r}; sections are {', '.join(SECTIONS)}")

    def update(self, data: Mapping[str, Any], origin: str) -> None:
        """Apply a nested mapping (from a config file)."""
        if not isinstance(data, Mapping):
            raise NasframeError(f"{origin}: the top level must be a mapping of sections")
        for section, body in data.items():
            if section == "command":
                continue
            if section == "recipe":
                self.recipe = dict(body) if isinstance(body, Mapping) else None
                continue
            if section == "genotype":
                self.genotype = None if body is None else str(body)
            elif isinstance(body, Mapping) and section in SECTIONS:
                for key, value in body.items():
                    if section in ("optimizer", "search_space", "dataset") and key == "settings":
                        if not isinstance(value, Mapping):
                            raise NasframeError(f"{origin}: {section}.settings must be a mapping")
                        for k, v in value.items():
                            self.set(f"{section}.{k}", v)
                    else:
                        self.set(f"{section}.{key}", value)
            elif section in ("optimizer", "search_space", "dataset") and isinstance(body, str):
                self.set(f"{section}.name", body)
            elif section in attrs.fields_dict(RunSettings):
                self.set(f"run.{section}", body)
            else:
                raise NasframeError(f"{origin}: unknown config key {section!r}; sections are {', '.join(SECTIONS)}")

    def plugin_kinds(self) -> tuple[str, ...]:
        """The plugin kinds this command uses (training uses no search optimizer)."""
        return ("search_space", "dataset") if self.command == "train" else ("optimizer", "search_space", "dataset")

    def fill_defaults(self, host) -> None:
        """Name the installed default of every plugin kind left unnamed (:meth:`PluginHost.default`)."""
        for kind in self.plugin_kinds():
            choice: PluginChoice = getattr(self, kind)
            if choice.name is None:
                choice.name = host.default(kind)

    def check_plugins(self, host) -> None:
        """Check plugin names and settings against what is installed (converting values); an
        unnamed plugin is the installed default."""
        self.fill_defaults(host)
        for kind in self.plugin_kinds():
            choice: PluginChoice = getattr(self, kind)
            reg = host.get(kind, choice.name)
            label = f"{kind.replace('_', ' ')} {choice.name!r}"
            try:
                choice.settings = check_settings(reg.factory, choice.settings, label)
            except NasframeError as exc:
                raise NasframeError(f"config: {exc}") from None

    def to_dict(self) -> dict[str, Any]:
        return {
            "command": self.command,
            "optimizer": {"name": self.optimizer.name, **self.optimizer.settings},
            "search_space": {"name": self.search_space.name, **self.search_space.settings},
            "dataset": {"name": self.dataset.name, **self.dataset.settings},
            "run": attrs.asdict(self.run),
            **({"train": attrs.asdict(self.train)} if self.command == "train" else {}),
            "augment": attrs.asdict(self.augment),
            **({"genotype": self.genotype} if self.genotype is not None else {}),
            **({"recipe": dict(self.recipe)} if self.recipe is not None else {}),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], origin: str = "config") -> "Config":
        cfg = cls(command=str(data.get("command", "run")))
        for section in ("optimizer", "search_space", "dataset"):
            body = data.get(section)
            if isinstance(body, Mapping) and "name" in body:
                getattr(cfg, section).name = str(body["name"])
        cfg.update(data, origin)
        return cfg


def resolved_plugin_settings(host, kind: str, choice: PluginChoice) -> dict[str, Any]:
    """Every setting of the plugin with its value (defaults filled in), for the saved config."""
    reg = host.get(kind, choice.name)
    out = {k: v for k, v in factory_settings(reg.factory).items() if _jsonable(v)}
    out.update(choice.settings)
    return out


def _jsonable(value: Any) -> bool:
    try:
        json.dumps(value)
        return True
    except TypeError:
        return False


@functools.lru_cache(maxsize=None)
def _type_hints(cls: type) -> dict:
    """The resolved field types of a config section (resolving them compiles every annotation)."""
    return typing.get_type_hints(cls)


def _set_attr(obj: Any, cls: type, name: str, value: Any, section: str) -> None:
    fields = attrs.fields_dict(cls)
    if name not in fields:
        raise NasframeError(
            f"unknown config key '{section}.{name}'; known {section} keys: {', '.join(sorted(fields))}"
        )
    converted = _convert(value, _type_hints(cls)[name], f"{section}.{name}")
    from .domains import check_value

    label = f"--{name.replace('_', '-')}" if section == "run" and name in _RUN_FLAGS else f"config key '{section}.{name}'"
    check_value(DOMAINS.get(section, {}), name, converted, label)
    setattr(obj, name, converted)


def _convert(value: Any, hint: Any, key: str) -> Any:
    args = typing.get_args(hint)
    if type(None) in args:
        if value is None or (isinstance(value, str) and value.strip().lower() in ("none", "null", "")):
            return None
        hint = next(a for a in args if a is not type(None))
    samples = {int: 0, float: 0.0, bool: False, str: ""}
    if hint in samples:
        if value is None:
            raise NasframeError(f"config key {key!r} cannot be empty")
        try:
            return coerce(value, samples[hint], key)
        except NasframeError as exc:
            raise NasframeError(str(exc).replace("setting", "config key", 1)) from None
    return value


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Read a YAML or TOML config file into a mapping; errors name the file."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise NasframeError(f"config file {p} not found")
    text = p.read_text()
    try:
        if p.suffix.lower() == ".toml":
            data = tomllib.loads(text)
        else:
            import yaml

            data = yaml.safe_load(text)
    except Exception as exc:
        first = " ".join(str(exc).split())[:200]
        raise NasframeError(f"config file {p} does not parse: {first}") from None
    if data is None:
        return {}
    if not isinstance(data, Mapping):
        raise NasframeError(f"config file {p} must hold a mapping of sections at the top level")
    return dict(data)


def dump_config(cfg_dict: Mapping[str, Any]) -> str:
    import yaml

    return yaml.safe_dump(dict(cfg_dict), sort_keys=False, default_flow_style=False)
