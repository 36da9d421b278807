"""Identity switches of the pose tracker on synthetic multi-person scenes with crossings and occlusions.

Usage: python benchmarks/tracking_synthetic.py [--scenes 300] [--frames 120] [--seed 0]

Each scene: 2-6 people (COCO-17 2D keypoints, 150-250 px tall) walk straight lines across a
1920x1080 image at 2-12 px per frame with a little sway; every keypoint gets Gaussian noise
(2 px), each detection is missed with probability 0.05, and where two people's boxes overlap
by more than half (IoU > 0.5) the one behind (the smaller) is not detected: an occlusion.
Detections are shuffled in every frame. A crossing is a pair of people whose boxes overlap
in some frame and whose left-right order differs between the first and last frame.

An identity switch is counted, as in the MOT benchmarks, each time a person's detection gets
another track id than at its previous detection. Logs, per number of crossings in a scene,
the scenes, the mean switches per scene and the switches per crossing, for the ``keypoints``
and ``iou`` costs, and the tracker's frames per second.
"""

import argparse
import logging
import time

import numpy as np
from _common import setup_logging

from usdrl.keypoints.tracking import PoseTracker

logger = logging.getLogger("tracking_synthetic")

# COCO-17 (x, y) of a person 1 unit tall, feet at y = 0, image y down.
TEMPLATE = np.array([[0, -0.9], [0.02, -0.92], [-0.02, -0.92], [0.04, -0.91], [-0.04, -0.91], [0.1, -0.75],
                     [-0.1, -0.75], [0.12, -0.6], [-0.12, -0.6], [0.13, -0.45], [-0.13, -0.45], [0.06, -0.4],
                     [-0.06, -0.4], [0.06, -0.2], [-0.06, -0.2], [0.06, 0.0], [-0.06, 0.0]])
WIDTH, HEIGHT = 1920, 1080


def scene(rng: np.random.Generator, people: int, frames: int, miss: float = 0.05, noise: float = 2.0):
    """``(detections per frame [(P_t, 17, 3)], truth ids per frame [(P_t,)], crossings)``."""
    size = rng.uniform(150, 250, people)
    start = np.stack([rng.uniform(0, WIDTH, people), rng.uniform(300, HEIGHT - 50, people)], 1)
    angle = rng.uniform(0, 2 * np.pi, people)
    speed = rng.uniform(2, 12, people)
    velocity = np.stack([np.cos(angle), 0.3 * np.sin(angle)], 1) * speed[:, None]
    t = np.arange(frames)[:, None, None]
    feet = start[None] + velocity[None] * t                                            # (T, P, 2)
    sway = np.sin(t / 5 + rng.uniform(0, 6, (1, people, 1))) * size[None, :, None] * 0.05
    poses = TEMPLATE[None, None] * size[None, :, None, None] + (feet + sway * [1, 0])[:, :, None, :]
    poses = poses + rng.normal(0, noise, poses.shape)                                  # (T, P, 17, 2)
    low, high = poses.min(2), poses.max(2)                                              # (T, P, 2)
    inter = np.clip(np.minimum(high[:, :, None], high[:, None]) - np.maximum(low[:, :, None], low[:, None]),
                    0, None).prod(-1)
    area = (high - low).prod(-1)
    iou = inter / (area[:, :, None] + area[:, None] - inter)                          # (T, P, P)
    overlap = (inter > 0).any(0)
    order_changed = np.sign(feet[0, :, None, 0] - feet[0, None, :, 0]) != np.sign(feet[-1, :, None, 0]
                                                                                   - feet[-1, None, :, 0])
    crossings = int(np.triu(overlap & order_changed, 1).sum())
    detections, truth = [], []
    for f in range(frames):
        hidden = rng.random(people) < miss
        for a in range(people):
            for b in range(people):
                if a != b and iou[f, a, b] > 0.5 and size[a] < size[b]:
                    hidden[a] = True                                                  # a is behind b
        keep = np.flatnonzero(~hidden)
        keep = keep[rng.permutation(len(keep))]
        scores = np.full((len(keep), 17, 1), 0.9)
        detections.append(np.concatenate([poses[f, keep], scores], -1).astype(np.float32))
        truth.append(keep)
    return detections, truth, crossings


def identity_switches(ids_per_frame, truth) -> int:
    last: dict[int, int] = {}
    switches = 0
    for ids, people in zip(ids_per_frame, truth, strict=True):
        for track_id, who in zip(ids, people, strict=True):
            if who in last and last[who] != track_id:
                switches += 1
            last[who] = track_id
    return switches


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenes", type=int, default=300)
    parser.add_argument("--frames", type=int, default=120)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    setup_logging()
    rng = np.random.default_rng(args.seed)
    scenes = [scene(rng, int(rng.integers(2, 7)), args.frames) for _ in range(args.scenes)]
    buckets = {"0": (0, 0), "1": (1, 1), "2": (2, 2), "3-4": (3, 4), "5+": (5, 10 ** 6)}
    for metric, max_cost in (("keypoints", 0.5), ("iou", 0.8)):
        switches, seconds, frames = [], 0.0, 0
        for detections, truth, _ in scenes:
            tracker = PoseTracker(metric=metric, max_cost=max_cost, max_missed=10)
            start = time.perf_counter()
            ids = [tracker.update(d) for d in detections]
            seconds += time.perf_counter() - start
            frames += len(detections)
            switches.append(identity_switches(ids, truth))
        switches = np.array(switches)
        crossings = np.array([c for _, _, c in scenes])
        logger.info("metric %s (max_cost %.2f): %.0f frames/s, %d switches over %d scenes (%d crossings)", metric,
                    max_cost, frames / seconds, switches.sum(), len(scenes), crossings.sum())
        logger.info("  crossings  scenes  switches/scene  switches/crossing")
        for name, (low, high) in buckets.items():
            chosen = (crossings >= low) & (crossings <= high)
            if chosen.any():
                per_crossing = switches[chosen].sum() / max(1, crossings[chosen].sum())
                logger.info("  %-9s  %6d  %14.2f  %17s", name, chosen.sum(), switches[chosen].mean(),
                            "-" if low == 0 else f"{per_crossing:.2f}")


if __name__ == "__main__":
    main()
