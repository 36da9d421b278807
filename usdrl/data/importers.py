"""Your own data as a prepared dataset: a folder of keypoint files, one per clip.

:func:`prepare_folder` (``usdrl prepare folder RAW OUT``) reads every ``.npy``, ``.npz`` and
``.json`` file below ``RAW`` (:func:`read_keypoint_file`), labels each clip from a CSV
(``clip,label``) or from its sub-folder, splits the clips by a CSV (``clip,split``) or by a
seeded ratio per class, and writes the prepared format the tasks read
(:mod:`usdrl.data.prepared`), with the class names in the manifest. Keypoints of any
registered format (:mod:`usdrl.keypoints`), 2D or 3D, any number of persons and frames;
the preprocessing follows the data: 2D keypoints are divided by the image size and get a
score (or zero) channel, as pyskl's 2D data; 3D ones keep the 2 most energetic persons, get
empty frames filled and are view-aligned (centre joint, shoulders onto +x; the ``ntu``/``uav``
recipes for those layouts). Clips of another format than the target ``layout`` are converted
through joint names (:func:`~usdrl.keypoints.convert_keypoints`).

A file that cannot be used (unreadable, wrong shape, no label, ...) is skipped with a warning
naming it (and the line, for JSON and CSV files); the manifest's ``skipped`` entry lists every
skipped clip with its reason. As every ``usdrl prepare``, ``OUT`` appears only when complete.
"""

import csv
import json
import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from einops import rearrange

from ..errors import ConfigError, DataFormatError
from ..keypoints import JointSource, convert_keypoints, get_format, list_formats
from ..skeleton import get_layout
from .prepared import (
    CLIPS,
    NUM_CHANNELS,
    NUM_PERSONS,
    Recipe2D,
    Recipe3D,
    _check_output,
    _default_workers,
    _describe,
    _Plan,
    _run_tasks,
    _SplitPlan,
    _write_plan,
)
from .preprocess import PADDINGS, AlignmentRecipe, resample

if TYPE_CHECKING:
    from ..keypoints.tracking import Track

logger = logging.getLogger(__name__)

KEYPOINT_SUFFIXES = (".npy", ".npz", ".json")
#: Alignment of 3D data with the layouts that have a named recipe (:data:`~usdrl.data.ALIGNMENT_RECIPES`).
_NAMED_ALIGNMENTS = {"ntu25": "ntu", "uav17": "uav"}


@dataclass(frozen=True)
class KeypointClip:
    """The content of one keypoint file.

    Attributes:
        keypoints: ``(M, T, V, C)`` float32, persons, frames, joints, channels (coordinates, then
            a score when ``C`` is the format's dimensions + 1). Non-finite values mark absent joints.
        scores: ``(M, T, V)`` float32 confidences given apart from the keypoints, or None.
        image_shape: ``(height, width)`` of the images, or None.
        format: the keypoint format the file names, or None.
    """

    keypoints: np.ndarray
    scores: np.ndarray | None = None
    image_shape: tuple[int, int] | None = None
    format: str | None = None


def _array(path: Path, value, what: str) -> np.ndarray:
    try:
        array = np.asarray(value, dtype=np.float32)
    except (TypeError, ValueError):
        raise DataFormatError(f"{path}: {what} must be numbers in a regular nested list or array") from None
    return array


def _fields(path: Path, content: dict) -> KeypointClip:
    """A clip from the fields of an ``.npz`` file or a JSON object."""
    key = next((k for k in ("keypoints", "keypoint") if k in content), None)
    if key is None:
        raise DataFormatError(f"{path}: no 'keypoints' (or 'keypoint') field; found {sorted(content)}")
    keypoints = _array(path, content[key], f"field {key!r}")
    score_key = next((k for k in ("scores", "keypoint_score") if k in content), None)
    scores = None if score_key is None else _array(path, content[score_key], f"field {score_key!r}")
    image_shape = None
    if "img_shape" in content or "image_size" in content:
        key = "img_shape" if "img_shape" in content else "image_size"
        size = np.asarray(content[key]).ravel().tolist()
        if len(size) != 2 or not all(isinstance(s, int | float) and s > 0 for s in size):
            raise DataFormatError(f"{path}: field {key!r} must be two positive numbers, found {content[key]!r}")
        image_shape = (size[0], size[1]) if key == "img_shape" else (size[1], size[0])
    fmt = content.get("format")
    fmt = None if fmt is None else str(np.asarray(fmt).item() if isinstance(fmt, np.ndarray) else fmt)
    return KeypointClip(keypoints, scores, image_shape, fmt)


def read_keypoint_file(path: str | PathLike) -> KeypointClip:
    """Read one clip of keypoints.

    * ``.npy``: the keypoints, ``(T, V, C)`` (one person) or ``(M, T, V, C)``.
    * ``.npz`` or ``.json`` (an object): ``keypoints`` (or pyskl's ``keypoint``) as above;
      optional ``scores`` / ``keypoint_score`` ``(M, T, V)`` (or ``(T, V)``), ``img_shape``
      ``[height, width]`` or ``image_size`` ``[width, height]``, and ``format`` (a registered
      keypoint format name). A JSON file may also hold just the nested list of keypoints.

    Raises DataFormatError naming the file (and the line of a JSON syntax error).
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in KEYPOINT_SUFFIXES:
        raise DataFormatError(f"{path}: expected a {', '.join(KEYPOINT_SUFFIXES)} file")
    if suffix == ".json":
        try:
            content = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise DataFormatError(f"{path}, line {exc.lineno}: not valid JSON ({exc.msg})") from None
        except UnicodeDecodeError:
            raise DataFormatError(f"{path}: not UTF-8 text") from None
        clip = _fields(path, content) if isinstance(content, dict) else KeypointClip(_array(path, content, "the "
                                                                                                   "keypoints"))
    else:
        try:
            loaded = np.load(path, allow_pickle=False)
            clip = _fields(path, dict(loaded)) if suffix == ".npz" else KeypointClip(_array(path, loaded, "the array"))
        except (OSError, ValueError, EOFError) as exc:
            if isinstance(exc, DataFormatError):
                raise
            raise DataFormatError(f"{path}: cannot be read as {suffix} ({exc})") from None
    keypoints, scores = clip.keypoints, clip.scores
    if keypoints.ndim == 3:
        keypoints, scores = keypoints[None], None if scores is None else scores[None]
    if keypoints.ndim != 4 or keypoints.shape[1] == 0:
        raise DataFormatError(f"{path}: expected keypoints (T, V, C) or (M, T, V, C) with T >= 1 frames, "
                              f"found shape {clip.keypoints.shape}")
    if scores is not None and scores.shape != keypoints.shape[:3]:
        raise DataFormatError(f"{path}: scores must have shape {keypoints.shape[:3]} (M, T, V), found {scores.shape}")
    return KeypointClip(keypoints, scores, clip.image_shape, clip.format)


def guess_format(num_joints: int, *, where: str = "") -> str:
    """The registered format with ``num_joints`` joints, when exactly one has that count."""
    candidates = [name for name in list_formats() if get_format(name).num_joints == num_joints]
    if len(candidates) != 1:
        found = ", ".join(candidates) or "none"
        raise ConfigError(f"{where}{num_joints} joints fit the keypoint formats: {found}; name the format "
                          f"(--format)")
    return candidates[0]


@dataclass(frozen=True)
class ClipConverter:
    """One keypoint clip -> a model clip ``(3, T, V, 2)`` of ``layout``, the dataset's recipe applied.

    Attributes:
        layout: target layout (a registered keypoint format name).
        dims: 2 or 3: the coordinates every clip of the dataset must have.
        image_shape: ``(height, width)`` for 2D pixel files that do not give their own.
        padding: 2D only: the third channel, ``"confidence"`` or ``"zero"``.
    """

    layout: str
    dims: int
    image_shape: tuple[int, int] | None = None
    padding: str = "confidence"

    @property
    def recipe(self) -> Recipe2D | Recipe3D:
        if self.dims == 2:
            return Recipe2D(self.padding)
        layout = get_layout(self.layout)
        alignment = _NAMED_ALIGNMENTS.get(self.layout) or AlignmentRecipe(
            layout.center_joint, layout.z_axis_joints, layout.x_axis_joints)
        return Recipe3D(alignment, max_candidates=None)

    def coordinates(self, path: Path, clip: KeypointClip, fmt: str) -> tuple[np.ndarray, np.ndarray | None]:
        """``(keypoints (M, T, V_layout, dims), scores (M, T, V_layout) or None)`` of a clip in format ``fmt``."""
        channels = clip.keypoints.shape[-1]
        if _coordinates(path, channels, get_format(fmt).dims) != self.dims:
            raise DataFormatError(f"{path}: {channels} channels per joint; this dataset's clips have {self.dims} "
                                  f"coordinates, plus an optional score")
        if channels == self.dims + 1 and clip.scores is not None:
            raise DataFormatError(f"{path}: scores given twice (a last channel and a 'scores' field)")
        scores = clip.keypoints[..., -1] if channels == self.dims + 1 else clip.scores
        out = convert_keypoints(clip.keypoints[..., : self.dims], src=fmt, dst=self.layout, scores=scores,
                                has_scores=False)
        return out.keypoints, out.scores

    def __call__(self, path: Path, clip: KeypointClip, fmt: str) -> np.ndarray:
        keypoints, scores = self.coordinates(path, clip, fmt)
        if self.dims == 3:
            return self.recipe.apply(rearrange(keypoints, "m t v c -> c t v m"))
        if scores is None and self.padding == "confidence":
            raise DataFormatError(f"{path}: 2D keypoints without scores; use padding 'zero' (--padding zero) or "
                                  f"give scores")
        image_shape = clip.image_shape or self.image_shape
        if image_shape is None:
            if get_format(fmt).convention.units != "normalized":
                raise DataFormatError(f"{path}: 2D {fmt} keypoints in pixels need the image size: an 'img_shape' "
                                      f"field or --image-size WIDTH HEIGHT")
            image_shape = (1, 1)
        annotation = {"frame_dir": str(path), "keypoint": keypoints, "img_shape": tuple(image_shape)}
        if scores is not None:
            annotation["keypoint_score"] = scores
        return self.recipe.apply(annotation)


@dataclass(frozen=True)
class _FolderClipTask:
    """One keypoint file -> one clip (run in a worker process)."""

    path: Path
    format: str
    convert: ClipConverter

    def run(self) -> list[tuple[np.ndarray, None]]:
        return [(self.convert(self.path, read_keypoint_file(self.path), self.format), None)]


def _coordinates(path: Path, channels: int, format_dims: int) -> int:
    """Coordinates per joint of a file: the format's dimensions when a score follows them, else 2 or 3."""
    if channels == format_dims + 1:
        return format_dims
    if channels in (2, 3):
        return channels
    raise DataFormatError(f"{path}: {channels} channels per joint; expected x, y (z) and optionally a score")


@dataclass(frozen=True)
class _InspectTask:
    """First pass over one file: ``[(frames, coordinates, format)]``, or ``[(None, reason, None)]``."""

    path: Path
    format: str | None

    def run(self) -> list[tuple]:
        try:
            clip = read_keypoint_file(self.path)
            fmt = self.format or clip.format or guess_format(clip.keypoints.shape[2], where=f"{self.path}: ")
            if clip.format and self.format and clip.format != self.format:
                raise DataFormatError(f"{self.path}: the file says format {clip.format!r}, the dataset is "
                                      f"{self.format!r}")
            expected = get_format(fmt).num_joints
            if clip.keypoints.shape[2] != expected:
                raise DataFormatError(f"{self.path}: {clip.keypoints.shape[2]} joints, format {fmt!r} has {expected}")
            if not np.nan_to_num(clip.keypoints, nan=0.0, posinf=0.0, neginf=0.0).any():
                raise DataFormatError(f"{self.path}: no joint holds a value in any frame")
            dims = _coordinates(self.path, clip.keypoints.shape[3], get_format(fmt).dims)
        except DataFormatError as exc:   # a bad file is skipped; a ConfigError (no format) stops the run
            return [(None, str(exc), None)]
        return [(clip.keypoints.shape[1], dims, fmt)]


def read_clip_table(path: str | PathLike, column: str) -> dict[str, str]:
    """``{clip: value}`` from a two-column CSV ``clip,<column>`` (a header row is optional).

    Raises DataFormatError naming the file and line of a bad or repeated row.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise DataFormatError(f"{path}: not UTF-8 text") from None
    table: dict[str, str] = {}
    for line, row in enumerate(csv.reader(text.splitlines()), start=1):
        if not row or not "".join(row).strip():
            continue
        row = [cell.strip() for cell in row]
        if line == 1 and [cell.lower() for cell in row] == ["clip", column]:
            continue
        if len(row) != 2 or not row[0] or not row[1]:
            raise DataFormatError(f"{path}, line {line}: expected two fields 'clip,{column}', found {row}")
        if row[0] in table:
            raise DataFormatError(f"{path}, line {line}: clip {row[0]!r} is listed twice")
        table[row[0]] = row[1]
    if not table:
        raise DataFormatError(f"{path}: no 'clip,{column}' rows")
    return table


def _lookup(table: dict[str, str], name: str, path: Path) -> str | None:
    """The entry of a clip, by its name (relative path without suffix), file name or stem."""
    for key in (name, path.name, path.stem):
        if key in table:
            return table[key]
    return None


def class_order(labels: list[str]) -> list[str]:
    """Class names in label order: numerically if every label is an integer, else alphabetically."""
    unique = set(labels)
    if all(label.lstrip("-").isdigit() for label in unique):
        return sorted(unique, key=int)
    return sorted(unique)


def ratio_split(names: list[str], labels: list[str], test_ratio: float, seed: int) -> dict[str, str]:
    """``{name: "train" | "test"}``: per class, a seeded shuffle puts ``round(n * test_ratio)`` clips in test."""
    if not 0 <= test_ratio < 1:
        raise ConfigError(f"test_ratio must be in [0, 1), got {test_ratio}")
    rng = np.random.default_rng(seed)
    out = {}
    for label in class_order(labels):
        members = sorted(n for n, lab in zip(names, labels, strict=True) if lab == label)
        order = rng.permutation(len(members))
        num_test = int(round(len(members) * test_ratio))
        for rank, index in enumerate(order):
            out[members[index]] = "test" if rank < num_test else "train"
    return out


def _find_clip_files(raw: Path) -> dict[str, Path]:
    """``{clip name: file}``: every keypoint file below ``raw``, named by its relative path without suffix."""
    if not raw.is_dir():
        raise DataFormatError(f"{raw}: not a folder; expected a folder of {', '.join(KEYPOINT_SUFFIXES)} clip files")
    files: dict[str, Path] = {}
    for path in sorted(p for p in raw.rglob("*") if p.is_file() and p.suffix.lower() in KEYPOINT_SUFFIXES):
        name = path.relative_to(raw).with_suffix("").as_posix()
        if name in files:
            raise DataFormatError(f"{raw}: two files hold clip {name!r}: {files[name]} and {path}")
        files[name] = path
    if not files:
        raise DataFormatError(f"{raw}: no {', '.join(KEYPOINT_SUFFIXES)} files found (searched recursively)")
    return files


def prepare_folder(
    raw: str | PathLike,
    out: str | PathLike,
    *,
    format: str | None = None,
    layout: str | None = None,
    labels: str | PathLike | None = None,
    splits: str | PathLike | None = None,
    test_ratio: float = 0.2,
    seed: int = 0,
    image_size: tuple[int, int] | None = None,
    padding: str = "confidence",
    workers: int | None = None,
    overwrite: bool = False,
    show_progress_bar: bool | None = None,
) -> Path:
    """Prepare a folder of keypoint clip files (see the module notes).

    Args:
        raw: folder of ``.npy`` / ``.npz`` / ``.json`` files (:func:`read_keypoint_file`),
            searched recursively; a clip's name is its path below ``raw`` without suffix.
        out: the prepared dataset folder to create.
        format: keypoint format of the files (:func:`~usdrl.keypoints.list_formats`); default:
            each file's ``format`` field, else the only format with the file's joint count.
        layout: layout of the prepared data; default: the format of the first file. Other
            formats are converted through joint names.
        labels: CSV ``clip,label`` (clip: name, file name or stem); default: the first
            sub-folder of each clip's path is its class.
        splits: CSV ``clip,split`` with any split names; default: a seeded per-class split
            into ``train`` and ``test`` with ``test_ratio`` of each class in ``test``.
        test_ratio, seed: the default split.
        image_size: ``(width, height)`` of 2D pixel keypoints whose files give none.
        padding: 2D only: third channel ``"confidence"`` (the scores) or ``"zero"``.
        workers: processes reading files (default: CPU count, at most 8).
        overwrite: replace an existing prepared dataset at ``out``.
        show_progress_bar: tqdm bars; ``None`` follows the log level.

    Returns ``out``. The manifest adds ``class_names``, ``keypoint_formats`` (the files' formats
    and counts) and ``joint_sources`` (which target joints are exact, stand-ins or missing).
    Raises ConfigError or DataFormatError when nothing usable remains; ``out`` is then unchanged.
    """
    raw, out = Path(raw), Path(out)
    if padding not in PADDINGS:
        raise ConfigError(f"unknown padding {padding!r}; expected one of {', '.join(PADDINGS)}")
    for name in (format, layout):
        if name is not None:
            get_format(name)
    workers = _default_workers() if workers is None else int(workers)
    _check_output(out, overwrite)
    files = _find_clip_files(raw)
    skipped: dict[str, str] = {}

    # labels
    label_table = read_clip_table(labels, "label") if labels is not None else None
    label_of: dict[str, str] = {}
    for name, path in files.items():
        label = _lookup(label_table, name, path) if label_table is not None else (
            name.split("/")[0] if "/" in name else None)
        if label is None:
            skipped[name] = f"{path}: no label ({'not in ' + str(labels) if labels else 'not in a class sub-folder'})"
        else:
            label_of[name] = label

    # first pass: read every labelled file once
    inspected = dict(zip(label_of, (result[0] for result in _run_tasks(
        [_InspectTask(files[name], format) for name in label_of], workers)), strict=True))
    dims_counts = Counter(info[1] for info in inspected.values() if info[0] is not None)
    usable = {}
    if dims_counts:
        dims = 2 if dims_counts[2] >= dims_counts[3] else 3
        for name, (frames, detail, fmt) in inspected.items():
            if frames is None:
                skipped[name] = detail
            elif detail != dims:
                skipped[name] = f"{files[name]}: {detail}D keypoints in a dataset of {dims}D clips"
            else:
                usable[name] = (frames, fmt)
    else:
        skipped.update({name: detail for name, (_, detail, _) in inspected.items()})
    if not usable:
        reasons = "; ".join(list(skipped.values())[:3])
        raise DataFormatError(f"{raw}: no usable clip ({len(skipped)} skipped, e.g. {reasons})")

    # splits
    names = sorted(usable)
    if splits is not None:
        split_table = read_clip_table(splits, "split")
        split_of = {}
        for name in names:
            split = _lookup(split_table, name, files[name])
            if split is None:
                skipped[name] = f"{files[name]}: not in {splits}"
            else:
                split_of[name] = split
        names = [n for n in names if n in split_of]
        benchmark = Path(splits).name
    else:
        split_of = ratio_split(names, [label_of[n] for n in names], test_ratio, seed)
        benchmark = f"test ratio {test_ratio:g}, seed {seed}"
    if not names:
        raise DataFormatError(f"{raw}: no clip is in a split ({splits})")

    first_format = usable[names[0]][1]
    layout = layout or first_format
    convert = ClipConverter(layout, dims, None if image_size is None else (image_size[1], image_size[0]), padding)
    class_names = class_order([label_of[n] for n in names])
    formats = Counter(usable[n][1] for n in names)
    split_names = sorted(set(split_of[n] for n in names), key=lambda s: (s != "train", s))
    plan = _Plan(layout=layout, num_classes=len(class_names), recipe=_describe(convert.recipe),
                 splits={split: _SplitPlan(CLIPS) for split in split_names})
    for name in names:
        frames, fmt = usable[name]
        plan.add(_FolderClipTask(files[name], fmt, convert),
                 [(split_of[name], name, class_names.index(label_of[name]), frames)])
    plan.skipped = dict(sorted(skipped.items()))
    plan.extra = {
        "class_names": class_names,
        "keypoint_formats": dict(formats),
        "joint_sources": {fmt: _joint_sources(fmt, layout) for fmt in formats},
    }
    for name, reason in plan.skipped.items():
        logger.warning("skipped %s: %s", name, reason)
    return _write_plan(plan, "folder", benchmark, raw, out, workers=workers, overwrite=overwrite,
                       show_progress_bar=show_progress_bar)


def _joint_sources(src: str, dst: str) -> dict[str, list[str]]:
    """``{"stand_in": [...], "missing": [...]}``: the joints of ``dst`` that ``src`` does not give exactly."""
    mask = convert_keypoints(np.zeros((get_format(src).num_joints, 2), np.float32), src=src, dst=dst).mask
    names = get_format(dst).joint_names
    return {kind: [names[j] for j in np.flatnonzero(mask == value)]
            for kind, value in (("stand_in", JointSource.STAND_IN), ("missing", JointSource.MISSING))}


def track_inputs(
    tracks: Sequence["Track"],
    *,
    format: str,
    layout: str | None = None,
    num_frames: int = 64,
    image_shape: tuple[int, int] | None = None,
    padding: str = "confidence",
) -> np.ndarray:
    """The per-person path: each track becomes one model input, so a scene with five people gets five rows.

    Args:
        tracks: person tracks (:func:`~usdrl.keypoints.tracking.track_poses`), their poses
            ``(V, C)`` in keypoint format ``format``.
        layout: the model's layout (default: ``format``); other formats are converted by joint names.
        num_frames: frames of each input: the track's frames, first to last seen, linearly resampled
            (frames where the person went unseen count as absent joints, zero).
        image_shape: ``(height, width)`` of 2D pixel keypoints.
        padding: 2D only: third channel ``"confidence"`` or ``"zero"``.

    Returns ``(P, 3, num_frames, V, 2)`` float32: the person in slot 0, slot 1 empty, prepared
    as :func:`prepare_folder` prepares a clip.
    """
    fmt = get_format(format)
    out = []
    for track in tracks:
        keypoints = track.keypoints()[None]                                   # (1, T, V, C)
        dims = _coordinates(Path(f"track {track.track_id}"), keypoints.shape[-1], fmt.dims)
        convert = ClipConverter(layout or format, dims, image_shape, padding)
        clip = convert(Path(f"track {track.track_id}"), KeypointClip(keypoints), format)
        out.append(resample(clip, num_frames))
    if not out:
        return np.zeros((0, NUM_CHANNELS, num_frames, get_layout(layout or format).num_joints, NUM_PERSONS),
                        np.float32)
    return np.stack(out).astype(np.float32)
