"""The options every training command shares: ``--out RUN_DIR``, ``--device``, ``--precision``,
``--save-every``, ``--resume``, ``--allow-changed-config`` (the engine's :class:`~usdrl.engine.RunOptions`)."""

import argparse


def add_run_options(parser: argparse.ArgumentParser, *, run_dir_flag: str = "--out", run_dir_help: str,
                    required: bool = False, precision_default: str = "fp32", save_every_default: str = "1") -> None:
    """Add the training engine's options to ``parser`` (read back with :func:`run_options`).

    ``run_dir_flag`` names the run folder's option (``--out``, or ``--save-model`` where ``--out``
    already names something else); its value lands in ``args.run_dir``."""
    from ..engine import PRECISIONS

    parser.add_argument(run_dir_flag, dest="run_dir", metavar="RUN_DIR", required=required, help=run_dir_help)
    parser.add_argument("--device", default="auto",
                        help="auto, cpu, cuda, cuda:N or mps (default: auto: a GPU when there is one)")
    parser.add_argument("--precision", choices=PRECISIONS,
                        help=f"fp32, bf16 (autocast), fp16 (autocast and loss scaling) or auto (bf16 where it is "
                             f"native: a GPU or CPU with bf16; fp16 on other GPUs; else fp32) (default: "
                             f"{precision_default})")
    parser.add_argument("--save-every", type=int,
                        help=f"write a checkpoint to RUN_DIR every N epochs, and after the last (default: "
                             f"{save_every_default})")
    parser.add_argument("--resume", action="store_true",
                        help="continue from the newest intact checkpoint in RUN_DIR (damaged newer ones are "
                             "skipped) with exactly the losses of an uninterrupted run; settings that change the "
                             "run's trajectory must be the run's")
    parser.add_argument("--allow-changed-config", action="store_true",
                        help="with --resume: accept options that change the run's trajectory (--lr, --seed, ...)")


def run_options(args: argparse.Namespace):
    """The :class:`~usdrl.engine.RunOptions` of the options :func:`add_run_options` added."""
    from ..engine import RunOptions

    return RunOptions(run_dir=args.run_dir, device=args.device, precision=args.precision,
                      save_every=args.save_every or 1, resume=args.resume,
                      allow_changed_config=args.allow_changed_config)


def is_main_process() -> bool:
    """Whether this process prints and saves results: rank 0 under torchrun, or the only process."""
    from ..engine import is_main_process as main_process

    return main_process()
