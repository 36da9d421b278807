"""Pictures of any keypoint format: its own bones, image y down drawn head up, scores faded, missing
joints left out, and a label beside each person of a tracked scene."""

import numpy as np
import pytest
from matplotlib.colors import to_rgb

from usdrl.errors import InputError
from usdrl.keypoints import get_format
from usdrl.keypoints.tracking import Track
from usdrl.skeleton import get_layout
from usdrl.viz import SIDE_COLOURS, SkeletonPicture, animate_scene, animate_skeleton, scene_clip, skeleton_scene

pytest.importorskip("matplotlib")

# A standing COCO-17 person in pixels (y down: the nose at row 10, the ankles at row 100), score 0.9.
COCO_PIXELS = np.array([[50, 10], [52, 8], [48, 8], [54, 9], [46, 9], [60, 25], [40, 25], [62, 40], [38, 40],
                        [63, 55], [37, 55], [56, 60], [44, 60], [56, 80], [44, 80], [56, 100], [44, 100]], np.float32)


def coco_person(frames: int = 3, shift: float = 0.0) -> np.ndarray:
    """``(frames, 17, 3)``: the person above, moved ``shift`` pixels right, score 0.9."""
    xy = np.repeat(COCO_PIXELS[None] + [shift, 0.0], frames, axis=0)
    return np.concatenate([xy, np.full((frames, 17, 1), 0.9, np.float32)], axis=-1)


def as_clip(*people: np.ndarray) -> np.ndarray:
    """People ``(T, V, C)`` -> clip ``(C, T, V, M)``."""
    return np.stack(people, axis=-1).transpose(2, 0, 1, 3)


def test_image_keypoints_are_drawn_head_up_without_mirroring():
    scene = skeleton_scene(as_clip(coco_person()), "coco17")
    nose, left_ankle, left_shoulder, right_shoulder = 0, 15, 5, 6
    # front view of pixels (x right, y down): drawn x = x, drawn y = -y
    assert np.allclose(scene.image[:, 0, :, 0], np.stack([COCO_PIXELS[:, 0], -COCO_PIXELS[:, 1]]))
    assert scene.image[1, 0, nose, 0] > scene.image[1, 0, left_ankle, 0]
    assert scene.image[0, 0, left_shoulder, 0] > scene.image[0, 0, right_shoulder, 0]  # as in the image
    # y_up=True draws the values as they are (upside down for pixels)
    assert np.allclose(skeleton_scene(as_clip(coco_person()), "coco17", y_up=True).image[1, 0, :, 0],
                       COCO_PIXELS[:, 1])


def test_3d_camera_frames_are_turned_head_up_keeping_left_and_right():
    fmt = get_format("h36m17")
    pose = np.zeros((17, 3), np.float32)
    # camera frame x right, y down, z forward: a body 4 m away, head 1.7 m above the feet
    for name, xyz in {"pelvis": (0, 0, 4), "head_top": (0, -0.8, 4), "left_ankle": (0.15, 0.9, 4),
                      "right_ankle": (-0.15, 0.9, 4), "left_shoulder": (0.2, -0.5, 4),
                      "right_shoulder": (-0.2, -0.5, 4)}.items():
        pose[fmt.index(name)] = xyz
    clip = as_clip(np.repeat(pose[None], 2, axis=0))
    front = skeleton_scene(clip, "h36m17", view="front")
    assert np.allclose(front.image[:, 0, :, 0], np.stack([pose[:, 0], -pose[:, 1]]))   # by hand: (x, -y)
    quarter = skeleton_scene(clip, "h36m17")                                          # 3D: three-quarter
    assert quarter.floor, "a 3D format gets the three-quarter view with its floor"
    y = quarter.image[1, 0, :, 0]
    assert y[fmt.index("head_top")] > y[fmt.index("pelvis")] > y[fmt.index("left_ankle")]
    x = quarter.image[0, 0, :, 0]
    assert x[fmt.index("left_shoulder")] > x[fmt.index("right_shoulder")]  # the camera's right stays right


def test_which_joints_are_drawn_and_how_strongly():
    person = coco_person(frames=4)
    person[:, 9, 2] = 0.0              # left wrist: score 0 (a converter's missing joint)
    person[:, 16, 2] = 0.25            # right ankle: low score
    person[1, 10, :2] = np.nan         # right wrist unseen in frame 1
    person[2] = 0.0                    # nobody in frame 2
    scene = skeleton_scene(as_clip(person), "coco17")
    shown = scene.shown[..., 0]
    assert not shown[:, 9].any() and shown[:, 16].tolist() == [True, True, False, True]
    assert shown[:, 10].tolist() == [True, False, False, True]
    assert not shown[2].any() and shown[3].sum() == 16
    assert scene.confidence[0, 16, 0] == pytest.approx(0.25) and scene.confidence[0, 0, 0] == pytest.approx(0.9)
    assert skeleton_scene(as_clip(person), "coco17", min_score=0.3).shown[0, 16, 0] == np.False_
    # a score channel of zeros (pyskl's padding="zero") is no score: everything is drawn, fully
    zero = coco_person()
    zero[..., 2] = 0
    unscored = skeleton_scene(as_clip(zero), "coco17")
    assert unscored.shown.all() and (unscored.confidence == 1).all() and not unscored.scored
    with pytest.raises(InputError, match="score channel"):
        skeleton_scene(as_clip(zero)[:2], "coco17", scores=True)


def _picture(*people, labels=None, layout="coco17"):
    scene = skeleton_scene(as_clip(*people), layout, labels=labels)
    picture = SkeletonPicture(scene, get_layout(layout))
    picture.show(0)
    return picture


def test_bones_are_the_formats_own_and_missing_joints_break_them():
    fmt = get_format("mediapipe33")
    rng = np.random.default_rng(0)
    person = np.concatenate([rng.uniform(0.3, 0.7, (2, 33, 2)), np.ones((2, 33, 1))], axis=-1).astype(np.float32)
    person[:, fmt.index("left_pinky"), 2] = 0
    picture = _picture(person, layout="mediapipe33")
    try:
        drawn = {edge for edge, line in zip(fmt.edges, picture.lines[0], strict=True) if len(line.get_xdata())}
        pinky = fmt.index("left_pinky")
        assert drawn == {edge for edge in fmt.edges if pinky not in edge}
        assert len(picture.dots[0].get_offsets()) == 32
    finally:
        picture.close()


def test_left_and_right_colours_fade_with_the_score():
    person = coco_person()
    person[:, 16, 2] = 0.25                                        # right ankle
    picture = _picture(person)
    try:
        colour = {edge: to_rgb(line.get_color()) for edge, line in zip(get_layout("coco17").edges, picture.lines[0],
                                                                      strict=True)}
        left_forearm, right_forearm, right_shin = colour[(9, 7)], colour[(10, 8)], colour[(16, 14)]
        white = np.ones(3)
        # score 0.9 -> opacity 0.2 + 0.8 * 0.9 = 0.92 of the side colour over white; 0.25 -> 0.4
        assert np.allclose(left_forearm, white - 0.92 * (white - to_rgb(SIDE_COLOURS[0][0])))
        assert np.allclose(right_forearm, white - 0.92 * (white - to_rgb(SIDE_COLOURS[0][1])))
        assert np.allclose(right_shin, white - 0.4 * (white - to_rgb(SIDE_COLOURS[0][1])))
    finally:
        picture.close()


def test_each_label_is_drawn_above_its_own_person():
    people = [coco_person(shift=s) for s in (0.0, 120.0, 240.0)]
    people[1][:, :, 1] += 30                                          # the middle person lower in the image
    picture = _picture(*people, labels=["wave 0.93", None, "kick 0.51"])
    try:
        assert picture.texts[1] is None
        for m, text in ((0, picture.texts[0]), (2, picture.texts[2])):
            x, y = text.get_position()
            points = picture.scene.image[:, 0, :, m]
            assert text.get_visible() and text.get_text() == ("wave 0.93", None, "kick 0.51")[m]
            assert points[0].min() <= x <= points[0].max()            # over the person ...
            assert y > points[1].max()                                # ... above the head
            centres = picture.scene.image[0, 0].mean(axis=0)          # (M,) each person's middle
            assert np.argmin(np.abs(centres - x)) == m                # nearest to their own person
    finally:
        picture.close()


def test_animate_scene_from_tracks_and_labels_by_id(tmp_path):
    from PIL import Image

    a, b = Track(3), Track(7)
    for t in range(4):
        a.frames.append(t), a.poses.append(coco_person(1)[0])
    for t in range(2, 6):
        b.frames.append(t), b.poses.append(coco_person(1, shift=150)[0])
    ids, clip = scene_clip([a, b], format="coco17")
    assert ids == [3, 7] and clip.shape == (3, 6, 17, 2)
    assert np.isnan(clip[:, 4:, :, 0]).all() and np.isnan(clip[:, :2, :, 1]).all()  # unseen frames: not drawn
    gif = animate_scene([a, b], tmp_path / "scene.gif", format="coco17", labels={7: "wave 0.93"})
    assert Image.open(gif).n_frames == 6
    with pytest.raises(InputError, match=r"labels name people \[5\]"):
        animate_scene({3: coco_person()}, tmp_path / "x.gif", format="coco17", labels={5: "x"})
    with pytest.raises(InputError, match=r"\(T, 17, C\)"):
        animate_scene(np.zeros((2, 4, 25, 3)), tmp_path / "x.gif", format="coco17")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scene.gif"]


def test_every_registered_format_is_drawn(tmp_path):
    from usdrl.keypoints import list_formats

    rng = np.random.default_rng(1)
    for name in list_formats():
        fmt = get_format(name)
        clip = rng.normal(size=(fmt.dims, 2, fmt.num_joints, 1)).astype(np.float32)
        animate_skeleton(clip, tmp_path / f"{name}.gif", layout=name, size=1.5)
    assert len(list(tmp_path.iterdir())) == len(list_formats())
