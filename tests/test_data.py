"""Datasets and device-side batches."""
from __future__ import annotations


import os
import pickle
import tarfile

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from nasframe_core.data import Augment, EpochBatches, ImageData, Normalizer, split_train_val
from nasframe_core.datasets import dataset_info
from nasframe_core.data.sources import Digits, ImageFolder, ImageNet16, Synthetic, TorchvisionCifar
from nasframe_core.errors import NasframeError


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("NASFRAME_CACHE", str(tmp_path / "cache"))


def _images(n: int, c: int = 3, s: int = 8, seed: int = 0) -> ImageData:
    g = torch.Generator().manual_seed(seed)
    return ImageData(torch.randint(0, 256, (n, c, s, s), generator=g, dtype=torch.uint8),
                     torch.randint(0, 10, (n,), generator=g))


def _batches(data, augment, epoch=0, seed=0, batch=4, stream=0):
    info = dataset_info("synthetic")
    return EpochBatches(data, batch, seed=seed, epoch=epoch, stream=stream, normalize=Normalizer(info, torch.device("cpu")),
                        augment=augment)


def test_batches_are_a_seeded_permutation_without_augmentation():
    data = _images(12)
    b = _batches(data, None)
    assert len(b) == 3
    seen = torch.cat([y for _, y in b])
    order = b.order
    assert torch.equal(seen, data.labels[order])
    x0, _ = b.batch(0)
    norm = Normalizer(dataset_info("synthetic"), torch.device("cpu"))
    assert torch.allclose(x0, (data.images[order[:4]].float() / 255 - 0.5) / 0.5, atol=1e-6)
    assert torch.equal(_batches(data, None).order, order)  # same (seed, epoch): same order
    assert not torch.equal(_batches(data, None, epoch=1).order, order)
    assert not torch.equal(_batches(data, None, stream=1).order, order)
    assert norm.scale.shape == (1, 3, 1, 1)


def test_crop_and_flip_equal_a_plain_reference():
    data = _images(8, s=6)
    aug = Augment(crop_padding=2, flip=True, cutout=0)
    b = _batches(data, aug, batch=8)
    x, _ = b.batch(0)
    padded = F.pad(data.images[b.order].float(), (2, 2, 2, 2))  # zeros in pixel space
    padded = padded / 255 * 2 - 1  # normalise (mean 0.5, std 0.5)
    prm = b._params
    for i in range(8):
        dy, dx = int(prm["dy"][i]), int(prm["dx"][i])
        ref = padded[i, :, dy:dy + 6, dx:dx + 6]
        if bool(prm["flip"][i]):
            ref = ref.flip(-1)
        assert torch.allclose(x[i], ref, atol=1e-6), i
    assert len({(int(a), int(c)) for a, c in zip(prm["dy"], prm["dx"])}) > 1  # offsets vary


def test_cutout_zeroes_a_square_after_normalisation():
    data = ImageData(torch.full((4, 3, 16, 16), 200, dtype=torch.uint8), torch.zeros(4, dtype=torch.long))
    b = _batches(data, Augment(crop_padding=0, flip=False, cutout=4), batch=4)
    x, _ = b.batch(0)
    for i in range(4):
        cy, cx = int(b._params["cy"][i]), int(b._params["cx"][i])
        ys, xs = slice(max(cy - 2, 0), min(cy + 2, 16)), slice(max(cx - 2, 0), min(cx + 2, 16))
        assert (x[i, :, ys, xs] == 0).all()
        assert int((x[i, 0] == 0).sum()) == (ys.stop - ys.start) * (xs.stop - xs.start)


def test_split_is_seeded_and_disjoint():
    data = ImageData(torch.zeros(10, 1, 2, 2, dtype=torch.uint8), torch.arange(10))
    a, b = split_train_val(data, 0.5, seed=3)
    assert sorted(torch.cat([a.labels, b.labels]).tolist()) == list(range(10)) and len(a) == 5
    a2, _ = split_train_val(data, 0.5, seed=3)
    assert torch.equal(a.labels, a2.labels)
    with pytest.raises(NasframeError, match="train_portion"):
        split_train_val(data, 1.0, seed=0)


def test_a_split_smaller_than_a_batch_is_a_clear_error():
    with pytest.raises(NasframeError, match="lower --batch-size"):
        _batches(_images(3), None, batch=4)


def test_digits_work_offline():
    splits = Digits().load()
    assert splits.train.images.shape[1:] == (1, 8, 8) and splits.train.images.dtype == torch.uint8
    assert len(splits.train) + len(splits.test) == 1797
    assert set(splits.train.labels.tolist()) == set(range(10))
    assert int(splits.train.images.max()) > 200  # scaled from 0..16 to 0..255


def test_synthetic_is_deterministic_and_learnable_by_class():
    a, b = Synthetic(n_train=40).load(), Synthetic(n_train=40).load()
    assert torch.equal(a.train.images, b.train.images)
    x, y = a.train.images.float(), a.train.labels
    means = torch.stack([x[y == k].mean(0) for k in y.unique()])
    assert (means[0] - means[1]).abs().mean() > 10  # classes differ


def _write_tree(root, splits=("train", "test"), classes=("cat", "dog"), n=3, size=(5, 5)):
    rng = np.random.RandomState(0)
    for split in splits:
        for cls in classes:
            d = root / split / cls
            d.mkdir(parents=True)
            for i in range(n):
                Image.fromarray(rng.randint(0, 255, size + (3,), dtype=np.uint8)).save(d / f"{i:04d}.png")


def test_image_folder_directory_and_tar_gz(tmp_path):
    _write_tree(tmp_path / "tree")
    src = ImageFolder(str(tmp_path / "tree"))
    splits = src.load()
    assert splits.train.images.shape == (6, 3, 5, 5) and splits.test.images.shape == (6, 3, 5, 5)
    assert splits.train.labels.tolist() == [0, 0, 0, 1, 1, 1]
    assert src.info.num_classes == 2 and src.info.in_channels == 3
    archive = tmp_path / "pack" / "images.tar.gz"
    archive.parent.mkdir()
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tmp_path / "tree" / "train", arcname="data/train")
        tar.add(tmp_path / "tree" / "test", arcname="data/test")
    from_tar = ImageFolder(str(archive.parent)).load()  # the folder holding one archive works too
    assert torch.equal(from_tar.train.images, splits.train.images)
    assert torch.equal(from_tar.test.labels, splits.test.labels)
    again = ImageFolder(str(archive)).load()  # second read comes from the cache
    assert torch.equal(again.train.images, splits.train.images)


def test_image_folder_errors_name_the_place(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(NasframeError, match="no image folder at"):
        ImageFolder(str(tmp_path / "empty")).load()
    bad = tmp_path / "bad.tar.gz"
    bad.write_bytes(b"\x1f\x8b\x08\x00garbage")
    with pytest.raises(NasframeError, match="bad.tar.gz"):
        ImageFolder(str(bad)).load()
    with pytest.raises(NasframeError, match="--data-dir"):
        ImageFolder(None)


def test_cifar10_reads_an_image_folder_copy(tmp_path):
    _write_tree(tmp_path / "c10", classes=[f"c{i}" for i in range(10)], n=1, size=(32, 32))
    splits = TorchvisionCifar(str(tmp_path / "c10"), which="cifar10", download=False).load()
    assert splits.train.images.shape == (10, 3, 32, 32) and splits.train.labels.tolist() == list(range(10))


def test_cifar_offline_and_absent_says_where_to_put_files(tmp_path):
    with pytest.raises(NasframeError) as info:
        TorchvisionCifar(str(tmp_path / "none"), which="cifar100", download=False).load()
    assert "cifar-100-python" in str(info.value) and "\n" not in str(info.value)


def test_imagenet16_format(tmp_path):
    rng = np.random.RandomState(0)
    for name in [f"train_data_batch_{i}" for i in range(1, 11)] + ["val_data"]:
        labels = rng.randint(1, 131, size=5)  # 1-based; classes above 120 are dropped
        with open(tmp_path / name, "wb") as f:
            pickle.dump({"data": rng.randint(0, 255, (5, 3 * 16 * 16)).astype(np.uint8), "labels": labels.tolist()}, f)
    splits = ImageNet16(str(tmp_path)).load()
    assert splits.train.images.shape[1:] == (3, 16, 16)
    assert int(splits.train.labels.max()) < 120 and int(splits.train.labels.min()) >= 0
    (tmp_path / "val_data").write_bytes(b"\x80\x04truncated")
    with pytest.raises(NasframeError, match="val_data is damaged"):
        ImageNet16(str(tmp_path)).load()
    (tmp_path / "train_data_batch_3").unlink()
    with pytest.raises(NasframeError, match="train_data_batch_3 is missing"):
        ImageNet16(str(tmp_path)).load()


class _Planted:
    """Unpickling this makes a directory: what a planted batch file could do with any call."""

    def __init__(self, target):
        self.target = str(target)

    def __reduce__(self):
        return (os.mkdir, (self.target,))


def test_imagenet16_batches_are_unpickled_as_plain_data_only(tmp_path):
    rng = np.random.RandomState(0)
    for name in [f"train_data_batch_{i}" for i in range(1, 11)] + ["val_data"]:
        with open(tmp_path / name, "wb") as f:  # numpy arrays for both, as the real files hold
            pickle.dump({"data": rng.randint(0, 255, (4, 3 * 16 * 16)).astype(np.uint8),
                         "labels": np.arange(1, 5)}, f, protocol=2)
    assert ImageNet16(str(tmp_path)).load().test.images.shape == (4, 3, 16, 16)
    marker = tmp_path / "code-ran"
    with open(tmp_path / "train_data_batch_7", "wb") as f:
        pickle.dump({"data": _Planted(marker), "labels": [1]}, f)
    with pytest.raises(NasframeError) as info:
        ImageNet16(str(tmp_path)).load()
    message = str(info.value)
    assert message.startswith(f"refusing to load ImageNet16 file {tmp_path / 'train_data_batch_7'}: ")
    assert "mkdir" in message and "\n" not in message
    assert not marker.exists()
    with open(tmp_path / "train_data_batch_7", "wb") as f:
        pickle.dump(["not", "a", "batch"], f)
    with pytest.raises(NasframeError, match="train_data_batch_7 is not an ImageNet16 batch"):
        ImageNet16(str(tmp_path)).load()


@pytest.mark.slow
def test_cifar10_jpeg_copy_loads(cifar10_jpeg_dir):
    splits = TorchvisionCifar(str(cifar10_jpeg_dir), which="cifar10", download=False).load()
    assert splits.train.images.shape == (50000, 3, 32, 32) and splits.test.images.shape == (10000, 3, 32, 32)
    assert torch.bincount(splits.train.labels).tolist() == [5000] * 10
    mean = splits.train.images.float().mean(dim=(0, 2, 3)) / 255
    assert torch.allclose(mean, torch.tensor([0.4913, 0.4821, 0.4465]), atol=2e-3)



def test_dataset_names_resolve_through_the_registry_only():
    """No table of known datasets beside the registry: a name is a registered dataset, whose
    factory (or the source it makes, before loading) knows its shape."""
    import nasframe_core.data as data_module
    from nasframe_core import NasframeError, hookimpl, make_plugin_manager
    from nasframe_core.data import DatasetInfo

    stripes = DatasetInfo("stripes", 2, 1, 16)

    class Stripes:
        info = stripes

    class Plugin:
        @hookimpl
        def nasframe_register_datasets(self, register):
            register("stripes", Stripes, description="a third party's dataset")

    assert dataset_info("stripes", make_plugin_manager(plugins=[("stripes", Plugin())])) == stripes
    with pytest.raises(NasframeError, match="unknown dataset 'stripes'; installed: .*cifar10"):
        dataset_info("stripes")  # not installed here
    assert dataset_info("imagenet16").num_classes == 120 and dataset_info("CIFAR100").num_classes == 100
    assert not hasattr(data_module, "KNOWN_DATASETS")
