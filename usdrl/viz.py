"""Pictures of skeletons and detections (needs matplotlib: ``pip install "usdrl[viz]"``).

* :func:`animate_skeleton`: an animated GIF of a clip ``(C, T, V, M)``, in a three-quarter perspective
  view (or front view for 2D keypoints), left and right limbs in their own colours.
* :func:`plot_timeline`: a PNG of per-frame action scores with the ground-truth and the
  detected segments underneath.

Files are written atomically: a failed call leaves no partial picture behind.
"""

import os
from collections.abc import Sequence
from functools import partial
from pathlib import Path

import numpy as np

from ._io import atomic_write
from .errors import InputError, MissingDependencyError
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


def edge_sides(layout: SkeletonLayout) -> list[int]:
    """Per edge of ``layout``: 0 a left limb, 1 a right limb, 2 the trunk (by its joints' names)."""
    def side(joint: int) -> int:
        name = layout.joint_names[joint].lower()
        return 0 if "left" in name else 1 if "right" in name else 2

    return [min(side(a), side(b)) for a, b in layout.edges]


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
    """Azimuth (degrees) of the three-quarter view of ``clip`` ``(3, T, V, M)``: ``turn`` from the front
    for one person; for two, ``turn`` from the side, so that they stand side by side in the picture
    (prepared NTU clips put the second person in front of the first, facing them)."""
    if clip.shape[-1] < 2 or not present[:, :2].any(0).all():
        return turn
    centres = [np.median(clip[..., m][:, present[:, m]].reshape(3, -1), axis=1) for m in (0, 1)]
    dx, _, dz = centres[1] - centres[0]
    if np.hypot(dx, dz) < 1e-6:
        return turn
    return float(np.degrees(np.arctan2(-dz, dx))) + turn


def animate_skeleton(clip, path: str | os.PathLike, *, layout: str | SkeletonLayout = "ntu25",
                     title: str | None = None, fps: int = 15, size: float = 3.2,
                     view: str | None = None) -> Path:
    """Write an animated GIF of ``clip`` ``(C, T, V, M)``.

    ``view="three-quarter"`` (3D joints; the default for ``ntu25``, Kinect's joints) draws a perspective view
    from 35 degrees to the side and a little above (two persons: from their side, so that they stand
    side by side), with the floor under the feet;
    ``view="front"`` (the default for other layouts, whose prepared data are 2D keypoints with a
    score as third channel) draws x and y as they are. Left
    limbs are blue, right limbs red, the trunk grey (a second person in lighter shades); absent
    persons and frames are skipped; the view is
    fitted to the 2nd-98th percentiles of the joints, so that glitches do not move it. Every
    frame shows ``title`` (e.g. the predicted class and its probability) and a frame counter.
    Returns ``path``.
    """
    plt = _pyplot()
    from PIL import Image

    layout = layout if isinstance(layout, SkeletonLayout) else get_layout(layout)
    clip = np.asarray(clip, dtype=np.float32)
    if clip.ndim != 4 or clip.shape[0] < 2 or clip.shape[2] != layout.num_joints:
        raise InputError(f"expected a clip (C, T, {layout.num_joints}, M) for layout {layout.name}, "
                         f"got shape {clip.shape}")
    view = view or ("three-quarter" if layout.name == "ntu25" else "front")
    if view not in ("three-quarter", "front"):
        raise InputError(f"view must be 'three-quarter' or 'front', got {view!r}")
    if view == "three-quarter" and clip.shape[0] < 3:
        raise InputError(f"a three-quarter view needs x, y, z (C = 3), got C = {clip.shape[0]}; use view='front'")
    present = np.abs(clip).sum(axis=(0, 2)) > 0                          # (T, M) person m drawn in frame t
    clip, present = clip[..., present.any(0)], present[:, present.any(0)]
    drawn = np.broadcast_to(present[:, None, :], clip.shape[1:]).reshape(-1)  # (T·V·M,) joints drawn
    floor = []
    if view == "three-quarter" and drawn.any():
        points = clip[:3].reshape(3, -1)[:, drawn]
        centre = np.median(points, axis=1)                               # (3,) robust centre of the body
        height = float(np.subtract(*np.percentile(points[1], [98, 2]))) or 1.0
        xyz = clip[:3] - centre[:, None, None, None]
        project = partial(three_quarter_view, azimuth=_azimuth(xyz, present), distance=3 * height)
        image = project(xyz)                                             # (2, T, V, M)
        floor = [project(line) for line in _floor_lines(np.percentile(points[1], 1) - centre[1], 0.6 * height)]
    else:
        image = clip[:2].copy()
    lo, hi = _robust_bounds(image.reshape(2, -1)[:, drawn]) if drawn.any() else (-np.ones(2), np.ones(2))

    figure, axes = plt.subplots(figsize=(size, size), dpi=80)
    axes.set_xlim(lo[0], hi[0])
    axes.set_ylim(lo[1], hi[1])
    axes.set_aspect("equal")
    axes.axis("off")
    if title:
        axes.set_title(title, fontsize=9)
    for line in floor:
        axes.plot(line[0], line[1], color="#dddddd", lw=0.8, zorder=0)
    sides = edge_sides(layout)
    lines = [[axes.plot([], [], color=SIDE_COLOURS[min(m, 1)][side], lw=2, solid_capstyle="round")[0]
              for side in sides] for m in range(image.shape[-1])]
    figure.text(0.97, 0.09, "left", color=SIDE_COLOURS[0][0], fontsize=8, ha="right")
    figure.text(0.97, 0.03, "right", color=SIDE_COLOURS[0][1], fontsize=8, ha="right")
    counter = figure.text(0.03, 0.03, "", fontsize=8)
    frames = []
    try:
        for t in range(image.shape[1]):
            for m, body in enumerate(lines):
                for line, (a, b) in zip(body, layout.edges, strict=True):
                    shown = present[t, m]
                    line.set_data([image[0, t, a, m], image[0, t, b, m]] if shown else [],
                                  [image[1, t, a, m], image[1, t, b, m]] if shown else [])
            counter.set_text(f"frame {t + 1}/{image.shape[1]}")
            figure.canvas.draw()
            frames.append(Image.fromarray(np.asarray(figure.canvas.buffer_rgba())).convert("RGB").quantize(64))
    finally:
        plt.close(figure)
    return atomic_write(path, lambda tmp: frames[0].save(tmp, format="GIF", save_all=True, append_images=frames[1:],
                                                         duration=round(1000 / fps), loop=0))


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
        min_iou: a detection overlapping no ground-truth action of its class by this much
            (official PKU-MMD overlap) is drawn hatched, as a false detection.

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
