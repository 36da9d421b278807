"""``usdrl detect-keypoints`` and ``read_keypoint_sequence``: one recording's keypoints of any format to actions."""

import json
import re

import numpy as np
import pytest

from usdrl import USDRL
from usdrl.cli import main
from usdrl.data.estimators import read_keypoint_sequence
from usdrl.data.synthetic import ACTION_NAMES, make_untrimmed, render_keypoints
from usdrl.errors import ConfigError, DataFormatError
from usdrl.hub import DEFAULT_MODEL
from usdrl.tasks.detection import DetectionConfig, detect_sequence

CONFIG = DetectionConfig(stride=16, threshold=0.5, min_length=8)


@pytest.fixture(scope="module")
def model():
    return USDRL.from_pretrained(DEFAULT_MODEL)


@pytest.fixture(scope="module")
def recording():
    """An untrimmed synthetic sequence of one person as COCO-17 keypoints ``(1, T, 17, 3)`` (pixels, score)."""
    sequence = make_untrimmed(seed=11, num_actions=(3, 3), classes=[0, 12, 20])
    return sequence, render_keypoints(sequence.data[None, :, :, :, :1], "coco17")[0]


def run(argv, capsys) -> str:
    assert main(argv) == 0
    return capsys.readouterr().out


def test_an_npz_with_scores_apart_gives_the_api_s_actions(tmp_path, capsys, model, recording):
    sequence, keypoints = recording
    np.savez(tmp_path / "video.npz", keypoints=keypoints[..., :2], scores=keypoints[..., 2], format="coco17")
    printed = json.loads(run(["detect-keypoints", str(tmp_path / "video.npz"), "--json", "--out",
                              str(tmp_path / "actions.txt")], capsys))
    expected = detect_sequence(model, keypoints, config=CONFIG, format="coco17")
    assert expected, "the demo weights find actions in the synthetic recording"
    assert (printed["format"], printed["frames"], printed["persons"]) == ("coco17", keypoints.shape[1], 1)
    assert [(a["label"], a["start"], a["end"]) for a in printed["actions"]] == [e[:3] for e in expected]
    assert [a["class"] for a in printed["actions"]] == [ACTION_NAMES[e[0] - 1] for e in expected]
    np.testing.assert_allclose([a["score"] for a in printed["actions"]], [e[3] for e in expected], atol=1e-6)
    lines = (tmp_path / "actions.txt").read_text().splitlines()
    assert lines == [f"{k},{s},{e},{p:.6f}" for k, s, e, p in expected]
    # the demo weights know these synthetic classes: a true action of the recording is among those found (detection
    # mAP_a of the shipped weights on COCO-17 2D is about 24%: not every action is)
    found = {e[0] - 1 for e in expected}
    assert {label for label, _, _ in sequence.segments} & found


def test_the_table_names_classes_frames_and_seconds(tmp_path, capsys, recording):
    _, keypoints = recording
    np.save(tmp_path / "video.npy", keypoints[0])                 # (T, 17, 3): one person, no format in the file
    printed = run(["detect-keypoints", str(tmp_path / "video.npy"), "--format", "coco17", "--fps", "10"],
                  capsys).splitlines()
    assert printed[0].endswith(f"frames of coco17 keypoints (1 person(s)) of {tmp_path / 'video.npy'}:")
    match = re.fullmatch(r"  (\w+) +frames +(\d+)-(\d+) +\( *([\d.]+)- *([\d.]+) s\)  score ([\d.]+)", printed[1])
    assert match and match[1] in ACTION_NAMES, printed
    assert (float(match[4]), float(match[5])) == (round(int(match[2]) / 10, 1), round(int(match[3]) / 10, 1))
    assert 0.5 < float(match[6]) <= 1.0


def test_coco_results_json(tmp_path, capsys, recording):
    _, keypoints = recording
    detections = [{"image_id": t, "keypoints": keypoints[0, t].ravel().tolist(), "track_id": 1}
                  for t in range(keypoints.shape[1])]
    (tmp_path / "results.json").write_text(json.dumps(detections))
    sequence = read_keypoint_sequence(tmp_path / "results.json")
    assert sequence.format == "coco17" and sequence.image_size is None
    np.testing.assert_allclose(sequence.keypoints, keypoints, atol=1e-4)
    printed = json.loads(run(["detect-keypoints", str(tmp_path / "results.json"), "--json"], capsys))
    np.savez(tmp_path / "same.npz", keypoints=keypoints, format="coco17")
    assert printed["actions"] == json.loads(run(["detect-keypoints", str(tmp_path / "same.npz"), "--json"],
                                                capsys))["actions"]


def test_normalised_keypoints_take_the_file_s_image_size(tmp_path, recording):
    sequence, keypoints = recording
    mediapipe = render_keypoints(sequence.data[None, :, :, :, :1], "mediapipe33")[0]
    np.savez(tmp_path / "mp.npz", keypoints=mediapipe, img_shape=[1080, 1920], format="mediapipe33")
    read = read_keypoint_sequence(tmp_path / "mp.npz")
    assert (read.format, read.image_size) == ("mediapipe33", (1080, 1920))
    np.savez(tmp_path / "coco.npz", keypoints=keypoints, img_shape=[1080, 1920], format="coco17")
    assert read_keypoint_sequence(tmp_path / "coco.npz").image_size is None      # pixels need none


def test_bad_recordings_are_refused_with_the_file_named(tmp_path, recording):
    _, keypoints = recording
    np.save(tmp_path / "v.npy", keypoints)
    with pytest.raises(DataFormatError, match=r"v.npy: 17 joints, the format ntu25 has 25$"):
        read_keypoint_sequence(tmp_path / "v.npy", "ntu25")
    np.save(tmp_path / "c.npy", np.ones((1, 5, 17, 5), np.float32))
    with pytest.raises(DataFormatError, match=r"c.npy: 5 channels per joint; the 2D format coco17 takes 2 "
                                              r"coordinates, optionally followed by a score"):
        read_keypoint_sequence(tmp_path / "c.npy", "coco17")
    with pytest.raises(ConfigError, match=r"v.npy: 17 joints fit the keypoint formats: coco17, h36m17, uav17; "
                                          r"name the format \(--format\)"):
        read_keypoint_sequence(tmp_path / "v.npy")
