"""Synthetic clips rendered in other keypoint formats, and the cross-format pretraining views."""

import numpy as np
import pytest
import torch

from usdrl import USDRLConfig
from usdrl.data.synthetic import DetectorNoise, make_clips, project_coco17, render_keypoints
from usdrl.errors import ConfigError, InputError
from usdrl.keypoints import get_format
from usdrl.train.augment import AugmentConfig
from usdrl.train.cross_format import CrossFormatConfig, CrossFormatPretrainer, cross_format_views
from usdrl.train.pretrain import PretrainConfig

NTU = get_format("ntu25")


@pytest.fixture(scope="module")
def clips():
    return make_clips(4, seed=7, num_frames=20, noise=0.0)


def test_coco17_without_noise_is_the_projection(clips):
    keypoints = render_keypoints(clips.data, "coco17")
    for clip, rendered in zip(clips.data, keypoints, strict=True):
        pixels, scores = project_coco17(clip)
        assert np.allclose(rendered[..., :2], pixels, atol=1e-3)
        assert np.allclose(rendered[..., 2], scores, atol=1e-6)


def test_ntu25_without_noise_is_the_clip_with_unit_scores(clips):
    keypoints = render_keypoints(clips.data, "ntu25")
    assert np.allclose(keypoints[..., :3], clips.data.transpose(0, 4, 2, 3, 1), atol=1e-6)
    present = np.abs(clips.data).sum(1).transpose(0, 3, 1, 2) > 0              # (N, M, T, V)
    assert np.array_equal(keypoints[..., 3], present.astype(np.float32))


def test_a_y_down_3d_format_is_turned_and_named_joints_follow(clips):
    keypoints = render_keypoints(clips.data, "h36m17")
    fmt = get_format("h36m17")
    expected = clips.data[:, :, :, NTU.index("left_wrist"), 0] * np.array([-1, -1, 1])[None, :, None]
    assert np.allclose(keypoints[:, 0, :, fmt.index("left_wrist"), :3], expected.transpose(0, 2, 1), atol=1e-6)


def test_yaw_turns_about_the_vertical_axis_through_the_clip_centre(clips):
    straight = render_keypoints(clips.data[:1], "ntu25")[0, 0, ..., :3]
    turned = render_keypoints(clips.data[:1], "ntu25", yaw=np.array([np.pi / 2]))[0, 0, ..., :3]
    assert np.allclose(turned[..., 1], straight[..., 1], atol=1e-5)           # heights unchanged
    assert np.allclose(turned.mean((0, 1)), straight.mean((0, 1)), atol=1e-4)  # about the centre
    bone = np.linalg.norm(straight[:, 4] - straight[:, 5], axis=-1)
    assert np.allclose(np.linalg.norm(turned[:, 4] - turned[:, 5], axis=-1), bone, atol=1e-5)
    # a quarter turn swaps the horizontal axes: the depth spread becomes the x spread
    assert np.allclose(np.ptp(turned[..., 0]), np.ptp(straight[..., 2]), atol=1e-4)


def test_normalised_formats_lie_in_the_unit_square(clips):
    keypoints = render_keypoints(clips.data, "mediapipe33")
    present = keypoints[..., 2] > 0
    assert present.any() and np.all((keypoints[..., :2][present] >= 0) & (keypoints[..., :2][present] < 1))


def test_detector_noise_drops_doubts_and_repeats(clips):
    def draw(noise, seed=0):
        return render_keypoints(clips.data, "coco17", rng=np.random.default_rng(seed), noise=noise)

    assert not draw(DetectorNoise(drop_rate=1.0)).any()
    unsure = draw(DetectorNoise(low_score_rate=1.0, drop_rate=0.0))[..., 2]
    assert np.all((unsure[unsure > 0] >= 0.05) & (unsure[unsure > 0] <= 0.3))
    assert np.array_equal(draw(DetectorNoise()), draw(DetectorNoise()))
    assert not np.array_equal(draw(DetectorNoise()), draw(DetectorNoise(), seed=1))
    some = draw(DetectorNoise(drop_rate=0.3))[..., 2] > 0
    assert 0.5 < some.mean() / (render_keypoints(clips.data, "coco17")[..., 2] > 0).mean() < 0.9
    occluded = draw(DetectorNoise(drop_rate=0.0, occlusion_rate=0.5))[..., 2] > 0     # (N, M, T, V)
    assert np.array_equal(occluded, np.broadcast_to(occluded.any(2, keepdims=True), occluded.shape) & (
        render_keypoints(clips.data, "coco17")[..., 2] > 0))                          # a joint is gone in every frame
    assert 0.3 < occluded[:, 0].any(1).mean() < 0.7
    with pytest.raises(ConfigError, match="rng"):
        render_keypoints(clips.data, "coco17", noise=DetectorNoise())
    with pytest.raises(InputError, match="NTU-25"):
        render_keypoints(clips.data[:, :, :, :17], "coco17")


def test_views_of_a_clip_come_in_the_drawn_formats(clips):
    data, lengths = torch.from_numpy(clips.data), torch.from_numpy(clips.lengths)
    augment = AugmentConfig(output_frames=16, min_crop_length=8)

    def views(formats, seed=0):
        return cross_format_views(data, lengths, 3, torch.Generator().manual_seed(seed), augment,
                                  CrossFormatConfig(formats=formats))

    mixed = views(["ntu25", "coco17", "mediapipe33"])
    assert mixed.shape == (3, 4, 6, 16, 30, 2) and torch.isfinite(mixed).all()
    assert torch.equal(mixed, views(["ntu25", "coco17", "mediapipe33"]))
    present = mixed[:, :, 3] > 0
    assert set(mixed[:, :, 5][present].unique().tolist()) == {0.0, 1.0}          # 2D and 3D views both drawn
    flat = views(["coco17"])
    assert not flat[:, :, 2].any() and not flat[:, :, 5].any()                   # 2D only: no depth
    with pytest.raises(ConfigError, match="unknown keypoint format"):
        CrossFormatConfig(formats=["coco99"])


def test_cross_format_pretraining_runs_and_checks_its_inputs(clips, tmp_path):
    config = USDRLConfig.from_preset("tiny", layout="universal", in_channels=6, num_frames=16)
    run = PretrainConfig(epochs=1, batch_size=4, num_views=2, augment=AugmentConfig(output_frames=16,
                                                                                       min_crop_length=8))
    model = CrossFormatPretrainer(config, run, clips.data, clips.lengths, tmp_path / "run",
                                  show_progress_bar=False).fit()
    assert model.config.layout == "universal"
    keypoints = render_keypoints(clips.data[:2], "coco17")
    assert torch.isfinite(model.encode_keypoints(keypoints, "coco17")).all()
    with pytest.raises(ConfigError, match="universal model"):
        CrossFormatPretrainer(USDRLConfig.from_preset("tiny", num_frames=16), run, clips.data, clips.lengths,
                              tmp_path / "other")
    with pytest.raises(InputError, match="NTU-25 clips"):
        CrossFormatPretrainer(config, run, clips.data[:, :, :, :17], clips.lengths, tmp_path / "third")


def test_mediapipe_views_keep_the_body_proportions_of_the_pixel_formats(clips):
    """Normalised MediaPipe views get their image size back: with no noise and no camera turn, their joints
    land where the same joints of COCO-17 pixel views do (without the image size, x would be squeezed by
    1080 / 1920)."""
    data, lengths = torch.from_numpy(clips.data), torch.from_numpy(clips.lengths)
    augment = AugmentConfig(output_frames=16, min_crop_length=8)
    still = dict(max_yaw_degrees=0.0, jitter=0.0, low_score_rate=0.0, max_drop_rate=0.0, max_occlusion_rate=0.0)

    def views(fmt):
        return cross_format_views(data, lengths, 2, torch.Generator().manual_seed(3), augment,
                                  CrossFormatConfig(formats=[fmt], **still))

    coco, mediapipe = views("coco17"), views("mediapipe33")
    both = (coco[:, :, 4] > 0) & (mediapipe[:, :, 4] > 0)                  # exact joints in both formats
    assert both.sum() > 1000
    assert torch.allclose(coco[:, :, :2].movedim(2, -1)[both], mediapipe[:, :, :2].movedim(2, -1)[both], atol=1e-4)
    spread = coco[:, :, 0][both].std()
    assert spread > 0.3                                                    # a body, not a point: the check can fail


def test_the_rendering_settings_are_recorded_and_a_resumed_run_must_keep_them(clips, tmp_path):
    config = USDRLConfig.from_preset("tiny", layout="universal", in_channels=6, num_frames=16)
    run = PretrainConfig(epochs=1, batch_size=4, num_views=2, augment=AugmentConfig(output_frames=16,
                                                                                       min_crop_length=8))
    rendering = CrossFormatConfig(formats=["coco17", "ntu25"], max_yaw_degrees=30.0)
    CrossFormatPretrainer(config, run, clips.data, clips.lengths, tmp_path / "run", cross_format=rendering,
                          show_progress_bar=False).fit()
    checkpoint = torch.load(tmp_path / "run" / "checkpoint_0001.pt", weights_only=False)
    recorded = [value for value in checkpoint.values() if isinstance(value, dict) and "cross_format" in value]
    assert recorded and recorded[0]["cross_format"] == {
        "formats": ["coco17", "ntu25"], "max_yaw_degrees": 30.0, "jitter": 0.015, "low_score_rate": 0.1,
        "max_drop_rate": 0.3, "max_occlusion_rate": 0.3, "image_size": [1080, 1920], "focal": 1060.0}
    with pytest.raises(ConfigError, match="cross_format"):
        CrossFormatPretrainer(config, run, clips.data, clips.lengths, tmp_path / "run", resume=True,
                              cross_format=CrossFormatConfig(formats=["coco17"]))
    with pytest.raises(ConfigError, match="image_size"):
        CrossFormatConfig(image_size=(0, 1920))
