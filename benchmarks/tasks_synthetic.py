"""The downstream tasks end to end on synthetic data, pretrained encoder next to a random-init one.

Usage: python benchmarks/tasks_synthetic.py [--parts recognition semi transfer] [--minutes 6] [--clips 1200]
       [--finetune-epochs 15] [--semi-epochs 100] [--fractions 0.1 0.01] [--sequences 120] [--threads 1]

Writes synthetic clips as raw NTU ``.skeleton`` files, prepares them with the NTU-60
x-sub recipe (``usdrl prepare``), pretrains a small encoder on the training split for a
bounded time, then, with the pretrained and with a randomly initialised encoder, runs the
chosen parts (all by default):

* ``recognition``: linear evaluation, kNN retrieval, early prediction and finetuning on
  all the training labels;
* ``semi``: finetuning on a class-balanced labelled subset of the training split per
  fraction (``labelled_subset``: at least one clip per class, so the clips used are reported);
* ``transfer``: the NTU-60 -> PKU-MMD II protocol: synthetic untrimmed sequences written as a
  raw PKU-MMD phase-2 release, drawn from a different population of synthetic subjects and
  camera setups, prepared with the x-sub recipe; the NTU-pretrained encoder is evaluated
  by kNN-1 and linear probe on its trimmed ``train`` / ``test`` clips.

Prints the figures side by side.
"""

import argparse
import copy
import logging
import tempfile
import time
from pathlib import Path

import torch
import torch.utils.data
from _common import add_threads_argument, pretrain_within, start_run

from usdrl import USDRL, USDRLConfig
from usdrl.data import SkeletonDataset, prepare_dataset
from usdrl.data.synthetic import SyntheticActions
from usdrl.data.synthetic_files import write_synthetic_ntu, write_synthetic_pkummd
from usdrl.tasks.early import early_prediction
from usdrl.tasks.finetune import FinetuneConfig, finetune, labelled_subset
from usdrl.tasks.recognition import ProbeConfig, encode_dataset, linear_probe
from usdrl.tasks.retrieval import retrieval_accuracy

logger = logging.getLogger("tasks_synthetic")

PARTS = ("recognition", "semi", "transfer")
#: The linear probe of every part (standardised features: the random-init encoder's are of another scale).
PROBE = ProbeConfig(lr=0.05, epochs=100, batch_size=64, standardize=True)


def _finetune_config(epochs: int, eval_every: int = 5) -> FinetuneConfig:
    return FinetuneConfig(epochs=epochs, batch_size=32, lr=1e-3, warmup_epochs=1, eval_every=eval_every)


def _frozen(model: USDRL, train, test, num_classes: int) -> dict:
    """kNN-1 (train = gallery, test = queries) and linear probe (best, last) of the frozen encoder."""
    (gallery, gallery_labels), (query, query_labels) = encode_dataset(model, train), encode_dataset(model, test)
    knn = retrieval_accuracy(query, gallery, query_labels, gallery_labels)["accuracy"]
    probe = linear_probe(model, (train, test), num_classes=num_classes, config=PROBE)
    return {"kNN-1": knn, "linear probe (best / last)": (probe.best_top1, probe.last_top1)}


def recognition(model: USDRL, prepared: Path, args) -> dict:
    """Linear probe, kNN-1, early prediction and finetuning on all the training labels."""
    train, test = SkeletonDataset(prepared, "train"), SkeletonDataset(prepared, "test")
    probed = copy.deepcopy(model)
    figures = _frozen(probed, train, test, train.num_classes)
    curve = early_prediction(probed, prepared, ratios=(0.1, 0.3, 0.5, 0.7, 1.0))
    figures["early: 10% observed"], figures["early: 50% observed"] = curve.accuracy[0.1], curve.accuracy[0.5]
    crops = SkeletonDataset(prepared, "train", sampling="random_crop", seed=0)
    tuned = finetune(copy.deepcopy(model), (crops, test), num_classes=train.num_classes,
                     config=_finetune_config(args.finetune_epochs))
    figures[f"finetune, {args.finetune_epochs} epochs (best / last)"] = (tuned.best_top1, tuned.last_top1)
    return figures


def semi_supervised(model: USDRL, prepared: Path, subsets: dict[float, list[int]], args) -> dict:
    """Finetuning on each labelled subset (indices into the training split), best and last top-1."""
    crops = SkeletonDataset(prepared, "train", sampling="random_crop", seed=0)
    test = SkeletonDataset(prepared, "test")
    figures = {}
    for fraction, indices in subsets.items():
        tuned = finetune(copy.deepcopy(model), (torch.utils.data.Subset(crops, indices), test),
                         num_classes=crops.num_classes, config=_finetune_config(args.semi_epochs, eval_every=10))
        label = f"semi {100 * fraction:g}% ({len(indices)} clips): finetune (best / last)"
        figures[label] = (tuned.best_top1, tuned.last_top1)
    return figures


def transfer(model: USDRL, target: Path) -> dict:
    """kNN-1 and linear probe of the frozen encoder on the trimmed clips of another prepared dataset."""
    train, test = SkeletonDataset(target, "train"), SkeletonDataset(target, "test")
    train.check_config(model.config)
    figures = _frozen(copy.deepcopy(model), train, test, train.num_classes)
    return {f"PKU-MMD II transfer: {metric}": value for metric, value in figures.items()}


def _cell(value) -> str:
    if isinstance(value, tuple):
        return " / ".join(f"{100 * v:.1f}" for v in value)
    return f"{100 * value:.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS),
                        help="what to run (default: all): recognition (probe, kNN, early prediction, finetuning), "
                             "semi (finetuning on labelled fractions), transfer (NTU-60 -> PKU-MMD II)")
    parser.add_argument("--minutes", type=float, default=6.0, help="pretraining time budget")
    parser.add_argument("--clips", type=int, default=1200, help="synthetic NTU clips written (before the split)")
    parser.add_argument("--finetune-epochs", type=int, default=15, help="finetuning epochs on all the labels")
    parser.add_argument("--semi-epochs", type=int, default=100, help="finetuning epochs on a labelled subset")
    parser.add_argument("--fractions", type=float, nargs="+", default=[0.1, 0.01],
                        help="labelled fractions of the semi-supervised part")
    parser.add_argument("--sequences", type=int, default=120,
                        help="synthetic PKU-MMD II sequences written for the transfer part (before the split)")
    parser.add_argument("--preset", default="tiny")
    add_threads_argument(parser)
    args = parser.parse_args()
    began = start_run(args)

    out = Path(tempfile.mkdtemp(prefix="usdrl-tasks-"))
    write_synthetic_ntu(out / "raw", args.clips, seed=0)
    prepared = prepare_dataset("ntu60", out / "raw", out / "prepared", benchmark="xsub", workers=1,
                               show_progress_bar=False)
    train, test = SkeletonDataset(prepared, "train"), SkeletonDataset(prepared, "test")
    present = len(set(train.labels.tolist()))
    logger.info("synthetic NTU-60 x-sub: %d training and %d test clips, %d classes", len(train), len(test), present)
    subsets = {}
    for fraction in args.fractions if "semi" in args.parts else ():
        subsets[fraction] = labelled_subset(train.labels, fraction, balanced=True, seed=0).tolist()
        logger.info("semi %g: class-balanced subset of %d training clips (%.1f%% of %d, at least 1 per class)",
                    fraction, len(subsets[fraction]), 100 * len(subsets[fraction]) / len(train), len(train))
    if "transfer" in args.parts:
        # other subjects' bodies and other camera setups than the NTU data (population_seed 1)
        write_synthetic_pkummd(out / "pku-raw", args.sequences, phase=2, seed=1,
                               generator=SyntheticActions(population_seed=1))
        target = prepare_dataset("pkummd2", out / "pku-raw", out / "pku-prepared", benchmark="xsub", workers=1,
                                 show_progress_bar=False)
        pku_train, pku_test = SkeletonDataset(target, "train"), SkeletonDataset(target, "test")
        logger.info("synthetic PKU-MMD II x-sub (other subjects and setups): %d sequences, %d training and %d test "
                    "clips, %d classes present", args.sequences, len(pku_train), len(pku_test),
                    len(set(pku_train.labels.tolist()) | set(pku_test.labels.tolist())))
    logger.info("data ready after %.1f minutes", (time.perf_counter() - began) / 60)

    config = USDRLConfig.from_preset(args.preset)
    pretrained, epochs, epoch_seconds = pretrain_within(args.minutes, config, train.padded_clips, train.lengths, out,
                                                        batch_size=64, lr=1e-3)
    logger.info("pretrained %s on the NTU training clips for %d epochs (%.1f s each)", args.preset, epochs,
                epoch_seconds)
    torch.manual_seed(0)
    encoders = {"random init": USDRL(config), "pretrained": pretrained}
    results = {name: {} for name in encoders}
    for part in (p for p in PARTS if p in args.parts):
        start = time.perf_counter()
        for name, model in encoders.items():
            if part == "recognition":
                results[name].update(recognition(model, prepared, args))
            elif part == "semi":
                results[name].update(semi_supervised(model, prepared, subsets, args))
            else:
                results[name].update(transfer(model, target))
        logger.info("%s: %.1f minutes for both encoders", part, (time.perf_counter() - start) / 60)
    logger.info("%-48s %14s %14s", "top-1 (%)", "random init", "pretrained")
    for metric in results["random init"]:
        logger.info("%-48s %14s %14s", metric, _cell(results["random init"][metric]),
                    _cell(results["pretrained"][metric]))
    logger.info("total %.1f minutes, %d torch thread(s)", (time.perf_counter() - began) / 60, args.threads)


if __name__ == "__main__":
    main()
