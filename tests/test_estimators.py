"""``usdrl prepare keypoints`` (COCO results JSON, OpenPose frames) and ``usdrl prepare pyskl`` (any pickle)."""

import json
import pickle

import numpy as np
import pytest

from usdrl.cli import main
from usdrl.data.estimators import read_coco_results, read_openpose_folder
from usdrl.data.importers import prepare_pyskl
from usdrl.data.prepared import SkeletonDataset, read_manifest
from usdrl.errors import ConfigError, DataFormatError
from usdrl.keypoints import get_format


def pose(x: float, joints: int = 17, score: float = 0.8) -> list[float]:
    """A flat ``[x1, y1, s1, ...]`` person: joint j at ``(x + j, 10 * j)``."""
    return np.stack([x + np.arange(joints), 10.0 * np.arange(joints), np.full(joints, score)], 1).ravel().tolist()


def write_results(path, detections):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(detections))


def test_coco_results_with_track_ids_and_a_gap(tmp_path):
    dets = [{"image_id": 5, "category_id": 1, "keypoints": pose(0), "track_id": 7, "score": 0.9},
            {"image_id": 5, "keypoints": pose(100), "track_id": 3},
            {"image_id": 7, "keypoints": pose(2), "track_id": 7}]            # frame 6: nobody seen
    write_results(tmp_path / "v.json", dets)
    clip = read_coco_results(tmp_path / "v.json")
    assert clip.format == "coco17" and clip.keypoints.shape == (2, 3, 17, 3)
    np.testing.assert_allclose(clip.keypoints[0, 0, :, 0], 100 + np.arange(17))   # track 3 first (sorted ids)
    np.testing.assert_allclose(clip.keypoints[1, 2, :, 0], 2 + np.arange(17))
    assert np.isnan(clip.keypoints[:, 1]).all() and np.isnan(clip.keypoints[0, 2]).all()


def test_coco_results_without_ids_are_tracked_and_wholebody_keeps_body_and_feet(tmp_path):
    rng = np.random.default_rng(0)
    dets = []
    for t in range(12):
        people = [pose(3.0 * t, 133), pose(900 - 3.0 * t, 133)]
        for k in rng.permutation(2):
            dets.append({"image_id": f"frame{t:03d}.jpg", "keypoints": people[k]})
    write_results(tmp_path / "v.json", dets)
    clip = read_coco_results(tmp_path / "v.json")
    assert clip.format == "coco_wholebody23" and clip.keypoints.shape == (2, 12, 23, 3)
    steps = sorted(float(np.diff(clip.keypoints[m, :, 0, 0]).mean()) for m in range(2))
    assert steps == pytest.approx([-3.0, 3.0])                                   # each person one direction


@pytest.mark.parametrize(("content", "message"), [
    ("[{\"image_id\": 1}]", r"detection 0: expected an object with 'image_id' and 'keypoints'"),
    ("[{\"image_id\": 1, \"keypoints\": [1, 2]}]", r"detection 0: 2 keypoint values; expected a multiple of 3"),
    ("[\n{\"image_id\": 1,, }]", r"v\.json, line 2: not valid JSON"),
    ("[{\"image_id\": 1, \"keypoints\": [1, 2, 3]}]", r"1 keypoints per detection; expected one of 17, 26, 133"),
])
def test_coco_results_errors(tmp_path, content, message):
    (tmp_path / "v.json").write_text(content)
    with pytest.raises(DataFormatError, match=message):
        read_coco_results(tmp_path / "v.json")


def write_openpose(folder, frames, joints=25):
    folder.mkdir(parents=True, exist_ok=True)
    for t, people in enumerate(frames):
        content = {"version": 1.3, "people": [{"person_id": [-1], "pose_keypoints_2d": p} for p in people]}
        (folder / f"{folder.name}_{t:012d}_keypoints.json").write_text(json.dumps(content))


def test_openpose_frames_are_tracked(tmp_path):
    frames = [[pose(500 - 4.0 * t, 25), pose(4.0 * t, 25)][:: 1 if t % 2 else -1] for t in range(8)]
    frames[3] = frames[3][:1]                                                   # one person missed in frame 3
    write_openpose(tmp_path / "video", frames)
    clip = read_openpose_folder(tmp_path / "video")
    assert clip.format == "openpose25" and clip.keypoints.shape == (2, 8, 25, 3)
    for m in range(2):
        seen = ~np.isnan(clip.keypoints[m, :, 0, 0])
        assert np.abs(np.diff(clip.keypoints[m, seen, 0, 0])).max() <= 8.0 + 1e-6     # never jumps to the other
    assert np.isnan(clip.keypoints[:, 3, 0, 0]).sum() == 1


def test_prepare_keypoints_end_to_end_with_a_bad_clip(tmp_path):
    raw = tmp_path / "raw"
    for label in ("run", "sit"):
        for k in range(3):
            write_results(raw / label / f"coco{k}.json", [{"image_id": t, "keypoints": pose(t + k)} for t in range(4)])
            write_openpose(raw / label / f"op{k}", [[pose(t + k, 18)] for t in range(5)], joints=18)
    write_openpose(raw / "run" / "broken", [[pose(0, 25)]])
    (raw / "run" / "broken" / "broken_000000000001_keypoints.json").write_text("{\n\"people\": [}")
    assert main(["prepare", "keypoints", str(raw), str(tmp_path / "out"), "--image-size", "640", "480",
                 "--layout", "coco17", "--test-ratio", "0.34", "--workers", "1"]) == 0
    manifest = read_manifest(tmp_path / "out")
    assert manifest["source"] == "keypoints" and manifest["class_names"] == ["run", "sit"]
    assert manifest["keypoint_formats"] == {"coco17": 6, "openpose18": 6}
    assert list(manifest["skipped"]) == ["run/broken"]
    assert "line 2: not valid JSON" in manifest["skipped"]["run/broken"]
    # OpenPose COCO-18 -> COCO-17: the same named joints; a COCO-18 joint j sits at x = t + k + j
    train = SkeletonDataset(tmp_path / "out", "train")
    index = next(i for i, n in enumerate(train.names) if n.endswith("/op0") or n.endswith("/op1"))
    k = int(train.names[index][-1])
    op18 = get_format("openpose18")
    for j, name in enumerate(get_format("coco17").joint_names):
        np.testing.assert_allclose(train.padded_clips[index, 0, :5, j, 0] * 640,
                                   np.arange(5) + k + op18.index(name), rtol=1e-5)


def write_pickle(path, content):
    with open(path, "wb") as f:
        pickle.dump(content, f)


def annotation(name, label, keypoint, **extra):
    m, t = keypoint.shape[:2]
    ann = {"frame_dir": name, "label": label, "keypoint": keypoint.astype(np.float32), "total_frames": t, **extra}
    if keypoint.shape[-1] == 2:
        ann.update(keypoint_score=np.full(keypoint.shape[:3], 0.5, np.float32), img_shape=(100, 200))
    return ann


def test_prepare_pyskl_2d_with_its_split_lists_and_label_map(tmp_path):
    rng = np.random.default_rng(0)
    anns = [annotation(f"s{k}", k % 3, rng.uniform(0, 100, size=(1 + k % 3, 6, 17, 2))) for k in range(9)]
    anns.append({"frame_dir": "bad", "label": 1, "keypoint": np.zeros((1, 6, 17, 2), np.float32), "total_frames": 5})
    splits = {"xsub_train": [f"s{k}" for k in range(6)] + ["bad"], "xsub_val": ["s6", "s7", "s8"],
              "xview_train": [f"s{k}" for k in range(9)]}
    write_pickle(tmp_path / "a.pkl", {"split": splits, "annotations": anns})
    (tmp_path / "labels.txt").write_text("clap\nwave\njump\n")
    with pytest.raises(ConfigError, match="s0 is in both 'xsub_train' and 'xview_train'"):
        prepare_pyskl(tmp_path / "a.pkl", tmp_path / "out")
    out = prepare_pyskl(tmp_path / "a.pkl", tmp_path / "out", split_lists=["xsub_train", "xsub_val"],
                        label_map=tmp_path / "labels.txt")
    manifest = read_manifest(out)
    assert manifest["source"] == "pyskl" and manifest["layout"] == "coco17"
    assert manifest["class_names"] == ["clap", "wave", "jump"]
    assert list(manifest["splits"]) == ["xsub_train", "xsub_val"]
    assert "total_frames must be the integer 6 (the frames of 'keypoint'), found 5" in manifest["skipped"]["bad"]
    val = SkeletonDataset(out, "xsub_val")
    assert val.names == ["s6", "s7", "s8"] and val.labels.tolist() == [0, 1, 2]
    np.testing.assert_allclose(val.padded_clips[0, 0, :, :, 0], anns[6]["keypoint"][0, :, :, 0] / 200, rtol=1e-6)
    np.testing.assert_allclose(val.padded_clips[0, 2, :, :, 0], 0.5)


def test_cli_prepare_pyskl_3d_ntu_is_aligned(tmp_path, capsys):
    rng = np.random.default_rng(1)
    anns = [annotation(f"c{k}", k % 2, rng.normal(size=(1, 5, 25, 3))) for k in range(6)]
    write_pickle(tmp_path / "ntu.pkl", anns)                                    # a bare list: ratio split
    assert main(["prepare", "pyskl", str(tmp_path / "ntu.pkl"), str(tmp_path / "out"), "--test-ratio", "0.34"]) == 0
    assert "train 4, test 2" in capsys.readouterr().out
    manifest = read_manifest(tmp_path / "out")
    assert manifest["layout"] == "ntu25" and manifest["preprocessing"]["alignment"] == "ntu"
    clip = SkeletonDataset(tmp_path / "out", "train").padded_clips[0]
    np.testing.assert_allclose(clip[:, :5, 1, 0], 0.0, atol=1e-6)                 # centred on spine_mid


def test_fuzzed_pose_estimator_files_give_clear_errors(tmp_path):
    from test_importers import _mutants

    rng = np.random.default_rng(1)
    results = json.dumps([{"image_id": t, "keypoints": pose(t), "track_id": 1} for t in range(3)]).encode()
    frame = json.dumps({"version": 1.3, "people": [{"person_id": [-1], "pose_keypoints_2d": pose(0, 25)}]}).encode()
    for k, mutant in enumerate(_mutants(results, rng, 40)):
        (tmp_path / f"r{k}.json").write_bytes(mutant)
        try:
            read_coco_results(tmp_path / f"r{k}.json")
        except DataFormatError as exc:
            assert f"r{k}.json" in str(exc)
    for k, mutant in enumerate(_mutants(frame, rng, 40)):
        folder = tmp_path / f"op{k}"
        folder.mkdir()
        (folder / f"op{k}_000000000000_keypoints.json").write_bytes(mutant)
        try:
            read_openpose_folder(folder)
        except DataFormatError as exc:
            assert f"op{k}" in str(exc)
