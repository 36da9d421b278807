"""Property tests (the fast part of benchmarks/fuzz_readers.py): mutated files give a value or a usdrl error,
never a raw exception, and the text readers' memory stays within a fixed multiple of the file's size."""

import json
import os
import tempfile
import tracemalloc

import pytest
import torch
from data_helpers import mutated_bytes, ntu_text
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.torch import save_file

from usdrl import USDRLConfig
from usdrl.data import read_ntu_skeleton, read_uav_skeleton
from usdrl.data.uav import PLACEHOLDER_BODY_LINE
from usdrl.errors import CheckpointError, ConfigError, DataFormatError
from usdrl.hub import load_weights_file

#: Peak Python/numpy allocation a text reader may make: this multiple of the file's size, plus a fixed part.
BYTES_PER_INPUT_BYTE = 64
FIXED_BYTES = 1 << 20


def _uav_text():
    body = (PLACEHOLDER_BODY_LINE, [" ".join(["0.25"] * (2 + j % 11)) for j in range(17)])
    return ntu_text([[body], [], [body, body]], num_joints=17, newline="\n")


def _ntu_text():
    body = ("72057594037927936 0 1 0 1 1 0 0.1 0.2 2", [" ".join(["0.5"] * 11 + ["2"])] * 25)
    return ntu_text([[body, body], [body]], newline="\r\n")


@st.composite
def amplified(draw, text: str) -> bytes:
    """A mutated file, sometimes with a line repeated many times or a line of many numbers."""
    data = draw(mutated_bytes(text))
    lines = data.split(b"\n")
    i = draw(st.integers(0, len(lines) - 1))
    kind = draw(st.sampled_from(["none", "repeat", "long"]))
    if kind == "repeat":
        lines[i:i + 1] = [lines[i]] * draw(st.integers(2, 3000))
    elif kind == "long":
        lines.insert(i, b" ".join([b"1"] * draw(st.integers(13, 30000))))
    return b"\n".join(lines)


def _read_with_peak(reader, data: bytes, name: str) -> int:
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, name)
        with open(path, "wb") as f:
            f.write(data)
        tracemalloc.start()
        try:
            reader(path)
        except DataFormatError as err:
            assert name in str(err)
        finally:
            peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
    return peak


@pytest.mark.parametrize("reader, text, name", [
    (read_uav_skeleton, _uav_text(), "P070S01G10B00H10UC102000LC092000A031R0_09131758.txt"),
    (read_ntu_skeleton, _ntu_text(), "S001C001P001R001A001.skeleton"),
])
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=st.data())
def test_text_reader_memory_is_bounded_by_the_file_size(reader, text, name, data):
    content = data.draw(amplified(text))
    peak = _read_with_peak(reader, content, name)
    assert peak <= BYTES_PER_INPUT_BYTE * len(content) + FIXED_BYTES, (peak, len(content))


_JSON_VALUES = st.one_of(st.none(), st.booleans(), st.integers(-10, 10**12), st.floats(allow_nan=True),
                         st.text(max_size=8), st.lists(st.one_of(st.integers(), st.text(max_size=3)), max_size=3))
_FIELDS = sorted(USDRLConfig().to_dict())


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(_FIELDS + ["extra"]), _JSON_VALUES, max_size=5))
def test_any_config_dict_gives_a_config_or_a_config_error(changes):
    try:
        config = USDRLConfig.from_dict({**USDRLConfig.from_preset("tiny").to_dict(), **changes})
    except ConfigError:
        return
    assert isinstance(config.causal, bool) and isinstance(config.hidden_size, int)
    assert config.to_dict() == json.loads(config.to_json())


@pytest.fixture(scope="module")
def weights_bytes(tmp_path_factory):
    path = tmp_path_factory.mktemp("w") / "model.safetensors"
    save_file({"a": torch.randn(4, 3), "b": torch.zeros(5, dtype=torch.float16)}, path)
    return path.read_bytes()


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(edits=st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), min_size=1, max_size=4),
       cut=st.one_of(st.none(), st.integers(0, 10**6)))
def test_edited_safetensors_give_tensors_or_a_checkpoint_error(weights_bytes, tmp_path, edits, cut):
    data = bytearray(weights_bytes)
    for position, byte in edits:
        data[position % len(data)] = byte
    path = tmp_path / "model.safetensors"
    path.write_bytes(bytes(data[:cut]))
    try:
        tensors = load_weights_file(path)
    except CheckpointError as err:
        assert str(path) in str(err)
        return
    assert all(t.is_floating_point() and bool(torch.isfinite(t).all()) for t in tensors.values())
