"""Make the embedded universal weights ``usdrl-universal-small`` (shipped inside the package).

Usage: python benchmarks/make_universal_model.py [--out usdrl/pretrained/usdrl-universal-small] [--workdir DIR]

1. Draws unlabelled synthetic actions (NTU-25, Kinect camera space) and pretrains a small
   universal DSTE (``layout="universal"``, hidden 64, 4 heads, 64 frames) with MG-FD on
   cross-format views (:class:`usdrl.train.cross_format.CrossFormatPretrainer`: each view of a
   clip rendered as NTU-25 / H36M-17 / SMPL-24 3D or COCO-17 / MediaPipe-33 / OpenPose-25 2D,
   by a camera turned up to 60 degrees, with detector-like noise) for a fixed number of epochs.
2. Trains a frame-wise head (background + 29 classes) together with the encoder (``train_detector``,
   MS-TCN smoothing) on 64-frame windows of untrimmed synthetic sequences, each sequence rendered
   in three of the pretraining formats (the camera and noise of the held-out test), with the
   cross-format alignment term (:class:`usdrl.train.cross_format.FormatAlignment`: InfoNCE between
   two renderings of each of 128 unlabelled clips per step) so that the clips stay apart.
3. Fits a linear clip head for the 29 synthetic classes on the frozen encoder: labelled clips,
   each rendered in every pretraining format (the same camera and noise as the held-out test).
4. Measures on held-out clips and sequences (the protocol of ``universal_synthetic.py``): the clip
   head's top-1 per format (NTU-25 3D as the sensor gave it; COCO-17 2D, H36M-17 3D, MediaPipe-33 2D
   from a camera turned 20-45 degrees with detector noise), cross-format retrieval (NTU-25 3D <->
   COCO-17 2D, top-1), and per format the detection mAP_a at IoU 0.5 and the frame accuracy on
   untrimmed sequences; writes them to ``figures.json`` in the work folder and the model card.
5. Writes the ``save_pretrained`` folder. The rendering settings are recorded in the config's
   ``protocol`` and in the pretraining checkpoints. Everything is seeded; with ``--workdir`` a
   stopped run resumes from its newest pretraining or detector checkpoint.

About two hours on 2 shared CPU cores with ``--threads 1`` (45 minutes of pretraining, 77 of frame-wise
training with the alignment term).
"""

import argparse
import dataclasses
import json
import logging
import sys
from pathlib import Path

import torch
from make_default_model import add_common_arguments, start
from universal_synthetic import FRAMES, PROBE_FORMATS, detection_figures, rendered, rendered_windows, top1_retrieval

from usdrl import USDRL, USDRLConfig
from usdrl._io import atomic_write_text
from usdrl.data.synthetic import ACTION_NAMES, NUM_CLASSES, make_clips, make_untrimmed
from usdrl.engine import RunOptions
from usdrl.tasks.detection import DetectionConfig, train_detector
from usdrl.tasks.finetune import FinetuneConfig
from usdrl.tasks.recognition import ProbeConfig, train_linear_head
from usdrl.train.cross_format import CrossFormatConfig, CrossFormatPretrainer, FormatAlignment
from usdrl.train.pretrain import PretrainConfig, latest_checkpoint
from usdrl.universal import IN_CHANNELS

logger = logging.getLogger("make_universal_model")

NAME = "usdrl-universal-small"
DEFAULT_OUT = Path(__file__).resolve().parents[1] / "usdrl" / "pretrained" / NAME
MODEL = USDRLConfig.from_preset("tiny", layout="universal", in_channels=IN_CHANNELS, num_heads=4,
                                num_frames=FRAMES, dataset="synthetic")
RENDERING = CrossFormatConfig()
#: How the held-out sequences are detected: windows every 16 frames, proposals above 0.5 lasting 8+ frames.
DETECTION = DetectionConfig(stride=16, threshold=0.5, min_length=8)
DESCRIPTION = ("Demo weights for synthetic actions only, not for real data: a small universal DSTE (hidden {hidden}) "
               "that reads every registered keypoint format, 2D or 3D, pretrained with MG-FD on cross-format "
               "views of {clips} synthetic clips of usdrl's action generator ({epochs} epochs), then trained with a "
               "frame-wise head on {sequences} synthetic untrimmed sequences rendered in three formats each "
               "({detector_epochs} epochs){alignment}, with a linear clip head for its {classes} classes fitted on "
               "clips rendered in {formats}.")
PREPROCESSING = ("usdrl.universal.model_input(keypoints, format, num_frames=64, num_persons=2), as "
                 "USDRL.encode_keypoints does (image_size=(height, width) for MediaPipe's normalised coordinates)")
CARD_FIGURES = """
## Keypoints of any format

The input above is the universal one (30 canonical joints, 6 channels; `usdrl.universal`): give the model
keypoints of any registered format (`usdrl.keypoints.list_formats()`) through `encode_keypoints`, which
converts them:

```python
from usdrl import USDRL

model = USDRL.from_pretrained("usdrl-universal-small")                 # shipped with usdrl
embedding = model.encode_keypoints(keypoints, format="coco17")         # (M, T, 17, 3) pixels + score -> (128,)
probabilities = model.head(embedding).softmax(-1)                      # (29,) synthetic classes
landmarks = model.encode_keypoints(mp, format="mediapipe33", image_size=(1080, 1920))  # normalised coordinates
```

## Measured (held-out synthetic clips)

It knows synthetic actions only: the 29 classes of usdrl's action generator (`usdrl.data.synthetic.ACTION_NAMES`),
drawn as NTU-25 bodies and rendered in the other formats by `usdrl.data.synthetic.render_keypoints`; it has
never seen real motion capture or a real pose estimator's output. Clip-head top-1 on {test} held-out clips per
format (NTU-25 3D as the simulated sensor gave it; the others rendered from a camera turned 20-45 degrees
with detector noise: 1.5 cm jitter, 10% unsure joints, 5% dropped; chance {chance:.1f}%), and cross-format
retrieval among {retrieval} other held-out clips (query in one format, nearest embedding in the other,
top-1; chance {retrieval_chance:.2f}%), and the frame head on {sequences} held-out untrimmed sequences per format
(the same cameras and noise; windows every 16 frames, proposals above 0.5 lasting 8+ frames): detection mAP_a at
IoU 0.5 (the official PKU-MMD metric, averaged over 51 action labels) and frame accuracy:

| figure | value |
|---|---|
{rows}

Made by `python benchmarks/make_universal_model.py --threads 1` ({epochs} pretraining epochs, {steps}
steps of {batch} clips x 4 views; {detector_epochs} epochs of frame-wise training); this run:
`{command}`. Rendering of the pretraining views: `{rendering}`.

Detection from keypoints of any format, offline or streaming:

```python
from usdrl.tasks.detection import detect_sequence
from usdrl.tasks.streaming import StreamingDetector

actions = detect_sequence(model, keypoints, format="coco17")          # (M, T, 17, 3) -> [(label, start, end, score)]
stream = StreamingDetector(model, format="coco17", stride=16)         # push((M, frames, 17, 3)) as they come
```
"""


def embed(model: USDRL, clips, fmt: str, seed: int) -> torch.Tensor:
    """Embeddings ``(N, 2H)`` of ``clips`` rendered in ``fmt`` (``universal_synthetic.rendered``)."""
    return model.encode(rendered(clips, fmt, seed), show_progress_bar=False)


def fit_clip_head(model: USDRL, labelled, test) -> dict:
    """Give ``model`` a linear head for the synthetic classes, fitted on ``labelled`` clips rendered in every
    pretraining format; returns its top-1 on ``test`` per :data:`PROBE_FORMATS` format."""
    features = torch.cat([embed(model, labelled, fmt, 40 + k) for k, fmt in enumerate(RENDERING.formats)])
    labels = torch.from_numpy(labelled.labels).long().repeat(len(RENDERING.formats))
    test_features = {fmt: embed(model, test, fmt, 30 + k) for k, fmt in enumerate(PROBE_FORMATS)}
    test_labels = torch.from_numpy(test.labels).long()
    head, _ = train_linear_head(features, labels, test_features["ntu25"], test_labels, NUM_CLASSES,
                                ProbeConfig(lr=0.05, epochs=60, lr_milestones=[40, 50], batch_size=128,
                                            standardize=True, eval_every=60))
    model.reset_classifier(NUM_CLASSES, list(ACTION_NAMES))
    model.head.load_state_dict(head.state_dict())
    model.eval()
    with torch.no_grad():
        return {f"clip top-1, {fmt}": float((model.head(test_features[fmt]).argmax(1) == test_labels).float().mean())
                for fmt in PROBE_FORMATS}


def train_frame_head(model: USDRL, args: argparse.Namespace, run: Path) -> None:
    """Train ``model`` with a frame-wise head (background + the synthetic classes) on windows of ``args.sequences``
    untrimmed sequences, each rendered in three pretraining formats, with the cross-format alignment term on
    unlabelled clips (``--alignment-weight``, 0: none); ``run`` keeps its checkpoints (resumable)."""
    sequences = [make_untrimmed(seed=1000 + i) for i in range(args.sequences)]
    windows = rendered_windows(sequences, RENDERING.formats, 3, seed=5)
    alignment = None
    if args.alignment_weight:
        unlabelled = make_clips(args.clips, seed=0)
        alignment = FormatAlignment(unlabelled.data, unlabelled.lengths, weight=args.alignment_weight,
                                    batch_size=args.alignment_batch, cross_format=RENDERING)
    logger.info("frame-wise training on %d windows of %d sequences (alignment: %s)", len(windows), len(sequences),
                "none" if alignment is None else f"weight {args.alignment_weight}, {args.alignment_batch} clips")
    train_detector(model, windows, num_classes=NUM_CLASSES + 1, smoothing=0.15, alignment=alignment,
                   config=FinetuneConfig(epochs=args.detector_epochs, batch_size=32, lr=args.detector_lr,
                                         layer_decay=args.detector_layer_decay, warmup_epochs=1),
                   run=RunOptions(run_dir=run, resume=latest_checkpoint(run) is not None, show_progress_bar=True,
                                  precision="auto"))


def write_card(folder: Path, model: USDRL, figures: dict, config: PretrainConfig, steps: int) -> None:
    """The model card: the library's generated card, then the measured figures."""
    rows = "\n".join(f"| {name} | {100 * value:.1f}% |" for name, value in figures["measured"].items())
    text = str(model.generate_model_card()) + CARD_FIGURES.format(
        test=figures["test_clips"], chance=100 / NUM_CLASSES, retrieval=figures["retrieval_clips"],
        retrieval_chance=100 / figures["retrieval_clips"], sequences=figures["test_sequences"], rows=rows,
        epochs=config.epochs, detector_epochs=figures["detector_epochs"], steps=steps,
        batch=config.batch_size, rendering=json.dumps(RENDERING.to_dict()), command=figures["command"])
    atomic_write_text(folder / "README.md", text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common_arguments(parser, DEFAULT_OUT)
    parser.add_argument("--epochs", type=int, default=20, help="pretraining epochs")
    parser.add_argument("--lr-drop", type=int, default=16,
                        help="the epoch after which the learning rate falls tenfold (fixed, so that a resumed run "
                             "may be given fewer --epochs)")
    parser.add_argument("--clips", type=int, default=2048, help="unlabelled synthetic pretraining clips")
    parser.add_argument("--head-clips", type=int, default=20 * NUM_CLASSES, help="labelled clips of the clip head")
    parser.add_argument("--test-clips", type=int, default=10 * NUM_CLASSES, help="held-out labelled clips")
    parser.add_argument("--retrieval-clips", type=int, default=580, help="held-out clips of the retrieval test")
    parser.add_argument("--sequences", type=int, default=96, help="untrimmed synthetic sequences of the frame head")
    parser.add_argument("--detector-epochs", type=int, default=16, help="epochs of frame-wise training")
    parser.add_argument("--detector-lr", type=float, default=3e-3, help="peak learning rate of frame-wise training")
    parser.add_argument("--detector-layer-decay", type=float, default=1.0,
                        help="frame-wise training: the encoder's layers get lr x decay^depth from the top")
    parser.add_argument("--alignment-weight", type=float, default=1.5,
                        help="weight of the cross-format alignment term (InfoNCE between renderings of unlabelled "
                             "clips) in frame-wise training; 0: none")
    parser.add_argument("--alignment-batch", type=int, default=128, help="clips of the alignment term per step")
    parser.add_argument("--test-sequences", type=int, default=24, help="held-out untrimmed sequences")
    parser.add_argument("--pretrain-only", action="store_true", help="stop after pretraining")
    parser.add_argument("--pretrained", help="a universal model folder or name to start from instead of pretraining "
                                             "(e.g. usdrl-universal-small: trains and measures its heads again)")
    args = parser.parse_args()
    workdir = start(args, "usdrl-universal-model-")

    config = PretrainConfig(epochs=args.epochs, batch_size=128, lr=1e-3, lr_milestones=[args.lr_drop],
                            save_every=1, precision="bf16")
    metadata = {"preprocessing": PREPROCESSING,
                "protocol": "MG-FD pretraining on cross-format views (usdrl.train.cross_format.CrossFormatConfig"
                            f"({json.dumps(RENDERING.to_dict())})), frame-wise training"
                            + (f" with cross-format alignment (FormatAlignment, weight {args.alignment_weight:g})"
                               if args.alignment_weight else "") + ", linear clip head",
                "description": DESCRIPTION.format(
                    hidden=MODEL.hidden_size, clips=args.clips, epochs=args.epochs, sequences=args.sequences,
                    detector_epochs=args.detector_epochs, classes=NUM_CLASSES, formats=", ".join(RENDERING.formats),
                    alignment=" while keeping the renderings of each unlabelled clip nearer each other than other "
                              "clips' (cross-format alignment)" if args.alignment_weight else "")}
    run = workdir / "run"
    newest = latest_checkpoint(run)
    if args.pretrained:
        logger.info("starting from %s (no pretraining)", args.pretrained)
        model = USDRL.from_pretrained(args.pretrained)
    elif newest is not None and newest.name == f"checkpoint_{args.epochs:04d}.pt" and (run / "model").is_dir():
        logger.info("pretraining done: %s", run / "model")
        model = USDRL.from_pretrained(run / "model")
    else:
        logger.info("pretraining in %s (%d clips, %d epochs)", run, args.clips, args.epochs)
        unlabelled = make_clips(args.clips, seed=0)
        model = CrossFormatPretrainer(MODEL, config, unlabelled.data, unlabelled.lengths, run,
                                      cross_format=RENDERING, metadata=metadata, resume=newest is not None,
                                      show_progress_bar=True).fit().eval()
    model.config = dataclasses.replace(model.config, **metadata)   # what the shipped files say of their making
    steps = args.epochs * (args.clips // config.batch_size)
    if args.pretrain_only:
        return

    train_frame_head(model, args, workdir / "detector")
    labelled = make_clips(args.head_clips, seed=4, num_frames=FRAMES)
    test = make_clips(args.test_clips, seed=2, num_frames=FRAMES)
    measured = fit_clip_head(model, labelled, test)
    gallery = make_clips(args.retrieval_clips, seed=3, num_frames=FRAMES)
    from_3d, from_2d = embed(model, gallery, "ntu25", 10), embed(model, gallery, "coco17", 11)
    measured["retrieval NTU-25 3D -> COCO-17 2D"] = top1_retrieval(from_3d, from_2d)
    measured["retrieval COCO-17 2D -> NTU-25 3D"] = top1_retrieval(from_2d, from_3d)
    test_sequences = [make_untrimmed(seed=5000 + i) for i in range(args.test_sequences)]
    measured.update(detection_figures(model, test_sequences, 7, DETECTION))
    for name, value in measured.items():
        logger.info("%s: %.1f%%", name, 100 * value)
    figures = {"measured": measured, "test_clips": args.test_clips, "retrieval_clips": args.retrieval_clips,
               "test_sequences": args.test_sequences, "detection": DETECTION.__dict__,
               "epochs": args.epochs, "detector_epochs": args.detector_epochs, "steps": steps,
               "rendering": RENDERING.to_dict(),
               "command": " ".join(sys.argv)}
    atomic_write_text(workdir / "figures.json", json.dumps(figures, indent=2))
    out = Path(args.out)
    model.save_pretrained(out)
    write_card(out, model, figures, config, steps)
    logger.info("wrote %s", out)


if __name__ == "__main__":
    main()
