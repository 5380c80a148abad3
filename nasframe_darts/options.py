"""Execution options of the one-shot engine: where and how the supernet runs.

None of them changes the math except ``autocast`` (bfloat16, off by default):

- ``device``: default CUDA when available;
- ``fused``: the fast cell execution of :class:`~nasframe_darts.mixed.MixedCell` (``False``:
  edge by edge, the reference path);
- ``channels_last``: NHWC activations (``auto``: on the CPU, where mkldnn is faster);
- ``compile``: ``torch.compile`` the supernet (on CUDA with CUDA graphs, ``reduce-overhead``);
- ``autocast``: bfloat16 autocast.

Values may be strings, as they come from the command line: ``fused="false"`` is ``False``.
"""
from __future__ import annotations

from typing import Any, Mapping, Union

import attrs
import torch

from nasframe_core.errors import NasframeError
from nasframe_core.settings import coerce

#: the option names and their defaults, as settings of every one-shot optimizer
DEFAULTS: dict[str, Any] = {"device": None, "fused": True, "channels_last": "auto", "compile": False,
                            "autocast": False}


@attrs.define
class ExecutionOptions:
    device: torch.device
    fused: bool = True
    channels_last: Union[bool, str] = "auto"
    compile: bool = False
    autocast: bool = False

    @classmethod
    def parse(cls, settings: Mapping[str, Any]) -> "ExecutionOptions":
        """The options from ``settings`` (missing ones take their defaults)."""
        channels_last = settings.get("channels_last", "auto")
        if isinstance(channels_last, str):
            channels_last = {"true": True, "false": False, "auto": "auto"}.get(channels_last.strip().lower(),
                                                                            channels_last)
        if channels_last not in ("auto", True, False):
            raise NasframeError(f"channels_last must be auto, true or false, got {channels_last!r}")
        device = settings.get("device")
        return cls(
            device=torch.device(device if device else ("cuda" if torch.cuda.is_available() else "cpu")),
            fused=coerce(settings.get("fused", True), True, "fused"),
            channels_last=channels_last,
            compile=coerce(settings.get("compile", False), False, "compile"),
            autocast=coerce(settings.get("autocast", False), False, "autocast"),
        )
