"""``usdrl prepare folder``: your own keypoint files -> a prepared dataset -> the task commands."""

import json
import logging

import numpy as np
import pytest
import torch

from usdrl import USDRL, USDRLConfig
from usdrl.cli import main
from usdrl.data.importers import prepare_folder, ratio_split, read_clip_table, read_keypoint_file
from usdrl.data.prepared import SkeletonDataset, read_manifest
from usdrl.errors import ConfigError, DataFormatError
from usdrl.keypoints import get_format


def coco_person(t: int, shift: float = 0.0) -> np.ndarray:
    """``(t, 17, 3)`` COCO-17 pixels + score of a standing person moving right by 2 px a frame."""
    base = np.array([[50, 10], [52, 8], [48, 8], [54, 9], [46, 9], [60, 25], [40, 25], [62, 40], [38, 40],
                     [63, 55], [37, 55], [56, 60], [44, 60], [56, 80], [44, 80], [56, 100], [44, 100]], float)
    frames = base[None] + np.array([2.0, 0.0]) * np.arange(t)[:, None, None] + shift
    scores = np.full((t, 17, 1), 0.9)
    return np.concatenate([frames, scores], axis=-1).astype(np.float32)


def test_coco17_folder_by_hand(tmp_path):
    raw = tmp_path / "raw"
    for label, count in (("wave", 3), ("kick", 2)):
        (raw / label).mkdir(parents=True)
        for k in range(count):
            np.save(raw / label / f"clip{k}.npy", np.stack([coco_person(4 + k), coco_person(4 + k, 1.0)]))
    # a three-person JSON clip with its own image size: the two most energetic persons are kept
    still = coco_person(5) * [1, 1, 1]
    still[:, :, :2] = still[0, :, :2]
    people = [still, coco_person(5, 3.0), coco_person(5, 7.0)]
    (raw / "kick" / "crowd.json").write_text(json.dumps({"keypoints": np.stack(people).tolist(),
                                                         "img_shape": [200, 100], "format": "coco17"}))
    with pytest.raises(ConfigError, match="17 joints fit the keypoint formats: coco17, h36m17, uav17"):
        prepare_folder(raw, tmp_path / "out", workers=1)
    out = prepare_folder(raw, tmp_path / "out", format="coco17", image_size=(320, 240), test_ratio=0.34, workers=1)
    manifest = read_manifest(out)
    assert manifest["source"] == "folder" and manifest["layout"] == "coco17"
    assert manifest["class_names"] == ["kick", "wave"] and manifest["skipped"] == {}
    assert manifest["preprocessing"]["kind"] == "Recipe2D"
    assert {s: manifest["splits"][s]["count"] for s in manifest["splits"]} == {"train": 4, "test": 2}
    everything = {}
    for split in manifest["splits"]:
        data = SkeletonDataset(out, split)
        everything.update({name: (data.padded_clips[i], data.lengths[i], data.labels[i])
                           for i, name in enumerate(data.names)})
    clip, length, label = everything["wave/clip1"]
    assert length == 5 and label == 1 and clip.shape[1:] == (5, 17, 2)
    first = coco_person(5)
    np.testing.assert_allclose(clip[0, :, :, 0], first[:, :, 0] / 320, rtol=1e-6)   # x / width
    np.testing.assert_allclose(clip[1, :, :, 0], first[:, :, 1] / 240, rtol=1e-6)   # y / height
    np.testing.assert_allclose(clip[2, :, :, 0], 0.9, rtol=1e-6)                    # the score channel
    crowd, length, label = everything["kick/crowd"]
    assert length == 5 and label == 0
    kept = np.stack([p[:, 0, 0] for p in people[1:]], axis=-1)          # nose x of the two moving persons
    np.testing.assert_allclose(crowd[0, :length, 0, :], kept / 100, rtol=1e-6)


def test_csv_labels_and_splits_with_mediapipe_json(tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    rng = np.random.default_rng(0)
    rows, split_rows = ["clip,label"], []
    for k in range(4):
        landmarks = rng.uniform(0.2, 0.8, size=(6, 33, 3))                  # x, y normalised + visibility
        (raw / f"v{k}.json").write_text(json.dumps(landmarks.tolist()))
        rows.append(f"v{k},{'jump' if k % 2 else 'sit'}")
        split_rows.append(f"v{k}.json,{'val' if k == 3 else 'train'}")
    (tmp_path / "labels.csv").write_text("\n".join(rows) + "\n")
    (tmp_path / "splits.csv").write_text("\n".join(split_rows) + "\n")
    out = prepare_folder(raw, tmp_path / "out", format="mediapipe33", labels=tmp_path / "labels.csv",
                         splits=tmp_path / "splits.csv", workers=1)
    manifest = read_manifest(out)
    assert manifest["layout"] == "mediapipe33" and manifest["class_names"] == ["jump", "sit"]
    assert list(manifest["splits"]) == ["train", "val"] and manifest["splits"]["val"]["count"] == 1
    val = SkeletonDataset(out, "val")
    assert val.names == ["v3"] and val.labels.tolist() == [0]
    # normalised coordinates stay as they are (image size 1 x 1)
    np.testing.assert_allclose(val.padded_clips[0, :, :, :, 0],
                               np.moveaxis(np.asarray(json.loads((raw / "v3.json").read_text()), np.float32), -1, 0),
                               rtol=1e-6)


def test_mediapipe_world_to_ntu25_is_converted_and_aligned(tmp_path):
    raw = tmp_path / "raw" / "stand"
    raw.mkdir(parents=True)
    fmt = get_format("mediapipe33_world")
    rng = np.random.default_rng(1)
    body = rng.normal(scale=0.3, size=(33, 3))
    body[fmt.index("left_shoulder")], body[fmt.index("right_shoulder")] = [0.2, -0.5, 0.1], [-0.2, -0.5, -0.1]
    np.savez(raw / "a.npz", keypoints=np.repeat(body[None], 3, axis=0))
    out = prepare_folder(tmp_path / "raw", tmp_path / "out", format="mediapipe33_world", layout="ntu25",
                         test_ratio=0.0, workers=1)
    manifest = read_manifest(out)
    assert manifest["layout"] == "ntu25" and manifest["keypoint_formats"] == {"mediapipe33_world": 1}
    assert "spine_mid" in manifest["joint_sources"]["mediapipe33_world"]["stand_in"]
    assert manifest["preprocessing"]["alignment"] == "ntu"
    clip = SkeletonDataset(out, "train").padded_clips[0]
    # ntu alignment: spine_mid at the origin, right minus left shoulder along +x
    np.testing.assert_allclose(clip[:, :, 1, 0], 0.0, atol=1e-6)
    shoulders = clip[:, 0, 8, 0] - clip[:, 0, 4, 0]
    np.testing.assert_allclose(shoulders[1:], 0.0, atol=1e-6)
    assert shoulders[0] > 0
    assert not clip[..., 1].any()                                       # one person: the second slot is empty


def test_bad_files_are_skipped_and_named(tmp_path, caplog):
    raw = tmp_path / "raw" / "walk"
    raw.mkdir(parents=True)
    for k in range(3):
        np.save(raw / f"good{k}.npy", coco_person(3))
    (raw / "broken.json").write_text('{"keypoints": [[1, 2],\n  oops]}')
    np.save(raw / "joints.npy", np.zeros((3, 18, 3), np.float32) + 1)   # 18 joints: not coco17
    (raw / "garbage.npy").write_bytes(b"not numpy")
    np.save(raw / "empty.npy", np.zeros((3, 17, 3), np.float32))
    np.save(raw / "noscore.npy", coco_person(3)[..., :2])                # 2D without scores, padding confidence
    (tmp_path / "raw" / "loose.npy").write_bytes(np.zeros(1).tobytes())   # not in a class folder
    with caplog.at_level(logging.WARNING):
        out = prepare_folder(tmp_path / "raw", tmp_path / "out", format="coco17", image_size=(100, 100),
                             test_ratio=0.0, workers=1)
    skipped = read_manifest(out)["skipped"]
    assert sorted(skipped) == ["loose", "walk/broken", "walk/empty", "walk/garbage", "walk/joints", "walk/noscore"]
    assert "2D keypoints without scores" in skipped["walk/noscore"]
    assert "broken.json, line 2: not valid JSON" in skipped["walk/broken"]
    assert "18 joints, format 'coco17' has 17" in skipped["walk/joints"]
    assert "no joint holds a value" in skipped["walk/empty"]
    assert "not in a class sub-folder" in skipped["loose"]
    assert SkeletonDataset(out, "train").names == ["walk/good0", "walk/good1", "walk/good2"]
    assert "garbage.npy" in caplog.text


def test_nothing_usable_writes_nothing(tmp_path):
    raw = tmp_path / "raw" / "a"
    raw.mkdir(parents=True)
    (raw / "x.json").write_text("[")
    with pytest.raises(DataFormatError, match=r"no usable clip .*x\.json, line 1"):
        prepare_folder(tmp_path / "raw", tmp_path / "out", format="coco17", workers=1)
    assert not (tmp_path / "out").exists() and [p.name for p in tmp_path.iterdir()] == ["raw"]


def test_pixels_without_an_image_size_are_refused(tmp_path):
    raw = tmp_path / "raw" / "a"
    raw.mkdir(parents=True)
    np.save(raw / "x.npy", coco_person(3))
    with pytest.raises(DataFormatError, match="need the image size"):
        prepare_folder(tmp_path / "raw", tmp_path / "out", format="coco17", workers=1, test_ratio=0.0)


def test_csv_errors_name_the_line(tmp_path):
    (tmp_path / "l.csv").write_text("clip,label\na,1\nb\n")
    with pytest.raises(DataFormatError, match=r"l\.csv, line 3: expected two fields"):
        read_clip_table(tmp_path / "l.csv", "label")
    (tmp_path / "l.csv").write_text("a,1\na,2\n")
    with pytest.raises(DataFormatError, match=r"line 2: clip 'a' is listed twice"):
        read_clip_table(tmp_path / "l.csv", "label")


def test_ratio_split_is_per_class_and_seeded():
    names = [f"c{k}" for k in range(10)]
    labels = ["a"] * 5 + ["b"] * 5
    split = ratio_split(names, labels, 0.4, seed=3)
    assert sum(split[n] == "test" for n in names[:5]) == 2 and sum(split[n] == "test" for n in names[5:]) == 2
    assert split == ratio_split(names, labels, 0.4, seed=3) and split != ratio_split(names, labels, 0.4, seed=4)


def test_read_keypoint_file_shapes(tmp_path):
    np.savez(tmp_path / "a.npz", keypoint=np.ones((2, 4, 17, 2), np.float32),
             keypoint_score=np.ones((2, 4, 17), np.float32), img_shape=np.array([480, 640]))
    clip = read_keypoint_file(tmp_path / "a.npz")
    assert clip.keypoints.shape == (2, 4, 17, 2) and clip.scores.shape == (2, 4, 17) and clip.image_shape == (480, 640)
    (tmp_path / "b.json").write_text(json.dumps({"keypoints": [[[1, 2]] * 17], "image_size": [640, 480]}))
    clip = read_keypoint_file(tmp_path / "b.json")
    assert clip.keypoints.shape == (1, 1, 17, 2) and clip.image_shape == (480, 640)
    (tmp_path / "c.json").write_text(json.dumps({"keypoints": [[1, 2], [3]]}))
    with pytest.raises(DataFormatError, match="c.json: field 'keypoints' must be numbers"):
        read_keypoint_file(tmp_path / "c.json")


def test_mediapipe_with_depth_and_visibility_says_what_to_do(tmp_path):
    raw = tmp_path / "raw" / "a"
    raw.mkdir(parents=True)
    np.save(raw / "x.npy", np.full((3, 33, 4), 0.5, np.float32))            # x, y, z, visibility
    with pytest.raises(DataFormatError, match=r"4 channels per joint.*keypoints\[\.\.\., \[0, 1, 3\]\]"):
        prepare_folder(tmp_path / "raw", tmp_path / "out", format="mediapipe33", workers=1)


def test_cli_folder_to_linear_probe_and_finetune(tmp_path, capsys):
    """The user's path with no code: COCO-17 files + labels.csv -> prepare folder -> linear-probe / finetune."""
    from usdrl.data.synthetic import make_clips, project_coco17

    raw = tmp_path / "keypoints"
    raw.mkdir()
    clips = make_clips(16, seed=0, classes=[0, 10])
    rows = []
    for k, (data, n, label) in enumerate(zip(clips.data, clips.lengths, clips.labels, strict=True)):
        xy, score = project_coco17(data[:, :n], image_size=(1080, 1920))            # (M, T, 17, 2), (M, T, 17)
        np.save(raw / f"video{k:02d}.npy", np.concatenate([xy, score[..., None]], axis=-1))
        rows.append(f"video{k:02d},{'drink' if label == 0 else 'wave'}")
    (tmp_path / "labels.csv").write_text("clip,label\n" + "\n".join(rows) + "\n")
    assert main(["prepare", "folder", str(raw), str(tmp_path / "prepared"), "--labels", str(tmp_path / "labels.csv"),
                 "--format", "coco17", "--image-size", "1920", "1080", "--workers", "1"]) == 0
    assert "wrote" in capsys.readouterr().out
    assert read_manifest(tmp_path / "prepared")["class_names"] == ["drink", "wave"]

    torch.manual_seed(0)
    USDRL(USDRLConfig.from_preset("tiny", layout="coco17", hidden_size=32, num_heads=1)).save_pretrained(
        tmp_path / "encoder")
    assert main(["linear-probe", str(tmp_path / "encoder"), "--data", str(tmp_path / "prepared"), "--epochs", "5",
                 "--json"]) == 0
    assert 0 <= json.loads(capsys.readouterr().out)["last_top1"] <= 1
    assert main(["finetune", str(tmp_path / "encoder"), "--data", str(tmp_path / "prepared"), "--epochs", "1",
                 "--batch-size", "4", "--out", str(tmp_path / "tuned"), "--json"]) == 0
    manifest = read_manifest(tmp_path / "prepared")
    assert json.loads(capsys.readouterr().out)["train_clips"] == manifest["splits"]["train"]["count"]
    assert manifest["splits"]["train"]["count"] + manifest["splits"]["test"]["count"] == 16
    assert USDRL.from_pretrained(tmp_path / "tuned").config.num_classes == 2


def _mutants(data: bytes, rng: np.random.Generator, count: int) -> list[bytes]:
    """Corrupted copies of ``data``: truncated, bytes overwritten, JSON tokens replaced."""
    out = []
    for k in range(count):
        kind = k % 3
        if kind == 0:
            out.append(data[: int(rng.integers(0, len(data)))])
        elif kind == 1:
            mutable = bytearray(data)
            for position in rng.integers(0, len(data), size=int(rng.integers(1, 6))):
                mutable[position] = int(rng.integers(0, 256))
            out.append(bytes(mutable))
        else:
            tokens = data.split(b",")
            tokens[int(rng.integers(0, len(tokens)))] = rng.choice(
                [b"null", b"[]", b"{}", b'"x"', b"-1e999", b"true", b'{"keypoints": 1}', b"[[1, [2]]]"])
            out.append(b",".join(tokens))
    return out


def test_fuzzed_files_give_clear_errors_and_the_rest_is_written(tmp_path):
    """Corrupted .json/.npy/.npz files either read or raise DataFormatError; prepare skips them and writes the rest."""
    import io

    good = coco_person(3)
    buffer = io.BytesIO()
    np.save(buffer, good)
    npz = io.BytesIO()
    np.savez(npz, keypoints=good, img_shape=np.array([100, 100]), format=np.array("coco17"))
    samples = {".json": json.dumps({"keypoints": good.tolist(), "image_size": [100, 100], "format": "coco17"})
               .encode(), ".npy": buffer.getvalue(), ".npz": npz.getvalue()}
    rng = np.random.default_rng(0)
    raw = tmp_path / "raw" / "walk"
    raw.mkdir(parents=True)
    for suffix, data in samples.items():
        for k, mutant in enumerate(_mutants(data, rng, 30)):
            path = raw / f"bad{suffix[1:]}{k:02d}{suffix}"
            path.write_bytes(mutant)
            try:
                read_keypoint_file(path)
            except DataFormatError as exc:
                assert str(path) in str(exc)
    np.save(raw / "good.npy", good)
    out = prepare_folder(tmp_path / "raw", tmp_path / "out", format="coco17", image_size=(100, 100),
                         test_ratio=0.0, workers=1)
    names = SkeletonDataset(out, "train").names
    assert "walk/good" in names and len(names) + len(read_manifest(out)["skipped"]) == 91


def test_clips_unlike_most_are_skipped_and_formats_mix(tmp_path):
    raw = tmp_path / "raw" / "a"
    raw.mkdir(parents=True)
    for k in range(3):
        np.savez(raw / f"coco{k}.npz", keypoints=coco_person(3), format=np.array("coco17"))
    np.savez(raw / "halpe.npz", keypoints=np.ones((3, 26, 3), np.float32), format=np.array("halpe26"))
    np.savez(raw / "kinect.npz", keypoints=np.ones((3, 25, 3), np.float32), format=np.array("ntu25"))   # 3D
    out = prepare_folder(tmp_path / "raw", tmp_path / "out", image_size=(100, 100), test_ratio=0.0, workers=1)
    manifest = read_manifest(out)
    assert manifest["skipped"] == {"a/kinect": f"{raw / 'kinect.npz'}: 3D keypoints in a dataset of 2D clips"}
    assert manifest["layout"] == "coco17" and manifest["keypoint_formats"] == {"coco17": 3, "halpe26": 1}
    assert manifest["joint_sources"]["halpe26"] == {"stand_in": [], "missing": []}
