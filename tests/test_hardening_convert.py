"""`usdrl convert` on crafted files: one-line CheckpointError each, sizes bounded by the bytes stored."""

import io
import pickle
import zipfile

import pytest
import torch
from reference_impl import LiteralDownstream, LiteralDSTE

from usdrl.cli import main
from usdrl.convert import load_reference_checkpoint
from usdrl.errors import CheckpointError

HIDDEN, FRAMES, JOINTS, PERSONS, CHANNELS = 32, 64, 25, 2, 3


@pytest.fixture(scope="module")
def reference_state():
    torch.manual_seed(0)
    backbone = LiteralDSTE(PERSONS * JOINTS * CHANNELS, FRAMES * CHANNELS, HIDDEN, 1, FRAMES, PERSONS * JOINTS)
    return {f"module.{k}": v for k, v in LiteralDownstream(backbone, HIDDEN, 5).state_dict().items()}


def saved_bytes(obj) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


class _Exploit:
    def __reduce__(self):
        return (print, ("this must never run",))


def edited(**changes):
    """A crafted checkpoint: the reference state with keys replaced (a value None deletes the key)."""
    def build(state):
        state = dict(state)
        for key, value in changes.items():
            key = f"module.{key}"
            if value is None:
                del state[key]
            else:
                state[key] = value(state[key]) if callable(value) else value
        return saved_bytes({"epoch": 3, "state_dict": state})
    return build


def _truncated_zip(state):
    data = saved_bytes({"state_dict": state})
    return data[: len(data) // 2]


def _zip_without_pickle(state):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("archive/version", "3\n")
    return buffer.getvalue()


# (what the file is, how to make it from the reference state, words the one-line message must hold)
CRAFTED = {
    "text file": (lambda state: b"epoch = 450\nthis is a text file\n", "not a PyTorch checkpoint"),
    "empty file": (lambda state: b"", "not a PyTorch checkpoint"),
    "random bytes": (lambda state: bytes(range(256)) * 8, "not a PyTorch checkpoint"),
    "truncated zip": (_truncated_zip, "not a PyTorch checkpoint"),
    "zip without a pickle": (_zip_without_pickle, "not a PyTorch checkpoint"),
    "pickle with code": (lambda state: pickle.dumps({"state_dict": {"backbone.spe": _Exploit()}}, protocol=2),
                         r"refused to unpickle: a reference checkpoint holds only tensors"),
    "a bare tensor": (lambda state: saved_bytes(torch.zeros(3)), "expected a state dict of named tensors"),
    "a list": (lambda state: saved_bytes([torch.zeros(3)]), "expected a state dict of named tensors"),
    "non-tensor values": (lambda state: saved_bytes({"state_dict": {"backbone.spe": [1.0]}}),
                          "expected a state dict of named tensors"),
    "integer keys": (lambda state: saved_bytes({"state_dict": {101: torch.zeros(3)}}),
                     "expected a state dict of named tensors"),
    "missing MLP": (edited(**{"backbone.t_tr.CA.mlp.fc1.weight": None}),
                    "not a USDRL reference checkpoint: no 't_tr.CA.mlp.fc1.weight'"),
    "missing mixer": (edited(**{"backbone.t_tr.DSA.wt1.weight": None}), "no 't_tr.DSA.wt1.weight'"),
    "missing layer weight": (edited(**{"backbone.t_tr1.CA.norm1.bias": None}),
                             "does not match this model .* missing: encoder.temporal.layers.1.ca.norm1.bias"),
    "1-D embedding": (edited(**{"backbone.ske_emb.t_embedding.0.weight": torch.zeros(7)}),
                      r"'ske_emb.t_embedding.0.weight' has shape \(7,\); expected 2 non-zero dimensions"),
    "empty position table": (edited(**{"backbone.spe": torch.zeros(1, 0, HIDDEN)}),
                             r"'spe' has shape \(1, 0, 32\)"),
    "1-D classifier": (edited(**{"fc.weight": torch.zeros(5)}), r"'weight' has shape \(5,\)"),
    "classifier bias alone": (edited(**{"fc.weight": None}), "no 'weight'"),
    "misshapen position table": (edited(**{"backbone.tpe.pe": torch.zeros(1, 3, HIDDEN)}),
                                 r"'tpe.pe' has shape \(1, 3, 32\)"),
    "wrong shape": (edited(**{"backbone.t_tr.CA.norm1.weight": torch.ones(HIDDEN + 1)}),
                    r"wrong shape: encoder.temporal.layers.0.ca.norm1.weight: expected \(32,\), got \(33,\)"),
    "integer weights": (edited(**{"backbone.spe": lambda t: t.long()}), "tensor 'backbone.spe' is torch.int64"),
    "NaN weights": (edited(**{"fc.bias": lambda t: torch.full_like(t, float("nan"))}),
                    "tensor 'fc.bias' holds NaN or infinite values"),
    # 402 KB on disk in the report, 120 GB once its sizes were inferred: a stride-0 view.
    "expanded tensor": (edited(**{"backbone.ske_emb.s_embedding.0.weight": torch.zeros(HIDDEN, 1).expand(-1, 10**9)}),
                        r"claims shape \(32, 1000000000\) .* but stores only 128 bytes"),
}


@pytest.mark.parametrize("kind", CRAFTED)
def test_crafted_checkpoints_give_one_line_checkpoint_errors(reference_state, tmp_path, kind, capsys):
    make, words = CRAFTED[kind]
    path = tmp_path / "crafted.pth.tar"
    path.write_bytes(make(reference_state))
    with pytest.raises(CheckpointError, match=words) as info:
        load_reference_checkpoint(path)
    message = str(info.value)
    assert message.startswith(str(path)) and "\n" not in message and "weights_only" not in message
    assert main(["convert", str(path), str(tmp_path / "out")]) == 1
    captured = capsys.readouterr()
    assert captured.err == f"usdrl convert: error: {message}\n"
    assert "must never run" not in captured.out
    assert not (tmp_path / "out").exists()


def test_the_reference_state_itself_converts(reference_state, tmp_path):
    path = tmp_path / "ok.pth.tar"
    path.write_bytes(saved_bytes({"epoch": 3, "state_dict": reference_state}))
    converted = load_reference_checkpoint(path)
    assert converted.epoch == 3 and converted.model.config.num_classes == 5
    assert converted.model.config.num_frames == FRAMES and converted.model.config.hidden_size == HIDDEN
