"""Real-time streaming: one `StreamingDetector` per track, many tracks in one process.

Usage: python benchmarks/streaming_speed.py [--tracks 8] [--threads 1] [--stride 32] [--frames 320]

Each track is its own synthetic untrimmed sequence (NTU layout, prepared as ``usdrl prepare``
does) fed to its own detector one frame per ``push``, round-robin over the tracks, as a live
system receives them; the model is the embedded ``usdrl-synthetic-small`` (hidden 128, 64-frame
windows). Per precision (fp32 and ``auto``, interleaved), it prints the frames per second each
track gets when all tracks share the process, and the time one ``push`` takes (mean, 99th
percentile, max: a push that completes a window runs the model). Target: >= 30 frames/s per track.
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
from usdrl.precision import resolve_precision
from usdrl.tasks.streaming import StreamingDetector

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


def run(model: USDRL, sequences: list[np.ndarray], stride: int, precision) -> tuple[float, np.ndarray]:
    """Feed every track frame by frame, round-robin; returns (seconds in all, seconds per push)."""
    detectors = [StreamingDetector(model, stride=stride) for _ in sequences]
    push_seconds = []
    start = time.perf_counter()
    with precision.context():
        for t in range(sequences[0].shape[1]):
            for detector, sequence in zip(detectors, sequences, strict=True):
                before = time.perf_counter()
                detector.push(sequence[:, t])
                push_seconds.append(time.perf_counter() - before)
        for detector in detectors:
            detector.finish()
    return time.perf_counter() - start, np.array(push_seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tracks", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (default 1: with 2, OpenMP threads spin and stall while other processes "
                             "hold the cores)")
    parser.add_argument("--stride", type=int, default=32, help="frames between windows (default: 32)")
    parser.add_argument("--frames", type=int, default=320, help="frames per track (default: 320)")
    parser.add_argument("--rounds", type=int, default=2, help="interleaved rounds per precision (default: 2)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    setup_logging()
    model = USDRL.from_pretrained("usdrl-synthetic-small")
    sequences = tracks(args.tracks, args.frames)
    precisions = {name: resolve_precision(name, "cpu") for name in ("fp32", "auto")}
    logger.info("%d tracks x %d frames, stride %d, %d thread(s); auto = %s here", args.tracks, args.frames,
                args.stride, args.threads, precisions["auto"].name)
    run(model, [s[:, : model.config.num_frames] for s in sequences], args.stride, precisions["fp32"])  # warm-up
    results = {name: [] for name in precisions}
    for _ in range(args.rounds):
        for name, precision in precisions.items():
            results[name].append(run(model, sequences, args.stride, precision))
    for name, runs in results.items():
        seconds, pushes = min(runs, key=lambda r: r[0])
        per_track = args.frames / seconds
        logger.info("%-5s %6.0f frames/s per track (%d tracks, best round); push mean %.2f ms, p99 %.2f ms, "
                    "max %.2f ms; target >= %.0f frames/s per track: %s", name, per_track, args.tracks,
                    1e3 * pushes.mean(), 1e3 * np.percentile(pushes, 99), 1e3 * pushes.max(), TARGET_FPS,
                    "reached" if per_track >= TARGET_FPS else "NOT reached")


if __name__ == "__main__":
    main()
