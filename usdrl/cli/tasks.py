"""Downstream task commands: ``linear-probe``, ``knn``, ``finetune``, ``ensemble``, ``early-prediction``,
``detect``, ``segment``, ``eval-detection``."""

import argparse
import json
import sys

from ._options import add_run_options, is_main_process, run_options

IOU_THRESHOLDS = [0.1, 0.2, 0.3, 0.4, 0.5]


def _map_lines(results: dict) -> str:
    """``{iou: {mAP_a, mAP_v, AP, F1}}`` as one line per threshold, in percent."""
    return "".join(f"IoU {iou:g}: mAP_a {100 * v['mAP_a']:.2f}  mAP_v {100 * v['mAP_v']:.2f}  "
                   f"AP {100 * v['AP']:.2f}  F1 {100 * v['F1']:.2f}\n" for iou, v in results.items())


def _add_map_options(parser: argparse.ArgumentParser) -> None:
    """``--iou`` and ``--present-classes``, as the mAP of ``eval-detection`` and ``detect --eval`` take them."""
    parser.add_argument("--iou", type=float, action="append",
                        help="IoU threshold (repeat for several; default 0.1 0.2 0.3 0.4 0.5)")
    parser.add_argument("--present-classes", action="store_true",
                        help="average mAP_a over the labels present in the ground truth instead of the official "
                             "1..51 (not the official figure)")


def _eval_detection(args: argparse.Namespace) -> None:
    from ..tasks.detection_eval import eval_detection_folders

    results = eval_detection_folders(args.gt_dir, args.pred_dir, args.iou or IOU_THRESHOLDS,
                                     present_classes=args.present_classes)
    if args.json:
        sys.stdout.write(json.dumps({str(iou): values for iou, values in results.items()}) + "\n")
        return
    sys.stdout.write(_map_lines(results))


def _add_eval_detection(commands) -> None:
    evaluate = commands.add_parser(
        "eval-detection", help="mAP of PKU-MMD-format detection files (the official protocol)",
        description="Evaluate temporal action detection as the official PKU-MMD evaluate.py (latest revision) "
                    "does: one file per video in each folder, same names, lines 'label,start,end,score' (ground "
                    "truth: 'label,start,end,confidence'). The videos evaluated are the files of PRED_DIR. Each "
                    "instance counts once however many proposals match it. mAP_a is the mean AP over labels "
                    "1..51 (absent labels count 0, as in the official script), mAP_v the mean AP over videos, AP "
                    "and F1 over all proposals; fractions in [0, 1] with --json.")
    evaluate.add_argument("gt_dir", metavar="GT_DIR", help="folder of ground-truth label files")
    evaluate.add_argument("pred_dir", metavar="PRED_DIR", help="folder of proposal files")
    _add_map_options(evaluate)
    evaluate.add_argument("--json", action="store_true",
                          help="print one JSON object {iou: {mAP_a, mAP_v, AP, F1}} with fractions in [0, 1]")
    evaluate.set_defaults(run=_eval_detection)


MODEL_HELP = "the pretrained encoder (folder, registered name or Hub repo)"


def _task_parser(commands, name: str, *, help: str, description: str, model_help: str = MODEL_HELP,
                 data_help: str = "a prepared dataset folder") -> argparse.ArgumentParser:
    """A task subcommand taking ``MODEL`` and ``--data PREPARED``."""
    parser = commands.add_parser(name, help=help, description=description)
    parser.add_argument("model", metavar="MODEL", help=model_help)
    parser.add_argument("--data", required=True, metavar="PREPARED", help=data_help)
    return parser


def _given(args: argparse.Namespace, *names: str) -> dict:
    """The options among ``names`` that were given (not None), by name: the fields a config takes from them."""
    return {name: getattr(args, name) for name in names if getattr(args, name) is not None}


def _report_recognition(result, args: argparse.Namespace) -> None:
    """Print a :class:`~usdrl.tasks.recognition.ProbeResult` (one JSON object with ``--json``, or one
    line) and write its confusion matrix to ``--confusion`` when given."""
    if args.confusion:
        result.write_confusion(args.confusion)
    if args.json:
        sys.stdout.write(json.dumps(result.to_json()) + "\n")
        return
    sys.stdout.write(f"top-1 best {100 * result.best_top1:.2f}% (epoch {result.best_epoch}), last "
                     f"{100 * result.last_top1:.2f}%; top-5 last {100 * result.last_top5:.2f}%; "
                     f"train clips {result.train_clips}\n")


def _linear_probe(args: argparse.Namespace) -> None:
    from ..tasks.recognition import ProbeConfig, linear_probe

    config = ProbeConfig(**_given(args, "lr", "epochs", "batch_size", "standardize"))
    result = linear_probe(args.model, args.data, config=config, train_split=args.train_split,
                          test_split=args.test_split, train_crop=args.train_crop, run=run_options(args))
    if is_main_process():  # under torchrun rank 0 alone reports
        _report_recognition(result, args)


def _add_linear_probe(commands) -> None:
    probe = _task_parser(
        commands, "linear-probe", help="linear evaluation of a frozen encoder on a prepared dataset",
        description="Train a linear classifier on the frozen global features of MODEL (a folder, registered name "
                    "or Hub repo) with the reference protocol: SGD momentum 0.9, batch 512, 160 epochs, lr x0.1 "
                    "at epochs 120 and 140, the test split evaluated every 5 epochs (below 5,120 training clips: "
                    "batches of a tenth of them and standardised features, see --standardize). Reports the best "
                    "evaluation (the reference's figure) and the last.")
    probe.add_argument("--train-split", default="train", help="split to train the head on (default: train)")
    probe.add_argument("--test-split", default="test", help="split to evaluate on (default: test)")
    probe.add_argument("--train-crop", type=float, metavar="RATIO",
                       help="train on the fixed central RATIO of every training clip (the reference's PKU-MMD II "
                            "probe: 0.5); the test clips stay whole (default: whole clips)")
    probe.add_argument("--lr", type=float, help="learning rate (default 0.006; the reference uses 0.03 for NTU-60 "
                                               "x-view and 0.01 for PKU-MMD II)")
    probe.add_argument("--epochs", type=int, help="epochs (default: 160)")
    probe.add_argument("--batch-size", type=int,
                       help="batch size (default: 512; below 5,120 training clips a tenth of them)")
    probe.add_argument("--standardize", action=argparse.BooleanOptionalAction,
                       help="scale each feature to zero mean, unit variance on the train split first (default: "
                            "only below 5,120 training clips; --batch-size 512 --no-standardize is the reference "
                            "protocol at any size)")
    add_run_options(probe, run_dir_help="run folder: checkpoints and metrics.jsonl of the head's training, and the "
                                        "encoder with its trained head (save_pretrained files)")
    probe.add_argument("--json", action="store_true", help="print one JSON object with the figures")
    probe.add_argument("--confusion", metavar="CSV", help="write the last epoch's confusion matrix here")
    probe.set_defaults(run=_linear_probe)


def _knn(args: argparse.Namespace) -> None:
    from ..tasks.retrieval import knn_evaluation

    result = knn_evaluation(args.model, args.data, k=args.k, gallery_split=args.gallery_split,
                            query_split=args.query_split)
    if not is_main_process():  # under torchrun rank 0 alone reports
        return
    if args.json:
        sys.stdout.write(json.dumps(result.to_json()) + "\n")
        return
    sys.stdout.write(f"kNN-{result.k} accuracy {100 * result.accuracy:.2f}% ({result.queries} queries, "
                     f"{result.gallery} gallery clips)\n")


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
    from ..tasks.early import RATIOS, early_prediction
    from ..tasks.recognition import ProbeConfig

    config = ProbeConfig(**_given(args, "lr", "epochs", "batch_size"))
    result = early_prediction(args.model, args.data, config=config, split=args.split,
                              ratios=args.ratio or RATIOS, protocol=args.protocol, train_split=args.train_split)
    if not is_main_process():  # under torchrun rank 0 alone reports
        return
    if args.json:
        sys.stdout.write(json.dumps(result.to_json()) + "\n")
        return
    lines = [f"observed {100 * ratio:3.0f}%: top-1 {100 * value:.2f}%" for ratio, value in result.accuracy.items()]
    sys.stdout.write("\n".join(lines + [f"area under the curve: {result.area:.4f}"]) + "\n")


def _add_early_prediction(commands) -> None:
    early = _task_parser(
        commands, "early-prediction", model_help="an encoder; with --protocol full, a model with a classifier head",
        help="accuracy from the first 10%%...100%% of each clip",
        description="Early action prediction on the observed prefixes of a prepared split: the first "
                    "max(3, floor(n * r)) frames of each clip, resampled. --protocol observed (the reference's) "
                    "trains a linear probe per ratio on the observed prefixes of the train split (the linear-probe "
                    "protocol; the best evaluation is reported); --protocol full evaluates MODEL's own head (e.g. "
                    "the --out of linear-probe, trained on whole clips). Prints the accuracy per observation ratio "
                    "and the area under that curve.")
    early.add_argument("--split", default="test", help="split to evaluate (default: test)")
    early.add_argument("--ratio", type=float, action="append",
                       help="observation ratio in (0, 1] (repeat for several; default 0.1, 0.2, ..., 1.0)")
    early.add_argument("--protocol", choices=["full", "observed"], default="full",
                       help="full: MODEL's head on observed test clips; observed: a probe trained and tested on "
                            "observed clips, per ratio, as the reference (default: full)")
    early.add_argument("--train-split", default="train", help="observed: split to train the probes on")
    early.add_argument("--lr", type=float, help="observed: the probe's learning rate (default 0.006)")
    early.add_argument("--epochs", type=int, help="observed: the probe's epochs (default: 160)")
    early.add_argument("--batch-size", type=int, help="observed: the probe's batch size (default: 512)")
    early.add_argument("--json", action="store_true", help="print one JSON object")
    early.set_defaults(run=_early_prediction, keyword_flags={"observe_ratio": "--ratio"})


def _finetune(args: argparse.Namespace) -> None:
    from ..tasks.finetune import FinetuneConfig, finetune

    config = FinetuneConfig(seed=args.seed, **_given(args, "epochs", "lr", "batch_size", "layer_decay"))
    result = finetune(args.model, args.data, config=config, fraction=args.fraction, balanced=not args.unbalanced,
                      train_split=args.train_split, test_split=args.test_split, run=run_options(args))
    if is_main_process():  # under torchrun rank 0 alone reports
        _report_recognition(result, args)


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
    add_run_options(tune, run_dir_help="run folder: checkpoints, metrics.jsonl and the finetuned model "
                                       "(save_pretrained files)")
    tune.add_argument("--json", action="store_true", help="print one JSON object with the figures")
    tune.add_argument("--confusion", metavar="CSV", help="write the last evaluation's confusion matrix here")
    tune.set_defaults(run=_finetune)


def _ensemble(args: argparse.Namespace) -> None:
    from ..tasks.finetune import ensemble_evaluation

    result = ensemble_evaluation(args.models, args.data, split=args.split, batch_size=args.batch_size)
    if not is_main_process():  # under torchrun rank 0 alone reports
        return
    if args.json:
        sys.stdout.write(json.dumps(result.to_json()) + "\n")
        return
    width = max(len(name) for name in result.top1)
    sys.stdout.write("".join(f"{name:<{width}}  top-1 {100 * value:.2f}%\n" for name, value in result.top1.items()))


def _add_ensemble(commands) -> None:
    ensemble = commands.add_parser(
        "ensemble", help="score-level ensemble of several models (the \"3s\" of joint, motion and bone)",
        description="Evaluate models with clip heads for the same classes (e.g. the finetuned or linear-probed "
                    "joint, motion and bone models) on a split of a prepared dataset, each alone and as the sum "
                    "of their softmax scores.")
    ensemble.add_argument("models", metavar="MODEL", nargs="+", help="models with clip heads for the same classes")
    ensemble.add_argument("--data", required=True, metavar="PREPARED", help="a prepared dataset folder")
    ensemble.add_argument("--split", default="test", help="split to evaluate (default: test)")
    ensemble.add_argument("--batch-size", type=int, default=64, help="clips per forward pass (default: 64)")
    ensemble.add_argument("--json", action="store_true", help="print one JSON object")
    ensemble.set_defaults(run=_ensemble)


def _frame_training(args: argparse.Namespace):
    """The training step ``--train-epochs`` (or ``detect --recipe reference``) asks for: a
    :class:`~usdrl.tasks.finetune.FinetuneConfig` or :class:`~usdrl.tasks.detection.ReferenceDetectionConfig`,
    or None."""
    from ..tasks.detection import ReferenceDetectionConfig
    from ..tasks.finetune import FinetuneConfig

    options = {"epochs": args.train_epochs, **_given(args, "lr", "batch_size")}
    options = {k: v for k, v in options.items() if v is not None}
    if args.recipe == "reference":
        return ReferenceDetectionConfig(**options)
    return FinetuneConfig(**options) if args.train_epochs else None


def _add_frame_training(parser: argparse.ArgumentParser, *, smoothing: float) -> None:
    """The options of :func:`~usdrl.tasks.detection.detect` and ``segment``: the evaluated split, the optional
    training step and the stride."""
    parser.add_argument("--split", default="test_untrimmed",
                        help="untrimmed split to run on (default: test_untrimmed)")
    parser.add_argument("--stride", type=int,
                        help="frames between windows, for inference and training (default: the window length)")
    parser.add_argument("--train-epochs", type=int,
                        help="first train a fresh frame-wise head and the encoder this many epochs "
                             "(detect --recipe reference: 150 unless given)")
    parser.add_argument("--train-split", default="train_untrimmed",
                        help="untrimmed split to train on (default: train_untrimmed)")
    parser.add_argument("--lr", type=float, help="training: peak AdamW learning rate (default: 5e-4; "
                                                 "detect --recipe reference: the constant SGD rate, 0.005)")
    parser.add_argument("--batch-size", type=int,
                        help="training: windows per step (default: 64; detect --recipe reference: 512)")
    parser.add_argument("--smoothing", type=float, default=smoothing,
                        help=f"training: weight of MS-TCN's smoothing loss (default: {smoothing:g})")
    add_run_options(parser, run_dir_flag="--save-model",
                    run_dir_help="training: run folder for checkpoints, metrics.jsonl and the trained model "
                                 "(save_pretrained files)")
    # library keywords that these options set under other names (for error messages)
    parser.set_defaults(keyword_flags={"window_stride": "--stride", "epochs": "--train-epochs",
                                       "train_detector": "--train-epochs", "train": "--train-epochs"})


def _detect(args: argparse.Namespace) -> None:
    from ..tasks.detection import DetectionConfig, detect

    config = DetectionConfig(stride=args.stride, threshold=args.threshold, min_length=args.min_length,
                             nms_iou=args.nms)
    result = detect(args.model, args.data, config=config, out_dir=args.out, split=args.split,
                    train=_frame_training(args), train_split=args.train_split, smoothing=args.smoothing,
                    iou_thresholds=(args.iou or IOU_THRESHOLDS) if args.eval else None,
                    present_classes=args.present_classes, run=run_options(args))
    if not is_main_process():  # under torchrun rank 0 alone reports
        return
    if args.json:
        sys.stdout.write(json.dumps(result.to_json()) + "\n")
        return
    summary = result.to_json()
    sys.stdout.write(f"wrote {summary['proposals']} proposals for {summary['videos']} videos to {args.out}\n")
    if result.scores is not None:
        sys.stdout.write(_map_lines(result.scores))


def _add_detect(commands) -> None:
    detect = _task_parser(
        commands, "detect", data_help="a prepared PKU-MMD dataset folder",
        help="temporal action detection on a prepared untrimmed split (PKU-MMD format output)",
        description="Detect actions in the untrimmed sequences of a prepared dataset with a model's frame-wise "
                    "head (trained first with --train-epochs on the train split's windows): sliding windows, "
                    "overlapping scores averaged, proposals from runs of frames above --threshold; one "
                    "'label,start,end,score' file per video in OUT, ready for usdrl eval-detection. --eval "
                    "scores them at once against the split's own per-frame labels (the official mAP_a, mAP_v).")
    detect.add_argument("--out", required=True, help="folder for the proposal files")
    detect.add_argument("--recipe", choices=["library", "reference"], default="library",
                        help="how --train-epochs trains: library (AdamW, warm-up and cosine decay, train mode) or "
                             "reference, the TPAMI release's action_detection.py (SGD momentum 0.9, constant lr "
                             "0.005, weight decay 0, batch 512, 150 epochs, the model in eval mode: no drop "
                             "path); reference trains even without --train-epochs (default: library)")
    _add_frame_training(detect, smoothing=0.0)
    detect.add_argument("--threshold", type=float, default=0.02, help="proposal threshold (default: 0.02)")
    detect.add_argument("--min-length", type=int, default=1, help="shortest proposal in frames (default: 1)")
    detect.add_argument("--nms", type=float, help="temporal NMS IoU (default: none, as the reference)")
    detect.add_argument("--eval", action="store_true",
                        help="also print mAP_a and mAP_v against the split's ground truth")
    _add_map_options(detect)
    detect.add_argument("--json", action="store_true",
                        help="print one JSON object (proposals, videos, out; with --eval mAP {iou: {mAP_a, "
                             "mAP_v}} as fractions in [0, 1])")
    detect.set_defaults(run=_detect)


SEGMENTATION_METRICS = ("Acc", "Edit", "F1@10", "F1@25", "F1@50")


def _segment(args: argparse.Namespace) -> None:
    from ..tasks.detection import DetectionConfig, segment

    result = segment(args.model, args.data, config=DetectionConfig(stride=args.stride), split=args.split,
                     train=_frame_training(args), train_split=args.train_split, smoothing=args.smoothing,
                     run=run_options(args))
    if not is_main_process():  # under torchrun rank 0 alone reports
        return
    if args.json:
        sys.stdout.write(json.dumps(result.to_json()) + "\n")
        return
    metrics = {name: 100 * value for name, value in result.metrics.items()}
    sys.stdout.write(f"frame accuracy {metrics['Acc']:.2f}%  Edit {metrics['Edit']:.2f}  "
                     + "  ".join(f"{name} {metrics[name]:.2f}" for name in SEGMENTATION_METRICS[2:])
                     + f" ({result.sequences} sequences of {result.split})\n")


def _add_segment(commands) -> None:
    segment = _task_parser(
        commands, "segment", data_help="a prepared PKU-MMD (II) dataset folder",
        help="action segmentation of a prepared untrimmed split (frame accuracy, Edit, F1@k)",
        description="Label every frame of the untrimmed sequences of a prepared dataset (PKU-MMD II style) with "
                    "a model's frame-wise head (trained first with --train-epochs on the train split's windows, "
                    "with MS-TCN's smoothing loss weighted by --smoothing): sliding windows over each whole "
                    "sequence, overlapping scores averaged, the most probable class per frame, no "
                    "post-processing. Prints frame accuracy, Edit and F1@{10,25,50} (MS-TCN definitions, "
                    "background segments ignored by Edit and F1); --json gives them as fractions in [0, 1].")
    _add_frame_training(segment, smoothing=0.15)
    segment.add_argument("--json", action="store_true",
                         help="print one JSON object {Acc, Edit, F1@10, F1@25, F1@50} with fractions in [0, 1]")
    segment.set_defaults(run=_segment, recipe="library")


def register(commands) -> None:
    _add_eval_detection(commands)
    _add_linear_probe(commands)
    _add_knn(commands)
    _add_early_prediction(commands)
    _add_finetune(commands)
    _add_ensemble(commands)
    _add_detect(commands)
    _add_segment(commands)
