"""Make the embedded NTU-25 weights ``usdrl-synthetic-small`` (shipped inside the package; ``usdrl.hub.NTU25_MODEL``).

Usage: python benchmarks/make_default_model.py [--out usdrl/pretrained/usdrl-synthetic-small] [--workdir DIR]

1. Writes synthetic actions in the raw NTU RGB+D and PKU-MMD formats and prepares them
   exactly as real data (``usdrl prepare ntu60 ... --benchmark xsub`` and ``pkummd1``).
2. Pretrains a small DSTE (hidden 128, 4 heads, joint, NTU-25, 64 frames) with MG-FD/MPCT on
   the unlabelled training clips for a fixed number of epochs (seeded).
3. Trains a frame-wise head (background + 29 classes) together with the encoder on 64-frame
   windows of the untrimmed training sequences (``train_detector``, MS-TCN smoothing), then
   a linear clip classifier for the 29 classes on that frozen encoder (linear probe), and
   reports held-out clip accuracy, detection mAP and segmentation figures.
4. Writes the ``save_pretrained`` folder. Everything is seeded, so the run reproduces the
   shipped files up to floating-point differences between machines. With ``--workdir`` a
   run that was stopped picks up where it was: prepared data and pretraining checkpoints
   are reused.

About 25 minutes on 2 CPU cores (``--threads 1`` is faster when other jobs share them).
"""

import argparse
import logging
import tempfile
from pathlib import Path

import torch
from _common import setup_logging

from usdrl import USDRLConfig
from usdrl.data import SkeletonDataset, prepare_dataset
from usdrl.data.prepared import MANIFEST
from usdrl.data.synthetic import ACTION_NAMES, NUM_CLASSES
from usdrl.data.synthetic_files import write_synthetic_ntu, write_synthetic_pkummd
from usdrl.tasks.detection import DetectionConfig, evaluate_detection, evaluate_segmentation, train_detector
from usdrl.tasks.finetune import FinetuneConfig
from usdrl.tasks.recognition import ProbeConfig, linear_probe
from usdrl.train.pretrain import PretrainConfig, Pretrainer, latest_checkpoint

logger = logging.getLogger("make_default_model")

DEFAULT_OUT = Path(__file__).resolve().parents[1] / "usdrl" / "pretrained" / "usdrl-synthetic-small"
MODEL = USDRLConfig.from_preset("small", hidden_size=128, num_heads=4)
DESCRIPTION = ("Demo weights, not for real data: a small DSTE (hidden 128) pretrained with MG-FD/MPCT on "
               "{clips} synthetic clips of usdrl's action generator ({epochs} epochs), then trained with a "
               "frame-wise head on {sequences} synthetic untrimmed sequences ({detector_epochs} epochs), with a "
               "linear clip head for its 29 classes on the result.")
PREPROCESSING = ("usdrl.data.preprocess.preprocess_3d(clip, 'ntu') (the NTU recipe of usdrl prepare), then the "
                 "valid frames resampled to 64 (usdrl.data.preprocess.to_model_input)")


def prepare(workdir: Path, clips: int, sequences: int) -> tuple[Path, Path]:
    """Synthetic raw NTU and PKU-MMD files in ``workdir``, prepared (unless already there); returns
    the two prepared folders."""
    folders = []
    for source, name, write, count, seed in (("ntu60", "ntu", write_synthetic_ntu, clips, 0),
                                            ("pkummd1", "pku", write_synthetic_pkummd, sequences, 1)):
        if not (workdir / name / MANIFEST).is_file():
            write(workdir / f"raw_{name}", count, seed=seed)
            prepare_dataset(source, workdir / f"raw_{name}", workdir / name, benchmark="xsub", overwrite=True,
                            show_progress_bar=False)
        folders.append(workdir / name)
    return folders[0], folders[1]


def add_common_arguments(parser: argparse.ArgumentParser, default_out: Path) -> None:
    """The options every embedded-model maker takes: ``--out``, ``--threads``, ``--workdir``."""
    parser.add_argument("--out", default=str(default_out), help="the save_pretrained folder to write")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's)")
    parser.add_argument("--workdir", help="folder for the data and run files, to resume a stopped run "
                                          "(default: a temporary one)")


def start(args: argparse.Namespace, prefix: str) -> Path:
    """Log the script's progress and only the library's warnings, set the threads; returns the work folder."""
    setup_logging()
    for name in ("usdrl.tasks", "usdrl.train"):
        logging.getLogger(name).setLevel(logging.WARNING)
    if args.threads:
        torch.set_num_threads(args.threads)
    return Path(args.workdir or tempfile.mkdtemp(prefix=prefix))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common_arguments(parser, DEFAULT_OUT)
    parser.add_argument("--epochs", type=int, default=30, help="pretraining epochs")
    parser.add_argument("--clips", type=int, default=2400, help="synthetic clips written (before the split)")
    parser.add_argument("--sequences", type=int, default=96, help="untrimmed synthetic sequences")
    parser.add_argument("--detector-epochs", type=int, default=20, help="epochs of frame-wise training")
    args = parser.parse_args()
    workdir = start(args, "usdrl-default-model-")

    ntu, pku = prepare(workdir, args.clips, args.sequences)
    train = SkeletonDataset(ntu, "train")
    windows = SkeletonDataset(pku, "train_untrimmed", sampling="windows", window_stride=32)
    logger.info("prepared %d training clips and %d untrimmed sequences (%d windows) in %s", len(train),
                len(windows.names), len(windows), workdir)
    config = PretrainConfig(epochs=args.epochs, batch_size=128, lr=1e-3, lr_milestones=[int(args.epochs * 0.8)],
                            save_every=max(1, args.epochs // 4), precision="bf16")
    description = DESCRIPTION.format(clips=len(train), epochs=args.epochs, sequences=len(windows.names),
                                     detector_epochs=args.detector_epochs)
    metadata = {"dataset": "synthetic", "preprocessing": PREPROCESSING,
                "protocol": "MG-FD/MPCT pretraining, frame-wise training, linear clip head",
                "description": description}
    run = workdir / "run"
    model = Pretrainer(MODEL, config, train.padded_clips, train.lengths, run, metadata=metadata,
                       resume=latest_checkpoint(run) is not None, show_progress_bar=True).fit()

    train_detector(model, windows, num_classes=NUM_CLASSES + 1, smoothing=0.15,
                   config=FinetuneConfig(epochs=args.detector_epochs, batch_size=32, lr=3e-3, warmup_epochs=1))
    probe = linear_probe(model, (train, SkeletonDataset(ntu, "test")), num_classes=NUM_CLASSES,
                         config=ProbeConfig(lr=0.05, epochs=100, batch_size=64, standardize=True),
                         class_names=list(ACTION_NAMES))
    logger.info("clip head: top-1 %.1f%% on held-out clips (last epoch)", 100 * probe.last_top1)
    detection = evaluate_detection(model, pku, config=DetectionConfig(stride=16, threshold=0.5, min_length=8))
    segmentation = evaluate_segmentation(model, pku, config=DetectionConfig(stride=16))
    logger.info("detection mAP_a@0.5 %.1f%%, mAP_v@0.5 %.1f%%; segmentation (%%) %s", 100 * detection[0.5]["mAP_a"],
                100 * detection[0.5]["mAP_v"], {k: round(v, 1) for k, v in segmentation.items()})
    model.save_pretrained(args.out)
    logger.info("wrote %s", args.out)


if __name__ == "__main__":
    main()
