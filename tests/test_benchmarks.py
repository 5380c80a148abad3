"""The step-breakdown benchmark runs and accounts for every operation it timed."""
import re
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCH))

from step_breakdown import group_of  # noqa: E402


def test_operations_fall_into_their_groups():
    assert group_of("aten.convolution.default") == "convolution forward"
    assert group_of("aten.convolution_backward.default") == "convolution backward"
    assert group_of("nasframe.depthwise_weight_grad.default") == "convolution backward"
    assert group_of("aten.native_batch_norm_backward.default") == "batch norm"
    assert group_of("aten.bmm.default") == "matmul"
    assert group_of("aten.cat.default") == "copies and layout"
    assert group_of("aten.addcmul_.default") == "elementwise"
    assert group_of("aten.threshold_backward.default") == "elementwise"
    assert group_of("aten.add_.Tensor") == "elementwise"
    assert group_of("aten._foreach_add_.List") == "elementwise"
    for view in ("aten.view.default", "aten.expand.default", "aten.permute.default", "aten.t.default",
                 "aten._unsafe_view.default", "aten.empty.memory_format"):
        assert group_of(view) == "other", view


def test_the_breakdown_adds_up():
    proc = subprocess.run(
        [sys.executable, str(BENCH / "step_breakdown.py"), "--space", "nasbench201", "--batch", "2", "--steps", "1",
         "--threads", "1", "--top", "3"],
        capture_output=True, text=True, timeout=300, cwd=BENCH)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = dict(re.findall(r"^(\S.*?)\s+(\d+\.\d)% +\d+\.\d+ +\d+$", proc.stdout, re.M))
    shares = {name: float(share) for name, share in rows.items()}
    assert {"convolution forward", "convolution backward", "batch norm", "elementwise"} <= set(shares), proc.stdout
    assert abs(sum(shares.values()) - 100) < 0.6, proc.stdout
    # every operation that costs time has its group: what is left (views, allocation) is small
    assert shares.get("other", 0.0) < 10, proc.stdout


def test_native_step_alternates_the_kernels_on_and_off(native_kernels):
    import json

    proc = subprocess.run(
        [sys.executable, str(BENCH / "native_step.py"), "--space", "darts", "--mode", "first", "--batch", "2",
         "--rounds", "1", "--threads", "1"],
        capture_output=True, text=True, timeout=600, cwd=BENCH)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["native_s"] > 0 and out["aten_s"] > 0
    assert abs(out["native_over_aten"] - out["native_s"] / out["aten_s"]) < 1e-9
