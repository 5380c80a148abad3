"""Plugin: the optional CPU speed-ups of :mod:`nasframe_cpu`, enabled by ``run.cpu_kernels``."""
from __future__ import annotations

from nasframe_core import hookimpl


@hookimpl
def nasframe_process_start(config):
    import nasframe_cpu

    if config.run.cpu_kernels:
        entries = dict(nasframe_cpu.enable())
        kernels = str(entries.get("native_kernels", ""))
        if kernels.startswith("off") and "turns them off" not in kernels:
            # asked for, yet not running (no compiler, an unwritable cache): said on the console and in log.txt
            entries["notices"] = [f"run.cpu_kernels is on but the native kernels are {kernels}; ATen's kernels run"]
        return entries
    return nasframe_cpu.status()
