"""Pictures of skeletons and detections (needs matplotlib: ``pip install "usdrl[viz]"``).

* :func:`animate_skeleton`: an animated GIF of a clip ``(C, T, V, M)`` of any layout or keypoint
  format, in a three-quarter perspective view (or front view for 2D keypoints, heads up), left and
  right limbs in their own colours, low-score joints pale, missing ones left out.
* :func:`animate_scene`: the same for a scene of tracked people, each labelled beside them.
* :func:`plot_timeline`: a PNG of per-frame action scores with the ground-truth and the
  detected segments underneath.

Files are written atomically: a failed call leaves no partial picture behind.
"""

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np

from ._io import atomic_write
from .errors import InputError, MissingDependencyError
from .keypoints.formats import FORMATS, get_format
from .skeleton import SkeletonLayout, get_layout

VIZ_HINT = 'pip install "usdrl[viz]"'


def _pyplot():
    """matplotlib's pyplot on the non-interactive Agg backend."""
    try:
        import matplotlib
    except ImportError:
        raise MissingDependencyError(f"pictures need matplotlib: {VIZ_HINT}") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


#: Colours of each person's left limbs, right limbs and trunk (a second person gets lighter ones).
SIDE_COLOURS = (("#1f5fbf", "#d62728", "#333333"), ("#17becf", "#ff7f0e", "#8c8c8c"))


def _joint_side(layout: SkeletonLayout, joint: int) -> int:
    """0 if ``joint`` of ``layout`` is on the left (by its name), 1 on the right, 2 on the trunk."""
    name = layout.joint_names[joint].lower()
    return 0 if "left" in name else 1 if "right" in name else 2


def edge_sides(layout: SkeletonLayout) -> list[int]:
    """Per edge of ``layout``: 0 a left limb, 1 a right limb, 2 the trunk (by its joints' names)."""
    return [min(_joint_side(layout, a), _joint_side(layout, b)) for a, b in layout.edges]


def three_quarter_view(xyz: np.ndarray, *, azimuth: float = 35.0, elevation: float = 20.0,
                       distance: float = 3.0) -> np.ndarray:
    """Perspective projection of camera-space points ``(3, ...)`` (Kinect's convention, as NTU RGB+D:
    x to the camera's left, y up, z away from the camera) seen from ``azimuth`` degrees to the side
    and ``elevation`` degrees above, by a camera ``distance`` units in front of the origin;
    returns image coordinates ``(2, ...)`` (x right, y up)."""
    a, e = np.radians(azimuth), np.radians(elevation)
    x = -xyz[0] * np.cos(a) + xyz[2] * np.sin(a)  # mirrored: the camera's left is the image's left
    z = xyz[0] * np.sin(a) + xyz[2] * np.cos(a)
    y, z = xyz[1] * np.cos(e) - z * np.sin(e), xyz[1] * np.sin(e) + z * np.cos(e)
    scale = distance / np.maximum(distance + z, 0.1 * distance)  # points behind the camera stay finite
    return np.stack([x * scale, y * scale])


def _robust_bounds(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Low and high corners ``(2,)`` of points ``(2, P)``: the 2nd and 98th percentiles widened by a
    fifth, so that a few wild joints (sensor glitches) do not pull the view away from the body."""
    lo, hi = np.percentile(points, 2, axis=1), np.percentile(points, 98, axis=1)
    pad = 0.2 * (hi - lo) + 1e-3
    return lo - pad, hi + pad


def _floor_lines(ground: float, half: float, count: int = 5) -> list[np.ndarray]:
    """A square grid of ``count`` by ``count`` lines on the floor ``y = ground``, ``2 * half`` wide around
    the origin: lines ``(3, count)`` of points."""
    ticks = np.linspace(-half, half, count)
    level, fixed = np.full(count, ground), [np.full(count, tick) for tick in ticks]
    return [np.stack(line) for tick in fixed for line in ((ticks, level, tick), (tick, level, ticks))]


def _azimuth(clip: np.ndarray, present: np.ndarray, turn: float = 35.0) -> float:
    """Azimuth (degrees) of the three-quarter view of ``clip`` ``(3, T, V, M)`` (NaN: joints not seen):
    ``turn`` from the front for one person; for two, ``turn`` from the side, so that they stand side
    by side in the picture (prepared NTU clips put the second person in front of the first, facing them)."""
    if clip.shape[-1] < 2 or not present[:, :2].any(0).all():
        return turn
    centres = [np.nanmedian(clip[..., m][:, present[:, m]].reshape(3, -1), axis=1) for m in (0, 1)]
    dx, _, dz = centres[1] - centres[0]
    if not np.hypot(dx, dz) > 1e-6:
        return turn
    return float(np.degrees(np.arctan2(-dz, dx))) + turn


VIEWS = ("three-quarter", "front")


def _convention(layout: SkeletonLayout) -> tuple[int, bool]:
    """``(dims, y_up)`` of the keypoint format named as ``layout``; a layout of no registered format
    is taken as Kinect's: 3D, y up."""
    fmt = FORMATS.get(layout.name)
    return (3, True) if fmt is None else (fmt.dims, fmt.convention.y_up is not False)


@dataclass
class SkeletonScene:
    """What a skeleton picture draws, in drawing coordinates (x right, y up).

    Attributes:
        image: ``(2, T, V, M)`` each joint's place on the picture (NaN where not shown).
        shown: ``(T, V, M)`` which joints are drawn: coordinates finite, person present in the frame,
            score above ``min_score`` (when the clip has scores).
        confidence: ``(T, V, M)`` the joints' scores clipped to [0, 1] (1 without scores): low ones fade.
        floor: lines ``(2, n)`` of the floor grid (three-quarter views).
        labels: a text per person drawn beside them (None: none).
        scored: whether the clip's score channel was used.
    """

    image: np.ndarray
    shown: np.ndarray
    confidence: np.ndarray
    floor: list[np.ndarray]
    labels: list[str | None]
    scored: bool


def skeleton_scene(clip, layout: str | SkeletonLayout, *, view: str | None = None, y_up: bool | None = None,
                   scores: bool | None = None, min_score: float = 0.0,
                   labels: Sequence[str | None] | None = None) -> SkeletonScene:
    """Place the joints of ``clip`` ``(C, T, V, M)`` on the picture (see :func:`animate_skeleton`);
    persons never present are left out (with their ``labels``)."""
    layout = layout if isinstance(layout, SkeletonLayout) else get_layout(layout)
    clip = np.asarray(clip, dtype=np.float32)
    if clip.ndim != 4 or clip.shape[0] < 2 or clip.shape[2] != layout.num_joints:
        raise InputError(f"expected a clip (C, T, {layout.num_joints}, M) for layout {layout.name}, "
                         f"got shape {clip.shape}")
    labels = list(labels) if labels is not None else [None] * clip.shape[-1]
    if len(labels) != clip.shape[-1]:
        raise InputError(f"expected a label (or None) per person, {clip.shape[-1]}, got {len(labels)}")
    dims, format_y_up = _convention(layout)
    y_up = format_y_up if y_up is None else y_up
    view = view or ("three-quarter" if dims == 3 and clip.shape[0] >= 3 else "front")
    if view not in VIEWS:
        raise InputError(f"view must be 'three-quarter' or 'front', got {view!r}")
    if view == "three-quarter" and clip.shape[0] < 3:
        raise InputError(f"a three-quarter view needs x, y, z (C = 3), got C = {clip.shape[0]}; use view='front'")
    score = clip[dims] if clip.shape[0] > dims else None                  # (T, V, M) or None
    if scores and score is None:
        raise InputError(f"scores=True needs a score channel after the {dims} coordinates of {layout.name}, "
                         f"got C = {clip.shape[0]}")
    scored = score is not None and (bool(scores) or (scores is None and bool(np.any(score))))
    coords = clip[:3 if view == "three-quarter" else 2].copy()
    finite = np.isfinite(coords).all(axis=0)                             # (T, V, M)
    present = np.abs(np.where(finite, coords, 0)).sum(axis=(0, 2)) > 0   # (T, M) person m in frame t
    shown = finite & present[:, None, :]
    confidence = np.ones_like(shown, dtype=np.float32)
    if scored:
        shown &= np.nan_to_num(score, nan=-np.inf) > min_score
        confidence = np.clip(np.nan_to_num(score), 0.0, 1.0)
    keep = shown.any(axis=(0, 1))
    coords, shown, confidence, present = coords[..., keep], shown[..., keep], confidence[..., keep], present[:, keep]
    labels = [label for label, kept in zip(labels, keep, strict=True) if kept]
    coords[:, ~shown] = np.nan
    if not y_up:  # image rows grow downwards: turn half a turn about the depth axis (keeps left and right)
        coords[1] = -coords[1]
        if view == "three-quarter":
            coords[0] = -coords[0]
    floor = []
    if view == "three-quarter" and shown.any():
        points = coords[:, shown]                                        # (3, P)
        centre = np.median(points, axis=1)                               # (3,) robust centre of the bodies
        height = float(np.subtract(*np.percentile(points[1], [98, 2]))) or 1.0
        xyz = coords - centre[:, None, None, None]
        project = partial(three_quarter_view, azimuth=_azimuth(xyz, present), distance=3 * height)
        coords = project(xyz)
        floor = [project(line) for line in _floor_lines(np.percentile(points[1], 1) - centre[1], 0.6 * height)]
    return SkeletonScene(coords, shown, confidence, floor, labels, scored)


def _fade(colour, alpha: float) -> tuple[float, float, float]:
    """``colour`` blended with white: ``alpha`` 1 is the colour, 0 white (opaque, so GIFs keep it)."""
    from matplotlib.colors import to_rgb

    return tuple(1 - alpha * (1 - c) for c in to_rgb(colour))


def _opacity(confidence: float) -> float:
    """How strongly a joint or bone of score ``confidence`` in [0, 1] is drawn: 0.2 at 0, 1 at 1."""
    return 0.2 + 0.8 * float(confidence)


class SkeletonPicture:
    """A matplotlib figure of a :class:`SkeletonScene`; :meth:`show` draws frame ``t``.

    Bones and joints take their side's colour (:data:`SIDE_COLOURS`: left, right, trunk; the second
    and later persons lighter), faded towards white as their score falls (a bone: its weaker joint);
    a bone is drawn when both its joints are shown. Each person's label is centred above the
    person's highest shown joint, in a box edged with the person's trunk colour.
    """

    def __init__(self, scene: SkeletonScene, layout: SkeletonLayout, *, title: str | None = None,
                 size: float = 3.2):
        plt = _pyplot()
        self.scene, self.layout = scene, layout
        shown = scene.shown
        self.lo, self.hi = (_robust_bounds(scene.image[:, shown]) if shown.any() else (-np.ones(2), np.ones(2)))
        width, height = self.hi - self.lo
        # a wide scene (people side by side) gets a wide picture, down to 0.6 times as high as wide
        self.figure, self.axes = plt.subplots(figsize=(size, size * float(np.clip(height / width, 0.6, 1.0))), dpi=80)
        self.close = partial(plt.close, self.figure)  #: close the figure
        axes = self.axes
        axes.set_xlim(self.lo[0], self.hi[0])
        axes.set_ylim(self.lo[1], self.hi[1])
        axes.set_aspect("equal")
        axes.axis("off")
        if title:
            axes.set_title(title, fontsize=9)
        for line in scene.floor:
            axes.plot(line[0], line[1], color="#dddddd", lw=0.8, zorder=0)
        persons = scene.image.shape[-1]
        self.edge_sides = edge_sides(layout)
        self.joint_sides = [_joint_side(layout, v) for v in range(layout.num_joints)]
        self.colours = [SIDE_COLOURS[min(m, 1)] for m in range(persons)]
        self.lines = [[axes.plot([], [], lw=2, solid_capstyle="round")[0] for _ in layout.edges]
                      for _ in range(persons)]
        self.dots = [axes.scatter([], [], s=6, zorder=3, linewidths=0) for _ in range(persons)]
        self.texts = [axes.text(0, 0, label, ha="center", va="bottom", fontsize=8, clip_on=False, visible=False,
                                bbox={"facecolor": "white", "alpha": 0.85, "pad": 1.5,
                                      "edgecolor": self.colours[m][2]})
                      if label else None for m, label in enumerate(scene.labels)]
        self.figure.text(0.97, 0.09, "left", color=SIDE_COLOURS[0][0], fontsize=8, ha="right")
        self.figure.text(0.97, 0.03, "right", color=SIDE_COLOURS[0][1], fontsize=8, ha="right")
        if scene.scored:
            self.figure.text(0.97, 0.15, "pale: low score", color="#888888", fontsize=7, ha="right")
        self.counter = self.figure.text(0.03, 0.03, "", fontsize=8)

    def show(self, t: int) -> None:
        """Draw frame ``t``."""
        scene = self.scene
        image, shown, confidence = scene.image[:, t], scene.shown[t], scene.confidence[t]  # (2, V, M), (V, M)
        for m, body in enumerate(self.lines):
            for line, (a, b), side in zip(body, self.layout.edges, self.edge_sides, strict=True):
                drawn = shown[a, m] and shown[b, m]
                line.set_data(image[0, [a, b], m] if drawn else [], image[1, [a, b], m] if drawn else [])
                line.set_color(_fade(self.colours[m][side], _opacity(min(confidence[a, m], confidence[b, m]))))
            joints = np.flatnonzero(shown[:, m])
            self.dots[m].set_offsets(image[:, joints, m].T.reshape(-1, 2))
            self.dots[m].set_facecolors([_fade(self.colours[m][self.joint_sides[v]], _opacity(confidence[v, m]))
                                         for v in joints])
            text = self.texts[m]
            if text is not None:
                text.set_visible(len(joints) > 0)
                if len(joints):
                    text.set_position(self.label_anchor(image[:, joints, m]))
        self.counter.set_text(f"frame {t + 1}/{scene.image.shape[1]}")

    def label_anchor(self, points: np.ndarray) -> tuple[float, float]:
        """Where a person's label goes, given their shown joints ``(2, P)``: centred on their middle
        (halfway between the outermost joints), a little above the highest joint."""
        return (float(points[0].min() + points[0].max()) / 2,
                float(points[1].max() + 0.03 * (self.hi[1] - self.lo[1])))

    def frames(self):
        """Every frame as a PIL image (the figure is closed afterwards)."""
        from PIL import Image

        try:
            for t in range(self.scene.image.shape[1]):
                self.show(t)
                self.figure.canvas.draw()
                yield Image.fromarray(np.asarray(self.figure.canvas.buffer_rgba())).convert("RGB").quantize(64)
        finally:
            self.close()


def _write_gif(picture: SkeletonPicture, path: str | os.PathLike, fps: int) -> Path:
    frames = list(picture.frames())
    return atomic_write(path, lambda tmp: frames[0].save(tmp, format="GIF", save_all=True, append_images=frames[1:],
                                                         duration=round(1000 / fps), loop=0))


def animate_skeleton(clip, path: str | os.PathLike, *, layout: str | SkeletonLayout = "ntu25",
                     title: str | None = None, fps: int = 15, size: float = 3.2,
                     view: str | None = None, y_up: bool | None = None, scores: bool | None = None,
                     min_score: float = 0.0, labels: Sequence[str | None] | None = None) -> Path:
    """Write an animated GIF of ``clip`` ``(C, T, V, M)``, drawn with the bones of ``layout`` (any
    registered layout, every keypoint format of :mod:`usdrl.keypoints` among them).

    ``view="three-quarter"`` (the default for 3D formats, e.g. ``ntu25``, ``h36m17``, ``smpl24``)
    draws a perspective view from 35 degrees to the side and a little above (two persons: from
    their side, so that they stand side by side), with the floor under the feet; ``view="front"``
    (the default for 2D formats, e.g. ``coco17``, ``mediapipe33``) draws x and y as they are.
    ``y_up`` (default: the format's convention, :class:`~usdrl.keypoints.Convention`) says
    whether y grows upwards; image keypoints (y down) are turned so that heads are up.

    Channels after the format's coordinates are a score per joint (``scores``: None uses them when
    any is non-zero, as pyskl's 2D data with ``padding="zero"`` has none): joints scoring
    ``min_score`` or less are not drawn, low scores are pale. Joints with NaN coordinates, and
    persons whose joints are all zero in a frame, are not drawn. Left limbs are blue, right limbs
    red, the trunk grey (later persons in lighter shades); ``labels`` puts a text per person above
    their head. The view is fitted to the 2nd-98th percentiles of the joints, so that glitches do
    not move it. Every frame shows ``title`` (e.g. the predicted class and its probability) and
    a frame counter. Returns ``path``.
    """
    layout = layout if isinstance(layout, SkeletonLayout) else get_layout(layout)
    scene = skeleton_scene(clip, layout, view=view, y_up=y_up, scores=scores, min_score=min_score, labels=labels)
    return _write_gif(SkeletonPicture(scene, layout, title=title, size=size), path, fps)


def scene_clip(people, *, format: str) -> tuple[list[int], np.ndarray]:
    """The ids and the clip ``(C, T, V, M)`` of a scene's ``people``: tracks
    (:func:`~usdrl.keypoints.tracking.track_poses`, over the frames from the first seen to the last;
    NaN where a person is not seen), a mapping ``{id: (T, V, C)}``, or an array ``(M, T, V, C)``
    (ids ``0 ... M-1``), in keypoint format ``format``."""
    if isinstance(people, Mapping):
        ids, arrays = list(people), [np.asarray(a, dtype=np.float32) for a in people.values()]
    elif len(people) and all(hasattr(p, "track_id") for p in people):
        start, stop = min(p.frames[0] for p in people), max(p.frames[-1] for p in people) + 1
        ids, arrays = [p.track_id for p in people], [p.keypoints(start, stop) for p in people]
    else:
        arrays = [np.asarray(a, dtype=np.float32) for a in people]
        ids = list(range(len(arrays)))
    joints = get_format(format).num_joints
    shapes = {a.shape for a in arrays}
    if not arrays or len(shapes) != 1 or len(next(iter(shapes))) != 3 or next(iter(shapes))[1] != joints:
        raise InputError(f"expected each person as (T, {joints}, C) for format {format}, all alike, got shapes "
                         f"{sorted(shapes)}")
    return ids, np.stack(arrays, axis=-1).transpose(2, 0, 1, 3)      # (T, V, C, M) -> (C, T, V, M)


def animate_scene(people, path: str | os.PathLike, *, format: str, labels: Mapping[int, str] | None = None,
                  title: str | None = None, fps: int = 15, size: float = 4.0, view: str | None = None,
                  min_score: float = 0.0) -> Path:
    """Write an animated GIF of a scene of several people, each with their own label beside them.

    Args:
        people: tracks from :func:`~usdrl.keypoints.tracking.track_poses`, a mapping ``{id: (T, V, C)}``
            or an array ``(M, T, V, C)``: keypoints in format ``format`` (coordinates, then an
            optional score; NaN where a joint is not seen), as the pose estimator gave them.
        labels: ``{id: text}``, e.g. each track's predicted class and probability
            (``{0: "wave 0.93"}``), drawn above that person's head.

    Drawn as :func:`animate_skeleton` draws a clip (the format's bones and y direction, scores).
    """
    ids, clip = scene_clip(people, format=format)
    labels = dict(labels or {})
    unknown = sorted(set(labels) - set(ids))
    if unknown:
        raise InputError(f"labels name people {unknown}, who are not in the scene (ids {sorted(ids)})")
    return animate_skeleton(clip, path, layout=format, title=title, fps=fps, size=size, view=view,
                            min_score=min_score, labels=[labels.get(i) for i in ids])


def _two_lines(text: str) -> str:
    """``text`` split at the underscore nearest its middle (unchanged without one)."""
    cuts = [i for i, ch in enumerate(text) if ch == "_"]
    if not cuts:
        return text
    cut = min(cuts, key=lambda i: abs(2 * i - len(text)))
    return f"{text[:cut]}\n{text[cut + 1:]}"


def _label_bar(axes, renderer, text: str, start: float, end: float, y: float, outside: float, *,
               colour, boxed: bool = False) -> None:
    """Write ``text`` on the bar ``[start, end)`` of ``colour`` centred at height ``y`` (data units, bar
    height 0.8): on one line if it fits, else on two lines in a smaller font, else beside the bar at
    height ``outside``. ``boxed`` puts a white box behind the text (for hatched bars); on a dark bar
    the text is white."""
    from matplotlib.colors import to_rgb

    luminance = np.dot(to_rgb(colour), (0.299, 0.587, 0.114))
    ink = "black" if boxed or luminance > 0.45 else "white"
    left, right = axes.transData.transform([(start, y), (end, y)])[:, 0]
    top, bottom = axes.transData.transform([(start, y + 0.4), (start, y - 0.4)])[:, 1]
    box = {"facecolor": "white", "alpha": 0.8, "pad": 0.6, "edgecolor": "none"} if boxed else None
    for label, size in ((text, 7), (text, 6), (_two_lines(text), 6)):
        written = axes.text((start + end) / 2, y, label, ha="center", va="center", fontsize=size,
                            linespacing=0.95, bbox=box, color=ink)
        extent = written.get_window_extent(renderer)
        if extent.width <= 0.95 * (right - left) and extent.height <= 0.9 * (top - bottom):
            return
        written.remove()
    axes.text((start + end) / 2, outside, text, ha="center", va="center", fontsize=6.5, clip_on=False)


def plot_timeline(scores, path: str | os.PathLike, *, class_names: Sequence[str],
                  ground_truth: Sequence[tuple[int, int, int]] = (),
                  detections: Sequence[tuple[int, int, int, float]] = (), background: int | None = 0,
                  threshold: float | None = None, fps: float = 30.0, min_iou: float = 0.5) -> Path:
    """Write a PNG timeline of an untrimmed sequence.

    Args:
        scores: ``(T, K)`` per-frame class probabilities (column ``background`` is "no action").
        class_names: a name per column of ``scores``.
        ground_truth: ``(label, start, end)`` segments (frames ``start:end``), labels being columns
            of ``scores``.
        detections: ``(label, start, end, score)`` proposals.
        threshold: drawn as a dashed line when given.
        fps: frames per second, for the time axis in seconds drawn above the frame axis.
        min_iou: a detection whose temporal IoU with every ground-truth action of its class is
            below this is drawn hatched, as a false detection.

    The top panel shows the probability of every class that occurs in ``ground_truth`` or
    ``detections``; the bottom one the ground-truth and detected segments, every one
    labelled (inside its bar when the name fits, split at underscores, or else beside it).
    """
    from .tasks.metrics import temporal_iou

    plt = _pyplot()
    scores = np.asarray(scores, dtype=np.float32)
    if scores.ndim != 2 or scores.shape[1] != len(class_names):
        raise InputError(f"expected scores (T, {len(class_names)}) for {len(class_names)} class names, "
                         f"got shape {scores.shape}")
    frames = np.arange(len(scores))
    shown = sorted({int(row[0]) for row in (*ground_truth, *detections)} - {background})
    colours = {label: plt.get_cmap("tab10")(i % 10) for i, label in enumerate(shown)}

    figure, (top, bottom) = plt.subplots(2, 1, figsize=(10, 4.6), sharex=True,
                                         gridspec_kw={"height_ratios": [3, 1.8]})
    for label in shown:
        top.plot(frames, scores[:, label], color=colours[label], lw=1.5, label=class_names[label])
    if threshold is not None:
        top.axhline(threshold, color="grey", ls="--", lw=1, label="threshold")
    top.set_ylim(0, 1.02)
    top.set_ylabel("probability")
    top.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8, frameon=False)
    seconds = top.secondary_xaxis("top", functions=(lambda f: f / fps, lambda s: s * fps))
    seconds.set_xlabel(f"time (s, at {fps:g} frames/s)", fontsize=8)
    seconds.tick_params(labelsize=8)
    false = [not any(t[0] == d[0] and temporal_iou(t[1:3], d[1:3]) >= min_iou for t in ground_truth)
             for d in detections]
    for (label, start, end), wrong in zip((row[:3] for row in detections), false, strict=True):
        bottom.broken_barh([(start, end - start)], (-0.4, 0.8), facecolor=colours.get(label, "grey"),
                           hatch="////" if wrong else None, edgecolor="white" if wrong else None)
    for label, start, end in ground_truth:
        bottom.broken_barh([(start, end - start)], (0.6, 0.8), color=colours.get(label, "grey"))
    bottom.set_yticks([1, 0], ["ground truth", "detected"])
    bottom.set_ylim(-1.0, 2.0)
    bottom.set_xlabel("frame")
    bottom.set_xlim(0, len(scores))
    if any(false):
        bottom.text(1.01, 0.0, "hatched: false\ndetection", transform=bottom.get_yaxis_transform(), fontsize=7,
                    va="center")
    figure.tight_layout()
    renderer = figure.canvas.get_renderer()
    for label, start, end in ground_truth:
        _label_bar(bottom, renderer, class_names[label], start, end, 1.0, outside=1.7,
                   colour=colours.get(label, "grey"))
    for (label, start, end, _), wrong in zip(detections, false, strict=True):
        _label_bar(bottom, renderer, class_names[label], start, end, 0.0, outside=-0.7,
                   colour=colours.get(label, "grey"), boxed=wrong)
    try:
        return atomic_write(path, lambda tmp: figure.savefig(tmp, format="png", dpi=100))
    finally:
        plt.close(figure)
