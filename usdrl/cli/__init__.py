"""The ``usdrl`` command line: a thin layer over the Python API.

Each module registers its subcommands: :mod:`.inference` (demo, encode), :mod:`.model` (info,
convert, download, export-onnx), :mod:`.data` (prepare, pretrain), :mod:`.tasks` (the downstream
protocols).

Exit codes: 0 success, 1 a usdrl error (bad input, missing weights, bad checkpoint, a file
that cannot be read or written), 2 bad command-line usage (argparse), 130 interrupted.
Errors print one line without a traceback unless ``--debug`` is given.
"""

import argparse
import logging
import sys

from .._version import __version__
from ..errors import USDRLError
from . import data, inference, model, tasks

COMMAND_GROUPS = (inference, model, data, tasks)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="usdrl", description="USDRL skeleton action models.")
    parser.add_argument("--version", action="version", version=f"usdrl {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks and debug logging")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress (INFO level)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for group in COMMAND_GROUPS:
        group.register(commands)
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
    except KeyboardInterrupt:
        if args.debug:
            raise
        sys.stderr.write(f"usdrl {args.command}: interrupted\n")
        return 130
    return 0
