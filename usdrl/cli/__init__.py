"""The ``usdrl`` command line: a thin layer over the Python API.

Each module registers its subcommands: :mod:`.inference` (demo, encode), :mod:`.model` (info,
convert, download, export-onnx), :mod:`.synth` (synth), :mod:`.data` (prepare, pretrain), :mod:`.tasks` (the downstream
protocols).

Exit codes: 0 success, 1 a usdrl error (bad input, missing weights, bad checkpoint, a file
that cannot be read or written), 2 bad command-line usage (argparse), 130 interrupted.
Errors print one line without a traceback unless ``--debug`` is given. A library error names the
Python arguments to change (:attr:`~usdrl.errors.USDRLError.keywords`); the command line prints
them as the options of the subcommand that ran (``batch_size`` -> ``--batch-size``).
"""

import argparse
import logging
import re
import sys

from .._version import __version__
from ..errors import USDRLError
from . import data, inference, model, synth, tasks

COMMAND_GROUPS = (inference, model, synth, data, tasks)
#: Library functions a message may point to, as the commands that run them.
COMMANDS_OF_FUNCTIONS = {"linear_probe": "usdrl linear-probe", "finetune": "usdrl finetune",
                         "train_detector": "usdrl detect --train-epochs"}


def _add_logging_options(parser: argparse.ArgumentParser, default) -> None:
    """``--debug`` and ``-v``; on a subcommand their default is ``SUPPRESS`` so that they never undo the
    same option given before the subcommand (``usdrl -v prepare ...`` and ``usdrl prepare ... -v`` agree)."""
    parser.add_argument("--debug", action="store_true", default=default, help="show tracebacks and debug logging")
    parser.add_argument("-v", "--verbose", action="store_true", default=default, help="log progress (INFO level)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="usdrl", description="USDRL skeleton action models.")
    parser.add_argument("--version", action="version", version=f"usdrl {__version__}")
    _add_logging_options(parser, default=False)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for group in COMMAND_GROUPS:
        group.register(commands)
    for subcommand in commands.choices.values():
        _add_logging_options(subcommand, default=argparse.SUPPRESS)
        subcommand.set_defaults(subcommand_parser=subcommand)
    return parser


def command_line_message(exc: Exception, subcommand: argparse.ArgumentParser) -> str:
    """The message of ``exc`` with each of its :attr:`~usdrl.errors.USDRLError.keywords` written as the
    command line spells it: the subcommand's option whose destination has that name (or the option a
    subcommand names in its ``keyword_flags`` default), else the command that runs that function;
    ``name=True`` becomes the bare switch."""
    flags = {action.dest: max(action.option_strings, key=len) for action in subcommand._actions
             if action.option_strings}
    flags.update(subcommand.get_default("keyword_flags") or {})
    text = str(exc)
    for keyword in getattr(exc, "keywords", ()):
        spelled = flags.get(keyword) or COMMANDS_OF_FUNCTIONS.get(keyword)
        if spelled:
            text = re.sub(rf"(?<![\w.-]){re.escape(keyword)}(=True)?(?![\w(])", spelled, text)
    return text


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    level = logging.DEBUG if args.debug else logging.INFO if args.verbose else logging.WARNING
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    try:
        args.run(args)
    except (USDRLError, OSError) as exc:
        if args.debug:
            raise
        sys.stderr.write(f"usdrl {args.command}: error: {command_line_message(exc, args.subcommand_parser)}\n")
        return 1
    except KeyboardInterrupt:
        if args.debug:
            raise
        sys.stderr.write(f"usdrl {args.command}: interrupted\n")
        return 130
    return 0
