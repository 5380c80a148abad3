"""Data-parallel search with torch.distributed: two CPU processes, gloo backend."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from nasframe_core.data import DatasetInfo
from nasframe_darts import DARTSOptimizer

REPO = Path(__file__).resolve().parents[1]
TOY = REPO / "examples" / "nasframe-toy-space"
INFO = DatasetInfo("tiny", 10, 3, 8)
TORCHRUN = shutil.which("torchrun", path=str(Path(sys.executable).parent)) or shutil.which("torchrun")


def _space(name: str):
    if name == "toy":
        sys.path.insert(0, str(TOY))
        from nasframe_toy_space.space import ToySearchSpace

        return ToySearchSpace(C=4, cells=2)
    from nasframe_spaces import NasBench201SearchSpace

    return NasBench201SearchSpace(C=4, N=1)


def _steps(rank: int, world: int, per_rank: int, steps: int, space: str, unrolled: bool) -> dict:
    """A few DARTS steps on this rank's shard of fixed global batches."""
    torch.set_default_dtype(torch.float64)
    torch.set_num_threads(1)
    torch.manual_seed(rank * 1000)  # deliberately different: ranks must start from rank 0's parameters
    opt = DARTSOptimizer(device="cpu", unrolled=unrolled, arch_learning_rate=0.01, learning_rate=0.05)
    opt.adapt_search_space(_space(space), INFO)
    opt.before_training()
    initial = [a.detach().clone() for a in opt.graph.arch_parameters()]
    g = torch.Generator().manual_seed(123)
    shard = slice(rank * per_rank, (rank + 1) * per_rank)
    for _ in range(steps):
        xt, xv = (torch.randn(per_rank * world, 3, 8, 8, generator=g) for _ in range(2))
        yt, yv = (torch.randint(0, 10, (per_rank * world,), generator=g) for _ in range(2))
        opt.step((xt[shard], yt[shard]), (xv[shard], yv[shard]))
    return {
        "initial_alphas": initial,
        "alphas": [a.detach().clone() for a in opt.graph.arch_parameters()],
        "weights": [p.detach().clone() for p in opt.graph.weights()],
    }


def _worker(rank: int, world: int, init_file: str, out: str, per_rank: int, steps: int, space: str,
            unrolled: bool) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        torch.save(_steps(rank, world, per_rank, steps, space, unrolled), Path(out) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def _two_ranks(tmp_path: Path, per_rank: int, steps: int, space: str, unrolled: bool) -> list[dict]:
    mp.spawn(_worker, args=(2, str(tmp_path / "init"), str(tmp_path), per_rank, steps, space, unrolled),
             nprocs=2, join=True)
    return [torch.load(tmp_path / f"rank{r}.pt") for r in range(2)]


def _close(a: list[torch.Tensor], b: list[torch.Tensor], tol: float) -> None:
    for x, y in zip(a, b):
        err = float((x - y).abs().max())
        assert err <= tol * (1.0 + float(y.abs().max())), err


@pytest.mark.parametrize("unrolled", [False, pytest.param(True, marks=pytest.mark.slow)], ids=["first-order", "second-order"])
def test_two_processes_match_one_process_with_the_full_batch(tmp_path, unrolled):
    """BN-free space: averaging gradients of two half batches is the full batch's gradient."""
    ranks = _two_ranks(tmp_path, per_rank=4, steps=3, space="toy", unrolled=unrolled)
    for key in ("alphas", "weights"):
        for a, b in zip(ranks[0][key], ranks[1][key]):
            assert torch.equal(a, b), key  # every rank holds identical parameters
    old = torch.get_default_dtype()
    try:
        single = _steps(0, 1, per_rank=8, steps=3, space="toy", unrolled=unrolled)
    finally:
        torch.set_default_dtype(old)
    _close(ranks[0]["alphas"], single["alphas"], 1e-9)
    _close(ranks[0]["weights"], single["weights"], 1e-9)
    # the alphas were really trained: they moved from where they started (DARTS draws them
    # around 1e-3, so their distance from zero says nothing)
    moved = [float((a - a0).abs().max()) for a, a0 in zip(single["alphas"], single["initial_alphas"])]
    assert max(moved) > 1e-3


def test_ranks_stay_identical_with_batch_norm(tmp_path):
    """With BN the per-rank statistics differ from one process, but the ranks agree exactly."""
    ranks = _two_ranks(tmp_path, per_rank=4, steps=2, space="nasbench201", unrolled=False)
    for key in ("alphas", "weights"):
        for a, b in zip(ranks[0][key], ranks[1][key]):
            assert torch.equal(a, b), key


# ----------------------------------------------------------------------- torchrun CLI
RUN = ["--dataset", "synthetic", "--set", "dataset.n_train=128", "--set", "dataset.n_test=16",
       "--set", "dataset.image_size=8", "--set", "search_space.C=4", "--set", "search_space.N=1",
       "--batch-size", "4", "--steps-per-epoch", "3", "--device", "cpu", "--quiet"]


def torchrun(*args: str, extra_env=None, timeout=240) -> subprocess.CompletedProcess:
    assert TORCHRUN, "torchrun is not installed beside this Python"
    env = {k: v for k, v in os.environ.items() if k != "NASFRAME_NB201"}
    env.update({"OMP_NUM_THREADS": "1", **(extra_env or {})})
    return subprocess.run([TORCHRUN, "--standalone", "--nproc_per_node", "2", "-m", "nasframe_core.cli", *args],
                          capture_output=True, text=True, env=env, timeout=timeout)


@pytest.mark.slow
def test_torchrun_search_leaves_one_run_directory_and_resumes(tmp_path):
    runs = tmp_path / "runs"
    runs.mkdir()
    full = runs / "full"
    proc = torchrun("run", *RUN, "--epochs", "2", "--set", "run.scheduler=constant", "--out", str(full))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert sorted(p.name for p in runs.iterdir()) == ["full"]
    result = json.loads((full / "result.json").read_text())
    assert result["epochs"] == 2 and result["genotype"].count("~") == 6
    assert len((full / "metrics.jsonl").read_text().splitlines()) == 2
    assert "x 2 ranks" in (full / "log.txt").read_text()

    part = runs / "part"
    proc = torchrun("run", *RUN, "--epochs", "1", "--set", "run.scheduler=constant", "--out", str(part))
    assert proc.returncode == 0, proc.stderr[-3000:]
    proc = torchrun("run", "--resume", str(part), "--epochs", "2", "--quiet")
    assert proc.returncode == 0, proc.stderr[-3000:]
    resumed = json.loads((part / "result.json").read_text())
    assert resumed["alphas"] == result["alphas"]


@pytest.mark.parametrize("dying", [pytest.param(1, marks=pytest.mark.slow), 0])
def test_a_dying_rank_stops_the_others_with_a_message(tmp_path, dying):
    """The survivor names the run directory: rank 0 knows it; rank 1 learnt it by broadcast."""
    plugin_dir = tmp_path / "plugins"
    (plugin_dir / "crash_plugin-1.0.dist-info").mkdir(parents=True)
    (plugin_dir / "crash_plugin-1.0.dist-info" / "METADATA").write_text("Metadata-Version: 2.1\nName: crash-plugin\nVersion: 1.0\n")
    (plugin_dir / "crash_plugin-1.0.dist-info" / "entry_points.txt").write_text("[nasframe]\ncrash = crash_plugin\n")
    (plugin_dir / "crash_plugin.py").write_text(textwrap.dedent("""
        import os
        from nasframe_core import hookimpl

        @hookimpl
        def nasframe_epoch_start(run, epoch):
            if epoch == 1 and os.environ.get("RANK") == os.environ["DYING_RANK"]:
                os._exit(7)  # a rank dies without a word
    """))
    t0 = time.time()
    proc = torchrun("run", *RUN, "--epochs", "3", "--out", str(tmp_path / "run"),
                    extra_env={"PYTHONPATH": str(plugin_dir), "DYING_RANK": str(dying)}, timeout=200)
    assert proc.returncode != 0
    assert time.time() - t0 < 180  # stopped, not hung until a collective timeout
    assert f"rank {1 - dying} stopped because another rank failed" in proc.stderr, proc.stderr[-3000:]
    assert f"--resume {tmp_path / 'run'}" in proc.stderr and "RUN_DIR" not in proc.stderr
    ckpt = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)
    assert ckpt["epoch"] == 1  # the last good epoch is kept


def test_torchrun_trains_from_scratch(tmp_path):
    arch = "|nor_conv_3x3~0|+|skip_connect~0|nor_conv_1x1~1|+|skip_connect~0|none~1|avg_pool_3x3~2|"
    out = tmp_path / "train"
    proc = torchrun("train", "--search-space", "nasbench201", "--genotype", arch, *RUN, "--epochs", "1",
                    "--out", str(out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((out / "result.json").read_text())
    assert result["genotype"] == arch and result["params"] > 0
    # the final epoch's accuracy over the whole test set (16 images, split over the ranks): a
    # whole number of images, and what metrics.jsonl says
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert result["test_acc"] == metrics[-1]["test_acc"]
    assert result["test_acc"] * 16 / 100 == pytest.approx(round(result["test_acc"] * 16 / 100), abs=1e-6)
