"""The built-in datasets.

- ``digits``: scikit-learn's 1,797 handwritten digits (8x8, grey); ships with scikit-learn,
  so it works offline with nothing to download.
- ``synthetic``: random class-conditional images, for tests and smoke runs.
- ``cifar10`` / ``cifar100``: torchvision's pickles in ``--data-dir`` (downloaded when online).
  ``cifar10`` also reads an image-folder copy (``train/<class>/*.jpg``, ``test/<class>/...``),
  or a ``.tar.gz`` of one, such as the CIFAR-10 JPEG copy.
- ``imagefolder``: any image-folder layout as above (classes in alphabetical order).
- ``ImageNet16-120``: NAS-Bench-201's downsampled ImageNet files from ``--data-dir``.
- ``fashion-mnist``: torchvision's FashionMNIST (downloaded when online).
"""
from __future__ import annotations

import hashlib
import io
import tarfile
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from ..domains import COUNT, SEED, at_least, between
from ..errors import NasframeError
from ..safe_pickle import UNREADABLE, RefusedPickle, restricted_load
from . import (
    Augment,
    DatasetInfo,
    DatasetSource,
    ImageData,
    Splits,
    cache_dir,
    default_data_dir,
)

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp"}

# the built-in datasets' shapes and normalisation (dataset_info() finds them through the registry)
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)
CIFAR100_MEAN = (0.5071, 0.4865, 0.4409)
CIFAR100_STD = (0.2673, 0.2564, 0.2762)
IMAGENET16_MEAN = (0.4811, 0.4575, 0.4078)
IMAGENET16_STD = (0.2471, 0.2404, 0.2579)
CIFAR_INFO = {"cifar10": DatasetInfo("cifar10", 10, 3, 32, CIFAR10_MEAN, CIFAR10_STD),
              "cifar100": DatasetInfo("cifar100", 100, 3, 32, CIFAR100_MEAN, CIFAR100_STD)}


def _from_hwc(images: np.ndarray, labels) -> ImageData:
    x = torch.from_numpy(np.ascontiguousarray(images))
    if x.ndim == 3:
        x = x.unsqueeze(-1)
    return ImageData(x.permute(0, 3, 1, 2).contiguous(), torch.as_tensor(np.asarray(labels), dtype=torch.int64))


# ----------------------------------------------------------------------------- digits
class Digits(DatasetSource):
    """scikit-learn's handwritten digits: 1,437 train / 360 test images of 8x8 pixels."""

    info = DatasetInfo("digits", 10, 1, 8, (0.3,), (0.38,))
    augment = Augment(crop_padding=1, flip=False, cutout=0)

    def __init__(self, data_dir: Optional[str] = None):
        self.data_dir = data_dir

    def load(self) -> Splits:
        try:
            from sklearn.datasets import load_digits
        except ImportError:
            raise NasframeError("the digits dataset needs scikit-learn: pip install scikit-learn") from None
        bunch = load_digits()
        images = np.clip(bunch.images * 16.0, 0, 255).astype(np.uint8)  # 0..16 -> 0..255
        labels = bunch.target.astype(np.int64)
        perm = np.random.RandomState(0).permutation(len(labels))
        n_test = len(labels) // 5
        test, train = perm[:n_test], perm[n_test:]
        return Splits(_from_hwc(images[train], labels[train]), _from_hwc(images[test], labels[test]))


# -------------------------------------------------------------------------- synthetic
class Synthetic(DatasetSource):
    """Random images whose class shifts a fixed random template: learnable, instant, offline."""

    settings_domain = {"n_train": COUNT, "n_test": COUNT, "image_size": COUNT, "channels": COUNT,
                       "classes": at_least(2), "seed": SEED}
    settings_help = {"n_train": "training images", "n_test": "test images", "image_size": "side in pixels",
                     "channels": "image channels", "classes": "number of classes", "seed": "seed of the images"}

    augment = Augment(crop_padding=0, flip=False, cutout=0)

    def __init__(self, data_dir: Optional[str] = None, n_train: int = 512, n_test: int = 128,
                 image_size: int = 32, channels: int = 3, classes: int = 10, seed: int = 0):
        if min(n_train, n_test, image_size, channels) < 1 or classes < 2:
            raise NasframeError("synthetic data needs positive sizes and at least 2 classes")
        self.n_train, self.n_test, self.seed = n_train, n_test, seed
        self.info = DatasetInfo("synthetic", classes, channels, image_size)

    def load(self) -> Splits:
        g = torch.Generator().manual_seed(self.seed)
        c, s, k = self.info.in_channels, self.info.image_size, self.info.num_classes
        templates = torch.rand(k, c, s, s, generator=g) * 255

        def make(n: int) -> ImageData:
            y = torch.randint(0, k, (n,), generator=g)
            noise = torch.rand(n, c, s, s, generator=g) * 255
            x = (0.5 * templates[y] + 0.5 * noise).round().clamp(0, 255).to(torch.uint8)
            return ImageData(x, y)

        return Splits(make(self.n_train), make(self.n_test))


# ------------------------------------------------------------------------ image folder
def _decode(blob: bytes) -> np.ndarray:
    from PIL import Image

    with Image.open(io.BytesIO(blob)) as im:
        return np.asarray(im.convert("RGB"), dtype=np.uint8)


def _split_name(parts: tuple[str, ...]) -> Optional[tuple[str, str]]:
    """(split, class) of an image path ``.../<split>/<class>/<file>``."""
    if len(parts) < 3:
        return None
    split, cls = parts[-3], parts[-2]
    split = {"val": "test", "valid": "test"}.get(split, split)
    return (split, cls) if split in ("train", "test") else None


def _collect(entries) -> dict[str, ImageData]:
    """Group ``(parts, loader)`` entries by split and class, decode and stack them."""
    grouped: dict[str, dict[str, list]] = {}
    for parts, load in entries:
        key = _split_name(parts)
        if key is not None:
            grouped.setdefault(key[0], {}).setdefault(key[1], []).append((parts[-1], load))
    if "train" not in grouped:
        raise NasframeError("no train/<class>/<image> files found")
    classes = sorted(set().union(*(set(v) for v in grouped.values())))
    out = {}
    for split, by_class in grouped.items():
        images, labels = [], []
        for label, cls in enumerate(classes):
            for _, load in sorted(by_class.get(cls, []), key=lambda e: e[0]):
                images.append(_decode(load()))
                labels.append(label)
        shapes = {im.shape for im in images}
        if len(shapes) != 1:
            raise NasframeError(f"images of the {split} split differ in size ({sorted(shapes)[:3]}); resize them first")
        out[split] = _from_hwc(np.stack(images), labels)
    out["classes"] = classes  # type: ignore[assignment]
    return out


def _cache_key(path: Path) -> str:
    st = path.stat()
    ident = f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}"
    if path.is_dir():
        ident += "|" + str(sum(1 for _ in path.rglob("*")))
    return hashlib.sha256(ident.encode()).hexdigest()[:16]


def load_image_folder(path: Path) -> tuple[Splits, list[str]]:
    """Read an image-folder tree (or a .tar/.tar.gz of one); decoded arrays are cached."""
    cache = cache_dir() / "imagefolder" / f"{path.name}-{_cache_key(path)}.pt"
    if cache.is_file():
        try:
            blob = torch.load(cache, weights_only=True)
            train = ImageData(blob["train_x"], blob["train_y"])
            test = ImageData(blob["test_x"], blob["test_y"]) if "test_x" in blob else None
            return Splits(train, test), list(blob["classes"])
        except Exception:
            pass  # a damaged cache is rebuilt below
    try:
        if path.is_dir():
            files = [p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES]
            got = _collect((p.relative_to(path).parts, p.read_bytes) for p in files)
        else:
            # read members in archive order: seeking back in a compressed tar decompresses again
            blobs = []
            with tarfile.open(path, "r:*") as tar:
                for m in tar:
                    if m.isfile() and Path(m.name).suffix.lower() in IMAGE_SUFFIXES:
                        blobs.append((Path(m.name).parts, tar.extractfile(m).read()))
            got = _collect((parts, (lambda b=b: b)) for parts, b in blobs)
    except NasframeError as exc:
        raise NasframeError(f"{path}: {exc}; expected train/<class>/<image> (and test/<class>/<image>)") from None
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise NasframeError(f"cannot read image archive {path}: {exc}; the file may be truncated") from None
    classes = got.pop("classes")
    splits = Splits(got["train"], got.get("test"))
    blob = {"train_x": splits.train.images, "train_y": splits.train.labels, "classes": classes}
    if splits.test is not None:
        blob.update(test_x=splits.test.images, test_y=splits.test.labels)
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_suffix(".tmp")
        torch.save(blob, tmp)
        tmp.replace(cache)
    except OSError:
        pass  # caching is an optimisation only
    return splits, classes


def find_image_folder(root: Path) -> Optional[Path]:
    """An image-folder tree or archive at ``root`` or directly inside it."""
    if root.is_file() and (root.suffix in (".tar", ".tgz") or root.name.endswith(".tar.gz")):
        return root
    if not root.is_dir():
        return None
    if (root / "train").is_dir():
        return root
    archives = sorted(p for p in root.iterdir() if p.name.endswith((".tar.gz", ".tgz", ".tar")))
    if len(archives) == 1:
        return archives[0]
    for child in sorted(p for p in root.iterdir() if p.is_dir()):
        if (child / "train").is_dir():
            return child
    return None


class ImageFolder(DatasetSource):
    """``train/<class>/<image>`` and ``test/<class>/<image>`` (or a tar archive of them)."""

    settings_help = {"name": "the dataset's name in the run's records",
                     "mean": "per-channel mean for normalisation (default: measured on the training images)",
                     "std": "per-channel standard deviation (default: measured likewise)"}

    def __init__(self, data_dir: Optional[str] = None, name: str = "imagefolder", mean: tuple = (),
                 std: tuple = ()):
        if not data_dir:
            raise NasframeError("the imagefolder dataset needs --data-dir DIR holding train/<class>/<image> files")
        self.root = Path(data_dir).expanduser()
        self._name, self._mean, self._std = name, tuple(mean), tuple(std)
        self._info: Optional[DatasetInfo] = None
        self._splits: Optional[Splits] = None
        self.augment = Augment()

    @property
    def info(self) -> DatasetInfo:  # type: ignore[override]
        if self._info is None:
            self.load()
        return self._info

    def load(self) -> Splits:
        if self._splits is not None:
            return self._splits
        path = find_image_folder(self.root)
        if path is None:
            raise NasframeError(
                f"no image folder at {self.root}: expected {self.root}/train/<class>/<image> "
                f"(and test/), or one .tar.gz holding that layout"
            )
        splits, classes = load_image_folder(path)
        x = splits.train.images
        if not self._mean:
            mean = tuple((x.float().mean(dim=(0, 2, 3)) / 255).tolist())
            std = tuple((x.float().std(dim=(0, 2, 3)) / 255).tolist())
        else:
            mean, std = self._mean, self._std
        self._info = DatasetInfo(self._name, len(classes), x.shape[1], x.shape[2], mean, std)
        self._splits = splits
        return splits


# ------------------------------------------------------------------------- torchvision
def _offline_hint(name: str, root: Path, expected: str, exc: Exception) -> NasframeError:
    return NasframeError(
        f"{name} is not in {root} and could not be downloaded ({type(exc).__name__}); "
        f"put {expected} there, or pass --data-dir DIR where it is"
    )


class TorchvisionCifar(DatasetSource):
    """CIFAR-10/100 from torchvision's files; CIFAR-10 also from an image-folder copy."""

    def __init__(self, data_dir: Optional[str] = None, which: str = "cifar10", download: bool = True):
        self.which = which
        self.root = Path(data_dir).expanduser() if data_dir else default_data_dir() / which
        self.download = download
        self.info = CIFAR_INFO[which]
        self.augment = Augment()

    def load(self) -> Splits:
        import torchvision.datasets as tvd

        cls = tvd.CIFAR10 if self.which == "cifar10" else tvd.CIFAR100
        folder = "cifar-10-batches-py" if self.which == "cifar10" else "cifar-100-python"
        if self.which == "cifar10" and not (self.root / folder).is_dir():
            path = find_image_folder(self.root)
            if path is not None:
                splits, classes = load_image_folder(path)
                if len(classes) != 10:
                    raise NasframeError(f"{path} holds {len(classes)} classes, CIFAR-10 has 10")
                return splits
        if not self.root.exists() and not self.download:
            raise NasframeError(f"data directory {self.root} does not exist; pass --data-dir DIR holding {folder}/")
        try:
            train = cls(str(self.root), train=True, download=self.download)
            test = cls(str(self.root), train=False, download=self.download)
        except RuntimeError as exc:
            raise NasframeError(f"{self.which} files in {self.root} are damaged or incomplete ({exc}); remove them and retry") from None
        except Exception as exc:  # no network
            raise _offline_hint(self.which, self.root, f"{folder}/ (from https://www.cs.toronto.edu/~kriz/)", exc) from None
        return Splits(_from_hwc(train.data, train.targets), _from_hwc(test.data, test.targets))


class FashionMNIST(DatasetSource):
    info = DatasetInfo("fashion-mnist", 10, 1, 28, (0.2860,), (0.3530,))
    settings_help = {"download": "download the files with torchvision when they are missing"}
    augment = Augment(crop_padding=2, flip=True, cutout=0)

    def __init__(self, data_dir: Optional[str] = None, download: bool = True):
        self.root = Path(data_dir).expanduser() if data_dir else default_data_dir() / "fashion-mnist"
        self.download = download

    def load(self) -> Splits:
        import torchvision.datasets as tvd

        try:
            train = tvd.FashionMNIST(str(self.root), train=True, download=self.download)
            test = tvd.FashionMNIST(str(self.root), train=False, download=self.download)
        except Exception as exc:
            raise _offline_hint("fashion-mnist", self.root, "FashionMNIST/raw/*-ubyte.gz", exc) from None
        return Splits(
            ImageData(train.data.unsqueeze(1).contiguous(), train.targets.long()),
            ImageData(test.data.unsqueeze(1).contiguous(), test.targets.long()),
        )


class ImageNet16(DatasetSource):
    """NAS-Bench-201's ImageNet16-120: ``train_data_batch_1..10`` and ``val_data`` pickles."""

    settings_domain = {"classes": between(1, 1000)}
    settings_help = {"classes": "keep the images of the first CLASSES classes (NAS-Bench-201: 120)"}

    info = DatasetInfo("ImageNet16-120", 120, 3, 16, IMAGENET16_MEAN, IMAGENET16_STD)
    augment = Augment(crop_padding=2, flip=True, cutout=0)

    def __init__(self, data_dir: Optional[str] = None, classes: int = 120):
        if not data_dir:
            raise NasframeError(
                "ImageNet16-120 needs --data-dir DIR holding NAS-Bench-201's train_data_batch_1..10 and val_data files"
            )
        self.root = Path(data_dir).expanduser()
        self.classes = classes

    def _read(self, names: list[str]) -> ImageData:
        xs, ys = [], []
        for name in names:
            path = self.root / name
            if not path.is_file():
                raise NasframeError(f"ImageNet16 file {path} is missing; put NAS-Bench-201's ImageNet16 files in {self.root}")
            try:
                with open(path, "rb") as f:
                    # the batches are pickles: read as plain data only, so a planted file cannot run code
                    entry = restricted_load(f, encoding="latin1")
            except RefusedPickle as exc:
                raise NasframeError(f"refusing to load ImageNet16 file {path}: {exc}; it is not an ImageNet16 batch") from None
            except UNREADABLE as exc:
                raise NasframeError(f"ImageNet16 file {path} is damaged ({type(exc).__name__}); download it again") from None
            try:
                x = np.asarray(entry["data"], dtype=np.uint8).reshape(-1, 3, 16, 16)
                y = np.asarray(entry["labels"], dtype=np.int64) - 1  # stored 1-based
            except (KeyError, IndexError, TypeError, ValueError) as exc:
                raise NasframeError(
                    f"ImageNet16 file {path} is not an ImageNet16 batch (no 'data' and 'labels' arrays: "
                    f"{type(exc).__name__}); download it again"
                ) from None
            keep = y < self.classes
            xs.append(x[keep])
            ys.append(y[keep])
        return ImageData(torch.from_numpy(np.concatenate(xs)), torch.from_numpy(np.concatenate(ys)))

    def load(self) -> Splits:
        train = self._read([f"train_data_batch_{i}" for i in range(1, 11)])
        test = self._read(["val_data"])
        return Splits(train, test)


__all__ = [
    "Digits",
    "Synthetic",
    "ImageFolder",
    "TorchvisionCifar",
    "FashionMNIST",
    "ImageNet16",
    "CIFAR10_MEAN",
    "CIFAR10_STD",
]
