"""The synthetic action generator: shapes, determinism, body geometry, layouts and difficulty."""

import re

import numpy as np
import pytest

from usdrl.data.synthetic import (
    ACTION_NAMES,
    NUM_CLASSES,
    TWO_PERSON_CLASSES,
    SyntheticActions,
    make_clips,
    make_untrimmed,
    project_coco17,
)
from usdrl.errors import ConfigError, InputError
from usdrl.skeleton import COCO17, NTU25

J = {name: i for i, name in enumerate(NTU25.joint_names)}
K = {name: i for i, name in enumerate(COCO17.joint_names)}
# Every pair of joints the body holds rigidly: the drawing edges and the bone-modality parents.
EDGES = {tuple(sorted(edge)) for edge in NTU25.edges}
PARENT_BONES = {tuple(sorted((v, p))) for v, p in enumerate(NTU25.parents) if v != p}
BONES = np.array(sorted(EDGES | PARENT_BONES))
CLEAN = {"noise": 0.0}


def bone_lengths(clip, person=0):
    """(T, bones) lengths of one person of a (3, T, 25, M) clip."""
    a, b = BONES.T
    return np.linalg.norm(clip[:, :, a, person] - clip[:, :, b, person], axis=0)


@pytest.fixture(scope="module")
def one_per_class():
    return make_clips(NUM_CLASSES, seed=0, **CLEAN)


def test_names_and_counts():
    assert NUM_CLASSES == len(ACTION_NAMES) >= 20
    assert len(set(ACTION_NAMES)) == NUM_CLASSES
    paired = {"wave_right_hand", "wave_left_hand", "kick_right", "kick_left", "sit_down", "stand_up"}
    assert paired <= set(ACTION_NAMES)
    assert TWO_PERSON_CLASSES and max(TWO_PERSON_CLASSES) < NUM_CLASSES


def test_clip_shapes_dtypes_and_padding():
    clips = make_clips(2 * NUM_CLASSES, seed=1)
    n, t_max = 2 * NUM_CLASSES, clips.lengths.max()
    assert clips.data.shape == (n, 3, t_max, 25, 2) and clips.data.dtype == np.float32
    assert clips.lengths.shape == clips.labels.shape == (n,)
    assert clips.lengths.dtype == clips.labels.dtype == np.int64
    assert ((clips.lengths >= 40) & (clips.lengths <= 120)).all()
    assert np.isfinite(clips.data).all()
    for clip, t in zip(clips.data, clips.lengths, strict=True):
        assert not clip[:, t:].any()
        assert np.abs(clip[:, t - 1, :, 0]).sum() > 0


def test_fixed_length_and_chosen_classes():
    clips = make_clips(6, seed=0, num_frames=64, classes=[3, 5])
    assert clips.data.shape == (6, 3, 64, 25, 2)
    assert (clips.lengths == 64).all()
    assert clips.labels.tolist() == [3, 5, 3, 5, 3, 5]


def test_every_class_is_generated_and_moves(one_per_class):
    assert one_per_class.labels.tolist() == list(range(NUM_CLASSES))
    for clip, t in zip(one_per_class.data, one_per_class.lengths, strict=True):
        body = clip[:, :t, :, 0] - clip[:, :t, J["spine_base"], None, 0]
        assert body.std(axis=1).max() > 0.05  # some joint moves more than 5 cm relative to the pelvis


def test_bodies_are_plausible(one_per_class):
    for clip, t in zip(one_per_class.data, one_per_class.lengths, strict=True):
        x = clip[:, :t, :, 0]
        assert 1.8 < x[2].mean() < 5.0  # metres from the sensor
        height = (x[1, :, J["head"]] - x[1][:, [J["foot_left"], J["foot_right"]]].min(axis=1)).max()
        assert 1.3 < height < 1.9  # the head joint of a 1.5-1.95 m body, standing at some point


def test_same_seed_same_clips_and_prefix_stability():
    a = make_clips(10, seed=7)
    b = make_clips(10, seed=7)
    np.testing.assert_array_equal(a.data, b.data)
    np.testing.assert_array_equal(a.lengths, b.lengths)
    assert a.names() == b.names()
    short = make_clips(4, seed=7)
    t = short.data.shape[2]
    np.testing.assert_array_equal(short.data, a.data[:4, :, :t])
    assert short.names() == a.names()[:4]
    c = make_clips(10, seed=8)
    assert not np.array_equal(a.lengths, c.lengths)
    assert not np.allclose(a.data[:, :, :40], c.data[:, :, :40])


def test_bone_lengths_are_constant_without_noise(one_per_class):
    for clip, t in zip(one_per_class.data, one_per_class.lengths, strict=True):
        lengths = bone_lengths(clip[:, :t])
        assert lengths.min() > 0.01
        np.testing.assert_allclose(lengths, lengths[:1].repeat(t, 0), atol=1e-4)


def test_a_subject_keeps_its_body():
    gen = SyntheticActions(**CLEAN)
    a = gen.clip(0, np.random.default_rng(1), subject=5)
    b = gen.clip(13, np.random.default_rng(2), subject=5)
    c = gen.clip(0, np.random.default_rng(1), subject=6)
    np.testing.assert_allclose(bone_lengths(a)[0], bone_lengths(b)[0], atol=1e-4)
    assert np.abs(bone_lengths(a)[0] - bone_lengths(c)[0]).max() > 1e-3


def test_sensor_noise_is_on_by_default_and_configurable():
    clip = make_clips(1, seed=0, num_frames=60).data[0]
    assert bone_lengths(clip).std(axis=0).max() > 1e-3
    dropped = make_clips(1, seed=0, num_frames=60, dropout_rate=0.05).data[0, :, :, :, 0]
    assert (np.abs(dropped).sum(axis=0) == 0).mean() > 0.02  # joints read as (0, 0, 0)


def test_person_two_only_in_interactions(one_per_class):
    for clip, label, t in zip(one_per_class.data, one_per_class.labels, one_per_class.lengths, strict=True):
        person2 = np.abs(clip[:, :t, :, 1]).sum(axis=(0, 2))
        if label in TWO_PERSON_CLASSES:
            assert (person2 > 0).all()
            lengths = bone_lengths(clip[:, :t], person=1)
            np.testing.assert_allclose(lengths, lengths[:1].repeat(t, 0), atol=1e-4)
            gap = np.linalg.norm(clip[:, :t, J["spine_base"], 0] - clip[:, :t, J["spine_base"], 1], axis=0)
            assert gap.min() > 0.2
        else:
            assert not person2.any()


def test_metadata_names_and_views():
    clips = make_clips(60, seed=2)
    names = clips.names()
    assert all(re.fullmatch(r"S\d{3}C00[123]P\d{3}R00[12]A\d{3}", n) for n in names)
    assert [int(n[-3:]) - 1 for n in names] == clips.labels.tolist()
    assert set(clips.meta.camera.tolist()) == {1, 2, 3}
    assert ((clips.meta.subject >= 1) & (clips.meta.subject <= 40)).all()
    # Cameras 1 and 3 see the stage turned opposite ways: the shoulder line points to -z / +z.
    gen = SyntheticActions(**CLEAN)
    depth = {}
    for camera in (1, 2, 3):
        clip = gen.clip(4, np.random.default_rng(camera), num_frames=20, camera=camera)
        shoulders = clip[:, 0, J["shoulder_right"], 0] - clip[:, 0, J["shoulder_left"], 0]
        assert shoulders[0] > 0  # Kinect x points to the sensor's left: the right shoulder is at larger x
        depth[camera] = shoulders[2] / np.linalg.norm(shoulders)
    assert depth[1] < -0.2 and depth[3] > 0.2 and abs(depth[2]) < 0.6


def test_untrimmed_labels_match_segments():
    for seed in range(4):
        seq = make_untrimmed(seed=seed, num_actions=(3, 5))
        t = seq.data.shape[1]
        assert seq.data.shape == (3, t, 25, 2) and seq.data.dtype == np.float32
        assert seq.labels.shape == (t,) and seq.labels.dtype == np.int64
        assert not seq.data[..., 1].any()
        assert 3 <= len(seq.segments) <= 5
        expected = np.zeros(t, dtype=np.int64)
        previous_end = 0
        for k, start, end in seq.segments:
            assert k not in TWO_PERSON_CLASSES
            assert previous_end + 10 <= start < end <= t - 10  # background gaps of 10..60 frames
            expected[start:end] = k + 1
            previous_end = end
        np.testing.assert_array_equal(seq.labels, expected)


def test_untrimmed_is_deterministic_and_rigid():
    a = make_untrimmed(seed=3, **CLEAN)
    b = make_untrimmed(seed=3, **CLEAN)
    np.testing.assert_array_equal(a.data, b.data)
    assert a.segments == b.segments
    assert a.meta.names(np.array([a.segments[0][0]]))[0].startswith("S")
    lengths = bone_lengths(a.data)
    np.testing.assert_allclose(lengths, lengths[:1].repeat(len(lengths), 0), atol=1e-4)
    assert make_untrimmed(seed=4).segments != a.segments


def test_untrimmed_pairs_sit_down_with_stand_up():
    sit, stand = ACTION_NAMES.index("sit_down"), ACTION_NAMES.index("stand_up")
    seq = make_untrimmed(seed=0, num_actions=(6, 6), classes=[sit, stand, 0])
    order = [k for k, _, _ in seq.segments]
    for i, k in enumerate(order):
        if k == sit and i + 1 < len(order):
            assert order[i + 1] == stand
        if k == stand:
            assert i > 0 and order[i - 1] == sit


def test_bad_arguments_raise_config_errors():
    with pytest.raises(ConfigError):
        make_clips(2, classes=[NUM_CLASSES])
    with pytest.raises(ConfigError):
        make_clips(2, num_frames=1)
    with pytest.raises(ConfigError):
        make_clips(0)
    with pytest.raises(ConfigError):
        make_untrimmed(classes=[min(TWO_PERSON_CLASSES)])
    with pytest.raises(ConfigError):
        SyntheticActions().clip(0, np.random.default_rng(0), camera=4)


def test_coco_projection_of_a_centred_subject():
    gen = SyntheticActions(**CLEAN)
    clip = gen.clip(ACTION_NAMES.index("clap"), np.random.default_rng(0), num_frames=30, camera=2)
    keypoints, scores = project_coco17(clip)
    assert keypoints.shape == (2, 30, 17, 2) and scores.shape == (2, 30, 17)
    assert keypoints.dtype == scores.dtype == np.float32
    person = keypoints[0]
    assert (person[..., 0] > 0).all() and (person[..., 0] < 1920).all()
    assert (person[..., 1] > 0).all() and (person[..., 1] < 1080).all()
    assert (scores[0] > 0.3).all() and not scores[1].any() and not keypoints[1].any()
    # Facing the camera: the subject's left side is on the image's right, the head above the hips.
    assert (person[:, K["left_shoulder"], 0] > person[:, K["right_shoulder"], 0]).all()
    assert (person[:, K["left_hip"], 0] > person[:, K["right_hip"], 0]).all()
    assert (person[:, K["left_ear"], 0] > person[:, K["nose"], 0]).all()
    assert (person[:, K["nose"], 0] > person[:, K["right_ear"], 0]).all()
    assert (person[:, K["nose"], 1] < person[:, K["left_hip"], 1]).all()


def test_coco_projection_rejects_other_layouts():
    with pytest.raises(InputError):
        project_coco17(np.zeros((3, 4, 17, 2)))


def test_coco_projection_of_a_subject_facing_away():
    clip = SyntheticActions(**CLEAN).clip(ACTION_NAMES.index("turn_around"), np.random.default_rng(0), num_frames=60,
                                          camera=2)
    keypoints, scores = project_coco17(clip[:, -1:])
    assert keypoints[0, 0, K["left_shoulder"], 0] < keypoints[0, 0, K["right_shoulder"], 0]
    assert scores[0, 0, K["nose"]] < scores[0, 0, K["left_shoulder"]]


def ridge_accuracy(train_x, train_y, test_x, test_y, lam=100.0):
    """Held-out accuracy of a one-vs-all ridge-regression classifier on standardised features."""
    mean, std = train_x.mean(0), train_x.std(0) + 1e-6
    a, b = (train_x - mean) / std, (test_x - mean) / std
    alpha = np.linalg.solve(a @ a.T + lam * np.eye(len(a)), np.eye(NUM_CLASSES)[train_y])
    return ((b @ a.T @ alpha).argmax(1) == test_y).mean()


def test_classes_are_learnable_but_not_linearly_trivial():
    clips = make_clips(600, seed=0, num_frames=64)
    x = clips.data.reshape(600, -1).astype(np.float64)
    order = np.random.default_rng(0).permutation(600)
    train, test = order[:400], order[400:]
    accuracy = ridge_accuracy(x[train], clips.labels[train], x[test], clips.labels[test])
    # Measured 0.6-0.75 over seeds; chance is 1/29.
    assert 2.0 / NUM_CLASSES < accuracy < 0.9
