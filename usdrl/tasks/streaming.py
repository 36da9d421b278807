"""Online detection: frames in one at a time (or in chunks), frame scores and finished actions out.

:class:`StreamingDetector` keeps the frames of the window being filled, runs the model's
frame-wise head on every window of ``num_frames`` frames that starts at a multiple of
``stride`` (exactly the windows of the offline :func:`usdrl.tasks.detection.frame_scores`)
and averages overlapping windows. A frame's scores are final once the last window
containing it has run, i.e. ``num_frames - 1`` frames later at most (the latency);
:meth:`StreamingDetector.finish` zero-pads the last window as the offline detector does,
so a recorded sequence gives the offline scores and proposals exactly (in the same precision).

:class:`MultiTrackDetector` serves several person tracks at once (one state per track,
tracks appearing and leaving), running the windows of all tracks in one batch.
"""

from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import torch

from ..errors import ConfigError, InputError
from ..keypoints import get_format
from ..model import USDRL
from ..precision import Precision, resolve_precision
from ..universal import window_converter


@dataclass
class StreamOutput:
    """What one call produced: final ``scores (F, K)`` for frames ``first_frame ...`` and the
    actions that ended, ``[(label, start, end, mean score)]`` (end exclusive)."""

    first_frame: int
    scores: np.ndarray
    actions: list[tuple[int, int, int, float]] = field(default_factory=list)


def _frame_probabilities(model: USDRL, clips: np.ndarray, precision: Precision) -> torch.Tensor:
    """Frame-class probabilities ``(W, T, K)`` of windows ``(W, C, T, V, M)``, computed where the model is."""
    device = next(model.parameters()).device
    with torch.inference_mode(), precision.context():
        return model.forward_frames(torch.from_numpy(clips).to(device)).float().softmax(-1).cpu()


class StreamingDetector:
    """Online version of the sliding-window detector.

    Args:
        model: a model with a frame-wise head (class 0 = background).
        stride: frames between window starts (default: the window length).
        threshold: a frame belongs to an action while that class's probability is above it.
        precision: the compute precision (:func:`usdrl.precision.resolve_precision`), chosen once for
            single windows where the model is: ``"auto"`` takes bf16 only where it is native and pays
            for one window (on a CPU, models from hidden size 256 on), fp32 otherwise; ``"int8"``
            runs :meth:`usdrl.USDRL.quantize`'s copy (CPU). A resolved :class:`usdrl.precision.Precision`
            is used as it is, with ``model`` as given.
        format: with a universal model, the keypoint format of the frames: they come as keypoints
            ``(M, F, V, C)`` (or one frame ``(M, V, C)``; up to the model's persons, coordinates with
            or without a score, the same ``C`` throughout) and every window becomes the universal
            input on its own (:func:`usdrl.universal.window_converter`), as in the offline
            :func:`~usdrl.tasks.detection.frame_scores` with ``format``.
        image_size: ``(height, width)`` for keypoints in normalised units (MediaPipe), as there.
    """

    def __init__(self, model: USDRL, *, stride: int | None = None, threshold: float = 0.02,
                 precision="auto", format: str | None = None, image_size: tuple[int, int] | None = None):
        if model.frame_head is None:
            raise ConfigError("streaming detection needs a model with a frame-wise head")
        self._to_input = window_converter(model.config, format, image_size)
        self.format = format
        if isinstance(precision, Precision):     # resolved already, for this model as it is
            self.precision, self.model = precision, model.eval()
        else:
            device = next(model.parameters()).device
            self.precision = resolve_precision(precision, device, work=model.call_work(1))
            self.model = model.quantize() if self.precision.name == "int8" else model.eval()
        self.window = model.config.num_frames
        self.stride = stride or self.window
        if not 1 <= self.stride <= self.window:
            raise ConfigError(f"stride must be in 1..{self.window}, got {self.stride}")
        self.threshold = threshold
        #: one frame's shape (C, V, M), or (M, V, C) for keypoints (C fixed by the first frames pushed)
        self.frame_shape = ((model.config.in_channels, model.config.num_joints, model.config.num_persons)
                            if format is None else None)
        self._frames: deque = deque()              # frames from self._buffer_start on
        self._buffer_start = 0                     # index of the first buffered frame
        self._received = 0
        self._next_window = 0                      # start of the next window to run
        self._totals: dict[int, torch.Tensor] = {}  # frame -> summed probabilities
        self._counts: dict[int, int] = {}
        self._emitted = 0                          # frames already returned
        self._open: dict[int, tuple[int, list[float]]] = {}   # class -> (start, scores) of running actions

    def push(self, frames: np.ndarray) -> StreamOutput:
        """Add frames ``(C, F, V, M)`` (or one frame ``(C, V, M)``; keypoints ``(M, F, V, C)`` or ``(M, V, C)``
        with a ``format``); returns what became final."""
        self._run(self._append(frames))
        return self._emit(final_upto=self._next_window)

    def finish(self) -> StreamOutput:
        """End of the stream: run the remaining (zero-padded) windows and close every action.

        As offline, windows run until one reaches the last frame."""
        starts = []
        while self._next_window < max(1, self._received - self.window + self.stride):
            starts.append(self._next_window)
            self._next_window += self.stride
        self._run(starts)
        return self._emit(final_upto=self._received, closing=True)

    def _append(self, frames: np.ndarray) -> list[int]:
        """Buffer ``frames``; returns the starts of the windows they completed (to be run with :meth:`_run`)."""
        frames = np.asarray(frames, dtype=np.float32)
        if frames.ndim == 3:
            frames = frames[:, None]
        if self.format is not None:
            frames = self._keypoint_frames(frames)
        if frames.ndim != 4 or (frames.shape[0], *frames.shape[2:]) != self.frame_shape:
            what = ("(C, F, V, M) with C, V, M" if self.format is None
                    else f"{self.format} keypoints (M, F, V, C) with M, V, C")
            raise InputError(f"expected frames {what} = {self.frame_shape}, got {frames.shape}")
        starts = []
        for t in range(frames.shape[1]):
            self._frames.append(frames[:, t])
            self._received += 1
            if self._received == self._next_window + self.window:
                starts.append(self._next_window)
                self._next_window += self.stride
        return starts

    def _keypoint_frames(self, frames: np.ndarray) -> np.ndarray:
        """Keypoint frames ``(M, F, V, C)`` zero-filled to the model's persons; the first call fixes ``C``."""
        persons = self.model.config.num_persons
        if frames.ndim == 4 and frames.shape[0] < persons:
            frames = np.concatenate([frames, np.zeros((persons - frames.shape[0], *frames.shape[1:]), np.float32)])
        if self.frame_shape is None and frames.ndim == 4:
            joints = get_format(self.format).num_joints
            self.frame_shape = (persons, joints, frames.shape[-1])
        return frames

    def _clips(self, starts: list[int]) -> np.ndarray:
        """The model's input ``(W, C, T, V, M)`` for the windows starting at ``starts``, zero after the last
        received frame."""
        clips = np.zeros((len(starts), self.frame_shape[0], self.window, *self.frame_shape[1:]), dtype=np.float32)
        for clip, start in zip(clips, starts, strict=True):
            available = [self._frames[t - self._buffer_start] for t in range(start, min(start + self.window,
                                                                                        self._received))]
            clip[:, : len(available)] = np.stack(available, axis=1)
        return self._to_input(clips)

    def _run(self, starts: list[int], probabilities: torch.Tensor | None = None) -> None:
        """Add the frame probabilities ``(W, T, K)`` of the windows at ``starts`` (computed here when not
        given) to the running averages, then drop the frames no later window reads."""
        if starts and probabilities is None:
            probabilities = _frame_probabilities(self.model, self._clips(starts), self.precision)
        for start, window in zip(starts, probabilities if starts else (), strict=True):
            for offset, p in enumerate(window[: max(0, min(self.window, self._received - start))]):
                frame = start + offset
                self._totals[frame] = self._totals.get(frame, 0) + p
                self._counts[frame] = self._counts.get(frame, 0) + 1
        while self._buffer_start < self._next_window and self._frames:   # frames no later window reads
            self._frames.popleft()
            self._buffer_start += 1

    def _emit(self, final_upto: int, closing: bool = False) -> StreamOutput:
        first = self._emitted
        rows = []
        for frame in range(first, final_upto):
            rows.append((self._totals.pop(frame) / self._counts.pop(frame)).numpy())
        self._emitted = final_upto
        scores = np.stack(rows) if rows else np.zeros((0, self.model.config.num_frame_classes), dtype=np.float32)
        actions = self._track(first, scores)
        if closing:
            actions += [(label, start, final_upto, float(np.mean(values)))
                        for label, (start, values) in sorted(self._open.items())]
            self._open.clear()
        return StreamOutput(first, scores, actions)

    def _track(self, first: int, scores: np.ndarray) -> list[tuple[int, int, int, float]]:
        """Update the running actions with final frame scores; return the ones that ended."""
        ended = []
        for offset, row in enumerate(scores):
            frame = first + offset
            for label in range(1, len(row)):
                above = row[label] > self.threshold
                if above and label not in self._open:
                    self._open[label] = (frame, [])
                if above:
                    self._open[label][1].append(float(row[label]))
                elif label in self._open:
                    start, values = self._open.pop(label)
                    ended.append((label, start, frame, float(np.mean(values))))
        return ended


class MultiTrackDetector:
    """Online detection for several people at once: one :class:`StreamingDetector` state per track.

    Each call gives the new frames of the tracks seen; a track id not seen before starts a new
    state, :meth:`leave` ends a track (its remaining windows run zero-padded, its actions
    close), :meth:`finish` ends them all. The windows that the frames of one call complete, over
    all tracks, run as one batch through the model; every track gets exactly the scores and
    actions a :class:`StreamingDetector` of its own would give.

    Args:
        model: a model with a frame-wise head (class 0 = background).
        stride: frames between window starts (default: the window length).
        threshold: a frame belongs to an action while that class's probability is above it.
        precision: as :class:`StreamingDetector`'s (the same for every track, whatever the batch).
        format: as :class:`StreamingDetector`'s (keypoints of one format for every track).
        image_size: as :class:`StreamingDetector`'s.
    """

    def __init__(self, model: USDRL, *, stride: int | None = None, threshold: float = 0.02,
                 precision="auto", format: str | None = None, image_size: tuple[int, int] | None = None):
        first = StreamingDetector(model, stride=stride, threshold=threshold, precision=precision, format=format,
                                  image_size=image_size)
        self.model, self.precision = first.model, first.precision   # checked, resolved (and quantized) once
        self._new = lambda: StreamingDetector(self.model, stride=stride, threshold=threshold,
                                              precision=self.precision, format=format, image_size=image_size)
        self.detectors: dict[int, StreamingDetector] = {}

    @property
    def tracks(self) -> list[int]:
        """Ids of the tracks being served."""
        return list(self.detectors)

    def push(self, frames: Mapping[int, np.ndarray]) -> dict[int, StreamOutput]:
        """Add each track's frames ``{track id: (C, F, V, M) or (C, V, M)}`` (keypoints ``(M, F, V, C)`` or
        ``(M, V, C)`` with a ``format``); returns, per track
        given, what became final."""
        due = []
        for track_id, track_frames in frames.items():
            detector = self.detectors.get(track_id)
            if detector is None:
                detector = self.detectors[track_id] = self._new()
            due.append((detector, detector._append(track_frames)))
        starts = [start for _, track_starts in due for start in track_starts]
        if starts:
            clips = np.concatenate([detector._clips(track_starts) for detector, track_starts in due if track_starts])
            probabilities = _frame_probabilities(self.model, clips, self.precision)
        offset = 0
        for detector, track_starts in due:
            detector._run(track_starts, probabilities[offset:offset + len(track_starts)] if track_starts else None)
            offset += len(track_starts)
        return {track_id: self.detectors[track_id]._emit(final_upto=self.detectors[track_id]._next_window)
                for track_id in frames}

    def leave(self, track_id: int) -> StreamOutput:
        """End a track: its last scores and the actions still open."""
        if track_id not in self.detectors:
            raise ConfigError(f"no track {track_id} is being served; tracks: {self.tracks}")
        return self.detectors.pop(track_id).finish()

    def finish(self) -> dict[int, StreamOutput]:
        """End every track."""
        return {track_id: self.leave(track_id) for track_id in self.tracks}
