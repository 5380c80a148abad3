"""The benchmark scripts: the step breakdown runs and accounts for every operation it timed, and
the bytes of the memory-bound ones; the Table 5 script prints what nasframe aggregate reports."""
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCH))

from step_breakdown import MEMORY_BOUND, OpTimer, group_of, nbytes, streaming_bandwidth  # noqa: E402

from conftest import nasframe_in_process  # noqa: E402


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


def _stats(timer, name):
    (stats,) = [v for (op, _), v in timer.by_op.items() if op == name]
    return stats


@pytest.mark.slow
def test_bytes_count_every_operand_once():
    a, b = torch.ones(2, 3, 4, 5), torch.ones(2, 3, 4, 5, dtype=torch.float64)
    assert nbytes(a) == 120 * 4 and nbytes([a, b, 3, None]) == 120 * 4 + 120 * 8
    assert nbytes(torch.ones(5).expand(7, 5)) == 5 * 4  # an expanded operand is read once
    out = torch.empty(2, 3, 4, 5)
    timer = OpTimer()
    with timer:
        a.add_(a)  # in place: read twice (two operands) and written once
        torch.cat([a, a])
        out.copy_(a)  # the destination is only written
        torch.add(a, a, out=out)  # the out= tensor is the output: counted once
    assert all(v.seconds_at_limit == 0 for v in timer.by_op.values())  # no limits given: no time at them
    assert _stats(timer, "aten.add_.Tensor").bytes == 3 * 480
    assert _stats(timer, "aten.cat.default").bytes == 4 * 480  # two inputs, an output of both
    assert _stats(timer, "aten.copy_.default").bytes == 2 * 480
    assert _stats(timer, "aten.add.out").bytes == 3 * 480
    assert streaming_bandwidth(mb=4, repeats=2) > 0


def test_a_calls_limit_is_its_roofline():
    x, w = torch.ones(2, 4, 8, 8), torch.ones(6, 4, 3, 3)
    flops = 2 * 2 * 6 * 8 * 8 * 4 * 9
    moved = 4 * (x.numel() + w.numel() + 2 * 6 * 8 * 8)
    for peak, bandwidth in ((1e6, 1e9), (1e9, 1e6)):  # GFLOP/s, GB/s: bound by arithmetic, then by memory
        timer = OpTimer(peak, bandwidth)
        with timer:
            torch.nn.functional.conv2d(x, w, padding=1)
        stats = _stats(timer, "aten.convolution.default")
        assert stats.bytes == moved and stats.flops == flops
        assert stats.seconds_at_limit == pytest.approx(max(flops / peak, moved / bandwidth) / 1e9)
    timer = OpTimer(1e-6, 1e-6)  # limits far below what the call reached: its own time counts
    with timer:
        torch.nn.functional.conv2d(x, w, padding=1)
    stats = _stats(timer, "aten.convolution.default")
    assert stats.seconds_at_limit == stats.seconds


def test_convolutions_are_split_by_kind():
    F = torch.nn.functional
    x = torch.randn(2, 8, 6, 6, requires_grad=True)
    dw, pw, dense = (torch.randn(8, 1, 5, 5), torch.randn(8, 4, 1, 1, requires_grad=True),
                     torch.randn(4, 8, 3, 3, requires_grad=True))
    timer = OpTimer()
    with timer:
        y = F.conv2d(F.conv2d(x, dw, padding=2, groups=8), pw, groups=2)
        torch.autograd.grad(F.conv2d(y, dense, padding=1).sum(), [x, pw, dense])
    kinds = timer.by_conv_kind
    assert set(kinds) == {"depthwise 5x5 forward", "grouped 1x1 forward", "dense 3x3 forward",
                          "dense 3x3 input and weight gradients", "grouped 1x1 input and weight gradients",
                          "depthwise 5x5 input gradient"}
    assert all(v.calls == 1 for v in kinds.values())
    # a backward call costs one forward per gradient it computes
    assert kinds["dense 3x3 input and weight gradients"].flops == 2 * kinds["dense 3x3 forward"].flops
    assert kinds["depthwise 5x5 input gradient"].flops == kinds["depthwise 5x5 forward"].flops == 2 * 2 * 8 * 36 * 25
    conv_seconds = sum(v.seconds for (op, _), v in timer.by_op.items() if group_of(op).startswith("convolution"))
    assert sum(v.seconds for v in kinds.values()) == pytest.approx(conv_seconds)


def test_other_convolutions_are_counted_not_fatal():
    F = torch.nn.functional
    timer = OpTimer()
    with timer:
        F.conv1d(torch.ones(2, 4, 9), torch.ones(6, 4, 3))
        F.conv3d(torch.ones(1, 2, 4, 4, 4), torch.ones(3, 2, 1, 1, 1))
        F.conv_transpose2d(torch.ones(1, 8, 4, 4), torch.ones(8, 16, 3, 3))
    kinds = timer.by_conv_kind
    assert kinds["dense 3 forward"].flops == 2 * 2 * 6 * 7 * 4 * 3
    assert kinds["1x1 forward"].flops == 2 * 3 * 64 * 2
    # a transposed convolution: every input pixel meets every output channel's 3x3 kernel
    assert kinds["transposed 3x3 forward"].flops == 2 * 8 * 16 * 16 * 9


def test_the_native_weight_gradient_is_counted(native_kernels):
    from nasframe_cpu import kernels

    x = torch.randn(2, 8, 6, 6).contiguous(memory_format=torch.channels_last)
    timer = OpTimer()
    with timer:
        kernels.depthwise_weight_grad(x, torch.randn_like(x), 5, 2)
    if not hasattr(torch.library, "custom_op"):
        pytest.skip("torch < 2.4: the native kernel is not an operator that dispatch modes see")
    assert timer.by_conv_kind["depthwise 5x5 weight gradient (native)"].flops == 2 * 2 * 8 * 36 * 25


@pytest.mark.slow
def test_the_breakdown_adds_up():
    proc = subprocess.run(
        [sys.executable, str(BENCH / "step_breakdown.py"), "--space", "nasbench201", "--batch", "2", "--steps", "1",
         "--threads", "1", "--top", "3"],
        capture_output=True, text=True, timeout=300, cwd=BENCH)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = re.findall(r"^(\S.*?)\s+(\d+\.\d)% +\d+\.\d+ +\d+(?: +\d+\.\d+ (GFLOP|GB) .*% of (?:roofline|bandwidth))?$",
                      proc.stdout, re.M)
    shares = {name: float(share) for name, share, _ in rows}
    # FLOPs for the convolutions, bytes for exactly the memory-bound groups
    assert {name for name, _, unit in rows if unit == "GFLOP"} == {"convolution forward", "convolution backward"}
    assert {name for name, _, unit in rows if unit == "GB"} == set(MEMORY_BOUND) & set(shares), proc.stdout
    limit = re.search(r"^at those limits the operator calls would take (\d+\.\d+) s instead of (\d+\.\d+) s .*"
                      r"a plain step of about (-?\d+\.\d+) s instead of (\d+\.\d+) s", proc.stdout, re.M)
    assert limit and 0 < float(limit[1]) < float(limit[2]) and float(limit[3]) < float(limit[4]), proc.stdout
    assert abs(sum(shares.values()) - 100) < 0.6, proc.stdout
    # the convolutions by kind add up to the two convolution groups
    kinds = re.findall(r"^ +(\d+\.\d)% +\d+x (.+?) (forward|input gradient|weight gradient|input and weight gradients)"
                       r"(?: \((?:Winograd, )?native\))?$", proc.stdout, re.M)
    assert {k for _, k, _ in kinds} >= {"dense 3x3", "1x1"}, proc.stdout
    conv = shares["convolution forward"] + shares["convolution backward"]
    assert abs(sum(float(share) for share, _, _ in kinds) - conv) < 1.0, proc.stdout  # each printed to 0.1
    # every operation that costs time has its group: what is left (views, allocation) is small
    assert shares.get("other", 0.0) < 10, proc.stdout


@pytest.mark.slow
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


TABLE5_ROW = re.compile(r"^\| (\S+) \| (\S+) \| (\d+) \| (\d+\.\d\d) ± (\d+\.\d\d) \| (\d+\.\d\d) ± \d+\.\d\d \| "
                        r"([+-]\d+\.\d\d) \|$", re.M)


def _aggregate(capsys, study_dir) -> dict:
    proc = nasframe_in_process(capsys, "aggregate", str(study_dir), "--json")
    assert proc.returncode == 0, proc.stderr
    return {(r["optimizer"], r["dataset"]): r for r in json.loads(proc.stdout)["rows"]}


def test_the_table5_script_prints_nasframe_aggregate_of_its_study(tmp_path, nb201_csv, capsys):
    out = tmp_path / "table5"
    proc = subprocess.run([sys.executable, str(BENCH / "blackbox_table.py"), "--runs", "5", "--table", str(nb201_csv),
                           "--out", str(out)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    printed = TABLE5_ROW.findall(proc.stdout)
    assert len(printed) == 9 and {(o, d) for o, d, *_ in printed} == {
        (o, d) for o in ("re", "rs", "reinforce") for d in ("cifar10", "cifar100", "ImageNet16-120")}, proc.stdout
    rows = _aggregate(capsys, out)
    for optimizer, dataset, runs, mean, std, published, difference in printed:
        test, pub = rows[(optimizer, dataset)]["test_accuracy"], rows[(optimizer, dataset)]["published"]
        assert int(runs) == rows[(optimizer, dataset)]["runs"] == 5
        assert (mean, std, published, difference) == (
            f"{test['mean']:.2f}", f"{test['std']:.2f}", f"{pub['mean']:.2f}", f"{test['mean'] - pub['mean']:+.2f}")
    assert re.search(r"^wall \d+\.\d s, CPU \d+\.\d s", proc.stdout, re.M), proc.stdout


def test_the_table5_scripts_json_rows_are_nasframe_aggregates(tmp_path, nb201_csv, capsys):
    import blackbox_table

    out = tmp_path / "table5"
    assert blackbox_table.main(["--runs", "2", "--seed", "7", "--table", str(nb201_csv), "--out", str(out), "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["wall_seconds"] > 0 and printed["cpu_seconds"] > 0
    rows = _aggregate(capsys, out)
    assert {(r["optimizer"], r["dataset"]): r for r in printed["rows"]} == rows
    assert {r["runs"] for r in rows.values()} == {2}
    assert sorted({p.name.rsplit("=", 1)[1] for p in out.glob("optimizer=*")}) == ["7", "8"]
