"""The jobs' common base: what every driver of the loop (search, proposals, training) builds.

:class:`Job` sets up the search space and attaches its benchmark; :class:`DataJob` adds the
dataset, its splits, augmentation and batches, for the jobs that train networks. A job
imports only the run context, never the loop.
"""
from __future__ import annotations

import logging
import os
from typing import Optional

import attrs
import torch

from . import distributed
from .benchmark import attach_for_dataset, open_benchmark
from .config import resolved_plugin_settings
from .context import RunContext
from .data import Augment, EpochBatches, ImageData, Normalizer, Splits
from .errors import NasframeError
from .settings import factory_settings

log = logging.getLogger("nasframe")


class Job:
    """The search space and its benchmark: what every job has. Subclasses implement the
    loop's calls (``steps_in_epoch``, ``run_epoch``, ``checkpointables``, ``describe``,
    ``epoch_line``, ``final_result``, ``summary_lines``)."""

    kind = "?"
    quiet_steps = False
    #: what the run reports a dataset under (set by the subclass)
    dataset_label: str = "?"
    #: why a benchmark table from the environment was left out (the run's dataset is not in it)
    benchmark_left_out: Optional[str] = None

    def __init__(self, ctx: RunContext):
        self.ctx = ctx
        cfg, host = ctx.config, ctx.host
        self.config = cfg
        self.device = ctx.device
        self.world = distributed.world_size()
        self.rank = distributed.rank()
        self.augment: Optional[Augment] = None
        #: lines the run states once after its first lines (console and log.txt)
        self.notices: list[str] = []
        # plugins are looked up (and their settings checked) before anything heavy happens
        cfg.check_plugins(host)
        self.space = host.create("search_space", cfg.search_space.name, **cfg.search_space.settings)
        self.dataset_label = host.get("dataset", cfg.dataset.name).name
        self.benchmark = self._attach_benchmark()

    def dataset_name(self) -> str:
        return self.dataset_label

    def _attach_benchmark(self):
        name = getattr(self.space, "benchmark_name", None)
        if name is None:
            if self.config.run.benchmark:
                raise NasframeError(f"search space {self.space.name!r} has no benchmark; drop --benchmark")
            return None
        if name not in self.ctx.host.names("benchmark"):
            return None
        bench = open_benchmark(self.ctx.host, name, self.config.run.benchmark)
        left_out: list[str] = []
        attached = attach_for_dataset(self.space, bench, self.dataset_name(), explicit=bool(self.config.run.benchmark),
                                      notes=left_out)
        self.ctx.runtime.setdefault("notices", []).extend(left_out)
        self.benchmark_left_out = left_out[0] if left_out else None
        return attached

    def benchmark_report(self, genotype) -> Optional[dict]:
        if self.benchmark is None:
            return None
        from .benchmark import TEST_ACCURACY, VALID_ACCURACY

        name = self.dataset_name()
        dataset = self.space.benchmark_dataset(name)
        if dataset is None:
            return None
        return {
            "name": self.space.benchmark_name,
            "dataset": dataset,
            "test_accuracy": self.space.query(genotype, name, TEST_ACCURACY),
            "valid_accuracy": self.space.query(genotype, name, VALID_ACCURACY),
        }

    def steps_in_epoch(self, epoch: int) -> int:
        raise NotImplementedError

    # the loop's rounds: epochs here; a black-box job counts rounds of evaluations
    def planned_rounds(self) -> int:
        """The number of rounds the progress lines show as "of N"."""
        return self.config.run.epochs

    def has_next_round(self, epoch: int) -> bool:
        return epoch < self.config.run.epochs

    def resume_point(self, epoch: int, history: list[dict]) -> str:
        return f"epoch {epoch} of {self.config.run.epochs}"  # epochs done, counted from 1

    def resolved_config(self) -> dict:
        cfg = self.config.to_dict()
        host = self.ctx.host
        for kind in self.config.plugin_kinds():
            cfg[kind] = {"name": getattr(self.config, kind).name,
                         **resolved_plugin_settings(host, kind, getattr(self.config, kind))}
        if "optimizer" not in self.config.plugin_kinds():
            cfg.pop("optimizer", None)
        cfg["augment"] = attrs.asdict(self.augment) if self.augment else {"crop_padding": 0, "flip": False, "cutout": 0}
        return cfg


class DataJob(Job):
    """A job that trains networks: the dataset (loaded before anything else is built), its
    splits, augmentation, normalisation and seeded batches."""

    def __init__(self, ctx: RunContext):
        super().__init__(ctx)
        self.source = self._make_dataset()
        self.splits: Splits = self._load_splits()
        self.info = self.source.info
        self.dataset_label = self.info.name
        self.augment = self._augment()
        self.normalize = Normalizer(self.info, self.device)

    def _make_dataset(self):
        cfg, host = self.config, self.ctx.host
        reg = host.get("dataset", cfg.dataset.name)
        settings = dict(cfg.dataset.settings)
        if cfg.run.data_dir is not None:
            if "data_dir" not in factory_settings(reg.factory):
                raise NasframeError(f"dataset {cfg.dataset.name!r} takes no --data-dir")
            settings["data_dir"] = cfg.run.data_dir
        if cfg.run.data_dir is not None and not os.path.exists(os.path.expanduser(cfg.run.data_dir)):
            raise NasframeError(f"--data-dir {cfg.run.data_dir} does not exist; point it at the {cfg.dataset.name} files")
        return host.create("dataset", cfg.dataset.name, **settings)

    def _load_splits(self) -> Splits:
        return self.source.load()

    def _augment(self) -> Optional[Augment]:
        base = getattr(self.source, "augment", Augment())
        a = self.config.augment
        merged = Augment(
            crop_padding=base.crop_padding if a.crop_padding is None else a.crop_padding,
            flip=base.flip if a.flip is None else a.flip,
            cutout=base.cutout if a.cutout is None else a.cutout,
        )
        if merged == Augment(0, False, 0):
            return None
        return merged

    def to_device(self, data: ImageData) -> ImageData:
        return data.to(self.device)

    def batches(self, data: ImageData, epoch: int, stream: int, augment: Optional[Augment], shuffle=True,
                drop_last=True) -> EpochBatches:
        return EpochBatches(
            data,
            self.config.run.batch_size * self.world,
            seed=self.config.run.seed,
            epoch=epoch,
            stream=stream,
            normalize=self.normalize,
            augment=augment,
            shuffle=shuffle,
            drop_last=drop_last,
        )

    def local_batch(self, batches: EpochBatches, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        """This rank's share of global batch ``i`` (each rank loads and augments only its share)."""
        if self.world == 1:
            return batches.batch(i)
        return batches.batch(i, part=(self.rank, self.world))

    def evaluate(self, model: torch.nn.Module, data: ImageData) -> tuple[float, float]:
        """Mean cross-entropy and accuracy (%) of ``model`` on ``data``, in the model's current mode."""
        batches = self.batches(data, 0, 2, None, shuffle=False, drop_last=False)
        loss_sum = torch.zeros((), dtype=torch.float64, device=self.device)
        correct = torch.zeros((), dtype=torch.float64, device=self.device)
        with torch.no_grad():
            for x, y in batches:
                logits = model(x)
                loss_sum += torch.nn.functional.cross_entropy(logits, y, reduction="sum").double()
                correct += (logits.argmax(1) == y).sum()
        return float(loss_sum) / len(data), 100.0 * float(correct) / len(data)
