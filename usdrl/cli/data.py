"""Data and training commands: ``prepare``, ``pretrain``."""

import argparse
import sys
import textwrap

from ._options import add_run_options


def _prepare(args: argparse.Namespace) -> None:
    from ..data.importers import OWN_LAYOUTS
    from ..data.prepared import prepare_dataset, read_manifest
    from ..errors import ConfigError

    if args.source in OWN_LAYOUTS:
        from ..data import importers

        options = importers.ImportOptions(format=args.format, layout=args.layout, test_ratio=args.test_ratio,
                                          seed=args.seed, image_size=args.image_size, padding=args.padding,
                                          workers=args.workers, overwrite=args.overwrite)
        if args.source == "pyskl":
            lists = None if args.split_lists is None else args.split_lists.split(",")
            out = importers.prepare_pyskl(args.raw, args.out, split_lists=lists, label_map=args.label_map,
                                          options=options)
        else:
            prepare = importers.prepare_folder if args.source == "folder" else importers.prepare_keypoints
            out = prepare(args.raw, args.out, labels=args.labels, splits=args.splits, options=options)
    elif args.benchmark is None:
        raise ConfigError(f"prepare {args.source} needs --benchmark")
    else:
        out = prepare_dataset(args.source, args.raw, args.out, benchmark=args.benchmark, workers=args.workers,
                              overwrite=args.overwrite, padding=args.padding, legacy_2d_norm=args.legacy_2d_norm)
    manifest = read_manifest(out)
    counts = ", ".join(f"{name} {split['count']}" for name, split in manifest["splits"].items())
    skipped = len(manifest["skipped"]) if args.source in OWN_LAYOUTS else 0
    sys.stdout.write(f"wrote {out} ({manifest['source']} {manifest['benchmark']}, layout {manifest['layout']}): "
                     f"{counts}" + (f"; skipped {skipped} (listed in the manifest)" if skipped else "") + "\n")


def _add_own_data_options(prepare: argparse.ArgumentParser) -> None:
    """The options of ``usdrl prepare folder``, ``keypoints`` and ``pyskl``."""
    own = prepare.add_argument_group("own data (folder, keypoints, pyskl; docs: keypoints.md)")
    own.add_argument("--format", help="keypoint format of the files (usdrl.keypoints.list_formats(); default: each "
                                      "file's 'format' field, else the only format with its joint count)")
    own.add_argument("--layout", help="layout of the prepared data (default: the files' format); other formats are "
                                      "converted through joint names")
    own.add_argument("--labels", metavar="CSV", help="clip,label rows (default: each clip's sub-folder is its class)")
    own.add_argument("--splits", metavar="CSV", help="clip,split rows (default: a seeded split per class)")
    own.add_argument("--test-ratio", type=float, default=0.2, help="share of each class in test (default: 0.2)")
    own.add_argument("--seed", type=int, default=0, help="seed of that split (default: 0)")
    own.add_argument("--image-size", type=int, nargs=2, metavar=("WIDTH", "HEIGHT"),
                     help="image size of 2D pixel keypoints whose files give none")
    own.add_argument("--split-lists", metavar="A,B", help="pyskl: the pickle's split lists to write (default: all)")
    own.add_argument("--label-map", metavar="TXT", help="pyskl: class names, one per line (line k names label k)")


def _add_prepare(commands) -> None:
    from ..data.importers import OWN_LAYOUTS
    from ..data.prepared import BENCHMARKS, RAW_LAYOUTS

    def paragraph(text: str, indent: str = "  ", hang: str = "    ") -> str:
        return textwrap.fill(text, width=100, initial_indent=indent, subsequent_indent=hang, break_on_hyphens=False)

    layouts = "\n".join(paragraph(f"{source}: RAW is {text}.") for source, text in {**RAW_LAYOUTS,
                                                                                   **OWN_LAYOUTS}.items())
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
    prepare.add_argument("source", metavar="SOURCE", choices=[*BENCHMARKS, *OWN_LAYOUTS],
                         help=f"dataset of the raw files: {', '.join(BENCHMARKS)}; or your own: folder (one "
                              f".npy/.npz/.json keypoint file per clip), keypoints (COCO results .json files, "
                              f"OpenPose frame folders), pyskl (any pyskl/MMAction2 annotation pickle)")
    prepare.add_argument("raw", metavar="RAW", help="the raw dataset: a folder, or the pickle for ntu2d and pyskl "
                                                    "(see below)")
    prepare.add_argument("out", metavar="OUT", help="folder to create (must not exist unless --overwrite)")
    protocols = sorted({name for names in BENCHMARKS.values() for name in names})
    prepare.add_argument("--benchmark", choices=protocols,
                         help="evaluation protocol, i.e. the official train/test split (valid ones per source "
                              "below; needed for those sources)")
    prepare.add_argument("--workers", type=int, help="processes parsing files (default: CPU count, at most 8)")
    prepare.add_argument("--overwrite", action="store_true", help="replace an existing prepared dataset at OUT")
    prepare.add_argument("--padding", choices=["confidence", "zero"], default="confidence",
                         help="ntu2d and 2D own data: third channel of the 2D keypoints (default: confidence)")
    prepare.add_argument("--legacy-2d-norm", action="store_true",
                         help="ntu2d: reproduce the reference NTU-2D scaling (joints 0 and 1 only) instead of "
                              "x / width, y / height")
    _add_own_data_options(prepare)
    prepare.set_defaults(run=_prepare)


def _pretrain(args: argparse.Namespace) -> None:
    from ..train.pretrain import Pretrainer

    overrides = {"epochs": args.epochs, "batch_size": args.batch_size, "save_every": args.save_every,
                 "seed": args.seed, "lr": args.lr, "precision": args.precision,
                 "grad_checkpointing": args.grad_checkpointing or None, "sync_batchnorm": args.sync_batchnorm or None}
    trainer = Pretrainer.from_prepared(args.data, args.run_dir, recipe=args.recipe, preset=args.preset,
                                       settings=args.config, modality=args.modality, overrides=overrides,
                                       universal=args.universal or None,
                                       resume=args.resume, allow_changed_config=args.allow_changed_config,
                                       device=args.device)
    trainer.fit()
    if trainer.rank == 0:
        sys.stdout.write(f"wrote {trainer.run_dir / 'model'} after {trainer.epoch} epochs ({trainer.step} steps)\n")


def _add_pretrain(commands) -> None:
    from ..train.recipes import RECIPES

    pretrain = commands.add_parser(
        "pretrain", help="self-supervised MG-FD/MPCT pretraining on a prepared dataset",
        description="Pretrain a USDRL encoder on the clips of a prepared dataset (labels unused). The run folder "
                    "gets metrics.jsonl (one JSON object per step), checkpoint_NNNN.pt files (each with its "
                    ".sha256) and model/, the final save_pretrained folder. Several processes: torchrun "
                    "--nproc_per_node=N -m usdrl.cli pretrain ... (DistributedDataParallel; --batch-size is the "
                    "total over all processes, and the loss is "
                    "computed on the whole gathered batch). --recipe sets every value of a reference release's "
                    "run; --config and the options below override single values. Without a recipe the "
                    "library's own defaults apply (451 epochs, batch 256, Adam lr 5e-4, fp32, no "
                    "cross-correlation).")
    pretrain.add_argument("--data", required=True, metavar="PREPARED", action="append",
                          help="a prepared dataset folder (its train split is used) or one split folder; repeat "
                               "it to pretrain on several mixed (of different keypoint formats, 2D or 3D: a "
                               "universal model)")
    pretrain.add_argument("--universal", action="store_true",
                          help="pretrain a universal model (any keypoint format, 2D or 3D, read as universal "
                               "input; the default for datasets of different layouts or a --config whose model "
                               "layout is universal)")
    pretrain.add_argument("--recipe", choices=list(RECIPES), metavar="NAME",
                          help=f"a reference release's run, every value set: {', '.join(RECIPES)} (the values and "
                               "their sources: the pretraining page of the docs)")
    pretrain.add_argument("--config", help="JSON file with optional 'model' (USDRLConfig fields) and 'pretrain' "
                                           "(PretrainConfig fields: augment, loss, lr_milestones, ...) sections; "
                                           "it overrides the recipe, the options below override it")
    pretrain.add_argument("--preset", choices=["base", "small", "tiny"],
                          help="encoder size (default: the recipe's, else base, the reference architecture)")
    pretrain.add_argument("--modality", choices=["joint", "motion", "bone", "multi"],
                          help="input modality; multi trains one multi-modal model (default: joint)")
    pretrain.add_argument("--epochs", type=int, help="epochs (default: the recipe's, else 451)")
    pretrain.add_argument("--batch-size", type=int,
                          help="clips per step over all processes (default: the recipe's, else 256)")
    pretrain.add_argument("--lr", type=float, help="Adam learning rate (default: the recipe's, else 5e-4)")
    pretrain.add_argument("--grad-checkpointing", action="store_true", help="recompute activations (less memory)")
    pretrain.add_argument("--sync-batchnorm", action="store_true",
                          help="under torchrun, the projectors' batch norms use the global batch's statistics "
                               "(default: each process's own slice, as the releases' DataParallel)")
    pretrain.add_argument("--seed", type=int, help="seed of the initial weights, sample order and augmentations")
    add_run_options(pretrain, required=True, run_dir_help="run folder (checkpoints, metrics, model/)",
                    precision_default="the recipe's (fp16 autocast with loss scaling), else fp32",
                    save_every_default="the recipe's, else 50")
    pretrain.set_defaults(run=_pretrain)


def register(commands) -> None:
    _add_prepare(commands)
    _add_pretrain(commands)
