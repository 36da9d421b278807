"""UAV-Human skeleton ``.txt`` files: reader, writer, file names and cross-subject splits.

The container is the NTU ``.skeleton`` grammar (see :mod:`usdrl.data.kinect_text`) with 17 joints
per body in COCO-17 order (layout ``"uav17"``).

**Unverified parts.** No real UAV-Human skeleton file was available when this reader was
written, and the dataset authors do not document the joint lines. What is implemented
follows the official loader's behaviour rather than a checked file:

* body lines are placeholders (e.g. ``000 0 0 0 0 0 0 0 0 0``); 1 to 10 numeric fields
  (an NTU body line has 10) are accepted, the first is read as an integer body ID, the rest
  is ignored;
* a joint line has 2 to 12 numbers (an NTU joint line has 12; the official loader names
  at most 12 fields); fields 1-3 are taken as x, y, z (z = 0 when a line has only 2) and
  any further fields are checked to be numbers and then ignored. A longer line is a
  DataFormatError, so memory stays proportional to the file's size;
* the units of x, y, z are unknown.

Check against a real file before relying on these choices.
"""

import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass
from os import PathLike
from pathlib import Path

import numpy as np
from einops import rearrange

from .._io import atomic_write
from ..errors import ConfigError, DataFormatError, InputError
from .kinect_text import (
    BodyFrameGrammar,
    check_body_counts,
    format_body_frames,
    format_numbers,
    parse_body_frames,
    slot_bodies,
)
from .sequence import SkeletonSequence

logger = logging.getLogger(__name__)
# einops axes: c coordinates, t frames, v joints, m bodies (persons).

NUM_JOINTS = 17
NUM_CLASSES = 155
UAV_GRAMMAR = BodyFrameGrammar(num_joints=NUM_JOINTS, body_fields=(1, 10), body_int_fields=(), joint_fields=(2, 12))
#: The body line the writer puts in front of every body.
PLACEHOLDER_BODY_LINE = "000 0 0 0 0 0 0 0 0 0"

_NAME_RE = re.compile(r"^P(\d+)S(\d+)G(\d+)B(\d+)H(\d+)UC(\d+)LC(\d+)A(\d+)R(\d+)_(\d+)$", re.ASCII)


@dataclass(frozen=True)
class UAVSampleName:
    """Fields of a UAV-Human file name ``P…S…G…B…H…UC…LC…A…R…_MMDDhhmm``.

    Attribute codes are kept as the digit strings of the name: ``gender``, ``backpack``
    and ``hat`` hold two digits (main subject, auxiliary subject); ``upper_clothing`` and
    ``lower_clothing`` hold six (per subject: two colour digits, one style digit). See the
    dataset README for the code tables.
    """

    person: int
    setup: int
    gender: str
    backpack: str
    hat: str
    upper_clothing: str
    lower_clothing: str
    action: int
    replicate: int
    timestamp: str

    @property
    def label(self) -> int:
        """0-based class index: ``A`` is already 0-based (A000-A154)."""
        return self.action

    def as_dict(self) -> dict:
        """All fields and ``label``."""
        keys = ("person", "setup", "gender", "backpack", "hat", "upper_clothing", "lower_clothing", "action",
                "replicate", "timestamp", "label")
        return {key: getattr(self, key) for key in keys}


def parse_uav_name(name: str | PathLike) -> UAVSampleName:
    """Fields of a UAV-Human file name (directory and ``.txt`` are ignored).

    Raises DataFormatError when the name does not follow the scheme (the challenge test
    files, named ``0000.txt`` etc., carry no fields).
    """
    stem = Path(name).name.removesuffix(".txt")
    match = _NAME_RE.match(stem)
    if match is None:
        raise DataFormatError(f"{name}: not a UAV-Human sample name (expected P…S…G…B…H…UC…LC…A…R…_…)")
    p, s, g, b, h, uc, lc, a, r, ts = match.groups()
    return UAVSampleName(int(p), int(s), g, b, h, uc, lc, int(a), int(r), ts)


def read_uav_skeleton(path: str | PathLike) -> SkeletonSequence:
    """Read a UAV-Human skeleton ``.txt`` file (see the module notes on unverified parts).

    Returns a :class:`SkeletonSequence` with ``data`` ``(3, T, 17, M)`` (x, y, z; every frame
    record kept), ``body_counts`` ``(T,)``, ``body_ids`` ``(T, M)`` and ``meta`` from the file
    name when it follows the naming scheme. Raises DataFormatError for a malformed file.
    """
    frames = parse_body_frames(path, UAV_GRAMMAR)
    xyz = np.zeros((*frames.joints.shape[:2], 3), dtype=np.float32)
    width = min(3, frames.joints.shape[2])
    xyz[..., :width] = frames.joints[..., :width]
    path = Path(path)
    try:
        meta = parse_uav_name(path).as_dict()
    except DataFormatError:
        logger.debug("%s does not follow the UAV-Human naming scheme; no metadata", path.name)
        meta = {}
    return SkeletonSequence(
        data=np.ascontiguousarray(rearrange(frames.to_slots(xyz), "t m v c -> c t v m")),
        layout="uav17",
        name=path.name.removesuffix(".txt"),
        source=path,
        meta=meta,
        body_counts=frames.body_counts,
        body_ids=frames.to_slots(frames.body_ids),
    )


def write_uav_skeleton(
    path: str | PathLike,
    data: SkeletonSequence | np.ndarray,
    *,
    body_counts: np.ndarray | None = None,
    newline: str = "\n",
) -> Path:
    """Write a UAV-Human style skeleton file that :func:`read_uav_skeleton` reads back exactly.

    Args:
        path: file to write.
        data: ``(C, T, 17, M)`` with C = 3 (x, y, z per joint line) or 2 (x, y), or a
            :class:`SkeletonSequence` (its ``body_counts`` are used when none are given).
        body_counts: ``(T,)`` bodies per frame; default: up to each frame's last non-zero slot.
        newline: line end.

    Body lines are :data:`PLACEHOLDER_BODY_LINE`. Returns the path written. Raises
    InputError for what the file cannot hold (a shape or body count that disagrees, a value
    not finite in float32).
    """
    if isinstance(data, SkeletonSequence):
        body_counts = data.body_counts if body_counts is None else body_counts
        data = data.data
    data = np.asarray(data)
    if data.ndim != 4 or data.shape[0] not in (2, 3) or data.shape[2] != NUM_JOINTS:
        raise InputError(f"data must be (2 or 3, T, {NUM_JOINTS}, M), got {data.shape}")
    counts = check_body_counts(data, body_counts)
    values = format_numbers(slot_bodies(counts, rearrange(data, "c t v m -> t m v c")))
    joint_lines = [" ".join(row) for row in values.reshape(-1, data.shape[0]).tolist()]
    body_lines = [PLACEHOLDER_BODY_LINE] * int(counts.sum())
    text = format_body_frames(counts, body_lines, joint_lines, NUM_JOINTS, newline)
    return atomic_write(path, lambda tmp: tmp.write_bytes(text.encode("ascii")))


#: Training subjects (``P``) of the two official cross-subject protocols; the rest of 0-118 is test.
CSV1_TRAIN_PERSONS = frozenset((
    0, 2, 5, 6, 7, 8, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 25, 26, 27, 28, 29, 30, 32, 33, 34, 35, 36,
    37, 38, 39, 40, 42, 43, 44, 45, 46, 47, 48, 49, 50, 51, 52, 53, 55, 56, 57, 59, 61, 62, 63, 64, 65, 67, 68,
    69, 70, 71, 73, 76, 77, 78, 79, 80, 81, 82, 83, 84, 85, 86, 87, 88, 89, 90, 98, 100, 102, 103, 105, 106, 110,
    111, 112, 114, 115, 116, 117, 118))
CSV2_TRAIN_PERSONS = frozenset((
    0, 3, 4, 5, 6, 8, 10, 11, 12, 14, 16, 18, 19, 20, 21, 22, 24, 26, 29, 30, 31, 32, 35, 36, 37, 38, 39, 40, 43,
    44, 45, 46, 47, 49, 52, 54, 56, 57, 59, 60, 61, 62, 63, 64, 66, 67, 69, 70, 71, 72, 73, 74, 75, 77, 78, 79,
    80, 81, 83, 84, 86, 87, 88, 89, 91, 92, 93, 94, 95, 96, 97, 99, 100, 101, 102, 103, 104, 106, 107, 108, 109,
    110, 111, 112, 113, 114, 115, 117, 118))
_TRAIN_PERSONS = {"csv1": CSV1_TRAIN_PERSONS, "csv2": CSV2_TRAIN_PERSONS}


def split_uav_samples(names: Iterable[str | PathLike], protocol: str = "csv1") -> dict[str, list]:
    """Split UAV-Human file names (or paths) by main subject: ``{"train": [...], "test": [...]}``.

    ``protocol`` is ``"csv1"`` or ``"csv2"`` (Cross-Subject v1 / v2). Items keep their
    order and type; an item without the naming scheme raises DataFormatError.
    """
    if protocol not in _TRAIN_PERSONS:
        raise ConfigError(f"unknown UAV-Human protocol {protocol!r}; expected 'csv1' or 'csv2'")
    train = _TRAIN_PERSONS[protocol]
    out: dict[str, list] = {"train": [], "test": []}
    for item in names:
        out["train" if parse_uav_name(item).person in train else "test"].append(item)
    return out
