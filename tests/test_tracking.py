"""Person tracking (Hungarian assignment on keypoint distance or box IoU) and the per-person path."""

import numpy as np
import pytest
import torch

from usdrl import USDRL, USDRLConfig
from usdrl.data.importers import track_inputs
from usdrl.data.preprocess import resample
from usdrl.errors import ConfigError, InputError
from usdrl.keypoints.tracking import PoseTracker, track_poses

# COCO-17 pixels of a person standing at x = 0: about 90 px tall, 26 px wide.
BODY = np.array([[0, 10], [2, 8], [-2, 8], [4, 9], [-4, 9], [10, 25], [-10, 25], [12, 40], [-12, 40], [13, 55],
                 [-13, 55], [6, 60], [-6, 60], [6, 80], [-6, 80], [6, 100], [-6, 100]], np.float32)


def person(x: float, y: float = 0.0, score: float = 0.9) -> np.ndarray:
    """``(17, 3)`` the body at ``(x, y)`` with a score channel."""
    return np.concatenate([BODY + [x, y], np.full((17, 1), score, np.float32)], axis=1)


def shuffled(frames, seed=0):
    rng = np.random.default_rng(seed)
    return [f[rng.permutation(len(f))] if len(f) else f for f in frames]


@pytest.mark.parametrize("metric", ["keypoints", "iou"])
def test_two_people_far_apart_keep_their_ids(metric):
    frames = shuffled([np.stack([person(2.0 * t), person(400 - 2.0 * t)]) for t in range(30)])
    tracks = track_poses(frames, metric=metric)
    assert [t.track_id for t in tracks] == [0, 1]
    for track in tracks:
        nose_x = np.stack(track.poses)[:, 0, 0]
        steps = np.diff(nose_x)
        assert len(track.frames) == 30 and (np.allclose(steps, 2.0) or np.allclose(steps, -2.0))


def test_crossing_people_are_followed_through_the_crossing():
    # A walks right, B walks left on the same line; they overlap completely at t = 10 and keep going
    frames = shuffled([np.stack([person(10.0 * t), person(200 - 10.0 * t)]) for t in range(21)], seed=3)
    tracks = track_poses(frames)
    assert len(tracks) == 2
    directions = sorted(np.sign(np.diff(np.stack(t.poses)[:, 0, 0])).tolist() for t in tracks)
    assert directions == [[-1.0] * 20, [1.0] * 20]                 # no identity switch after the crossing


def test_tracks_appear_leave_and_survive_short_occlusions():
    frames = []
    for t in range(20):
        people = [person(0.0 + t)]
        if 5 <= t < 10:
            people.append(person(300.0))              # C: frames 5-9, then gone
        if t == 18:
            people.append(person(300.0))              # someone there again long after: a new track
        if 12 <= t < 15:                              # A unseen for 3 frames (occluded)
            people = people[1:]
        frames.append(np.stack(people) if people else np.zeros((0, 17, 3), np.float32))
    tracker = PoseTracker(max_missed=4)
    ids = [tracker.update(f) for f in frames]
    assert ids[0] == [0] and ids[5] == [0, 1] and ids[13] == [] and ids[15] == [0] and ids[18] == [0, 2]
    tracks = tracker.tracks
    assert tracks[0].frames == [t for t in range(20) if not 12 <= t < 15]
    assert tracks[1].frames == [5, 6, 7, 8, 9] and tracks[1] in tracker.closed
    a = tracks[0].keypoints()
    assert a.shape == (20, 17, 3) and np.isnan(a[12:15]).all() and np.allclose(a[15, 0, 0], 15.0)


def test_unseen_joints_and_bad_input():
    pose = person(0.0)
    pose[:8, 2] = 0.0                                          # half the joints with score 0: not seen
    far = person(500.0)
    tracks = track_poses([pose[None], np.stack([far, person(1.0)])])
    assert [t.frames for t in tracks] == [[0, 1], [1]] and np.allclose(tracks[0].poses[1][0, 0], 1.0)
    with pytest.raises(InputError, match=r"expected detections \(P, V, C>=2\) for frame 0"):
        PoseTracker().update(np.zeros((17, 3)))
    with pytest.raises(ConfigError, match="unknown tracking metric"):
        PoseTracker(metric="oks")


def test_a_scene_with_five_people_gets_five_labels():
    rng = np.random.default_rng(0)
    starts, speeds = np.array([0.0, 150.0, 300.0, 450.0, 600.0]), rng.uniform(-3, 3, size=5)
    truth = np.zeros((5, 24, 17, 3), np.float32)                  # (person, T, V, x y score)
    for k in range(5):
        for t in range(24):
            truth[k, t] = person(starts[k] + speeds[k] * t, 200.0)
            truth[k, t, 9 + k % 2, 1] -= 20 * np.sin(t / 3 + k) * (k + 1)   # each moves a wrist its own way
    tracks = track_poses(shuffled([truth[:, t] for t in range(24)], seed=1))
    assert len(tracks) == 5
    inputs = track_inputs(tracks, format="coco17", num_frames=16, image_shape=(480, 800))
    assert inputs.shape == (5, 3, 16, 17, 2) and not inputs[..., 1].any()
    # each input is exactly one person's clip: x / width, y / height, score, resampled to 16 frames
    expected = []
    for k in range(5):
        clip = np.zeros((3, 24, 17, 2), np.float32)
        clip[..., 0] = np.moveaxis(truth[k] / [800, 480, 1], -1, 0)
        expected.append(resample(clip, 16))
    matches = [[np.allclose(got, want, atol=1e-6) for want in expected] for got in inputs]
    assert sorted(row.index(True) for row in matches) == [0, 1, 2, 3, 4] and all(sum(row) == 1 for row in matches)
    torch.manual_seed(0)
    model = USDRL(USDRLConfig.from_preset("tiny", layout="coco17", num_frames=16, hidden_size=32, num_heads=1,
                                          num_classes=4)).eval()
    with torch.no_grad():
        labels = model(torch.from_numpy(inputs)).argmax(-1)
    assert labels.shape == (5,)


def test_a_pair_of_interacting_tracks_is_one_two_person_input():
    frames = []
    for t in range(10):
        people = [person(100.0 + t, 0.0), person(160.0 - t, 0.0)]
        if t >= 4:
            people.append(person(500.0, 0.0))                     # a third person, from frame 4
        frames.append(np.stack(people))
    tracks = track_poses(frames)
    assert [(t.frames[0], t.frames[-1]) for t in tracks] == [(0, 9), (0, 9), (4, 9)]
    inputs = track_inputs(tracks, format="coco17", num_frames=10, image_shape=(100, 1000), pairs=[(0, 1), (1, 2)])
    assert inputs.shape == (2, 3, 10, 17, 2)
    np.testing.assert_allclose(sorted(inputs[0, 0, 0, 0, :] * 1000), [100.0, 160.0], atol=1e-3)
    # tracks 1 and 2 over the frames either is seen (0-9): track 2 absent (zero) before frame 4
    nose = inputs[1, 0, :, 0, :] * 1000                           # (T, 2) nose x of both slots
    person2 = int(np.argmax(nose[-1]))
    assert not nose[:4, person2].any() and np.allclose(nose[4:, person2], 500.0, atol=1e-3)
    with pytest.raises(ConfigError, match=r"pairs name tracks \[5\]"):
        track_inputs(tracks, format="coco17", image_shape=(100, 1000), pairs=[(0, 5)])
