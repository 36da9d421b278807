"""The ``usdrl`` command line: a thin layer over the Python API.

Exit codes: 0 success, 1 a usdrl error (bad input, missing weights, bad checkpoint),
2 bad command-line usage (argparse).
"""

import argparse
import json
import logging
import platform
import sys
import textwrap

from ._version import __version__
from .errors import USDRLError

logger = logging.getLogger("usdrl")


def _info(args: argparse.Namespace) -> None:
    import torch

    from .hub import get_pretrained, list_pretrained

    devices = ["cpu"] + [f"cuda:{i} ({torch.cuda.get_device_name(i)})" for i in range(torch.cuda.device_count())]
    info = {
        "usdrl": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "devices": devices,
        "cpu_threads": torch.get_num_threads(),
        "pretrained": {name: get_pretrained(name).description for name in list_pretrained()},
    }
    if args.json:
        sys.stdout.write(json.dumps(info, indent=2) + "\n")
        return
    lines = [f"usdrl {info['usdrl']} (python {info['python']}, torch {info['torch']})",
             f"devices: {', '.join(devices)}; cpu threads: {info['cpu_threads']}",
             "pretrained weights:" if info["pretrained"] else "pretrained weights: none registered"]
    lines += [f"  {name}: {text}" for name, text in info["pretrained"].items()]
    sys.stdout.write("\n".join(lines) + "\n")


def _convert(args: argparse.Namespace) -> None:
    from .convert import load_reference_checkpoint

    metadata = {k: v for k, v in (("dataset", args.dataset), ("protocol", args.protocol)) if v}
    checkpoint = load_reference_checkpoint(args.checkpoint, layout=args.layout, modality=args.modality,
                                           num_persons=args.persons, num_heads=args.heads, head=args.head,
                                           **metadata)
    out = checkpoint.save(args.out_dir)
    config = checkpoint.model.config
    sys.stdout.write(f"wrote {out} ({config.encoder}, layout {config.layout}, {config.num_frames} frames, "
                     f"hidden {config.hidden_size}, {config.modality}"
                     f"{', projectors kept' if checkpoint.projectors else ''})\n")


def _download(args: argparse.Namespace) -> None:
    from .hub import resolve_model_files

    config_file, _ = resolve_model_files(args.name, revision=args.revision, cache_dir=args.cache_dir)
    sys.stdout.write(f"{config_file.parent}\n")


def _prepare(args: argparse.Namespace) -> None:
    from .data.prepared import prepare_dataset, read_manifest

    out = prepare_dataset(args.source, args.raw, args.out, benchmark=args.benchmark, workers=args.workers,
                          overwrite=args.overwrite, padding=args.padding, legacy_2d_norm=args.legacy_2d_norm)
    manifest = read_manifest(out)
    counts = ", ".join(f"{name} {split['count']}" for name, split in manifest["splits"].items())
    sys.stdout.write(f"wrote {out} ({manifest['source']} {manifest['benchmark']}, layout {manifest['layout']}): "
                     f"{counts}\n")


def _add_prepare(commands) -> None:
    from .data.prepared import BENCHMARKS, RAW_LAYOUTS

    def paragraph(text: str, indent: str = "  ", hang: str = "    ") -> str:
        return textwrap.fill(text, width=100, initial_indent=indent, subsequent_indent=hang, break_on_hyphens=False)

    layouts = "\n".join(paragraph(f"{source}: RAW is {text}.") for source, text in RAW_LAYOUTS.items())
    benchmarks = paragraph("; ".join(f"{source}: {', '.join(names)}" for source, names in BENCHMARKS.items()))
    prepare = commands.add_parser(
        "prepare", help="convert a raw dataset into memory-mappable arrays for training",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=paragraph(
            "Read a raw skeleton dataset, preprocess it (NTU and PKU-MMD clips: top-2 bodies, empty frames "
            "filled, ntu view alignment; PKU-MMD sequences: ntu alignment only; UAV-Human: as NTU with uav "
            "alignment, at most 300 frames; ntu2d: 2D normalisation and padding to 3 channels) and write "
            "OUT/manifest.json and, per split, data.npy (N, C, T, V, M) float32, num_frames.npy, labels.npy and "
            "names.json (and frame_labels.npy for untrimmed PKU-MMD sequences). pkummd1/pkummd2 write train/test "
            "(clips cut by the label files) and train_untrimmed/test_untrimmed (whole sequences with per-frame "
            "labels). OUT appears only when complete. Use -v for a progress bar.", indent="", hang=""),
        epilog=f"raw folder layouts:\n{layouts}\n\nbenchmarks per source:\n{benchmarks}")
    prepare.add_argument("source", metavar="SOURCE", choices=list(BENCHMARKS),
                         help=f"dataset of the raw files: {', '.join(BENCHMARKS)}")
    prepare.add_argument("raw", metavar="RAW", help="the raw dataset: a folder, or the pickle for ntu2d (see below)")
    prepare.add_argument("out", metavar="OUT", help="folder to create (must not exist unless --overwrite)")
    protocols = sorted({name for names in BENCHMARKS.values() for name in names})
    prepare.add_argument("--benchmark", required=True, choices=protocols,
                         help="evaluation protocol, i.e. the official train/test split (valid ones per source below)")
    prepare.add_argument("--workers", type=int, help="processes parsing files (default: CPU count, at most 8)")
    prepare.add_argument("--overwrite", action="store_true", help="replace an existing prepared dataset at OUT")
    prepare.add_argument("--padding", choices=["confidence", "zero"], default="confidence",
                         help="ntu2d: third channel of the 2D keypoints (default: confidence)")
    prepare.add_argument("--legacy-2d-norm", action="store_true",
                         help="ntu2d: reproduce the reference NTU-2D scaling (joints 0 and 1 only) instead of "
                              "x / width, y / height")
    prepare.set_defaults(run=_prepare)


def _pretrain(args: argparse.Namespace) -> None:
    from pathlib import Path

    from .config import USDRLConfig
    from .data.prepared import MANIFEST, SkeletonDataset
    from .errors import ConfigError
    from .train.pretrain import PretrainConfig, Pretrainer

    data = Path(args.data)
    dataset = SkeletonDataset(data, "train" if (data / MANIFEST).is_file() else None)
    try:
        settings = json.loads(Path(args.config).read_text(encoding="utf-8")) if args.config else {}
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{args.config}: not valid JSON ({exc})") from None
    unknown = sorted(set(settings) - {"model", "pretrain"}) if isinstance(settings, dict) else ["(not an object)"]
    if unknown:
        raise ConfigError(f"{args.config}: unknown sections {unknown}; expected 'model' and/or 'pretrain'")
    manifest = dataset.manifest
    model = {"layout": manifest["layout"], "in_channels": manifest["num_channels"],
             "num_persons": manifest["num_persons"], **settings.get("model", {})}
    if args.modality:
        model["modality"] = args.modality
    model_config = USDRLConfig.from_preset(args.preset, **model)
    options = {"epochs": args.epochs, "batch_size": args.batch_size, "save_every": args.save_every,
               "seed": args.seed, "lr": args.lr, "precision": args.precision}
    pretrain = {**settings.get("pretrain", {}), **{k: v for k, v in options.items() if v is not None}}
    if args.grad_checkpointing:
        pretrain["grad_checkpointing"] = True
    config = PretrainConfig.from_dict(pretrain)
    metadata = {"dataset": manifest["source"], "protocol": manifest["benchmark"],
                "description": "self-supervised MG-FD/MPCT pretraining with usdrl"}
    trainer = Pretrainer(model_config, config, dataset.padded_clips, dataset.lengths, args.out, resume=args.resume,
                         metadata=metadata)
    trainer.fit()
    if trainer.rank == 0:
        sys.stdout.write(f"wrote {Path(args.out) / 'model'} after {trainer.epoch} epochs ({trainer.step} steps)\n")


def _add_pretrain(commands) -> None:
    pretrain = commands.add_parser(
        "pretrain", help="self-supervised MG-FD/MPCT pretraining on a prepared dataset",
        description="Pretrain a USDRL encoder on the clips of a prepared dataset (labels unused). The run folder "
                    "gets metrics.jsonl (one JSON object per step), checkpoint_NNNN.pt files and model/, the final "
                    "save_pretrained folder. Several processes: torchrun --nproc_per_node=N -m usdrl.cli pretrain "
                    "... (DistributedDataParallel; --batch-size is the total over all processes).")
    pretrain.add_argument("--data", required=True, metavar="PREPARED",
                          help="a prepared dataset folder (its train split is used) or one split folder")
    pretrain.add_argument("--out", required=True, metavar="RUN_DIR", help="run folder (checkpoints, metrics, model/)")
    pretrain.add_argument("--config", help="JSON file with optional 'model' (USDRLConfig fields) and 'pretrain' "
                                           "(PretrainConfig fields: augment, loss, lr_milestones, ...) sections; "
                                           "the options below override it")
    pretrain.add_argument("--preset", choices=["base", "small", "tiny"], default="base",
                          help="encoder size (default: base, the reference architecture)")
    pretrain.add_argument("--modality", choices=["joint", "motion", "bone", "multi"],
                          help="input modality; multi trains one multi-modal model (default: joint)")
    pretrain.add_argument("--epochs", type=int, help="epochs (default: 451, the reference schedule)")
    pretrain.add_argument("--batch-size", type=int, help="clips per step over all processes (default: 256)")
    pretrain.add_argument("--lr", type=float, help="Adam learning rate (default: 5e-4)")
    pretrain.add_argument("--precision", choices=["fp32", "bf16", "fp16"], help="default: fp32")
    pretrain.add_argument("--grad-checkpointing", action="store_true", help="recompute activations (less memory)")
    pretrain.add_argument("--save-every", type=int, help="checkpoint every N epochs (default: 50)")
    pretrain.add_argument("--seed", type=int, help="seed of the initial weights, sample order and augmentations")
    pretrain.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in RUN_DIR")
    pretrain.set_defaults(run=_pretrain)


def _eval_detection(args: argparse.Namespace) -> None:
    from .tasks.detection_eval import eval_detection_folders

    thresholds = args.iou or [0.1, 0.2, 0.3, 0.4, 0.5]
    results = eval_detection_folders(args.gt_dir, args.pred_dir, thresholds,
                                     label_slots=None if args.present_classes else 52)
    if args.json:
        sys.stdout.write(json.dumps({str(iou): values for iou, values in results.items()}) + "\n")
        return
    lines = [f"IoU {iou:g}: mAP_a {100 * v['mAP_a']:.2f}  mAP_v {100 * v['mAP_v']:.2f}" for iou, v in results.items()]
    sys.stdout.write("\n".join(lines) + "\n")


def _add_eval_detection(commands) -> None:
    evaluate = commands.add_parser(
        "eval-detection", help="mAP of PKU-MMD-format detection files (the official protocol)",
        description="Evaluate temporal action detection as the official PKU-MMD script does: one file per video "
                    "in each folder, same names, lines 'label,start,end,score' (ground truth: "
                    "'label,start,end,confidence'). The videos evaluated are the files of PRED_DIR. mAP_a is the "
                    "mean AP over the 52 label slots (background and absent classes count 0, as in the official "
                    "script), mAP_v the mean AP over videos; fractions in [0, 1] with --json.")
    evaluate.add_argument("gt_dir", metavar="GT_DIR", help="folder of ground-truth label files")
    evaluate.add_argument("pred_dir", metavar="PRED_DIR", help="folder of proposal files")
    evaluate.add_argument("--iou", type=float, action="append",
                          help="IoU threshold (repeat for several; default 0.1 0.2 0.3 0.4 0.5)")
    evaluate.add_argument("--present-classes", action="store_true",
                          help="average mAP_a over the classes present in the ground truth instead of 52 slots")
    evaluate.add_argument("--json", action="store_true",
                          help="print one JSON object {iou: {mAP_a, mAP_v}} with fractions in [0, 1]")
    evaluate.set_defaults(run=_eval_detection)


MODEL_HELP = "the pretrained encoder (folder, registered name or Hub repo)"


def _task_parser(commands, name: str, *, help: str, description: str, model_help: str = MODEL_HELP,
                 data_help: str = "a prepared dataset folder") -> argparse.ArgumentParser:
    """A task subcommand taking ``MODEL`` and ``--data PREPARED``."""
    parser = commands.add_parser(name, help=help, description=description)
    parser.add_argument("model", metavar="MODEL", help=model_help)
    parser.add_argument("--data", required=True, metavar="PREPARED", help=data_help)
    return parser


def _report_recognition(result, as_json: bool, **extra) -> None:
    """Print a :class:`~usdrl.tasks.recognition.ProbeResult`: one JSON object, or one line."""
    from dataclasses import asdict

    if as_json:
        summary = {k: v for k, v in asdict(result).items() if k != "confusion"}
        sys.stdout.write(json.dumps({**summary, **extra}) + "\n")
        return
    details = "".join(f"; {key.replace('_', ' ')} {value}" for key, value in extra.items())
    sys.stdout.write(f"top-1 best {100 * result.best_top1:.2f}% (epoch {result.best_epoch}), last "
                     f"{100 * result.last_top1:.2f}%; top-5 last {100 * result.last_top5:.2f}%{details}\n")


def _linear_probe(args: argparse.Namespace) -> None:
    from .data.prepared import SkeletonDataset
    from .model import USDRL
    from .tasks.recognition import ProbeConfig, linear_probe

    model = USDRL.from_pretrained(args.model)
    train = SkeletonDataset(args.data, args.train_split, num_frames=model.config.num_frames)
    test = SkeletonDataset(args.data, args.test_split, num_frames=model.config.num_frames)
    train.check_config(model.config)
    options = {"lr": args.lr, "epochs": args.epochs, "batch_size": args.batch_size}
    config = ProbeConfig(**{k: v for k, v in options.items() if v is not None})
    result = linear_probe(model, train, test, num_classes=train.num_classes, config=config)
    if args.out:
        manifest = train.manifest
        model.config = model.config.replace(protocol=f"linear probe on {manifest['source']} {manifest['benchmark']}")
        model.save_pretrained(args.out)
    _report_recognition(result, args.json)


def _add_linear_probe(commands) -> None:
    probe = _task_parser(
        commands, "linear-probe", help="linear evaluation of a frozen encoder on a prepared dataset",
        description="Train a linear classifier on the frozen global features of MODEL (a folder, registered name "
                    "or Hub repo) with the reference protocol: SGD momentum 0.9, batch 512, 160 epochs, lr x0.1 "
                    "at epochs 120 and 140, the test split evaluated every 5 epochs. Reports the best evaluation "
                    "(the reference's figure) and the last.")
    probe.add_argument("--train-split", default="train", help="split to train the head on (default: train)")
    probe.add_argument("--test-split", default="test", help="split to evaluate on (default: test)")
    probe.add_argument("--lr", type=float, help="learning rate (default 0.006; the reference uses 0.03 for NTU-60 "
                                               "x-view and 0.01 for PKU-MMD II)")
    probe.add_argument("--epochs", type=int, help="epochs (default: 160)")
    probe.add_argument("--batch-size", type=int, help="batch size (default: 512)")
    probe.add_argument("--out", help="write the encoder with its trained head here (save_pretrained folder)")
    probe.add_argument("--json", action="store_true", help="print one JSON object with the figures")
    probe.set_defaults(run=_linear_probe)


def _knn(args: argparse.Namespace) -> None:
    from .data.prepared import SkeletonDataset
    from .model import USDRL
    from .tasks.recognition import encode_dataset
    from .tasks.retrieval import retrieval_accuracy

    model = USDRL.from_pretrained(args.model)
    datasets = [SkeletonDataset(args.data, split, num_frames=model.config.num_frames)
                for split in (args.gallery_split, args.query_split)]
    datasets[0].check_config(model.config)
    (gallery, gallery_labels), (query, query_labels) = (encode_dataset(model, d) for d in datasets)
    result = retrieval_accuracy(query, gallery, query_labels, gallery_labels, k=args.k)
    if args.json:
        sys.stdout.write(json.dumps({"accuracy": result["accuracy"], "k": args.k, "queries": len(query),
                                     "gallery": len(gallery)}) + "\n")
        return
    sys.stdout.write(f"kNN-{args.k} accuracy {100 * result['accuracy']:.2f}% ({len(query)} queries, "
                     f"{len(gallery)} gallery clips)\n")


def _add_knn(commands) -> None:
    knn = _task_parser(
        commands, "knn", help="kNN retrieval accuracy of a frozen encoder on a prepared dataset",
        description="The retrieval protocol of the paper: global features L2-normalised, the train split as the "
                    "gallery and the test split as the queries, cosine similarity, k nearest neighbours vote "
                    "(default k = 1).")
    knn.add_argument("--gallery-split", default="train", help="gallery split (default: train)")
    knn.add_argument("--query-split", default="test", help="query split (default: test)")
    knn.add_argument("-k", type=int, default=1, help="neighbours that vote (default: 1)")
    knn.add_argument("--json", action="store_true", help="print one JSON object")
    knn.set_defaults(run=_knn)


def _early_prediction(args: argparse.Namespace) -> None:
    from .model import USDRL
    from .tasks.early import RATIOS, early_prediction

    model = USDRL.from_pretrained(args.model)
    result = early_prediction(model, args.data, args.split, ratios=args.ratio or RATIOS)
    if args.json:
        sys.stdout.write(json.dumps({"accuracy": {str(k): v for k, v in result.accuracy.items()},
                                     "area": result.area}) + "\n")
        return
    lines = [f"observed {100 * ratio:3.0f}%: top-1 {100 * value:.2f}%" for ratio, value in result.accuracy.items()]
    sys.stdout.write("\n".join(lines + [f"area under the curve: {result.area:.4f}"]) + "\n")


def _add_early_prediction(commands) -> None:
    early = _task_parser(
        commands, "early-prediction", model_help="a model with a classifier head",
        help="accuracy from the first 10%%...100%% of each clip",
        description="Evaluate a model with a clip-level head (e.g. the --out of linear-probe) on the observed "
                    "prefixes of a prepared split: the first max(3, floor(n * r)) frames of each clip, resampled. "
                    "Prints the accuracy per observation ratio and the area under that curve.")
    early.add_argument("--split", default="test", help="split to evaluate (default: test)")
    early.add_argument("--ratio", type=float, action="append",
                       help="observation ratio in (0, 1] (repeat for several; default 0.1, 0.2, ..., 1.0)")
    early.add_argument("--json", action="store_true", help="print one JSON object")
    early.set_defaults(run=_early_prediction)


def _finetune(args: argparse.Namespace) -> None:
    import torch.utils.data

    from .data.prepared import SkeletonDataset
    from .model import USDRL
    from .tasks.finetune import FinetuneConfig, finetune, labelled_subset

    model = USDRL.from_pretrained(args.model)
    frames = model.config.num_frames
    train = SkeletonDataset(args.data, args.train_split, sampling="random_crop", num_frames=frames, seed=args.seed)
    test = SkeletonDataset(args.data, args.test_split, num_frames=frames)
    train.check_config(model.config)
    num_classes = train.num_classes
    if args.fraction < 1:
        indices = labelled_subset(train.labels, args.fraction, balanced=not args.unbalanced, seed=args.seed)
        train = torch.utils.data.Subset(train, indices.tolist())
    options = {"epochs": args.epochs, "lr": args.lr, "batch_size": args.batch_size, "layer_decay": args.layer_decay}
    config = FinetuneConfig(seed=args.seed, **{k: v for k, v in options.items() if v is not None})
    result = finetune(model, train, test, num_classes=num_classes, config=config)
    if args.out:
        model.save_pretrained(args.out)
    _report_recognition(result, args.json, train_clips=len(train))


def _add_finetune(commands) -> None:
    tune = _task_parser(
        commands, "finetune",
        help="finetune a pretrained encoder with a new head (optionally on 1%%/10%% of the labels)",
        description="Train every parameter of MODEL with a fresh classifier on the train split of a prepared "
                    "dataset (random temporal crops; AdamW, warm-up then cosine decay), evaluating on the test "
                    "split. --fraction 0.01 or 0.1 gives the semi-supervised protocol (class-balanced by default; "
                    "--unbalanced reproduces the reference's plain random subset).")
    tune.add_argument("--train-split", default="train", help="split to train on (default: train)")
    tune.add_argument("--test-split", default="test", help="split to evaluate on (default: test)")
    tune.add_argument("--fraction", type=float, default=1.0, help="fraction of the labelled training clips")
    tune.add_argument("--unbalanced", action="store_true", help="plain random subset instead of per class")
    tune.add_argument("--epochs", type=int, help="epochs (default: 100)")
    tune.add_argument("--lr", type=float, help="peak learning rate of the head (default: 5e-4)")
    tune.add_argument("--batch-size", type=int, help="batch size (default: 64)")
    tune.add_argument("--layer-decay", type=float, help="layer-wise learning-rate decay in (0, 1] (default: 1)")
    tune.add_argument("--seed", type=int, default=0, help="seed of the subset, the crops and the head")
    tune.add_argument("--out", help="write the finetuned model here (save_pretrained folder)")
    tune.add_argument("--json", action="store_true", help="print one JSON object with the figures")
    tune.set_defaults(run=_finetune)


def _detect(args: argparse.Namespace) -> None:
    from .data.prepared import SkeletonDataset
    from .model import USDRL
    from .tasks.detection import DetectionConfig, detect_dataset, train_detector
    from .tasks.finetune import FinetuneConfig

    model = USDRL.from_pretrained(args.model)
    if args.train_epochs:
        windows = SkeletonDataset(args.data, args.train_split, sampling="windows",
                                  num_frames=model.config.num_frames, window_stride=args.stride)
        windows.check_config(model.config)
        train_detector(model, windows, num_classes=windows.num_classes,
                       config=FinetuneConfig(epochs=args.train_epochs))
        if args.save_model:
            model.save_pretrained(args.save_model)
    config = DetectionConfig(stride=args.stride, threshold=args.threshold, min_length=args.min_length,
                             nms_iou=args.nms)
    proposals = detect_dataset(model, args.data, args.split, config=config, out_dir=args.out)
    count = sum(len(rows) for rows in proposals.values())
    sys.stdout.write(f"wrote {count} proposals for {len(proposals)} videos to {args.out}\n")


def _add_detect(commands) -> None:
    detect = _task_parser(
        commands, "detect", data_help="a prepared PKU-MMD dataset folder",
        help="temporal action detection on a prepared untrimmed split (PKU-MMD format output)",
        description="Detect actions in the untrimmed sequences of a prepared dataset with a model's frame-wise "
                    "head (trained first with --train-epochs on the train split's windows): sliding windows, "
                    "overlapping scores averaged, proposals from runs of frames above --threshold; one "
                    "'label,start,end,score' file per video in OUT, ready for usdrl eval-detection.")
    detect.add_argument("--out", required=True, help="folder for the proposal files")
    detect.add_argument("--split", default="test_untrimmed", help="split to detect on (default: test_untrimmed)")
    detect.add_argument("--train-epochs", type=int, help="first train a frame-wise head and the encoder this long")
    detect.add_argument("--train-split", default="train_untrimmed", help="split to train on")
    detect.add_argument("--save-model", help="write the trained detector here (save_pretrained folder)")
    detect.add_argument("--stride", type=int, help="frames between windows (default: the window length)")
    detect.add_argument("--threshold", type=float, default=0.02, help="proposal threshold (default: 0.02)")
    detect.add_argument("--min-length", type=int, default=1, help="shortest proposal in frames (default: 1)")
    detect.add_argument("--nms", type=float, help="temporal NMS IoU (default: none, as the reference)")
    detect.set_defaults(run=_detect)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="usdrl", description="USDRL skeleton action models.")
    parser.add_argument("--version", action="version", version=f"usdrl {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks and debug logging")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress (INFO level)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    info = commands.add_parser("info", help="version, registered weights, torch and devices")
    info.add_argument("--json", action="store_true", help="print one JSON object")
    info.set_defaults(run=_info)

    convert = commands.add_parser("convert", help="convert a reference .pth.tar checkpoint to a usdrl folder")
    convert.add_argument("checkpoint", help="the reference checkpoint (pretraining or downstream, DSTE or STTR)")
    convert.add_argument("out_dir", help="folder to write (config.json, model.safetensors[, projectors])")
    convert.add_argument("--layout", choices=["ntu25", "coco17", "uav17"],
                         help="joint layout (default: ntu25 for 25 joints; required for 17)")
    convert.add_argument("--modality", choices=["joint", "motion", "bone"], default="joint",
                         help="modality the checkpoint was trained on (default: joint)")
    convert.add_argument("--persons", type=int, default=2, help="persons per clip (default: 2)")
    convert.add_argument("--heads", type=int, default=1, help="attention heads (default: 1)")
    convert.add_argument("--head", choices=["classifier", "frame"], default="classifier",
                         help="where a downstream fc goes: clip classifier or frame-wise detector head")
    convert.add_argument("--dataset", help="metadata: training dataset, e.g. ntu60")
    convert.add_argument("--protocol", help="metadata: protocol, e.g. xsub")
    convert.set_defaults(run=_convert)

    download = commands.add_parser("download", help="fetch weights into the Hugging Face cache ahead of time")
    download.add_argument("name", help="registered name or Hub repo id org/name")
    download.add_argument("--revision", help="branch, tag or commit")
    download.add_argument("--cache-dir", help="cache folder (default: the Hugging Face cache)")
    download.set_defaults(run=_download)

    _add_prepare(commands)
    _add_pretrain(commands)
    _add_eval_detection(commands)
    _add_linear_probe(commands)
    _add_knn(commands)
    _add_early_prediction(commands)
    _add_finetune(commands)
    _add_detect(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    level = logging.DEBUG if args.debug else logging.INFO if args.verbose else logging.WARNING
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    try:
        args.run(args)
    except (USDRLError, OSError) as exc:
        if args.debug:
            raise
        sys.stderr.write(f"usdrl {args.command}: error: {exc}\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
