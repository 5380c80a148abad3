"""The built-in dataset plugin (entry point ``datasets``)."""
from __future__ import annotations


from ..hookspecs import hookimpl
from .sources import Digits, FashionMNIST, ImageFolder, ImageNet16, Synthetic, TorchvisionCifar


def _cifar(which):
    def factory(data_dir=None, download: bool = True):
        return TorchvisionCifar(data_dir, which=which, download=download)

    factory.__name__ = which
    factory.settings_help = {"data_dir": "where the dataset's files are, or go (--data-dir)",
                             "download": "download the files with torchvision when they are missing"}
    return factory


@hookimpl
def nasframe_register_datasets(register):
    register("digits", Digits, description="scikit-learn's 8x8 handwritten digits; offline, nothing to download")
    register("synthetic", Synthetic, description="random class-conditional images, for tests")
    register("cifar10", _cifar("cifar10"),
             description="CIFAR-10 (torchvision files, or train/<class>/ image folders or a .tar.gz of them)")
    register("cifar100", _cifar("cifar100"), description="CIFAR-100 (torchvision files)")
    register("imagefolder", ImageFolder, description="train/<class>/<image> and test/<class>/<image> from --data-dir")
    register("ImageNet16-120", ImageNet16, description="NAS-Bench-201's ImageNet16-120 files from --data-dir")
    register("fashion-mnist", FashionMNIST, description="Fashion-MNIST (torchvision files)")


