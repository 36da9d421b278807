"""The embedded universal model ``usdrl-universal-small``: every registered keypoint format in, one embedding space."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from usdrl import USDRL, list_pretrained
from usdrl.data.synthetic import ACTION_NAMES, NUM_CLASSES, DetectorNoise, make_clips, render_keypoints
from usdrl.hub import DEFAULT_MODEL, UNIVERSAL_MODEL, get_pretrained
from usdrl.keypoints import get_format, list_formats
from usdrl.train.cross_format import DEFAULT_FORMATS

FOLDER = Path(__file__).resolve().parents[1] / "usdrl" / "pretrained" / UNIVERSAL_MODEL
#: Two clips each of four one-person actions that move different limbs.
ACTIONS = [ACTION_NAMES.index(name) for name in ("wave_right_hand", "kick_right", "squat", "jump")]


@pytest.fixture(scope="module")
def model():
    return USDRL.from_pretrained(UNIVERSAL_MODEL)


@pytest.fixture(scope="module")
def clips():
    return make_clips(2 * len(ACTIONS), seed=11, num_frames=64, classes=ACTIONS * 2)


@pytest.fixture(scope="module")
def sensor_embeddings(model, clips):
    """Embeddings of the clips as NTU-25 3D joints, as the simulated sensor gave them."""
    return model.encode_keypoints(render_keypoints(clips.data, "ntu25"), format="ntu25")


def centred_cosines(embeddings: torch.Tensor, sensor: torch.Tensor) -> torch.Tensor:
    """``(N, N)`` cosines of ``embeddings`` with the ``sensor`` embeddings, both less the sensor embeddings' mean
    (every embedding shares a large common part: raw cosines of any two clips are close to 1)."""
    mean = sensor.mean(0)
    return (torch.nn.functional.normalize(embeddings - mean, dim=1)
            @ torch.nn.functional.normalize(sensor - mean, dim=1).T)


def test_it_is_registered_and_embedded_and_records_its_training(model):
    assert UNIVERSAL_MODEL in list_pretrained() and DEFAULT_MODEL in list_pretrained()
    weights = get_pretrained(UNIVERSAL_MODEL)
    assert (weights.layout, weights.num_frames, weights.dataset) == ("universal", 64, "synthetic")
    card = (FOLDER / "README.md").read_text(encoding="utf-8")
    for fmt in ("ntu25", "coco17", "h36m17", "mediapipe33"):        # the registry states the card's figures
        assert f"| clip top-1, {fmt} | {weights.measured_accuracy[f'clip-head {fmt}']:.1f}% |" in card
        assert f"| detection mAP_a@0.5, {fmt} |" in card and f"| frame accuracy, {fmt} |" in card
    config = model.config
    assert (config.layout, config.in_channels, config.num_joints, config.num_frames) == ("universal", 6, 30, 64)
    assert config.class_names == list(ACTION_NAMES) and config.num_classes == NUM_CLASSES
    assert config.num_frame_classes == NUM_CLASSES + 1 and model.frame_head is not None
    assert config.dataset == "synthetic" and "synthetic" in config.description
    rendering = json.loads(config.protocol[config.protocol.index("({") + 1:config.protocol.index("})") + 1])
    assert rendering["formats"] == list(DEFAULT_FORMATS) and rendering["image_size"] == [1080, 1920]
    assert {"max_yaw_degrees", "jitter", "low_score_rate", "max_drop_rate", "max_occlusion_rate"} <= set(rendering)
    assert sum(f.stat().st_size for f in FOLDER.iterdir()) < 8_000_000
    assert "synthetic actions only" in card and "make_universal_model.py" in card


@pytest.mark.parametrize("fmt", list_formats())
def test_every_registered_format_one_person_or_several_lands_in_the_one_space(model, clips, sensor_embeddings,
                                                                               fmt):
    """A clip rendered in any format, 2D or 3D, embeds next to the same clip's NTU-25 3D embedding, closer than
    to the clips of other actions; one person alone embeds as the pair with an empty second slot."""
    keypoints = render_keypoints(clips.data, fmt)                              # (N, M, T, V, dims + 1)
    assert keypoints.shape[-1] == get_format(fmt).dims + 1
    options = {"image_size": (1080, 1920)} if get_format(fmt).convention.units == "normalized" else {}
    embeddings = model.encode_keypoints(keypoints, format=fmt, **options)
    similarity = centred_cosines(embeddings, sensor_embeddings)
    labels = torch.tensor(clips.labels)
    for i in range(len(clips.labels)):
        other_actions = similarity[i][labels != labels[i]]
        assert similarity[i, i] > other_actions.max() + 0.2, (fmt, i, similarity[i])
    alone = model.encode_keypoints(keypoints[0, :1], format=fmt, **options)   # one person (1, T, V, C)
    assert torch.allclose(alone, embeddings[0], atol=1e-4)                    # the second person was absent


def test_two_persons_are_read_from_every_format(model):
    handshakes = make_clips(2, seed=5, num_frames=64, classes=[ACTION_NAMES.index("handshake")] * 2)
    for fmt in list_formats():
        keypoints = render_keypoints(handshakes.data, fmt)
        options = {"image_size": (1080, 1920)} if get_format(fmt).convention.units == "normalized" else {}
        both = model.encode_keypoints(keypoints, format=fmt, **options)
        first = model.encode_keypoints(keypoints[:, :1], format=fmt, **options)
        assert (keypoints[:, 1] != 0).any() and not torch.allclose(both, first, atol=1e-3), fmt


@pytest.mark.parametrize("fmt", ["ntu25", "coco17"])
def test_its_clip_head_recognises_rendered_synthetic_clips(model, fmt):
    held_out = make_clips(2 * NUM_CLASSES, seed=123, num_frames=64)
    rng = np.random.default_rng(0)
    noise = None if fmt == "ntu25" else DetectorNoise()
    keypoints = render_keypoints(held_out.data, fmt, rng=rng, noise=noise)
    embeddings = model.encode_keypoints(keypoints, format=fmt)
    with torch.inference_mode():
        predicted = model.head(embeddings).argmax(1).numpy()
    assert np.mean(predicted == held_out.labels) > 0.6                      # chance: 3.4%
