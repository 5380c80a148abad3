"""Training a found architecture from scratch (``nasframe train``).

The space supplies the network of a genotype and its evaluation recipe (``train_recipe``:
a cell space may use its paper's 600 epochs, batch 96, C=36, 20 cells, auxiliary head 0.4,
drop-path 0.2, cutout 16; NB201 its own 200-epoch recipe). Every setting can be overridden.
"""
from __future__ import annotations

import logging
from typing import Any

import torch
from torch import nn

from . import distributed
from .cells import discrete_cell_factory
from .config import Config
from .context import RunContext, check_finite, scheduled_lr
from .errors import NasframeError
from .genotype import parse_genotype_argument
from .job import DataJob

log = logging.getLogger("nasframe")


def apply_recipe(cfg: Config, host) -> None:
    """Set the defaults of training for ``cfg.search_space.name`` from the space's recipe."""
    reg = host.get("search_space", cfg.search_space.name)
    for key, value in (getattr(reg.factory, "train_recipe", None) or {}).items():
        cfg.set(key, value)


def count_parameters(model: nn.Module) -> int:
    """Parameters of ``model`` without its auxiliary head (as papers count them)."""
    return sum(p.numel() for name, p in model.named_parameters() if not name.startswith("auxiliary."))


class TrainJob(DataJob):
    kind = "train"

    def __init__(self, ctx: RunContext, genotype=None):
        """``genotype``: the architecture to train, given as a genotype object (a black-box
        search's training evaluation); else ``config.genotype`` (a run directory, a file or
        the string) is read."""
        self._given_genotype = genotype
        super().__init__(ctx)
        if not hasattr(self, "genotype"):  # a subclass that makes its dataset otherwise
            self._resolve_genotype()
        cfg = self.config
        final = getattr(self.space, "final_network", None)
        if final is not None:
            model = final(self.genotype, num_classes=self.info.num_classes, in_channels=self.info.in_channels)
        else:
            model = self.space.build_network(
                discrete_cell_factory(self.space.genotype_choices(self.genotype)),
                num_classes=self.info.num_classes, in_channels=self.info.in_channels, search=False,
            )
        self.model = model.to(self.device)
        distributed.broadcast_(list(self.model.parameters()) + list(self.model.buffers()))
        run, hp = cfg.run, cfg.train
        self.optimizer = torch.optim.SGD(
            self.model.parameters(), lr=hp.learning_rate, momentum=hp.momentum,
            weight_decay=hp.weight_decay, nesterov=hp.nesterov and hp.momentum > 0,
        )
        self.criterion = nn.CrossEntropyLoss(label_smoothing=hp.label_smoothing)
        self.train_data = self.to_device(self.splits.train)
        if self.splits.test is None:
            raise NasframeError(f"dataset {self.info.name!r} has no test split to report accuracy on")
        self.test_data = self.to_device(self.splits.test)
        b = run.batch_size * self.world
        self._steps = len(self.train_data) // b
        if self._steps < 1:
            raise NasframeError(f"{len(self.train_data)} training images are fewer than one batch of {b}; lower --batch-size")
        if run.steps_per_epoch:
            self._steps = min(self._steps, run.steps_per_epoch)
        self.params = count_parameters(self.model)

    def _resolve_genotype(self) -> None:
        if self._given_genotype is not None:
            self.genotype = self._given_genotype
        elif not self.config.genotype:
            raise NasframeError("nasframe train needs --genotype RUN_DIR|FILE|STRING")
        else:
            self.genotype = parse_genotype_argument(self.ctx.host, self.space, self.config.genotype)

    def _make_dataset(self):
        self._resolve_genotype()  # a bad --genotype fails before any data is loaded or downloaded
        return super()._make_dataset()

    def describe(self) -> str:
        c = self.config
        return (
            f"train: {c.search_space.name} genotype {self.genotype} on {self.info.name} "
            f"({len(self.train_data)} train / {len(self.test_data)} test), {self.params / 1e6:.3f}M parameters, "
            f"{c.run.epochs} epochs x {self._steps} steps, batch {c.run.batch_size}, device {self.device}, seed {c.run.seed}"
        )

    def steps_in_epoch(self, epoch: int) -> int:
        return self._steps

    def checkpointables(self) -> dict[str, Any]:
        return {"model": self.model, "optimizer": self.optimizer}

    def run_epoch(self, epoch: int, progress) -> dict:
        run, hp = self.config.run, self.config.train
        lr = scheduled_lr(run, epoch, hp.learning_rate)
        for g in self.optimizer.param_groups:
            g["lr"] = lr
        drop = hp.drop_path_prob * epoch / max(1, run.epochs)
        if hasattr(self.model, "set_drop_path"):
            self.model.set_drop_path(drop)
        else:
            for m in self.model.modules():
                if hasattr(m, "drop_prob"):
                    m.drop_prob = drop
        self.model.train()
        batches = self.batches(self.train_data, epoch, 0, self.augment)
        params = [p for p in self.model.parameters() if p.requires_grad]
        sums = torch.zeros(2, dtype=torch.float64, device=self.device)
        seen = 0
        with_aux = hasattr(self.model, "forward_with_aux") and hp.auxiliary_weight > 0
        sync_every = 1 if self.device.type == "cpu" else 25
        for i in range(self._steps):
            x, y = self.local_batch(batches, i)
            self.optimizer.zero_grad(set_to_none=True)
            if with_aux:
                logits, aux = self.model.forward_with_aux(x)
                loss = self.criterion(logits, y)
                total = loss + hp.auxiliary_weight * self.criterion(aux, y) if aux is not None else loss
            else:
                logits = self.model(x)
                loss = total = self.criterion(logits, y)
            total.backward()
            distributed.all_reduce_mean_([p.grad for p in params])
            if hp.grad_clip:
                nn.utils.clip_grad_norm_(params, hp.grad_clip)
            self.optimizer.step()
            seen += len(y)
            with torch.no_grad():
                sums += torch.stack([loss.detach().double() * len(y), (logits.argmax(1) == y).sum().double()])
            if (i + 1) % sync_every == 0 or i + 1 == self._steps:
                value = float(loss.detach())
                check_finite(value, "the training loss", epoch, i, self.ctx.run_dir)
                progress.update(i, loss=value)
        s = sums.tolist()
        test_loss, test_acc = self.evaluate_test()
        return {
            "epoch": epoch + 1,  # epochs count from 1 wherever a user reads them
            "lr": lr,
            "drop_path_prob": drop,
            "train_loss": s[0] / seen,
            "train_acc": 100.0 * s[1] / seen,
            "test_loss": test_loss,
            "test_acc": test_acc,
        }

    def evaluate_test(self) -> tuple[float, float]:
        self.model.eval()
        try:
            return self.evaluate(self.model, self.test_data)
        finally:
            self.model.train()

    def epoch_line(self, m: dict, epochs: int) -> str:
        return (
            f"epoch {m['epoch']}/{epochs}: train loss {m['train_loss']:.4f} acc {m['train_acc']:.2f}%, "
            f"test loss {m['test_loss']:.4f} acc {m['test_acc']:.2f}%, lr {m['lr']:.5f}, {m['seconds']:.1f}s"
        )

    def final_result(self, history: list[dict], elapsed: float) -> dict:
        c = self.config
        last = history[-1] if history else {}
        if self.ctx.run_dir is not None:
            torch.save(self.model.state_dict(), self.ctx.run_dir.file("model.pt"))
        result = {
            "genotype": str(self.genotype),
            "search_space": c.search_space.name,
            "dataset": self.info.name,
            "params": self.params,
            "params_millions": self.params / 1e6,
            # the accuracy after the last epoch: picking the best epoch by test accuracy would
            # select on the test set (there is no validation split to select on)
            "test_acc": last.get("test_acc"),
            "train_acc": last.get("train_acc"),
            "epochs": len(history),
            "seed": c.run.seed,
            "seconds": round(elapsed, 3),
        }
        return result

    def summary_lines(self, result: dict) -> list[str]:
        lines = [f"trained {result['genotype']}"]
        if result.get("test_acc") is not None:
            lines.append(f"test accuracy {result['test_acc']:.2f}% after the last epoch, "
                         f"{result['params_millions']:.3f} million parameters")
        if self.ctx.run_dir is not None:
            lines.append(f"results in {self.ctx.run_dir.path}")
        return lines


