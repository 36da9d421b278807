import numpy as np
import pytest
import torch
import torch.nn.functional as F

from usdrl.data import (
    ALIGNMENT_RECIPES,
    AlignmentRecipe,
    align_view,
    body_energy,
    center_crop_resize,
    center_on_joint,
    crop_observed,
    fill_empty_frames,
    normalize_2d,
    observed_length,
    pad_2d,
    pad_bodies,
    preprocess_3d,
    random_crop_resize,
    read_ntu_skeleton,
    resample,
    select_bodies,
    to_model_input,
    top_bodies,
    write_ntu_skeleton,
)
from usdrl.data.preprocess import rotate
from usdrl.errors import ConfigError, InputError
from usdrl.skeleton import NTU25, UAV17


def _random_clip(seed, channels=3, frames=10, joints=25, bodies=2):
    return np.random.default_rng(seed).normal(size=(channels, frames, joints, bodies)).astype(np.float32)


# ---------------------------------------------------------------- bodies


def test_body_energy_by_hand():
    data = np.zeros((3, 4, 2, 3), np.float32)
    # Body 0 present in frames 0 and 2 only; x takes 1, 3 (joint 0) and 1, 3 (joint 1): std 1. y, z constant.
    data[:, 0, :, 0] = [[1, 1], [5, 5], [2, 2]]
    data[:, 2, :, 0] = [[3, 3], [5, 5], [2, 2]]
    # Body 1: x and y each take 0 and 4 over 2 frames x 2 joints (std 2): energy 4. Frames 1 and 3 of body 1 are empty.
    data[:, 0, :, 1] = [[0, 0], [4, 4], [1, 1]]
    data[:, 2, :, 1] = [[4, 4], [0, 0], [1, 1]]
    np.testing.assert_allclose(body_energy(data), [1.0, 4.0, 0.0])
    assert top_bodies(data, 2).tolist() == [1, 0]


def test_select_bodies_top_two_of_four_candidates():
    rng = np.random.default_rng(0)
    data = np.zeros((3, 8, 25, 5), np.float32)
    for m, scale in enumerate([1.0, 3.0, 0.0, 2.0, 10.0]):
        data[..., m] = scale * rng.normal(size=(3, 8, 25)) + (m + 1)
    out = select_bodies(data, 2, max_candidates=4)  # the 5th body is not a candidate
    assert out.shape == (3, 8, 25, 2)
    np.testing.assert_array_equal(out, data[..., [1, 3]])
    np.testing.assert_array_equal(select_bodies(data, 2), data[..., [4, 1]])
    # One body: padded with a zero body.
    single = select_bodies(data[..., :1], 2)
    np.testing.assert_array_equal(single[..., 0], data[..., 0])
    assert not single[..., 1].any()
    # Ties keep slot order.
    assert top_bodies(np.ones((3, 2, 2, 3)), 3).tolist() == [0, 1, 2]


def test_pad_bodies():
    data = _random_clip(0, bodies=1)
    assert pad_bodies(data, 3).shape == (3, 10, 25, 3)
    with pytest.raises(InputError):
        pad_bodies(_random_clip(0, bodies=3), 2)


# ---------------------------------------------------------------- empty frames


def _frames(values):
    """A (1, T, 1, 1) clip whose frames hold ``values`` (0 = empty)."""
    return np.asarray(values, np.float32).reshape(1, -1, 1, 1)


@pytest.mark.parametrize("values, expected", [
    ([0, 1, 2, 0, 3, 0, 0], [1, 2, 3, 1, 2, 3, 1]),  # first frame empty: compact, then tile
    ([1, 0, 2, 0, 0], [1, 0, 2, 1, 0]),  # gaps inside stay; the tail repeats frames 0..2
    ([1, 2, 3], [1, 2, 3]),
    ([0, 0, 5], [5, 5, 5]),
    ([0, 0, 0], [0, 0, 0]),
])
def test_fill_empty_frames_by_hand(values, expected):
    out = fill_empty_frames(_frames(values))
    assert out.ravel().tolist() == expected


def test_fill_empty_frames_per_body_and_no_mutation():
    data = np.zeros((3, 5, 2, 2), np.float32)
    data[:, :2, :, 0] = 1
    data[:, 2, :, 0] = 2
    data[:, 4, :, 1] = 7
    before = data.copy()
    out = fill_empty_frames(data)
    np.testing.assert_array_equal(data, before)
    assert out[0, :, 0, 0].tolist() == [1, 1, 2, 1, 1]
    assert out[0, :, 0, 1].tolist() == [7, 7, 7, 7, 7]


# ---------------------------------------------------------------- centring and alignment


def test_center_on_joint_keeps_absent_joints_zero():
    data = _random_clip(1)
    data[:, 3, 7, 0] = 0  # an absent joint
    data[:, 5:, :, 1] = 0  # body 1 leaves
    out = center_on_joint(data, 1)
    assert not out[:, :, 1, 0].any()  # the centre joint of body 0 is at the origin
    assert not out[:, 3, 7, 0].any() and not out[:, 5:, :, 1].any()
    np.testing.assert_allclose(out[:, :5, :, 1], data[:, :5, :, 1] - data[:, :5, 1:2, 0], rtol=1e-6)


def _check_rotation(out, data, recipe):
    centred = center_on_joint(data, recipe.center_joint)
    # A rotation: lengths and angles inside each frame are kept.
    for t in (0, 4):
        a, b = centred[:, t, :, 0], out[:, t, :, 0]
        np.testing.assert_allclose(a.T @ a, b.T @ b, rtol=1e-4, atol=1e-4)
    assert not out[:, :, recipe.center_joint, 0].any()


@pytest.mark.parametrize("seed", range(4))
def test_ntu_alignment(seed):
    data = _random_clip(seed, frames=6)
    data[:, 2, 10, 1] = 0
    out = align_view(data, "ntu")
    right, left = NTU25.x_axis_joints  # right shoulder, left shoulder
    shoulders = out[:, 0, right, 0] - out[:, 0, left, 0]
    assert shoulders[0] > 0 and np.allclose(shoulders[1:], 0, atol=1e-5)
    assert not out[:, 2, 10, 1].any()
    _check_rotation(out, data, ALIGNMENT_RECIPES["ntu"])


@pytest.mark.parametrize("seed", range(4))
def test_uav_alignment(seed):
    data = _random_clip(seed, frames=6, joints=17)
    out = align_view(data, "uav")
    hip, shoulder = UAV17.z_axis_joints  # 11 -> 5
    spine = out[:, 0, shoulder, 0] - out[:, 0, hip, 0]
    assert spine[2] > 0 and np.allclose(spine[:2], 0, atol=1e-5)
    assert not out[:, :, 1, 0].any()  # centred on joint 1
    _check_rotation(out, data, ALIGNMENT_RECIPES["uav"])


def test_alignment_recipe_with_both_axes():
    data = _random_clip(5, frames=3)
    out = align_view(data, AlignmentRecipe(center_joint=0, z_axis_joints=(0, 20), x_axis_joints=(8, 4)))
    shoulders = out[:, 0, 8, 0] - out[:, 0, 4, 0]
    assert shoulders[0] > 0 and np.allclose(shoulders[1:], 0, atol=1e-5)
    with pytest.raises(ConfigError):
        align_view(data, "kinetics")
    with pytest.raises(InputError):
        align_view(data[:2], "ntu")


# rotation_onto and whole-clip alignment against the reference: tests/test_view_alignment.py


def test_preprocess_3d_on_an_ntu_file(tmp_path):
    rng = np.random.default_rng(3)
    data = rng.normal(size=(3, 12, 25, 3)).astype(np.float32) + 2
    data[:, 9:, :, 0] = 0  # body 0 leaves: its tail is filled by repetition
    data[..., 2] *= 0.01  # body 2: little motion, dropped
    seq = read_ntu_skeleton(write_ntu_skeleton(tmp_path / "S001C001P001R001A001.skeleton", data))
    out = preprocess_3d(seq.data, "ntu")
    assert out.shape == (3, 12, 25, 2) and out.dtype == np.float32
    assert not out[:, :, 1, 0].any()
    assert out[:, 9:, :, 0].any()
    expected = align_view(fill_empty_frames(select_bodies(data, 2, max_candidates=4)), "ntu")
    np.testing.assert_array_equal(out, expected)


# ---------------------------------------------------------------- 2D


def test_normalize_2d_correct_and_legacy_by_hand():
    data = np.zeros((3, 1, 17, 1), np.float32)
    data[0, 0, :, 0] = 100 * np.arange(1, 18)  # x
    data[1, 0, :, 0] = 10 * np.arange(1, 18)  # y
    data[2] = 0.9  # confidence: never scaled
    correct = normalize_2d(data, (1000, 2000))
    np.testing.assert_allclose(correct[0, 0, :, 0], np.arange(1, 18) / 20)
    np.testing.assert_allclose(correct[1, 0, :, 0], np.arange(1, 18) / 100)
    legacy = normalize_2d(data, (1000, 2000), legacy=True)
    np.testing.assert_allclose(legacy[:2, 0, 0, 0], [0.1, 0.01])  # nose: x and y / height
    np.testing.assert_allclose(legacy[:2, 0, 1, 0], [0.1, 0.01])  # left eye: x and y / width
    np.testing.assert_array_equal(legacy[:, 0, 2:], data[:, 0, 2:])  # the rest stay in pixels
    assert (legacy[2] == np.float32(0.9)).all() and (correct[2] == np.float32(0.9)).all()
    with pytest.raises(InputError):
        normalize_2d(data, (0, 10))


def test_pad_2d():
    xy = _random_clip(0, channels=2)
    scores = np.random.default_rng(1).uniform(size=xy.shape[1:])
    padded = pad_2d(xy, scores)
    assert padded.shape == (3, 10, 25, 2)
    np.testing.assert_array_equal(padded[:2], xy)
    np.testing.assert_allclose(padded[2], scores, rtol=1e-6)
    assert not pad_2d(xy, padding="zero")[2].any()
    with pytest.raises(InputError):
        pad_2d(xy)
    with pytest.raises(InputError):
        pad_2d(xy, scores[:, :5])
    with pytest.raises(ConfigError):
        pad_2d(xy, scores, padding="mean")


# ---------------------------------------------------------------- temporal


def _torch_resample(window, size):
    """The reference recipe: bilinear over the flattened (C*V*M, n) signal, align_corners=False."""
    channels, n, joints, bodies = window.shape
    flat = torch.from_numpy(np.ascontiguousarray(window.transpose(0, 2, 3, 1))).reshape(channels * joints * bodies, n)
    out = F.interpolate(flat[None, None], size=(channels * joints * bodies, size), mode="bilinear",
                        align_corners=False)[0, 0]
    return out.reshape(channels, joints, bodies, size).permute(0, 3, 1, 2).numpy()


@pytest.mark.parametrize("n, size", [(1, 64), (7, 64), (64, 64), (65, 64), (150, 64), (300, 64), (30, 16)])
def test_resample_matches_torch_interpolate(n, size):
    data = _random_clip(n, frames=n + 5, joints=4)
    data[:, n:] = 1e6  # padding after the valid prefix must be ignored
    out = resample(data, size, length=n)
    assert out.shape == (3, size, 4, 2) and out.dtype == np.float32
    np.testing.assert_allclose(out, _torch_resample(data[:, :n], size), rtol=1e-5, atol=1e-5)
    if n <= size:  # upsampling keeps the end frames
        np.testing.assert_array_equal(out[:, 0], data[:, 0])
        np.testing.assert_array_equal(out[:, -1], data[:, n - 1])
    if n == size:
        np.testing.assert_array_equal(out, data[:, :n])


@pytest.mark.parametrize("n, ratio, expected", [(100, 0.5, 50), (100, 0.333, 33), (100, 0.01, 3), (2, 0.5, 2),
                                                (10, 1.0, 10), (7, 0.9, 6)])
def test_observed_length(n, ratio, expected):
    assert observed_length(n, ratio) == expected
    data = _random_clip(0, frames=max(n, 3) + 4)
    out = crop_observed(data, ratio, length=n)
    assert out.shape[1] == expected
    np.testing.assert_array_equal(out, data[:, :expected])


@pytest.mark.parametrize("ratio", [0, -0.5, 1.5])
def test_bad_ratios(ratio):
    with pytest.raises(InputError):
        observed_length(10, ratio)
    with pytest.raises(InputError):
        center_crop_resize(_random_clip(0), ratio)


@pytest.mark.parametrize("n", [40, 100, 300])
def test_random_crop_resize_follows_the_recipe(n):
    data = _random_clip(n, frames=300, joints=3)
    out = random_crop_resize(data, np.random.default_rng(7), length=n)
    rng = np.random.default_rng(7)
    s = rng.uniform(0.1, 1.0)
    length = min(max(int(np.floor(n * s)), 64), n)
    start = int(rng.integers(0, n - length + 1))
    assert out.shape == (3, 64, 3, 2)
    np.testing.assert_array_equal(out, resample(data[:, start:start + length], 64))
    again = random_crop_resize(data, np.random.default_rng(7), length=n)
    np.testing.assert_array_equal(out, again)
    if n < 64:
        np.testing.assert_array_equal(out, resample(data, 64, length=n))


def test_center_crop_resize():
    data = _random_clip(2, frames=120, joints=3)
    np.testing.assert_array_equal(center_crop_resize(data, 1.0, length=100), resample(data, 64, length=100))
    np.testing.assert_array_equal(center_crop_resize(data, 0.5, length=100), resample(data[:, 25:75], 64))
    np.testing.assert_array_equal(center_crop_resize(data, 0.3, length=5, size=8), resample(data[:, 1:4], 8))


def test_inputs_are_checked():
    with pytest.raises(InputError):
        resample(np.zeros((3, 4, 2)), 8)
    with pytest.raises(InputError):
        resample(_random_clip(0), 8, length=11)
    with pytest.raises(InputError):
        center_on_joint(_random_clip(0), 25)


# ---------------------------------------------------------------- defaults, float types, messages


def test_defaults_are_two_bodies_64_frames_and_the_ntu_recipe():
    data = _random_clip(3, frames=10, bodies=3)
    assert top_bodies(data).tolist() == top_bodies(data, 2).tolist() and len(top_bodies(data)) == 2
    np.testing.assert_array_equal(select_bodies(data), select_bodies(data, 2))
    assert pad_bodies(data[..., :1]).shape == (3, 10, 25, 2)
    assert resample(data).shape == (3, 64, 25, 3)
    np.testing.assert_array_equal(center_crop_resize(data), resample(data, 64))  # ratio 1: every frame
    np.testing.assert_array_equal(align_view(data), align_view(data, "ntu"))
    np.testing.assert_array_equal(preprocess_3d(data), preprocess_3d(data, "ntu"))


def test_select_bodies_more_than_two():
    """Three bodies asked of four: the three most energetic, in order, none padded."""
    data = np.zeros((3, 6, 25, 4), np.float32)
    rng = np.random.default_rng(0)
    for m, scale in enumerate([1.0, 4.0, 2.0, 3.0]):
        data[..., m] = scale * rng.normal(size=(3, 6, 25)) + 10
    np.testing.assert_array_equal(select_bodies(data, 3), data[..., [1, 3, 2]])
    np.testing.assert_array_equal(preprocess_3d(data, num_bodies=3), align_view(data[..., [1, 3, 2]]))
    np.testing.assert_array_equal(preprocess_3d(data, num_bodies=1), align_view(data[..., [1]]))


def test_ties_keep_slot_order_among_many_bodies():
    """20 body slots, bodies 0, 3, 6, ... moving alike and the rest still: slot order within each
    tie (numpy's default sort is not stable at this size)."""
    data = np.ones((3, 2, 1, 20), np.float32)
    data[0, 1, 0, ::3] = 3.0
    moving = list(range(0, 20, 3))
    assert top_bodies(data, 20).tolist() == moving + [m for m in range(20) if m not in moving]


def test_fill_empty_frames_after_a_body_that_is_never_present():
    data = np.zeros((1, 4, 1, 2), np.float32)
    data[0, 1:3, 0, 1] = [5, 6]  # body 0 absent; body 1 starts late
    out = fill_empty_frames(data)
    assert out[0, :, 0, 1].tolist() == [5, 6, 5, 6] and not out[..., 0].any()


def test_float_type_is_kept_and_integers_and_float16_become_float32():
    data64 = np.random.default_rng(0).normal(size=(3, 7, 2, 1))  # float64
    out = resample(data64, 4)
    assert out.dtype == np.float64
    src = np.maximum((np.arange(4) + 0.5) * 7 / 4 - 0.5, 0)  # 0.375, 2.125, 3.875, 5.625
    low = np.floor(src).astype(int)
    expected = data64[:, low] + (src - low)[None, :, None, None] * (data64[:, low + 1] - data64[:, low])
    np.testing.assert_allclose(out, expected, rtol=1e-13)  # float64 precision, not float32's
    pixels = np.full((2, 1, 2, 1), 3, np.int64)  # integers of any width: float32
    scaled = normalize_2d(pixels, (4, 2))
    assert scaled.dtype == np.float32 and scaled[:, 0, 0, 0].tolist() == [1.5, 0.75]
    half = resample(np.ones((3, 4, 2, 1), np.float16), 4)
    assert half.dtype == np.float32 and (half == 1).all()
    xy = np.ones((2, 3, 2, 1), np.float32)
    assert pad_2d(xy, padding="zero").dtype == np.float32
    assert pad_2d(xy, np.full((3, 2, 1), 0.5)).dtype == np.float32  # float64 scores are cast to the clip's type


def test_normalize_2d_limits():
    xy = np.full((2, 1, 3, 1), 6.0, np.float32)  # two channels (x, y) are enough
    np.testing.assert_array_equal(normalize_2d(xy, (1, 1)), xy)  # a 1 x 1 image is valid
    np.testing.assert_array_equal(normalize_2d(xy, (2, 3))[:, 0, :, 0], [[2, 2, 2], [3, 3, 3]])
    with pytest.raises(InputError, match=r"^image_shape must be positive \(height, width\), got \(10, 0\)$"):
        normalize_2d(xy, (10, 0))
    with pytest.raises(InputError, match=r"^expected x and y channels, got shape \(1, 1, 3, 1\)$"):
        normalize_2d(xy[:1], (10, 10))


def test_resample_to_one_frame():
    """size 1 reads source position ``max(0, 0.5 n - 0.5)``: 1.5 of 4 frames, halfway between frames 1 and 2."""
    data = np.arange(4, dtype=np.float32).reshape(1, 4, 1, 1) * 2
    assert resample(data, 1).ravel().tolist() == [3.0]


def test_random_crop_resize_ratio_range_and_size():
    data = _random_clip(5, frames=300, joints=2)
    rng = np.random.default_rng(11)
    s = rng.uniform(0.1, 0.4)
    length = min(max(int(np.floor(300 * s)), 20), 300)
    start = int(rng.integers(0, 300 - length + 1))
    out = random_crop_resize(data, np.random.default_rng(11), max_ratio=0.4, min_length=20, size=16)
    np.testing.assert_array_equal(out, resample(data[:, start:start + length], 16))
    # The default shortest crop is 64 frames: this draw of s = 0.177 gives 53 frames, raised to 64.
    rng = np.random.default_rng(3)
    assert 300 * rng.uniform(0.1, 1.0) < 64
    start = int(rng.integers(0, 300 - 64 + 1))
    np.testing.assert_array_equal(random_crop_resize(data, np.random.default_rng(3)),
                                  resample(data[:, start:start + 64], 64))


def test_to_model_input_is_the_recipe_then_resampling():
    rng = np.random.default_rng(4)
    data = rng.normal(size=(3, 12, 25, 3))  # float64, three bodies, frames 9.. are padding
    data[:, 9:] = 1e6
    out = to_model_input(data, 16, length=9)
    assert out.dtype == np.float32 and out.shape == (3, 16, 25, 2)
    np.testing.assert_allclose(out, resample(preprocess_3d(data[:, :9], "ntu"), 16), rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(to_model_input(data[:, :9]), to_model_input(data, length=9))
    assert to_model_input(data[:, :9]).shape == (3, 64, 25, 2)
    uav = rng.normal(size=(3, 5, 17, 1)).astype(np.float32)
    np.testing.assert_allclose(to_model_input(uav, 8, "uav"), resample(preprocess_3d(uav, "uav"), 8), atol=1e-6)
    assert not np.allclose(to_model_input(uav, 8, "uav"), to_model_input(uav, 8, "ntu"))
    with pytest.raises(InputError, match=r"^expected 3 channels, got shape \(2, 12, 25, 3\)$"):
        to_model_input(data[:2], length=9)
    with pytest.raises(InputError, match=r"^length must be in 1\.\.12, got 13$"):
        to_model_input(data, length=13)


def test_uav_recipe_through_preprocess_3d():
    """``preprocess_3d(..., "uav")``: joint 1 at the origin and body 0's left hip -> left shoulder on +z."""
    data = np.random.default_rng(8).normal(size=(3, 4, 17, 1)).astype(np.float32)
    out = preprocess_3d(data, "uav")
    assert not out[:, :, 1, 0].any()
    bone = out[:, 0, 5, 0] - out[:, 0, 11, 0]
    np.testing.assert_allclose(bone / np.linalg.norm(bone), [0, 0, 1], atol=1e-6)


def test_error_messages_name_what_was_expected_and_what_came():
    clip = _random_clip(0)  # (3, 10, 25, 2)
    with pytest.raises(InputError, match=r"^expected a \(C, T, V, M\) array, got shape \(3, 10, 25\)$"):
        resample(clip[..., 0])
    with pytest.raises(InputError, match=r"^expected 3 channels, got shape \(2, 10, 25, 2\)$"):
        align_view(clip[:2])
    with pytest.raises(InputError, match=r"^expected 3 channels, got shape \(2, 10, 25, 5\)$"):
        preprocess_3d(np.ones((2, 10, 25, 5)))  # the shape handed in, before any body is selected
    with pytest.raises(InputError, match=r"^expected 2 channels, got shape \(3, 10, 25, 2\)$"):
        pad_2d(clip, padding="zero")
    with pytest.raises(InputError, match=r"^length must be in 1\.\.10, got 11$"):
        resample(clip, 8, length=11)
    with pytest.raises(InputError, match=r"^size must be >= 1, got 0$"):
        resample(clip, 0)
    with pytest.raises(InputError, match=r"^joint 25 is outside 0\.\.24$"):
        center_on_joint(clip, 25)
    with pytest.raises(InputError, match=r"^clip has 3 bodies, more than 2; select bodies first$"):
        pad_bodies(_random_clip(0, bodies=3), 2)
    with pytest.raises(InputError, match=r"^the alignment recipe turns joint 8, but the clip has 5 joints "
                                         r"\(shape \(3, 10, 5, 2\)\)$"):
        align_view(clip[:, :, :5])
    with pytest.raises(InputError, match=r"^the alignment recipe turns joint 8, but the clip has 8 joints"):
        align_view(clip[:, :, :8])
    with pytest.raises(InputError, match=r"^expected 3 channels, got shape \(2, 10, 25, 2\)$"):
        rotate(clip[:2], np.eye(3))
    with pytest.raises(ConfigError, match=r"^unknown alignment recipe 'kinect'; expected one of ntu, uav$"):
        align_view(clip, "kinect")
    with pytest.raises(ConfigError, match=r"^unknown padding 'mean'; expected one of confidence, zero$"):
        pad_2d(clip[:2], padding="mean")
    with pytest.raises(InputError, match=r"^padding='confidence' needs scores$"):
        pad_2d(clip[:2])
    with pytest.raises(InputError, match=r"^scores must have shape \(10, 25, 2\), got \(10, 5, 2\)$"):
        pad_2d(clip[:2], np.ones((10, 5, 2)))
    with pytest.raises(InputError, match=r"^ratio must be in \(0, 1\], got 1\.5$"):
        observed_length(10, 1.5)
    with pytest.raises(InputError, match=r"^ratio must be in \(0, 1\], got 0$"):
        center_crop_resize(clip, 0)
    rng = np.random.default_rng(0)
    with pytest.raises(InputError, match=r"^min_ratio must be in \(0, 1\], got 0$"):
        random_crop_resize(clip, rng, min_ratio=0)
    with pytest.raises(InputError, match=r"^max_ratio must be in \(0, 1\], got 2$"):
        random_crop_resize(clip, rng, max_ratio=2)
