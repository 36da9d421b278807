"""View alignment against the reference's (UmURL ``data_gen/rotation.py`` and ``pre_normalization``).

The reference rotates by ``rotation_matrix(vector x target, angle_between(vector, target))``: a
counter-clockwise turn about the unit cross product by the angle between the vectors, the
identity when ``sum(|axis|) < 1e-6`` or ``|angle| < 1e-6`` (``angle_between`` is 0 when a vector
has ``sum(|v|) < 1e-6``). The expected values here come from hand-worked matrices and from an
independent implementation of that rule written with quaternions (``q v q*``), not from usdrl.
"""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from usdrl.data import AlignmentRecipe, align_view
from usdrl.data.preprocess import rotation_onto
from usdrl.data.synthetic import make_clips

X, Z = np.array([1.0, 0.0, 0.0]), np.array([0.0, 0.0, 1.0])
H = math.sqrt(0.5)


def _quaternion_turn(axis, angle, points):
    """``points`` (..., 3) turned counter-clockwise by ``angle`` about ``axis``: ``q p q*`` with
    ``q = (cos(angle/2), sin(angle/2) k)``, expanded as ``p + w t + u x t`` with ``t = 2 u x p``."""
    k = np.asarray(axis, float) / np.linalg.norm(axis)
    w, u = math.cos(angle / 2), math.sin(angle / 2) * k
    t = 2 * np.cross(u, points)
    return points + w * t + np.cross(u, t)


def _reference_turn(vector, target, points):
    """The reference's alignment step in words: ``points`` turned as the reference turns ``vector``
    toward ``target``, or left alone in its degenerate cases."""
    vector, target = np.asarray(vector, float), np.asarray(target, float)
    if np.abs(vector).sum() < 1e-6:
        angle = 0.0
    else:
        cosine = vector @ target / (np.linalg.norm(vector) * np.linalg.norm(target))
        angle = math.acos(min(1.0, max(-1.0, cosine)))
    axis = np.cross(vector, target)
    if np.abs(axis).sum() < 1e-6 or abs(angle) < 1e-6:
        return np.array(points, float)
    return _quaternion_turn(axis, angle, np.asarray(points, float))


def _reference_normalization(clip, center, zaxis=None, xaxis=None):
    """``pre_normalization``'s centring and alignment of one ``(3, T, V, M)`` clip without empty
    frames: body 0's ``center`` joint subtracted per frame from present joints, then the
    frame-0 body-0 vector ``zaxis[1] - zaxis[0]`` turned onto +z and ``xaxis[0] - xaxis[1]`` onto +x."""
    points = np.moveaxis(np.asarray(clip, float), 0, -1)  # (T, V, M, 3)
    present = (points != 0).any(-1, keepdims=True)
    points = (points - points[:, center:center + 1, 0:1]) * present
    if zaxis is not None:
        points = _reference_turn(points[0, zaxis[1], 0] - points[0, zaxis[0], 0], Z, points)
    if xaxis is not None:
        points = _reference_turn(points[0, xaxis[0], 0] - points[0, xaxis[1], 0], X, points)
    return np.moveaxis(points, -1, 0)


# ---------------------------------------------------------------- rotation_onto by hand


def test_hand_worked_rotations_facing_away():
    # (-1, 1, 0) onto +x: axis (0, 0, -1), angle 135 degrees: a turn of -135 degrees about +z.
    expected = np.array([[-H, H, 0], [-H, -H, 0], [0, 0, 1]])
    np.testing.assert_allclose(rotation_onto([-1.0, 1.0, 0.0], X), expected, atol=1e-12)
    # A spine leaning toward the camera, (0, 1, -1) onto +z: axis (1, 0, 0), angle 135 degrees.
    expected = np.array([[1, 0, 0], [0, -H, -H], [0, H, -H]])
    np.testing.assert_allclose(rotation_onto([0.0, 1.0, -1.0], Z), expected, atol=1e-12)
    # Facing the target: (1, 1, 0) onto +x turns -45 degrees about +z.
    expected = np.array([[H, H, 0], [-H, H, 0], [0, 0, 1]])
    np.testing.assert_allclose(rotation_onto([1.0, 1.0, 0.0], X), expected, atol=1e-12)


@pytest.mark.parametrize("signs", [(a, b, c) for a in (1, -1) for b in (1, -1) for c in (1, -1)])
@pytest.mark.parametrize("target", [X, Z], ids=["x", "z"])
def test_rotation_in_every_octant_turns_about_the_cross_product(signs, target):
    vector = np.array(signs) * [1.0, 2.0, 3.0]
    matrix = rotation_onto(vector, target)
    axis = np.cross(vector, target)
    np.testing.assert_allclose(matrix @ matrix.T, np.eye(3), atol=1e-12)
    assert np.linalg.det(matrix) == pytest.approx(1.0)
    np.testing.assert_allclose(matrix @ vector, math.sqrt(14) * target, atol=1e-12)
    np.testing.assert_allclose(matrix @ axis, axis, atol=1e-12)  # the reference's axis is kept
    np.testing.assert_allclose(matrix, _reference_turn(vector, target, np.eye(3)).T, atol=1e-12)


def test_degenerate_directions_as_the_reference():
    np.testing.assert_array_equal(rotation_onto([-2.0, 0.0, 0.0], X), np.eye(3))  # exactly opposite
    np.testing.assert_array_equal(rotation_onto([0.0, 0.0, -0.5], Z), np.eye(3))
    np.testing.assert_array_equal(rotation_onto([0.0, 0.0, 0.0], X), np.eye(3))  # no vector
    np.testing.assert_array_equal(rotation_onto([3e-7, 3e-7, 0.0], X), np.eye(3))  # sum(|v|) < 1e-6
    np.testing.assert_array_equal(rotation_onto([0.0, 0.0, 3e-161], X), np.eye(3))
    np.testing.assert_array_equal(rotation_onto([-1.0, 1e-7, 0.0], X), np.eye(3))  # sum(|axis|) = 1e-7
    np.testing.assert_array_equal(rotation_onto([1e3, 1e-4, 0.0], X), np.eye(3))  # angle 1e-7 rad
    np.testing.assert_array_equal(rotation_onto([1.0, 2.0, 3.0], [0.0, 0.0, 0.0]), np.eye(3))


def test_near_opposite_vectors_turn_almost_half_way_about_the_cross_product():
    vector = np.array([-1.0, 1e-5, 0.0])  # axis (0, 0, -1e-5): sum 1e-5, above the threshold
    matrix = rotation_onto(vector, X)
    np.testing.assert_allclose(matrix @ vector, [np.linalg.norm(vector), 0, 0], atol=1e-12)
    np.testing.assert_allclose(matrix[2], [0, 0, 1], atol=1e-12)  # about z, so z is kept
    np.testing.assert_allclose(matrix, np.diag([-1.0, -1.0, 1.0]), atol=2e-5)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(-10, 10), min_size=3, max_size=3), st.sampled_from([X, Z]))
def test_rotation_onto_equals_the_reference_for_any_vector(vector, target):
    matrix = rotation_onto(np.array(vector), target)
    np.testing.assert_allclose(matrix, _reference_turn(vector, target, np.eye(3)).T, atol=1e-9)


# ---------------------------------------------------------------- whole clips, every orientation


def _turn(clip, yaw_deg, tilt_deg):
    """A ``(3, T, V, M)`` camera-space clip turned by ``yaw`` about the vertical (y) axis, then
    tilted by ``tilt`` about the camera's x axis (zeros kept)."""
    yaw, tilt = math.radians(yaw_deg), math.radians(tilt_deg)
    about_y = np.array([[math.cos(yaw), 0, math.sin(yaw)], [0, 1, 0], [-math.sin(yaw), 0, math.cos(yaw)]])
    about_x = np.array([[1, 0, 0], [0, math.cos(tilt), -math.sin(tilt)], [0, math.sin(tilt), math.cos(tilt)]])
    return np.einsum("ij,jtvm->itvm", about_x @ about_y, clip).astype(np.float32)


@pytest.fixture(scope="module")
def body():
    clips = make_clips(2, seed=4, num_frames=8, noise=0)
    clip = clips.data[0]
    clip[..., 1] = clips.data[1][..., 0] + [[[0.8]], [[0.0]], [[0.3]]]  # a second person beside the first
    return clip


ORIENTATIONS = [(yaw, tilt) for yaw in range(0, 360, 15) for tilt in (-35, 0, 35)]


@pytest.mark.parametrize("recipe, zaxis, xaxis", [
    ("ntu", None, (8, 4)),
    (AlignmentRecipe(center_joint=1, z_axis_joints=(0, 1), x_axis_joints=(8, 4)), (0, 1), (8, 4)),
    (AlignmentRecipe(center_joint=1, z_axis_joints=(0, 1)), (0, 1), None),
], ids=["ntu", "z-then-x", "z-only"])
def test_clips_turned_through_360_degrees_align_as_the_reference(body, recipe, zaxis, xaxis):
    for yaw, tilt in ORIENTATIONS:
        clip = _turn(body, yaw, tilt)
        expected = _reference_normalization(clip, 1, zaxis, xaxis)
        np.testing.assert_allclose(align_view(clip, recipe), expected, atol=2e-5,
                                   err_msg=f"yaw {yaw}, tilt {tilt}")


def test_uav_clips_turned_through_360_degrees_align_as_the_reference(body):
    # A 17-joint clip in the COCO order of UAV-Human: hips and shoulders from the NTU body, the
    # face from its head. The recipe: centre on joint 1, left hip (11) -> left shoulder (5) onto +z.
    ntu_of_coco = [3, 3, 3, 3, 3, 4, 8, 5, 9, 6, 10, 12, 16, 13, 17, 14, 18]
    coco = body[:, :, ntu_of_coco].copy()
    coco[:, :, 1:5] += np.array([[0.03, -0.03, 0.07, -0.07], [0.02, 0.02, 0.0, 0.0], [-0.08, -0.08, 0, 0]])[
        :, None, :, None]
    for yaw, tilt in ORIENTATIONS:
        clip = _turn(coco, yaw, tilt)
        np.testing.assert_allclose(align_view(clip, "uav"), _reference_normalization(clip, 1, (11, 5)),
                                   atol=2e-5, err_msg=f"yaw {yaw}, tilt {tilt}")


def test_a_body_with_its_shoulders_exactly_reversed_is_not_rotated():
    clip = np.zeros((3, 2, 25, 1), np.float32)
    clip[:, :, 1, 0] = [[0.0, 0.1], [0.0, 0.0], [3.0, 3.0]]  # spine-mid
    clip[:, :, 8, 0] = [[-0.2, -0.1], [0.0, 0.0], [3.0, 3.0]]  # right shoulder
    clip[:, :, 4, 0] = [[0.2, 0.3], [0.0, 0.0], [3.0, 3.0]]  # left shoulder: right - left = (-0.4, 0, 0)
    out = align_view(clip, "ntu")
    centred = clip - clip[:, :, 1:2, :1]
    np.testing.assert_allclose(out[:, :, [1, 4, 8]], centred[:, :, [1, 4, 8]], atol=1e-7)


# ---------------------------------------------------------------- the reference's thresholds and clipping


def test_a_tiny_vector_is_not_turned_whatever_the_target_length():
    """``angle_between`` is 0 when either vector has ``sum(|v|) < 1e-6``: no turn, even where the
    cross product with a long target is not tiny (here 5e-5 about y)."""
    np.testing.assert_array_equal(rotation_onto(np.array([5e-7, 0.0, 0.0]), [0.0, 0.0, 100.0]), np.eye(3))
    np.testing.assert_array_equal(rotation_onto(np.array([100.0, 0.0, 0.0]), [0.0, 0.0, 5e-7]), np.eye(3))


def test_the_tiny_vector_threshold_is_strict():
    """``sum(|v|)`` exactly 1e-6 is not tiny: the vector is turned a quarter turn onto the target."""
    quarter_about_minus_y = _reference_turn([1.0, 0.0, 0.0], Z, np.eye(3)).T
    np.testing.assert_allclose(quarter_about_minus_y, [[0, 0, -1], [0, 1, 0], [1, 0, 0]], atol=1e-15)
    np.testing.assert_allclose(rotation_onto(np.array([1e-6, 0.0, 0.0]), [0.0, 0.0, 100.0]),
                               quarter_about_minus_y, atol=1e-12)
    np.testing.assert_allclose(rotation_onto(np.array([100.0, 0.0, 0.0]), [0.0, 0.0, 1e-6]),
                               quarter_about_minus_y, atol=1e-12)


def test_the_axis_and_angle_thresholds_are_strict():
    """``rotation_matrix``'s identity cases are ``sum(|axis|) < 1e-6`` and ``|angle| < 1e-6``, strictly."""
    from usdrl.data.preprocess import _axis_angle_matrix

    tiny_turn = _axis_angle_matrix([0.0, 0.0, 1.0], 1e-6)  # 1e-6 rad about z: sin(1e-6) ~ 1e-6 off the diagonal
    assert tiny_turn[1, 0] == pytest.approx(1e-6, rel=1e-9) and tiny_turn[0, 1] == pytest.approx(-1e-6, rel=1e-9)
    short_axis = _axis_angle_matrix([1e-6, 0.0, 0.0], math.pi / 2)  # a quarter turn about x: y -> z
    np.testing.assert_allclose(short_axis, [[1, 0, 0], [0, 0, -1], [0, 1, 0]], atol=1e-12)


def test_only_the_target_direction_matters():
    vector = np.array([0.3, -1.2, 0.4])
    np.testing.assert_allclose(rotation_onto(vector, [0.0, 0.0, 2.0]), rotation_onto(vector, Z), atol=1e-15)
    np.testing.assert_allclose(rotation_onto(vector, [0.0, 0.0, 2.0]), _reference_turn(vector, Z, np.eye(3)).T,
                               atol=1e-9)
    # The target is taken in float64 whatever its type.
    target = np.array([1.0, 2.0, 3.0], np.float32)
    np.testing.assert_array_equal(rotation_onto(vector, target), rotation_onto(vector, target.astype(np.float64)))


def test_a_float32_vector_is_normalised_in_float32_as_the_reference():
    """The reference normalises the clip's float32 vector in float32 (``v / np.linalg.norm(v)``);
    near the opposite direction the angle is sensitive enough that this shows (~1e-6)."""
    vector = np.array([-0.03829637, -0.06280685, -1.073104], np.float32)
    cosine = float(np.clip(np.dot(vector / np.linalg.norm(vector), Z), -1.0, 1.0))  # float32 unit, as the reference
    expected = _quaternion_turn(np.cross(vector.astype(float), Z), math.acos(cosine), np.eye(3)).T
    np.testing.assert_allclose(rotation_onto(vector, Z), expected, atol=1e-12)
    assert np.abs(rotation_onto(vector.astype(np.float64), Z) - expected).max() > 1e-7  # the test can tell


def test_a_rounded_cosine_past_one_is_clipped():
    """Nearly parallel float32 vectors whose unit dot product rounds past +-1 (found by search):
    the cosine is clipped, so no NaN: parallel is no turn, opposite is a half turn about the cross product."""
    target = np.array([1.0, 2.0, 3.0])
    parallel = np.array([81.51375579833984, 163.02752685546875, 244.54127502441406], np.float32)
    opposite = np.array([-64.05921173095703, -128.118408203125, -192.17762756347656], np.float32)
    unit = target / np.linalg.norm(target)
    assert np.dot(parallel / np.linalg.norm(parallel), unit) > 1
    assert np.dot(opposite / np.linalg.norm(opposite), unit) < -1
    np.testing.assert_array_equal(rotation_onto(parallel, target), np.eye(3))
    k = np.cross(opposite.astype(float), target)
    k /= np.linalg.norm(k)
    np.testing.assert_allclose(rotation_onto(opposite, target), 2 * np.outer(k, k) - np.eye(3), atol=1e-12)


@pytest.mark.parametrize("recipe, a, b, bone", [
    ("ntu", 8, 4, [1e-3, 0.0, 7e-7]),  # right minus left shoulder, onto +x: cross product (0, 7e-7, 0)
    ("uav", 11, 5, [7e-7, 0.0, 1e-3]),  # left hip -> left shoulder, onto +z: cross product (0, -7e-7, 0)
])
def test_the_cross_product_threshold_is_in_the_clip_units(recipe, a, b, bone):
    """A bone 7e-4 rad off its axis (an angle float32 resolves) but 1e-3 long has
    ``sum(|bone x axis|) = 7e-7 < 1e-6``: not turned (against a unit axis; a longer axis would
    lengthen the cross product past the threshold)."""
    rng = np.random.default_rng(0)
    clip = rng.uniform(-1, 1, size=(3, 3, 25 if recipe == "ntu" else 17, 1)).astype(np.float32)
    clip[:, :, 1, 0] = 0.0  # joint 1 (both recipes' centre) at the origin: the centring subtracts zero, exactly
    clip[:, 0, b, 0] = [0.0, 0.5, 0.0]
    sign = 1 if recipe == "ntu" else -1  # ntu turns a - b, uav turns b - a
    clip[:, 0, a, 0] = clip[:, 0, b, 0] + sign * np.array(bone, np.float32)
    out = align_view(clip, recipe)
    present = (clip != 0).any(axis=0)
    np.testing.assert_array_equal(out, clip * present)
