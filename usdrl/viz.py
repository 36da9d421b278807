"""Pictures of skeletons and detections (needs matplotlib: ``pip install "usdrl[viz]"``).

* :func:`animate_skeleton`: an animated GIF of a clip ``(C, T, V, M)``, front view (x, y).
* :func:`plot_timeline`: a PNG of per-frame action scores with the ground-truth and the
  detected segments underneath.

Files are written atomically: a failed call leaves no partial picture behind.
"""

import os
from collections.abc import Sequence
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


def animate_skeleton(clip, path: str | os.PathLike, *, layout: str | SkeletonLayout = "ntu25",
                     title: str | None = None, fps: int = 15, size: float = 3.2) -> Path:
    """Write an animated GIF of ``clip`` ``(C, T, V, M)`` (x horizontal, y up; absent bodies skipped).

    ``title`` is drawn above every frame (e.g. the predicted action); returns ``path``.
    """
    plt = _pyplot()
    from PIL import Image

    layout = layout if isinstance(layout, SkeletonLayout) else get_layout(layout)
    clip = np.asarray(clip, dtype=np.float32)
    if clip.ndim != 4 or clip.shape[0] < 2 or clip.shape[2] != layout.num_joints:
        raise InputError(f"expected a clip (C, T, {layout.num_joints}, M) for layout {layout.name}, "
                         f"got shape {clip.shape}")
    present = np.abs(clip).sum(axis=(0, 1, 2)) > 0                     # (M,)
    xy = clip[:2][..., present]                                         # (2, T, V, M')
    lo, hi = xy.reshape(2, -1).min(1), xy.reshape(2, -1).max(1)
    margin = 0.1 * float((hi - lo).max() or 1.0)

    figure, axes = plt.subplots(figsize=(size, size), dpi=80)
    axes.set_xlim(lo[0] - margin, hi[0] + margin)
    axes.set_ylim(lo[1] - margin, hi[1] + margin)
    axes.set_aspect("equal")
    axes.axis("off")
    if title:
        axes.set_title(title, fontsize=10)
    colours = ("tab:blue", "tab:orange", "tab:green", "tab:red")
    lines = [[axes.plot([], [], color=colours[m % 4], lw=2)[0] for _ in layout.edges] for m in range(xy.shape[-1])]
    counter = axes.text(0.02, 0.02, "", transform=axes.transAxes, fontsize=8)
    frames = []
    try:
        for t in range(xy.shape[1]):
            for m, body in enumerate(lines):
                for line, (a, b) in zip(body, layout.edges, strict=True):
                    line.set_data([xy[0, t, a, m], xy[0, t, b, m]], [xy[1, t, a, m], xy[1, t, b, m]])
            counter.set_text(f"frame {t + 1}/{xy.shape[1]}")
            figure.canvas.draw()
            frames.append(Image.fromarray(np.asarray(figure.canvas.buffer_rgba())).convert("RGB").quantize(64))
    finally:
        plt.close(figure)
    return atomic_write(path, lambda tmp: frames[0].save(tmp, format="GIF", save_all=True, append_images=frames[1:],
                                                         duration=round(1000 / fps), loop=0))


def plot_timeline(scores, path: str | os.PathLike, *, class_names: Sequence[str],
                  ground_truth: Sequence[tuple[int, int, int]] = (),
                  detections: Sequence[tuple[int, int, int, float]] = (), background: int | None = 0,
                  threshold: float | None = None, fps: float = 30.0) -> Path:
    """Write a PNG timeline of an untrimmed sequence.

    Args:
        scores: ``(T, K)`` per-frame class probabilities (column ``background`` is "no action").
        class_names: a name per column of ``scores``.
        ground_truth: ``(label, start, end)`` segments, labels being columns of ``scores``.
        detections: ``(label, start, end, score)`` proposals.
        threshold: drawn as a dashed line when given.
        fps: frames per second of the time axis.

    The top panel shows the probability of every class that occurs in ``ground_truth`` or
    ``detections``; the bottom one the ground-truth and detected segments, labelled.
    """
    plt = _pyplot()
    scores = np.asarray(scores, dtype=np.float32)
    if scores.ndim != 2 or scores.shape[1] != len(class_names):
        raise InputError(f"expected scores (T, {len(class_names)}) for {len(class_names)} class names, "
                         f"got shape {scores.shape}")
    seconds = np.arange(len(scores)) / fps
    shown = sorted({int(row[0]) for row in (*ground_truth, *detections)} - {background})
    colours = {label: plt.get_cmap("tab10")(i % 10) for i, label in enumerate(shown)}

    figure, (top, bottom) = plt.subplots(2, 1, figsize=(10, 4.2), sharex=True,
                                         gridspec_kw={"height_ratios": [3, 1.4]})
    for label in shown:
        top.plot(seconds, scores[:, label], color=colours[label], lw=1.5, label=class_names[label])
    if threshold is not None:
        top.axhline(threshold, color="grey", ls="--", lw=1, label="threshold")
    top.set_ylim(0, 1.02)
    top.set_ylabel("probability")
    top.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8, frameon=False)
    rows = (("ground truth", ground_truth), ("detected", [row[:3] for row in detections]))
    for y, (_, segments) in enumerate(rows):
        for label, start, end in segments:
            bottom.broken_barh([(start / fps, (end - start) / fps)], (1 - y - 0.4, 0.8),
                               color=colours.get(label, "grey"))
            if end - start >= 0.06 * len(scores):  # label the segments wide enough for their name
                bottom.text((start + end) / 2 / fps, 1 - y, class_names[label], ha="center", va="center",
                            fontsize=7, clip_on=True)
    bottom.set_yticks([1, 0], [name for name, _ in rows])
    bottom.set_ylim(-0.6, 1.6)
    bottom.set_xlabel("time (s)")
    bottom.set_xlim(0, len(scores) / fps)
    figure.tight_layout()
    try:
        return atomic_write(path, lambda tmp: figure.savefig(tmp, format="png", dpi=100))
    finally:
        plt.close(figure)
