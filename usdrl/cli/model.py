"""Model commands: ``info``, ``convert``, ``download``, ``export-onnx``."""

import argparse
import json
import platform
import sys

from .._version import __version__

#: Where the reference checkpoints are published (their READMEs' model zoos and release pages).
REFERENCE_CHECKPOINTS = ("https://github.com/wengwanjiang/FoundSkelModel (README: Model Zoo; releases) and "
                         "https://github.com/wengwanjiang/USDRL (releases)")


def _info(args: argparse.Namespace) -> None:
    import torch

    from ..hub import get_pretrained, list_pretrained
    from ..precision import machine_info

    devices = ["cpu"] + [f"cuda:{i} ({torch.cuda.get_device_name(i)})" for i in range(torch.cuda.device_count())]
    info = {
        "usdrl": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "devices": devices,
        "cpu_threads": torch.get_num_threads(),
        "pretrained": {name: get_pretrained(name).to_dict() for name in list_pretrained()},
        "machine": machine_info().to_dict(),
    }
    if args.json:
        sys.stdout.write(json.dumps(info, indent=2) + "\n")
        return
    lines = [f"usdrl {info['usdrl']} (python {info['python']}, torch {info['torch']})",
             f"devices: {', '.join(devices)}; cpu threads: {info['cpu_threads']}",
             machine_info().summary(),
             "pretrained weights:" if info["pretrained"] else "pretrained weights: none registered"]
    lines += [f"  {name}: {get_pretrained(name).summary()}" for name in info["pretrained"]]
    sys.stdout.write("\n".join(lines) + "\n")


def _convert(args: argparse.Namespace) -> None:
    from ..convert import load_reference_checkpoint

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
    from ..hub import resolve_model_files

    config_file, _ = resolve_model_files(args.name, revision=args.revision, cache_dir=args.cache_dir)
    sys.stdout.write(f"{config_file.parent}\n")


def _export_onnx(args: argparse.Namespace) -> None:
    from ..export import export_onnx
    from ..model import USDRL

    model = USDRL.from_pretrained(args.model)
    report = export_onnx(model, args.out, output=args.output, opset=args.opset, check=not args.no_check)
    sys.stdout.write(report.summary() + "\n")


def register(commands) -> None:
    info = commands.add_parser("info", help="version, registered weights, torch, devices and their instruction sets")
    info.add_argument("--json", action="store_true", help="print one JSON object")
    info.set_defaults(run=_info)

    convert = commands.add_parser(
        "convert", help="convert a reference .pth.tar checkpoint to a usdrl folder",
        description="Convert a checkpoint of the reference release (pretraining or downstream, DSTE or STTR) into a "
                    "usdrl model folder (config.json, model.safetensors). The reference checkpoints are published "
                    f"by the authors: {REFERENCE_CHECKPOINTS} (see docs/hub.md).")
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

    export = commands.add_parser("export-onnx", help="export a model to ONNX (input skeleton (N, C, T, V, M))")
    export.add_argument("model", help="model folder, registered name or Hub repo id org/name")
    export.add_argument("out", help="the .onnx file to write")
    export.add_argument("--output", choices=["embedding", "logits", "frames"], default="embedding",
                        help="what the graph returns: global features (N, 2H), clip logits (N, classes; needs a "
                             "classifier head) or frame logits (N, T, classes; needs a frame head)")
    export.add_argument("--opset", type=int, help="ONNX opset version (default: the exporter's)")
    export.add_argument("--no-check", action="store_true",
                        help="skip running the file with onnxruntime and comparing to PyTorch")
    export.set_defaults(run=_export_onnx)
