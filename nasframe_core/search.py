"""The search job: a supernet optimizer driven over a dataset, epoch by epoch."""
from __future__ import annotations

import logging
import os
from typing import Any, Optional

import attrs
import torch

from . import confidence, distributed
from .benchmark import attach_for_dataset, open_benchmark
from .config import resolved_plugin_settings
from .data import Augment, EpochBatches, ImageData, Normalizer, Splits, split_train_val
from .engine import RunContext, check_finite, scheduled_lr
from .errors import NasframeError
from .settings import factory_settings

log = logging.getLogger("nasframe")


class JobBase:
    """Data, search space and benchmark: what search and training share."""

    kind = "?"
    quiet_steps = False

    def __init__(self, ctx: RunContext):
        self.ctx = ctx
        cfg, host = ctx.config, ctx.host
        self.config = cfg
        self.device = ctx.device
        self.world = distributed.world_size()
        self.rank = distributed.rank()
        # plugins are looked up (and their settings checked) before anything heavy happens
        cfg.check_plugins(host)
        self.space = host.create("search_space", cfg.search_space.name, **cfg.search_space.settings)
        self.source = self._make_dataset()
        self.splits: Splits = self._load_splits()
        self.info = self.source.info
        self.augment = self._augment()
        self.normalize = Normalizer(self.info, self.device)
        self.benchmark = self._attach_benchmark()

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

    def _attach_benchmark(self):
        name = getattr(self.space, "benchmark_name", None)
        if name is None:
            if self.config.run.benchmark:
                raise NasframeError(f"search space {self.space.name!r} has no benchmark; drop --benchmark")
            return None
        if name not in self.ctx.host.names("benchmark"):
            return None
        bench = open_benchmark(self.ctx.host, name, self.config.run.benchmark)
        return attach_for_dataset(self.space, bench, self.dataset_name(), explicit=bool(self.config.run.benchmark),
                                  notes=self.ctx.runtime.setdefault("notices", []))

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

    def dataset_name(self) -> str:
        return self.info.name

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


def make_search_job(ctx: RunContext) -> "JobBase":
    """The job for ``ctx``'s optimizer: :class:`SearchJob` for one that trains with steps,
    :class:`~nasframe_core.blackbox_job.BlackBoxJob` for one that does not."""
    cfg = ctx.config
    cfg.check_plugins(ctx.host)
    optimizer = ctx.host.create("optimizer", cfg.optimizer.name, **cfg.optimizer.settings)
    if optimizer.using_step_function:
        return SearchJob(ctx, optimizer)
    from .blackbox_job import BlackBoxJob

    return BlackBoxJob(ctx, optimizer)


class SearchJob(JobBase):
    kind = "search"

    def __init__(self, ctx: RunContext, optimizer=None):
        super().__init__(ctx)
        cfg, host = self.config, ctx.host
        train, val = split_train_val(self.splits.train, cfg.run.train_portion, cfg.run.seed)
        self.train_data, self.val_data = self.to_device(train), self.to_device(val)
        self.test_data = self.to_device(self.splits.test) if (cfg.run.eval_test and self.splits.test is not None) else None
        if optimizer is None:
            optimizer = host.create("optimizer", cfg.optimizer.name, **cfg.optimizer.settings)
        optimizer.device = self.device
        self.optimizer = optimizer
        handled = host.hook.nasframe_adapt_search_space(optimizer=optimizer, search_space=self.space, dataset=self.info)
        if handled is None:
            optimizer.adapt_search_space(self.space, self.info)
        self._steps = self._count_steps()
        optimizer.plan_search(cfg.run.epochs, self._steps)
        optimizer.before_training()
        # the scheduled learning rates start from the values the optimizer was built with
        self._lr_max = [[g["lr"] for g in o.param_groups] for o in optimizer.scheduled_optimizers()]

    # --------------------------------------------------------------- loop parts
    def _count_steps(self) -> int:
        b = self.config.run.batch_size * self.world
        n = min(len(self.train_data) // b, len(self.val_data) // b)
        if n < 1:
            raise NasframeError(
                f"the search splits ({len(self.train_data)} / {len(self.val_data)} images) are smaller than one "
                f"batch of {b}; lower --batch-size"
            )
        cap = self.config.run.steps_per_epoch
        return min(n, cap) if cap else n

    def steps_in_epoch(self, epoch: int) -> int:
        return self._steps

    def checkpointables(self) -> dict[str, Any]:
        return dict(self.optimizer.get_checkpointables())

    def describe(self) -> str:
        c = self.config
        return (
            f"search: optimizer {c.optimizer.name}, space {c.search_space.name}, dataset {self.info.name} "
            f"({len(self.train_data)} train / {len(self.val_data)} val), {c.run.epochs} epochs x {self._steps} steps, "
            f"batch {c.run.batch_size}{' x %d ranks' % self.world if self.world > 1 else ''}, device {self.device}, "
            f"seed {c.run.seed}"
        )

    def _set_lr(self, epoch: int) -> Optional[float]:
        """Set every scheduled learning rate for ``epoch``; the first one is reported."""
        first = None
        for opt, lr_max in zip(self.optimizer.scheduled_optimizers(), self._lr_max):
            for group, lr in zip(opt.param_groups, lr_max):
                group["lr"] = scheduled_lr(self.config.run, epoch, lr)
                first = group["lr"] if first is None else first
        return first

    def run_epoch(self, epoch: int, progress) -> dict:
        host, opt = self.ctx.host, self.optimizer
        lr = self._set_lr(epoch)
        opt.new_epoch(epoch)
        train_b = self.batches(self.train_data, epoch, 0, self.augment)
        val_b = self.batches(self.val_data, epoch, 1, self.augment)
        # running sums stay on the device (no per-step host synchronisation); counts on the host
        sums = torch.zeros(4, dtype=torch.float64, device=self.device)
        n_train = n_val = 0
        step_observers = bool(host.hook.nasframe_step_end.get_hookimpls())
        sync_every = 1 if self.device.type == "cpu" else 25
        for i in range(self._steps):
            data_train = self.local_batch(train_b, i)
            data_val = self.local_batch(val_b, i)
            out = host.hook.nasframe_step(optimizer=opt, data_train=data_train, data_val=data_val)
            if out is None:
                out = opt.step(data_train, data_val)
            logits_train, logits_val, loss_train, loss_val = out
            n_t, n_v = len(data_train[1]), len(data_val[1])
            n_train, n_val = n_train + n_t, n_val + n_v
            with torch.no_grad():
                sums += torch.stack([
                    loss_train.double() * n_t,
                    (logits_train.argmax(1) == data_train[1]).sum().double(),
                    loss_val.double() * n_v,
                    (logits_val.argmax(1) == data_val[1]).sum().double(),
                ])
            if (i + 1) % sync_every == 0 or i + 1 == self._steps:
                lt, lv = float(loss_train), float(loss_val)
                check_finite(lt, "the training loss", epoch, i, self.ctx.run_dir)
                check_finite(lv, "the validation loss", epoch, i, self.ctx.run_dir)
                progress.update(i, loss=lt, val_loss=lv)
            if step_observers:
                host.hook.nasframe_step_end(
                    run=self.ctx, epoch=epoch, step=i,
                    result={"loss_train": loss_train, "loss_val": loss_val,
                            "logits_train": logits_train, "logits_val": logits_val},
                )
        distributed.all_reduce_mean_([sums])  # every rank saw as many samples: the global mean
        s = sums.tolist()
        check_finite(s[0], "the training loss", epoch, self._steps - 1, self.ctx.run_dir)
        metrics: dict[str, Any] = {
            "epoch": epoch + 1,  # epochs count from 1 wherever a user reads them
            "steps": self._steps,
            "lr": lr,
            "train_loss": s[0] / n_train,
            "train_acc": 100.0 * s[1] / n_train,
            "val_loss": s[2] / n_val,
            "val_acc": 100.0 * s[3] / n_val,
        }
        genotype = self.genotype()
        metrics["genotype"] = str(genotype)
        metrics.update(opt.epoch_report())
        if isinstance(metrics.get("alphas"), dict):
            metrics["edge_margins"] = confidence.edge_margins(metrics["alphas"], self.space.cell_specs())
        metrics["test_statistics"] = opt.test_statistics()
        report = self.benchmark_report(genotype)
        if report is not None:
            metrics["benchmark"] = report
        if self.test_data is not None:
            network = opt.evaluation_network()
            if network is not None:
                metrics["supernet_test_acc"] = self.evaluate(network, self.test_data)[1]
        return metrics

    def genotype(self):
        g = self.ctx.host.hook.nasframe_discretize(optimizer=self.optimizer)
        return g if g is not None else self.optimizer.get_genotype()

    def epoch_line(self, m: dict, epochs: int) -> str:
        line = (
            f"epoch {m['epoch']}/{epochs}: train loss {m['train_loss']:.4f} acc {m['train_acc']:.2f}%, "
            f"val loss {m['val_loss']:.4f} acc {m['val_acc']:.2f}%"
        )
        if m.get("lr") is not None:
            line += f", lr {m['lr']:.5f}"
        if m.get("test_statistics") is not None:
            line += f", benchmark test acc {m['test_statistics']:.2f}%"
        margins = [v for values in (m.get("edge_margins") or {}).values() for v in values]
        if margins:
            line += f", smallest edge margin {min(margins):.4f}"
        return line + f", {m['seconds']:.1f}s; genotype {m['genotype']}"

    def final_result(self, history: list[dict], elapsed: float) -> dict:
        opt, c = self.optimizer, self.config
        genotype = self.genotype()
        result: dict[str, Any] = {
            "genotype": str(genotype),
            "genotype_json": genotype.to_json() if hasattr(genotype, "to_json") else None,
            **opt.result_report(),
            "params_millions": opt.get_model_size(),
            "test_statistics": opt.test_statistics(),
            "benchmark": self.benchmark_report(genotype),
            **confidence.result_entries(self.space, genotype, opt.epoch_report().get("alphas")),
            "optimizer": c.optimizer.name,
            "search_space": c.search_space.name,
            "dataset": self.info.name,
            "epochs": len(history),
            "seed": c.run.seed,
            "seconds": round(elapsed, 3),
            # what else decides the last digits of every sum, and so a seeded search's path
            "runtime": dict(self.ctx.runtime),
        }
        if history:
            last = history[-1]
            result["final"] = {k: last[k] for k in ("train_loss", "train_acc", "val_loss", "val_acc") if k in last}
        return result

    def summary_lines(self, result: dict) -> list[str]:
        lines = [f"found architecture: {result['genotype']}"]
        lines += confidence.summary_lines(result, self.space.cell_specs())
        bench = result.get("benchmark")
        if bench and bench.get("test_accuracy") is not None:
            valid = bench.get("valid_accuracy")
            extra = f", validation {valid:.2f}%" if valid is not None else ""
            where = "" if bench["dataset"].lower() == result["dataset"].lower() else (
                f" (the table's result for this cell; the search ran on {result['dataset']})")
            lines.append(
                f"benchmark {bench['name']} ({bench['dataset']}): test accuracy {bench['test_accuracy']:.2f}%{extra}{where}"
            )
        elif self.benchmark is None and getattr(self.space, "benchmark_name", None):
            lines.append("no benchmark table attached: pass --benchmark PATH to look up its accuracy")
        if self.ctx.run_dir is not None:
            lines.append(f"results in {self.ctx.run_dir.path}")
        return lines
