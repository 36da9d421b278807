"""Real-time streaming of many tracks in one process: `MultiTrackDetector` (batched) and one `StreamingDetector`
per track, in fp32 and the ``auto`` precision.

Usage: python benchmarks/streaming_speed.py [--tracks 8] [--threads 1] [--stride 32] [--frames 320] [--rounds 2]

Each track is its own synthetic untrimmed sequence (NTU layout, prepared as ``usdrl prepare`` does) fed one
frame per call, as a live system receives them; the model is the embedded ``usdrl-synthetic-small``
(hidden 128, 64-frame windows). Per way of serving and precision (interleaved rounds, best kept), it prints
the frames per second each track gets while all tracks share the process, and the time of one call (mean,
99th percentile, max: a call that completes windows runs the model). Target: >= 30 frames/s per track.
A frame's scores are final at most window - 1 frames after it arrives.
"""

import argparse
import logging
import time

import numpy as np
import torch
from _common import setup_logging

from usdrl import USDRL
from usdrl.data.prepared import Recipe3D
from usdrl.data.synthetic import make_untrimmed
from usdrl.tasks.streaming import MultiTrackDetector, StreamingDetector

logger = logging.getLogger("streaming_speed")
TARGET_FPS = 30.0


def tracks(count: int, frames: int) -> list[np.ndarray]:
    """``count`` prepared sequences ``(C, frames, V, M)``, each from its own seed (repeated to length)."""
    sequences = []
    for seed in range(count):
        data = Recipe3D("ntu", select_bodies=False, fill_empty_frames=False).apply(make_untrimmed(seed=seed).data)
        sequences.append(np.resize(data.transpose(1, 0, 2, 3), (frames, *data.shape[:1], *data.shape[2:]))
                         .transpose(1, 0, 2, 3).astype(np.float32))
    return sequences


def per_track(model: USDRL, count: int, stride: int, precision: str):
    """One StreamingDetector per track, run one after the other: ``(push, finish)``."""
    detectors = [StreamingDetector(model, stride=stride, precision=precision) for _ in range(count)]

    def push(frames: dict[int, np.ndarray]) -> None:
        for k, frame in frames.items():
            detectors[k].push(frame)

    return push, lambda: [detector.finish() for detector in detectors]


def batched(model: USDRL, count: int, stride: int, precision: str):
    """One MultiTrackDetector for every track (the windows due in one call run as one batch)."""
    detector = MultiTrackDetector(model, stride=stride, precision=precision)
    return detector.push, detector.finish


SERVING = {"batched": batched, "per-track": per_track}


def run(model: USDRL, sequences: list[np.ndarray], stride: int, serving: str, precision: str):
    """Feed every track frame by frame; returns (seconds in all, seconds per call)."""
    push, finish = SERVING[serving](model, len(sequences), stride, precision)
    call_seconds = []
    start = time.perf_counter()
    for t in range(sequences[0].shape[1]):
        before = time.perf_counter()
        push({k: sequence[:, t] for k, sequence in enumerate(sequences)})
        call_seconds.append(time.perf_counter() - before)
    finish()
    return time.perf_counter() - start, np.array(call_seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tracks", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (default 1: with 2, OpenMP threads spin and stall while other processes "
                             "hold the cores)")
    parser.add_argument("--stride", type=int, default=32, help="frames between windows (default: 32)")
    parser.add_argument("--frames", type=int, default=320, help="frames per track (default: 320)")
    parser.add_argument("--rounds", type=int, default=2, help="interleaved rounds per setting (default: 2)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    setup_logging()
    model = USDRL.from_pretrained("usdrl-synthetic-small")
    sequences = tracks(args.tracks, args.frames)
    precisions = ("fp32", "auto")
    logger.info("%d tracks x %d frames, stride %d, %d thread(s); auto = %s here (for single windows of this model)",
                args.tracks, args.frames, args.stride, args.threads,
                StreamingDetector(model, precision="auto").precision.name)
    warm_up = [s[:, : model.config.num_frames] for s in sequences]
    for serving in SERVING:
        run(model, warm_up, args.stride, serving, "fp32")
    settings = [(serving, name) for serving in SERVING for name in precisions]
    results = {setting: [] for setting in settings}
    for _ in range(args.rounds):
        for serving, name in settings:
            results[serving, name].append(run(model, sequences, args.stride, serving, name))
    for (serving, name), runs in results.items():
        seconds, calls = min(runs, key=lambda r: r[0])
        fps = args.frames / seconds
        logger.info("%-9s %-5s %6.0f frames/s per track (%d tracks, best round); call mean %.2f ms, p99 %.2f ms, "
                    "max %.2f ms; target >= %.0f frames/s per track: %s", serving, name, fps, args.tracks,
                    1e3 * calls.mean(), 1e3 * np.percentile(calls, 99), 1e3 * calls.max(), TARGET_FPS,
                    "reached" if fps >= TARGET_FPS else "NOT reached")


if __name__ == "__main__":
    main()
