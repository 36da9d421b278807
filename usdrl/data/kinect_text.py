"""The Kinect body-frame text grammar: NTU RGB+D ``.skeleton`` and UAV-Human ``.txt`` files.

One item per line, fields split by whitespace, CRLF or LF::

    <numFrames>
    per frame:   <numBodies>
      per body:  <body line: bodyID + fields>
                 <numJoints>
                 <joint line: fields> x numJoints

A :class:`BodyFrameGrammar` says how many joints and fields each format has (NTU: 25 joints,
10-field body lines, 12-field joint lines; UAV-Human: 17 joints, looser lines).
:func:`parse_body_frames` reads a file strictly into :class:`BodyFrames`;
:func:`format_body_frames` writes the text back. :mod:`usdrl.data.ntu` and
:mod:`usdrl.data.uav` build their readers and writers on these.
"""

from collections.abc import Iterable
from dataclasses import dataclass
from os import PathLike

import numpy as np
from einops import rearrange

from .._text import check_newline, format_error, parse_int, parse_number_lines, parse_number_rows, read_lines
from ..errors import DataFormatError, InputError

_UINT64_LIMIT = 2**64
_INT64_LIMIT = 2**63


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
        body_counts=np.asarray(counts, dtype=np.int64),
        body_ids=np.asarray(ids, dtype=np.uint64),
        body_values=body_values,
        joints=joints.reshape(len(ids), num_joints, joints.shape[1]),
    )


def format_numbers(values: np.ndarray, int_columns: Iterable[int] = ()) -> np.ndarray:
    """``(..., K)`` numbers -> strings: float32 shortest round-trip form, ints for ``int_columns``.

    Raises InputError for a value the readers would refuse (not finite in float32) and for an
    ``int_columns`` value that is not an integer of at most 64 bits.
    """
    values = np.asarray(values)
    with np.errstate(over="ignore"):  # a value beyond float32 becomes inf, refused just below
        single = values.astype(np.float32)
    finite = np.isfinite(single)
    if not finite.all():
        raise InputError(f"values must be finite in float32, found {values[~finite][0]}")
    out = single.astype(str)
    for col in int_columns:
        column = values[..., col]
        exact = (column == np.round(column)) & (column >= -_INT64_LIMIT) & (column < _INT64_LIMIT)
        if not exact.all():
            raise InputError(f"column {col} must hold 64-bit integers, found {column[~exact][0]}")
        out[..., col] = column.astype(np.int64).astype(str)
    return out


def format_body_frames(
    body_counts: np.ndarray, body_lines: list[str], joint_lines: list[str], num_joints: int, newline: str
) -> str:
    """The text of an NTU-style file (``body_lines`` / ``joint_lines`` in file order).

    Raises InputError for a ``newline`` other than LF or CRLF (the readers take no other).
    """
    check_newline(newline)
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

    Raises InputError when a count is not an integer in ``0..M`` (a fractional count is
    refused, not truncated) or a slot past its frame's count holds data, which the file
    could not represent.
    """
    if body_counts is None:
        return default_body_counts(data)
    given = np.asarray(body_counts)
    expected = f"body_counts must be {data.shape[1]} integers in 0..{data.shape[3]}"
    if given.dtype.kind not in "iuf" or given.shape != (data.shape[1],):
        raise InputError(f"{expected}, got shape {given.shape} and dtype {given.dtype}")
    exact = (given >= 0) & (given <= data.shape[3]) & (given == np.round(given))
    if not exact.all():
        raise InputError(f"{expected}, found {given[~exact][0]}")
    counts = given.astype(np.int64)
    if (default_body_counts(data) > counts).any():
        raise InputError("data has non-zero bodies in slots past their frame's body count")
    return counts


def slot_bodies(counts: np.ndarray, per_slot: np.ndarray) -> np.ndarray:
    """Gather ``(T, M, ...)`` slots into ``(B, ...)`` bodies in file order."""
    return per_slot[_slot_index(counts)]
