"""cross_format_views against a step-by-step recomputation from the same seed, and the settings' edges."""

import re

import numpy as np
import pytest
import torch

from usdrl.data.synthetic import DetectorNoise, make_clips, render_keypoints
from usdrl.errors import ConfigError, InputError
from usdrl.train.augment import AugmentConfig, crop_resize, draw_crop, random_spatial
from usdrl.train.cross_format import CrossFormatConfig, FormatAlignment, cross_format_views
from usdrl.universal import to_universal

#: Crops of 60-100% of the valid frames and at least 4 (the defaults: 10-100%, at least 64), resized to 16 frames.
AUGMENT = AugmentConfig(output_frames=16, min_crop_ratio=0.6, min_crop_length=4)
#: Two formats with every setting away from its default: a turned camera, noise, a small image, a long lens.
RENDERING = CrossFormatConfig(formats=("coco17", "mediapipe33"), max_yaw_degrees=40.0, jitter=0.03,
                              low_score_rate=0.2, max_drop_rate=0.4, max_occlusion_rate=0.2, image_size=(480, 640),
                              focal=900.0)


@pytest.fixture(scope="module")
def clips():
    synthetic = make_clips(3, seed=5, num_frames=24)
    return torch.from_numpy(synthetic.data), torch.from_numpy(synthetic.lengths)


def recomputed(clips, lengths, num_views, seed, augment, config):
    """The views, step by step from the documented recipe: MPCT's crop and spatial step about each clip's centre,
    then a numpy generator seeded from the torch one draws each view's format and camera yaw, and per format
    the noise's drop and occlusion rates, and renders and converts that format's views."""
    generator = torch.Generator().manual_seed(seed)
    n = len(clips)
    source = torch.arange(num_views * n) % n
    start, length = draw_crop(lengths[source], generator, augment)
    bodies = crop_resize(clips, start, length, augment.output_frames, source)
    present = (bodies != 0).any(1, keepdim=True)
    center = (bodies * present).sum((2, 3, 4), keepdim=True) / present.sum((2, 3, 4), keepdim=True).clamp(min=1)
    bodies = ((random_spatial(bodies - center, generator, augment) + center) * present).numpy()
    rng = np.random.default_rng(int(torch.randint(0, 2**62, (1,), generator=generator)))
    drawn = rng.integers(len(config.formats), size=len(bodies))
    yaw = np.radians(rng.uniform(-config.max_yaw_degrees, config.max_yaw_degrees, len(bodies)))
    views = np.zeros((len(bodies), 6, augment.output_frames, 30, clips.shape[-1]), np.float32)
    for k, name in enumerate(config.formats):
        chosen = np.flatnonzero(drawn == k)
        if len(chosen):
            noise = DetectorNoise(jitter=config.jitter, low_score_rate=config.low_score_rate,
                                  drop_rate=rng.uniform(0, config.max_drop_rate),
                                  occlusion_rate=rng.uniform(0, config.max_occlusion_rate))
            keypoints = render_keypoints(bodies[chosen], name, yaw=yaw[chosen], rng=rng, noise=noise,
                                         image_size=config.image_size, focal=config.focal)
            views[chosen] = to_universal(keypoints, name,
                                         image_size=config.image_size if name == "mediapipe33" else None)
    return torch.from_numpy(views).unflatten(0, (num_views, n)), drawn


def test_views_equal_the_recipe_recomputed_from_the_seed(clips):
    data, lengths = clips
    views = cross_format_views(data, lengths, 3, torch.Generator().manual_seed(11), AUGMENT, RENDERING)
    expected, drawn = recomputed(data, lengths, 3, 11, AUGMENT, RENDERING)
    assert set(drawn) == {0, 1}                            # both formats drawn: both branches are compared
    assert views.shape == (3, 3, 6, 16, 30, 2) and views.dtype == torch.float32
    torch.testing.assert_close(views, expected, rtol=0, atol=0)


def test_lengths_crop_the_valid_frames_and_default_to_all(clips):
    data, lengths = clips
    short = torch.full_like(lengths, 8)
    views = cross_format_views(data, short, 2, torch.Generator().manual_seed(3), AUGMENT, RENDERING)
    torch.testing.assert_close(views, recomputed(data, short, 2, 3, AUGMENT, RENDERING)[0], rtol=0, atol=0)
    full = torch.full_like(lengths, data.shape[2])
    torch.testing.assert_close(cross_format_views(data, None, 2, torch.Generator().manual_seed(3), AUGMENT, RENDERING),
                               recomputed(data, full, 2, 3, AUGMENT, RENDERING)[0], rtol=0, atol=0)
    assert not torch.equal(views, recomputed(data, full, 2, 3, AUGMENT, RENDERING)[0])


def test_the_default_settings_are_the_documented_ones(clips):
    data, lengths = clips
    views = cross_format_views(data, lengths, 2, torch.Generator().manual_seed(4))
    torch.testing.assert_close(views, recomputed(data, lengths, 2, 4, AugmentConfig(), CrossFormatConfig())[0],
                               rtol=0, atol=0)


def test_bad_clips_are_named():
    for shape in ((2, 3, 8, 17, 1), (2, 2, 8, 25, 1)):
        expected = f"expected NTU-25 clips (N, 3, T, 25, M) in Kinect camera space, got {shape}"
        with pytest.raises(InputError, match=re.escape(expected)):
            cross_format_views(torch.zeros(shape), None, 2, None)


@pytest.mark.parametrize("changes, message", [
    ({"formats": ()}, "formats must name at least one keypoint format"),
    ({"max_drop_rate": 1.01}, r"must lie in \[0, 1\], got \(1.01, 0.3, 0.1\)"),
    ({"low_score_rate": -0.01}, r"must lie in \[0, 1\], got \(0.3, 0.3, -0.01\)"),
    ({"image_size": (0, 640)}, r"image_size must be \(height, width\) > 0 and focal > 0, got \(0, 640\) and 1060"),
    ({"focal": 0.0}, r"got \(1080, 1920\) and 0.0"),
])
def test_rendering_settings_outside_their_range_are_refused(changes, message):
    with pytest.raises(ConfigError, match=message):
        CrossFormatConfig(**changes)


def test_rendering_settings_at_their_edges_are_accepted():
    config = CrossFormatConfig(max_drop_rate=1.0, max_occlusion_rate=1.0, low_score_rate=1.0, image_size=[1, 1])
    assert config.image_size == (1, 1)
    assert CrossFormatConfig(max_drop_rate=0.0, max_occlusion_rate=0.0, low_score_rate=0.0).max_drop_rate == 0.0


def test_alignment_clips_become_float32_and_lengths_long():
    data = np.zeros((2, 3, 8, 25, 1), np.float64)
    alignment = FormatAlignment(data, batch_size=2)
    assert alignment.clips.dtype == torch.float32 and alignment.lengths.dtype == torch.long
    assert alignment.lengths.tolist() == [8, 8]
    assert FormatAlignment(data, lengths=np.array([5.0, 6.0]), batch_size=2).lengths.dtype == torch.long


def test_views_land_on_the_clips_device_and_draw_with_their_generator(clips):
    from device_harness import ACCELERATOR, SimulatedAccelerator

    from usdrl.train.augment import _resize_table

    data, lengths = clips
    expected = cross_format_views(data, lengths, 2, torch.Generator().manual_seed(6), AUGMENT, RENDERING)
    _resize_table.cache_clear()     # tables cached on the host would count as host tensors on the accelerator
    accelerator = SimulatedAccelerator(named=True)
    with accelerator:
        views = cross_format_views(data.to(ACCELERATOR), lengths, 2, accelerator.generator(6), AUGMENT,
                                   RENDERING)                                       # lengths on the host
        assert accelerator.on_device(views) and views.device == ACCELERATOR
        alignment = FormatAlignment(data, lengths, batch_size=2, cross_format=RENDERING)
        assert accelerator.on_device(alignment.views(0, ACCELERATOR))
    _resize_table.cache_clear()
    torch.testing.assert_close(views.cpu(), expected, rtol=0, atol=0)


def test_without_a_generator_the_global_one_draws(clips):
    data, lengths = clips
    torch.manual_seed(2)
    first = cross_format_views(data, lengths, 2, None, AUGMENT, RENDERING)
    torch.manual_seed(2)
    torch.testing.assert_close(cross_format_views(data, lengths, 2, None, AUGMENT, RENDERING), first, rtol=0, atol=0)


def test_alignment_views_crop_each_drawn_clip_to_its_own_length(clips):
    data, lengths = clips
    short = torch.tensor([9, 12, 15])
    alignment = FormatAlignment(data, short, batch_size=4, cross_format=RENDERING, augment=AUGMENT)
    generator = torch.Generator().manual_seed(8)
    chosen = torch.randint(3, (4,), generator=generator)
    expected = cross_format_views(data[chosen], short[chosen], 2, generator, AUGMENT, RENDERING)
    torch.testing.assert_close(alignment.views(8, "cpu"), expected, rtol=0, atol=0)


def test_the_pretrainer_renders_with_its_lengths_generator_and_settings(clips, tmp_path):
    from usdrl import USDRLConfig
    from usdrl.train.cross_format import CrossFormatPretrainer
    from usdrl.train.pretrain import PretrainConfig

    data, _ = clips
    config = USDRLConfig.from_preset("tiny", layout="universal", in_channels=6, num_frames=16)
    run = PretrainConfig(epochs=1, batch_size=2, num_views=2, augment=AUGMENT)
    trainer = CrossFormatPretrainer(config, run, data.numpy(), np.full(3, 24), tmp_path / "run",
                                    cross_format=RENDERING, show_progress_bar=False)
    short = torch.tensor([9, 12, 15])
    views = trainer._views(data, short, torch.Generator().manual_seed(5))
    expected = cross_format_views(data, short, 2, torch.Generator().manual_seed(5), AUGMENT, RENDERING)
    torch.testing.assert_close(views, expected, rtol=0, atol=0)
    expected_clips = "expected NTU-25 clips (N, 3, T, 25, 2) to render, got (3, 2, 24, 25, 2)"
    with pytest.raises(InputError, match=re.escape(expected_clips)):
        CrossFormatPretrainer(config, run, data.numpy()[:, :2], np.full(3, 24), tmp_path / "other")
    with pytest.raises(InputError, match=re.escape("lengths must have shape (3,), got (2,)")):
        CrossFormatPretrainer(config, run, data.numpy(), np.full(2, 24), tmp_path / "third")


def test_alignment_settings_at_their_edges(clips):
    data, _ = clips
    assert FormatAlignment(data, weight=0.0, batch_size=2).weight == 0.0          # the term off
    assert FormatAlignment(data, weight=0.5, batch_size=2).weight == 0.5
    with pytest.raises(ConfigError, match=r"^need weight >= 0, temperature > 0, batch_size >= 2 and num_views >= 2, "
                                          r"got -0.1, 0.1, 2 and 2$"):
        FormatAlignment(data, weight=-0.1, batch_size=2)
    expected_clips = "expected NTU-25 clips (N, 3, T, 25, M) to render, got (3, 2, 24, 25, 2)"
    with pytest.raises(InputError, match=re.escape(expected_clips)):
        FormatAlignment(data[:, :2], batch_size=2)
    assert CrossFormatConfig(focal=0.5).focal == 0.5
    with pytest.raises(ConfigError, match="^formats must name at least one keypoint format$"):
        CrossFormatConfig(formats=())
