"""Pretraining on your own unlabelled recordings: raw files -> prepared arrays -> MG-FD/MPCT pretraining -> encoder.

Run: ``python examples/pretrain_own_data.py [--workdir FOLDER]`` (offline, about 20 s on a CPU).

1. Raw data: 200 synthetic clips written as NTU RGB+D ``.skeleton`` files stand in for your
   own Kinect recordings (``usdrl.data.synthetic_files.write_synthetic_ntu``). Any format
   ``usdrl prepare`` reads works the same way (NTU, PKU-MMD, UAV-Human, pyskl 2D).
2. ``usdrl.data.prepare_dataset`` (``usdrl prepare ntu60 RAW OUT --benchmark xsub``) converts
   them once into memory-mapped arrays (``SkeletonDataset``); the pretraining reads the
   training split's padded clips and valid lengths, not its labels.
3. ``usdrl.train.pretrain.Pretrainer`` runs self-supervised MG-FD/MPCT pretraining of a tiny
   DSTE (``USDRLConfig.from_preset("tiny")``) for one epoch, writing ``checkpoint_0001.pt``,
   ``metrics.jsonl`` and the final ``model/`` folder; a second call with ``resume=True``
   continues from the newest checkpoint to epoch 2 (the loss trajectory is the one an
   uninterrupted 2-epoch run would have had: that is how to continue a killed or finished run).
4. ``USDRL.from_pretrained(run_dir / "model")`` loads the encoder like any published
   weights, and ``encode`` turns the held-out clips into embeddings.

Two epochs of a tiny model only show the mechanics; real pretraining runs hundreds of epochs
(``PretrainConfig()`` holds the paper's settings) on a GPU, e.g.
``usdrl pretrain --data OUT --out RUN_DIR`` (``torchrun`` for several GPUs).
"""

import argparse
import json
import logging
import tempfile
from pathlib import Path

import numpy as np

from usdrl import USDRL, USDRLConfig
from usdrl.data import SkeletonDataset, prepare_dataset
from usdrl.data.synthetic_files import write_synthetic_ntu
from usdrl.train.pretrain import PretrainConfig, Pretrainer

logger = logging.getLogger("pretrain_own_data")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", help="folder for the raw files, prepared data and run (default: a temporary one)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="usdrl-pretrain-example-"))

    files = write_synthetic_ntu(workdir / "raw", 200, seed=0)                  # "my recordings"
    logger.info("wrote %d raw .skeleton files to %s", len(files), workdir / "raw")
    prepared = prepare_dataset("ntu60", workdir / "raw", workdir / "prepared", benchmark="xsub",
                               show_progress_bar=False)
    train = SkeletonDataset(prepared, "train")
    logger.info("pretraining data: %d clips %s (N, C, Tmax, V, M)", len(train), train.padded_clips.shape)

    run_dir = workdir / "run"
    settings = dict(batch_size=32, lr=1e-3, num_views=4, save_every=1)
    Pretrainer(USDRLConfig.from_preset("tiny"), PretrainConfig(epochs=1, **settings), train.padded_clips,
               train.lengths, run_dir, show_progress_bar=False).fit()
    # Later (or after a crash): continue the same run to epoch 2 from its newest checkpoint.
    Pretrainer(USDRLConfig.from_preset("tiny"), PretrainConfig(epochs=2, **settings), train.padded_clips,
               train.lengths, run_dir, resume=True, show_progress_bar=False).fit()
    metrics = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    logger.info("MG-FD loss over %d steps (2 epochs): %.2f -> %.2f", len(metrics), metrics[0]["loss"],
                metrics[-1]["loss"])
    logger.info("run folder: %s", ", ".join(sorted(p.name for p in run_dir.iterdir())))

    model = USDRL.from_pretrained(run_dir / "model")
    test = SkeletonDataset(prepared, "test")                                    # clips resampled to 64 frames
    clips = np.stack([test[i][0] for i in range(len(test))])                    # (N, 3, 64, 25, 2)
    embeddings = model.encode(clips, normalize=True, show_progress_bar=False)
    logger.info("encoded %d held-out clips with the pretrained %s encoder (hidden %d): embeddings %s",
                len(test), model.config.encoder, model.config.hidden_size, tuple(embeddings.shape))


if __name__ == "__main__":
    main()
