"""Person tracks from per-frame pose detections.

A pose estimator gives, frame by frame, the keypoints of the people it sees in no particular
order. :class:`PoseTracker` links them into tracks: each frame, every open track predicts its
pose (its last pose moved by its last velocity), and the Hungarian algorithm
(``scipy.optimize.linear_sum_assignment``) pairs predictions with detections at the lowest
total cost, where the cost is

* ``"keypoints"``: the mean distance of the joints seen in both poses, divided by the size
  of the track's body (the larger side of its last bounding box), or
* ``"iou"``: one minus the intersection over union of the two poses' bounding boxes.

A pair costing more than ``max_cost`` is not a match; an unmatched detection opens a new
track, and a track unmatched for more than ``max_missed`` frames is closed.

Detections are ``(P, V, C)`` arrays: ``P`` people, ``V`` joints, the first ``dims``
channels coordinates and an optional last score; a joint is seen when its coordinates are
finite and (with a score) its score is above 0.
"""

import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import linear_sum_assignment

from ..errors import ConfigError, InputError

METRICS = ("keypoints", "iou")


@dataclass
class Track:
    """One person over time.

    Attributes:
        track_id: 0-based id, in order of appearance.
        frames: frame index of each observation, increasing.
        poses: the ``(V, C)`` detection of each observation.
        missed: frames since the last observation.
    """

    track_id: int
    frames: list[int] = field(default_factory=list)
    poses: list[np.ndarray] = field(default_factory=list)
    missed: int = 0

    def keypoints(self, start: int | None = None, stop: int | None = None) -> np.ndarray:
        """``(stop - start, V, C)`` float32 of frames ``start ... stop - 1`` of the scene (default: the
        first to the last observed frame); frames without an observation are NaN."""
        start = self.frames[0] if start is None else start
        stop = self.frames[-1] + 1 if stop is None else stop
        out = np.full((stop - start, *self.poses[0].shape), np.nan, dtype=np.float32)
        for frame, pose in zip(self.frames, self.poses, strict=True):
            if start <= frame < stop:
                out[frame - start] = pose
        return out


def _seen(poses: np.ndarray, dims: int) -> np.ndarray:
    """``(..., V)`` bool: coordinates finite and, when a score channel follows, score > 0."""
    seen = np.isfinite(poses[..., :dims]).all(axis=-1)
    if poses.shape[-1] > dims:
        seen &= np.nan_to_num(poses[..., dims], nan=0.0) > 0
    return seen


def _boxes(poses: np.ndarray, seen: np.ndarray) -> np.ndarray:
    """``(P, 4)`` x0, y0, x1, y1 of the seen joints of ``(P, V, C)`` (NaN when none is seen)."""
    xy = np.where(seen[..., None], poses[..., :2], np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN slices: a pose with no joint seen
        return np.concatenate([np.nanmin(xy, axis=1), np.nanmax(xy, axis=1)], axis=-1)


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``(A, B)`` intersection over union of boxes ``(A, 4)`` and ``(B, 4)``; 0 where either is NaN."""
    low = np.maximum(a[:, None, :2], b[None, :, :2])
    high = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(high - low, 0, None).prod(-1)
    area_a, area_b = (a[:, 2:] - a[:, :2]).prod(-1), (b[:, 2:] - b[:, :2]).prod(-1)
    with np.errstate(all="ignore"):
        iou = inter / (area_a[:, None] + area_b[None, :] - inter)
    return np.nan_to_num(iou, nan=0.0)


class PoseTracker:
    """Links per-frame pose detections into person tracks (see the module notes).

    Args:
        metric: ``"keypoints"`` or ``"iou"``.
        max_cost: the highest cost of a match (keypoints: in body sizes; iou: ``1 - IoU``).
        max_missed: frames a track may go unseen before it is closed.
        dims: coordinates per joint (2 for image keypoints, 3 for 3D; boxes use x and y).
        min_size: smallest body size used to scale keypoint distances (in coordinate units).
    """

    def __init__(self, *, metric: str = "keypoints", max_cost: float = 0.5, max_missed: int = 10, dims: int = 2,
                 min_size: float = 1e-6):
        if metric not in METRICS:
            raise ConfigError(f"unknown tracking metric {metric!r}; expected one of {', '.join(METRICS)}")
        if max_cost <= 0 or max_missed < 0 or dims not in (2, 3):
            raise ConfigError(f"need max_cost > 0, max_missed >= 0 and dims 2 or 3, got {max_cost}, {max_missed}, "
                              f"{dims}")
        self.metric, self.max_cost, self.max_missed, self.dims = metric, float(max_cost), int(max_missed), dims
        self.min_size = float(min_size)
        self.frame = 0
        self.open: list[Track] = []
        self.closed: list[Track] = []
        self._next_id = 0

    @property
    def tracks(self) -> list[Track]:
        """Every track so far, closed and open, by id."""
        return sorted(self.closed + self.open, key=lambda t: t.track_id)

    def _predict(self, track: Track) -> np.ndarray:
        """The pose ``(V, C)`` a track expects now: the last one moved by the last velocity per frame."""
        last = track.poses[-1]
        if len(track.poses) < 2:
            return last
        gap = track.frames[-1] - track.frames[-2]
        velocity = (last[..., : self.dims] - track.poses[-2][..., : self.dims]) / gap
        ahead = self.frame - track.frames[-1]
        out = last.copy()
        moved = last[..., : self.dims] + ahead * velocity
        out[..., : self.dims] = np.where(np.isfinite(moved), moved, last[..., : self.dims])
        return out

    def _costs(self, predicted: np.ndarray, detections: np.ndarray) -> np.ndarray:
        """``(open tracks, detections)`` matching costs; inf where nothing can be compared."""
        seen_t, seen_d = _seen(predicted, self.dims), _seen(detections, self.dims)
        boxes_t = _boxes(predicted, seen_t)
        if self.metric == "iou":
            return 1.0 - _iou(boxes_t, _boxes(detections, seen_d))
        both = seen_t[:, None, :] & seen_d[None, :, :]                                # (A, B, V)
        gaps = np.linalg.norm(np.nan_to_num(predicted[:, None, :, : self.dims] - detections[None, :, :, : self.dims]),
                              axis=-1)
        counts = both.sum(-1)
        size = np.nan_to_num(np.max(boxes_t[:, 2:] - boxes_t[:, :2], axis=-1), nan=0.0)
        with np.errstate(divide="ignore", invalid="ignore"):
            mean = np.where(both, gaps, 0.0).sum(-1) / counts
        return np.where(counts > 0, mean / np.maximum(size, self.min_size)[:, None], np.inf)

    def update(self, detections) -> list[int]:
        """Take the next frame's detections ``(P, V, C)`` (``P`` may be 0); returns the track id of each."""
        detections = np.asarray(detections, dtype=np.float32)
        if detections.ndim != 3 or detections.shape[-1] < self.dims:
            raise InputError(f"expected detections (P, V, C>={self.dims}) for frame {self.frame}, got shape "
                             f"{detections.shape}")
        ids = [-1] * len(detections)
        matched_tracks = set()
        if self.open and len(detections):
            predicted = np.stack([self._predict(t) for t in self.open])
            if predicted.shape[1:] != detections.shape[1:]:
                raise InputError(f"frame {self.frame}: detections (P, {detections.shape[1]}, {detections.shape[2]}) "
                                 f"differ from earlier frames' (P, {predicted.shape[1]}, {predicted.shape[2]})")
            costs = self._costs(predicted, detections)
            rows, cols = linear_sum_assignment(np.where(np.isfinite(costs), costs, 1e12))
            for row, col in zip(rows, cols, strict=True):
                if costs[row, col] <= self.max_cost:
                    ids[col] = self.open[row].track_id
                    self._observe(self.open[row], detections[col])
                    matched_tracks.add(row)
        for col in range(len(detections)):
            if ids[col] < 0 and _seen(detections[col], self.dims).any():
                track = Track(self._next_id)
                self._next_id += 1
                self._observe(track, detections[col])
                self.open.append(track)
                matched_tracks.add(len(self.open) - 1)
                ids[col] = track.track_id
        still_open = []
        for row, track in enumerate(self.open):
            if row not in matched_tracks:
                track.missed += 1
            (still_open if track.missed <= self.max_missed else self.closed).append(track)
        self.open = still_open
        self.frame += 1
        return ids

    def _observe(self, track: Track, pose: np.ndarray) -> None:
        track.frames.append(self.frame)
        track.poses.append(pose.copy())
        track.missed = 0


def track_poses(frames: Iterable, **options) -> list[Track]:
    """Tracks of a whole scene: ``frames`` yields each frame's detections ``(P, V, C)``;
    ``options`` go to :class:`PoseTracker`. Returns every track, by id."""
    tracker = PoseTracker(**options)
    for detections in frames:
        tracker.update(detections)
    return tracker.tracks
