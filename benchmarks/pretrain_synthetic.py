"""Proof that pretraining learns: MG-FD/MPCT pretraining on synthetic actions, then a linear probe.

Usage: python benchmarks/pretrain_synthetic.py [--minutes 8] [--preset tiny] [--out RUN_PARENT]

Pretrains a small USDRL on unlabelled synthetic clips for a bounded time, then trains a
linear classifier on the frozen global features of independently drawn labelled clips
and reports its held-out accuracy, next to the same probe on a randomly initialised
encoder. Clips are centred on the spine per frame but not rotated, so the camera views
(±45°) and body headings (±15°) are left for the encoder to cope with.
"""

import argparse
import logging
import tempfile
import time

import numpy as np
import torch
from _common import pretrain_within, setup_logging

from usdrl import USDRL, USDRLConfig
from usdrl.data.preprocess import center_on_joint, resample
from usdrl.data.synthetic import NUM_CLASSES, make_clips
from usdrl.skeleton import NTU25

logger = logging.getLogger("pretrain_synthetic")


def centred(clips) -> np.ndarray:
    """Clips ``(N, 3, Tmax, 25, 2)`` centred per frame on the spine; padding stays zero."""
    return np.stack([center_on_joint(clip, NTU25.center_joint) for clip in clips.data]).astype(np.float32)


def probe_inputs(clips, frames: int) -> np.ndarray:
    """Whole valid sequences resampled to the model's frames: ``(N, 3, frames, 25, 2)``."""
    data = centred(clips)
    return np.stack([resample(clip, frames, length=n) for clip, n in zip(data, clips.lengths, strict=True)])


def linear_probe(train: torch.Tensor, train_labels: torch.Tensor, test: torch.Tensor, test_labels: torch.Tensor,
                 weight_decay: float = 1e-3) -> float:
    """Held-out accuracy of a multinomial logistic regression on standardised features (L-BFGS)."""
    mean, std = train.mean(0), train.std(0) + 1e-6
    train, test = (train - mean) / std, (test - mean) / std
    head = torch.nn.Linear(train.shape[1], NUM_CLASSES)
    optimizer = torch.optim.LBFGS(head.parameters(), lr=0.5, max_iter=200, line_search_fn="strong_wolfe")

    def closure():
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(head(train), train_labels)
        loss = loss + weight_decay * head.weight.square().sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    with torch.no_grad():
        return float((head(test).argmax(1) == test_labels).float().mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=8.0, help="pretraining time budget")
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--clips", type=int, default=2048, help="unlabelled pretraining clips")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--out", help="parent folder of the runs (default: a new temporary folder)")
    args = parser.parse_args()
    setup_logging()
    out = args.out or tempfile.mkdtemp(prefix="usdrl-pretrain-synthetic-")

    model_config = USDRLConfig.from_preset(args.preset, dataset="synthetic")
    unlabelled = make_clips(args.clips, seed=0)
    probe_train = make_clips(10 * NUM_CLASSES, seed=1)
    probe_test = make_clips(10 * NUM_CLASSES, seed=2)

    start = time.perf_counter()
    pretrained, epochs, epoch_seconds = pretrain_within(args.minutes, model_config, centred(unlabelled),
                                                        unlabelled.lengths, out, batch_size=args.batch_size,
                                                        lr=args.lr)
    logger.info("pretrained %s (%d clips, batch %d x 4 views) for %d epochs of %.1f s: %.1f min", args.preset,
                args.clips, args.batch_size, epochs, epoch_seconds, (time.perf_counter() - start) / 60)

    torch.manual_seed(0)
    random_init = USDRL(model_config)
    frames = model_config.num_frames
    train_x, test_x = probe_inputs(probe_train, frames), probe_inputs(probe_test, frames)
    train_y, test_y = torch.from_numpy(probe_train.labels), torch.from_numpy(probe_test.labels)
    for name, model in (("random init", random_init), ("pretrained", pretrained)):
        train_f, test_f = (model.encode(x, show_progress_bar=False) for x in (train_x, test_x))
        accuracy = linear_probe(train_f, train_y, test_f, test_y)
        logger.info("linear probe, %s encoder: %.1f%% top-1 on %d held-out clips (chance %.1f%%)", name,
                    100 * accuracy, len(test_y), 100 / NUM_CLASSES)


if __name__ == "__main__":
    main()
