"""The pictures: a three-quarter perspective view, left/right colours, two persons side by side, views that
glitches do not move, and timelines whose every bar is labelled within its bounds."""

import numpy as np
import pytest

from usdrl.data import to_model_input
from usdrl.data.synthetic import TWO_PERSON_CLASSES, make_clips
from usdrl.skeleton import get_layout
from usdrl.viz import _azimuth, _robust_bounds, edge_sides, plot_timeline, three_quarter_view

pytest.importorskip("matplotlib")


def test_three_quarter_view_by_hand():
    # Kinect x points to the camera's left, so a front view mirrors it; a 90 degree turn shows z across
    assert np.allclose(three_quarter_view(np.array([1.0, 2.0, 0.0]), azimuth=0, elevation=0), [-1.0, 2.0])
    assert np.allclose(three_quarter_view(np.array([0.0, 0.0, 1.0]), azimuth=90, elevation=0), [1.0, 0.0])
    # perspective: a point 1 unit farther than the origin, camera 3 units away, shrinks by 3 / 4
    assert np.allclose(three_quarter_view(np.array([0.0, 1.0, 1.0]), azimuth=0, elevation=0, distance=3),
                       [0.0, 0.75])
    # looking down 90 degrees: depth becomes height on the image, y disappears
    assert np.allclose(three_quarter_view(np.array([0.0, 0.0, 1.0]), azimuth=0, elevation=90, distance=1e9),
                       [0.0, -1.0], atol=1e-6)


def test_left_and_right_limbs_are_told_apart():
    layout = get_layout("ntu25")
    sides = dict(zip(layout.edges, edge_sides(layout), strict=True))
    name = {n: i for i, n in enumerate(layout.joint_names)}

    def side_of(a, b):
        return sides.get((name[a], name[b]), sides.get((name[b], name[a])))

    assert side_of("elbow_left", "shoulder_left") == 0 and side_of("shoulder_left", "spine_shoulder") == 0
    assert side_of("knee_right", "ankle_right") == 1
    assert side_of("spine_mid", "spine_base") == 2


@pytest.mark.parametrize("k", sorted(TWO_PERSON_CLASSES))
def test_two_persons_stand_side_by_side(k):
    clips = make_clips(1, seed=3, classes=[k])
    x = to_model_input(clips.data[0], 64, length=clips.lengths[0])  # the second person faces the first
    present = np.abs(x).sum(axis=(0, 2)) > 0
    centres = x.mean(axis=(1, 2))                                      # (3, M)
    gap = np.linalg.norm(centres[[0, 2], 1] - centres[[0, 2], 0])
    front = three_quarter_view(centres, azimuth=0)                     # the old front view: one behind the other
    chosen = three_quarter_view(centres, azimuth=_azimuth(x, present))
    assert abs(chosen[0, 1] - chosen[0, 0]) > 0.5 * gap > abs(front[0, 1] - front[0, 0])


def test_a_glitch_does_not_move_the_view():
    rng = np.random.default_rng(0)
    points = rng.normal(size=(2, 64 * 25))
    clean = _robust_bounds(points)
    points[:, 5] = (40.0, -60.0)  # one joint jumps 40 m away in one frame
    glitched = _robust_bounds(points)
    assert np.allclose(clean, glitched, atol=0.05)


def test_every_timeline_bar_is_labelled_inside_its_bar_or_beside_it(tmp_path, monkeypatch):
    from matplotlib.figure import Figure

    figures = []
    original = Figure.savefig
    monkeypatch.setattr(Figure, "savefig", lambda self, *a, **k: (figures.append((self, self.canvas.get_renderer())),
                                                                  original(self, *a, **k)))
    names = ["background", "wave_right_hand", "jump", "phone_call"]
    scores = np.full((300, 4), 0.25)
    truth = [(1, 10, 100), (2, 150, 290)]
    detections = [(1, 20, 95, 0.9), (3, 120, 130, 0.6), (2, 160, 280, 0.8)]  # a narrow false detection
    plot_timeline(scores, tmp_path / "t.png", class_names=names, ground_truth=truth, detections=detections)
    figure, renderer = figures[0]
    bottom = figure.axes[1]
    texts = [t for t in bottom.texts if t.get_text().replace("\n", "_") in names]
    rows = [(1.0, s, e, names[k]) for k, s, e in truth] + [(0.0, s, e, names[k]) for k, s, e, _ in detections]
    assert sorted(t.get_text().replace("\n", "_") for t in texts) == sorted(row[3] for row in rows)
    for y, start, end, name in rows:
        text = next(t for t in texts
                    if t.get_text().replace("\n", "_") == name and t.get_position()[0] == (start + end) / 2)
        box = text.get_window_extent(renderer)
        (left, low), (right, high) = bottom.transData.transform([(start, y - 0.4), (end, y + 0.4)])
        inside = left <= box.x0 and box.x1 <= right and low <= box.y0 and box.y1 <= high
        beside = text.get_position()[1] != y and not (box.y1 > low and box.y0 < high)
        assert inside or beside, name
    hatched = [p for p in bottom.collections if p.get_hatch()]
    assert len(hatched) == 1  # the phone_call detection: its class is not in the ground truth


def test_views_by_layout_and_channels(tmp_path):
    from PIL import Image

    from usdrl.errors import InputError
    from usdrl.viz import animate_skeleton

    keypoints = np.random.default_rng(1).uniform(size=(3, 4, 17, 1)).astype(np.float32)  # x, y, score
    animate_skeleton(keypoints, tmp_path / "coco.gif", layout="coco17")  # a front view by default
    assert Image.open(tmp_path / "coco.gif").n_frames == 4
    with pytest.raises(InputError, match="needs x, y, z"):
        animate_skeleton(keypoints[:2], tmp_path / "x.gif", layout="coco17", view="three-quarter")
    with pytest.raises(InputError, match="view must be"):
        animate_skeleton(keypoints, tmp_path / "x.gif", layout="coco17", view="top")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["coco.gif"]
