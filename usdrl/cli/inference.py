"""Inference commands: ``demo`` (the library's main job on synthetic data), ``encode`` and ``detect-keypoints``."""

import argparse
import sys
from pathlib import Path

from ..hub import DEFAULT_MODEL, UNIVERSAL_MODEL


def _demo(args: argparse.Namespace) -> None:
    from ..demo import FPS, run_demo
    from ..viz import VIZ_HINT

    def span(start: int, end: int) -> str:  # frames and seconds, as the timeline's two axes
        return f"{start:>4}-{end:<4}({start / FPS:4.1f}-{end / FPS:4.1f} s)"

    result = run_demo(args.out, model=args.model, num_clips=args.clips, seed=args.seed, pictures=not args.no_pictures,
                      universal_model=None if args.universal_model == "none" else args.universal_model)
    names = result.frame_class_names
    width = max(len(name) for name in names) + 2
    lines = [f"Recognition of {len(result.clips)} synthetic clips never seen in training:",
             f"  {'clip':>4}  {'true class':<{width}}{'predicted':<{width}}{'confidence':>10}"]
    lines += [f"  {i:>4}  {c.true_class:<{width}}{c.predicted_class:<{width}}{100 * c.confidence:>9.1f}%"
              f"{'' if c.correct else '  (wrong)'}" for i, c in enumerate(result.clips, 1)]
    read_as = ("the COCO-17 2D keypoints of a video camera" if result.sequence_format == "coco17"
               else f"{result.sequence_format} keypoints" if result.sequence_format != "ntu25" else "3D NTU-25 joints")
    lines += [f"  {sum(c.correct for c in result.clips)} of {len(result.clips)} correct", "",
              f"Detection in one untrimmed sequence of {result.num_frames} frames "
              f"({len(result.ground_truth)} actions), read as {read_as}:",
              f"  {'true action':<{width}}{'frames (seconds)':<24}{'best detection (same class)':<{width + 24}}"
              f"{'IoU':>5}"]
    for (label, start, end), (iou, best) in zip(result.ground_truth, result.matches, strict=True):
        found = f"{names[best[0]]:<{width}}{span(*best[1:3]):<24}" if best else f"{'-':<{width + 24}}"
        lines.append(f"  {names[label]:<{width}}{span(start, end):<24}{found}{iou:>5.2f}")
    others = [d for d in result.detections if not any(d is best for _, best in result.matches)]
    lines += [f"  {'(other detection)':<{width}}{'':<24}{names[d[0]]:<{width}}{span(*d[1:3])}" for d in others]
    false_alarms = sum(not any(d[0] == t[0] for t in result.ground_truth) for d in result.detections)
    lines += [f"  {result.found(0.5)} of {len(result.ground_truth)} actions found at IoU >= 0.5; "
              f"{len(result.detections)} detections, {false_alarms} of a class not in the sequence", ""]
    if result.formats:
        lines += [f"One model for every format ({result.universal_model or 'universal model'}): the same clips as "
                  "NTU-25 3D joints and as COCO-17 2D keypoints of a video camera:",
                  f"  {'clip':>4}  {'true class':<{width}}{'from 3D':<{width}}{'from 2D':<{width}}"
                  f"{'cosine 3D-2D':>13}{'centred':>9}{'vs others':>10}"]
        lines += [f"  {i:>4}  {c.true_class:<{width}}{c.predicted_from_3d:<{width}}{c.predicted_from_2d:<{width}}"
                  f"{c.cosine:>13.3f}{c.centred_cosine:>9.3f}{c.centred_cosine_to_others:>10.3f}"
                  for i, c in enumerate(result.formats, 1)]
        lines += [f"  {sum(c.predicted_from_3d == c.true_class for c in result.formats)} correct from 3D, "
                  f"{sum(c.predicted_from_2d == c.true_class for c in result.formats)} from 2D, of "
                  f"{len(result.formats)}. Centred: the mean embedding of these clips subtracted first; vs others: "
                  "the clip's 3D embedding with the other clips' 2D ones (centred, mean)", ""]
    lines += ["Files:"]
    lines += [f"  {path}" for path in result.files]
    if not any(path.suffix == ".gif" for path in result.files) and not args.no_pictures:
        lines.append(f"  (no pictures: matplotlib is not installed; {VIZ_HINT} to get clip.gif and timeline.png)")
    sys.stdout.write("\n".join(lines) + "\n")


def _encode(args: argparse.Namespace) -> None:
    import numpy as np
    import torch

    from .._io import atomic_write
    from ..data.prepared import SkeletonDataset
    from ..errors import InputError
    from ..export import onnxruntime_model
    from ..model import USDRL

    if args.dense and args.normalize:
        raise InputError("--normalize applies to clip embeddings, not to --dense per-frame features")
    if args.batch_size < 1:
        raise InputError(f"--batch-size must be >= 1, got {args.batch_size}")
    options = dict(batch_size=args.batch_size, show_progress_bar=False)
    if args.backend == "onnxruntime":
        if args.dense or args.device not in (None, "cpu") or args.dtype not in (None, "auto", "float32", "int8"):
            raise InputError("--backend onnxruntime computes clip embeddings on the CPU in float32 or int8 "
                             "(--dtype auto, float32 or int8; no --dense, no --device)")
        model = onnxruntime_model(args.model, int8=args.dtype == "int8")
        embed = model.encode
    else:
        model = USDRL.from_pretrained(args.model)
        embed = model.dense_features if args.dense else model.encode
        options.update(device=args.device, dtype=args.dtype)
    if args.normalize:
        options["normalize"] = True
    source = Path(args.input)
    if source.is_dir():
        dataset = SkeletonDataset.for_model(source, args.split, model, head=False)
        loader = torch.utils.data.DataLoader(dataset, batch_size=args.batch_size)
        features = torch.cat([embed(clips, **options) for clips, _ in loader]).numpy()
        what = f"{len(dataset)} clips of {dataset.path.parent} ({dataset.split})"
    elif source.suffix == ".npy":
        features = embed(np.load(source, mmap_mode="r", allow_pickle=False), convert_to_numpy=True, **options)
        what = f"{len(features)} clips of {source}"
    else:
        raise InputError(f"{source}: expected a .npy array (N, C, T, V, M) or a prepared dataset folder")
    def save(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            np.save(f, features.astype(np.float32, copy=False))

    atomic_write(args.out, save)
    sys.stdout.write(f"wrote {args.out}: {'per-frame ' if args.dense else ''}features "
                     f"{tuple(features.shape)} of {what}\n")


def _detect_keypoints(args: argparse.Namespace) -> None:
    import json

    from .._io import atomic_write_text
    from ..data.estimators import read_keypoint_sequence
    from ..model import USDRL
    from ..tasks.detection import DetectionConfig, detect_sequence

    sequence = read_keypoint_sequence(args.keypoints, args.format)
    model = USDRL.from_pretrained(args.model)
    config = DetectionConfig(stride=args.stride, threshold=args.threshold, min_length=args.min_length,
                             nms_iou=args.nms)
    actions = detect_sequence(model, sequence.keypoints, config=config, format=sequence.format,
                              image_size=sequence.image_size)
    names = ["background", *(model.config.class_names or [])]
    name = [names[label] if label < len(names) else str(label) for label, *_ in actions]
    if args.out:
        atomic_write_text(args.out, "".join(f"{label},{start},{end},{score:.6f}\n"
                                            for label, start, end, score in actions))
    if args.json:
        rows = [{"label": label, "class": n, "start": start, "end": end, "score": score}
                for (label, start, end, score), n in zip(actions, name, strict=True)]
        sys.stdout.write(json.dumps({"format": sequence.format, "frames": int(sequence.keypoints.shape[1]),
                                     "persons": int(sequence.keypoints.shape[0]), "actions": rows}) + "\n")
        return
    lines = [f"{len(actions)} actions in {sequence.keypoints.shape[1]} frames of {sequence.format} keypoints "
             f"({sequence.keypoints.shape[0]} person(s)) of {args.keypoints}:"]
    lines += [f"  {n:<20} frames {start:>5}-{end:<5} ({start / args.fps:.1f}-{end / args.fps:.1f} s)  "
              f"score {score:.2f}" for (label, start, end, score), n in zip(actions, name, strict=True)]
    if args.out:
        lines.append(f"wrote {args.out}")
    sys.stdout.write("\n".join(lines) + "\n")


def register(commands) -> None:
    demo = commands.add_parser(
        "demo", help="recognise and detect actions with the embedded model, offline, in seconds",
        description=f"Draw fresh clips and one untrimmed sequence from the synthetic action generator, recognise "
                    f"the clips (as NTU-25 3D joints) and detect the actions of the sequence (as the COCO-17 2D "
                    f"keypoints of a video camera) with {DEFAULT_MODEL} (demo weights shipped with the package), "
                    f"read the same clips as NTU-25 3D and COCO-17 2D with {UNIVERSAL_MODEL}, and write "
                    "detections.txt and, with matplotlib (usdrl[viz]), clip.gif and timeline.png to OUT.")
    demo.add_argument("--out", default="usdrl-demo", help="folder for the files (default: ./usdrl-demo)")
    demo.add_argument("--model", default=DEFAULT_MODEL,
                      help=f"a model with heads for the synthetic classes, universal or NTU-25 (default: "
                           f"{DEFAULT_MODEL}; usdrl-synthetic-small reads everything as 3D NTU-25 joints)")
    demo.add_argument("--universal-model", default=UNIVERSAL_MODEL,
                      help="a universal model with a clip head for the synthetic classes, to read the clips as "
                           f"NTU-25 3D and as COCO-17 2D (default: {UNIVERSAL_MODEL}; 'none' skips it)")
    demo.add_argument("--clips", type=int, default=8, help="clips to recognise (default: 8)")
    demo.add_argument("--seed", type=int, default=2026, help="draws the clips and the sequence (default: 2026)")
    demo.add_argument("--no-pictures", action="store_true", help="skip the GIF and the timeline")
    demo.set_defaults(run=_demo)

    encode = commands.add_parser(
        "encode", help="embed clips (a .npy array or a prepared split) into a .npy file",
        description="Compute one embedding (N, 2H) per clip, or with --dense per-frame features (N, T, D), "
                    "with MODEL. INPUT is a .npy array (N, C, T, V, M) of model-ready clips, or a prepared dataset "
                    "folder with --split (rows in the order of the split's names.json), or one split folder.")
    encode.add_argument("model", metavar="MODEL", help="the encoder (folder, registered name or Hub repo)")
    encode.add_argument("input", metavar="INPUT", help=".npy array or prepared dataset / split folder")
    encode.add_argument("out", metavar="OUT.npy", help="file to write (float32)")
    encode.add_argument("--split", help="split of a prepared dataset folder, e.g. test")
    encode.add_argument("--dense", action="store_true", help="per-frame features instead of one vector per clip")
    encode.add_argument("--normalize", action="store_true", help="L2-normalise each embedding (not with --dense)")
    encode.add_argument("--batch-size", type=int, default=64, help="clips per forward pass (default: 64)")
    encode.add_argument("--device", help="e.g. cuda or cpu (default: the model's device)")
    encode.add_argument("--dtype", choices=["auto", "float32", "tf32", "bfloat16", "float16", "int8"],
                        help="compute precision: auto (recommended) takes the fastest native one here (bf16 on a "
                             "CPU with AVX512-BF16/AMX or a recent GPU, else float32); int8 quantizes the linear "
                             "layers (CPU) (default: float32)")
    encode.add_argument("--backend", choices=["torch", "onnxruntime"], default="torch",
                        help="run with PyTorch, or export to ONNX and run with ONNX Runtime on the CPU (MODEL may "
                             "then be an exported .onnx file) (default: torch)")
    encode.set_defaults(run=_encode)

    detect = commands.add_parser(
        "detect-keypoints", help="find the actions in one recording of pose keypoints of any format",
        description="Read one recording's keypoints (a .npy/.npz/.json keypoint file (M, T, V, C), a COCO results "
                    "JSON or an OpenPose folder), run the frame-wise head of a universal MODEL on sliding windows "
                    "(each turned into the universal input on its own) and print the actions: runs of frames "
                    "whose class probability is above --threshold.")
    detect.add_argument("keypoints", metavar="KEYPOINTS", help="keypoint file, COCO results JSON or OpenPose folder")
    detect.add_argument("--model", default=DEFAULT_MODEL,
                        help=f"a universal model with a frame-wise head (default: {DEFAULT_MODEL}, demo weights "
                             "for the 29 synthetic classes)")
    detect.add_argument("--format", help="keypoint format (default: the file's, else guessed from the joint count)")
    detect.add_argument("--stride", type=int, default=16, help="frames between window starts (default: 16)")
    detect.add_argument("--threshold", type=float, default=0.5, help="class probability of a frame in an action "
                                                                     "(default: 0.5)")
    detect.add_argument("--min-length", type=int, default=8, help="shortest action in frames (default: 8)")
    detect.add_argument("--nms", type=float, help="temporal NMS IoU (default: none)")
    detect.add_argument("--fps", type=float, default=30.0, help="frames per second, for the times (default: 30)")
    detect.add_argument("--out", help="also write the actions as 'label,start,end,score' lines (PKU-MMD format)")
    detect.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    detect.set_defaults(run=_detect_keypoints)
