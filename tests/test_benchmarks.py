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
    assert group_of("aten.native_batch_norm_backward.default") == "batch norm"
    assert group_of("aten.bmm.default") == "matmul"
    assert group_of("aten.cat.default") == "copies and layout"
    assert group_of("aten.addcmul_.default") == "elementwise"
    assert group_of("aten.threshold_backward.default") == "elementwise"
    assert group_of("aten.view.default") == "other"


def test_the_breakdown_adds_up():
    proc = subprocess.run(
        [sys.executable, str(BENCH / "step_breakdown.py"), "--space", "nasbench201", "--batch", "2", "--steps", "1",
         "--threads", "1", "--top", "3"],
        capture_output=True, text=True, timeout=300, cwd=BENCH)
    assert proc.returncode == 0, proc.stderr[-2000:]
    shares = [float(m) for m in re.findall(r"^\S.*?\s(\d+\.\d)% +\d+\.\d+ +\d+$", proc.stdout, re.M)]
    assert "convolution backward" in proc.stdout and "batch norm" in proc.stdout
    assert len(shares) >= 5 and abs(sum(shares) - 100) < 0.6, proc.stdout
