"""Reference checkpoints: key mapping, size inference and numerical equality with a literal implementation."""

import pickle

import pytest
import torch
from reference_impl import (
    LiteralDownstream,
    LiteralDSTE,
    LiteralPretraining,
    LiteralSTTR,
    flatten_tokens,
    randomise_,
)

from usdrl import USDRL, CheckpointError, ConfigError
from usdrl.cli import main
from usdrl.convert import convert_reference_checkpoint, load_reference_checkpoint
from usdrl.skeleton import NTU25, apply_modality

HIDDEN = 32


def literal_backbone(kind, joints, heads=1, frames=64, channels=3, persons=2):
    t_dim, s_dim, tokens = persons * joints * channels, frames * channels, persons * joints
    if kind == "dste":
        return LiteralDSTE(t_dim, s_dim, HIDDEN, heads, frames, tokens)
    return LiteralSTTR(t_dim, s_dim, HIDDEN, heads, tokens)


def save_checkpoint(path, module, *, data_parallel=True, epoch=450):
    state = module.state_dict()
    if data_parallel:
        state = {f"module.{k}": v for k, v in state.items()}
    torch.save({"epoch": epoch, "state_dict": state, "optimizer": {"state": {}, "param_groups": []}}, path)
    return path


def rel_err(a, b):
    return ((a - b).abs().max() / b.abs().max()).item()


CASES = [("dste", 25, None, 1), ("dste", 17, "coco17", 2), ("sttr", 25, None, 1), ("sttr", 17, "uav17", 1)]


@pytest.mark.parametrize("kind,joints,layout,heads", CASES)
def test_downstream_checkpoint_has_the_literal_reference_maths(tmp_path, kind, joints, layout, heads):
    """Every weight non-trivial, computed in float64 (the position table is float32 in both, hence 1e-7):
    any mapping or architecture slip shows."""
    torch.manual_seed(0)
    ref = randomise_(LiteralDownstream(literal_backbone(kind, joints, heads), HIDDEN, 7)).eval()
    path = save_checkpoint(tmp_path / "ref.pth.tar", ref)
    converted = load_reference_checkpoint(path, layout=layout, num_heads=heads)
    model = converted.model
    assert converted.epoch == 450 and converted.projectors == {}
    assert model.config.encoder == kind and model.config.num_joints == joints
    assert model.config.hidden_size == HIDDEN and model.config.num_classes == 7
    assert not model.training
    ref, model = ref.double(), model.double()
    x = torch.randn(3, 3, 64, joints, 2, dtype=torch.float64)
    with torch.no_grad():
        assert rel_err(model(x), ref(x)) < 1e-7
        assert rel_err(model.forward_frames(x), ref.dense(x)) < 1e-7


@pytest.mark.parametrize("kind,joints,layout,heads", CASES)
def test_float32_outputs_match_the_literal_reference(tmp_path, kind, joints, layout, heads):
    torch.manual_seed(0)
    ref = LiteralDownstream(literal_backbone(kind, joints, heads), HIDDEN, 7).eval()
    model = load_reference_checkpoint(save_checkpoint(tmp_path / "ref.pth.tar", ref), layout=layout,
                                      num_heads=heads).model
    x = torch.randn(3, 3, 64, joints, 2)
    with torch.no_grad():
        assert rel_err(model(x), ref(x)) < 1e-5
        assert rel_err(model.encode(x), ref.features(x)) < 1e-5
        assert rel_err(model.dense_features(x), ref.dense(x)) < 1e-5


@pytest.mark.parametrize("modality", ["motion", "bone"])
def test_modalities_match_reference_definitions(tmp_path, modality):
    torch.manual_seed(1)
    ref = randomise_(LiteralDownstream(literal_backbone("dste", 25), HIDDEN, 5)).eval()
    model = load_reference_checkpoint(save_checkpoint(tmp_path / "r.pth.tar", ref), modality=modality).model
    x = torch.randn(2, 3, 64, 25, 2)
    # the reference's definitions, written out: forward differences; bones over the NTU pairs
    if modality == "motion":
        expected_input = torch.zeros_like(x)
        expected_input[:, :, :-1] = x[:, :, 1:] - x[:, :, :-1]
    else:
        pairs = [(1, 2), (2, 21), (3, 21), (4, 3), (5, 21), (6, 5), (7, 6), (8, 7), (9, 21), (10, 9), (11, 10),
                 (12, 11), (13, 1), (14, 13), (15, 14), (16, 15), (17, 1), (18, 17), (19, 18), (20, 19),
                 (21, 21), (22, 23), (23, 8), (24, 25), (25, 12)]
        expected_input = torch.zeros_like(x)
        for child, parent in pairs:
            expected_input[:, :, :, child - 1] = x[:, :, :, child - 1] - x[:, :, :, parent - 1]
    assert torch.equal(apply_modality(x, modality, NTU25), expected_input)
    with torch.no_grad():
        assert rel_err(model.double()(x.double()), ref.double()(expected_input.double())) < 1e-7


def test_pretraining_checkpoint_keeps_projectors(tmp_path):
    torch.manual_seed(2)
    ref = LiteralPretraining(literal_backbone("dste", 25), HIDDEN)
    path = save_checkpoint(tmp_path / "checkpoint_0450.pth.tar", ref)
    converted = load_reference_checkpoint(path, dataset="ntu60", protocol="xsub")
    assert converted.model.head is None and converted.model.config.dataset == "ntu60"
    assert set(converted.projectors) == {
        f"{domain}.{name}" for domain in ("temporal", "spatial", "instance")
        for name in ("0.weight", "0.bias", "3.weight", "3.bias", "6.weight", "6.bias")
        + tuple(f"{i}.{p}" for i in (1, 4) for p in ("weight", "bias", "running_mean", "running_var",
                                                     "num_batches_tracked"))}
    assert converted.projectors["instance.6.weight"].shape == (4 * HIDDEN, 2 * HIDDEN)
    assert torch.equal(converted.projectors["temporal.0.weight"], ref.t_proj[0].weight)

    out = convert_reference_checkpoint(path, tmp_path / "out")
    assert {p.name for p in out.iterdir()} >= {"config.json", "model.safetensors", "projectors.safetensors"}
    reloaded = USDRL.from_pretrained(out)
    x = torch.randn(2, 3, 64, 25, 2)
    with torch.no_grad():
        expected = torch.cat([t.amax(1) for t in ref.backbone(*flatten_tokens(x))], -1)
    assert rel_err(reloaded.encode(x), expected) < 1e-5


def test_checkpoint_without_prefix_and_frame_head(tmp_path):
    ref = LiteralDownstream(literal_backbone("sttr", 25), HIDDEN, 52).eval()
    path = save_checkpoint(tmp_path / "det.pth.tar", ref, data_parallel=False)
    model = load_reference_checkpoint(path, head="frame").model
    assert model.head is None and model.frame_head.out_features == 52
    x = torch.randn(2, 3, 64, 25, 2)
    with torch.no_grad():
        assert rel_err(model.forward_frames(x), ref.fc(ref.dense(x))) < 1e-5


def test_differing_shared_attention_copies_are_rejected(tmp_path):
    ref = LiteralDownstream(literal_backbone("dste", 25), HIDDEN, 5)
    state = {k: v.clone() for k, v in ref.state_dict().items()}
    state["backbone.t_tr1.DSA.attn.out_proj.weight"] += 1.0
    path = tmp_path / "bad.pth.tar"
    torch.save({"state_dict": state}, path)
    with pytest.raises(CheckpointError, match="t_tr1.CA.attn.out_proj.weight.*differ"):
        load_reference_checkpoint(path)


def test_17_joint_checkpoint_needs_a_layout(tmp_path):
    path = save_checkpoint(tmp_path / "uav.pth.tar", LiteralDownstream(literal_backbone("dste", 17), HIDDEN, 5))
    with pytest.raises(ConfigError, match="pass layout="):
        load_reference_checkpoint(path)


def test_unexpected_keys_and_foreign_files_are_rejected(tmp_path):
    ref = LiteralDownstream(literal_backbone("dste", 25), HIDDEN, 5)
    state = dict(ref.state_dict(), **{"backbone.extra.weight": torch.zeros(2)})
    torch.save({"state_dict": state}, tmp_path / "extra.pth.tar")
    with pytest.raises(CheckpointError, match="backbone.extra.weight|extra.weight"):
        load_reference_checkpoint(tmp_path / "extra.pth.tar")

    torch.save({"state_dict": {"encoder.weight": torch.zeros(2)}}, tmp_path / "other.pth.tar")
    with pytest.raises(CheckpointError, match="no 'backbone.' keys"):
        load_reference_checkpoint(tmp_path / "other.pth.tar")


class _Exploit:
    def __reduce__(self):
        return (print, ("this must never run",))


def test_pickles_with_code_are_refused(tmp_path, capsys):
    path = tmp_path / "evil.pth.tar"
    with open(path, "wb") as f:
        pickle.dump({"state_dict": {"backbone.spe": _Exploit()}}, f, protocol=2)
    with pytest.raises(CheckpointError, match="refused to unpickle"):
        load_reference_checkpoint(path)
    assert "must never run" not in capsys.readouterr().out


def test_cli_convert(tmp_path, capsys):
    path = save_checkpoint(tmp_path / "ref.pth.tar", LiteralDownstream(literal_backbone("dste", 17), HIDDEN, 4))
    assert main(["convert", str(path), str(tmp_path / "out"), "--layout", "uav17", "--modality", "bone",
                 "--dataset", "uav", "--protocol", "csv1"]) == 0
    assert "layout uav17" in capsys.readouterr().out
    model = USDRL.from_pretrained(tmp_path / "out")
    assert (model.config.layout, model.config.modality, model.config.protocol) == ("uav17", "bone", "csv1")

    assert main(["convert", str(path), str(tmp_path / "out2")]) == 1
    assert "pass layout=" in capsys.readouterr().err
