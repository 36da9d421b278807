"""The downstream tasks end to end on synthetic data, pretrained encoder next to a random-init one.

Usage: python benchmarks/tasks_synthetic.py [--minutes 5] [--clips 1200] [--preset tiny]

Writes synthetic clips as raw NTU ``.skeleton`` files, prepares them with the NTU-60
x-sub recipe (``usdrl prepare``), pretrains a small encoder on the training split for a
bounded time, then runs linear evaluation, kNN retrieval, early prediction and
finetuning with the pretrained and with a randomly initialised encoder, and prints
the figures side by side.
"""

import argparse
import copy
import logging
import tempfile
from pathlib import Path

import torch
from _common import pretrain_within

from usdrl import USDRL, USDRLConfig
from usdrl.data import SkeletonDataset, prepare_dataset
from usdrl.data.synthetic_files import write_synthetic_ntu
from usdrl.tasks.early import early_prediction
from usdrl.tasks.finetune import FinetuneConfig, finetune
from usdrl.tasks.recognition import ProbeConfig, encode_dataset, linear_probe
from usdrl.tasks.retrieval import retrieval_accuracy

logger = logging.getLogger("tasks_synthetic")


def evaluate(model: USDRL, prepared: Path) -> dict[str, float]:
    """Linear probe, kNN-1, early prediction (area) and finetuning figures of one encoder."""
    train, test = SkeletonDataset(prepared, "train"), SkeletonDataset(prepared, "test")
    figures = {}
    (gallery, gallery_labels), (query, query_labels) = encode_dataset(model, train), encode_dataset(model, test)
    figures["kNN-1"] = retrieval_accuracy(query, gallery, query_labels, gallery_labels)["accuracy"]
    probed = copy.deepcopy(model)
    probe = linear_probe(probed, train, test, num_classes=60,
                         config=ProbeConfig(lr=0.05, epochs=100, batch_size=64, standardize=True))
    figures["linear probe (best)"], figures["linear probe (last)"] = probe.best_top1, probe.last_top1
    curve = early_prediction(probed, prepared, ratios=(0.1, 0.3, 0.5, 0.7, 1.0))
    figures["early: 10% observed"], figures["early: 50% observed"] = curve.accuracy[0.1], curve.accuracy[0.5]
    tuned = finetune(copy.deepcopy(model), SkeletonDataset(prepared, "train", sampling="random_crop", seed=0), test,
                     num_classes=60, config=FinetuneConfig(epochs=15, batch_size=32, lr=1e-3, warmup_epochs=1,
                                                           eval_every=5))
    figures["finetune (best)"] = tuned.best_top1
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=5.0, help="pretraining time budget")
    parser.add_argument("--clips", type=int, default=1200, help="synthetic clips written (before the split)")
    parser.add_argument("--preset", default="tiny")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for name in ("usdrl", "usdrl.tasks", "usdrl.train"):
        logging.getLogger(name).setLevel(logging.WARNING)

    out = Path(tempfile.mkdtemp(prefix="usdrl-tasks-"))
    write_synthetic_ntu(out / "raw", args.clips, seed=0)
    prepared = prepare_dataset("ntu60", out / "raw", out / "prepared", benchmark="xsub", show_progress_bar=False)
    train = SkeletonDataset(prepared, "train")
    logger.info("synthetic NTU-60 x-sub: %d training and %d test clips", len(train),
                len(SkeletonDataset(prepared, "test")))
    config = USDRLConfig.from_preset(args.preset)
    pretrained, epochs, _ = pretrain_within(args.minutes, config, train.padded_clips, train.lengths, out,
                                            batch_size=64, lr=1e-3)
    logger.info("pretrained for %d epochs", epochs)
    torch.manual_seed(0)
    results = {"random init": evaluate(USDRL(config), prepared), "pretrained": evaluate(pretrained, prepared)}
    logger.info("%-24s %12s %12s", "top-1 (%)", "random init", "pretrained")
    for metric in results["random init"]:
        logger.info("%-24s %12.1f %12.1f", metric, 100 * results["random init"][metric],
                    100 * results["pretrained"][metric])


if __name__ == "__main__":
    main()
