"""Model folders that are damaged, edited or wrong-typed are refused, naming the file and the field;
every entry point of the model checks its input as encode does."""

import json
import logging
import struct

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from usdrl import USDRL, USDRLConfig
from usdrl.cli import main
from usdrl.errors import CheckpointError, ConfigError, InputError


def tiny_model(**overrides):
    torch.manual_seed(0)
    return USDRL(USDRLConfig.from_preset("tiny", **overrides)).eval()


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    folder = tmp_path_factory.mktemp("saved") / "tiny"
    tiny_model(num_classes=3).save_pretrained(folder)
    return folder


@pytest.fixture
def folder(saved, tmp_path):
    """A fresh copy of the saved model folder to damage."""
    out = tmp_path / "model"
    out.mkdir()
    for name in ("config.json", "model.safetensors"):
        (out / name).write_bytes((saved / name).read_bytes())
    return out


def split_safetensors(data: bytes) -> tuple[dict, bytes]:
    (size,) = struct.unpack("<Q", data[:8])
    return json.loads(data[8:8 + size]), data[8 + size:]


def join_safetensors(header, body: bytes) -> bytes:
    raw = header if isinstance(header, bytes) else json.dumps(header).encode()
    return struct.pack("<Q", len(raw)) + raw + body


def _edit_first(edit):
    def damage(data):
        header, body = split_safetensors(data)
        name = next(k for k in header if k != "__metadata__")
        edit(header[name])
        return join_safetensors(header, body)
    return damage


DAMAGE = {
    "empty file": lambda data: b"",
    "four bytes": lambda data: data[:4],
    "header only": lambda data: data[:8 + struct.unpack("<Q", data[:8])[0]],
    "truncated data": lambda data: data[:-10],
    "header length past the end": lambda data: struct.pack("<Q", len(data)) + data[8:],
    "header length 2**63": lambda data: struct.pack("<Q", 2**63) + data[8:],
    "header not JSON": lambda data: join_safetensors(b"{not json" + b" " * 20, split_safetensors(data)[1]),
    "header a JSON list": lambda data: join_safetensors(b"[1, 2, 3]", split_safetensors(data)[1]),
    "header not UTF-8": lambda data: join_safetensors(b'{"\xff\xfe": 1}', split_safetensors(data)[1]),
    "garbage": lambda data: bytes(range(256)) * 4,
    "unknown dtype": _edit_first(lambda entry: entry.update(dtype="X99")),
    "negative shape": _edit_first(lambda entry: entry.update(shape=[-1])),
    "offsets past the data": _edit_first(lambda entry: entry.update(data_offsets=[0, 10**12])),
    "offsets that disagree with the shape": _edit_first(lambda entry: entry.update(shape=[1])),
}


@pytest.mark.parametrize("kind", DAMAGE)
def test_damaged_weights_file_is_a_checkpoint_error_naming_it(folder, kind, capsys):
    weights = folder / "model.safetensors"
    weights.write_bytes(DAMAGE[kind](weights.read_bytes()))
    with pytest.raises(CheckpointError, match=f"{weights}: not a readable safetensors file"):
        USDRL.from_pretrained(folder)
    # The command line prints one line naming the file, no traceback.
    assert main(["export-onnx", str(folder), str(folder / "m.onnx")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(weights) in err and "Traceback" not in err


@pytest.mark.parametrize("dtype", [torch.int64, torch.int32, torch.bool, torch.uint8, torch.complex64])
def test_non_float_weights_are_refused(folder, dtype):
    state = load_file(folder / "model.safetensors")
    state["encoder.spatial_pos"] = state["encoder.spatial_pos"].to(dtype)
    save_file(state, folder / "model.safetensors")
    with pytest.raises(CheckpointError, match=r"tensor 'encoder.spatial_pos' is (I64|I32|BOOL|U8|C64); model "
                                              r"weights must be floating point"):
        USDRL.from_pretrained(folder)


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_weights_are_refused(folder, value):
    state = load_file(folder / "model.safetensors")
    state["head.weight"][1, 2] = value
    save_file(state, folder / "model.safetensors")
    with pytest.raises(CheckpointError, match=r"tensor 'head.weight' holds NaN or infinite values"):
        USDRL.from_pretrained(folder)


def test_float64_and_float16_weights_are_cast_with_a_note(folder, saved, caplog):
    state = load_file(folder / "model.safetensors")
    state = {k: v.double() if i % 2 else v.half() for i, (k, v) in enumerate(state.items())}
    save_file(state, folder / "model.safetensors")
    with caplog.at_level(logging.INFO, logger="usdrl"):
        model = USDRL.from_pretrained(folder)
    assert "F16/F64 weights are cast to float32" in caplog.text
    expected = {k: v.float() for k, v in state.items()}
    for name, tensor in model.state_dict().items():
        assert tensor.dtype == torch.float32 and torch.equal(tensor, expected[name])


# ---- config.json: every field of its type ------------------------------------------


def edit_config(folder, **changes):
    config = json.loads((folder / "config.json").read_text())
    config.update(changes)
    (folder / "config.json").write_text(json.dumps(config))


@pytest.mark.parametrize("field, value, words", [
    ("causal", "false", "causal must be true or false, got 'false'"),
    ("causal", 0, "causal must be true or false, got 0"),
    ("class_names", [1, 2, 3], r"class_names must be a list of strings or null, got \[1, 2, 3\]"),
    ("version", 99, "version is 99; this usdrl reads config version 1"),
    ("version", "x", "version must be an integer, got 'x'"),
    ("hidden_size", 64.0, "hidden_size must be an integer, got 64.0"),
    ("alpha", "0.5", "alpha must be a finite number, got '0.5'"),
    ("num_layers", True, "num_layers must be an integer, got True"),
    ("layout", ["ntu25"], r"layout must be a string, got \['ntu25'\]"),
    ("dataset", 5, "dataset must be a string or null, got 5"),
    ("mlp_ratio", 1e308, r"mlp_ratio must be positive with an MLP width .* got 1e\+308"),  # found by the fuzzer
])
def test_config_fields_are_checked_strictly(folder, field, value, words):
    edit_config(folder, **{field: value})
    with pytest.raises(ConfigError, match=f"config.json: {words}"):
        USDRL.from_pretrained(folder)


@pytest.mark.parametrize("text, words", [
    ('{"mlp_ratio": Infinity}', "Infinity is not a JSON number"),
    ('{"alpha": NaN}', "NaN is not a JSON number"),
    ('{"num_classes": 3, "num_classes": 4}', r"repeated keys \['num_classes'\]"),
])
def test_config_json_constants_and_repeated_keys_are_refused(folder, text, words):
    (folder / "config.json").write_text(text)
    with pytest.raises(ConfigError, match=words):
        USDRL.from_pretrained(folder)


def test_non_utf8_config_is_refused(folder):
    (folder / "config.json").write_bytes(b'{"dataset": "\xe9t\xe9"}')
    with pytest.raises(ConfigError, match=r"config.json: not UTF-8 text \(byte 13\)"):
        USDRL.from_pretrained(folder)


def test_string_causal_used_to_change_the_outputs(folder, saved):
    # On the old loader "false" was truthy: a causal model with other outputs loaded silently.
    edit_config(folder, causal="false")
    with pytest.raises(ConfigError, match="causal"):
        USDRL.from_pretrained(folder)
    edit_config(folder, causal=False)
    clip = torch.randn(1, 3, 64, 25, 2)
    assert torch.equal(USDRL.from_pretrained(folder)(clip), USDRL.from_pretrained(saved)(clip))


# ---- sizes checked against the weights before the model is built -------------------


@pytest.mark.parametrize("field, value, held", [
    ("num_frames", 100_000, "64 frames"),
    ("hidden_size", 2**20, "hidden size 64"),
    ("num_layers", 10**9, "2 layers"),
    ("in_channels", 10**6, "3 channels per joint"),
    ("num_persons", 10**5, "50 spatial tokens"),
    ("mlp_ratio", 1e6, r"an MLP of width 128 \(ratio 2\)"),
    ("num_classes", 10**7, "3 classes"),
])
def test_edited_sizes_are_refused_before_the_model_is_built(folder, monkeypatch, field, value, held):
    edit_config(folder, **{field: value}, **({"num_heads": 1} if field == "hidden_size" else {}))

    def build(*args, **kwargs):
        raise AssertionError("the model was built")

    monkeypatch.setattr("usdrl.model.Encoder", build)
    name = "num_persons x num_joints" if field == "num_persons" else field
    with pytest.raises(ConfigError, match=f"config.json: {name} is .* but .*model.safetensors holds weights for "
                                          f"{held}"):
        USDRL.from_pretrained(folder)


def test_a_promised_head_missing_from_the_file_is_refused_unless_asked_for(folder, saved, caplog):
    state = load_file(folder / "model.safetensors")
    save_file({k: v for k, v in state.items() if not k.startswith("head.")}, folder / "model.safetensors")
    with pytest.raises(ConfigError, match=r"num_classes is 3 but .* has no head weights; pass num_classes=0"):
        USDRL.from_pretrained(folder)
    clip = torch.randn(2, 3, 64, 25, 2)
    encoder_only = USDRL.from_pretrained(folder, num_classes=0)
    assert encoder_only.head is None
    assert torch.equal(encoder_only.encode(clip), USDRL.from_pretrained(saved).encode(clip))
    with caplog.at_level(logging.WARNING, logger="usdrl"):
        assert USDRL.from_pretrained(folder, num_classes=4)(clip).shape == (2, 4)
    assert "head re-initialised for 4 classes" in caplog.text


# ---- inputs: one check on every entry point -----------------------------------------


@pytest.fixture(scope="module")
def model():
    return tiny_model(num_classes=3, num_frame_classes=4)


ENTRY_POINTS = {
    "forward": lambda m, x: m(x),
    "forward_features": lambda m, x: m.forward_features(x),
    "forward_frames": lambda m, x: m.forward_frames(x),
    "encode": lambda m, x: m.encode(x),
    "dense_features": lambda m, x: m.dense_features(x),
}


@pytest.mark.parametrize("entry", ENTRY_POINTS)
@pytest.mark.parametrize("bad, words", [
    (None, "expected joint coordinates as a torch.Tensor or numpy array .*got NoneType"),
    ([[1.0]], "got list"),
    (torch.ones(2, 3, 64, 25, 2, dtype=torch.bool), "expected real-valued coordinates, got dtype torch.bool"),
    (np.ones((2, 3, 64, 25, 2), dtype=np.complex64), "expected real-valued coordinates, got dtype complex64"),
    (torch.ones(2, 64, 25, 2, 3), r"the axes look permuted"),
])
def test_every_entry_point_refuses_bad_input_alike(model, entry, bad, words):
    with pytest.raises(InputError, match=words):
        ENTRY_POINTS[entry](model, bad)


@pytest.mark.parametrize("entry", ENTRY_POINTS)
def test_every_entry_point_names_clips_with_nan(model, entry):
    x = torch.randn(3, 3, 64, 25, 2)
    x[1, 0, 5, 3, 0] = float("nan")
    with pytest.raises(InputError, match=r"NaN or infinite values in clip\(s\) \[1\]"):
        ENTRY_POINTS[entry](model, x)


@pytest.mark.parametrize("entry", ["forward", "forward_frames", "forward_features"])
@pytest.mark.parametrize("convert", [
    lambda x: x.double(), lambda x: x.numpy(), lambda x: x.numpy().astype(np.float64), lambda x: x.round().long(),
])
def test_forward_takes_what_encode_takes(model, entry, convert):
    x = torch.randn(2, 3, 64, 25, 2).round()  # integral values: the int conversion is exact
    with torch.no_grad():
        expected = ENTRY_POINTS[entry](model, x)
        got = ENTRY_POINTS[entry](model, convert(x))
    for a, b in zip(*(t if isinstance(t, tuple) else (t,) for t in (expected, got)), strict=True):
        assert torch.equal(a, b)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without CUDA")
@pytest.mark.parametrize("device", ["cuda", "cuda:1"])
def test_encode_on_cuda_without_cuda_says_so(model, device):
    with pytest.raises(ConfigError, match=f"device '{device}' asked for, but CUDA is not available here"):
        model.encode(torch.randn(1, 3, 64, 25, 2), device=device)


def test_encode_on_an_unknown_device_name(model):
    with pytest.raises(ConfigError, match="device must be auto, cpu, cuda, cuda:N or mps, got 'gpu'"):
        model.encode(torch.randn(1, 3, 64, 25, 2), device="gpu")
