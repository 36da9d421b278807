"""Helpers shared by the text-format readers: strict line reading and number parsing.

Every problem is reported as :class:`~usdrl.errors.DataFormatError` with the file name
and the 1-based line number.
"""

import re
from collections.abc import Callable, Sequence
from os import PathLike
from pathlib import Path

import numpy as np

from .errors import DataFormatError, InputError

#: Largest float32 value (readers store float32).
FLOAT32_MAX = float(np.finfo(np.float32).max)
#: Smallest magnitude that rounds to infinity in float32 (half an ulp above FLOAT32_MAX, a tie that
#: rounds to even, i.e. up): a value is finite in float32 when its magnitude is below it. Written
#: files hold FLOAT32_MAX as ``3.4028235e+38``, a little above FLOAT32_MAX itself.
FLOAT32_OVERFLOW = 2.0**128 - 2.0**103
#: An integer as the formats write it: optional sign, ASCII digits (no ``_`` separators, no spaces).
INTEGER_RE = re.compile(r"[+-]?[0-9]+")
#: A decimal number as the formats write it: ``12``, ``-0.5``, ``.5``, ``5.``, ``1e-05``; nothing else
#: that :func:`float` would take (``1_0``, ``nan``, ``inf``, ``infinity``).
NUMBER_RE = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")


def check_newline(newline: str) -> None:
    """InputError unless ``newline`` is a line end the readers take (LF or CRLF): for the writers."""
    if newline not in ("\n", "\r\n"):
        raise InputError(f"newline must be '\\n' or '\\r\\n', got {newline!r}")


def format_error(path: str | PathLike, line: int | None, message: str) -> DataFormatError:
    """A :class:`DataFormatError` whose message starts with ``<path>, line <line>:``."""
    where = f"{path}" if line is None else f"{path}, line {line}"
    return DataFormatError(f"{where}: {message}")


def read_lines(path: str | PathLike) -> list[str]:
    """The lines of an ASCII text file, without line ends (LF or CRLF).

    Trailing blank lines are dropped. Raises DataFormatError for bytes outside ASCII (so
    that no non-ASCII digit can pass for a number) and for a carriage return that does not
    end a line; OSError if the file cannot be read.
    """
    raw = Path(path).read_bytes()
    try:
        text = raw.decode("ascii")
    except UnicodeDecodeError as err:
        line = raw.count(b"\n", 0, err.start) + 1
        raise format_error(path, line, f"byte 0x{raw[err.start]:02x} is not ASCII text") from None
    text = text.replace("\r\n", "\n")
    if "\r" in text:
        line = text.count("\n", 0, text.index("\r")) + 1
        raise format_error(path, line, "carriage return without a line feed")
    lines = text.split("\n")
    while lines and not lines[-1].strip():
        lines.pop()
    return lines


def parse_int(path: str | PathLike, line: int, token: str, what: str, *, minimum: int | None = 0) -> int:
    """``int(token)`` for a token matching :data:`INTEGER_RE`, at least ``minimum`` (if not ``None``);
    DataFormatError naming ``what`` otherwise."""
    if not INTEGER_RE.fullmatch(token):
        raise format_error(path, line, f"{what} must be an integer, found {token!r}")
    value = int(token)
    if minimum is not None and value < minimum:
        raise format_error(path, line, f"{what} must be >= {minimum}, found {value}")
    return value


def parse_number_lines(
    path: str | PathLike,
    lines: Sequence[str],
    line_of: Callable[[int], int],
    fields: tuple[int, int | None],
    what: str,
    min_width: int = 0,
) -> np.ndarray:
    """Parse lines of whitespace-separated numbers into a ``(len(lines), W)`` float64 array.

    Same rules and result as :func:`parse_number_rows` on the split lines; a fast path
    handles the common case of the same field count on every line (numpy's parser takes
    exactly the decimal forms of :data:`NUMBER_RE`, plus ``nan`` / ``inf``, which the finite
    check refuses).
    """
    low, high = fields
    if lines and low > 0 and all(map(str.strip, lines)):  # loadtxt would skip blank lines (and warn)
        try:
            values = np.loadtxt(lines, dtype=np.float64, comments=None, ndmin=2)
        except ValueError:
            values = None
        if (values is not None and values.shape[0] == len(lines) and max(low, min_width) <= values.shape[1]
                and (high is None or values.shape[1] <= high) and (np.abs(values) < FLOAT32_OVERFLOW).all()):
            return values
    return parse_number_rows(path, [line.split() for line in lines], line_of, fields, what, min_width)


def parse_number_rows(
    path: str | PathLike,
    rows: Sequence[Sequence[str]],
    line_of: Callable[[int], int],
    fields: tuple[int, int | None],
    what: str,
    min_width: int = 0,
) -> np.ndarray:
    """Parse rows of number tokens into a ``(len(rows), W)`` float64 array.

    Every row must have ``fields[0]`` to ``fields[1]`` tokens (``None``: no upper limit),
    each a decimal number matching :data:`NUMBER_RE` and finite in float32. Shorter rows are
    zero-padded on the right; ``W`` is the longest row's length, at least ``min_width``.
    ``line_of(i)`` gives the file line of ``rows[i]`` and is only called to report an
    error (DataFormatError naming ``what``).
    """
    low, high = fields
    expected = f"{low}" if low == high else f"at least {low}" if high is None else f"{low} to {high}"
    values = []
    for i, row in enumerate(rows):
        if len(row) < low or (high is not None and len(row) > high):
            raise format_error(path, line_of(i), f"{what} must have {expected} fields, found {len(row)}")
        for token in row:
            if not NUMBER_RE.fullmatch(token):
                raise format_error(path, line_of(i), f"{token!r} in {what} is not a number "
                                                     "(a finite decimal such as 0.215 or -1e-05)")
            value = float(token)
            if not abs(value) < FLOAT32_OVERFLOW:
                raise format_error(path, line_of(i), f"{token!r} in {what} is not a finite float32 value")
            values.append(value)
    widths = np.fromiter(map(len, rows), dtype=np.int64, count=len(rows))
    out = np.zeros((len(rows), int(widths.max(initial=min_width))))
    out[np.arange(out.shape[1]) < widths[:, None]] = values
    return out
