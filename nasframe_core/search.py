"""The search job: a supernet optimizer driven over a dataset, epoch by epoch."""
from __future__ import annotations

import logging
from typing import Any, Optional

import torch

from . import distributed
from .context import RunContext, check_finite, scheduled_lr
from .data import split_train_val
from .errors import NasframeError
from .job import DataJob

log = logging.getLogger("nasframe")


class SearchJob(DataJob):
    kind = "search"

    def __init__(self, ctx: RunContext, optimizer):
        super().__init__(ctx)
        cfg, host = self.config, ctx.host
        train, val = split_train_val(self.splits.train, cfg.run.train_portion, cfg.run.seed)
        self.train_data, self.val_data = self.to_device(train), self.to_device(val)
        self.test_data = self.to_device(self.splits.test) if (cfg.run.eval_test and self.splits.test is not None) else None
        optimizer.device = self.device
        self.optimizer = optimizer
        handled = host.hook.nasframe_adapt_search_space(optimizer=optimizer, search_space=self.space, dataset=self.info)
        if handled is None:
            optimizer.adapt_search_space(self.space, self.info)
        self._steps = self._count_steps()
        optimizer.plan_search(cfg.run.epochs, self._steps)
        optimizer.before_training()
        if self.test_data is not None and optimizer.evaluation_network() is None:
            self.notices.append(f"run.eval_test: optimizer {cfg.optimizer.name!r} has no evaluation network, so "
                                f"nothing is scored on the test split")
            self.test_data = None
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
        for entries in host.hook.nasframe_epoch_metrics(run=self.ctx, epoch=epoch, metrics=metrics):
            metrics.update(entries)
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
        for words in filter(None, self.ctx.host.hook.nasframe_epoch_line(run=self.ctx, metrics=m)):
            line += f", {words}"
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
        }
        for entries in self.ctx.host.hook.nasframe_result_entries(run=self.ctx, genotype=genotype, result=result):
            result.update(entries)
        result.update({
            "optimizer": c.optimizer.name,
            "search_space": c.search_space.name,
            "dataset": self.info.name,
            "epochs": len(history),
            "seed": c.run.seed,
            "seconds": round(elapsed, 3),
            # what else decides the last digits of every sum, and so a seeded search's path
            "runtime": dict(self.ctx.runtime),
        })
        if history:
            last = history[-1]
            result["final"] = {k: last[k] for k in ("train_loss", "train_acc", "val_loss", "val_acc") if k in last}
        return result

    def summary_lines(self, result: dict) -> list[str]:
        lines = [f"found architecture: {result['genotype']}"]
        for part in self.ctx.host.hook.nasframe_summary_lines(result=result, last_epoch=None, space=lambda: self.space):
            lines += part
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
            lines.append(f"no benchmark accuracy: {self.benchmark_left_out}" if self.benchmark_left_out else
                         "no benchmark table attached: pass --benchmark PATH to look up its accuracy")
        if self.ctx.run_dir is not None:
            lines.append(f"results in {self.ctx.run_dir.path}")
        return lines
