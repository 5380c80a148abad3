"""The allocator setting of CPU search steps (``nasframe_cpu.memory``): freed memory is kept
and reused, so steady steps do not fault pages in again."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from nasframe_cpu import memory

# allocate, touch and free a 64 MB tensor forty times; count the page faults of the last twenty
_LOOP = """
import json, resource, sys, torch
from nasframe_cpu import memory
status = memory.keep_freed_memory()
faults = 0
for i in range(40):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    t = torch.empty(16 * 2**20)
    t.fill_(1.0)
    del t
    if i >= 20:
        faults += resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
print(json.dumps({"status": status, "faults": faults}))
"""


def _loop(switch: str) -> dict:
    env = {**os.environ, memory.ENV_SWITCH: switch}
    done = subprocess.run([sys.executable, "-c", _LOOP], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def _needs_glibc() -> None:
    if memory._glibc() is None:
        pytest.skip("the allocator setting applies to glibc only; run on a glibc system (Linux) to test it")


def test_freed_memory_is_reused_without_page_faults():
    _needs_glibc()
    on = _loop("1")
    assert on["status"] == "freed memory kept (glibc: no mmap, no trim)"
    # 64 MB is above glibc's largest mmap threshold: by default every round maps it afresh
    # (16384 faults with 4 KB pages); kept, it is the same memory every round
    assert on["faults"] < 1000, on


def test_the_switch_keeps_the_c_library_defaults():
    _needs_glibc()
    off = _loop("0")
    assert off["status"] == f"C library defaults ({memory.ENV_SWITCH}=0)"


@pytest.mark.parametrize("name, value", [("MALLOC_TRIM_THRESHOLD_", "65536"),
                                         ("GLIBC_TUNABLES", "glibc.malloc.mmap_max=0"),
                                         ("LD_PRELOAD", "/usr/lib/libjemalloc.so.2")])
def test_malloc_settings_of_the_environment_are_left_alone(monkeypatch, name, value):
    for other in ["LD_PRELOAD", "GLIBC_TUNABLES"] + [n for n in os.environ if n.startswith("MALLOC_")]:
        monkeypatch.delenv(other, raising=False)
    monkeypatch.setenv(name, value)
    monkeypatch.setenv(memory.ENV_SWITCH, "1")
    monkeypatch.setattr(memory, "_state", {})
    monkeypatch.setattr(memory, "_glibc", lambda: pytest.fail("mallopt must not be called"))
    assert memory.keep_freed_memory() == f"as the environment sets it ({name})"


@pytest.mark.parametrize("flags", [[], ["--cpu-kernels"]])
def test_cpu_speed_ups_run_only_when_asked_for_and_are_recorded(tmp_path, flags):
    """Off by default (a seed's search does not depend on a C compiler or the allocator);
    ``--cpu-kernels`` (run.cpu_kernels) keeps freed memory and installs the native kernels, in
    the process the command owns; the run record says which."""
    _needs_glibc()
    out = tmp_path / "run"
    args = ["run", "--dataset", "synthetic", "--set", "dataset.n_train=32", "--set", "dataset.n_test=8",
            "--set", "dataset.image_size=8", "--set", "search_space.C=4", "--set", "search_space.N=1",
            "--batch-size", "8", "--device", "cpu", "--quiet", "--epochs", "1", "--steps-per-epoch", "2",
            "--out", str(out), *flags]
    env = {**os.environ, memory.ENV_SWITCH: "1"}
    done = subprocess.run([sys.executable, "-m", "nasframe_core.cli", *args], env=env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    result = json.loads((out / "result.json").read_text())
    runtime = result["runtime"]
    if flags:
        assert runtime["allocator"] == "freed memory kept (glibc: no mmap, no trim)"
        assert runtime["native_kernels"] in ("on", "not used") or runtime["native_kernels"].startswith("off (")
    else:
        assert runtime["allocator"] == "C library defaults"
        assert runtime["native_kernels"] == "off (run.cpu_kernels is false)"
    assert runtime["threads"] >= 1 and runtime["torch"]


def test_a_library_run_changes_no_process_state(monkeypatch, tmp_path):
    """``execute()`` from Python (no ``owns_process``) calls no process hook, even with
    run.cpu_kernels on: a library call never changes the allocator or the kernels."""
    from nasframe_core import ops
    from nasframe_core.config import Config
    from nasframe_core.engine import execute
    from nasframe_core.plugins import make_plugin_manager

    import nasframe_cpu

    monkeypatch.setattr(nasframe_cpu, "enable", lambda: pytest.fail("a library call enabled nasframe_cpu"))
    cfg = Config()
    for key, value in (("dataset.name", "synthetic"), ("dataset.n_train", 32), ("dataset.n_test", 8),
                       ("dataset.image_size", 8), ("search_space.C", 4), ("search_space.N", 1),
                       ("run.batch_size", 8), ("run.epochs", 1), ("run.steps_per_epoch", 1),
                       ("run.device", "cpu"), ("run.cpu_kernels", True)):
        cfg.set(key, value)
    result = execute(cfg, make_plugin_manager(), out=tmp_path / "run", quiet=True)
    assert ops.native_convolutions() is None
    assert set(result["runtime"]) == {"torch", "threads"}
