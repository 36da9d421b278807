"""Detection, segmentation and streaming on synthetic PKU-MMD data, pretrained encoder next to a random-init one.

Usage: python benchmarks/detection_synthetic.py [--minutes 3] [--sequences 120] [--epochs 30] [--threads 1]

Writes untrimmed synthetic sequences as a raw PKU-MMD phase-1 release, prepares them with
the x-sub recipe (``usdrl prepare pkummd1``), pretrains a small encoder on the trimmed
training clips for a bounded time, then, for the pretrained and a randomly initialised
encoder: trains a frame-wise head and the encoder on windows of the untrimmed training
sequences, reports the official PKU-MMD mAP_a / mAP_v at IoU 0.1 and 0.5 (proposals from
runs above the reference's 0.02 threshold), segmentation frame accuracy, Edit and
F1@{10,25,50} of the per-frame argmax, and runs :class:`StreamingDetector` frame by frame
over one test sequence: its scores and actions against the offline ones, the delay before
a frame's scores are final (documented bound: ``num_frames - 1`` frames) and its per-frame
cost. Synthetic phase-1 and phase-2 sequences come from the same generator, so one frame
head per encoder serves detection (PKU-MMD I) and segmentation (PKU-MMD II).
"""

import argparse
import logging
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from _common import add_threads_argument, pretrain_within, start_run

from usdrl import USDRL, USDRLConfig
from usdrl.data import SkeletonDataset, prepare_dataset
from usdrl.data.synthetic_files import write_synthetic_pkummd
from usdrl.tasks.detection import (
    DetectionConfig,
    detect_dataset,
    evaluate_segmentation,
    frame_scores,
    ground_truth,
    train_detector,
)
from usdrl.tasks.finetune import FinetuneConfig
from usdrl.tasks.metrics import detection_map, proposals_from_scores, segments_of
from usdrl.tasks.streaming import StreamingDetector

logger = logging.getLogger("detection_synthetic")

IOUS = (0.1, 0.5)


def streaming_check(model: USDRL, sequence: np.ndarray, config: DetectionConfig) -> dict[str, float]:
    """Push ``sequence (C, T, V, M)`` one frame at a time; compare with the offline detector and time it
    (after one warm-up window: the first call of a new batch shape is slow)."""
    offline = frame_scores(model, sequence, stride=config.stride).numpy()
    expected = proposals_from_scores(offline, config.threshold, background=0)
    StreamingDetector(model, stride=config.stride).push(sequence[:, : model.config.num_frames])   # warm-up
    detector = StreamingDetector(model, stride=config.stride, threshold=config.threshold)
    length = sequence.shape[1]
    scores, actions, delays, push_times = [], [], [], []
    start = time.perf_counter()
    for t in range(length):
        tick = time.perf_counter()
        out = detector.push(sequence[:, t])
        push_times.append(time.perf_counter() - tick)
        scores.append(out.scores)
        actions += out.actions
        delays += [t - f for f in range(out.first_frame, out.first_frame + len(out.scores))]
    tail = detector.finish()
    total = time.perf_counter() - start
    scores.append(tail.scores)
    actions += tail.actions
    delays += [length - 1 - f for f in range(tail.first_frame, tail.first_frame + len(tail.scores))]
    online = np.concatenate(scores)
    same_actions = (sorted(a[:3] for a in actions) == sorted(e[:3] for e in expected)
                    and np.allclose(sorted(a[3] for a in actions), sorted(e[3] for e in expected), rtol=1e-5))
    same_segments = segments_of(online.argmax(1)) == segments_of(offline.argmax(1))
    push_ms = 1000 * np.asarray(push_times)
    return {"frames": length, "max |score diff|": float(np.abs(online - offline).max()),
            "actions": len(expected), "same actions": same_actions, "same segments": same_segments,
            "max delay": max(delays), "delay bound": model.config.num_frames - 1,
            "ms/frame mean": float(push_ms.mean()), "ms/frame max": float(push_ms.max()),
            "frames/s": length / total}


def evaluate(model: USDRL, prepared: Path, config: DetectionConfig, args) -> dict[str, float]:
    """Train the frame head (+ encoder), then detection, segmentation and streaming figures."""
    frames = model.config.num_frames
    windows = SkeletonDataset(prepared, "train_untrimmed", sampling="windows", num_frames=frames,
                              window_stride=args.train_stride)
    start = time.perf_counter()
    losses = train_detector(model, windows, num_classes=windows.num_classes, smoothing=args.smoothing,
                            config=FinetuneConfig(epochs=args.epochs, batch_size=32, lr=args.lr, warmup_epochs=1))
    figures = {"train seconds": time.perf_counter() - start, "first / last loss": (losses[0], losses[-1])}
    truth = ground_truth(prepared)
    proposals = detect_dataset(model, prepared, config=config)
    official = detection_map(truth, proposals, IOUS)
    present = detection_map(truth, proposals, IOUS, present_classes=True)
    for iou in IOUS:
        figures[f"mAP_a @{iou:g} (labels 1..51)"] = 100 * official[iou]["mAP_a"]
        figures[f"mAP_a @{iou:g} (present)"] = 100 * present[iou]["mAP_a"]
        figures[f"mAP_v @{iou:g}"] = 100 * official[iou]["mAP_v"]
    figures.update(evaluate_segmentation(model, prepared, config=config))
    test = SkeletonDataset(prepared, "test_untrimmed", sampling="windows", num_frames=frames)
    sequence = np.asarray(test.padded_clips[0, :, : test.lengths[0]])
    figures.update({f"stream {k}": v for k, v in streaming_check(model, sequence, config).items()})
    return figures


def _cell(value) -> str:
    if isinstance(value, bool):
        return "yes" if value else "NO"
    if isinstance(value, tuple):
        return " / ".join(f"{v:.3f}" for v in value)
    if isinstance(value, int | np.integer):
        return str(value)
    return f"{value:.3g}" if abs(value) < 0.01 else f"{value:.1f}" if abs(value) >= 10 else f"{value:.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=3.0, help="pretraining time budget")
    parser.add_argument("--sequences", type=int, default=120, help="synthetic sequences written (before the split)")
    parser.add_argument("--epochs", type=int, default=30, help="frame-head training epochs per encoder")
    parser.add_argument("--lr", type=float, default=5e-3, help="peak learning rate of the frame-head training")
    parser.add_argument("--smoothing", type=float, default=0.15, help="weight of MS-TCN's smoothing loss")
    parser.add_argument("--stride", type=int, default=32, help="inference (and streaming) window stride")
    parser.add_argument("--train-stride", type=int, default=64, help="stride of the training windows")
    parser.add_argument("--preset", default="tiny")
    add_threads_argument(parser)
    args = parser.parse_args()
    began = start_run(args)

    out = Path(tempfile.mkdtemp(prefix="usdrl-detection-"))
    write_synthetic_pkummd(out / "raw", args.sequences, phase=1, seed=0)
    prepared = prepare_dataset("pkummd1", out / "raw", out / "prepared", benchmark="xsub", workers=1,
                               show_progress_bar=False)
    clips = SkeletonDataset(prepared, "train")
    sequences = {s: SkeletonDataset(prepared, s, sampling="windows") for s in ("train_untrimmed", "test_untrimmed")}
    classes = len({label for segments in ground_truth(prepared).values() for label, _, _ in segments})
    logger.info("synthetic PKU-MMD I x-sub: %d training / %d test sequences (%d / %d frames), %d training clips, "
                "%d action classes in the test split", len(sequences["train_untrimmed"].names),
                len(sequences["test_untrimmed"].names), sequences["train_untrimmed"].lengths.sum(),
                sequences["test_untrimmed"].lengths.sum(), len(clips), classes)
    config = USDRLConfig.from_preset(args.preset)
    pretrained, epochs, epoch_seconds = pretrain_within(args.minutes, config, clips.padded_clips, clips.lengths, out,
                                                        batch_size=64, lr=1e-3)
    logger.info("pretrained %s on the training clips for %d epochs (%.1f s each)", args.preset, epochs,
                epoch_seconds)
    detection = DetectionConfig(stride=args.stride, threshold=0.02)
    torch.manual_seed(0)
    results = {"random init": evaluate(USDRL(config), prepared, detection, args),
               "pretrained": evaluate(pretrained, prepared, detection, args)}
    logger.info("frame head: %d epochs (windows of %d frames every %d), smoothing %g; inference stride %d, "
                "threshold 0.02; mAP, Acc, Edit, F1 in %%", args.epochs, config.num_frames, args.train_stride,
                args.smoothing, args.stride)
    logger.info("%-32s %14s %14s", "", "random init", "pretrained")
    for metric in results["random init"]:
        logger.info("%-32s %14s %14s", metric, _cell(results["random init"][metric]),
                    _cell(results["pretrained"][metric]))
    logger.info("total %.1f minutes", (time.perf_counter() - began) / 60)


if __name__ == "__main__":
    main()
