"""Throughput of the batched pretraining augmentations against a per-sample numpy implementation.

Usage: python benchmarks/augment_speed.py [--batch-size 32] [--views 4] [--frames 300] [--device cpu]

Both run the reference pipeline of every view (``usdrl.train.augment``, spec §5): a random
temporal crop of the valid frames resampled to 64, then joint corruption or shear. The
data is NTU-shaped (3 channels, 25 joints, 2 bodies, ``--frames`` padded frames, valid
lengths uniform in [32, frames]). Prints clips/s (one clip = one view of one sample) of the
per-sample numpy loop, of the batched pipeline with torch's threads and with one thread,
and the ratios.
"""

import argparse
import logging

import numpy as np
import torch
from _common import best_time

from usdrl.data.preprocess import random_crop_resize
from usdrl.train.augment import AugmentConfig, make_views

logger = logging.getLogger("augment_speed")


def numpy_spatial(clip: np.ndarray, rng: np.random.Generator, config: AugmentConfig) -> np.ndarray:
    """Joint corruption (probability ``corruption_prob``) or shear of one ``(C, T, V, M)`` clip."""
    channels, joints = clip.shape[0], clip.shape[2]
    if rng.random() < config.corruption_prob:
        pool = joints if config.corruption_pool is None else config.corruption_pool
        chosen = rng.choice(pool, config.corrupted_joints, replace=False)
        out = clip.copy()
        if rng.random() < config.zero_mask_prob:
            out[:, :, chosen] = 0
        else:
            mix = rng.uniform(-config.mix_range, config.mix_range, (channels, channels)).astype(clip.dtype)
            out[:, :, chosen] = np.einsum("cd,dtvm->ctvm", mix, clip[:, :, chosen])
        return out
    shear = rng.uniform(-config.shear_range, config.shear_range, (channels, channels))
    np.fill_diagonal(shear, 1.0)
    return np.einsum("cd,dtvm->ctvm", shear.astype(clip.dtype), clip)


def numpy_views(x: np.ndarray, lengths: np.ndarray, num_views: int, rng: np.random.Generator,
                config: AugmentConfig) -> np.ndarray:
    """The per-sample pipeline, one clip at a time: ``(num_views, N, C, output_frames, V, M)``."""
    return np.stack([
        np.stack([numpy_spatial(random_crop_resize(clip, rng, num_frames=int(n), min_ratio=config.min_crop_ratio,
                                                   max_ratio=config.max_crop_ratio,
                                                   min_length=config.min_crop_length, size=config.output_frames),
                                rng, config)
                  for clip, n in zip(x, lengths, strict=True)])
        for _ in range(num_views)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--views", type=int, default=4)
    parser.add_argument("--frames", type=int, default=300, help="padded frames per clip")
    parser.add_argument("--repeats", type=int, default=20, help="timed runs; the fastest counts")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    rng = np.random.default_rng(0)
    clips = rng.normal(size=(args.batch_size, 3, args.frames, 25, 2)).astype(np.float32)
    lengths = rng.integers(32, args.frames + 1, size=args.batch_size)
    for clip, n in zip(clips, lengths, strict=True):
        clip[:, n:] = 0
    config = AugmentConfig()
    num_clips = args.batch_size * args.views

    x = torch.from_numpy(clips).to(args.device)
    num_frames = torch.from_numpy(lengths).to(args.device)
    generator = torch.Generator(args.device).manual_seed(0)

    def batched():
        views = make_views(x, num_frames, args.views, generator, config)
        if views.is_cuda:
            torch.cuda.synchronize()

    rates = {"per-sample numpy": num_clips / best_time(lambda: numpy_views(clips, lengths, args.views, rng, config),
                                                       repeats=max(3, args.repeats // 4))}
    threads = torch.get_num_threads()
    rates[f"batched, {args.device}, {threads} threads"] = num_clips / best_time(batched, repeats=args.repeats)
    if args.device == "cpu" and threads > 1:
        torch.set_num_threads(1)
        rates["batched, cpu, 1 thread"] = num_clips / best_time(batched, repeats=args.repeats)
        torch.set_num_threads(threads)

    baseline = rates["per-sample numpy"]
    logger.info("batch %d x %d views, %d padded frames -> %d", args.batch_size, args.views, args.frames,
                config.output_frames)
    for name, rate in rates.items():
        logger.info("%-28s %10.0f clips/s  %6.1fx", name, rate, rate / baseline)


if __name__ == "__main__":
    main()
