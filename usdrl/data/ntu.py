"""NTU RGB+D 60/120: raw ``.skeleton`` files, sample names, missing samples and splits.

File grammar (one item per line, fields split by whitespace, CRLF or LF)::

    <numFrames>
    per frame:   <numBodies>
      per body:  <body line: bodyID + 9 fields>
                 <numJoints>                      (25)
                 <joint line: 12 fields> x numJoints

The same container holds UAV-Human skeletons (17 joints, looser lines); the grammar is
implemented once here (:func:`parse_body_frames`, :func:`format_body_frames`) and
:mod:`usdrl.data.uav` reuses it.

Reading keeps every body of every frame. Body slot ``m`` of frame ``t`` is the ``m``-th body
*listed* in that frame, which need not be the same person as slot ``m`` of another frame:
follow ``body_ids`` (17-digit IDs, kept exact as uint64) to track people.
"""

import functools
import logging
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import resources
from os import PathLike
from pathlib import Path
from typing import NamedTuple

import numpy as np
from einops import rearrange

from ..errors import ConfigError, DataFormatError, InputError
from ._text import format_error, parse_int, parse_number_lines, parse_number_rows, read_lines
from .sequence import SkeletonSequence

logger = logging.getLogger(__name__)
# einops axes: c coordinates, t frames, v joints, m body slots, k joint-line fields besides x, y, z.

NUM_JOINTS = 25
#: Body-line fields after ``bodyID`` (spelled as in the Kinect v2 SDK).
BODY_INFO_FIELDS = (
    "clipped_edges", "hand_left_confidence", "hand_left_state", "hand_right_confidence",
    "hand_right_state", "is_restricted", "lean_x", "lean_y", "tracking_state",
)
#: Joint-line fields after ``x y z``; ``SkeletonSequence.joint_info`` holds them in this order.
JOINT_INFO_FIELDS = (
    "depth_x", "depth_y", "color_x", "color_y",
    "orientation_w", "orientation_x", "orientation_y", "orientation_z", "tracking_state",
)
#: First ID used by the writer when no body IDs are given (real IDs are near 2**56).
DEFAULT_BODY_ID = 72057594037927936

_UINT64_LIMIT = 2**64
_NAME_RE = re.compile(r"^S(\d{3})C(\d{3})P(\d{3})R(\d{3})A(\d{3})$", re.ASCII)  # int() takes any script's digits
_NAME_FIELDS = ("setup", "camera", "performer", "replication", "action")


# --------------------------------------------------------------------------------------
# The body/joint grammar shared with UAV-Human
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BodyFrameGrammar:
    """What a body line and a joint line must look like in one NTU-style format.

    Attributes:
        num_joints: required joint count of every body.
        body_fields: ``(min, max)`` fields of a body line, the ID included (min >= 1).
        body_int_fields: 0-based positions, after the ID, of fields that must be integers.
        joint_fields: ``(min, max)`` fields per joint line.
        joint_int_fields: 0-based positions in a joint line that must hold integral values.

    Both maxima bound the memory a file can ask for: parsed lines are zero-padded to the
    longest one.
    """

    num_joints: int
    body_fields: tuple[int, int]
    body_int_fields: tuple[int, ...]
    joint_fields: tuple[int, int]
    joint_int_fields: tuple[int, ...] = ()


NTU_GRAMMAR = BodyFrameGrammar(
    num_joints=NUM_JOINTS, body_fields=(10, 10), body_int_fields=(0, 1, 2, 3, 4, 5, 8), joint_fields=(12, 12),
    joint_int_fields=(11,),
)
#: Body slots ``T x M`` a file may ask for beyond one per frame and one per stored body: the
#: dense ``(T, M)`` slots of a file listing many bodies in one frame and none in thousands of
#: others would otherwise grow with the square of the file's size.
SPARE_BODY_SLOTS = 16384


@dataclass
class BodyFrames:
    """The bodies of one NTU-style file, in file order (B bodies in all).

    Attributes:
        body_counts: ``(T,)`` int64 bodies per frame record.
        body_ids: ``(B,)`` uint64 body IDs.
        body_values: ``(B, K)`` float64 body-line fields after the ID (zero-padded on the
            right when lines differ in length).
        joints: ``(B, V, W)`` float64 joint-line fields, zero-padded to the longest line.
    """

    body_counts: np.ndarray
    body_ids: np.ndarray
    body_values: np.ndarray
    joints: np.ndarray

    def to_slots(self, per_body: np.ndarray) -> np.ndarray:
        """Scatter a ``(B, ...)`` per-body array into ``(T, M, ...)`` slots (zeros elsewhere)."""
        counts = self.body_counts
        out = np.zeros((len(counts), int(counts.max(initial=0)), *per_body.shape[1:]), dtype=per_body.dtype)
        out[_slot_index(counts)] = per_body
        return out


def _slot_index(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(frame, slot)`` of each body, in file order, for ``(T,)`` body counts."""
    frame = np.repeat(np.arange(len(counts)), counts)
    return frame, np.arange(len(frame)) - np.repeat(np.cumsum(counts) - counts, counts)


class _Cursor:
    """Walks the lines of a file, reporting errors with 1-based line numbers."""

    def __init__(self, path: str | PathLike, lines: list[str]):
        self.path = path
        self.lines = lines
        self.pos = 0

    def fail(self, message: str, line: int | None = None) -> DataFormatError:
        return format_error(self.path, self.pos + 1 if line is None else line, message)

    def next_tokens(self, what: str) -> list[str]:
        if self.pos >= len(self.lines):
            raise self.fail(f"unexpected end of file, expected {what}")
        tokens = self.lines[self.pos].split()
        self.pos += 1
        return tokens

    def count(self, what: str) -> int:
        tokens = self.next_tokens(what)
        if len(tokens) != 1:
            raise self.fail(f"expected {what} (one integer), found {len(tokens)} fields", self.pos)
        return parse_int(self.path, self.pos, tokens[0], what)

    def block(self, size: int, what: str) -> list[str]:
        end = self.pos + size
        if end > len(self.lines):
            raise self.fail(f"unexpected end of file, expected {what}", len(self.lines) + 1)
        lines = self.lines[self.pos:end]
        self.pos = end
        return lines


def parse_body_frames(path: str | PathLike, grammar: BodyFrameGrammar) -> BodyFrames:
    """Read an NTU-style skeleton file strictly.

    Raises DataFormatError (naming the file and line) for an empty or truncated file, a
    count that disagrees with the lines that follow, a field count outside the grammar,
    a non-numeric or non-finite value, or any content after the last declared frame.
    """
    cursor = _Cursor(path, read_lines(path))
    if not cursor.lines:
        raise format_error(path, 1, "file is empty")
    num_joints = grammar.num_joints
    num_frames = cursor.count("the number of frames")
    counts, count_lines, ids, body_rows, body_lines, joint_lines, block_lines = [], [], [], [], [], [], []
    low, high = grammar.body_fields
    expected_fields = f"{low}" if low == high else f"{low} to {high}"
    for t in range(1, num_frames + 1):
        num_bodies = cursor.count(f"the body count of frame {t}")
        counts.append(num_bodies)
        count_lines.append(cursor.pos)
        for b in range(1, num_bodies + 1):
            where = f"body {b} of frame {t}"
            tokens = cursor.next_tokens(f"the body line of {where}")
            line = cursor.pos
            if not low <= len(tokens) <= high:
                raise cursor.fail(f"the body line of {where} must have {expected_fields} fields, "
                                  f"found {len(tokens)}", line)
            body_id = parse_int(path, line, tokens[0], f"the body ID of {where}")
            if body_id >= _UINT64_LIMIT:
                raise cursor.fail(f"the body ID of {where} does not fit in 64 bits: {body_id}", line)
            for i in grammar.body_int_fields:
                parse_int(path, line, tokens[1 + i], f"body field {i + 2} of {where}", minimum=None)
            ids.append(body_id)
            body_rows.append(tokens[1:])
            body_lines.append(line)
            joints = cursor.count(f"the joint count of {where}")
            if joints != num_joints:
                raise cursor.fail(f"{where} has {joints} joints, expected {num_joints}", cursor.pos)
            block_lines.append(cursor.pos + 1)
            joint_lines.extend(cursor.block(num_joints, f"{num_joints} joint lines of {where}"))
    if cursor.pos < len(cursor.lines):
        raise cursor.fail(f"unexpected content after the last of the {num_frames} declared frames")
    most = max(counts, default=0)
    if num_frames * most > num_frames + len(ids) + SPARE_BODY_SLOTS:
        t = counts.index(most)
        raise cursor.fail(f"frame {t + 1} lists {most} bodies, so the {num_frames} frames need {num_frames} x "
                          f"{most} body slots for the {len(ids)} bodies stored (at most frames + bodies + "
                          f"{SPARE_BODY_SLOTS} are allowed)", count_lines[t])

    def joint_line(i):
        return block_lines[i // num_joints] + i % num_joints

    def body_line(i):
        return body_lines[i]

    joints = parse_number_lines(path, joint_lines, joint_line, grammar.joint_fields, "a joint line",
                                grammar.joint_fields[0])
    for col in grammar.joint_int_fields:
        fractional = joints[:, col] != np.floor(joints[:, col])
        if fractional.any():
            i = int(np.argmax(fractional))
            raise cursor.fail(f"joint field {col + 1} must be an integer, found {joints[i, col]}", joint_line(i))
    body_values = parse_number_rows(path, body_rows, body_line, (low - 1, high - 1), "a body line", low - 1)
    return BodyFrames(
        body_counts=np.asarray(counts, dtype=np.int64).reshape(-1),
        body_ids=np.asarray(ids, dtype=np.uint64).reshape(-1),
        body_values=body_values,
        joints=joints.reshape(len(ids), num_joints, joints.shape[1]),
    )


def _format_numbers(values: np.ndarray, int_columns: Iterable[int] = ()) -> np.ndarray:
    """``(..., K)`` numbers -> strings: float32 shortest round-trip form, ints for ``int_columns``."""
    out = values.astype(np.float32).astype(str)
    for col in int_columns:
        column = values[..., col]
        if (column != np.round(column)).any():
            raise InputError(f"column {col} must hold integers")
        out[..., col] = column.astype(np.int64).astype(str)
    return out


def format_body_frames(
    body_counts: np.ndarray, body_lines: list[str], joint_lines: list[str], num_joints: int, newline: str
) -> str:
    """The text of an NTU-style file (``body_lines`` / ``joint_lines`` in file order)."""
    out = [str(len(body_counts))]
    b = 0
    for count in body_counts.tolist():
        out.append(str(count))
        for _ in range(count):
            out.append(body_lines[b])
            out.append(str(num_joints))
            out.extend(joint_lines[b * num_joints:(b + 1) * num_joints])
            b += 1
    return newline.join(out) + newline


def default_body_counts(data: np.ndarray) -> np.ndarray:
    """``(T,)`` bodies per frame of a ``(C, T, V, M)`` array: up to the last non-zero slot."""
    present = rearrange(data != 0, "c t v m -> t m (c v)").any(-1)
    slots = np.arange(1, data.shape[3] + 1)
    return (present * slots).max(axis=1, initial=0).astype(np.int64)


def check_body_counts(data: np.ndarray, body_counts: np.ndarray | None) -> np.ndarray:
    """Validated ``(T,)`` body counts for ``(C, T, V, M)`` data (defaults as above).

    Raises InputError when a count exceeds ``M`` or a slot past its frame's count holds
    data, which the file could not represent.
    """
    if body_counts is None:
        return default_body_counts(data)
    counts = np.asarray(body_counts, dtype=np.int64)
    if counts.shape != (data.shape[1],) or (counts < 0).any() or (counts > data.shape[3]).any():
        raise InputError(f"body_counts must be {data.shape[1]} integers in 0..{data.shape[3]}")
    if (default_body_counts(data) > counts).any():
        raise InputError("data has non-zero bodies in slots past their frame's body count")
    return counts


def slot_bodies(counts: np.ndarray, per_slot: np.ndarray) -> np.ndarray:
    """Gather ``(T, M, ...)`` slots into ``(B, ...)`` bodies in file order."""
    return per_slot[_slot_index(counts)]


# --------------------------------------------------------------------------------------
# NTU reader and writer
# --------------------------------------------------------------------------------------


def read_ntu_skeleton(path: str | PathLike) -> SkeletonSequence:
    """Read an NTU RGB+D ``.skeleton`` file.

    Returns a :class:`SkeletonSequence` with ``data`` ``(3, T, 25, M)`` (x, y, z in metres),
    ``M`` the most bodies in any frame, every frame record kept (frames without bodies are
    zero), ``body_ids`` ``(T, M)`` uint64, ``body_info`` ``(T, M, 9)`` (see
    :data:`BODY_INFO_FIELDS`), ``joint_info`` ``(9, T, 25, M)`` (see
    :data:`JOINT_INFO_FIELDS`) and ``meta`` from the file name when it follows the
    ``SsssCcccPpppRrrrAaaa`` scheme.

    Raises DataFormatError for any deviation from the grammar (see :func:`parse_body_frames`).
    """
    frames = parse_body_frames(path, NTU_GRAMMAR)
    joints = frames.to_slots(frames.joints.astype(np.float32))  # (T, M, V, 12)
    path = Path(path)
    name = path.name.removesuffix(".skeleton")
    return SkeletonSequence(
        data=np.ascontiguousarray(rearrange(joints[..., :3], "t m v c -> c t v m")),
        layout="ntu25",
        name=name,
        source=path,
        meta=_name_meta(name),
        body_counts=frames.body_counts,
        body_ids=frames.to_slots(frames.body_ids),
        body_info=frames.to_slots(frames.body_values.astype(np.float32)),
        joint_info=np.ascontiguousarray(rearrange(joints[..., 3:], "t m v k -> k t v m")),
    )


def write_ntu_skeleton(
    path: str | PathLike,
    data: SkeletonSequence | np.ndarray,
    *,
    body_counts: np.ndarray | None = None,
    body_ids: np.ndarray | None = None,
    body_info: np.ndarray | None = None,
    joint_info: np.ndarray | None = None,
    newline: str = "\r\n",
) -> Path:
    """Write a valid NTU ``.skeleton`` file; :func:`read_ntu_skeleton` gives the values back.

    Args:
        path: file to write.
        data: ``(3, T, 25, M)`` x, y, z, or a :class:`SkeletonSequence` whose per-body arrays
            are used where the keyword arguments are ``None``.
        body_counts: ``(T,)`` bodies to write per frame; default: up to each frame's last
            non-zero slot (an all-zero frame gets 0 bodies).
        body_ids: ``(T, M)`` integer IDs; default ``DEFAULT_BODY_ID + m`` for slot ``m``.
        body_info: ``(T, M, 9)`` fields after the ID; default: zeros, tracking state 2.
        joint_info: ``(9, T, 25, M)`` fields after x, y, z; default: zeros, tracking state 2.
        newline: line end; the real files use CRLF.

    Floats are written in the shortest form that reads back to the same float32.
    Returns the path written.
    """
    if isinstance(data, SkeletonSequence):
        body_counts = data.body_counts if body_counts is None else body_counts
        body_ids = data.body_ids if body_ids is None else body_ids
        body_info = data.body_info if body_info is None else body_info
        joint_info = data.joint_info if joint_info is None else joint_info
        data = data.data
    data = np.asarray(data)
    if data.ndim != 4 or data.shape[0] != 3 or data.shape[2] != NUM_JOINTS:
        raise InputError(f"data must be (3, T, {NUM_JOINTS}, M), got {data.shape}")
    _, num_frames, _, num_slots = data.shape
    counts = check_body_counts(data, body_counts)
    if body_ids is None:
        body_ids = np.broadcast_to(DEFAULT_BODY_ID + np.arange(num_slots, dtype=np.uint64), (num_frames, num_slots))
    if body_info is None:
        body_info = np.zeros((num_frames, num_slots, len(BODY_INFO_FIELDS)))
        body_info[..., 8] = 2
    if joint_info is None:
        joint_info = np.zeros((len(JOINT_INFO_FIELDS), num_frames, NUM_JOINTS, num_slots))
        joint_info[8] = 2
    shapes = {
        "body_ids": (np.asarray(body_ids), (num_frames, num_slots)),
        "body_info": (np.asarray(body_info), (num_frames, num_slots, len(BODY_INFO_FIELDS))),
        "joint_info": (np.asarray(joint_info), (len(JOINT_INFO_FIELDS), num_frames, NUM_JOINTS, num_slots)),
    }
    for key, (array, shape) in shapes.items():
        if array.shape != shape:
            raise InputError(f"{key} must have shape {shape}, got {array.shape}")
    ids = slot_bodies(counts, np.asarray(body_ids, dtype=np.uint64)).astype(str)
    info = _format_numbers(slot_bodies(counts, np.asarray(body_info)), NTU_GRAMMAR.body_int_fields)
    body_lines = [" ".join(row) for row in np.column_stack([ids, info]).tolist()]
    columns = np.concatenate([data, np.asarray(joint_info)], axis=0)
    per_slot = rearrange(columns, "k t v m -> t m v k")  # k: the 12 joint-line fields
    fields = _format_numbers(slot_bodies(counts, per_slot), NTU_GRAMMAR.joint_int_fields)
    joint_lines = [" ".join(row) for row in fields.reshape(-1, fields.shape[-1]).tolist()]
    path = Path(path)
    with open(path, "w", encoding="ascii", newline="") as f:
        f.write(format_body_frames(counts, body_lines, joint_lines, NUM_JOINTS, newline))
    return path


# --------------------------------------------------------------------------------------
# Sample names, missing samples, splits
# --------------------------------------------------------------------------------------


class NTUSampleName(NamedTuple):
    """The fields of an NTU sample name ``SsssCcccPpppRrrrAaaa`` (all 1-based)."""

    setup: int
    camera: int
    performer: int
    replication: int
    action: int

    @property
    def label(self) -> int:
        """0-based class index, ``action - 1``."""
        return self.action - 1

    @property
    def name(self) -> str:
        return (f"S{self.setup:03d}C{self.camera:03d}P{self.performer:03d}"
                f"R{self.replication:03d}A{self.action:03d}")

    def as_dict(self) -> dict[str, int]:
        """The five fields and ``label``."""
        return {key: getattr(self, key) for key in (*_NAME_FIELDS, "label")}


def _stem(name: str | PathLike) -> str:
    return os.path.basename(os.fspath(name)).removesuffix(".skeleton")


def parse_ntu_name(name: str | PathLike) -> NTUSampleName:
    """Fields of ``SsssCcccPpppRrrrAaaa[.skeleton]`` (a directory part is ignored).

    Raises DataFormatError if the name does not follow the scheme.
    """
    match = _NAME_RE.match(_stem(name))
    if match is None:
        raise DataFormatError(f"{name}: not an NTU sample name (expected SsssCcccPpppRrrrAaaa)")
    return NTUSampleName(*map(int, match.groups()))


def _name_meta(name: str) -> dict:
    try:
        return parse_ntu_name(name).as_dict()
    except DataFormatError:
        logger.debug("%s does not follow the NTU naming scheme; no metadata", name)
        return {}


def read_sample_list(path: str | PathLike) -> list[str]:
    """Sample names listed in a text file, one per line.

    Lines that are not a bare ``SsssCcccPpppRrrrAaaa`` after stripping (the header of the
    official missing-sample lists, blank lines) are skipped.
    """
    text = Path(path).read_text(encoding="utf-8", errors="replace")
    return [line.strip() for line in text.splitlines() if _NAME_RE.match(line.strip())]


_MISSING_FILES = {"ntu60": "ntu60_missing_skeletons.txt", "ntu120": "ntu120_missing_skeletons.txt"}


@functools.cache
def missing_samples(dataset: str = "ntu120") -> frozenset[str]:
    """The official samples with missing or incomplete skeletons (302 for ``"ntu60"``, 535 for ``"ntu120"``)."""
    if dataset not in _MISSING_FILES:
        raise ConfigError(f"unknown NTU dataset {dataset!r}; expected 'ntu60' or 'ntu120'")
    resource = resources.files(__package__).joinpath("resources").joinpath(_MISSING_FILES[dataset])
    with resources.as_file(resource) as file:
        return frozenset(read_sample_list(file))


NTU60_XSUB_TRAIN_PERFORMERS = frozenset(
    (1, 2, 4, 5, 8, 9, 13, 14, 15, 16, 17, 18, 19, 25, 27, 28, 31, 34, 35, 38))
NTU120_XSUB_TRAIN_PERFORMERS = NTU60_XSUB_TRAIN_PERFORMERS | frozenset(
    (45, 46, 47, 49, 50, 52, 53, 54, 55, 56, 57, 58, 59, 70, 74, 78, 80, 81, 82, 83, 84, 85, 86, 89, 91, 92, 93,
     94, 95, 97, 98, 100, 103))
XVIEW_TRAIN_CAMERAS = frozenset((2, 3))
#: The official benchmarks: dataset and protocol.
BENCHMARKS = ("ntu60-xsub", "ntu60-xview", "ntu120-xsub", "ntu120-xset")
NTU60_MAX_SETUP = 17


def _check_benchmark(benchmark: str) -> tuple[str, str]:
    if benchmark not in BENCHMARKS:
        raise ConfigError(f"unknown NTU benchmark {benchmark!r}; expected one of {', '.join(BENCHMARKS)}")
    dataset, protocol = benchmark.split("-")
    return dataset, protocol


def is_training_sample(name: str | PathLike | NTUSampleName, benchmark: str) -> bool:
    """Whether a sample is in the training part of ``benchmark`` (see :data:`BENCHMARKS`).

    xsub: the performer is in the dataset's training-subject list; xview: camera 2 or 3;
    xset: an even setup number.
    """
    _, protocol = _check_benchmark(benchmark)
    fields = name if isinstance(name, NTUSampleName) else parse_ntu_name(name)
    if protocol == "xview":
        return fields.camera in XVIEW_TRAIN_CAMERAS
    if protocol == "xset":
        return fields.setup % 2 == 0
    subjects = NTU60_XSUB_TRAIN_PERFORMERS if benchmark == "ntu60-xsub" else NTU120_XSUB_TRAIN_PERFORMERS
    return fields.performer in subjects


def split_ntu_samples(
    names: Iterable[str | PathLike], benchmark: str, *, drop_missing: bool = True
) -> dict[str, list]:
    """Split sample names (or file paths) into ``{"train": [...], "test": [...]}``.

    Items keep their order and type. Samples outside the dataset (setups above 17 for
    NTU-60) and, with ``drop_missing``, the official missing samples are left out; the
    numbers left out are logged. Raises DataFormatError for an item that is not an NTU name.
    """
    dataset, _ = _check_benchmark(benchmark)
    missing = missing_samples(dataset) if drop_missing else frozenset()
    out: dict[str, list] = {"train": [], "test": []}
    outside = dropped = 0
    for item in names:
        fields = parse_ntu_name(item)
        if dataset == "ntu60" and fields.setup > NTU60_MAX_SETUP:
            outside += 1
        elif fields.name in missing:
            dropped += 1
        else:
            out["train" if is_training_sample(fields, benchmark) else "test"].append(item)
    logger.info("%s: %d train, %d test; left out %d missing and %d non-%s samples",
                benchmark, len(out["train"]), len(out["test"]), dropped, outside, dataset)
    return out
