"""Throughput of the batched pretraining augmentations against a per-sample numpy implementation.

Usage: python benchmarks/augment_speed.py [--batch-size 32] [--views 4] [--frames 300] [--device cpu]

Both run the reference pipeline of every view (``usdrl.train.augment``, spec §5): a random
temporal crop of the valid frames resampled to 64, then joint corruption or shear. The
data is NTU-shaped (3 channels, 25 joints, 2 bodies, ``--frames`` padded frames, valid
lengths uniform in [32, frames]). Prints clips/s (one clip = one view of one sample) of the
per-sample numpy loop, of the batched pipeline with torch's threads and with one thread,
and the ratios.

The per-sample baseline is the same maths written the way one would for a single clip: in
the clip's dtype (float32), the two interpolated frames gathered per output frame (their
indices and weights cached per crop length, as the batched pipeline caches them), the 3 x 3
transforms as matrix products on the clip or on the chosen joints.
"""

import argparse
import functools
import logging

import numpy as np
import torch
from _common import best_time, setup_logging

from usdrl.train.augment import AugmentConfig, make_views

logger = logging.getLogger("augment_speed")


@functools.cache
def _resample_pairs(length: int, size: int, dtype: np.dtype) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The two crop frames that each output frame reads and its weight: ``usdrl.data.preprocess.resample``'s maths."""
    position = np.maximum((np.arange(size) + 0.5) * (length / size) - 0.5, 0.0)
    low = position.astype(np.int64)
    return low, np.minimum(low + 1, length - 1), (position - low).astype(dtype)[:, None, None]


def numpy_crop_resize(clip: np.ndarray, length: int, rng: np.random.Generator,
                      config: AugmentConfig) -> np.ndarray:
    """A random temporal crop of the valid frames resampled to ``output_frames``, computed in the clip's dtype
    (the draws and maths of ``usdrl.data.preprocess.random_crop_resize``, whose ``resample`` computes in float64)."""
    ratio = rng.uniform(config.min_crop_ratio, config.max_crop_ratio)
    crop = min(max(int(length * ratio), config.min_crop_length), length)
    start = int(rng.integers(0, length - crop + 1))
    low, high, weight = _resample_pairs(crop, config.output_frames, clip.dtype)
    first = clip[:, start + low]
    return first + (clip[:, start + high] - first) * weight


def numpy_spatial(clip: np.ndarray, rng: np.random.Generator, config: AugmentConfig) -> np.ndarray:
    """Joint corruption (probability ``corruption_prob``) or shear of one ``(C, T, V, M)`` clip, in place."""
    channels, joints = clip.shape[0], clip.shape[2]
    if rng.random() < config.corruption_prob:
        pool = joints if config.corruption_pool is None else config.corruption_pool
        chosen = rng.permutation(pool)[:config.corrupted_joints]
        if rng.random() < config.zero_mask_prob:
            clip[:, :, chosen] = 0
        else:
            mix = rng.uniform(-config.mix_range, config.mix_range, (channels, channels)).astype(clip.dtype)
            part = np.take(clip, chosen, axis=2)
            clip[:, :, chosen] = (mix @ part.reshape(channels, -1)).reshape(part.shape)
        return clip
    shear = rng.uniform(-config.shear_range, config.shear_range, (channels, channels))
    np.fill_diagonal(shear, 1.0)
    return (shear.astype(clip.dtype) @ clip.reshape(channels, -1)).reshape(clip.shape)


def numpy_views(x: np.ndarray, lengths: np.ndarray, num_views: int, rng: np.random.Generator,
                config: AugmentConfig) -> np.ndarray:
    """The per-sample pipeline, one clip at a time: ``(num_views, N, C, output_frames, V, M)``."""
    views = np.empty((num_views, *x.shape[:2], config.output_frames, *x.shape[3:]), x.dtype)
    for k in range(num_views):
        for i, (clip, n) in enumerate(zip(x, lengths, strict=True)):
            views[k, i] = numpy_spatial(numpy_crop_resize(clip, int(n), rng, config), rng, config)
    return views


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--views", type=int, default=4)
    parser.add_argument("--frames", type=int, default=300, help="padded frames per clip")
    parser.add_argument("--repeats", type=int, default=20, help="timed runs per round; the fastest counts")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of all runs, alternated")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    setup_logging()

    rng = np.random.default_rng(0)
    clips = rng.normal(size=(args.batch_size, 3, args.frames, 25, 2)).astype(np.float32)
    lengths = rng.integers(32, args.frames + 1, size=args.batch_size)
    for clip, n in zip(clips, lengths, strict=True):
        clip[:, n:] = 0
    config = AugmentConfig()
    num_clips = args.batch_size * args.views

    x = torch.from_numpy(clips).to(args.device)
    device_lengths = torch.from_numpy(lengths).to(args.device)
    generator = torch.Generator(args.device).manual_seed(0)

    def batched():
        views = make_views(x, device_lengths, args.views, generator, config)
        if views.is_cuda:
            torch.cuda.synchronize()

    threads = torch.get_num_threads()
    runs = {  # name: (function, torch threads, timed calls per round)
        "per-sample numpy": (lambda: numpy_views(clips, lengths, args.views, rng, config), threads,
                             max(3, args.repeats // 4)),
        f"batched, {args.device}, {threads} threads": (batched, threads, args.repeats)}
    if args.device == "cpu" and threads > 1:
        runs["batched, cpu, 1 thread"] = (batched, 1, args.repeats)
    # The rounds alternate the runs, so that a slow spell of a shared machine does not skew one of them alone.
    seconds = dict.fromkeys(runs, float("inf"))
    for _ in range(args.rounds):
        for name, (fn, num_threads, repeats) in runs.items():
            torch.set_num_threads(num_threads)
            seconds[name] = min(seconds[name], best_time(fn, repeats=repeats))
    torch.set_num_threads(threads)
    rates = {name: num_clips / time for name, time in seconds.items()}

    baseline = rates["per-sample numpy"]
    logger.info("batch %d x %d views, %d padded frames -> %d", args.batch_size, args.views, args.frames,
                config.output_frames)
    for name, rate in rates.items():
        logger.info("%-28s %10.0f clips/s  %6.1fx", name, rate, rate / baseline)


if __name__ == "__main__":
    main()
