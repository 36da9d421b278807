"""MPCT pretraining of a universal model: the views of universal input and ``Pretrainer.from_prepared`` on
prepared datasets of any format, one or several mixed.

The views are checked by hand (identity crops, whose output frame ``j`` is input frame ``j``, so every step's
effect can be read off) and against :mod:`usdrl.train.augment` on the three coordinate channels with the
same generator state; the pretraining on prepared NTU-60 3D and NTU-2D (COCO-17) datasets made by the library
from synthetic raw files.
"""

import json

import numpy as np
import pytest
import torch
from device_harness import ACCELERATOR, SimulatedAccelerator

from usdrl import USDRL
from usdrl.data.prepared import prepare_dataset
from usdrl.data.synthetic import make_clips, render_keypoints
from usdrl.data.synthetic_files import write_synthetic_ntu, write_synthetic_ntu2d
from usdrl.errors import ConfigError, InputError
from usdrl.train.augment import AugmentConfig, crop_resize, gaussian_noise, make_views
from usdrl.train.pretrain import Pretrainer, latest_checkpoint
from usdrl.train.universal_views import (
    universal_augment,
    universal_crop_resize,
    universal_noise,
    universal_rotation,
    universal_spatial,
    universal_views,
)
from usdrl.universal import UNIVERSAL_JOINTS, to_universal

FRAMES = 12
#: Crops of every valid frame resampled to as many frames: output frame j is input frame j.
IDENTITY = {"output_frames": FRAMES, "min_crop_ratio": 1.0, "min_crop_length": FRAMES}
#: A spatial step that changes nothing: a shear with unit diagonal and zero off-diagonals.
NO_SPATIAL = {"corruption_prob": 0.0, "shear_range": 0.0}


def generator(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def steady(x: torch.Tensor) -> torch.Tensor:
    """``x`` with every joint absent in all frames where it is absent in one (joints present throughout)."""
    return x * (x != 0).any(1, keepdim=True).all(2, keepdim=True)


@pytest.fixture(scope="module")
def clips():
    """``(3D, 2D)`` universal batches ``(4, 6, FRAMES, 30, 2)`` of the same synthetic motions: NTU-25 in camera
    space and their COCO-17 renderings (pixels), every joint present in all frames or in none."""
    bodies = make_clips(4, seed=0, num_frames=FRAMES).data
    three = to_universal(np.asarray(bodies).transpose(0, 4, 2, 3, 1), "ntu25")
    two = to_universal(render_keypoints(np.asarray(bodies), "coco17"), "coco17")
    return steady(torch.from_numpy(three)), steady(torch.from_numpy(two))


def present(x: torch.Tensor) -> torch.Tensor:
    return (x != 0).any(1)


# ---- the steps, by hand ------------------------------------------------------------------------------


def test_the_test_clips_are_what_the_tests_assume(clips):
    three, two = clips
    assert torch.equal(three[:, 5], present(three).float()) and torch.equal(two[:, 5], torch.zeros_like(two[:, 5]))
    assert not two[:, 2].any() and three[:, 2].any()
    assert present(two).any() and (~present(two)).any()  # COCO-17 lacks the spine, hands and feet


def test_a_crop_keeps_a_joint_only_where_every_frame_it_blends_has_it():
    # 4 frames resized to 8: output j reads position p = max(0, (j + 0.5) / 2 - 0.5) (frames floor(p), floor(p) + 1)
    x = torch.zeros(1, 6, 4, 30, 1)
    x[0, :, :, 3, 0] = torch.arange(1.0, 5.0)            # joint 3: 1, 2, 3, 4 in every channel
    x[0, :, 2, 3, 0] = 0                                   # ... absent in frame 2
    x[0, :, :, 7, 0] = torch.tensor([1.0, 2.0, 3.0, 4.0])  # joint 7 present throughout
    out = universal_crop_resize(x, torch.tensor([0]), torch.tensor([4]), size=8)[0, :, :, :, 0]
    blended = torch.tensor([1.0, 1.25, 1.75, 2.25, 2.75, 3.25, 3.75, 4.0])
    expected3 = torch.tensor([1.0, 1.25, 1.75, 0, 0, 0, 0, 4.0])  # p = 1.25 .. 2.75 read frame 2 with weight > 0
    for channel in range(6):
        torch.testing.assert_close(out[channel, :, 3], expected3)
        torch.testing.assert_close(out[channel, :, 7], blended)
    assert not out[:, :, [0, 1, 2, 4, 5, 6] + list(range(8, 30))].any()


def test_a_3d_clip_transforms_like_the_standard_views_of_its_coordinates(clips):
    three, _ = clips
    lengths = torch.tensor([FRAMES, 9, 10, FRAMES])
    for seed, corruption in ((0, 0.5), (1, 1.0), (2, 0.0)):
        config = AugmentConfig(output_frames=8, min_crop_length=4, corruption_prob=corruption,
                               rotation_degrees=(20.0, 40.0, 10.0), flip_prob=0.5, noise_std=0.05,
                               temporal_mask_prob=0.5)
        got = universal_views(three, lengths, 3, generator(seed), config)
        expected = make_views(three[:, :3].contiguous(), lengths, 3, generator(seed), config, "universal")
        assert got.shape == (3, 4, 6, 8, 30, 2)
        torch.testing.assert_close(got[:, :, :3], expected, rtol=0, atol=0)
    one = universal_augment(three, lengths, generator(4), config)
    torch.testing.assert_close(one, universal_views(three, lengths, 1, generator(4), config)[0])


@pytest.mark.parametrize("step", [{"corruption_prob": 0.0}, {"corruption_prob": 1.0, "zero_mask_prob": 0.0},
                                  {**NO_SPATIAL, "rotation_degrees": (30.0, 50.0, 20.0)}])
def test_a_2d_clip_keeps_z_zero_and_its_indicators_through_shear_mixing_and_rotation(clips, step):
    _, two = clips
    config = AugmentConfig(**IDENTITY, **step)
    got = universal_augment(two, None, generator(3), config)
    # x and y are those of the standard views of (x, y, 0) (one step: the z it invents moves nothing else)
    expected = make_views(two[:, :3].contiguous(), None, 1, generator(3), config)[0]
    torch.testing.assert_close(got[:, :2], expected[:, :2], rtol=0, atol=0)
    assert expected[:, 2].abs().amax() > 0.1 and not got[:, 2].any()
    assert torch.equal(got[:, 3:], two[:, 3:])


def test_a_yaw_foreshortens_a_2d_body_and_turns_a_3d_one(clips):
    three, two = clips
    config = AugmentConfig(**IDENTITY, **NO_SPATIAL, rotation_degrees=(0.0, 60.0, 0.0))
    for clip in (two, three):
        got = universal_rotation(clip, generator(5), config)
        mask = present(clip)[:, None].expand(-1, 3, -1, -1, -1)
        assert torch.equal(got[:, 1], clip[:, 1]) and torch.equal(got[:, 3:], clip[:, 3:])
        if clip is two:
            assert not got[:, 2].any()
            for sample in range(4):  # x' = cos(yaw) x: one factor per sample, cos 60 <= factor <= 1
                on = mask[sample, 0]
                factor = got[sample, 0][on] / clip[sample, 0][on]
                assert 0.5 <= factor.min() and factor.max() <= 1 and factor.max() - factor.min() < 1e-5
        else:
            assert (got[:, 2] != clip[:, 2]).any()
            torch.testing.assert_close(got[:, :3].norm(dim=1), clip[:, :3].norm(dim=1))  # a rotation


@pytest.mark.parametrize("zero_mask_prob", [1.0, 0.0])
def test_corruption_erases_joints_in_all_channels_or_mixes_their_coordinates(clips, zero_mask_prob):
    _, two = clips
    x = two.clone()
    x[:, :2] += 0.5  # every joint present (all 30, both persons), so that each corrupted joint shows
    x[:, 3:5] = torch.rand(x[:, 3:5].shape, generator=generator(1)) + 0.1
    config = AugmentConfig(**IDENTITY, corruption_prob=1.0, corrupted_joints=7, zero_mask_prob=zero_mask_prob)
    got = universal_spatial(x, generator(2), config)
    changed = (got != x).any(1).any(1).any(-1)  # (N, V): joints changed in some frame or person
    assert changed.sum(1).tolist() == [7, 7, 7, 7]
    untouched = ~changed[:, None, None, :, None]
    assert torch.equal(got * untouched, x * untouched)
    if zero_mask_prob == 1.0:  # erased: absent in all six channels
        assert not (got * ~untouched).any()
    else:  # mixed: the indicators stay, z stays 0 (2D)
        assert torch.equal(got[:, 3:], x[:, 3:]) and not got[:, 2].any() and present(got).all()


def test_the_defaults_are_the_standard_augmentations(clips):
    three, _ = clips
    x = torch.cat([three] * 4, dim=2)  # 48 frames
    views, standard = universal_views(x), make_views(x[:, :3])  # 4 views of 64 frames
    assert views.shape == standard.shape[:2] + (6,) + standard.shape[3:] and standard.shape[:2] == (4, 4)
    start, length = torch.tensor([0, 4, 8, 0]), torch.tensor([48, 40, 20, 8])
    assert universal_crop_resize(x, start, length).shape[2] == crop_resize(x, start, length).shape[2] == 64


def test_noise_is_the_standard_noise_of_a_3d_clip_in_its_precision(clips):
    three, _ = clips
    x = three.double()
    got = universal_noise(x, generator(7), AugmentConfig(noise_std=0.1))
    expected = gaussian_noise(x[:, :3], generator(7), AugmentConfig(noise_std=0.1))
    assert got.dtype == torch.float64
    torch.testing.assert_close(got[:, :3], expected, rtol=0, atol=0)


def test_noise_moves_only_the_coordinates_of_present_joints(clips):
    three, two = clips
    config = AugmentConfig(noise_std=0.1)
    for clip in (three, two):
        got = universal_noise(clip, generator(6), config)
        absent = ~present(clip)
        assert not got.masked_select(absent[:, None]).any() and torch.equal(got[:, 3:], clip[:, 3:])
        moved = (got[:, :2] - clip[:, :2])[present(clip)[:, None].expand(-1, 2, -1, -1, -1)]
        assert 0.05 < moved.std() < 0.2
    assert not universal_noise(two, generator(6), config)[:, 2].any()


def test_a_flip_swaps_left_and_right_joints_with_their_indicators_and_negates_x(clips):
    three, _ = clips
    x = three.clone()
    x[:, 3] = torch.rand(x[:, 3].shape, generator=generator(1)) * present(x)  # scores that differ per joint
    got = universal_augment(x, None, generator(0), AugmentConfig(**IDENTITY, **NO_SPATIAL, flip_prob=1.0))
    partner = [UNIVERSAL_JOINTS.index(name.replace("left", "@").replace("right", "left").replace("@", "right"))
               for name in UNIVERSAL_JOINTS]
    assert partner[UNIVERSAL_JOINTS.index("left_eye")] == UNIVERSAL_JOINTS.index("right_eye")
    expected = x[:, :, :, partner].clone()
    expected[:, 0] *= -1
    torch.testing.assert_close(got, expected, rtol=0, atol=0)


def test_a_temporal_mask_zeroes_whole_frames(clips):
    three, two = clips
    x = torch.cat([three, two])
    config = AugmentConfig(**IDENTITY, **NO_SPATIAL, temporal_mask_prob=1.0, temporal_mask_max_ratio=0.5)
    got = universal_augment(x, None, generator(0), config)
    kept = (got == x).flatten(3).all(3).all(1)      # (N, T) frames left as they were
    zeroed = (got == 0).flatten(3).all(3).all(1)    # (N, T) frames zero in every channel
    assert (kept | zeroed).all() and (zeroed & ~kept).any(1).all()


def test_absent_joints_stay_absent_through_every_step(clips):
    three, two = clips
    x = torch.cat([three, two])
    config = AugmentConfig(**IDENTITY, corruption_prob=0.5, rotation_degrees=(30.0, 30.0, 30.0), noise_std=0.1,
                           temporal_mask_prob=0.5)
    got = universal_views(x, None, 3, generator(8), config)
    assert not got.masked_select(~present(x)[None, :, None]).any()
    assert not got[:, 4:, 2].any()  # the 2D samples' z


def test_the_views_refuse_anything_but_universal_input():
    for shape in ((2, 3, FRAMES, 25, 2), (2, 6, FRAMES, 25, 2), (2, 3, FRAMES, 30, 2), (2, 6, FRAMES, 30)):
        with pytest.raises(InputError, match="universal input"):
            universal_views(torch.zeros(shape))
    with pytest.raises(ConfigError, match="num_views"):
        universal_views(torch.zeros(2, 6, FRAMES, 30, 2), num_views=0)


def test_the_views_stay_on_the_batch_s_device():
    from usdrl.train.augment import _resize_table

    _resize_table.cache_clear()
    x = torch.randn(3, 6, FRAMES, 30, 2, generator=generator(0))
    config = AugmentConfig(output_frames=8, min_crop_length=4, rotation_degrees=(10.0, 10.0, 10.0), flip_prob=0.5,
                           noise_std=0.1, temporal_mask_prob=0.5)
    expected = universal_views(x, torch.tensor([FRAMES, 8, 10]), 2, generator(1), config)
    accelerator = SimulatedAccelerator(named=True)
    with accelerator:
        there = x.to(ACCELERATOR)
        for draws in (accelerator.generator(1), generator(1)):  # a generator on the accelerator, and on the host
            got = universal_views(there, torch.tensor([FRAMES, 8, 10]), 2, draws, config)
            assert accelerator.on_device(got)
            assert torch.equal(got.to("cpu"), expected)
        one = universal_augment(there, None, accelerator.generator(2), config)
        assert accelerator.on_device(one)
        assert torch.equal(one.to("cpu"), universal_augment(x, None, generator(2), config))


# ---- pretraining on prepared data -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """``{"ntu": NTU-60 3D, "coco": NTU-2D COCO-17}`` prepared by the library from synthetic raw files."""
    root = tmp_path_factory.mktemp("universal_pretrain")
    write_synthetic_ntu(root / "ntu_raw", 16, seed=0)
    write_synthetic_ntu2d(root / "ntu2d.pkl", 16, seed=1)
    return {"ntu": prepare_dataset("ntu60", root / "ntu_raw", root / "ntu", benchmark="xsub", workers=1),
            "coco": prepare_dataset("ntu2d", root / "ntu2d.pkl", root / "coco", benchmark="xsub", workers=1)}


SETTINGS = {"model": {"hidden_size": 16, "num_heads": 1, "num_frames": 16},
            "pretrain": {"batch_size": 4, "save_every": 1, "lr_milestones": [], "num_views": 3,
                         "augment": {"output_frames": 16, "min_crop_length": 8}}}


def pretrain(data, run_dir, epochs: int, **options):
    trainer = Pretrainer.from_prepared(data, run_dir, preset="tiny", settings=SETTINGS,
                                       overrides={"epochs": epochs}, show_progress_bar=False, device="cpu",
                                       **options)
    return trainer, trainer.fit()


def losses(run_dir) -> list[float]:
    return [json.loads(line)["loss"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_pretraining_a_universal_model_on_a_prepared_3d_dataset(prepared, tmp_path):
    trainer, model = pretrain(prepared["ntu"], tmp_path / "run", 1, universal=True)
    assert trainer.data.shape[1:2] + trainer.data.shape[3:] == (6, 30, 2) and trainer.steps_per_epoch >= 1
    values = losses(tmp_path / "run")
    assert len(values) == trainer.steps_per_epoch and all(np.isfinite(v) and v > 0 for v in values)
    saved = USDRL.from_pretrained(tmp_path / "run" / "model")
    assert (saved.config.layout, saved.config.in_channels) == ("universal", 6)
    assert (saved.config.dataset, saved.config.protocol) == ("ntu60", "xsub")
    assert saved.config.description.endswith("of a universal model on ntu25 (3D)")


def test_pretraining_on_3d_and_2d_datasets_mixed(prepared, tmp_path):
    # datasets of different layouts: a universal model without being told
    trainer, _ = pretrain([prepared["ntu"], prepared["coco"]], tmp_path / "run", 1)
    sizes = [len(np.load(prepared[name] / "train" / "num_frames.npy")) for name in ("ntu", "coco")]
    assert len(trainer.data) == sum(sizes) and trainer.steps_per_epoch == sum(sizes) // 4
    assert all(np.isfinite(v) and v > 0 for v in losses(tmp_path / "run"))
    saved = USDRL.from_pretrained(tmp_path / "run" / "model").config
    assert (saved.layout, saved.dataset, saved.protocol) == ("universal", "mixed", "ntu60 xsub, ntu2d xsub")
    assert saved.description.endswith("of a universal model on ntu25 (3D), coco17 (2D)")
    # the batches are read as universal input: the 2D clips' z and depth are zero
    clips = np.asarray(trainer.data[np.arange(sizes[0], sum(sizes))])
    assert not clips[:, 2].any() and not clips[:, 5].any() and clips[:, 3].any()


def test_a_resumed_mixed_run_ends_with_the_uninterrupted_run_s_weights(prepared, tmp_path):
    data = [prepared["ntu"], prepared["coco"]]
    _, straight = pretrain(data, tmp_path / "straight", 2)
    pretrain(data, tmp_path / "resumed", 1)
    assert latest_checkpoint(tmp_path / "resumed").name == "checkpoint_0001.pt"
    _, resumed = pretrain(data, tmp_path / "resumed", 2, resume=True)
    np.testing.assert_allclose(losses(tmp_path / "resumed"), losses(tmp_path / "straight"), rtol=1e-6)
    for (name, a), b in zip(straight.state_dict().items(), resumed.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, msg=name)


def test_which_model_a_list_of_datasets_gets(prepared, tmp_path):
    settings = {**SETTINGS, "model": {**SETTINGS["model"], "layout": "universal"}}
    trainer = Pretrainer.from_prepared([prepared["coco"]], tmp_path / "run", preset="tiny", settings=settings,
                                       show_progress_bar=False, device="cpu")
    assert trainer.module.model.config.layout == "universal" and trainer.data.shape[1] == 6
    assert trainer.module.model.config.in_channels == 6
    plain = Pretrainer.from_prepared([prepared["coco"]], tmp_path / "plain", preset="tiny",
                                     settings=SETTINGS, show_progress_bar=False, device="cpu")
    assert plain.module.model.config.layout == "coco17" and plain.data.shape[1] == 3
    twice = Pretrainer.from_prepared([prepared["ntu"], prepared["ntu"] / "train"], tmp_path / "twice", preset="tiny",
                                     settings=SETTINGS, show_progress_bar=False, device="cpu")
    once = np.load(prepared["ntu"] / "train" / "data.npy")
    assert twice.module.model.config.layout == "ntu25"  # one layout: the model of that layout
    np.testing.assert_array_equal(np.asarray(twice.data), np.concatenate([once, once]))
    with pytest.raises(ConfigError, match="differ in layout"):
        Pretrainer.from_prepared([prepared["ntu"], prepared["coco"]], tmp_path / "no", universal=False)
    with pytest.raises(ConfigError, match="no prepared dataset"):
        Pretrainer.from_prepared([], tmp_path / "none")


def test_the_cli_pretrains_on_several_datasets(prepared, tmp_path, capsys):
    from usdrl.cli import main

    settings = tmp_path / "settings.json"
    settings.write_text(json.dumps(SETTINGS))
    assert main(["pretrain", "--data", str(prepared["ntu"]), "--data", str(prepared["coco"]), "--out",
                 str(tmp_path / "run"), "--config", str(settings), "--preset", "tiny", "--epochs", "1",
                 "--device", "cpu"]) == 0
    assert "after 1 epochs" in capsys.readouterr().out
    assert USDRL.from_pretrained(tmp_path / "run" / "model").config.dataset == "mixed"
    assert main(["pretrain", "--data", str(prepared["ntu"]), "--universal", "--out", str(tmp_path / "one"),
                 "--config", str(settings), "--preset", "tiny", "--epochs", "1", "--device", "cpu"]) == 0
    saved = USDRL.from_pretrained(tmp_path / "one" / "model").config
    assert (saved.layout, saved.dataset) == ("universal", "ntu60")


def test_two_processes_with_torchrun_on_mixed_datasets_and_resume(prepared, tmp_path):
    import os
    import subprocess
    import sys

    settings = tmp_path / "settings.json"
    settings.write_text(json.dumps(SETTINGS))
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m",
               "usdrl.cli", "pretrain", "--data", str(prepared["ntu"]), "--data", str(prepared["coco"]), "--out",
               str(tmp_path / "run"), "--config", str(settings), "--preset", "tiny", "--device", "cpu"]
    env = {k: v for k, v in os.environ.items() if k not in ("WORLD_SIZE", "RANK", "LOCAL_RANK")}
    for options in (["--epochs", "1"], ["--epochs", "2", "--resume"]):
        result = subprocess.run(command + options, capture_output=True, text=True, timeout=300, env=env)
        assert result.returncode == 0, result.stderr[-3000:]
    sizes = sum(len(np.load(prepared[name] / "train" / "num_frames.npy")) for name in ("ntu", "coco"))
    steps = [json.loads(line)["step"] for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert steps == list(range(1, 2 * (sizes // 4) + 1))
    assert all(np.isfinite(losses(tmp_path / "run")))
    assert USDRL.from_pretrained(tmp_path / "run" / "model").config.dataset == "mixed"
