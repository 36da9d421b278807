"""PKU-MMD phase 1 and 2: skeleton ``.txt``, label files, split files; readers and writers.

* Skeleton file: one line per frame, 150 numbers = 2 persons x 25 joints (NTU-25 order)
  x (x, y, z) in metres, person-major then joint-major. An absent person is all zeros.
  There is no header and no frame count.
* Label file: one action instance per line, ``label,start,end,confidence`` (integers;
  commas or whitespace). ``label`` is 1-based (1-51), ``confidence`` 1 (slight) or 2 (strong).
* Split file: four lines: a header, the training stems (comma-separated), a header, the
  test ("validation") stems.

File stems are ``XXXX-V`` (phase 1, e.g. ``0002-L``) or ``AxxNyy-V`` (phase 2, e.g.
``A10N08-L``) with view V in L, M, R.
"""

import logging
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from os import PathLike
from pathlib import Path

import numpy as np
from einops import rearrange

from .._io import atomic_write
from .._text import check_newline, format_error, parse_int, parse_number_lines, read_lines
from ..errors import DataFormatError, InputError
from .sequence import SkeletonSequence

logger = logging.getLogger(__name__)
# einops axes: c coordinates, t frames, v joints, m bodies (persons).

NUM_JOINTS = 25
NUM_BODIES = 2
VALUES_PER_FRAME = NUM_BODIES * NUM_JOINTS * 3
NUM_CLASSES = 51

_V1_RE = re.compile(r"^(\d{4})-([LMR])$", re.ASCII)
_V2_RE = re.compile(r"^A(\d{2})N(\d{2})-([LMR])$", re.ASCII)


def parse_pkummd_name(name: str | PathLike) -> dict:
    """Fields of a PKU-MMD stem (directory and ``.txt`` are ignored).

    Phase 1 ``XXXX-V``: ``{"phase": 1, "sequence": int, "view": "L"|"M"|"R"}``; phase 2
    ``AxxNyy-V``: ``{"phase": 2, "script": int, "subject": int, "view": ...}``.
    Raises DataFormatError for any other name.
    """
    stem = Path(name).name.removesuffix(".txt")
    if match := _V1_RE.match(stem):
        return {"phase": 1, "sequence": int(match[1]), "view": match[2]}
    if match := _V2_RE.match(stem):
        return {"phase": 2, "script": int(match[1]), "subject": int(match[2]), "view": match[3]}
    raise DataFormatError(f"{name}: not a PKU-MMD file stem (expected XXXX-V or AxxNyy-V)")


def read_pkummd_skeleton(path: str | PathLike) -> SkeletonSequence:
    """Read a PKU-MMD skeleton file into ``data`` ``(3, T, 25, 2)`` float32 (layout ``"ntu25"``).

    Every line must hold exactly 150 finite numbers (any whitespace, leading spaces
    included). Raises DataFormatError, naming file and line, for an empty file or a bad line.
    """
    lines = read_lines(path)
    if not lines:
        raise format_error(path, 1, "file is empty")
    values = parse_number_lines(path, lines, lambda i: i + 1, (VALUES_PER_FRAME, VALUES_PER_FRAME), "a frame line")
    path = Path(path)
    try:
        meta = parse_pkummd_name(path)
    except DataFormatError:
        logger.debug("%s does not follow the PKU-MMD naming scheme; no metadata", path.name)
        meta = {}
    data = rearrange(values.astype(np.float32), "t (m v c) -> c t v m", m=NUM_BODIES, v=NUM_JOINTS)
    return SkeletonSequence(
        data=np.ascontiguousarray(data), layout="ntu25", name=path.name.removesuffix(".txt"), source=path, meta=meta
    )


def write_pkummd_skeleton(
    path: str | PathLike, data: SkeletonSequence | np.ndarray, *, float_format: str = "%f", newline: str = "\n"
) -> Path:
    """Write ``(3, T, 25, M)`` coordinates (M <= 2; missing persons are written as zeros).

    ``float_format`` defaults to ``%f`` as in the released files, which rounds to 6
    decimals; pass ``"%.9g"`` to write float32 values exactly. The file is written atomically.
    Returns the path written. Raises InputError for values the reader refuses (not finite in
    float32) and for a ``newline`` other than LF or CRLF.
    """
    data = np.asarray(data.data if isinstance(data, SkeletonSequence) else data)
    if data.ndim != 4 or data.shape[0] != 3 or data.shape[2] != NUM_JOINTS or data.shape[3] > NUM_BODIES:
        raise InputError(f"data must be (3, T, {NUM_JOINTS}, M) with M <= {NUM_BODIES}, got {data.shape}")
    check_newline(newline)
    with np.errstate(over="ignore"):   # beyond float32 becomes inf: refused below
        finite = np.isfinite(data.astype(np.float32))
    if not finite.all():
        raise InputError(f"values must be finite in float32, found {data[~finite][0]}")
    full = np.zeros((*data.shape[:3], NUM_BODIES), dtype=np.float64)
    full[..., :data.shape[3]] = data
    rows = rearrange(full, "c t v m -> t (m v c)")
    line_format = " ".join([float_format] * VALUES_PER_FRAME)
    text = "".join(line_format % tuple(row) + newline for row in rows.tolist())
    return atomic_write(path, lambda tmp: tmp.write_bytes(text.encode("ascii")))


@dataclass(frozen=True)
class ActionInstance:
    """One labelled action: 1-based ``label``, frame ``start`` and ``end``, ``confidence`` (1 or 2)."""

    label: int
    start: int
    end: int
    confidence: int


def read_pkummd_labels(path: str | PathLike, *, swap_reversed: bool = True) -> list[ActionInstance]:
    """Read a label file: one ``label,start,end,confidence`` line per instance.

    Commas and whitespace both separate fields. ``label`` must be >= 1 and the frame
    indices >= 0. A line with ``start > end`` (it happens in the release) is swapped and
    logged when ``swap_reversed``, an error otherwise. Raises DataFormatError for bad lines.
    """
    out = []
    for number, line in enumerate(read_lines(path), start=1):
        fields = line.replace(",", " ").split()
        if len(fields) != 4:
            raise format_error(path, number, f"expected label,start,end,confidence, found {len(fields)} fields")
        label = parse_int(path, number, fields[0], "the label", minimum=1)
        start = parse_int(path, number, fields[1], "the start frame")
        end = parse_int(path, number, fields[2], "the end frame")
        confidence = parse_int(path, number, fields[3], "the confidence")
        if start > end:
            if not swap_reversed:
                raise format_error(path, number, f"start {start} is after end {end}")
            logger.warning("%s, line %d: start %d > end %d; swapped", path, number, start, end)
            start, end = end, start
        out.append(ActionInstance(label, start, end, confidence))
    return out


def write_pkummd_labels(path: str | PathLike, instances: Iterable[ActionInstance], *, newline: str = "\n") -> Path:
    """Write instances as ``label,start,end,confidence`` lines (atomically). Returns the path written."""
    check_newline(newline)
    text = "".join(f"{a.label},{a.start},{a.end},{a.confidence}{newline}" for a in instances)
    return atomic_write(path, lambda tmp: tmp.write_bytes(text.encode("ascii")))


def frame_labels(instances: Iterable[ActionInstance], num_frames: int, *, background: int = 0) -> np.ndarray:
    """Per-frame labels ``(num_frames,)`` int64: frames ``[start, end)`` of each instance get its label.

    This is the ``rows[start:end]`` convention of the common converters (the dataset does
    not say whether ``end`` is inclusive). Other frames get ``background``; where
    instances overlap the later one wins. Parts past ``num_frames`` are dropped and logged.
    """
    out = np.full(num_frames, background, dtype=np.int64)
    for a in instances:
        if a.end > num_frames:
            logger.warning("instance %s ends after the %d frames of the sequence; clipped", a, num_frames)
        out[a.start:a.end] = a.label
    return out


def _split_items(path, number: int, line: str) -> list[str]:
    text = line.strip().removesuffix(",")
    items = [item.strip() for item in text.split(",")] if text else []
    for item in items:
        if not (_V1_RE.match(item) or _V2_RE.match(item)):
            raise format_error(path, number, f"{item!r} is not a PKU-MMD video stem")
    return items


def read_pkummd_split(path: str | PathLike) -> dict[str, list[str]]:
    """Read a split file into ``{"train": [stems], "test": [stems]}``.

    The file has four lines: header, training stems, header, test ("validation") stems,
    the stems separated by commas (a trailing comma is fine). Raises DataFormatError for
    another line count, a malformed stem or a stem in both lists.
    """
    lines = read_lines(path)
    if len(lines) != 4:
        raise format_error(path, min(len(lines), 4) + 1, f"a split file has 4 lines, found {len(lines)}")
    train, test = _split_items(path, 2, lines[1]), _split_items(path, 4, lines[3])
    both = set(train) & set(test)
    if both:
        raise format_error(path, 4, f"{sorted(both)[0]!r} is in both the training and the test list")
    return {"train": train, "test": test}


def write_pkummd_split(
    path: str | PathLike, train: Sequence[str], test: Sequence[str], *, newline: str = "\n"
) -> Path:
    """Write a split file in the released layout (``", "``-separated, trailing comma), atomically."""
    check_newline(newline)
    lines = ["Training videos:", ", ".join(train) + ",", "Validation videos:", ", ".join(test) + ","]
    text = newline.join(lines) + newline
    return atomic_write(path, lambda tmp: tmp.write_bytes(text.encode("ascii")))
