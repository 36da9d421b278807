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
    top_bodies,
    write_ntu_skeleton,
)
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
