"""Universal models on prepared datasets: UniversalDataset, MixedDataset and the tasks on them.

The prepared datasets are made by the library's own writers from synthetic raw files (NTU-60 3D, NTU-2D
COCO-17 pickles, PKU-MMD sequences) and from keypoint files written here in pixels, so that the
expected universal input is ``to_universal`` of keypoints known by hand.
"""

import json
import logging
import math
import re
import shutil

import numpy as np
import pytest
import torch

from usdrl import USDRL, USDRLConfig, to_universal
from usdrl.data.importers import prepare_folder
from usdrl.data.prepared import (
    LazyClips,
    MixedDataset,
    SkeletonDataset,
    UniversalDataset,
    open_split,
    prepare_dataset,
    read_manifest,
)
from usdrl.data.prepared import views as views_module
from usdrl.data.synthetic_files import write_synthetic_ntu, write_synthetic_ntu2d, write_synthetic_pkummd
from usdrl.engine import RunOptions
from usdrl.errors import ConfigError
from usdrl.universal import UNIVERSAL_JOINTS

FRAMES = 16
SPINE_MID = UNIVERSAL_JOINTS.index("spine_mid")


def universal_config(**overrides) -> USDRLConfig:
    settings = {"layout": "universal", "in_channels": 6, "hidden_size": 32, "num_heads": 1, "num_frames": FRAMES}
    return USDRLConfig.from_preset("tiny", **{**settings, **overrides})


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """``{"ntu": NTU-60 3D, "coco": NTU-2D COCO-17 (images 1080 x 1920), "pku": PKU-MMD phase 1, "pickle": the
    NTU-2D pickle}``, prepared by the library from synthetic raw files."""
    root = tmp_path_factory.mktemp("universal_prepared")
    write_synthetic_ntu(root / "ntu_raw", 24, seed=0)
    write_synthetic_ntu2d(root / "ntu2d.pkl", 24, seed=1)
    write_synthetic_pkummd(root / "pku_raw", 2, seed=0)
    return {"ntu": prepare_dataset("ntu60", root / "ntu_raw", root / "ntu", benchmark="xsub", workers=1),
            "coco": prepare_dataset("ntu2d", root / "ntu2d.pkl", root / "coco", benchmark="xsub", workers=1),
            "pku": prepare_dataset("pkummd1", root / "pku_raw", root / "pku", benchmark="xsub", workers=1),
            "pickle": root / "ntu2d.pkl"}


@pytest.fixture(scope="module")
def coco_untrimmed(prepared, tmp_path_factory):
    """The NTU-2D training clips made into an untrimmed split ``train_untrimmed`` by hand (the library prepares no
    2D sequences): per-frame labels 1 for the first half of each clip, 2 after (3 frame classes), and image shapes
    that differ from sample to sample (even samples 1080 x 1920, odd ones 540 x 1920)."""
    out = tmp_path_factory.mktemp("coco_untrimmed") / "coco2d"
    shutil.copytree(prepared["coco"], out)
    (out / "train").rename(out / "train_untrimmed")
    folder = out / "train_untrimmed"
    lengths = np.load(folder / "num_frames.npy")
    frames = np.load(folder / "data.npy", mmap_mode="r").shape[2]
    labels = np.full((len(lengths), frames), -1, np.int64)
    for i, n in enumerate(lengths):
        labels[i, :n] = 1
        labels[i, n // 2:n] = 2
    np.save(folder / "frame_labels.npy", labels)
    np.save(folder / "labels.npy", np.full(len(lengths), -1, np.int64))
    np.save(folder / "image_shape.npy", np.array([[1080, 1920] if i % 2 == 0 else [540, 1920]
                                                  for i in range(len(lengths))], np.float64))
    manifest = json.loads((out / "manifest.json").read_text())
    entry = manifest["splits"].pop("train")
    entry["kind"] = "untrimmed"
    entry["arrays"]["frame_labels"] = {"shape": [len(lengths), frames], "dtype": "int64"}
    manifest["splits"]["train_untrimmed"] = entry
    manifest["num_frame_classes"] = 3
    (out / "manifest.json").write_text(json.dumps(manifest))
    return out


# -- 2D: the image-size round trip against keypoints written in pixels ------------------------------------
_BODY = np.array([[50, 10], [52, 8], [48, 8], [54, 9], [46, 9], [60, 25], [40, 25], [62, 40], [38, 40],
                  [63, 55], [37, 55], [56, 60], [44, 60], [56, 80], [44, 80], [56, 100], [44, 100]], float)


def coco_pixels(frames: int, step: float, shift: float = 0.0) -> np.ndarray:
    """One person's COCO-17 keypoints ``(T, 17, 3)`` in pixels (x, y, score), walking ``step`` pixels a frame;
    the last joint (right ankle) is missed by the detector in frame 1 (zero, score 0)."""
    xy = _BODY[None] + np.array([step, 0.5 * step]) * np.arange(frames)[:, None, None] + shift
    scores = np.linspace(0.5, 0.9, 17)[None].repeat(frames, 0)
    person = np.concatenate([xy, scores[..., None]], axis=-1)
    person[1, 16] = 0
    return person.astype(np.float32)


@pytest.fixture(scope="module")
def pixel_folder(tmp_path_factory):
    """COCO-17 clips of 5 frames in pixels: three in images of 240 x 320 (``--image-size 320 240``), one
    two-person clip in an image of 200 x 100 (its own ``img_shape``). Returns ``(raw folder, {clip: keypoints
    (M, T, 17, 3)})``."""
    raw = tmp_path_factory.mktemp("pixels")
    clips = {"wave/a": coco_pixels(5, 2.0)[None], "wave/b": coco_pixels(5, -1.5, 30)[None],
             "kick/c": coco_pixels(5, 4.0, 10)[None],
             "kick/d": np.stack([coco_pixels(5, 3.0), coco_pixels(5, 0.5, 20)])}
    for name, keypoints in clips.items():
        (raw / name).parent.mkdir(exist_ok=True)
        if name == "kick/d":
            (raw / f"{name}.json").write_text(json.dumps({"keypoints": keypoints.tolist(), "img_shape": [200, 100]}))
        else:
            np.save(raw / f"{name}.npy", keypoints)
    return raw, clips


def by_name(dataset) -> dict:
    return {name: dataset[i] for i, name in enumerate(dataset.names)}


def test_2d_items_are_to_universal_of_the_pixels(pixel_folder, tmp_path):
    raw, clips = pixel_folder
    out = prepare_folder(raw, tmp_path / "coco", format="coco17", image_size=(320, 240), test_ratio=0.0, workers=1)
    base = SkeletonDataset(out, "train", num_frames=5)            # 5 frames: resampling keeps them as they are
    shapes = dict(zip(base.names, base.image_shapes.tolist(), strict=True))
    assert shapes == {"kick/c": [240, 320], "kick/d": [200, 100], "wave/a": [240, 320], "wave/b": [240, 320]}
    view = UniversalDataset(base)
    assert view.has_scores and view.dims == 2 and view.format.name == "coco17" and len(view) == 4
    for name, (clip, label) in by_name(view).items():
        keypoints = np.zeros((2, 5, 17, 3), np.float32)         # the prepared data pads to two persons
        keypoints[: len(clips[name])] = clips[name]
        assert clip.shape == (6, 5, 30, 2) and clip.dtype == np.float32
        np.testing.assert_allclose(clip, to_universal(keypoints, "coco17"), atol=2e-5)
        assert label == base.labels[base.names.index(name)]
    # the image size matters: the stored coordinates, divided by it, give other bodies
    stored = base[base.names.index("kick/c")][0].transpose(3, 1, 2, 0)
    assert np.abs(to_universal(stored, "coco17") - by_name(view)["kick/c"][0]).max() > 0.05
    # the missed ankle and the absent second person stay absent
    ankle = UNIVERSAL_JOINTS.index("right_ankle")
    assert not by_name(view)["wave/a"][0][:, 1, ankle, 0].any() and not by_name(view)["wave/a"][0][..., 1].any()


def test_2d_zero_padding_gives_no_scores(pixel_folder, tmp_path):
    raw, clips = pixel_folder
    out = prepare_folder(raw, tmp_path / "zero", format="coco17", image_size=(320, 240), test_ratio=0.0,
                         padding="zero", workers=1)
    view = UniversalDataset(SkeletonDataset(out, "train", num_frames=5))
    assert not view.has_scores
    clip = by_name(view)["wave/b"][0]
    pixels = np.zeros((2, 5, 17, 2), np.float32)
    pixels[0] = clips["wave/b"][0, :, :, :2]
    np.testing.assert_allclose(clip, to_universal(pixels, "coco17"), atol=2e-5)
    assert clip[3, 0, UNIVERSAL_JOINTS.index("nose"), 0] == 1             # no scores: a present joint's is 1


def test_2d_keypoints_in_a_3d_format(pixel_folder, tmp_path):
    """COCO-17 detections prepared into the layout of H36M-17, a 3D format: 2D clips (x, y, score) read as 2D
    keypoints with scores, not as x, y, z."""
    raw, _ = pixel_folder
    out = prepare_folder(raw, tmp_path / "h36m", format="coco17", layout="h36m17", image_size=(320, 240),
                         test_ratio=0.0, workers=1)
    base = SkeletonDataset(out, "train", num_frames=5)
    view = UniversalDataset(base)
    assert view.dims == 2 and view.has_scores and view.format.name == "h36m17"
    for index in range(len(base)):
        height, width = base.image_shapes[index]
        pixels = base[index][0].transpose(3, 1, 2, 0) * np.array([width, height, 1], np.float32)
        np.testing.assert_allclose(view[index][0], to_universal(pixels, "h36m17", has_scores=True), atol=2e-5)
        assert not view[index][0][5].any()                               # depth: 0, 2D


def test_3d_folder_data_keeps_every_joint_its_format_gives(tmp_path):
    """A 3D folder dataset (H36M-17, aligned on its pelvis): every universal joint H36M gives is present in every
    frame of the item, though the alignment put the pelvis at the origin."""
    rng = np.random.default_rng(2)
    (tmp_path / "raw" / "sit").mkdir(parents=True)
    np.save(tmp_path / "raw" / "sit" / "a.npy", rng.uniform(0.5, 1.5, (1, 6, 17, 3)).astype(np.float32))
    out = prepare_folder(tmp_path / "raw", tmp_path / "h36m", format="h36m17", test_ratio=0.0, workers=1)
    base = SkeletonDataset(out, "train", num_frames=6)
    assert not base[0][0][:, :, 0, 0].any()                             # the pelvis at the origin
    view = UniversalDataset(base)
    assert view.dims == 3 and view.centre_joint == 0
    given = to_universal(rng.uniform(0.5, 1.5, (1, 1, 17, 3)), "h36m17")[3, 0, :, 0] > 0   # what H36M gives
    assert given.sum() > 10
    np.testing.assert_array_equal(view[0][0][3, :, :, 0] > 0, np.broadcast_to(given, (6, 30)))


def test_normalised_format_gets_its_image_size_back(tmp_path):
    rng = np.random.default_rng(0)
    landmarks = np.concatenate([rng.uniform(0.3, 0.7, (1, 6, 33, 2)), rng.uniform(0.5, 1, (1, 6, 33, 1))], -1)
    (tmp_path / "raw" / "jump").mkdir(parents=True)
    (tmp_path / "raw" / "jump" / "m.json").write_text(json.dumps({"keypoints": landmarks.tolist(),
                                                                  "img_shape": [480, 640]}))
    out = prepare_folder(tmp_path / "raw", tmp_path / "mp", format="mediapipe33", test_ratio=0.0, workers=1)
    view = UniversalDataset(SkeletonDataset(out, "train", num_frames=6))
    keypoints = np.zeros((2, 6, 33, 3), np.float32)
    keypoints[0] = landmarks[0]
    np.testing.assert_allclose(view[0][0], to_universal(keypoints, "mediapipe33", image_size=(480, 640)), atol=2e-5)


def test_ntu2d_padded_clips_in_chunks(prepared, monkeypatch):
    """``padded_clips`` converts the stored samples as read, chunk by chunk: each is to_universal of the stored
    x, y times the images' 1920 x 1080 (the synthetic pickle's img_shape), with their scores."""
    monkeypatch.setattr(views_module, "CHUNK", 3)
    base = SkeletonDataset(prepared["coco"], "train", num_frames=FRAMES)
    np.testing.assert_array_equal(base.image_shapes, [[1080, 1920]] * len(base))
    view = UniversalDataset(base)
    clips = view.padded_clips
    assert isinstance(clips, LazyClips) and clips.shape == (len(base), 6, base.padded_clips.shape[2], 30, 2)
    stored = np.asarray(base.padded_clips).transpose(0, 4, 2, 3, 1) * np.array([1920, 1080, 1], np.float32)
    expected = np.stack([to_universal(sample, "coco17") for sample in stored])
    everything = np.asarray(clips)
    np.testing.assert_allclose(everything, expected, atol=2e-5)
    n = int(base.lengths[4])
    np.testing.assert_array_equal(clips[4, :, :n], everything[4, :, :n])
    np.testing.assert_array_equal(clips[[7, 1]], everything[[7, 1]])
    np.testing.assert_array_equal(clips[-2:], everything[-2:])
    np.testing.assert_array_equal(clips[2:5, :, :n], everything[2:5, :, :n])
    assert not everything[4, :, n:].any()                               # zero after the valid frames
    assert clips.ndim == 5 and len(clips) == len(base) and clips[3:3].shape == (0, *clips.shape[1:])
    assert clips[[]].dtype == np.float32 and np.asarray(clips, dtype=np.float64).dtype == np.float64
    for key in ((Ellipsis, 0), (None,), ()):
        with pytest.raises(IndexError, match="^index the samples first"):
            clips[key]


def test_lazy_clips_read_in_chunks_as_float32(monkeypatch):
    monkeypatch.setattr(views_module, "CHUNK", 2)
    calls = []

    def read(rows):
        calls.append(rows.tolist())
        return rows[:, None].astype(np.float64) * 10

    clips = LazyClips((5, 1), read)
    out = clips[[4, 0, 2]]
    assert out.dtype == np.float32 and out.tolist() == [[40], [0], [20]] and calls == [[4, 0], [2]]


# -- 3D ------------------------------------------------------------------------------------------------------------
def test_3d_items_keep_the_centre_joint(prepared):
    """The prepared NTU clips have body 0's spine middle at the origin in every frame; the item is to_universal of
    the transposed clip, with that joint present where to_universal alone would drop it."""
    base = SkeletonDataset(prepared["ntu"], "train", num_frames=FRAMES)
    assert base.image_shapes is None and not (prepared["ntu"] / "train" / "image_shape.npy").exists()
    view = UniversalDataset(base)
    assert view.dims == 3 and view.centre_joint == 1 and not view.has_scores
    for index in range(len(base)):
        clip, label = base[index]
        out, out_label = view[index]
        assert out_label == label and out.shape == (6, FRAMES, 30, 2)
        assert not clip[:, :, 1, 0].any()                         # the spine middle of body 0 at the origin
        expected = to_universal(clip.transpose(3, 1, 2, 0), "ntu25")
        assert not expected[:, :, SPINE_MID, 0].any()             # which to_universal alone takes for absent
        others = np.ones(30, bool)
        others[SPINE_MID] = False
        np.testing.assert_allclose(out[:, :, others, 0], expected[:, :, others, 0], atol=1e-5)
        np.testing.assert_allclose(out[..., 1], expected[..., 1], atol=1e-5)
        # the spine middle, by geometry: out = (p - c) / s for every joint, so at p = 0 it is out_a - p_a / s
        joints = clip.transpose(3, 1, 2, 0)[0]                    # (T, 25, 3) of body 0
        base_joint, neck = 0, 2                                   # NTU spine base and neck
        s = np.linalg.norm(joints[:, neck] - joints[:, base_joint], axis=-1) / np.linalg.norm(
            out[:3, :, neck, 0] - out[:3, :, base_joint, 0], axis=0)
        np.testing.assert_allclose(out[:3, :, SPINE_MID, 0], out[:3, :, base_joint, 0] - joints[:, base_joint].T / s,
                                   atol=1e-4)
        np.testing.assert_array_equal(out[3:, :, SPINE_MID, 0], 1)      # score, exact, depth
    # the stored samples, converted in chunks, are the items at their own length
    rows = view.padded_clips[:3]
    for index in range(3):
        n = int(base.lengths[index])
        alike = UniversalDataset(SkeletonDataset(prepared["ntu"], "train", num_frames=n))
        np.testing.assert_allclose(rows[index, :, :n], alike[index][0], atol=1e-5)


def test_3d_joints_stay_present_whatever_their_depth(prepared):
    """A hand-made 3D clip, body 0's centre joint at the origin and two joints on the depth axis: every joint of
    body 0 stays present, and the values are those of the clip moved away from the origin (to_universal centres
    each clip, so moving it changes nothing else)."""
    view = UniversalDataset(SkeletonDataset(prepared["ntu"], "train", num_frames=FRAMES))
    rng = np.random.default_rng(3)
    clip = np.zeros((3, 2, 25, 2), np.float32)                          # (C, T, V, M), body 1 absent
    clip[..., 0] = rng.uniform(-1, 1, (3, 2, 25))
    clip[:, :, 3, 0] = [[0, 0], [0, 0], [1.5, 1.5]]                     # the deepest joint, and one 1 nearer,
    clip[:, :, 4, 0] = [[0, 0], [0, 0], [0.5, 0.5]]                     # both on the depth axis
    clip[:, :, 1, 0] = 0                                                # the centre joint
    out = view.convert(clip[None], np.array([0]))[0]
    given = to_universal(rng.uniform(0.5, 1.5, (1, 1, 25, 3)), "ntu25")[3, 0, :, 0] > 0   # what NTU-25 gives
    np.testing.assert_array_equal(out[3, :, :, 0] > 0, np.broadcast_to(given, (2, 30)))
    assert not out[..., 1].any()
    moved = clip.transpose(3, 1, 2, 0).copy()
    moved[0] += np.array([0, 0, 10], np.float32)
    np.testing.assert_allclose(out, to_universal(moved, "ntu25"), atol=1e-5)


def test_windows_past_the_end_stay_absent(prepared):
    view = SkeletonDataset.for_model(prepared["pku"], "test_untrimmed", universal_config(), head=False,
                                     sampling="windows")
    assert isinstance(view, UniversalDataset) and view.dims == 3 and view.centre_joint == 1   # the untrimmed recipe
    last = len(view) - 1
    sequence, start = view.windows[last]
    valid = int(view.lengths[sequence]) - int(start)
    assert 0 < valid < FRAMES                                     # the last window runs past the sequence
    clip, labels = view[last]
    assert clip[:, :valid].any() and not clip[:, valid:].any()
    np.testing.assert_array_equal(labels, view.dataset[last][1])
    assert (labels[valid:] == -1).all()


def test_2d_windows_use_their_sequence_image_shape(coco_untrimmed):
    base = SkeletonDataset(coco_untrimmed, "train_untrimmed", sampling="windows", num_frames=FRAMES)
    view = UniversalDataset(base)
    assert len(view) > len(base.lengths)                               # several windows in a sequence
    for index in range(len(view)):
        sequence, start = (int(v) for v in base.windows[index])
        valid = min(FRAMES, int(base.lengths[sequence]) - start)
        height, width = (1080, 1920) if sequence % 2 == 0 else (540, 1920)
        window = np.zeros((2, FRAMES, 17, 3), np.float32)
        stored = np.asarray(base.padded_clips[sequence, :, start:start + valid]).transpose(3, 1, 2, 0)
        window[:, :valid] = stored * np.array([width, height, 1], np.float32)
        clip, labels = view[index]
        np.testing.assert_allclose(clip, to_universal(window, "coco17"), atol=2e-5)
        np.testing.assert_array_equal(labels, base[index][1])


# -- opening for a model, mixing -------------------------------------------------------------------------------
def test_for_model_and_open_split(prepared):
    config = universal_config()
    view = SkeletonDataset.for_model(prepared["coco"], "train", config)
    assert isinstance(view, UniversalDataset) and view.input_shape == (6, FRAMES, 30, 2) and view.layout == "universal"
    assert open_split(prepared["coco"] / "test", model=config).split == "test"
    base = view.dataset
    for attribute in ("labels", "lengths"):
        np.testing.assert_array_equal(getattr(view, attribute), getattr(base, attribute))
    assert (view.names, view.num_classes, view.path, view.manifest) == (base.names, 60, base.path, base.manifest)
    # a single-layout model still gets the plain split
    ntu_model = USDRLConfig.from_preset("tiny", layout="ntu25", hidden_size=32, num_heads=1, num_frames=FRAMES)
    assert type(SkeletonDataset.for_model(prepared["ntu"], "train", ntu_model)) is SkeletonDataset

    mixed = open_split([prepared["ntu"], prepared["coco"]], "train", model=config)
    assert isinstance(mixed, MixedDataset)
    assert [d.format.name for d in mixed.datasets] == ["ntu25", "coco17"]
    sizes = [len(SkeletonDataset(prepared[k], "train")) for k in ("ntu", "coco")]
    assert len(mixed) == sum(sizes) and mixed.num_classes == 60 and mixed.layout == "universal"
    np.testing.assert_array_equal(mixed[sizes[0]][0], mixed.datasets[1][0][0])
    np.testing.assert_array_equal(mixed.labels, np.concatenate([d.labels for d in mixed.datasets]))
    assert mixed.names == mixed.datasets[0].names + mixed.datasets[1].names
    assert mixed.manifest["source"] == "mixed" and mixed.manifest["benchmark"] == "ntu60 xsub, ntu2d xsub"
    assert SkeletonDataset.for_model([prepared["ntu"], prepared["coco"]], "train", config).names == mixed.names


def test_mixed_untrimmed_splits(prepared):
    """Two untrimmed splits of different lengths as one: windows index the joined sequences, per-frame labels and
    padded clips are padded to the longer."""
    config = universal_config()
    parts = [SkeletonDataset.for_model(prepared["pku"], split, config, head=False, sampling="windows")
             for split in ("train_untrimmed", "test_untrimmed")]
    mixed = MixedDataset(parts)
    longest = max(p.padded_clips.shape[2] for p in parts)
    assert mixed.padded_clips.shape == (2, 6, longest, 30, 2) and mixed.split == "train_untrimmed+test_untrimmed"
    for row, part in enumerate(parts):
        n = part.padded_clips.shape[2]
        np.testing.assert_array_equal(mixed.padded_clips[row, :, :n], part.padded_clips[0])
        assert not mixed.padded_clips[row, :, n:].any()
        np.testing.assert_array_equal(mixed.frame_labels[row, :n], part.frame_labels[0])
        assert (mixed.frame_labels[row, n:] == -1).all()
    np.testing.assert_array_equal(mixed.windows[: len(parts[0])], parts[0].windows)
    np.testing.assert_array_equal(mixed.windows[len(parts[0]):, 0], 1)
    np.testing.assert_array_equal(mixed.windows[len(parts[0]):, 1], parts[1].windows[:, 1])
    mixed.check_config(config)
    with pytest.raises(ConfigError, match="num_frame_classes 5 in the config, 52 in the data"):
        mixed.check_config(universal_config(num_frame_classes=5))
    mixed.check_config(universal_config(num_frame_classes=5), head=False)


def test_training_finds_the_random_crops_of_mixed_views(prepared):
    """The engine keeps the random-crop generators of the datasets it trains on (found through ``.datasets`` and
    ``.dataset``): those of the SkeletonDatasets inside the views, once each."""
    from usdrl.engine import _base_datasets

    mixed = open_split([prepared["ntu"], prepared["coco"]], "train", model=universal_config(), head=False,
                       sampling="random_crop", seed=0)
    found = [d for d in _base_datasets(mixed) if hasattr(d, "rng_state")]
    assert found == [view.dataset for view in mixed.datasets]


# -- the tasks -------------------------------------------------------------------------------------------------
@pytest.fixture
def model():
    torch.manual_seed(0)
    return USDRL(universal_config())


@pytest.mark.parametrize("which", ["ntu", "coco", "mixed"])
def test_tasks_run_on_prepared_data(prepared, model, which, tmp_path):
    from usdrl.tasks.finetune import FinetuneConfig, finetune
    from usdrl.tasks.recognition import ProbeConfig, linear_probe
    from usdrl.tasks.retrieval import knn_evaluation

    counts = {key: (len(SkeletonDataset(prepared[key], "train")), len(SkeletonDataset(prepared[key], "test")))
              for key in ("ntu", "coco")}
    if which == "mixed":
        data = ([prepared["ntu"] / "train", prepared["coco"] / "train"],
                [prepared["ntu"] / "test", prepared["coco"] / "test"])
        train, test = (counts["ntu"][i] + counts["coco"][i] for i in (0, 1))
    else:
        data, (train, test) = prepared[which], counts[which]
    probe = linear_probe(model, data, config=ProbeConfig(epochs=2, batch_size=8))
    assert probe.train_clips == train and probe.confusion.shape == (60, 60) and probe.confusion.sum() == test
    knn = knn_evaluation(model, data)
    assert (knn.gallery, knn.queries) == (train, test) and 0 <= knn.accuracy <= 1
    tuned = finetune(model, data, config=FinetuneConfig(epochs=1, batch_size=8),
                     run=RunOptions(run_dir=tmp_path / "finetune"))
    assert tuned.confusion.sum() == test and len(tuned.history) == 1
    records = [json.loads(line) for line in (tmp_path / "finetune" / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in records if "loss" in r]
    assert len(losses) == math.ceil(train / 8) and all(math.isfinite(loss) for loss in losses)
    if which == "mixed":
        assert model.config.protocol is not None and "mixed" in model.config.protocol


def test_train_detector_on_universal_windows(prepared, model):
    from usdrl.tasks.detection import train_detector
    from usdrl.tasks.finetune import FinetuneConfig

    losses = train_detector(model, prepared["pku"], config=FinetuneConfig(epochs=1, batch_size=8))
    assert len(losses) == 1 and math.isfinite(losses[0])
    assert model.frame_head.out_features == 52
    both = [prepared["pku"] / "train_untrimmed", prepared["pku"] / "test_untrimmed"]
    losses = train_detector(model, both, config=FinetuneConfig(epochs=1, batch_size=8))
    assert len(losses) == 1 and math.isfinite(losses[0])


def test_train_detector_on_3d_and_2d_sequences_mixed(prepared, coco_untrimmed, model):
    """PKU-MMD 3D sequences and hand-made COCO-17 2D ones (3 frame classes) in one training set: the head gets
    the larger number of frame classes, and every window of both is trained on."""
    from usdrl.tasks.detection import train_detector
    from usdrl.tasks.finetune import FinetuneConfig

    both = [prepared["pku"] / "train_untrimmed", coco_untrimmed / "train_untrimmed"]
    windows = open_split(both, model=model, head=False, sampling="windows")
    assert [d.format.name for d in windows.datasets] == ["ntu25", "coco17"] and windows.num_classes == 52
    losses = train_detector(model, both, config=FinetuneConfig(epochs=1, batch_size=8))
    assert len(losses) == 1 and math.isfinite(losses[0]) and model.frame_head.out_features == 52


def test_dataset_without_preprocessing_record(prepared, tmp_path):
    """A manifest without its preprocessing: the clips have the dimensions of the layout's format and no joint is
    known to be at the origin, so the items are to_universal of the clips as they are."""
    manifest = read_manifest(prepared["ntu"])
    del manifest["preprocessing"]
    data = tmp_path / "bare"
    shutil.copytree(prepared["ntu"], data)
    (data / "manifest.json").write_text(json.dumps(manifest))
    view = UniversalDataset(SkeletonDataset(data, "test", num_frames=FRAMES))
    assert view.dims == 3 and view.centre_joint is None
    clip = view.dataset[2][0]
    np.testing.assert_allclose(view[2][0], to_universal(clip.transpose(3, 1, 2, 0), "ntu25"), atol=1e-5)


def test_early_prediction_reads_universal_input(prepared, model):
    from usdrl.tasks.early import early_prediction

    model.reset_classifier(60)
    result = early_prediction(model, prepared["coco"], ratios=(0.5, 1.0))
    assert set(result.accuracy) == {0.5, 1.0} and all(0 <= a <= 1 for a in result.accuracy.values())


# -- errors --------------------------------------------------------------------------------------------------------
def copy_with_manifest(source, target, **changes):
    shutil.copytree(source, target)
    manifest = json.loads((target / "manifest.json").read_text())
    manifest.update(changes)
    (target / "manifest.json").write_text(json.dumps(manifest))
    return target


def test_unregistered_layout_is_refused(prepared, tmp_path):
    data = copy_with_manifest(prepared["ntu"], tmp_path / "custom", layout="my_skeleton")
    SkeletonDataset(data, "train")                                # readable as it is
    with pytest.raises(ConfigError, match=r"custom/train \(ntu60 xsub\): layout 'my_skeleton' is not a registered "
                                          r"keypoint format, so a universal model cannot read it; the formats are "
                                          r"coco17, coco_wholebody23, .*, utd_mhad20 \(usdrl.keypoints."
                                          r"register_format adds one\)$"):
        SkeletonDataset.for_model(data, "train", universal_config())


def test_channels_that_do_not_fit_the_layout_are_refused(prepared, tmp_path):
    recipe = read_manifest(prepared["coco"])["preprocessing"]
    data = copy_with_manifest(prepared["coco"], tmp_path / "coco3d", preprocessing={**recipe, "kind": "Recipe3D"})
    with pytest.raises(ConfigError, match=r"coco3d/train \(ntu2d xsub\): 3D clips of 3 channels per joint in the 2D "
                                          r"keypoint format coco17; a universal model reads 3 channels per joint \(x, "
                                          r"y, z\) of a format with at least 3 dimensions$"):
        SkeletonDataset.for_model(data, "train", universal_config())
    # 4-channel datasets (hand-made arrays, consistent with their manifests)
    for key, dims, what in (("ntu", 3, "x, y, z"), ("coco", 2, "x, y and a score (or zero)")):
        four = copy_with_manifest(prepared[key], tmp_path / f"four_{key}", num_channels=4)
        manifest = json.loads((four / "manifest.json").read_text())
        for split, entry in manifest["splits"].items():
            array = np.load(four / split / "data.npy")
            np.save(four / split / "data.npy", np.concatenate([array, array[:, :1]], axis=1))
            entry["arrays"]["data"]["shape"][1] = 4
        (four / "manifest.json").write_text(json.dumps(manifest))
        with pytest.raises(ConfigError, match=rf"{dims}D clips of 4 channels per joint .* reads 3 channels per joint "
                                              rf"\({re.escape(what)}\) of a format with at least {dims} dimensions$"):
            SkeletonDataset.for_model(four, "train", universal_config())


def test_legacy_2d_scaling_is_refused(prepared, tmp_path):
    legacy = prepare_dataset("ntu2d", prepared["pickle"], tmp_path / "legacy", benchmark="xsub", workers=1,
                             legacy_2d_norm=True)
    with pytest.raises(ConfigError, match=r"legacy/train \(ntu2d xsub\) was prepared with legacy_2d_norm \(the "
                                          r"reference's NTU-2D scaling, which leaves a body's proportions unknown\); "
                                          r"prepare it again without it for a universal model$") as error:
        SkeletonDataset.for_model(legacy, "train", universal_config())
    assert error.value.keywords == ("legacy_2d_norm",)


def test_config_checks(prepared):
    base = SkeletonDataset(prepared["ntu"], "train", num_frames=FRAMES)
    with pytest.raises(ConfigError, match="a universal model reads .*UniversalDataset"):
        base.check_config(universal_config())
    ntu_config = USDRLConfig.from_preset("tiny", layout="ntu25", hidden_size=32, num_heads=1, num_frames=FRAMES)
    with pytest.raises(ConfigError, match="as universal input.*layout 'ntu25' in the config, 'universal' in the data"
                                          ".*channels 3 in the config, 6 in the data"):
        UniversalDataset(base).check_config(ntu_config)
    with pytest.raises(ConfigError, match="frames 32 in the config, 16 in the data"):
        UniversalDataset(base).check_config(universal_config(num_frames=32))
    with pytest.raises(ConfigError, match="num_classes 7 in the config, 60 in the data"):
        UniversalDataset(base).check_config(universal_config(num_classes=7))
    UniversalDataset(base).check_config(universal_config(num_classes=7), head=False)
    with pytest.raises(ConfigError, match="^UniversalDataset reads a SkeletonDataset, got list$"):
        UniversalDataset([(base[0][0], 0)])
    with pytest.raises(ConfigError, match="num_classes 7 in the config, 60 in the data"):
        SkeletonDataset.for_model(prepared["ntu"], "train", universal_config(num_classes=7))
    SkeletonDataset.for_model(prepared["ntu"], "train", universal_config(num_classes=7), head=False)
    with pytest.raises(ConfigError, match="layout 'ntu25' in the config, 'coco17' in the data"):
        open_split([prepared["ntu"], prepared["coco"]], "train", model=ntu_config)


def test_mixed_datasets_must_agree(prepared, pixel_folder, tmp_path):
    plain = [SkeletonDataset(prepared[k], "train", num_frames=FRAMES) for k in ("ntu", "coco")]
    with pytest.raises(ConfigError, match=r"differ in layout \(read datasets of different layouts with a universal "
                                          r"model: open_split\(\[...\], split, model=universal_model\)\): coco17, "
                                          "ntu25$"):
        MixedDataset(plain)
    with pytest.raises(ConfigError, match="^a MixedDataset needs at least one dataset$"):
        MixedDataset([])
    ntu = prepared["ntu"]
    with pytest.raises(ConfigError, match=r"differ in clip shape \(C, T, V, M\) \(open them for one model\): "
                                          r"\(3, 16, 25, 2\), \(3, 8, 25, 2\)$"):
        MixedDataset([SkeletonDataset(ntu, "train", num_frames=16), SkeletonDataset(ntu, "train", num_frames=8)])
    with pytest.raises(ConfigError, match="differ in kind of split: clips, untrimmed$"):
        MixedDataset([SkeletonDataset(prepared["pku"], "train"), SkeletonDataset(prepared["pku"], "train_untrimmed",
                                                                                 sampling="windows", num_frames=64)])
    with pytest.raises(ConfigError, match="differ in sampling: random_crop, resample$"):
        MixedDataset([SkeletonDataset(ntu, "train"), SkeletonDataset(ntu, "train", sampling="random_crop")])
    # a plain list of items mixes too, until an attribute only datasets have is asked for
    view = UniversalDataset(SkeletonDataset(ntu, "train", num_frames=FRAMES))
    items = MixedDataset([view, [(view[0][0], 5)]])
    assert len(items) == len(view) + 1 and items[-1][1] == 5 and items.class_names is None
    with pytest.raises(ConfigError, match=r"^a list among the mixed datasets has no .labels$"):
        _ = items.labels
    raw, _ = pixel_folder
    first = prepare_folder(raw, tmp_path / "first", format="coco17", image_size=(320, 240), test_ratio=0.0,
                           workers=1)
    renamed = tmp_path / "renamed"
    shutil.copytree(raw, renamed)
    (renamed / "wave").rename(renamed / "jump")                  # classes ["jump", "kick"] against ["kick", "wave"]
    second = prepare_folder(renamed, tmp_path / "second", format="coco17", image_size=(320, 240), test_ratio=0.0,
                            workers=1)
    with pytest.raises(ConfigError, match=r"name their classes differently \(class 0 is 'kick' in one, 'jump' in"):
        open_split([second, first], "train", model=universal_config())
    same = open_split([first, first], "train", model=universal_config())
    assert same.class_names == ["kick", "wave"] and same.num_classes == 2


def test_2d_dataset_without_image_shapes_is_read_with_a_warning(prepared, tmp_path, caplog):
    """A 2D dataset prepared before image_shape.npy existed stays readable; the universal input then reads its
    stored (divided) coordinates and says so."""
    old = tmp_path / "old"
    shutil.copytree(prepared["coco"], old)
    manifest = json.loads((old / "manifest.json").read_text())
    for split, entry in manifest["splits"].items():
        del entry["arrays"]["image_shape"]
        (old / split / "image_shape.npy").unlink()
    (old / "manifest.json").write_text(json.dumps(manifest))
    base = SkeletonDataset(old, "train", num_frames=FRAMES)
    assert base.image_shapes is None
    with caplog.at_level(logging.WARNING, logger="usdrl.data.prepared.views"):
        UniversalDataset(SkeletonDataset(prepared["ntu"], "train"))        # 3D: nothing to say
        assert not caplog.records
        view = UniversalDataset(base)
        UniversalDataset(SkeletonDataset(old, "test"))                     # another split: said once per split
        UniversalDataset(base)
    assert [r.getMessage() for r in caplog.records] == [
        f"{folder}: its 2D keypoints were divided by their images' width and height, which this prepared dataset does "
        "not record (it predates image_shape.npy), so a universal model reads its bodies squeezed by the aspect "
        "ratio; prepare it again to keep their proportions" for folder in (old / "train", old / "test")]
    clip = base[0][0]
    np.testing.assert_allclose(view[0][0], to_universal(clip.transpose(3, 1, 2, 0), "coco17"), atol=2e-5)


def test_bad_image_shapes_are_refused(prepared, tmp_path):
    from usdrl.errors import DataFormatError

    bad = tmp_path / "bad"
    shutil.copytree(prepared["coco"], bad)
    shapes = np.load(bad / "train" / "image_shape.npy")
    shapes[2] = [0, 1920]
    np.save(bad / "train" / "image_shape.npy", shapes)
    with pytest.raises(DataFormatError, match=r"image_shape.npy: sample 2 .* has image shape \[0.0, 1920.0\]"):
        SkeletonDataset(bad, "train")


def test_detection_on_a_prepared_split_converts_each_window_alone(prepared, model):
    """``detect`` / ``evaluate_*`` on a prepared untrimmed split with a universal model: the windows are cut from
    the stored sequence and converted one by one (as the training windows are), not the whole sequence at once."""
    from usdrl.tasks.detection import (
        DetectionConfig,
        detect_dataset,
        evaluate_detection,
        evaluate_segmentation,
        frame_scores,
    )
    from usdrl.tasks.metrics import proposals_from_scores

    model.reset_frame_classifier(52)
    with torch.no_grad():
        model.frame_head.weight *= 50                       # probabilities far from uniform
    model.eval()
    view = open_split(prepared["pku"], "test_untrimmed", model=model, head=False, sampling="windows")
    stored = view.dataset.padded_clips
    expected = {}
    for index, name in enumerate(view.names):
        length = int(view.lengths[index])
        starts = list(range(0, length, 8))
        starts = starts[: next(i for i, s in enumerate(starts) if s + FRAMES >= length) + 1]
        total, count = np.zeros((length, 52)), np.zeros((length, 1))
        for start in starts:
            window = np.zeros((1, *stored.shape[1:2], FRAMES, *stored.shape[3:]), np.float32)
            part = stored[index, :, start:min(start + FRAMES, length)]
            window[0, :, : part.shape[1]] = part
            with torch.no_grad():
                p = model.forward_frames(torch.from_numpy(view.convert(window, np.array([index])))).softmax(-1)[0]
            end = min(start + FRAMES, length)
            total[start:end] += p[: end - start].numpy()
            count[start:end] += 1
        expected[name] = total / count
    config = DetectionConfig(stride=8, threshold=0.05)
    found = detect_dataset(model, prepared["pku"], config=config)
    assert set(found) == set(expected)
    for name, scores in expected.items():
        wanted = proposals_from_scores(scores, 0.05, background=0)
        assert [p[:3] for p in found[name]] == [p[:3] for p in wanted]
        np.testing.assert_allclose([p[3] for p in found[name]], [p[3] for p in wanted], atol=1e-5)
    whole = view.padded_clips          # the whole sequence converted at once gives other scores
    name = view.names[0]
    assert not np.allclose(frame_scores(model, whole[0, :, : int(view.lengths[0])], stride=8).numpy(),
                           expected[name], atol=1e-3)
    segmentation = evaluate_segmentation(model, prepared["pku"], config=config)
    truths = view.frame_labels
    accuracy = np.mean(np.concatenate([expected[n].argmax(1) == truths[i, : int(view.lengths[i])]
                                       for i, n in enumerate(view.names)]))
    assert segmentation["Acc"] == pytest.approx(100 * accuracy, abs=1e-9)
    assert set(evaluate_detection(model, prepared["pku"], config=config)) == {0.1, 0.2, 0.3, 0.4, 0.5}
