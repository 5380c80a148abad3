"""Checkpoints: read as tensors and plain values only, every checkpointable saved, bad files named."""
from __future__ import annotations

import os
import pickle

import pytest
import torch

from nasframe_core.checkpoint import FORMAT, VERSION, load_checkpoint, restore, save_atomic, state_of
from nasframe_core.cli import main
from nasframe_core.errors import NasframeError

TINY = ["--dataset", "synthetic", "--set", "dataset.n_train=32", "--set", "dataset.n_test=8",
        "--set", "dataset.image_size=8", "--set", "search_space.C=4", "--set", "search_space.N=1",
        "--batch-size", "8", "--steps-per-epoch", "1", "--device", "cpu", "--quiet"]


class _Planted:
    """Unpickling this makes a directory: what a planted checkpoint could do with any call."""

    def __init__(self, target):
        self.target = str(target)

    def __reduce__(self):
        return (os.mkdir, (self.target,))


def _error_line(capsys, argv) -> str:
    assert main(argv) != 0
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def test_a_real_checkpoint_holds_only_tensors_and_plain_values(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["run", *TINY, "--epochs", "1", "--out", str(out)]) == 0
    data = load_checkpoint(out / "checkpoint.pt")  # weights_only=True inside
    assert data["format"] == FORMAT and data["epoch"] == 1
    # every method's seeded generator too (a uint8 tensor), whether or not it draws
    assert set(data["state"]) == {"model", "arch_weights", "op_optimizer", "arch_optimizer", "random_streams"}
    assert main(["run", "--resume", str(out), "--epochs", "2"]) == 0
    assert load_checkpoint(out / "checkpoint.pt")["epoch"] == 2


def test_a_planted_pickle_in_a_checkpoint_is_refused_and_never_runs(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["run", *TINY, "--epochs", "1", "--out", str(out)]) == 0
    ckpt = out / "checkpoint.pt"
    data = torch.load(ckpt, weights_only=True)
    marker = tmp_path / "code-ran"
    data["history"].append(_Planted(marker))
    torch.save(data, ckpt)
    capsys.readouterr()
    line = _error_line(capsys, ["run", "--resume", str(out), "--epochs", "2"])
    assert f"refusing to load checkpoint {ckpt}: it refers to " in line and "mkdir" in line
    assert not marker.exists()


@pytest.mark.parametrize(
    "content, needle",
    [
        (b"", "truncated or corrupt"),
        (b"not a checkpoint at all", "corrupt"),
        (pickle.dumps({"format": FORMAT, "version": VERSION, "epoch": 1}, protocol=4), "corrupt"),
    ],
)
def test_a_corrupt_or_foreign_file_is_one_line_naming_it(tmp_path, content, needle):
    path = tmp_path / "checkpoint.pt"
    path.write_bytes(content)
    with pytest.raises(NasframeError) as info:
        load_checkpoint(path)
    assert str(path) in str(info.value) and needle in str(info.value) and "\n" not in str(info.value)


def test_a_torch_file_of_another_program_is_not_a_nasframe_checkpoint(tmp_path):
    path = tmp_path / "weights.pt"
    save_atomic({"conv.weight": torch.zeros(2)}, path)
    with pytest.raises(NasframeError, match=f"{path} is not a nasframe checkpoint"):
        load_checkpoint(path)


def test_a_checkpointable_without_state_dict_is_an_error():
    objects = {"model": torch.nn.Linear(2, 2), "alphas": [torch.zeros(3)]}
    with pytest.raises(NasframeError) as info:
        state_of(objects)
    assert "checkpointable 'alphas' is a list without state_dict and load_state_dict" in str(info.value)
    with pytest.raises(NasframeError, match="'alphas'"):
        restore(objects, {"model": objects["model"].state_dict(), "alphas": []}, "ckpt.pt")
    good = {"model": torch.nn.Linear(2, 2)}
    assert set(state_of(good)) == {"model"}
