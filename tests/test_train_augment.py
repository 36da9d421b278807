"""Batched pretraining augmentations: shapes, seeding, valid lengths, and the maths of each step."""

# einops axes: c coordinates, t frames, v joints, m bodies.

import dataclasses
import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from einops import rearrange

from usdrl.data.preprocess import resample
from usdrl.errors import ConfigError, InputError
from usdrl.skeleton import NTU25
from usdrl.train.augment import (
    AugmentConfig,
    augment,
    crop_resize,
    draw_crop,
    flip_joints,
    gaussian_noise,
    make_views,
    random_crop_resize,
    random_flip,
    random_joint_corruption,
    random_rotation,
    random_shear,
    random_spatial,
    random_temporal_mask,
    transform_joints,
)

LENGTHS = torch.tensor([80, 64, 30, 1, 71, 5])


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def batch(n=6, t=80, joints=25, bodies=2, seed=0):
    """Random clips with no zero coordinate; body 1 of sample 0 is absent (all zero)."""
    x = torch.rand(n, 3, t, joints, bodies, generator=gen(seed)) + 0.5
    x[0, ..., 1] = 0
    return x


def changed_joints(before, after):
    """``(N, V)`` bool: the joint differs somewhere."""
    return (before != after).any(dim=(1, 2, 4))


# ---------------------------------------------------------------- views


def test_view_shapes_and_seeding():
    x = batch()
    views = make_views(x, LENGTHS, 4, gen(1))
    assert views.shape == (4, 6, 3, 64, 25, 2) and views.dtype == x.dtype
    torch.testing.assert_close(views, make_views(x, LENGTHS, 4, gen(1)), rtol=0, atol=0)
    assert not torch.equal(views, make_views(x, LENGTHS, 4, gen(2)))
    assert all(not torch.equal(views[0], views[k]) for k in range(1, 4))  # independent views
    assert augment(x, LENGTHS, gen(1)).shape == (6, 3, 64, 25, 2)
    short = make_views(x, None, 2, gen(1), AugmentConfig(output_frames=16))
    assert short.shape == (2, 6, 3, 16, 25, 2)
    assert make_views(x).shape == (4, 6, 3, 64, 25, 2)  # all frames valid, torch's global generator


def test_views_never_read_past_the_valid_length():
    x = batch()
    for i, n in enumerate(LENGTHS):
        x[i, :, n:] = float("nan")
    config = AugmentConfig(rotation_degrees=(10, 20, 30), flip_prob=0.5, noise_std=0.01, temporal_mask_prob=0.5)
    for seed in range(3):
        assert torch.isfinite(make_views(x, LENGTHS, 4, gen(seed), config, layout="ntu25")).all()


def test_all_extras_keep_the_absent_body_absent():
    config = AugmentConfig(rotation_degrees=(10, 20, 30), flip_prob=1.0, noise_std=0.1, temporal_mask_prob=1.0)
    views = make_views(batch(), LENGTHS, 2, gen(3), config, layout=NTU25)
    assert not views[:, 0, ..., 1].any() and views[:, 1:].abs().sum() > 0


# ---------------------------------------------------------------- temporal crop


def ramp(n=1, t=128):
    """Frame ``f`` of every channel, joint and body holds ``f``."""
    return torch.arange(t, dtype=torch.float64).view(1, 1, t, 1, 1).expand(n, 3, t, 2, 2).clone()


def test_full_length_crop_of_a_ramp():
    config = AugmentConfig(min_crop_ratio=1.0, max_crop_ratio=1.0)
    # 128 -> 64 frames: output j reads source position (j + 0.5) * 2 - 0.5 = 2j + 0.5.
    out = random_crop_resize(ramp(), None, gen(), config)
    assert out[0, 0, :4, 0, 0].tolist() == [0.5, 2.5, 4.5, 6.5]
    assert out[0, 0, :, 0, 0].tolist() == [2 * j + 0.5 for j in range(64)]
    # 32 valid frames -> 64: position (j + 0.5) / 2 - 0.5 = j/2 - 0.25 (clamped at 0), the last one clamped at 31.
    out = random_crop_resize(ramp(), torch.tensor([32]), gen(), config)
    assert out[0, 1, :5, 1, 1].tolist() == [0.0, 0.25, 0.75, 1.25, 1.75]
    assert out[0, 1, -2:, 1, 1].tolist() == [30.75, 31.0]


def test_crop_of_a_ramp_by_hand():
    # Frames 10..29 -> 8: position (j + 0.5) * 20 / 8 - 0.5 = 2.5j + 0.75 inside the crop.
    out = crop_resize(ramp(), torch.tensor([10]), torch.tensor([20]), size=8)
    assert out[0, 2, :, 0, 1].tolist() == [10.75, 13.25, 15.75, 18.25, 20.75, 23.25, 25.75, 28.25]


def test_batched_crop_equals_the_per_sample_reference():
    x = batch(t=300)
    lengths = torch.tensor([300, 64, 30, 1, 171, 250])
    start, length = draw_crop(lengths, gen(4))
    out = crop_resize(x, start, length, 64)
    for i in range(len(x)):
        clip = x[i, :, start[i]:start[i] + length[i]]
        np.testing.assert_allclose(out[i].numpy(), resample(clip.numpy(), 64), rtol=1e-6, atol=1e-6)
        signal = rearrange(clip, "c t v m -> 1 (c v m) t")
        expected = F.interpolate(signal, size=64, mode="linear", align_corners=False)
        torch.testing.assert_close(out[i], rearrange(expected, "1 (c v m) t -> c t v m", c=3, v=25))
    # Crops of repeated samples (as make_views does) read the right source.
    source = torch.tensor([5, 0, 5])
    torch.testing.assert_close(crop_resize(x, start[source], length[source], 64, source), out[source])


def test_crop_resize_matches_interpolate_for_any_output_size():
    x = batch(n=3, t=90).double()
    start, length = torch.tensor([0, 5, 40]), torch.tensor([90, 17, 50])
    for size in (50, 7, 128):
        out = crop_resize(x, start, length, size)
        assert out.shape == (3, 3, size, 25, 2) and out.dtype == torch.float64
        for i in range(3):
            signal = rearrange(x[i, :, start[i]:start[i] + length[i]], "c t v m -> 1 (c v m) t")
            expected = F.interpolate(signal, size=size, mode="linear", align_corners=False)
            torch.testing.assert_close(out[i], rearrange(expected, "1 (c v m) t -> c t v m", c=3, v=25))


def test_crop_draws():
    lengths = torch.tensor([300, 150, 64, 40, 1])
    start, length = draw_crop(lengths.repeat(4000), gen(5))
    start, length = start.view(4000, 5), length.view(4000, 5)
    assert (length >= torch.minimum(lengths, torch.tensor(64))).all() and (length <= lengths).all()
    assert (start >= 0).all() and (start + length <= lengths).all()
    assert (length[:, 2:] == lengths[2:]).all()  # at most 64 frames: the whole valid range
    # n = 300: length = max(floor(300 s), 64), s ~ U(0.1, 1): P(length = 64) = (65/300 - 0.1) / 0.9.
    assert (length[:, 0] == 64).float().mean().item() == pytest.approx((65 / 300 - 0.1) / 0.9, abs=0.02)
    assert length[:, 0].max() >= 290
    # The start is uniform in [0, n - length]: for n = 150 its relative position averages 1/2.
    room = (lengths[1] - length[:, 1]).double()
    relative = start[:, 1][room > 0] / room[room > 0]
    assert relative.mean().item() == pytest.approx(0.5, abs=0.03)
    assert (start[:, 1] == 0).any() and (start[:, 1] == room.long()).any()


# ---------------------------------------------------------------- spatial


def test_corruption_touches_exactly_k_joints_of_all_joints():
    x = batch(n=64, t=4)
    out = random_joint_corruption(x, gen(6))
    changed = changed_joints(x, out)
    assert (changed.sum(1) == 15).all()
    assert changed.any(0).all()  # drawn from all 25 joints, not the first 17
    zeroed = (out == 0).all(dim=(1, 2, 4))
    assert (zeroed.sum(1) == 15).sum() > 16 and (zeroed.sum(1) == 0).sum() > 16  # zero mask or mix, p = 0.5
    tpami = random_joint_corruption(x, gen(6), AugmentConfig(corruption_pool=17))
    assert not changed_joints(x, tpami)[:, 17:].any()


def test_corruption_mix_is_one_matrix_for_the_chosen_joints():
    x = batch(n=4, t=5)
    out = random_joint_corruption(x, gen(7), AugmentConfig(zero_mask_prob=0.0, mix_range=0.5))
    for i in range(4):
        joints = changed_joints(x, out)[i].nonzero().flatten()
        src = x[i][:, :, joints].reshape(3, -1)
        dst = out[i][:, :, joints].reshape(3, -1)
        matrix = torch.linalg.lstsq(src.T, dst.T).solution.T
        torch.testing.assert_close(matrix @ src, dst, rtol=1e-4, atol=1e-5)
        assert matrix.abs().max() <= 0.5 + 1e-4


def test_shear_is_linear_with_unit_diagonal_and_keeps_zeros():
    x, y = batch(seed=1), batch(seed=2)
    config = AugmentConfig(shear_range=0.5)
    combined = random_shear(2 * x - 3 * y, gen(8), config)
    torch.testing.assert_close(combined, 2 * random_shear(x, gen(8), config) - 3 * random_shear(y, gen(8), config))
    assert not combined[0, ..., 1].any()  # the absent body stays zero
    basis = torch.zeros(6, 3, 1, 3, 1)
    basis[:, :, 0, :, 0] = torch.eye(3)  # joint c holds the unit vector e_c: the output columns are the matrix
    matrices = random_shear(basis, gen(8), config)[:, :, 0, :, 0]
    torch.testing.assert_close(torch.diagonal(matrices, dim1=1, dim2=2), torch.ones(6, 3))
    assert matrices.abs().max() <= 1.0 and len({m.sum().item() for m in matrices}) == 6  # one matrix per sample


def test_shear_off_diagonals_span_both_signs():
    basis = torch.zeros(400, 3, 1, 3, 1)
    basis[:, :, 0, :, 0] = torch.eye(3)
    matrices = random_shear(basis, gen(8), AugmentConfig(shear_range=0.5))[:, :, 0, :, 0]
    off = matrices[:, ~torch.eye(3, dtype=torch.bool)]  # (400, 6), U(-0.5, 0.5)
    assert off.min() < -0.45 and off.max() > 0.45 and off.abs().max() <= 0.5 and abs(off.mean().item()) < 0.03
    assert 0.45 < (off < 0).double().mean().item() < 0.55


def test_spatial_step_is_corruption_or_shear():
    x = batch(n=200, t=2)
    counts = changed_joints(x, random_spatial(x, gen(9))).sum(1)
    corrupted, sheared = (counts == 15).sum().item(), (counts == 25).sum().item()
    assert corrupted + sheared == 200 and 70 < corrupted < 130
    assert (changed_joints(x, random_spatial(x, gen(9), AugmentConfig(corruption_prob=1.0))).sum(1) == 15).all()


def test_transform_joints_with_a_joint_mask():
    x = batch(n=2, t=3)
    matrices = torch.stack([2 * torch.eye(3), torch.zeros(3, 3)])
    joints = torch.zeros(2, 25, dtype=torch.bool)
    joints[0, 3] = joints[1, 7] = True
    out = transform_joints(x, matrices, joints)
    expected = x.clone()
    expected[0, :, :, 3] *= 2
    expected[1, :, :, 7] = 0
    torch.testing.assert_close(out, expected)
    torch.testing.assert_close(transform_joints(x, matrices), torch.stack([2 * x[0], 0 * x[1]]))


def test_rotation_is_a_rotation():
    x = batch(n=8, t=3)
    out = random_rotation(x, gen(10), AugmentConfig(rotation_degrees=(0, 0, 45)))
    torch.testing.assert_close(out.norm(dim=1), x.norm(dim=1))
    torch.testing.assert_close(out[:, 2], x[:, 2])  # about z only
    assert not torch.allclose(out, x)
    with pytest.raises(InputError, match="C = 3"):
        random_rotation(x[:, :2], gen(10))


def rodrigues(axis, degrees):
    """The right-handed rotation by ``degrees`` about unit ``axis``: v cos + (k x v) sin + k (k.v)(1 - cos)."""
    k = torch.tensor(axis, dtype=torch.float64)
    theta = math.radians(degrees)
    cross = torch.tensor([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]], dtype=torch.float64)
    return math.cos(theta) * torch.eye(3, dtype=torch.float64) + math.sin(theta) * cross + (
        1 - math.cos(theta)) * torch.outer(k, k)


@pytest.mark.parametrize("limits", [(30, 0, 0), (0, 40, 0), (0, 0, 50), (30, 40, 50)])
def test_rotation_angles_and_signs(limits):
    # The angles are the generator's uniform draws scaled to (-a, a); each turns right-handedly about its
    # axis (a positive angle about x takes y towards z, about y takes z towards x), composed Rz Ry Rx.
    n = 16
    draws = torch.rand(n, 3, generator=gen(11)) * (2 * torch.tensor(limits)) - torch.tensor(limits)
    expected = torch.stack([rodrigues((0, 0, 1), z) @ rodrigues((0, 1, 0), y) @ rodrigues((1, 0, 0), x)
                            for x, y, z in draws.tolist()])
    basis = torch.zeros(n, 3, 1, 3, 1)
    basis[:, :, 0, :, 0] = torch.eye(3)  # the output columns are the matrix
    matrices = random_rotation(basis, gen(11), AugmentConfig(rotation_degrees=limits))[:, :, 0, :, 0]
    torch.testing.assert_close(matrices.double(), expected, rtol=0, atol=1e-5)
    assert (draws.abs().amax(dim=0) > 0.5 * torch.tensor(limits)).tolist() == [a > 0 for a in limits]


# ---------------------------------------------------------------- flip, noise, masking


def test_flip_swaps_pairs_and_negates_x():
    x = batch(n=2, t=3)
    out = flip_joints(x, NTU25.flip_pairs)
    for a, b in NTU25.flip_pairs:  # e.g. left / right shoulder (4, 8)
        torch.testing.assert_close(out[:, 0, :, a], -x[:, 0, :, b])
        torch.testing.assert_close(out[:, 1:, :, b], x[:, 1:, :, a])
    torch.testing.assert_close(out[:, :, :, 0], x[:, :, :, 0] * torch.tensor([-1.0, 1, 1]).view(1, 3, 1, 1))
    torch.testing.assert_close(flip_joints(out, NTU25.flip_pairs), x)
    torch.testing.assert_close(random_flip(x, "ntu25", gen(), AugmentConfig(flip_prob=1.0)), out)
    torch.testing.assert_close(random_flip(x, NTU25, gen(), AugmentConfig(flip_prob=0.0)), x)
    with pytest.raises(InputError, match="17 joints"):
        random_flip(x, "coco17", gen())


def test_noise_only_on_present_joints():
    x = batch(n=4, t=50)
    out = gaussian_noise(x, gen(11), AugmentConfig(noise_std=0.1))
    assert not out[0, ..., 1].any()
    assert (out - x)[1:].std().item() == pytest.approx(0.1, rel=0.05)
    # The noise is 0.1 times the generator's standard normal draws, added where a joint is present in a frame.
    x[1, :, 3, 7, 0] = 0   # joint 7 of sample 1 is absent in frame 3 only
    out = gaussian_noise(x, gen(11), AugmentConfig(noise_std=0.1))
    draws = torch.randn(x.shape, generator=gen(11))
    present = (x != 0).any(dim=1, keepdim=True)
    torch.testing.assert_close(out, x + 0.1 * draws * present)
    assert not out[1, :, 3, 7, 0].any() and out[1, :, 4, 7, 0].all()


def test_temporal_mask_zeroes_one_span():
    x = batch(n=50, t=64)
    out = random_temporal_mask(x, gen(12), AugmentConfig(temporal_mask_prob=1.0, temporal_mask_max_ratio=0.25))
    masked = (out == 0).all(dim=(1, 3, 4)) & (x != 0).any(dim=(1, 3, 4))  # (N, T)
    spans = masked.sum(1)
    assert spans.min() >= 1 and spans.max() <= 16 and len(set(spans.tolist())) > 5
    for row in masked:  # contiguous
        frames = row.nonzero().flatten()
        assert frames[-1] - frames[0] + 1 == len(frames)
    kept = ~masked[:, None, :, None, None].expand_as(x)
    torch.testing.assert_close(out[kept], x[kept])
    assert torch.equal(random_temporal_mask(x, gen(12), AugmentConfig(temporal_mask_prob=0.0)), x)


# ---------------------------------------------------------------- configuration


def test_config_round_trips_through_json():
    config = AugmentConfig(rotation_degrees=[5, 0, 10], corruption_pool=17, flip_prob=0.5)
    assert config.rotation_degrees == (5.0, 0.0, 10.0)
    assert AugmentConfig(**json.loads(json.dumps(dataclasses.asdict(config)))) == config


@pytest.mark.parametrize("bad, message", [
    ({"min_crop_ratio": 0.0}, r"need 0 < min_crop_ratio <= max_crop_ratio <= 1, got 0.0, 1.0"),
    ({"min_crop_ratio": 0.8, "max_crop_ratio": 0.5}, r"need 0 < min_crop_ratio <= max_crop_ratio <= 1, got 0.8, 0.5"),
    ({"max_crop_ratio": 1.5}, r"need 0 < min_crop_ratio <= max_crop_ratio <= 1, got 0.1, 1.5"),
    ({"corruption_prob": 1.5}, r"corruption_prob must lie in \[0, 1\], got 1.5"),
    ({"corrupted_joints": 20, "corruption_pool": 17}, "corruption_pool=17 is smaller than corrupted_joints=20"),
    ({"rotation_degrees": (1, 2)}, r"rotation_degrees must be 3 non-negative angles, got \(1.0, 2.0\)"),
    ({"noise_std": -1}, "noise_std must be >= 0, got -1"),
    ({"output_frames": 0}, "output_frames must be >= 1, got 0"),
    ({"temporal_mask_max_ratio": 0}, r"temporal_mask_max_ratio must lie in \(0, 1\], got 0"),
    ({"temporal_mask_max_ratio": 1.5}, r"temporal_mask_max_ratio must lie in \(0, 1\], got 1.5"),
])
def test_config_validation(bad, message):
    with pytest.raises(ConfigError, match=f"^{message}"):
        AugmentConfig(**bad)


def test_config_limits_are_accepted():
    config = AugmentConfig(output_frames=1, min_crop_length=1, min_crop_ratio=1.0, max_crop_ratio=1.0,
                           corrupted_joints=17, corruption_pool=17, temporal_mask_max_ratio=1.0)
    x = batch(n=2, t=8)
    assert make_views(x, None, 2, gen(0), config).shape == (2, 2, 3, 1, 25, 2)   # 2 views suffice
    assert (changed_joints(x, random_joint_corruption(x, gen(0), config)).sum(1) == 17).all()
    with pytest.raises(ConfigError, match="^num_views must be >= 1, got 0$"):
        make_views(x, None, 0)


@pytest.mark.parametrize("step, config", [
    (random_shear, AugmentConfig(shear_range=0.3)),
    (random_joint_corruption, AugmentConfig(zero_mask_prob=0.5)),
    (random_spatial, AugmentConfig()),
    (random_rotation, AugmentConfig(rotation_degrees=(10, 20, 30))),
    (gaussian_noise, AugmentConfig(noise_std=0.1)),
    (random_temporal_mask, AugmentConfig(temporal_mask_prob=0.5)),
    (lambda x, g, c: random_flip(x, "ntu25", g, c), AugmentConfig(flip_prob=0.5)),
    (lambda x, g, c: augment(x, LENGTHS, g, c, "ntu25"),
     AugmentConfig(rotation_degrees=(10, 20, 30), flip_prob=0.5, noise_std=0.01, temporal_mask_prob=0.5)),
])
def test_every_step_draws_from_the_generator_it_is_given(step, config):
    x = batch(seed=4)
    torch.manual_seed(1)   # the global generator differs between the calls: it must not be used
    first = step(x, gen(5), config)
    torch.manual_seed(2)
    torch.testing.assert_close(step(x, gen(5), config), first, rtol=0, atol=0)
    assert not torch.equal(first, x)


def test_each_enabled_extra_changes_the_views():
    x = batch(seed=6)
    plain = augment(x, LENGTHS, gen(7), AugmentConfig(), "ntu25")
    for extra in ({"rotation_degrees": (0, 0, 30)}, {"flip_prob": 1.0}, {"noise_std": 0.1},
                  {"temporal_mask_prob": 1.0}):
        changed = augment(x, LENGTHS, gen(7), AugmentConfig(**extra), "ntu25")
        assert not torch.equal(changed, plain), extra


def test_corruption_mix_entries_span_both_signs():
    x = torch.zeros(300, 3, 1, 1, 1)
    x[:, :, 0, 0, 0] = torch.tensor([1.0, 0.0, 0.0])   # the single joint is e_0: the output is the matrix's column 0
    out = random_joint_corruption(x, gen(9), AugmentConfig(corrupted_joints=1, zero_mask_prob=0.0, mix_range=0.5))
    column = out[:, :, 0, 0, 0]
    assert column.min() < -0.45 and column.max() > 0.45 and column.abs().max() <= 0.5


def test_default_crop_resize_gives_64_frames():
    x = batch(n=2, t=80)
    out = crop_resize(x, torch.tensor([0, 10]), torch.tensor([80, 40]))
    assert out.shape == (2, 3, 64, 25, 2)


def test_input_errors():
    x = batch()
    with pytest.raises(InputError, match="lengths"):
        make_views(x, torch.tensor([81, 1, 1, 1, 1, 1]))
    with pytest.raises(InputError, match="shape"):
        make_views(x, torch.tensor([5]))
    with pytest.raises(InputError, match=r"\(N, C, T, V, M\)"):
        make_views(x[0])
    with pytest.raises(ConfigError, match="layout"):
        make_views(x, config=AugmentConfig(flip_prob=0.5))
    with pytest.raises(InputError, match="corrupt 15"):
        random_joint_corruption(batch(joints=10), gen())
