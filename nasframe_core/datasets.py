"""Datasets by name: the shape (:class:`~nasframe_core.data.DatasetInfo`) of a registered dataset.

There is no table of dataset names beside the registry: a name is a registered dataset, whose
factory (or the source it makes, before loading) knows its classes, channels and image size.
"""
from __future__ import annotations

from typing import Any

from .data import DatasetInfo
from .errors import NasframeError
from .plugins import make_plugin_manager


def dataset_info(dataset: Any, host: Any = None) -> DatasetInfo:
    """The :class:`DatasetInfo` of a dataset: an info itself, a :class:`DatasetSource`, or the name
    of a registered dataset (through ``host``, default the installed plugins): its factory's
    ``info``, else the ``info`` of the source it makes (sources know theirs before loading)."""
    if isinstance(dataset, DatasetInfo):
        return dataset
    info = getattr(dataset, "info", None)
    if isinstance(info, DatasetInfo):
        return info
    if isinstance(dataset, str):
        name = "imagenet16-120" if dataset.lower() == "imagenet16" else dataset
        if host is None:
            host = make_plugin_manager()
        try:
            reg = host.get("dataset", name)
        except NasframeError:
            raise NasframeError(
                f"unknown dataset {dataset!r}; installed: {', '.join(sorted(host.names('dataset')))} "
                f"(or pass a DatasetInfo(name, num_classes, in_channels))"
            ) from None
        info = getattr(reg.factory, "info", None)
        if not isinstance(info, DatasetInfo):
            try:
                info = getattr(reg.factory(), "info", None)
            except Exception:  # noqa: BLE001 - a factory that needs settings: said below
                info = None
        if isinstance(info, DatasetInfo):
            return info
        raise NasframeError(f"dataset {dataset!r} tells its classes and channels only once loaded; "
                            f"pass a DatasetInfo(name, num_classes, in_channels) or the loaded source")
    raise NasframeError(f"cannot tell the classes and channels of dataset {dataset!r}; pass a name or a DatasetInfo")
