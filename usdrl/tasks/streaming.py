"""Online detection: frames in one at a time (or in chunks), frame scores and finished actions out.

:class:`StreamingDetector` keeps the frames of the window being filled, runs the model's
frame-wise head on every window of ``num_frames`` frames that starts at a multiple of
``stride`` (exactly the windows of the offline :func:`usdrl.tasks.detection.frame_scores`)
and averages overlapping windows. A frame's scores are final once the last window
containing it has run, i.e. ``num_frames - 1`` frames later at most (the latency);
:meth:`StreamingDetector.finish` zero-pads the last window as the offline detector does,
so a recorded sequence gives the offline scores and proposals exactly.
"""

from collections import deque
from dataclasses import dataclass, field

import numpy as np
import torch

from ..errors import ConfigError, InputError
from ..model import USDRL


@dataclass
class StreamOutput:
    """What one call produced: final ``scores (F, K)`` for frames ``first_frame ...`` and the
    actions that ended, ``[(label, start, end, mean score)]`` (end exclusive)."""

    first_frame: int
    scores: np.ndarray
    actions: list[tuple[int, int, int, float]] = field(default_factory=list)


class StreamingDetector:
    """Online version of the sliding-window detector.

    Args:
        model: a model with a frame-wise head (class 0 = background).
        stride: frames between window starts (default: the window length).
        threshold: a frame belongs to an action while that class's probability is above it.
    """

    def __init__(self, model: USDRL, *, stride: int | None = None, threshold: float = 0.02):
        if model.frame_head is None:
            raise ConfigError("streaming detection needs a model with a frame-wise head")
        self.model = model.eval()
        self.window = model.config.num_frames
        self.stride = stride or self.window
        if not 1 <= self.stride <= self.window:
            raise ConfigError(f"stride must be in 1..{self.window}, got {self.stride}")
        self.threshold = threshold
        self.frame_shape = (model.config.in_channels, model.config.num_joints, model.config.num_persons)
        self._frames: deque = deque()              # frames from self._buffer_start on
        self._buffer_start = 0                     # index of the first buffered frame
        self._received = 0
        self._next_window = 0                      # start of the next window to run
        self._totals: dict[int, torch.Tensor] = {}  # frame -> summed probabilities
        self._counts: dict[int, int] = {}
        self._emitted = 0                          # frames already returned
        self._open: dict[int, tuple[int, list[float]]] = {}   # class -> (start, scores) of running actions

    def push(self, frames: np.ndarray) -> StreamOutput:
        """Add frames ``(C, F, V, M)`` (or one frame ``(C, V, M)``); returns what became final."""
        frames = np.asarray(frames, dtype=np.float32)
        if frames.ndim == 3:
            frames = frames[:, None]
        if frames.ndim != 4 or (frames.shape[0], *frames.shape[2:]) != self.frame_shape:
            raise InputError(f"expected frames (C, F, V, M) with C, V, M = {self.frame_shape}, got {frames.shape}")
        for t in range(frames.shape[1]):
            self._frames.append(frames[:, t])
            self._received += 1
            if self._received == self._next_window + self.window:
                self._run_window(self._next_window)
        return self._emit(final_upto=self._next_window)

    def finish(self) -> StreamOutput:
        """End of the stream: run the remaining (zero-padded) windows and close every action.

        As offline, windows run until one reaches the last frame."""
        while self._next_window < max(1, self._received - self.window + self.stride):
            self._run_window(self._next_window)
        return self._emit(final_upto=self._received, closing=True)

    def _run_window(self, start: int) -> None:
        clip = np.zeros((self.frame_shape[0], self.window, *self.frame_shape[1:]), dtype=np.float32)
        available = [self._frames[t - self._buffer_start] for t in range(start, min(start + self.window,
                                                                                    self._received))]
        clip[:, : len(available)] = np.stack(available, axis=1)
        with torch.inference_mode():
            probabilities = self.model.forward_frames(torch.from_numpy(clip)[None])[0].float().softmax(-1)
        for offset, p in enumerate(probabilities[: len(available)]):
            frame = start + offset
            self._totals[frame] = self._totals.get(frame, 0) + p
            self._counts[frame] = self._counts.get(frame, 0) + 1
        self._next_window += self.stride
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
