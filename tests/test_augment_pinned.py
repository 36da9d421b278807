"""The augmentations pinned to hand-worked values and independent draws, and run on a simulated accelerator.

The random steps are checked against a second, plainly written computation from the same seeded
generator (the draws in the order the docstrings give); the device tests run every step with the
batch on :mod:`device_harness`'s named accelerator, with the generator on the host, on the
accelerator, or torch's global one, and with lengths, crops, matrices and masks left on the host.
"""

# einops axes: n samples, c coordinates, t frames, v joints, m bodies.

import math
import re

import numpy as np
import pytest
import torch
from device_harness import ACCELERATOR, SimulatedAccelerator
from torch.overrides import TorchFunctionMode

from usdrl.errors import ConfigError, InputError
from usdrl.skeleton import NTU25
from usdrl.train.augment import (
    AugmentConfig,
    _resize_table,
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


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def clips(n=4, t=30, joints=25, bodies=2, seed=0, dtype=torch.float32):
    """Random clips with no zero coordinate."""
    return (torch.rand(n, 3, t, joints, bodies, generator=gen(seed), dtype=torch.float64) + 0.5).to(dtype)


def ramp(n=1, t=100):
    """Frame ``f`` of every channel, joint and body holds ``f``."""
    return torch.arange(t, dtype=torch.float64).view(1, 1, t, 1, 1).expand(n, 3, t, 2, 2).clone()


def uniform_ints(draws, high):
    """``_uniform_int`` written out: ``floor(u * high)`` of float64 draws ``u``, capped at ``high - 1``."""
    return [min(math.floor(u * h), h - 1) for u, h in zip(draws, high, strict=True)]


def expected_crops(lengths, seed, config):
    """``draw_crop`` written out: a float64 ratio per sample, then a float64 start draw per sample."""
    g = gen(seed)
    ratios = torch.rand(len(lengths), generator=g, dtype=torch.float64).tolist()
    spread = config.max_crop_ratio - config.min_crop_ratio
    length = [min(max(math.floor(n * (u * spread + config.min_crop_ratio)), config.min_crop_length), n)
              for n, u in zip(lengths, ratios, strict=True)]
    room = [n - k + 1 for n, k in zip(lengths, length, strict=True)]
    start = uniform_ints(torch.rand(len(lengths), generator=g, dtype=torch.float64).tolist(), room)
    return start, length


# ---------------------------------------------------------------- temporal crop


def test_draw_crop_is_a_float64_ratio_then_a_float64_start():
    lengths = [300, 150, 64, 40, 1, 100, 99, 7]
    config = AugmentConfig(min_crop_ratio=0.2, max_crop_ratio=0.9, min_crop_length=10)
    for seed in range(3):
        start, length = draw_crop(torch.tensor(lengths), gen(seed), config)
        assert start.dtype == length.dtype == torch.int64
        assert (start.tolist(), length.tolist()) == expected_crops(lengths, seed, config)
    # Hand-worked: a fixed ratio 1/2 of 80 frames keeps 40, starting at floor(41 u) for the second draw u.
    config = AugmentConfig(min_crop_ratio=0.5, max_crop_ratio=0.5, min_crop_length=1)
    start, length = draw_crop(torch.tensor([80]), gen(4), config)
    g = gen(4)
    torch.rand(1, generator=g, dtype=torch.float64)  # the ratio's draw
    assert length.tolist() == [40] and start.tolist() == [math.floor(41 * torch.rand(1, generator=g,
                                                                                         dtype=torch.float64).item())]


def test_draw_crop_takes_lengths_of_any_number_type():
    config = AugmentConfig(min_crop_length=8)
    expected = expected_crops([80, 30, 9], 5, config)
    for lengths in (np.array([80.0, 30.0, 9.0]), torch.tensor([80, 30, 9], dtype=torch.int32), [80, 30, 9]):
        start, length = draw_crop(lengths, gen(5), config)
        assert start.dtype == length.dtype == torch.int64, type(lengths)
        assert (start.tolist(), length.tolist()) == expected


def test_random_crop_resize_reads_the_drawn_window_at_the_configured_size():
    config = AugmentConfig(output_frames=16, min_crop_ratio=0.3, max_crop_ratio=0.8, min_crop_length=4)
    lengths = [100, 57, 12]
    torch.manual_seed(123)  # torch's global generator must not be the one drawn from
    out = random_crop_resize(ramp(3), torch.tensor(lengths), gen(6), config)
    assert out.shape == (3, 3, 16, 2, 2)
    for i, (s, k) in enumerate(zip(*expected_crops(lengths, 6, config), strict=True)):
        # On a ramp the frame read at crop position p is s + p: p = max(0, (j + 1/2) k / 16 - 1/2), then the
        # interpolation of frames floor(p) and floor(p) + 1 (the last capped at k - 1) is s + min(p, k - 1).
        expected = [s + min(max(0.0, (j + 0.5) * k / 16 - 0.5), k - 1) for j in range(16)]
        np.testing.assert_allclose(out[i, 2, :, 1, 0].numpy(), expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize("narrow", [torch.int16, torch.float16, torch.float32])
def test_crops_in_any_number_type_read_the_same_frames(narrow):
    # 200 samples of 3 x 64 frames: sample 199 starts at row 199 * 192 = 38208, beyond int16 (32767) and
    # not a float16 integer (spaced 32 there): the rows must be computed in int64.
    x = torch.rand(200, 3, 64, 1, 1, generator=gen(7))
    start, length, source = torch.tensor([5, 0, 17]), torch.tensor([40, 64, 9]), torch.tensor([199, 150, 3])
    expected = crop_resize(x, start, length, 12, source)
    got = crop_resize(x, start.to(narrow), length.to(narrow), 12, source.to(narrow))
    torch.testing.assert_close(got, expected, rtol=0, atol=0)
    # Hand-worked: crop 2 reads frames 17..25 of sample 3; output frame 0 sits at (0 + 1/2) 9 / 12 - 1/2 < 0: frame 17.
    assert got[2, 1, 0, 0, 0] == x[3, 1, 17, 0, 0]


class _IndexDtype(TorchFunctionMode):
    """Records the index dtype that ``F.embedding_bag`` receives."""

    def __init__(self):
        super().__init__()
        self.dtypes = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if func is torch.nn.functional.embedding_bag:
            self.dtypes.append(args[0].dtype)
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("n, c, t", [(2**30 + 1, 1, 2), (2**29 + 1, 4, 1), (3, 2**30 + 1, 1)])
def test_rows_past_int32_are_indexed_in_int64(n, c, t):
    # N * C * T = 2^31 + 2 rows: the last row, 2^31 + 1, is past int32's 2^31 - 1. Shapes only (meta device).
    x = torch.empty(n, c, t, 1, 1, device="meta")
    crop = torch.zeros(1, dtype=torch.long, device="meta"), torch.full((1,), t, device="meta")
    recorder = _IndexDtype()
    with recorder:
        out = crop_resize(x, *crop, 3, torch.tensor([n - 1], device="meta"))
    assert out.shape == (1, c, 3, 1, 1) and recorder.dtypes == [torch.int64]


def test_an_identity_config_gives_back_the_batch():
    # The whole valid range resampled to its own length reads frame j at position j (weights 1, 0); a shear of
    # range 0 is the identity, and corruption never happens: every view is the batch, bit for bit.
    x = clips(n=3, t=100)
    config = AugmentConfig(output_frames=100, min_crop_ratio=1.0, max_crop_ratio=1.0, min_crop_length=1,
                           corruption_prob=0.0, shear_range=0.0)
    assert torch.equal(augment(x, None, gen(8), config), x)
    views = make_views(x, None, 1, gen(8), config)   # a single view is allowed
    assert views.shape == (1, *x.shape) and torch.equal(views[0], x)


def test_augment_reads_only_the_valid_frames():
    x = clips(n=4, t=30)
    lengths = torch.tensor([30, 12, 1, 5])
    for i, k in enumerate(lengths):
        x[i, :, k:] = float("nan")
    config = AugmentConfig(output_frames=8, min_crop_length=2)
    for seed in range(3):
        assert torch.isfinite(augment(x, lengths, gen(seed), config)).all()


@pytest.mark.parametrize("lengths, shown", [
    (torch.tensor([30, 0, 3, 4]), "[30, 0, 3, 4]"),
    (torch.tensor([31, 1, 1, 1]), "[31, 1, 1, 1]"),
    ([-2, 1, 1, 1], "[-2, 1, 1, 1]"),
    (np.array([30.0, 0.0, 3.0, 4.0]), "[30, 0, 3, 4]"),   # frame counts, shown as whole numbers
])
def test_lengths_outside_one_to_t_are_refused(lengths, shown):
    with pytest.raises(InputError, match=rf"^lengths must lie in 1\.\.30, got {re.escape(shown)}$"):
        augment(clips(), lengths, gen())


# ---------------------------------------------------------------- coins, corruption, masks, noise


def test_a_coin_comes_up_for_draws_strictly_below_the_probability():
    # random_flip draws one uniform per sample and flips where it is < flip_prob. With flip_prob equal to the
    # draw of sample 3 exactly, sample 3 is not flipped (the draw is not below it).
    n = 12
    draws = torch.rand(n, generator=gen(9))
    prob = draws[3].item()
    x = clips(n=n, t=2)
    out = random_flip(x, NTU25, gen(9), AugmentConfig(flip_prob=prob))
    flipped = flip_joints(x, NTU25.flip_pairs)
    got = [bool(torch.equal(out[i], flipped[i])) for i in range(n)]
    assert got == (draws < prob).tolist() and not got[3]
    assert all(torch.equal(out[i], x[i]) for i in range(n) if not got[i])


def test_corruption_picks_the_joints_of_the_smallest_draws_and_mixes_them_by_the_drawn_matrix():
    n, joints, k, r = 6, 9, 3, 0.7
    x = clips(n=n, t=2, joints=joints, bodies=1, dtype=torch.float64)
    config = AugmentConfig(corrupted_joints=k, zero_mask_prob=0.5, mix_range=r)
    out = random_joint_corruption(x, gen(10), config)
    g = gen(10)
    draws = torch.rand(n, joints, generator=g)
    mix = (torch.rand(n, 3, 3, generator=g) * (2 * r) - r).double()
    zero = torch.rand(n, generator=g) < 0.5
    for i in range(n):
        chosen = sorted(draws[i].argsort()[:k].tolist())
        expected = x[i].clone()
        expected[:, :, chosen] = 0 if zero[i] else torch.einsum("cd,dtvm->ctvm", mix[i], x[i][:, :, chosen])
        torch.testing.assert_close(out[i], expected, rtol=1e-6, atol=1e-7)
    assert zero.any() and not zero.all()


@pytest.mark.parametrize("t, ratio, longest", [(8, 0.5, 4), (8, 0.2, 1), (8, 0.1, 1), (5, 1.0, 5)])
def test_temporal_mask_spans_and_starts_from_the_draws(t, ratio, longest):
    # longest = max(1, floor(ratio * t)); span = 1 + U{0..longest-1} where the coin comes up, else 0;
    # start = U{0..t-span}. Draw order: span, coin, start.
    n = 400
    x = clips(n=n, t=t, joints=1, bodies=1)
    out = random_temporal_mask(x, gen(11), AugmentConfig(temporal_mask_prob=0.75, temporal_mask_max_ratio=ratio))
    g = gen(11)
    span = [s + 1 for s in uniform_ints(torch.rand(n, generator=g, dtype=torch.float64).tolist(), [longest] * n)]
    span = [s * c for s, c in zip(span, (torch.rand(n, generator=g) < 0.75).tolist(), strict=True)]
    start = uniform_ints(torch.rand(n, generator=g, dtype=torch.float64).tolist(), [t - s + 1 for s in span])
    masked = (out == 0).all(dim=(1, 3, 4))
    expected = torch.tensor([[a <= f < a + s for f in range(t)] for a, s in zip(start, span, strict=True)])
    assert torch.equal(masked, expected)
    assert max(span) == longest and any(a + s == t for a, s in zip(start, span, strict=True) if s)


def test_noise_is_the_generators_normal_draws_in_the_batch_dtype():
    x = clips(n=2, t=5, dtype=torch.float64)
    x[1, :, 2, 3, 0] = 0
    out = gaussian_noise(x, gen(12), AugmentConfig(noise_std=0.25))
    noise = torch.randn(x.shape, generator=gen(12), dtype=torch.float64)
    present = (x != 0).any(dim=1, keepdim=True)
    assert out.dtype == torch.float64
    torch.testing.assert_close(out, x + 0.25 * noise * present, rtol=0, atol=0)


# ---------------------------------------------------------------- dtypes and messages


def test_joint_maps_keep_the_batch_dtype():
    matrices = torch.tensor([[[1.0, 0.5, 0.0], [0.0, 1.0, 0.0], [0.0, -0.25, 2.0]]]).expand(2, 3, 3)
    joints = torch.zeros(2, 25, dtype=torch.bool)
    joints[:, [1, 4]] = True
    x = clips(n=2, t=3, dtype=torch.float64)
    expected = x.clone()
    expected[:, :, :, [1, 4]] = torch.einsum("cd,ndtvm->nctvm", matrices[0].double(), x[:, :, :, [1, 4]])
    for picked, want in ((joints, expected), (None, torch.einsum("cd,ndtvm->nctvm", matrices[0].double(), x))):
        out = transform_joints(x, matrices, picked)   # float32 matrices on a float64 batch
        assert out.dtype == torch.float64
        torch.testing.assert_close(out, want, rtol=1e-12, atol=1e-12)
        half = transform_joints(x.bfloat16(), matrices, picked)
        assert half.dtype == torch.bfloat16
        torch.testing.assert_close(half.double(), want, rtol=0.02, atol=0.05)
    assert random_spatial(x.bfloat16(), gen(13)).dtype == torch.bfloat16
    assert random_shear(x.half(), gen(13)).dtype == torch.float16


def test_flip_keeps_the_batch_dtype():
    x = torch.arange(2 * 3 * 1 * 25 * 1).view(2, 3, 1, 25, 1)   # integer coordinates (e.g. pixels)
    out = flip_joints(x, NTU25.flip_pairs)
    assert out.dtype == torch.int64
    assert out[0, 0, 0, 4, 0].item() == -x[0, 0, 0, 8, 0].item() and out[1, 2, 0, 8, 0].item() == x[1, 2, 0, 4, 0]
    assert flip_joints(clips(n=2, t=1).half(), NTU25.flip_pairs).dtype == torch.float16


def test_messages_name_the_mismatch():
    x = clips(n=2, t=4)
    with pytest.raises(InputError, match=r"^layout 'coco17' has 17 joints, the batch 25$"):
        random_flip(x, "coco17", gen())
    with pytest.raises(ConfigError, match=r"^flip_prob > 0 needs the skeleton layout \(its left/right joint "
                                          r"pairs\)$"):
        augment(x, config=AugmentConfig(flip_prob=0.5, min_crop_length=2))


# ---------------------------------------------------------------- on a simulated accelerator


@pytest.fixture
def accelerator():
    # Tables cached per device by an earlier harness were made outside this one: start without them.
    _resize_table.cache_clear()
    yield SimulatedAccelerator(named=True)
    _resize_table.cache_clear()


EXTRAS = AugmentConfig(output_frames=16, min_crop_length=4, rotation_degrees=(10, 20, 30), flip_prob=0.5,
                       noise_std=0.1, temporal_mask_prob=0.5, corruption_prob=0.5)
STEPS = {
    "random_crop_resize": lambda x, g: random_crop_resize(x, torch.tensor([30, 20, 9, 4]), g, EXTRAS),
    "random_shear": lambda x, g: random_shear(x, g, EXTRAS),
    "random_joint_corruption": lambda x, g: random_joint_corruption(x, g, EXTRAS),
    "random_spatial": lambda x, g: random_spatial(x, g, EXTRAS),
    "random_rotation": lambda x, g: random_rotation(x, g, EXTRAS),
    "random_flip": lambda x, g: random_flip(x, NTU25, g, EXTRAS),
    "gaussian_noise": lambda x, g: gaussian_noise(x, g, EXTRAS),
    "random_temporal_mask": lambda x, g: random_temporal_mask(x, g, EXTRAS),
    "augment": lambda x, g: augment(x, torch.tensor([30, 20, 9, 4]), g, EXTRAS, "ntu25"),
    "augment without lengths": lambda x, g: augment(x, None, g, EXTRAS, "ntu25"),
    "make_views": lambda x, g: make_views(x, [30, 20, 9, 4], 3, g, EXTRAS, "ntu25"),
    "make_views without lengths": lambda x, g: make_views(x, None, 2, g, EXTRAS, "ntu25"),
}


@pytest.mark.parametrize("generator", ["host", "accelerator", "global"])
@pytest.mark.parametrize("step", list(STEPS))
def test_every_step_on_the_accelerator(accelerator, step, generator):
    # The batch is on the accelerator; lengths are left on the host (a list or a host tensor, as a DataLoader
    # gives them); the generator is on the host, on the accelerator, or torch's global one (on the host).
    x = clips(n=4, t=30)
    torch.manual_seed(14)
    expected = STEPS[step](x, gen(14) if generator != "global" else None)
    torch.manual_seed(14)
    with accelerator:
        g = {"host": gen(14), "accelerator": accelerator.generator(14), "global": None}[generator]
        out = STEPS[step](x.to(ACCELERATOR), g)
        assert accelerator.on_device(out) and out.device == ACCELERATOR
        out = out.cpu()
    torch.testing.assert_close(out, expected, rtol=0, atol=0)  # the same draws wherever the generator is


def test_crops_and_draws_on_either_side(accelerator):
    x = clips(n=4, t=30)
    start, length, source = torch.tensor([0, 3, 10, 2]), torch.tensor([30, 9, 20, 5]), torch.tensor([0, 3, 1, 1])
    expected = crop_resize(x, start, length, 8, source), crop_resize(x, start, length, 8)
    crops = draw_crop(torch.tensor([30, 20, 9, 4]), gen(15))
    with accelerator:
        on = x.to(ACCELERATOR)
        # crops, sources and lengths on the host, on the accelerator, or both
        for moved in ((start, length, source), tuple(a.to(ACCELERATOR) for a in (start, length, source))):
            assert accelerator.on_device(crop_resize(on, *moved[:2], 8, moved[2]))
            torch.testing.assert_close(crop_resize(on, *moved[:2], 8, moved[2]).cpu(), expected[0], rtol=0, atol=0)
            torch.testing.assert_close(crop_resize(on, *moved[:2], 8).cpu(), expected[1], rtol=0, atol=0)
        # draws land on the generator's device, wherever the lengths are
        for lengths in (torch.tensor([30, 20, 9, 4]), torch.tensor([30, 20, 9, 4]).to(ACCELERATOR)):
            host = draw_crop(lengths, gen(15))
            there = draw_crop(lengths, accelerator.generator(15))
            assert not any(accelerator.on_device(a) for a in host) and all(accelerator.on_device(a) for a in there)
            assert [a.cpu().tolist() for a in there] == [a.tolist() for a in host] == [a.tolist() for a in crops]


def test_joint_maps_with_host_matrices_masks_and_choices(accelerator):
    x = clips(n=2, t=3)
    matrices = torch.stack([2 * torch.eye(3), torch.zeros(3, 3)])
    joints = torch.zeros(2, 25, dtype=torch.bool)
    joints[0, 3] = joints[1, 7] = True
    which = torch.tensor([True, False])
    expected = (transform_joints(x, matrices, joints), transform_joints(x, matrices),
                flip_joints(x, NTU25.flip_pairs, which))
    with accelerator:
        on = x.to(ACCELERATOR)
        got = (transform_joints(on, matrices, joints), transform_joints(on, matrices),
               flip_joints(on, NTU25.flip_pairs, which))
        assert all(accelerator.on_device(g) for g in got)
        got = [g.cpu() for g in got]
    for g, e in zip(got, expected, strict=True):
        torch.testing.assert_close(g, e, rtol=0, atol=0)


def test_view_steps_replace_the_value_changing_steps_in_order():
    """A variant's steps (as universal views use) are called in make_views' order, each on the previous one's
    output, and what the last returns is the views; the draws between them stay the standard ones."""
    from usdrl.train.augment import ViewSteps, _views

    calls = []

    def step(name):
        def run(views, *args):
            calls.append(name)
            return views + 1.0
        return run

    def crop(x, start, length, size, source):
        calls.append("crop")
        return x.index_select(0, source) + 1.0      # one row per view, as crop_resize gives them

    steps = ViewSteps(crop_resize=crop, spatial=step("spatial"), rotation=step("rotation"), noise=step("noise"))
    x = torch.zeros(2, 3, 8, 25, 2)
    config = AugmentConfig(output_frames=8, rotation_degrees=(0.0, 10.0, 0.0), noise_std=0.1)
    views = _views(x, None, 3, torch.Generator().manual_seed(0), config, None, steps)
    assert calls == ["crop", "spatial", "rotation", "noise"]
    assert views.shape == (3, 2, 3, 8, 25, 2) and torch.equal(views, torch.full_like(views, 4.0))
