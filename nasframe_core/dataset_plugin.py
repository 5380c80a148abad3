"""The built-in dataset plugin (entry point ``datasets``): it registers the sources of
:mod:`nasframe_core.data.sources` by path, so listing them imports no torch."""
from __future__ import annotations

from .hookspecs import hookimpl

_SOURCES = "nasframe_core.data.sources"


def _cifar(which):
    def factory(data_dir=None, download: bool = True):
        from .data.sources import TorchvisionCifar

        return TorchvisionCifar(data_dir, which=which, download=download)

    factory.__name__ = which
    factory.settings_help = {"data_dir": "where the dataset's files are, or go (--data-dir)",
                             "download": "download the files with torchvision when they are missing"}
    return factory


@hookimpl
def nasframe_register_datasets(register):
    register("digits", f"{_SOURCES}:Digits", default=True, description="scikit-learn's 8x8 handwritten digits; offline, nothing to download")
    register("synthetic", f"{_SOURCES}:Synthetic", description="random class-conditional images, for tests")
    register("cifar10", _cifar("cifar10"),
             description="CIFAR-10 (torchvision files, or train/<class>/ image folders or a .tar.gz of them)")
    register("cifar100", _cifar("cifar100"), description="CIFAR-100 (torchvision files)")
    register("imagefolder", f"{_SOURCES}:ImageFolder", description="train/<class>/<image> and test/<class>/<image> from --data-dir")
    register("ImageNet16-120", f"{_SOURCES}:ImageNet16", description="NAS-Bench-201's ImageNet16-120 files from --data-dir")
    register("fashion-mnist", f"{_SOURCES}:FashionMNIST", description="Fashion-MNIST (torchvision files)")


