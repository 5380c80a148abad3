"""The restricted unpickler for data files: plain data in, every other name refused."""
from __future__ import annotations

import collections
import io
import pickle

import numpy as np
import pytest

from nasframe_core.safe_pickle import RefusedPickle, allowed, restricted_load


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_plain_data_and_numpy_arrays_round_trip(protocol):
    data = {
        "list": [1, 2.5, "x", b"y", None, True],
        "tuple": (1, (2, 3)),
        "set": {1, 2},
        "ordered": collections.OrderedDict(a=1),
        "default": collections.defaultdict(list, {"k": [1]}),
        "array": np.arange(12, dtype=np.uint8).reshape(3, 4),
        "scalar": np.float64(0.25),
        "int": np.int64(7),
    }
    out = restricted_load(io.BytesIO(pickle.dumps(data, protocol=protocol)))
    assert out.keys() == data.keys()
    assert np.array_equal(out["array"], data["array"]) and out["array"].dtype == np.uint8
    assert out["scalar"] == 0.25 and out["default"]["k"] == [1] and out["set"] == {1, 2}


@pytest.mark.parametrize(
    "module, name",
    [
        ("os", "system"),
        ("posix", "system"),
        ("builtins", "eval"),
        ("builtins", "getattr"),
        ("numpy", "memmap"),  # writes files
        ("numpy", "load"),
        ("numpy.testing._private.utils", "runstring"),  # exec
        ("collections", "namedtuple"),
        ("subprocess", "Popen"),
    ],
)
def test_names_that_can_act_are_refused(module, name):
    assert not allowed(module, name)


def test_a_pickle_naming_a_function_is_refused_before_calling_it(tmp_path):
    marker = tmp_path / "code-ran"
    payload = b"cposix\nmkdir\n(V" + str(marker).encode() + b"\ntR."
    with pytest.raises(RefusedPickle, match="posix.mkdir"):
        restricted_load(io.BytesIO(payload))
    assert not marker.exists()
