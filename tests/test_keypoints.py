"""Keypoint formats and conversion: tables checked against the formats' documentation and a hand-made body."""

import itertools
import re

import numpy as np
import pytest

from usdrl.errors import ConfigError, InputError
from usdrl.keypoints import JointSource, conversion_matrix, convert_keypoints, get_format, list_formats
from usdrl.keypoints import convert as convert_module
from usdrl.skeleton import get_layout


@pytest.fixture(autouse=True)
def fresh_conversion_cache():
    """Each test computes its conversions: the process-wide cache would otherwise hand later
    tests tables built by earlier ones (and hide the table-building code from them)."""
    saved = dict(convert_module._CACHE)
    convert_module._CACHE.clear()
    yield
    convert_module._CACHE.clear()
    convert_module._CACHE.update(saved)


def test_stand_in_rules_are_mirrored_left_to_right():
    rules = {"left_hand": (("left_wrist", "left_index"), ("pelvis",)), "head": (("nose",),)}
    assert convert_module._mirrored(rules) == {
        "left_hand": (("left_wrist", "left_index"), ("pelvis",)),
        "right_hand": (("right_wrist", "right_index"), ("pelvis",)),
        "head": (("nose",),),
    }
    assert convert_module.STAND_INS["right_foot"] == (("right_big_toe", "right_small_toe"), ("right_foot_index",))

FORMATS = list_formats()

# A standing person, metres, y up, facing -z; the left side at +x. Hand-made, one entry per shared name.
_MID = {
    "head_top": 1.75, "head": 1.65, "nose": 1.62, "neck_base": 1.55, "neck": 1.50, "spine_shoulder": 1.45,
    "thorax": 1.45, "spine3": 1.35, "spine2": 1.20, "spine_mid": 1.15, "spine": 1.15, "spine1": 1.05,
    "spine_base": 0.95, "pelvis": 0.95, "mid_hip": 0.95,
}
_SIDE = {  # (x, y, z) of the left joint; the right one is (-x, y, z)
    "eye": (0.03, 1.66, -0.08), "eye_inner": (0.02, 1.66, -0.09), "eye_outer": (0.05, 1.66, -0.07),
    "ear": (0.08, 1.64, 0.0), "shoulder": (0.2, 1.45, 0.0), "collar": (0.08, 1.43, 0.0), "elbow": (0.25, 1.15, 0.0),
    "wrist": (0.27, 0.9, 0.0), "hand": (0.28, 0.83, 0.0), "hand_tip": (0.29, 0.72, 0.0),
    "thumb": (0.25, 0.8, -0.04), "pinky": (0.3, 0.8, 0.0), "index": (0.28, 0.78, -0.02),
    "hip": (0.1, 0.95, 0.0), "knee": (0.11, 0.5, 0.0), "ankle": (0.12, 0.08, 0.0), "foot": (0.12, 0.03, -0.1),
    "heel": (0.12, 0.02, 0.05), "big_toe": (0.1, 0.0, -0.18), "small_toe": (0.16, 0.0, -0.15),
    "foot_index": (0.12, 0.0, -0.18),
}
BODY = {name: np.array([0.0, y, 0.0]) for name, y in _MID.items()}
BODY["mouth_left"], BODY["mouth_right"] = np.array([0.03, 1.57, -0.08]), np.array([-0.03, 1.57, -0.08])
for _name, (_x, _y, _z) in _SIDE.items():
    BODY[f"left_{_name}"], BODY[f"right_{_name}"] = np.array([_x, _y, _z]), np.array([-_x, _y, _z])


def pose(name: str) -> np.ndarray:
    """The hand-made body ``(V, 3)`` in the format's convention (y down formats: y negated)."""
    fmt = get_format(name)
    points = np.stack([BODY[j] for j in fmt.joint_names])
    if fmt.convention.y_up is False:
        points = points * [1, -1, 1]
    return points[:, : fmt.dims]


# Left/right pairs written from each format's documentation (mmpose `swap` fields, the OpenPose and
# MediaPipe landmark lists, the Kinect SDK joint enumerations, SMPL's joint list), 0-based.
DOC_FLIP_PAIRS = {
    "coco17": [(1, 2), (3, 4), (5, 6), (7, 8), (9, 10), (11, 12), (13, 14), (15, 16)],
    "coco_wholebody23": [(1, 2), (3, 4), (5, 6), (7, 8), (9, 10), (11, 12), (13, 14), (15, 16), (17, 20), (18, 21),
                         (19, 22)],
    "halpe26": [(1, 2), (3, 4), (5, 6), (7, 8), (9, 10), (11, 12), (13, 14), (15, 16), (20, 21), (22, 23), (24, 25)],
    "uav17": [(1, 2), (3, 4), (5, 6), (7, 8), (9, 10), (11, 12), (13, 14), (15, 16)],
    "h36m17": [(4, 1), (5, 2), (6, 3), (11, 14), (12, 15), (13, 16)],
    "openpose25": [(5, 2), (6, 3), (7, 4), (12, 9), (13, 10), (14, 11), (16, 15), (18, 17), (19, 22), (20, 23),
                   (21, 24)],
    "openpose18": [(5, 2), (6, 3), (7, 4), (11, 8), (12, 9), (13, 10), (15, 14), (17, 16)],
    "mediapipe33": [(1, 4), (2, 5), (3, 6), (7, 8)] + [(k, k + 1) for k in range(11, 33, 2)],
    "ntu25": [(4, 8), (5, 9), (6, 10), (7, 11), (12, 16), (13, 17), (14, 18), (15, 19), (21, 23), (22, 24)],
    "kinect20": [(4, 8), (5, 9), (6, 10), (7, 11), (12, 16), (13, 17), (14, 18), (15, 19)],
    "utd_mhad20": [(4, 8), (5, 9), (6, 10), (7, 11), (12, 16), (13, 17), (14, 18), (15, 19)],
    "smpl24": [(1, 2), (4, 5), (7, 8), (10, 11), (13, 14), (16, 17), (18, 19), (20, 21), (22, 23)],
}
DOC_FLIP_PAIRS["mediapipe33_world"] = DOC_FLIP_PAIRS["mediapipe33"]
# Joint counts and a few named indices from the formats' documentation.
DOC_JOINTS = {
    "coco17": (17, {"nose": 0, "left_wrist": 9, "right_ankle": 16}),
    "coco_wholebody23": (23, {"left_big_toe": 17, "right_heel": 22}),
    "halpe26": (26, {"head": 17, "neck": 18, "mid_hip": 19, "left_big_toe": 20, "right_heel": 25}),
    "h36m17": (17, {"pelvis": 0, "right_hip": 1, "left_ankle": 6, "thorax": 8, "head_top": 10, "right_wrist": 16}),
    "openpose25": (25, {"neck": 1, "right_wrist": 4, "mid_hip": 8, "left_ankle": 14, "right_ear": 17,
                        "left_big_toe": 19, "right_heel": 24}),
    "openpose18": (18, {"neck": 1, "right_hip": 8, "left_ankle": 13, "right_eye": 14, "left_ear": 17}),
    "mediapipe33": (33, {"nose": 0, "mouth_right": 10, "left_shoulder": 11, "right_thumb": 22, "left_hip": 23,
                         "right_foot_index": 32}),
    "ntu25": (25, {"spine_base": 0, "head": 3, "left_hand": 7, "spine_shoulder": 20, "right_thumb": 24}),
    "kinect20": (20, {"spine_base": 0, "spine_shoulder": 2, "head": 3, "right_hand": 11, "right_foot": 19}),
    "utd_mhad20": (20, {"head": 0, "spine_shoulder": 1, "spine_mid": 2, "spine_base": 3, "left_shoulder": 4}),
    "uav17": (17, {"nose": 0, "left_hip": 11}),
    "smpl24": (24, {"pelvis": 0, "spine3": 9, "neck": 12, "head": 15, "left_wrist": 20, "right_hand": 23}),
    "mediapipe33_world": (33, {"nose": 0, "right_foot_index": 32}),
}


def test_every_format_is_documented_here():
    assert set(FORMATS) == set(DOC_FLIP_PAIRS) == set(DOC_JOINTS)


@pytest.mark.parametrize("name", FORMATS)
def test_format_table(name):
    fmt = get_format(name)
    count, indices = DOC_JOINTS[name]
    assert fmt.num_joints == count and len(set(fmt.joint_names)) == count
    assert {j: fmt.index(j) for j in indices} == indices
    assert sorted(fmt.flip_pairs) == sorted(DOC_FLIP_PAIRS[name])
    points = pose(name)
    # left/right pairs mirror each other in the hand-made body: x negated, the rest equal
    for left, right in fmt.flip_pairs:
        assert points[left][0] > 0
        np.testing.assert_allclose(points[left][1:], points[right][1:])
        np.testing.assert_allclose(points[left][0], -points[right][0])
    # bones form one tree over all joints, and connect neighbours (none longer than neck to hip)
    parents = fmt.parents
    assert sum(p == v for v, p in enumerate(parents)) == 1
    for v in range(count):
        seen, u = set(), v
        while parents[u] != u:
            assert u not in seen
            seen.add(u)
            u = parents[u]
    lengths = [np.linalg.norm(points[v] - points[p]) for v, p in enumerate(parents) if v != p]
    assert max(lengths) < 0.6
    assert all(np.linalg.norm(points[a] - points[b]) < 0.6 for a, b in fmt.edges)


@pytest.mark.parametrize("name", [n for n in FORMATS if get_format(n).convention.y_up is not None])
def test_standing_pose_has_head_above_feet(name):
    fmt = get_format(name)
    points = pose(name)
    top = [fmt.index(j) for j in ("head", "head_top", "nose") if j in fmt.joint_names][0]
    feet = [fmt.index(j) for j in fmt.joint_names if "ankle" in j]
    up = 1 if fmt.convention.y_up else -1
    assert all(up * (points[top, 1] - points[f, 1]) > 1.0 for f in feet)


def _as_format_names(layout_names):
    """The existing layouts' names (``hand_left``) in the shared vocabulary (``left_hand``)."""
    out = []
    for name in layout_names:
        for side in ("left", "right"):
            if name.endswith("_" + side):
                name = f"{side}_{name[: -len(side) - 1]}"
        out.append(name)
    return out


@pytest.mark.parametrize("name", ["ntu25", "coco17", "uav17"])
def test_existing_layouts_agree_with_the_registry(name):
    layout, fmt = get_layout(name), get_format(name)
    assert _as_format_names(layout.joint_names) == list(fmt.joint_names)
    assert layout.parents == fmt.parents
    assert sorted(tuple(sorted(p)) for p in layout.flip_pairs) == sorted(tuple(sorted(p)) for p in fmt.flip_pairs)
    assert layout.center_joint == fmt.center_joint


@pytest.mark.parametrize("name", FORMATS)
def test_every_format_has_a_layout(name):
    layout, fmt = get_layout(name), get_format(name)
    assert layout.num_joints == fmt.num_joints
    assert sorted(tuple(sorted(p)) for p in layout.flip_pairs) == sorted(tuple(sorted(p)) for p in fmt.flip_pairs)


# -- conversion ---------------------------------------------------------------------------------


def _named(name, points):
    return dict(zip(get_format(name).joint_names, points, strict=True))


@pytest.mark.parametrize(("src", "dst"), list(itertools.product(FORMATS, FORMATS)))
def test_convert_every_pair(src, dst):
    rng = np.random.default_rng(0)
    s, d = get_format(src), get_format(dst)
    x = rng.normal(size=(2, 3, s.num_joints, 3)).astype(np.float32)   # (M, T, V, C), C = 3 read as xyz
    scores = rng.uniform(0.1, 1.0, size=x.shape[:-1]).astype(np.float32)
    out = convert_keypoints(x, src=src, dst=dst, scores=scores, has_scores=False, match_convention=False)
    assert out.keypoints.shape == (2, 3, d.num_joints, 3) and out.scores.shape == (2, 3, d.num_joints)
    for j, name in enumerate(d.joint_names):
        if name in s.joint_names:
            assert out.mask[j] == JointSource.EXACT
            np.testing.assert_array_equal(out.keypoints[..., j, :], x[..., s.index(name), :])
            np.testing.assert_array_equal(out.scores[..., j], scores[..., s.index(name)])
        elif out.mask[j] == JointSource.MISSING:
            assert not out.keypoints[..., j, :].any() and not out.scores[..., j].any()
        else:
            assert out.mask[j] == JointSource.STAND_IN and (out.scores[..., j] > 0).all()
    # round trip: every joint exact both ways comes back unchanged
    back = convert_keypoints(out.keypoints, src=dst, dst=src, has_scores=False, match_convention=False)
    for j, name in enumerate(s.joint_names):
        if name in d.joint_names:
            np.testing.assert_array_equal(back.keypoints[..., j, :], x[..., j, :])


def test_mediapipe_to_ntu_stand_ins_by_hand():
    points = pose("mediapipe33_world")
    named = _named("mediapipe33_world", points)
    out = convert_keypoints(points, src="mediapipe33_world", dst="ntu25", match_convention=False)
    got = _named("ntu25", out.keypoints)
    hips = (named["left_hip"] + named["right_hip"]) / 2
    shoulders = (named["left_shoulder"] + named["right_shoulder"]) / 2
    np.testing.assert_allclose(got["spine_base"], hips, atol=1e-6)
    np.testing.assert_allclose(got["spine_shoulder"], shoulders, atol=1e-6)
    np.testing.assert_allclose(got["spine_mid"], (hips + shoulders) / 2, atol=1e-6)
    np.testing.assert_allclose(got["head"], named["nose"], atol=1e-6)
    np.testing.assert_allclose(got["left_hand"], (named["left_pinky"] + named["left_index"]) / 2, atol=1e-6)
    np.testing.assert_allclose(got["right_hand_tip"], named["right_index"], atol=1e-6)
    np.testing.assert_allclose(got["left_foot"], named["left_foot_index"], atol=1e-6)
    assert set(out.exact) == {"left_shoulder", "left_elbow", "left_wrist", "right_shoulder", "right_elbow",
                              "right_wrist", "left_hip", "left_knee", "left_ankle", "right_hip", "right_knee",
                              "right_ankle", "left_thumb", "right_thumb"}
    assert out.missing == []


def test_coco_to_ntu_marks_missing_and_scores_travel():
    x = np.zeros((17, 3), np.float32)
    x[:, 2] = np.linspace(0.2, 1.0, 17)      # score channel
    x[0, :2] = [10.0, 20.0]                  # nose
    out = convert_keypoints(x, src="coco17", dst="ntu25")
    assert set(out.missing) == {"left_hand", "right_hand", "left_hand_tip", "right_hand_tip", "left_thumb",
                                "right_thumb", "left_foot", "right_foot"}
    got = _named("ntu25", out.keypoints)
    np.testing.assert_allclose(got["head"], [10.0, 20.0, 0.2])        # nose stands in, with its score
    assert got["left_hand"].tolist() == [0, 0, 0]                     # missing: zero, score 0
    # spine_mid from both hips and both shoulders: the lowest of their four scores
    assert got["spine_mid"][2] == pytest.approx(min(x[[5, 6, 11, 12], 2]))
    with pytest.raises(ConfigError, match="left_hand"):
        convert_keypoints(x, src="coco17", dst="ntu25", missing="error")
    assert np.isnan(_named("ntu25", convert_keypoints(x, src="coco17", dst="ntu25", missing="nan").keypoints)[
        "left_thumb"][:2]).all()


def test_absent_source_joint_makes_its_dependents_absent():
    x = pose("coco17").astype(np.float32)
    x[11] = np.nan                            # left hip not detected
    out = _named("ntu25", convert_keypoints(x, src="coco17", dst="ntu25").keypoints)
    assert not out["left_hip"].any() and not out["spine_base"].any() and not out["spine_mid"].any()
    assert out["right_hip"].any() and out["spine_shoulder"].any()


def test_nose_from_a_head_joint():
    out = convert_keypoints(pose("ntu25"), src="ntu25", dst="coco17")
    assert out.mask[0] == JointSource.STAND_IN
    np.testing.assert_allclose(out.keypoints[0], BODY["head"])
    assert set(out.missing) == {"left_eye", "right_eye", "left_ear", "right_ear"}


def test_y_down_camera_to_y_up_kinect_is_a_rotation():
    out = _named("ntu25", convert_keypoints(pose("h36m17"), src="h36m17", dst="ntu25").keypoints)
    assert out["head"][1] - out["left_ankle"][1] > 1.0                  # head above the feet again
    # (x, y, z) -> (-x, y * -1 * -1 = y, z): a half turn about z, so left and right are not swapped
    np.testing.assert_allclose(out["left_shoulder"], BODY["left_shoulder"] * [-1, 1, 1])
    np.testing.assert_allclose(out["right_knee"], BODY["right_knee"] * [-1, 1, 1])
    back = _named("h36m17", convert_keypoints(_as_array("ntu25", out), src="ntu25", dst="h36m17").keypoints)
    for name, point in _named("h36m17", pose("h36m17")).items():
        if name in get_format("ntu25").joint_names:
            np.testing.assert_allclose(back[name], point, atol=1e-6)


def _as_array(name, named):
    return np.stack([named[j] for j in get_format(name).joint_names])


def test_bad_input_is_named():
    with pytest.raises(InputError, match=r"\(\.\.\., 17, C\) of format 'coco17'"):
        convert_keypoints(np.zeros((25, 3)), src="coco17", dst="ntu25")
    with pytest.raises(ConfigError, match="unknown keypoint format 'coco18'"):
        convert_keypoints(np.zeros((17, 3)), src="coco18", dst="ntu25")


# Parent tables as the formats' sources publish them (-1: the root): SMPL's kintree_table and
# VideoPose3D's Human3.6M skeleton.
DOC_PARENTS = {
    "smpl24": [-1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19, 20, 21],
    "h36m17": [-1, 0, 1, 2, 0, 4, 5, 0, 7, 8, 9, 8, 11, 12, 8, 14, 15],
}


@pytest.mark.parametrize("name", sorted(DOC_PARENTS))
def test_bone_trees_match_the_published_ones(name):
    assert [v if p == -1 else p for v, p in enumerate(DOC_PARENTS[name])] == list(get_format(name).parents)


# ---------------------------------------------------------------- pinned: types, messages, conventions


def test_conversion_tables_and_outputs_are_float32_and_int8():
    weights, sources = conversion_matrix("coco17", "ntu25")
    assert weights.dtype == np.float32 and sources.dtype == np.int8
    x = np.random.default_rng(0).uniform(1, 2, size=(2, 17, 2))  # float64 in
    out = convert_keypoints(x, src="coco17", dst="ntu25", scores=np.full((2, 17), 0.5))
    assert out.keypoints.dtype == np.float32 and out.scores.dtype == np.float32
    np.testing.assert_array_equal(out.keypoints, np.matmul(weights, x.astype(np.float32)))


def test_a_non_finite_joint_spoils_only_its_dependents():
    """Nose (0) is NaN: NTU's head (a stand-in from the nose) is absent, every other joint is the
    weighted mean of finite joints; its score is 0, the others keep the lowest of their contributors'."""
    rng = np.random.default_rng(1)
    x = rng.uniform(1, 2, size=(17, 2)).astype(np.float32)
    x[0] = np.nan
    scores = rng.uniform(0.5, 1, size=17).astype(np.float32)
    out = convert_keypoints(x, src="coco17", dst="ntu25", scores=scores)
    weights, _ = conversion_matrix("coco17", "ntu25")
    head = get_format("ntu25").index("head")
    expected = weights @ np.where(np.isfinite(x), x, 0)
    expected[head] = 0
    np.testing.assert_allclose(out.keypoints, expected, rtol=1e-6)
    spine_mid = get_format("ntu25").index("spine_mid")
    assert out.scores[head] == 0 and out.scores[spine_mid] == pytest.approx(scores[[5, 6, 11, 12]].min())


def test_a_third_channel_is_a_coordinate_when_has_scores_is_false():
    """coco17 is 2D: with has_scores=False a third channel is averaged like x and y (spine_mid: the
    mean of both hips and shoulders), not reduced to the lowest as a score is."""
    x = np.zeros((17, 3), np.float32)
    x[[5, 6, 11, 12]] = [[1, 1, 1], [1, 1, 3], [1, 1, 5], [1, 1, 7]]
    got = _named("ntu25", convert_keypoints(x, src="coco17", dst="ntu25", has_scores=False).keypoints)
    assert got["spine_mid"][2] == pytest.approx(4.0)
    got = _named("ntu25", convert_keypoints(x, src="coco17", dst="ntu25").keypoints)  # default: a score
    assert got["spine_mid"][2] == pytest.approx(1.0)


def test_the_y_flip_keeps_depth_and_the_score_channel():
    """h36m17 (y down) -> ntu25 (y up): x and y change sign, z and the score stay."""
    pose3 = pose("h36m17") + np.float32([0, 0, 2.5])  # in front of the camera: depth 2.5 more
    x = np.concatenate([pose3, np.full((*pose3.shape[:-1], 1), 0.75, np.float32)], axis=-1)
    out = _named("ntu25", convert_keypoints(x, src="h36m17", dst="ntu25").keypoints)
    expected = BODY["left_shoulder"] * [-1, 1, 1] + [0, 0, 2.5]
    np.testing.assert_allclose(out["left_shoulder"], [*expected, 0.75], rtol=1e-6)
    plain = _named("ntu25", convert_keypoints(pose3, src="h36m17", dst="ntu25").keypoints)
    np.testing.assert_allclose(plain["left_shoulder"], expected, rtol=1e-6)


def test_conversion_messages():
    x = np.zeros((4, 17, 2), np.float32)
    with pytest.raises(ConfigError, match=r"^unknown missing fill 'mean'; expected one of zero, nan, error$"):
        convert_keypoints(x, src="coco17", dst="ntu25", missing="mean")
    with pytest.raises(InputError, match=r"^expected at least x and y channels, got 2 channel\(s\) with "
                                         r"has_scores=True$"):
        convert_keypoints(x, src="coco17", dst="ntu25", has_scores=True)
    with pytest.raises(InputError, match=r"^scores must have shape \(4, 17\), got \(4, 5\)$"):
        convert_keypoints(x, src="coco17", dst="ntu25", scores=np.zeros((4, 5)))


@pytest.mark.parametrize("side", ["src", "dst"])
def test_a_re_registered_format_is_not_served_from_the_cache(side):
    """Conversions are cached per name pair; registering another format under the name
    (overwrite=True) must give the new format's table."""
    import dataclasses

    from usdrl.keypoints.formats import FORMATS, register_format

    name = f"pinned-{side}"
    register_format(dataclasses.replace(get_format("coco17"), name=name))
    try:
        pair = (name, "ntu25") if side == "src" else ("ntu25", name)
        first = conversion_matrix(*pair)[0]
        np.testing.assert_array_equal(first, conversion_matrix(*[("coco17" if n == name else n) for n in pair])[0])
        register_format(dataclasses.replace(get_format("h36m17"), name=name), overwrite=True)
        second = conversion_matrix(*pair)[0]
        np.testing.assert_array_equal(second, conversion_matrix(*[("h36m17" if n == name else n) for n in pair])[0])
        assert not np.array_equal(first, second)
    finally:
        del FORMATS[name]


def test_side_helpers_expand_left_then_right():
    """The tables are built with these at import, before any test runs: pinned directly."""
    from usdrl.keypoints import formats

    assert formats._sides("hip", "knee") == ("left_hip", "right_hip", "left_knee", "right_knee")
    assert formats._chain(("eye", "@nose"), ("ear", "eye"), ("@neck", "@pelvis")) == (
        ("left_eye", "nose"), ("right_eye", "nose"), ("left_ear", "left_eye"), ("right_ear", "right_eye"),
        ("neck", "pelvis"), ("neck", "pelvis"))


def test_format_registry_messages():
    import dataclasses

    from usdrl.keypoints.formats import register_format

    coco = get_format("coco17")
    with pytest.raises(ConfigError, match=r"^a keypoint format named 'coco17' is already registered "
                                          r"\(pass overwrite=True\)$"):
        register_format(coco)
    with pytest.raises(ConfigError, match=r"^unknown keypoint format 'coco99'; known formats: "
                                          + re.escape(", ".join(sorted(list_formats()))) + "$"):
        get_format("coco99")
    assert list_formats() == sorted(list_formats()) and "coco17" in list_formats()
    with pytest.raises(ConfigError, match=r"^format 'coco17' has no joint 'tail'$"):
        coco.index("tail")
    with pytest.raises(ConfigError, match=r"^format 'x': joint names repeat$"):
        dataclasses.replace(coco, name="x", joint_names=(*coco.joint_names[:-1], "nose"))
    with pytest.raises(ConfigError, match=r"^format 'x': \['tail'\] are not joints of the format$"):
        dataclasses.replace(coco, name="x", center="tail")
    with pytest.raises(ConfigError, match=r"^format 'x': every joint but the root needs exactly one parent$"):
        dataclasses.replace(coco, name="x", bones=coco.bones[1:])


@pytest.fixture
def custom_format():
    """Register a keypoint format for one test and remove it afterwards."""
    from usdrl.keypoints.formats import FORMATS, KeypointFormat, register_format

    names = []

    def register(name: str, joints: tuple[str, ...]):
        fmt = KeypointFormat(name=name, joint_names=joints, root=joints[0],
                             bones=tuple((joint, joints[0]) for joint in joints[1:]),
                             convention=get_format("h36m17").convention, source="test")
        register_format(fmt)
        names.append(name)
        return fmt

    yield register
    for name in names:
        del FORMATS[name]
        convert_module._CACHE.clear()


def test_a_single_joint_format_is_a_conversion_target(custom_format):
    custom_format("test-nose", ("nose",))
    weights, sources = conversion_matrix("coco17", "test-nose")
    assert weights.shape == (1, 17) and weights[0, 0] == 1.0 and weights.sum() == 1.0
    assert sources.tolist() == [JointSource.EXACT]
    x = np.random.default_rng(0).uniform(1, 2, (4, 17, 3)).astype(np.float32)
    np.testing.assert_array_equal(convert_keypoints(x, src="coco17", dst="test-nose").keypoints, x[:, :1])


def test_a_stand_in_reached_through_rules_that_loop_back(custom_format):
    """A format with only ``neck_base``: NTU's spine shoulder comes from it by thorax -> neck -> neck_base, each
    rule skipping the recipes that would lead back to a joint being resolved (spine shoulder's, thorax's)."""
    custom_format("test-neck-base", ("neck_base", "left_hip"))
    weights, sources = conversion_matrix("test-neck-base", "ntu25")
    spine_shoulder = get_format("ntu25").index("spine_shoulder")
    assert weights[spine_shoulder].tolist() == [1.0, 0.0] and sources[spine_shoulder] == JointSource.STAND_IN


def test_a_source_joint_reached_by_two_parts_of_a_recipe_adds_up(custom_format, monkeypatch):
    """A recipe whose parts share a source joint: ``spine_mid`` as the mean of the left shoulder and the neck,
    the neck itself the mean of both shoulders, gives the left shoulder 1/2 + 1/4 and the right 1/4."""
    custom_format("test-shoulders", ("left_shoulder", "right_shoulder"))
    monkeypatch.setitem(convert_module.STAND_INS, "spine_mid", (("left_shoulder", "neck"),))
    convert_module._CACHE.clear()
    weights, _ = conversion_matrix("test-shoulders", "ntu25")
    assert weights[get_format("ntu25").index("spine_mid")].tolist() == [0.75, 0.25]
