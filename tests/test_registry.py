"""Tests parametrised over the registries, so that a new entry is exercised with no new test:

* every name of :func:`usdrl.list_pretrained`: its typed fields agree with its ``config.json``, and
  it loads (where its files are local) into a model whose encoding is batch-independent;
* every size preset (``PRESETS``) and encoder: a small model of that preset's width, depth and heads
  encodes a permuted batch as the permutation of the batch's encoding, one clip alone as it does
  inside the batch, and distinct clips to distinct features;
* every registered layout (:func:`usdrl.list_layouts`) and encoder: a bone-modality model (bones
  follow the layout's parents) is blind to a translation of the whole skeleton, and a joint-modality
  model is not.

Plus the validation of :class:`usdrl.PretrainedWeights`' typed fields.
"""

import json
from pathlib import Path

import pytest
import torch
from huggingface_hub import try_to_load_from_cache

from usdrl import PRESETS, USDRL, ConfigError, PretrainedWeights, USDRLConfig, list_layouts, list_pretrained
from usdrl.config import ENCODERS
from usdrl.hub import CONFIG_FILE, WEIGHTS_FILE, get_pretrained

#: The typed fields of an entry that must equal the same fields of its config.json.
AGREEING_FIELDS = ("layout", "num_frames", "modality")
#: Typed fields that, where the entry and config.json both state them, must agree.
STATED_FIELDS = ("dataset", "protocol", "preprocessing")


def _clips(n: int, config: USDRLConfig, seed: int) -> torch.Tensor:
    """``n`` random clips ``(n, C, T, V, M)`` of ``config``'s input shape."""
    return torch.randn((n, *config.input_shape), generator=torch.Generator().manual_seed(seed))


def assert_batch_independent(model: USDRL, clips: torch.Tensor, tolerance: float = 1e-5) -> None:
    """The encoding of a permuted batch is the permuted encoding; a clip alone is encoded as in the batch;
    distinct clips get distinct features (so a constant output cannot pass)."""
    features = model.encode(clips, show_progress_bar=False)
    order = torch.arange(len(clips)).flip(0)
    torch.testing.assert_close(model.encode(clips[order], show_progress_bar=False), features[order],
                               rtol=tolerance, atol=tolerance)
    torch.testing.assert_close(model.encode(clips[1:2], show_progress_bar=False), features[1:2],
                               rtol=tolerance, atol=tolerance)
    distance = (features[0] - features[1]).abs().max()
    assert distance > 100 * tolerance, f"two random clips got (almost) the same features ({float(distance):.3g})"


def _local_files(weights: PretrainedWeights) -> tuple[Path, Path] | None:
    """The entry's two files where they are on this machine (its folder, or the Hub cache), else None."""
    if weights.path is not None:
        return Path(weights.path) / CONFIG_FILE, Path(weights.path) / WEIGHTS_FILE
    found = [try_to_load_from_cache(weights.repo_id, name, revision=weights.revision)
             for name in (CONFIG_FILE, WEIGHTS_FILE)]
    return tuple(Path(f) for f in found) if all(isinstance(f, str) for f in found) else None


# ---- every registered name ---------------------------------------------------------------------
@pytest.mark.parametrize("name", list_pretrained())
def test_registered_weights_agree_with_their_config_and_load(name):
    weights = get_pretrained(name)
    files = _local_files(weights)
    if files is None:
        pytest.skip(f"{name}: {weights.repo_id}@{weights.revision} is not in the local Hub cache")
    config_file, weights_file = files
    assert config_file.is_file() and weights_file.is_file()
    config = json.loads(config_file.read_text(encoding="utf-8"))
    for field in AGREEING_FIELDS:
        assert config[field] == getattr(weights, field), f"{name}: {field} of the entry and of config.json differ"
    for field in STATED_FIELDS:
        if config.get(field) is not None and getattr(weights, field) is not None:
            assert config[field] == getattr(weights, field), f"{name}: {field} of the entry and config.json differ"
    model = USDRL.from_pretrained(name)
    assert model.config == USDRLConfig.from_dict(config)
    assert_batch_independent(model, _clips(3, model.config, seed=0))


def test_every_registered_entry_is_typed():
    for name in list_pretrained():
        weights = get_pretrained(name)
        assert weights.name == name and weights.description
        assert weights.layout in list_layouts() and weights.num_frames > 0
        assert all(0 <= value <= 100 for value in (*weights.published_accuracy.values(),
                                                   *weights.measured_accuracy.values()))


# ---- every preset and encoder ------------------------------------------------------------------
@pytest.mark.parametrize("encoder", ENCODERS)
@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_every_preset_and_encoder_encodes_batch_independently(preset, encoder):
    # the preset's width, heads and depth on short one-person clips
    config = USDRLConfig.from_preset(preset, encoder=encoder, num_frames=8, num_persons=1)
    for name, value in PRESETS[preset].items():
        assert getattr(config, name) == value
    torch.manual_seed(0)
    model = USDRL(config).eval()
    assert_batch_independent(model, _clips(3, config, seed=1), tolerance=1e-4)


# ---- every registered layout -------------------------------------------------------------------
@pytest.mark.parametrize("encoder", ENCODERS)
@pytest.mark.parametrize("layout", list_layouts())
def test_every_layout_bone_model_ignores_a_translation(layout, encoder):
    sizes = dict(hidden_size=16, num_heads=2, num_layers=1, num_frames=8, num_persons=1, encoder=encoder,
                 layout=layout)
    torch.manual_seed(0)
    bone = USDRL(USDRLConfig.from_preset("tiny", modality="bone", **sizes)).eval()
    joint = USDRL(USDRLConfig.from_preset("tiny", modality="joint", **sizes)).eval()
    clips = _clips(2, bone.config, seed=2)
    shifted = clips + torch.tensor([0.7, -1.3, 2.1]).view(1, 3, 1, 1, 1)  # the whole skeleton moved
    torch.testing.assert_close(bone.encode(shifted, show_progress_bar=False),
                               bone.encode(clips, show_progress_bar=False), rtol=1e-5, atol=1e-5)
    assert not torch.allclose(joint.encode(shifted, show_progress_bar=False),
                              joint.encode(clips, show_progress_bar=False), rtol=1e-3, atol=1e-3)
    assert_batch_independent(bone, _clips(3, bone.config, seed=3))


# ---- the typed fields' validation ----------------------------------------------------------------
@pytest.mark.parametrize("changes,message", [
    ({"layout": "ntu26"}, "layout must be a registered layout"),
    ({"num_frames": 0}, "num_frames must be a positive integer, got 0"),
    ({"num_frames": True}, "num_frames must be a positive integer"),
    ({"modality": "rgb"}, "modality must be one of joint, motion, bone, multi, got 'rgb'"),
    ({"dataset": 60}, "dataset must be a string or None, got 60"),
    ({"published_accuracy": {"linear": 184.0}}, r"published_accuracy\['linear'\] must be a top-1 accuracy"),
    ({"measured_accuracy": [("linear", 80.0)]}, "measured_accuracy must be a mapping"),
    ({"path": "folder"}, "exactly one of repo_id and path"),
    ({"repo_id": None, "path": "folder"}, "revision pins a Hub commit"),
])
def test_a_wrong_typed_field_is_named(changes, message):
    fields = {"name": "t", "repo_id": "org/t", "revision": "0" * 40, **changes}
    with pytest.raises(ConfigError, match=message):
        PretrainedWeights(**fields)


def test_typed_fields_are_kept_and_shown():
    figures = {"linear": 84.2}
    weights = PretrainedWeights("dste-ntu60-xsub", repo_id="org/dste", revision="0" * 40, description="DSTE",
                                dataset="ntu60", protocol="xsub", license="CC-BY-NC-4.0", layout="coco17",
                                num_frames=32, published_accuracy=figures, measured_accuracy={"linear": 83})
    figures["linear"] = 0.0  # the entry keeps its own copy
    assert weights.published_accuracy == {"linear": 84.2} and weights.measured_accuracy == {"linear": 83.0}
    with pytest.raises(TypeError):
        weights.published_accuracy["linear"] = 1.0
    assert weights.summary() == ("DSTE (layout coco17; 32 frames; joint; dataset ntu60; protocol xsub; licence "
                                 "CC-BY-NC-4.0; published top-1 linear 84.2%; measured top-1 linear 83.0%)")
    assert json.loads(json.dumps(weights.to_dict()))["published_accuracy"] == {"linear": 84.2}
