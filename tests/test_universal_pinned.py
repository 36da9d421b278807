"""The universal input pinned by hand-worked clips of a few joints, by joint names, not by the library's tables.

Each clip holds only the joints named in it (every other joint all zero, that is absent), so the
centre, the scale and every output value can be worked out by hand from the rules of
``usdrl/universal.py``'s docstrings: a y-down format is turned 180 degrees about the depth axis
(x, y -> -x, -y); the centre is the mean of the present hip joints (else of all present joints);
the scale is the RMS x-y distance of the present limb joints from it (else of all present joints).
"""

import math
from types import SimpleNamespace

import numpy as np
import pytest

from usdrl.errors import ConfigError, InputError
from usdrl.keypoints import JointSource, get_format
from usdrl.keypoints.convert import ConvertedKeypoints
from usdrl.skeleton import get_layout
from usdrl.universal import (
    UNIVERSAL_JOINTS,
    _universal_layout,
    best_of,
    check_universal,
    model_input,
    to_universal,
)

X, Y, Z, SCORE, EXACT, DEPTH = range(6)
U = {name: j for j, name in enumerate(UNIVERSAL_JOINTS)}


def clip(format: str, joints: dict[str, tuple], persons: int = 1) -> np.ndarray:
    """``(M, 1, V, C)``: one frame of ``format`` with only ``joints`` (name -> channels) set."""
    fmt = get_format(format)
    width = len(next(iter(joints.values())))
    out = np.zeros((persons, 1, fmt.num_joints, width), np.float32)
    for name, values in joints.items():
        out[:, 0, fmt.index(name)] = values
    return out


def present_joints(data: np.ndarray) -> set[str]:
    return {name for name in UNIVERSAL_JOINTS if data[:, :, U[name]].any()}


# ----------------------------------------------------------------------------- the layout


def test_the_universal_layout_is_ntu25_plus_the_face_chain():
    layout = _universal_layout()
    ntu = get_layout("ntu25")
    assert layout.name == "universal"
    assert layout.joint_names[:25] == get_format("ntu25").joint_names    # the NTU joints in their order
    assert layout.joint_names[25:] == ("nose", "left_eye", "right_eye", "left_ear", "right_ear")
    # NTU head is joint 3 (0-based); nose 25 hangs from the head, the eyes from the nose, each ear from its eye
    assert layout.parents == ntu.parents + (3, 25, 25, 26, 27)
    assert layout.edges == ntu.edges + ((25, 3), (26, 25), (27, 25), (28, 26), (29, 27))
    assert layout.flip_pairs == ntu.flip_pairs + ((26, 27), (28, 29))
    assert layout.center_joint == 0                                     # spine_base
    assert layout == get_layout("universal")


# ----------------------------------------------------------------------------- best_of


def converted(format: str, values: dict[str, float], sources: dict[str, int]) -> ConvertedKeypoints:
    """A conversion into ``format`` (1 frame, 1 channel) with the named joints' values and sources."""
    fmt = get_format(format)
    keypoints = np.zeros((1, fmt.num_joints, 1), np.float32)
    mask = np.zeros(fmt.num_joints, np.int8)
    for name, value in values.items():
        keypoints[0, fmt.index(name), 0] = value
        mask[fmt.index(name)] = sources[name]
    return ConvertedKeypoints(keypoints, mask, None, format)


def test_best_of_prefers_exact_then_the_first_conversion():
    exact, stand_in = JointSource.EXACT, JointSource.STAND_IN
    # left_shoulder is joint 5 of COCO-17 and joint 4 of NTU-25: the first conversion wins a tie whatever the index
    coco = converted("coco17", {"left_shoulder": 1.0, "nose": 2.0, "left_hip": 3.0},
                     {"left_shoulder": exact, "nose": stand_in, "left_hip": exact})
    ntu = converted("ntu25", {"left_shoulder": 10.0, "left_hip": 30.0, "head": 40.0},
                    {"left_shoulder": exact, "left_hip": stand_in, "head": exact})
    names = ("head", "left_shoulder", "left_hip", "nose", "right_eye")
    out, mask = best_of([coco, ntu], names)
    assert out.dtype == np.float32 and mask.dtype == np.int8
    assert out[0, :, 0].tolist() == [40.0, 1.0, 3.0, 2.0, 0.0]
    assert mask.tolist() == [exact, exact, exact, stand_in, JointSource.MISSING]
    # the other order: the exact NTU left shoulder now comes first; an exact joint beats a stand-in either way
    out, mask = best_of([ntu, coco], names)
    assert out[0, :, 0].tolist() == [40.0, 10.0, 3.0, 2.0, 0.0]
    assert mask.tolist() == [exact, exact, exact, stand_in, JointSource.MISSING]


def test_best_of_one_conversion():
    ntu = converted("ntu25", {"head": 4.0}, {"head": JointSource.EXACT})
    out, mask = best_of([ntu], ("nose", "head"))
    assert out.shape == (1, 2, 1) and out[0, :, 0].tolist() == [0.0, 4.0]
    assert mask.tolist() == [JointSource.MISSING, JointSource.EXACT]


# ----------------------------------------------------------------------------- normalisation


def test_a_clip_without_hips_or_limbs_is_centred_and_scaled_by_all_its_joints():
    """COCO-17 pixels, only the nose (10, 40) and eyes (14, 36), (6, 36): present are the nose, the eyes and
    NTU's head (a stand-in for the nose). Turned: nose/head (-10, -40), eyes (-14, -36), (-6, -36); centre of
    the four (-10, -38); centred nose/head (0, -2), eyes (-4, 2), (4, 2); RMS distance sqrt(12)."""
    data = to_universal(clip("coco17", {"nose": (10, 40, 1), "left_eye": (14, 36, 1), "right_eye": (6, 36, 1)}),
                        "coco17")
    assert present_joints(data) == {"head", "nose", "left_eye", "right_eye"}
    s = math.sqrt(12)
    for name, (x, y) in {"nose": (0, -2), "head": (0, -2), "left_eye": (-4, 2), "right_eye": (4, 2)}.items():
        assert data[X, 0, U[name], 0] == pytest.approx(x / s, abs=1e-6)
        assert data[Y, 0, U[name], 0] == pytest.approx(y / s, abs=1e-6)


def test_a_single_limb_joint_sets_the_scale():
    """Nose (10, 0) and left shoulder (16, 8): turned (-10, 0) (nose and head) and (-16, -8); no hips, so the
    centre is the mean of the three, (-12, -8/3); the one limb joint, centred (-4, -16/3), is 20/3 away."""
    data = to_universal(clip("coco17", {"nose": (10, 0, 1), "left_shoulder": (16, 8, 1)}), "coco17")
    assert present_joints(data) == {"head", "nose", "left_shoulder"}
    assert data[X, 0, U["nose"], 0] == pytest.approx(0.3)
    assert data[Y, 0, U["nose"], 0] == pytest.approx(0.4)
    assert data[X, 0, U["left_shoulder"], 0] == pytest.approx(-0.6)
    assert data[Y, 0, U["left_shoulder"], 0] == pytest.approx(-0.8)


def test_a_single_hip_sets_the_centre():
    """Left hip (10, 20) and left shoulder (10, 0): the only hip is the centre; the shoulder, centred (0, 20),
    and the hip (0, 0) are the limb joints, RMS distance sqrt(200)."""
    data = to_universal(clip("coco17", {"left_hip": (10, 20, 1), "left_shoulder": (10, 0, 1)}), "coco17")
    assert present_joints(data) == {"left_hip", "left_shoulder"}
    assert data[X, 0, U["left_hip"], 0] == 0 and data[Y, 0, U["left_hip"], 0] == 0
    assert data[X, 0, U["left_shoulder"], 0] == 0
    assert data[Y, 0, U["left_shoulder"], 0] == pytest.approx(math.sqrt(2))


def test_3d_y_down_keeps_depth_and_scales_by_x_and_y_only():
    """H36M-17 (camera frame, y down), two persons alike, no score channel: left hip (1, 2, 3), left shoulder
    (1, -2, 6). Turned about the depth axis: (-1, -2, 3), (-1, 2, 6); centre the hip; the shoulder centred
    (0, 4, 3); the scale is its x-y distance over the two limb joints, sqrt((0 + 16) / 2)."""
    data = to_universal(clip("h36m17", {"left_hip": (1, 2, 3), "left_shoulder": (1, -2, 6)}, persons=2), "h36m17")
    assert present_joints(data) == {"left_hip", "left_shoulder"}
    s = math.sqrt(8)
    shoulder, hip = U["left_shoulder"], U["left_hip"]
    for person in range(2):
        assert data[:3, 0, shoulder, person] == pytest.approx([0, 4 / s, 3 / s])
        assert data[:3, 0, hip, person] == pytest.approx([0, 0, 0])
        # no score channel: score 1; the format's own joints; z observed
        assert data[SCORE:, 0, [shoulder, hip], person].tolist() == [[1, 1], [1, 1], [1, 1]]


def test_scores_and_absent_joints():
    base = {"left_hip": (10, 20), "right_hip": (30, 20), "left_shoulder": (10, 0), "right_shoulder": (30, 0)}
    keypoints = clip("coco17", base)
    fmt = get_format("coco17")
    scores = np.zeros(keypoints.shape[:-1], np.float32)
    for name, value in {"left_hip": 0.5, "right_hip": 0.25, "left_shoulder": np.nan, "right_shoulder": 1.0}.items():
        scores[0, 0, fmt.index(name)] = value
    data = to_universal(keypoints, "coco17", scores=scores)
    # a NaN score is no confidence: the left shoulder is absent, and so are the stand-ins built from it
    assert present_joints(data) == {"left_hip", "right_hip", "right_shoulder", "spine_base"}
    assert data[SCORE, 0, U["left_hip"], 0] == 0.5
    assert data[SCORE, 0, U["spine_base"], 0] == pytest.approx(0.375)      # a stand-in: the mean of its joints'
    assert data[EXACT, 0, U["spine_base"], 0] == 0 and data[EXACT, 0, U["left_hip"], 0] == 1
    # a joint at (0, 0) is absent even with a confidence, a joint at (1, 1) is not
    keypoints = clip("coco17", {**{k: (*v, 1) for k, v in base.items()}, "nose": (0, 0, 1), "left_knee": (1, 1, 1)})
    data = to_universal(keypoints, "coco17")
    assert "nose" not in present_joints(data) and "head" not in present_joints(data)
    assert "left_knee" in present_joints(data)


def test_keypoints_are_read_as_float32():
    """1e-50 is 0 in float32: a joint at (1e-50, 0) is an absent joint, whatever the input's dtype."""
    keypoints = clip("coco17", {"left_hip": (10, 20, 1), "right_hip": (30, 20, 1)}).astype(np.float64)
    keypoints[0, 0, get_format("coco17").index("nose")] = (1e-50, 0, 1)
    assert "nose" not in present_joints(to_universal(keypoints, "coco17"))


def test_the_image_size_scales_x_and_y_not_z():
    """MediaPipe image landmarks with their relative depth (x / width, y / height, z): with the image size
    they equal the same body in pixels with the same z."""
    rng = np.random.default_rng(3)
    pixels = rng.uniform(1, 500, (1, 4, 33, 3)).astype(np.float32)
    normalised = pixels.copy()
    normalised[..., :2] /= np.array([640, 480], np.float32)
    expected = to_universal(pixels, "mediapipe33", has_scores=False)
    assert expected[DEPTH].max() == 1
    assert np.allclose(to_universal(normalised, "mediapipe33", has_scores=False, image_size=(480, 640)), expected,
                       atol=1e-5)


def test_has_scores_and_shapes_are_checked():
    with pytest.raises(InputError, match=r"expected ntu25 keypoints \(M, T, V, C\) or \(N, M, T, V, C\), got shape "
                                         r"\(4, 25, 3\)"):
        to_universal(np.ones((4, 25, 3)), "ntu25")
    # four channels of a 3D format, none of them a score: four coordinates are not keypoints
    with pytest.raises(InputError, match="has_scores=False"):
        to_universal(np.ones((1, 4, 25, 4)), "ntu25", has_scores=False)


# ----------------------------------------------------------------------------- model_input, check_universal


def test_model_input_passes_its_options_to_to_universal():
    rng = np.random.default_rng(0)
    coords = rng.uniform(1, 500, (2, 5, 33, 2)).astype(np.float32)
    scores = rng.uniform(0, 1, (2, 5, 33)).astype(np.float32)
    scores[:, :, :10] = 0
    # 5 frames resampled to 5 are the frames themselves
    options = {"scores": scores, "image_size": (480, 640)}
    out = model_input(coords / 500, "mediapipe33", num_frames=5, num_persons=2, **options)
    assert out.dtype == np.float32
    assert np.array_equal(out, to_universal(coords / 500, "mediapipe33", **options))
    three = rng.uniform(1, 500, (1, 5, 17, 3)).astype(np.float32)
    out = model_input(three, "coco17", num_frames=5, num_persons=1, has_scores=False)
    assert np.array_equal(out, to_universal(three, "coco17", has_scores=False))
    assert out[DEPTH].max() == 1                                        # the third channel read as z


def test_model_input_pads_persons_with_zeros_and_refuses_too_many():
    keypoints = clip("coco17", {"left_hip": (10, 20, 1), "right_hip": (30, 20, 1), "nose": (20, 0, 1)})
    out = model_input(np.concatenate([keypoints] * 3, axis=1), "coco17", num_frames=3, num_persons=2)
    assert out.shape == (6, 3, 30, 2) and out.dtype == np.float32
    assert np.array_equal(out[..., 0], to_universal(np.concatenate([keypoints] * 3, axis=1), "coco17")[..., 0])
    assert out[..., 0].any() and not out[..., 1].any()
    batch = model_input(np.stack([keypoints] * 2), "coco17", num_frames=1, num_persons=3)
    assert batch.shape == (2, 6, 1, 30, 3) and not batch[..., 1:].any()
    with pytest.raises(InputError, match="got 3 persons, the model takes 2"):
        model_input(np.concatenate([keypoints] * 3), "coco17", num_frames=4, num_persons=2)


@pytest.mark.parametrize("layout, channels", [("universal", 3), ("ntu25", 6), ("ntu25", 3)])
def test_check_universal_needs_both_layout_and_channels(layout, channels):
    with pytest.raises(ConfigError, match="universal model"):
        check_universal(SimpleNamespace(layout=layout, in_channels=channels))
    check_universal(SimpleNamespace(layout="universal", in_channels=6))
