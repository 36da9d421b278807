"""One encoder for every skeleton: cross-format pretraining of a universal USDRL on synthetic actions.

Usage: python benchmarks/universal_synthetic.py [--minutes 15 | --epochs N] [--hidden 128] [--out DIR] [--save DIR]
       [--baseline ntu25|coco17|h36m17|mediapipe33]
       python benchmarks/universal_synthetic.py --model usdrl-universal-small   # measure a trained model

Pretrains a universal model (``layout="universal"``, :mod:`usdrl.universal`) with MG-FD on
cross-format views (:mod:`usdrl.train.cross_format`: each clip rendered as NTU-25 / H36M /
SMPL 3D or COCO-17 / MediaPipe / OpenPose 2D from other cameras, with detector-like noise),
then measures, for the pretrained (or, with ``--model``, the given) and a randomly initialised
encoder of the same config:

* cross-format retrieval: held-out clips as NTU-25 3D (the sensor's view) and as COCO-17 2D
  from another camera (turned 20-45 degrees, detector noise); query one, retrieve among the
  other; top-1 (chance 1 / clips);
* a linear probe per format (NTU-25 3D, COCO-17 2D, H36M-17 3D, MediaPipe-33 2D);
* zero-shot format transfer: the probe fitted on NTU-25 3D features, tested on COCO-17 2D;
* missing joints: the COCO-17 2D probe on test clips with 0/10/30/50% of their joints dropped
  (the same joints in every frame, as an occlusion);
* cost: encode throughput and size against the embedded ``usdrl-synthetic-small``.

With ``--baseline FORMAT`` (one of the probe formats) a format-specific model of the same size (the
format's own layout, 3 channels: NTU-25 metres as ``usdrl prepare`` prepares them; another format's own
joints normalised as the universal input normalises them, :func:`layout_input`) is pretrained for the
same epochs (or minutes) with the ordinary MPCT views on the unlabelled clips rendered in that one
format (as the probe renders it: NTU-25 as the sensor gave them, the others from the probe's cameras
with detector noise), and its linear probe on that format is set beside the universal model's.
"""

import argparse
import dataclasses
import json
import logging
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from _common import add_threads_argument, best_time, pretrain_within, start_run
from pretrain_synthetic import linear_probe

from usdrl import USDRL, USDRLConfig
from usdrl.data.preprocess import preprocess_3d
from usdrl.data.synthetic import NUM_CLASSES, DetectorNoise, make_clips, render_keypoints
from usdrl.keypoints import get_format
from usdrl.precision import machine_info
from usdrl.tasks.detection import DetectionConfig, frame_scores
from usdrl.tasks.metrics import detection_map, frame_accuracy, proposals_from_scores, segments_of
from usdrl.train.cross_format import CrossFormatPretrainer
from usdrl.train.pretrain import PretrainConfig, Pretrainer
from usdrl.universal import IN_CHANNELS, check_universal, model_input, normalise_body

logger = logging.getLogger("universal_synthetic")

PROBE_FORMATS = ("ntu25", "coco17", "h36m17", "mediapipe33")
#: The formats a same-size single-layout baseline can be trained on (``--baseline``): a layout of their own.
BASELINE_FORMATS = PROBE_FORMATS
DROPPED = (0.0, 0.1, 0.3, 0.5)
FRAMES = 64
#: (height, width) of render_keypoints's camera (its default), in pixels.
IMAGE_SIZE = (1080, 1920)


def render_seen(data: np.ndarray, fmt: str, rng: np.random.Generator) -> np.ndarray:
    """Joints ``(N, 3, T, 25, M)`` as ``fmt`` keypoints ``(N, M, T, V, dims + 1)``: NTU-25 as the sensor gave them,
    other formats from a camera turned 20-45 degrees either way with detector noise."""
    if fmt == "ntu25":
        return render_keypoints(data, fmt)
    yaw = np.radians(rng.uniform(20, 45, len(data)) * rng.choice([-1, 1], len(data)))
    return render_keypoints(data, fmt, yaw=yaw, rng=rng, noise=DetectorNoise())


def image_size(fmt: str) -> tuple[int, int] | None:
    """The camera's image size for formats in normalised units (MediaPipe), as ``encode_keypoints`` takes it."""
    return IMAGE_SIZE if get_format(fmt).convention.units == "normalized" else None


def rendered(clips, fmt: str, seed: int, *, drop: float = 0.0, universal: bool = True) -> np.ndarray:
    """``clips`` as model input from ``fmt`` (:func:`render_seen`); ``drop`` of the format's joints missing in
    every frame. Normalised coordinates (MediaPipe) are given their image size, as
    ``encode_keypoints(..., image_size=...)``. ``universal=False``: the input ``(N, 3, T, V, M)`` of a
    single-layout model instead (:func:`layout_input`), all frames kept."""
    rng = np.random.default_rng(seed)
    keypoints = render_seen(clips.data, fmt, rng)
    if drop:
        joints = get_format(fmt).num_joints
        for clip in keypoints:
            clip[:, :, rng.choice(joints, int(round(drop * joints)), replace=False)] = 0.0
    if not universal:
        return layout_input(keypoints, fmt)
    return model_input(keypoints, fmt, num_frames=FRAMES, num_persons=2, image_size=image_size(fmt))


def rendered_windows(sequences, formats, per_sequence: int, seed: int, *, stride: int = FRAMES // 2
                     ) -> torch.utils.data.TensorDataset:
    """Training windows of untrimmed synthetic ``sequences`` (``make_untrimmed``), each sequence rendered in
    ``per_sequence`` of ``formats`` (drawn, :func:`render_seen`): ``(universal input (6, 64, 30, 2), frame labels
    (64,))`` every ``stride`` frames, cut as the detectors cut them (the last window zero-padded, its padding
    labelled -1)."""
    rng = np.random.default_rng(seed)
    clips, labels = [], []
    for sequence in sequences:
        length = sequence.data.shape[1]
        starts = list(range(0, max(1, length - FRAMES + stride), stride))
        frame_labels = np.full(starts[-1] + FRAMES, -1)
        frame_labels[:length] = sequence.labels
        for fmt in rng.choice(formats, per_sequence, replace=False):
            keypoints = render_seen(sequence.data[None], fmt, rng)[0]                 # (M, T, V, dims + 1)
            padded = np.zeros((keypoints.shape[0], len(frame_labels), *keypoints.shape[2:]), np.float32)
            padded[:, :length] = keypoints
            windows = np.stack([padded[:, s:s + FRAMES] for s in starts])
            clips.append(model_input(windows, fmt, num_frames=FRAMES, num_persons=2, image_size=image_size(fmt)))
            labels.append(np.stack([frame_labels[s:s + FRAMES] for s in starts]))
    return torch.utils.data.TensorDataset(torch.from_numpy(np.concatenate(clips)),
                                          torch.from_numpy(np.concatenate(labels)))


def detection_figures(model: USDRL, sequences, seed: int, config: DetectionConfig) -> dict[str, float]:
    """Per :data:`PROBE_FORMATS` format, the detection mAP_a at IoU 0.5 (the official PKU-MMD metric, over 51
    action labels) and the frame accuracy of ``model``'s frame head on ``sequences`` rendered in it
    (:func:`render_seen`, read with ``detect_sequence`` / ``frame_scores`` and ``format``)."""
    rng = np.random.default_rng(seed)
    figures = {}
    for fmt in PROBE_FORMATS:
        truth, found, accuracy = {}, {}, []
        for index, sequence in enumerate(sequences):
            keypoints = render_seen(sequence.data[None], fmt, rng)[0]
            scores = frame_scores(model, keypoints, stride=config.stride, format=fmt, image_size=image_size(fmt))
            accuracy.append(frame_accuracy(scores.argmax(1).numpy(), sequence.labels) / 100)
            found[str(index)] = proposals_from_scores(scores.numpy(), config.threshold, background=0,
                                                      min_length=config.min_length, nms_iou=config.nms_iou)
            truth[str(index)] = segments_of(sequence.labels, bg_class=0)
        figures[f"detection mAP_a@0.5, {fmt}"] = detection_map(truth, found, (0.5,))[0.5]["mAP_a"]
        figures[f"frame accuracy, {fmt}"] = float(np.mean(accuracy))
    return figures


def layout_input(keypoints: np.ndarray, fmt: str) -> np.ndarray:
    """Rendered keypoints ``(N, M, T, V, dims + 1)`` as clips ``(N, 3, T, V, M)`` of the format's own layout, each
    prepared as well as the library knows: NTU-25 metres through ``preprocess_3d(clip, "ntu")`` (centred on the
    spine, turned to face the camera: ``usdrl prepare``'s NTU recipe, as ``usdrl-synthetic-small`` was trained);
    another format normalised as the universal input normalises it (y up, centred on the hips, scaled by the RMS
    distance of the limb joints in x and y; normalised units first multiplied by the image size), its own joints
    with x, y, z (3D) or x, y and the score (2D)."""
    if fmt == "ntu25":
        clips = np.ascontiguousarray(keypoints[..., :3].transpose(0, 4, 2, 3, 1), dtype=np.float32)
        return np.stack([preprocess_3d(clip, "ntu") for clip in clips]).astype(np.float32)
    if fmt not in BASELINE_FORMATS:
        raise ValueError(f"no single-layout baseline for {fmt}; choose one of {BASELINE_FORMATS}")
    convention, names = get_format(fmt).convention, get_format(fmt).joint_names
    xyz, score = np.zeros(keypoints.shape[:-1] + (3,), np.float32), keypoints[..., -1:]
    xyz[..., :convention.dims] = keypoints[..., :convention.dims]
    if image_size(fmt):
        xyz[..., :2] *= np.array(IMAGE_SIZE[::-1], np.float32)
    if convention.y_up is False:
        xyz[..., :2] *= -1
    present = (score[..., 0] > 0) & (xyz != 0).any(-1)                                     # (N, M, T, V)
    limbs = [names.index(f"{side}_{part}") for side in ("left", "right")
             for part in ("shoulder", "elbow", "wrist", "hip", "knee", "ankle")]
    normalised = normalise_body(xyz, present, hips=[names.index("left_hip"), names.index("right_hip")], limbs=limbs)
    if convention.dims == 2:
        normalised = np.concatenate([normalised[..., :2], score * present[..., None]], -1)
    return np.ascontiguousarray(normalised.transpose(0, 4, 2, 3, 1), dtype=np.float32)


def top1_retrieval(queries: torch.Tensor, gallery: torch.Tensor) -> float:
    """Share of queries whose nearest gallery item (cosine) is the same clip (row ``i`` with row ``i``)."""
    similarity = torch.nn.functional.normalize(queries, dim=1) @ torch.nn.functional.normalize(gallery, dim=1).T
    return float((similarity.argmax(1) == torch.arange(len(queries))).float().mean())


def evaluate(model: USDRL, eval_clips, probe_train, probe_test) -> dict:
    """Every figure of one encoder (see the module docstring)."""
    def features(clips, fmt, seed, drop=0.0):
        return model.encode(rendered(clips, fmt, seed, drop=drop), show_progress_bar=False)

    train_y, test_y = torch.from_numpy(probe_train.labels), torch.from_numpy(probe_test.labels)
    results = {}
    from_3d, from_2d = features(eval_clips, "ntu25", 10), features(eval_clips, "coco17", 11)
    results["retrieval 3D -> 2D"] = top1_retrieval(from_3d, from_2d)
    results["retrieval 2D -> 3D"] = top1_retrieval(from_2d, from_3d)
    train = {fmt: features(probe_train, fmt, 20 + k) for k, fmt in enumerate(PROBE_FORMATS)}
    test = {fmt: features(probe_test, fmt, 30 + k) for k, fmt in enumerate(PROBE_FORMATS)}
    for fmt in PROBE_FORMATS:
        results[f"probe {fmt}"] = linear_probe(train[fmt], train_y, test[fmt], test_y)
    results["zero-shot ntu25 -> coco17"] = linear_probe(train["ntu25"], train_y, test["coco17"], test_y)
    for drop in DROPPED[1:]:
        results[f"probe coco17, {drop:.0%} joints dropped"] = linear_probe(
            train["coco17"], train_y, features(probe_test, "coco17", 31, drop), test_y)
    return results


def cost(universal: USDRL, probe_test) -> dict:
    """Encode throughput (clips/s, best of interleaved repetitions) and size of both models."""
    embedded = USDRL.from_pretrained("usdrl-synthetic-small")
    keypoints = render_keypoints(probe_test.data[:64], "coco17")
    inputs = {"universal": torch.from_numpy(model_input(keypoints, "coco17", num_frames=FRAMES, num_persons=2)),
              "embedded": torch.from_numpy(probe_test.data[:64, :, :FRAMES])}
    models = {"universal": universal, "embedded": embedded}
    times = {name: [] for name in models}
    for _ in range(3):
        for name, model in models.items():
            times[name].append(best_time(lambda m=model, x=inputs[name]: m.encode(x, show_progress_bar=False),
                                         repeats=1))
    convert = best_time(lambda: model_input(keypoints, "coco17", num_frames=FRAMES, num_persons=2), repeats=3)
    out = {"keypoints to universal input, clips/s": len(keypoints) / convert}
    with tempfile.TemporaryDirectory() as folder:
        for name, model in models.items():
            model.save_pretrained(f"{folder}/{name}")
            out[f"{name}: encode clips/s"] = 64 / min(times[name])
            out[f"{name}: parameters"] = sum(p.numel() for p in model.encoder.parameters())
            out[f"{name}: model.safetensors MB"] = Path(f"{folder}/{name}/model.safetensors").stat().st_size / 1e6
    return out


def pretrain(model_config: USDRLConfig, data, lengths, out: str, args, trainer=Pretrainer) -> tuple[USDRL, int]:
    """Pretrain for ``args.epochs`` epochs, or about ``args.minutes``; returns ``(encoder, epochs)``."""
    if args.epochs:
        config = PretrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                                lr_milestones=[int(args.epochs * 0.8)], save_every=max(1, args.epochs // 4))
        encoder = trainer(model_config, config, data, lengths, f"{out}/run", show_progress_bar=False).fit()
        return encoder, args.epochs
    encoder, epochs, _ = pretrain_within(args.minutes, model_config, data, lengths, out,
                                         batch_size=args.batch_size, lr=args.lr, trainer=trainer)
    return encoder, epochs


def baseline_probe(fmt: str, unlabelled, probe_train, probe_test, args, out: str) -> tuple[float, int]:
    """Held-out linear-probe accuracy on ``fmt`` of a same-size ``fmt``-layout model pretrained as long as the
    universal one on the unlabelled clips rendered in ``fmt``; returns ``(accuracy, epochs)``."""
    config = USDRLConfig(layout=fmt, in_channels=3, hidden_size=args.hidden, num_heads=4, num_layers=2,
                         num_frames=FRAMES, dataset="synthetic")
    model, epochs = pretrain(config, rendered(unlabelled, fmt, 5, universal=False), unlabelled.lengths,
                             f"{out}/baseline", args)
    seed = PROBE_FORMATS.index(fmt)
    train, test = (model.encode(rendered(clips, fmt, offset + seed, universal=False), show_progress_bar=False)
                   for clips, offset in ((probe_train, 20), (probe_test, 30)))
    return linear_probe(train, torch.from_numpy(probe_train.labels), test, torch.from_numpy(probe_test.labels)), epochs


def add_pretraining_arguments(parser: argparse.ArgumentParser, *, hidden: int) -> None:
    """The options of a universal pretraining run and its measurement (and ``--threads``)."""
    parser.add_argument("--minutes", type=float, default=15.0, help="pretraining time budget")
    parser.add_argument("--hidden", type=int, default=hidden, help="hidden size (the embedded model's: 128)")
    parser.add_argument("--clips", type=int, default=1024, help="unlabelled pretraining clips")
    parser.add_argument("--eval-clips", type=int, default=580, help="clips of the retrieval test")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--out", help="parent folder of the runs (default: a new temporary folder)")
    parser.add_argument("--json", help="write the figures here")
    add_threads_argument(parser)


def universal_config(hidden: int) -> USDRLConfig:
    """The universal model these benchmarks pretrain: hidden ``hidden``, 2 layers, 4 heads, 64 frames, 2 persons."""
    return USDRLConfig(layout="universal", in_channels=IN_CHANNELS, hidden_size=hidden, num_heads=4, num_layers=2,
                       num_frames=FRAMES, dataset="synthetic")


def benchmark_clips(args: argparse.Namespace):
    """Seeded synthetic clips: ``(args.clips unlabelled for pretraining, args.eval_clips for retrieval, 10 per class
    to fit the probes, 10 per class to test them)``."""
    return (make_clips(args.clips, seed=0), make_clips(args.eval_clips, seed=3, num_frames=FRAMES),
            make_clips(10 * NUM_CLASSES, seed=1, num_frames=FRAMES),
            make_clips(10 * NUM_CLASSES, seed=2, num_frames=FRAMES))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_pretraining_arguments(parser, hidden=128)
    parser.add_argument("--epochs", type=int, help="pretrain this many epochs instead of a time budget")
    parser.add_argument("--save", help="save the pretrained encoder here")
    parser.add_argument("--model", help="measure this universal model (a name or folder, e.g. usdrl-universal-small, "
                                        "the shipped default) instead of pretraining one")
    parser.add_argument("--baseline", choices=BASELINE_FORMATS,
                        help="also pretrain a same-size model of this format's layout on this format alone, as "
                             "long, and compare the linear probes on it")
    args = parser.parse_args()
    started = start_run(args)
    out = args.out or tempfile.mkdtemp(prefix="usdrl-universal-synthetic-")
    logger.info("(the machine may be shared with other jobs: timings are noisy)")

    model_config = universal_config(args.hidden)
    unlabelled, eval_clips, probe_train, probe_test = benchmark_clips(args)

    if args.model:
        pretrained, epochs = USDRL.from_pretrained(args.model), 0
        check_universal(pretrained.config)
        model_config = dataclasses.replace(pretrained.config, num_classes=0, num_frame_classes=0, class_names=None)
        logger.info("measuring %s (hidden %d) against a random init of its config", args.model,
                    model_config.hidden_size)
    else:
        pretrained, epochs = pretrain(model_config, unlabelled.data, unlabelled.lengths, out, args,
                                      CrossFormatPretrainer)
    minutes = (time.perf_counter() - started) / 60
    if not args.model:
        logger.info("pretrained hidden %d on %d clips x 4 cross-format views, batch %d, %d epochs: %.1f min",
                    args.hidden, args.clips, args.batch_size, epochs, minutes)
    if args.save:
        pretrained.save_pretrained(args.save)

    torch.manual_seed(0)
    random_init = USDRL(model_config).eval()
    figures = {name: evaluate(model, eval_clips, probe_train, probe_test)
               for name, model in (("random init", random_init), ("pretrained", pretrained))}
    logger.info("\n| figure | random init | pretrained |\n|---|---|---|")
    for row, value in figures["pretrained"].items():
        logger.info("| %s | %.1f%% | %.1f%% |", row, 100 * figures["random init"][row], 100 * value)
    for name in figures:
        figures[name]["zero-shot / in-format coco17"] = (figures[name]["zero-shot ntu25 -> coco17"]
                                                         / figures[name]["probe coco17"])
        logger.info("%s: zero-shot transfer keeps %.0f%% of the in-format COCO-17 accuracy", name,
                    100 * figures[name]["zero-shot / in-format coco17"])
    logger.info("retrieval over %d clips (chance %.2f%%), probes over %d held-out clips (chance %.1f%%)",
                args.eval_clips, 100 / args.eval_clips, len(probe_test.labels), 100 / NUM_CLASSES)
    if args.baseline:
        started_baseline = time.perf_counter()
        accuracy, baseline_epochs = baseline_probe(args.baseline, unlabelled, probe_train, probe_test, args, out)
        figures["baseline"] = {"format": args.baseline, "probe": accuracy, "epochs": baseline_epochs,
                               "minutes": (time.perf_counter() - started_baseline) / 60}
        logger.info("linear probe on %s: universal %.1f%%, same-size %s-only model %.1f%% (%d epochs, %.1f min "
                    "with its features)", args.baseline, 100 * figures["pretrained"][f"probe {args.baseline}"],
                    args.baseline, 100 * accuracy, baseline_epochs, figures["baseline"]["minutes"])
    figures["cost"] = cost(pretrained, probe_test)
    for name, value in figures["cost"].items():
        logger.info("%s: %.3g", name, value)
    figures["run"] = {"epochs": epochs, "minutes": minutes, "hidden": args.hidden, "clips": args.clips,
                      "machine": machine_info().summary()}
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
