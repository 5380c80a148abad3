"""Datasets: in-memory image tensors, seeded splits and batches augmented on the device.

A dataset plugin returns a :class:`DatasetSource`; ``load()`` gives uint8 image tensors
``[N, C, H, W]`` and int64 labels. Everything after that happens on the run's device:
:class:`EpochBatches` draws an epoch's permutation and augmentation parameters from a
generator seeded by ``(seed, epoch)`` in one go and cuts batches out of the resident tensors,
so a step does no host work and an epoch is the same whether or not the run was resumed.
"""
from __future__ import annotations

import abc
import os
from pathlib import Path
from typing import Iterator, Optional

import attrs
import torch

from ..errors import NasframeError


@attrs.frozen
class DatasetInfo:
    """What a network needs to know about a dataset."""

    name: str
    num_classes: int
    in_channels: int = 3
    image_size: int = 32
    mean: tuple[float, ...] = (0.5, 0.5, 0.5)
    std: tuple[float, ...] = (0.5, 0.5, 0.5)


@attrs.frozen
class Augment:
    """Training augmentation: random crop with zero padding, horizontal flip, cutout."""

    crop_padding: int = 4
    flip: bool = True
    cutout: int = 0


@attrs.define
class ImageData:
    """One split held in memory: uint8 images ``[N, C, H, W]`` and int64 labels ``[N]``."""

    images: torch.Tensor
    labels: torch.Tensor

    def __attrs_post_init__(self) -> None:
        if self.images.ndim != 4 or self.labels.ndim != 1 or len(self.images) != len(self.labels):
            raise ValueError("ImageData needs images [N, C, H, W] and labels [N] of the same length")

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, index: torch.Tensor) -> "ImageData":
        return ImageData(self.images[index], self.labels[index])

    def to(self, device: torch.device) -> "ImageData":
        return ImageData(self.images.to(device), self.labels.to(device))


@attrs.define
class Splits:
    train: ImageData
    test: Optional[ImageData] = None


class DatasetSource(abc.ABC):
    """A dataset plugin's product: its info, its default augmentation and a loader."""

    info: DatasetInfo
    augment: Augment = Augment()
    #: one-line meanings of the settings (see nasframe_core.domains)
    settings_help = {"data_dir": "where the dataset's files are, or go (--data-dir)"}

    @property
    def name(self) -> str:
        return self.info.name

    @abc.abstractmethod
    def load(self) -> Splits:
        """Load the data (may take a while; may raise NasframeError with where to put files)."""


def default_data_dir() -> Path:
    return Path(os.environ.get("NASFRAME_DATA", Path.home() / ".cache" / "nasframe" / "data")).expanduser()


def cache_dir() -> Path:
    return Path(os.environ.get("NASFRAME_CACHE", Path.home() / ".cache" / "nasframe")).expanduser()


# --------------------------------------------------------------------------- batches
def split_train_val(data: ImageData, portion: float, seed: int) -> tuple[ImageData, ImageData]:
    """Split ``data`` into search-train and search-validation halves (a seeded shuffle first)."""
    if not 0.0 < portion < 1.0:
        raise NasframeError(f"run.train_portion must be above 0 and below 1 (the share of the training set that "
                            f"trains the weights; the rest trains the architecture), got {portion}")
    g = torch.Generator().manual_seed(int(seed) + 7919)
    perm = torch.randperm(len(data), generator=g)
    n_train = int(round(len(data) * portion))
    if n_train < 1 or n_train >= len(data):
        raise NasframeError(f"train_portion {portion} leaves an empty split of {len(data)} images")
    return data.subset(perm[:n_train]), data.subset(perm[n_train:])


class Normalizer:
    """uint8 images to normalised floats on the device."""

    def __init__(self, info: DatasetInfo, device: torch.device):
        c = info.in_channels
        mean = torch.tensor(info.mean[:c] if len(info.mean) >= c else info.mean * c, dtype=torch.float32)
        std = torch.tensor(info.std[:c] if len(info.std) >= c else info.std * c, dtype=torch.float32)
        self.scale = (1.0 / (255.0 * std)).view(1, c, 1, 1).to(device)
        self.shift = (-mean / std).view(1, c, 1, 1).to(device)

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        return torch.addcmul(self.shift, images.float(), self.scale)


class EpochBatches:
    """The batches of one epoch over a resident split, augmented on its device.

    Everything random (order, crop offsets, flips, cutout centres) is drawn at construction
    from a CPU generator seeded by ``(seed, epoch, stream)``, so two runs with the same seed
    see the same batches, and a resumed epoch repeats exactly.
    """

    def __init__(
        self,
        data: ImageData,
        batch_size: int,
        *,
        seed: int,
        epoch: int,
        stream: int,
        normalize: Normalizer,
        augment: Optional[Augment],
        shuffle: bool = True,
        drop_last: bool = True,
    ):
        n = len(data)
        if batch_size < 1:
            raise NasframeError(f"batch size must be at least 1, got {batch_size}")
        if drop_last and n < batch_size:
            raise NasframeError(
                f"a split of {n} images is smaller than one batch of {batch_size}; lower --batch-size"
            )
        self.data, self.batch_size, self.normalize, self.augment = data, batch_size, normalize, augment
        device = data.images.device
        g = torch.Generator().manual_seed(_mix(seed, epoch, stream))
        self.order = (torch.randperm(n, generator=g) if shuffle else torch.arange(n)).to(device)
        self.num_batches = n // batch_size if drop_last else -(-n // batch_size)
        H, W = data.images.shape[2:]
        self._params = None
        if augment is not None:
            p = augment.crop_padding
            self._params = {
                "dy": torch.randint(0, 2 * p + 1, (n,), generator=g).to(device) if p else None,
                "dx": torch.randint(0, 2 * p + 1, (n,), generator=g).to(device) if p else None,
                "flip": (torch.rand(n, generator=g) < 0.5).to(device) if augment.flip else None,
                "cy": torch.randint(0, H, (n,), generator=g).to(device) if augment.cutout else None,
                "cx": torch.randint(0, W, (n,), generator=g).to(device) if augment.cutout else None,
            }
            self._rows = torch.arange(H, device=device)
            self._cols = torch.arange(W, device=device)

    def __len__(self) -> int:
        return self.num_batches

    def batch(self, i: int, part: Optional[tuple[int, int]] = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Batch ``i``; ``part=(k, n)``: only its k-th of n equal shares (a rank's share)."""
        start, stop = i * self.batch_size, min((i + 1) * self.batch_size, len(self.order))
        if part is not None:
            k, n = part
            share = (stop - start) // n
            start, stop = start + k * share, start + (k + 1) * share
        sl = slice(start, stop)
        idx = self.order[sl]
        x = self.normalize(self.data.images[idx])
        y = self.data.labels[idx]
        if self._params is not None:
            x = self._augment(x, sl)
        return x, y

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for i in range(self.num_batches):
            yield self.batch(i)

    def _augment(self, x: torch.Tensor, sl: slice) -> torch.Tensor:
        aug, prm = self.augment, self._params
        B, C, H, W = x.shape
        if aug.crop_padding:
            p = aug.crop_padding
            # zero padding in pixel space, as torchvision's RandomCrop pads before normalising
            pad_value = self.normalize.shift.view(1, C, 1, 1).expand(B, C, 1, 1)
            padded = pad_value.repeat(1, 1, H + 2 * p, W + 2 * p)
            padded[:, :, p : p + H, p : p + W] = x
            rows = (prm["dy"][sl].view(B, 1) + self._rows.view(1, H)).view(B, 1, H, 1).expand(B, C, H, W + 2 * p)
            x = padded.gather(2, rows)
            cols = (prm["dx"][sl].view(B, 1) + self._cols.view(1, W)).view(B, 1, 1, W).expand(B, C, H, W)
            x = x.gather(3, cols)
        if aug.flip:
            x = torch.where(prm["flip"][sl].view(B, 1, 1, 1), x.flip(3), x)
        if aug.cutout:
            half = aug.cutout // 2
            cy, cx = prm["cy"][sl].view(B, 1, 1), prm["cx"][sl].view(B, 1, 1)
            r = self._rows.view(1, H, 1)
            c = self._cols.view(1, 1, W)
            inside = (r >= cy - half) & (r < cy + aug.cutout - half) & (c >= cx - half) & (c < cx + aug.cutout - half)
            x = x * (~inside).unsqueeze(1).to(x.dtype)
        return x


def _mix(seed: int, epoch: int, stream: int) -> int:
    """A 63-bit seed from (seed, epoch, stream) with no easy collisions."""
    h = 0x9E3779B97F4A7C15
    for v in (int(seed), int(epoch), int(stream)):
        h ^= (v + 0x9E3779B97F4A7C15 + ((h << 6) & 0xFFFFFFFFFFFFFFFF) + (h >> 2)) & 0xFFFFFFFFFFFFFFFF
    return h & 0x7FFFFFFFFFFFFFFF
