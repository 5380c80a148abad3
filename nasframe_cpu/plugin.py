"""Plugin: the optional CPU speed-ups of :mod:`nasframe_cpu`, enabled by ``run.cpu_kernels``."""
from __future__ import annotations

from nasframe_core import hookimpl


@hookimpl
def nasframe_process_start(config):
    import nasframe_cpu

    if config.run.cpu_kernels:
        return nasframe_cpu.enable()
    return nasframe_cpu.status()
