"""Online detection of several people at once: frames per second and latency of `MultiTrackDetector`.

Usage: python benchmarks/streaming_tracks.py [--tracks 8] [--frames 256] [--stride 16] [--threads 1]

The shipped demo model (``usdrl-synthetic-small``: 64-frame windows, NTU-25) serves ``--tracks``
synthetic people one frame at a time, as a live stream gives them; each call pushes the new
frame of every track. Logs the frames per second over all tracks, the latency of a call (median
and 99th percentile, ms; a call that completes windows runs them as one batch), and, for
comparison, the same stream through one `StreamingDetector` per track (one forward per window).
"""

import argparse
import logging
import time

import numpy as np
from _common import add_threads_argument, start_run

from usdrl import USDRL
from usdrl.data.synthetic import make_untrimmed
from usdrl.tasks.streaming import MultiTrackDetector, StreamingDetector

logger = logging.getLogger("streaming_tracks")


def serve(push, sequences, frames: int) -> tuple[float, np.ndarray]:
    """Push frame t of every sequence for t < frames; returns (seconds, per-call latencies in ms)."""
    latencies = []
    start = time.perf_counter()
    for t in range(frames):
        begin = time.perf_counter()
        push({k: seq[:, t] for k, seq in enumerate(sequences)})
        latencies.append(1000 * (time.perf_counter() - begin))
    return time.perf_counter() - start, np.array(latencies)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tracks", type=int, default=8)
    parser.add_argument("--frames", type=int, default=256)
    parser.add_argument("--stride", type=int, default=16)
    add_threads_argument(parser)
    args = parser.parse_args()
    start_run(args)
    model = USDRL.from_pretrained("usdrl-synthetic-small").eval()
    sequences = []
    for k in range(args.tracks):
        data = make_untrimmed(seed=k).data
        sequences.append(np.concatenate([data] * (1 + args.frames // data.shape[1]), axis=1)[:, : args.frames])

    served = MultiTrackDetector(model, stride=args.stride)
    alone = {k: StreamingDetector(model, stride=args.stride) for k in range(args.tracks)}
    for name, push in (("MultiTrackDetector (batched)", served.push),
                       ("one StreamingDetector per track", lambda frames: {k: alone[k].push(f)
                                                                           for k, f in frames.items()})):
        seconds, latencies = serve(push, sequences, args.frames)
        logger.info("%-32s %d tracks, window %d, stride %d: %6.0f frames/s over all tracks; call latency "
                    "median %.2f ms, p99 %.1f ms, max %.1f ms", name, args.tracks, model.config.num_frames,
                    args.stride, args.tracks * args.frames / seconds, np.median(latencies),
                    np.percentile(latencies, 99), latencies.max())
    logger.info("a frame's scores are final at most %d frames after it arrives (the window length - 1)",
                model.config.num_frames - 1)


if __name__ == "__main__":
    main()
