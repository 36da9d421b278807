"""NTU RGB+D 60/120: raw ``.skeleton`` files, sample names, missing samples and splits.

File grammar (one item per line, fields split by whitespace, CRLF or LF)::

    <numFrames>
    per frame:   <numBodies>
      per body:  <body line: bodyID + 9 fields>
                 <numJoints>                      (25)
                 <joint line: 12 fields> x numJoints

The same container holds UAV-Human skeletons (17 joints, looser lines); the grammar lives in
:mod:`usdrl.data.kinect_text`, shared with :mod:`usdrl.data.uav` (its names stay importable
from here).

Reading keeps every body of every frame. Body slot ``m`` of frame ``t`` is the ``m``-th body
*listed* in that frame, which need not be the same person as slot ``m`` of another frame:
follow ``body_ids`` (17-digit IDs, kept exact as uint64) to track people.
"""

import functools
import logging
import os
import re
from collections.abc import Iterable
from importlib import resources
from os import PathLike
from pathlib import Path
from typing import NamedTuple

import numpy as np
from einops import rearrange

from .._io import atomic_write
from ..errors import ConfigError, DataFormatError, InputError
from .kinect_text import (
    SPARE_BODY_SLOTS,
    BodyFrameGrammar,
    BodyFrames,
    check_body_counts,
    default_body_counts,
    format_body_frames,
    format_numbers,
    parse_body_frames,
    slot_bodies,
)
from .sequence import SkeletonSequence

logger = logging.getLogger(__name__)

__all__ = [
    "BENCHMARKS",
    "BODY_INFO_FIELDS",
    "DEFAULT_BODY_ID",
    "JOINT_INFO_FIELDS",
    "NTU60_MAX_SETUP",
    "NTU60_XSUB_TRAIN_PERFORMERS",
    "NTU120_XSUB_TRAIN_PERFORMERS",
    "NTU_GRAMMAR",
    "NUM_JOINTS",
    "XVIEW_TRAIN_CAMERAS",
    "NTUSampleName",
    "is_training_sample",
    "missing_samples",
    "parse_ntu_name",
    "read_ntu_skeleton",
    "read_sample_list",
    "split_ntu_samples",
    "write_ntu_skeleton",
    # the body-frame grammar of usdrl.data.kinect_text, importable from here as before it moved
    "SPARE_BODY_SLOTS",
    "BodyFrameGrammar",
    "BodyFrames",
    "check_body_counts",
    "default_body_counts",
    "format_body_frames",
    "parse_body_frames",
    "slot_bodies",
]
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

_NAME_RE = re.compile(r"^S(\d{3})C(\d{3})P(\d{3})R(\d{3})A(\d{3})$", re.ASCII)  # int() takes any script's digits
_NAME_FIELDS = ("setup", "camera", "performer", "replication", "action")

NTU_GRAMMAR = BodyFrameGrammar(
    num_joints=NUM_JOINTS, body_fields=(10, 10), body_int_fields=(0, 1, 2, 3, 4, 5, 8), joint_fields=(12, 12),
    joint_int_fields=(11,),
)


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
        body_ids: ``(T, M)`` integer IDs in ``0..2**64 - 1``; default ``DEFAULT_BODY_ID + m`` for
            slot ``m``.
        body_info: ``(T, M, 9)`` fields after the ID; default: zeros, tracking state 2.
        joint_info: ``(9, T, 25, M)`` fields after x, y, z; default: zeros, tracking state 2.
        newline: line end; the real files use CRLF.

    Floats are written in the shortest form that reads back to the same float32.
    Returns the path written. Raises InputError for what the file cannot hold: a shape that
    disagrees, a body count outside ``0..M`` or below a frame's last non-zero slot, a body ID
    outside ``0..2**64 - 1``, a value not finite in float32, or a non-integer in an integer field.
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
    body_ids = shapes["body_ids"][0]
    if body_ids.dtype.kind not in "iuf":
        raise InputError(f"body_ids must be integers in 0..2**64 - 1, got dtype {body_ids.dtype}")
    exact = (body_ids >= 0) & (body_ids < 2**64) & (body_ids == np.round(body_ids))
    if not exact.all():
        raise InputError(f"body_ids must be integers in 0..2**64 - 1, found {body_ids[~exact][0]}")
    ids = slot_bodies(counts, body_ids.astype(np.uint64)).astype(str)
    info = format_numbers(slot_bodies(counts, np.asarray(body_info)), NTU_GRAMMAR.body_int_fields)
    body_lines = [" ".join(row) for row in np.column_stack([ids, info]).tolist()]
    columns = np.concatenate([data, np.asarray(joint_info)], axis=0)
    per_slot = rearrange(columns, "k t v m -> t m v k")  # k: the 12 joint-line fields
    fields = format_numbers(slot_bodies(counts, per_slot), NTU_GRAMMAR.joint_int_fields)
    joint_lines = [" ".join(row) for row in fields.reshape(-1, fields.shape[-1]).tolist()]
    text = format_body_frames(counts, body_lines, joint_lines, NUM_JOINTS, newline)
    return atomic_write(path, lambda tmp: tmp.write_bytes(text.encode("ascii")))


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
