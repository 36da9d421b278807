"""Your own data as a prepared dataset: keypoint files, pose-estimator output, pyskl pickles.

* :func:`prepare_folder` (``usdrl prepare folder RAW OUT``): one ``.npy`` / ``.npz`` / ``.json``
  keypoint file per clip (:func:`read_keypoint_file`);
* :func:`prepare_keypoints` (``usdrl prepare keypoints RAW OUT``): COCO results ``.json`` files
  and OpenPose frame folders, one per video, persons tracked where ids are absent
  (:mod:`usdrl.data.estimators`);
* :func:`prepare_pyskl` (``usdrl prepare pyskl ANNOTATIONS.pkl OUT``): any pyskl / MMAction2
  annotation pickle, with its own split lists and label map;
* :func:`track_inputs`: the per-person path, one model input per person track.

:func:`prepare_folder` reads every ``.npy``, ``.npz`` and
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
import tokenize
import zipfile
import zlib
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from os import PathLike
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from einops import rearrange

from ..errors import ConfigError, DataFormatError
from ..keypoints import JointSource, convert_keypoints, get_format, list_formats
from ..skeleton import get_layout
from .prepared.planners import _Plan, _SplitPlan
from .prepared.pool import _run_tasks
from .prepared.recipes import Recipe2D, Recipe3D, _describe
from .prepared.schema import CLIPS, NUM_CHANNELS, NUM_PERSONS
from .prepared.writer import _check_output, _default_workers, _write_plan
from .preprocess import PADDINGS, AlignmentRecipe, resample

if TYPE_CHECKING:
    from ..keypoints.tracking import Track

logger = logging.getLogger(__name__)

KEYPOINT_SUFFIXES = (".npy", ".npz", ".json")
#: What ``RAW`` must be for each own-data source of ``usdrl prepare`` (shown by its ``--help``).
OWN_LAYOUTS = {
    "folder": "a folder of .npy/.npz/.json keypoint files, one per clip, searched recursively; labels from "
              "--labels or each clip's first sub-folder, splits from --splits or --test-ratio/--seed",
    "keypoints": "a folder of COCO results .json files and OpenPose --write_json folders, one per video; labels "
                 "and splits as for folder",
    "pyskl": "a pyskl/MMAction2 annotation pickle (a file); its split lists (--split-lists) and labels "
             "(--label-map for names)",
}
#: What numpy's ``.npy`` header parser and ``zipfile`` raise for a corrupted file.
_CORRUPT_FILE_ERRORS = (OSError, ValueError, EOFError, SyntaxError, tokenize.TokenError, zipfile.BadZipFile,
                        zlib.error)
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
        size = _array(path, content[key], f"field {key!r}").ravel().tolist()
        if len(size) != 2 or not all(np.isfinite(s) and s > 0 for s in size):
            raise DataFormatError(f"{path}: field {key!r} must be two positive numbers, found {content[key]!r}")
        image_shape = (size[0], size[1]) if key == "img_shape" else (size[1], size[0])
    fmt = content.get("format")
    fmt = None if fmt is None else str(np.asarray(fmt).item() if isinstance(fmt, np.ndarray) and fmt.size == 1
                                       else fmt)
    if fmt is not None and fmt not in list_formats():
        raise DataFormatError(f"{path}: field 'format' is {fmt!r}; known formats: {', '.join(list_formats())}")
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
        except DataFormatError:
            raise
        except _CORRUPT_FILE_ERRORS as exc:
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

    def coordinates(self, where: str, clip: KeypointClip, fmt: str) -> tuple[np.ndarray, np.ndarray | None]:
        """``(keypoints (M, T, V_layout, dims), scores (M, T, V_layout) or None)`` of a clip in format ``fmt``."""
        channels = clip.keypoints.shape[-1]
        if _coordinates(where, channels, get_format(fmt).dims) != self.dims:
            raise DataFormatError(f"{where}: {channels} channels per joint; this dataset's clips have {self.dims} "
                                  f"coordinates, plus an optional score")
        if channels == self.dims + 1 and clip.scores is not None:
            raise DataFormatError(f"{where}: scores given twice (a last channel and a 'scores' field)")
        scores = clip.keypoints[..., -1] if channels == self.dims + 1 else clip.scores
        out = convert_keypoints(clip.keypoints[..., : self.dims], src=fmt, dst=self.layout, scores=scores,
                                has_scores=False)
        return out.keypoints, out.scores

    def check_2d(self, where: str, clip: KeypointClip, fmt: str) -> tuple[float, float]:
        """The image shape ``(height, width)`` that 2D ``clip`` is divided by (``(1, 1)`` for normalised
        formats); DataFormatError when it has none, or has no scores for ``padding="confidence"``."""
        if self.padding == "confidence" and clip.scores is None and clip.keypoints.shape[-1] != self.dims + 1:
            raise DataFormatError(f"{where}: 2D keypoints without scores; use padding 'zero' (--padding zero) or "
                                  f"give scores")
        image_shape = clip.image_shape or self.image_shape
        if image_shape is None:
            if get_format(fmt).convention.units != "normalized":
                raise DataFormatError(f"{where}: 2D {fmt} keypoints in pixels need the image size: an 'img_shape' "
                                      f"field or --image-size WIDTH HEIGHT")
            image_shape = (1, 1)
        return tuple(image_shape)

    def __call__(self, where: str, clip: KeypointClip, fmt: str) -> np.ndarray:
        keypoints, scores = self.coordinates(where, clip, fmt)
        if self.dims == 3:
            return self.recipe.apply(rearrange(keypoints, "m t v c -> c t v m"))
        image_shape = self.check_2d(where, clip, fmt)
        annotation = {"frame_dir": where, "keypoint": keypoints, "img_shape": image_shape}
        if scores is not None:
            annotation["keypoint_score"] = scores
        return self.recipe.apply(annotation)


@dataclass(frozen=True)
class _Source:
    """Where one clip comes from: ``reader(item)`` reads it; ``where`` names it in messages (a file, or an
    annotation of a pickle)."""

    where: str
    item: object
    reader: Callable[[object], KeypointClip]

    def read(self) -> KeypointClip:
        return self.reader(self.item)


@dataclass(frozen=True)
class _ClipTask:
    """One source -> one clip (run in a worker process)."""

    source: _Source
    format: str
    convert: ClipConverter

    def run(self) -> list[tuple[np.ndarray, None]]:
        return [(self.convert(self.source.where, self.source.read(), self.format), None)]


def _coordinates(where: str, channels: int, format_dims: int) -> int:
    """Coordinates per joint of a clip: the format's dimensions when a score follows them, else 2 or 3."""
    if channels == format_dims + 1:
        return format_dims
    if channels in (2, 3):
        return channels
    hint = ""
    if channels == format_dims + 2 == 4:
        hint = ("; for x, y, z, score of a 2D format (e.g. MediaPipe image landmarks with their depth) keep x, y and "
                "the score (keypoints[..., [0, 1, 3]]), or give 3D world landmarks (mediapipe33_world)")
    raise DataFormatError(f"{where}: {channels} channels per joint; expected x, y (z) and optionally a score{hint}")


@dataclass(frozen=True)
class _InspectTask:
    """First pass over one source: ``[(frames, coordinates, format, image shape)]`` (the ``(height, width)``
    2D keypoints are divided by, None for 3D), or ``[(None, reason, None, None)]``."""

    source: _Source
    options: "ImportOptions"

    def run(self) -> list[tuple]:
        where, given = self.source.where, self.options.format
        try:
            clip = self.source.read()
            fmt = given or clip.format or guess_format(clip.keypoints.shape[2], where=f"{where}: ")
            if clip.format and given and clip.format != given:
                raise DataFormatError(f"{where}: the file says format {clip.format!r}, the dataset is {given!r}")
            expected = get_format(fmt).num_joints
            if clip.keypoints.shape[2] != expected:
                raise DataFormatError(f"{where}: {clip.keypoints.shape[2]} joints, format {fmt!r} has {expected}")
            if not np.nan_to_num(clip.keypoints, nan=0.0, posinf=0.0, neginf=0.0).any():
                raise DataFormatError(f"{where}: no joint holds a value in any frame")
            dims = _coordinates(where, clip.keypoints.shape[3], get_format(fmt).dims)
            image_shape = None
            if dims == 2:   # what the 2D recipe needs, checked before anything is written
                image_shape = ClipConverter(fmt, 2, self.options.image_shape,
                                            self.options.padding).check_2d(where, clip, fmt)
        except DataFormatError as exc:   # a bad file is skipped; a ConfigError (no format) stops the run
            return [(None, str(exc), None, None)]
        return [(clip.keypoints.shape[1], dims, fmt, image_shape)]


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
    """``{name: "train" | "test"}``: per class, a seeded shuffle puts ``n * test_ratio`` clips (rounded half
    up) in test."""
    if not 0 <= test_ratio < 1:
        raise ConfigError(f"test_ratio must be in [0, 1), got {test_ratio}")
    rng = np.random.default_rng(seed)
    out = {}
    for label in class_order(labels):
        members = sorted(n for n, lab in zip(names, labels, strict=True) if lab == label)
        order = rng.permutation(len(members))
        num_test = int(np.floor(len(members) * test_ratio + 0.5))
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


@dataclass
class _Clips:
    """The clips of a dataset to prepare, before the first pass.

    Attributes:
        sources: ``{name: source}`` of the clips.
        labels: ``{name: label}`` of the labelled ones.
        skipped: ``{name: reason}`` of the clips already left out.
        splits: ``{name: split}``, or None for the seeded ratio split.
        benchmark: what the splits are, for the manifest.
        class_names: the classes in label order, or None to take them from the labels (:func:`class_order`).
    """

    sources: dict[str, _Source]
    labels: dict[str, str]
    skipped: dict[str, str] = field(default_factory=dict)
    splits: dict[str, str] | None = None
    benchmark: str | None = None
    class_names: list[str] | None = None


@dataclass(frozen=True)
class ImportOptions:
    """How :func:`prepare_folder`, :func:`prepare_keypoints` and :func:`prepare_pyskl` read and split clips.

    Attributes:
        format: keypoint format of the clips (:func:`~usdrl.keypoints.list_formats`); default:
            each clip's own (a file's ``format`` field, a pose estimator's joint count), else the
            only format with the clip's joint count.
        layout: layout of the prepared data; default: the format of the first clip. Other formats
            are converted through joint names.
        test_ratio: the default split: per class, this share of the clips (rounded half up) in
            ``test``, the rest in ``train``.
        seed: the seed of the default split.
        image_size: ``(width, height)`` of 2D pixel keypoints whose files give none.
        padding: 2D only: third channel ``"confidence"`` (the scores) or ``"zero"``.
        workers: processes reading files (default: CPU count, at most 8).
        overwrite: replace an existing prepared dataset at ``out``.
        show_progress_bar: tqdm bars; ``None`` follows the log level.
    """

    format: str | None = None
    layout: str | None = None
    test_ratio: float = 0.2
    seed: int = 0
    image_size: tuple[int, int] | None = None
    padding: str = "confidence"
    workers: int | None = None
    overwrite: bool = False
    show_progress_bar: bool | None = None

    @property
    def image_shape(self) -> tuple[int, int] | None:
        """``(height, width)`` from ``image_size``."""
        return None if self.image_size is None else (self.image_size[1], self.image_size[0])

    def check(self) -> None:
        if self.padding not in PADDINGS:
            raise ConfigError(f"unknown padding {self.padding!r}; expected one of {', '.join(PADDINGS)}")
        for name in (self.format, self.layout):
            if name is not None:
                get_format(name)


def _prepare_clips(source: str, raw: Path, out: Path, clips: _Clips, options: ImportOptions, *,
                   parallel: bool = True) -> Path:
    """Inspect every labelled clip, split, plan and write the prepared dataset (see the module notes).

    The dataset's clips are 2D or 3D as most of them are; a clip of the other kind is skipped."""
    workers = _default_workers() if options.workers is None else int(options.workers)
    if not parallel:
        workers = 1
    skipped = dict(clips.skipped)
    wanted = [n for n in sorted(clips.labels) if clips.splits is None or n in clips.splits]
    inspected = dict(zip(wanted, (result[0] for result in _run_tasks(
        [_InspectTask(clips.sources[name], options) for name in wanted], workers)), strict=True))
    dims_counts = Counter(info[1] for info in inspected.values() if info[0] is not None)
    dims = 2 if dims_counts[2] >= dims_counts[3] else 3
    usable = {}
    for name, (frames, detail, fmt, image_shape) in inspected.items():
        if frames is None:
            skipped[name] = detail
        elif detail != dims:
            skipped[name] = f"{clips.sources[name].where}: {detail}D keypoints in a dataset of {dims}D clips"
        else:
            usable[name] = (frames, fmt, image_shape)
    if not usable:
        reasons = "; ".join(list(skipped.values())[:3])
        raise DataFormatError(f"{raw}: no usable clip ({len(skipped)} skipped, e.g. {reasons})")
    names = sorted(usable)
    split_of = clips.splits or ratio_split(names, [clips.labels[n] for n in names], options.test_ratio, options.seed)
    benchmark = clips.benchmark or f"test ratio {options.test_ratio:g}, seed {options.seed}"

    layout = options.layout or usable[names[0]][1]
    convert = ClipConverter(layout, dims, options.image_shape, options.padding)
    class_names = clips.class_names or class_order([clips.labels[n] for n in names])
    formats = Counter(usable[n][1] for n in names)
    split_names = sorted({split_of[n] for n in names}, key=lambda s: (s != "train", s))
    plan = _Plan(layout=layout, num_classes=len(class_names), recipe=_describe(convert.recipe),
                 splits={split: _SplitPlan(CLIPS) for split in split_names}, parallel=parallel)
    for name in names:
        frames, fmt, image_shape = usable[name]
        sample = (split_of[name], name, class_names.index(clips.labels[name]), frames)
        plan.add(_ClipTask(clips.sources[name], fmt, convert), [sample if image_shape is None else
                                                                (*sample, image_shape)])
    plan.skipped = dict(sorted(skipped.items()))
    plan.extra = {
        "class_names": class_names,
        "keypoint_formats": dict(formats),
        "joint_sources": {fmt: _joint_sources(fmt, layout) for fmt in formats},
    }
    for name, reason in plan.skipped.items():
        logger.warning("skipped %s: %s", name, reason)
    return _write_plan(plan, source, benchmark, raw, out, workers=workers, overwrite=options.overwrite,
                       show_progress_bar=options.show_progress_bar)


def _labels_and_splits(paths: dict[str, Path], reader: Callable[[Path], KeypointClip],
                       labels: str | PathLike | None, splits: str | PathLike | None) -> _Clips:
    """Labels from a ``clip,label`` CSV (else the first sub-folder) and splits from a ``clip,split`` CSV
    for clips read from ``paths`` (``{name: file or folder}``); the rest skipped with the reason."""
    label_table = read_clip_table(labels, "label") if labels is not None else None
    split_table = read_clip_table(splits, "split") if splits is not None else None
    clips = _Clips({}, {}, splits=None if splits is None else {},
                   benchmark=None if splits is None else Path(splits).name)
    for name, path in paths.items():
        clips.sources[name] = _Source(str(path), path, reader)
        if label_table is not None:
            label = _lookup(label_table, name, path)
        else:
            label = name.split("/")[0] if "/" in name else None
        if label is None:
            where = f"not in {labels}" if labels else "not in a class sub-folder"
            clips.skipped[name] = f"{path}: no label ({where})"
            continue
        if split_table is not None:
            split = _lookup(split_table, name, path)
            if split is None:
                clips.skipped[name] = f"{path}: not in {splits}"
                continue
            clips.splits[name] = split
        clips.labels[name] = label
    return clips


def prepare_folder(
    raw: str | PathLike,
    out: str | PathLike,
    *,
    labels: str | PathLike | None = None,
    splits: str | PathLike | None = None,
    options: ImportOptions | None = None,
    **option_fields,
) -> Path:
    """Prepare a folder of keypoint clip files (see the module notes).

    Args:
        raw: folder of ``.npy`` / ``.npz`` / ``.json`` files (:func:`read_keypoint_file`),
            searched recursively; a clip's name is its path below ``raw`` without suffix.
        out: the prepared dataset folder to create.
        labels: CSV ``clip,label`` (clip: name, file name or stem); default: the first
            sub-folder of each clip's path is its class.
        splits: CSV ``clip,split`` with any split names; default: the seeded ratio split of
            :class:`ImportOptions`.
        options: :class:`ImportOptions`; or give its fields as keywords (``format="coco17"``).

    Returns ``out``. The manifest adds ``class_names``, ``keypoint_formats`` (the clips' formats
    and counts) and ``joint_sources`` (which target joints are stand-ins or missing).
    Raises ConfigError or DataFormatError when nothing usable remains; ``out`` is then unchanged.
    """
    options = _options(options, option_fields)
    raw, out = Path(raw), Path(out)
    _check_output(out, options.overwrite)
    clips = _labels_and_splits(_find_clip_files(raw), read_keypoint_file, labels, splits)
    return _prepare_clips("folder", raw, out, clips, options)


def prepare_keypoints(
    raw: str | PathLike,
    out: str | PathLike,
    *,
    labels: str | PathLike | None = None,
    splits: str | PathLike | None = None,
    options: ImportOptions | None = None,
    **option_fields,
) -> Path:
    """Prepare what pose estimators wrote: COCO results ``.json`` files and OpenPose frame folders,
    one video each (:mod:`usdrl.data.estimators`), persons tracked where the detections have no ids.

    Arguments as :func:`prepare_folder`; a clip is named by its path below ``raw`` (an OpenPose
    folder's path, a results file's path without ``.json``).
    """
    from .estimators import find_pose_estimator_outputs, read_pose_estimator_output

    options = _options(options, option_fields)
    raw, out = Path(raw), Path(out)
    _check_output(out, options.overwrite)
    clips = _labels_and_splits(find_pose_estimator_outputs(raw), read_pose_estimator_output, labels, splits)
    return _prepare_clips("keypoints", raw, out, clips, options)


def _annotation_clip(annotation: dict) -> KeypointClip:
    """A pyskl annotation's ``keypoint`` ``(M, T, V, C)``, ``keypoint_score`` and ``img_shape`` as a clip."""
    shape = annotation.get("img_shape")
    return KeypointClip(np.asarray(annotation["keypoint"], np.float32),
                        None if annotation.get("keypoint_score") is None else
                        np.asarray(annotation["keypoint_score"], np.float32),
                        None if shape is None else tuple(shape))


#: Format of pyskl keypoints by (joints, coordinates) when not named: its 2D COCO and 3D NTU pickles.
PYSKL_FORMATS = {(17, 2): "coco17", (25, 3): "ntu25"}


def prepare_pyskl(
    annotations: str | PathLike,
    out: str | PathLike,
    *,
    split_lists: Sequence[str] | None = None,
    label_map: str | PathLike | None = None,
    options: ImportOptions | None = None,
    **option_fields,
) -> Path:
    """Prepare any pyskl / MMAction2 skeleton annotation pickle, 2D or 3D, with its own splits and labels.

    Args:
        annotations: the pickle (read by the restricted unpickler: numpy and builtin types only).
        out: the prepared dataset folder to create.
        split_lists: the pickle's ``split`` lists to write, each as a split of that name
            (default: all; e.g. ``["xsub_train", "xsub_val"]`` of an NTU pickle, whose other lists
            hold the same clips again). Without split lists: the seeded ratio split.
        label_map: a text file with one class name per line (MMAction2's label maps): line ``k``
            names label ``k``; default: the labels' numbers.
        options: :class:`ImportOptions` (or its fields as keywords); the format defaults to COCO-17
            for ``(M, T, 17, 2)`` keypoints and NTU-25 for ``(M, T, 25, 3)``.

    An annotation that is malformed, has no ``label`` or no ``keypoint`` is skipped with the reason.
    """
    from ._pickle import restricted_load
    from .pyskl import _check_annotation

    options = _options(options, option_fields)
    path, out = Path(annotations), Path(out)
    _check_output(out, options.overwrite)
    content = restricted_load(path)
    if isinstance(content, list):
        content = {"split": {}, "annotations": content}
    if not isinstance(content, dict) or not isinstance(content.get("annotations"), list):
        raise DataFormatError(f"{path}: expected a dict with an 'annotations' list or a list of annotations")
    lists = content.get("split") or {}
    chosen = list(lists) if split_lists is None else list(split_lists)
    unknown = [name for name in chosen if name not in lists]
    if unknown:
        raise ConfigError(f"{path} has no split list {unknown}; it has {sorted(lists) or 'none'}")
    split_of: dict[str, str] = {}
    for split in chosen:
        for name in lists[split]:
            if name in split_of:
                raise ConfigError(f"{path}: {name} is in both {split_of[name]!r} and {split!r}; choose split "
                                  f"lists that do not overlap (--split-lists)")
            split_of[name] = split
    names = None
    if label_map is not None:
        names = [line.strip() for line in Path(label_map).read_text(encoding="utf-8").splitlines()]
        while names and not names[-1]:
            names.pop()
    clips = _Clips({}, {}, splits=split_of if chosen else None, benchmark=",".join(chosen) or None)
    labels = {}
    for index, annotation in enumerate(content["annotations"]):
        name = annotation.get("frame_dir") if isinstance(annotation, dict) else None
        name = name if isinstance(name, str) else f"annotations[{index}]"
        where = f"{path}: {name}"
        try:
            _check_annotation(str(path), index, annotation)
            if name in clips.sources:
                raise DataFormatError(f"{where}: a second annotation with this frame_dir")
            if "label" not in annotation or not isinstance(annotation.get("keypoint"), np.ndarray):
                raise DataFormatError(f"{where}: no 'label' or no 'keypoint' array")
            if names is not None and annotation["label"] >= len(names):
                raise DataFormatError(f"{where}: label {annotation['label']} has no line in {label_map}")
        except DataFormatError as exc:
            clips.skipped[name] = str(exc)
            continue
        if chosen and name not in split_of:
            clips.skipped[name] = f"{where}: in none of the split lists {chosen}"
            continue
        clips.sources[name] = _Source(where, annotation, _annotation_clip)
        labels[name] = int(annotation["label"])
    if not labels:
        raise DataFormatError(f"{path}: no usable annotation ({len(clips.skipped)} skipped)")
    clips.class_names = names or [str(k) for k in range(max(labels.values()) + 1)]
    clips.labels = {name: clips.class_names[label] for name, label in labels.items()}
    if len(set(clips.class_names)) != len(clips.class_names):
        raise DataFormatError(f"{label_map}: class names repeat")
    if options.format is None:
        first = next(iter(clips.sources.values())).item["keypoint"]
        options = replace(options, format=PYSKL_FORMATS.get(first.shape[2:]))
    return _prepare_clips("pyskl", path, out, clips, options, parallel=False)


def _options(options: ImportOptions | None, fields: dict) -> ImportOptions:
    if options is not None and fields:
        raise ConfigError(f"give options or its fields ({', '.join(fields)}), not both")
    options = options or ImportOptions(**fields)
    options.check()
    return options


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
    pairs: Sequence[tuple[int, int]] | None = None,
) -> np.ndarray:
    """The per-person path: each track (or each pair of interacting tracks) becomes one model input,
    so a scene with five people gets five rows.

    Args:
        tracks: person tracks (:func:`~usdrl.keypoints.tracking.track_poses`), their poses
            ``(V, C)`` in keypoint format ``format``.
        layout: the model's layout (default: ``format``); other formats are converted by joint names.
        num_frames: frames of each input: the track's frames, first to last seen, linearly resampled
            (frames where the person went unseen count as absent joints, zero).
        image_shape: ``(height, width)`` of 2D pixel keypoints.
        padding: 2D only: third channel ``"confidence"`` or ``"zero"``.
        pairs: ``(track id, track id)`` pairs to give as two-person inputs (both persons over the
            frames either is seen, the more energetic in slot 0), instead of one input per track.

    Returns ``(P, 3, num_frames, V, 2)`` float32, one row per track (person in slot 0, slot 1
    empty) or per pair, prepared as :func:`prepare_folder` prepares a clip.
    """
    fmt = get_format(format)
    by_id = {track.track_id: track for track in tracks}
    groups = [[track.track_id] for track in tracks] if pairs is None else [list(pair) for pair in pairs]
    unknown = sorted({i for group in groups for i in group} - set(by_id))
    if unknown:
        raise ConfigError(f"pairs name tracks {unknown}, which are not among the tracks {sorted(by_id)}")
    out = []
    for group in groups:
        members = [by_id[i] for i in group]
        start, stop = min(t.frames[0] for t in members), max(t.frames[-1] for t in members) + 1
        keypoints = np.stack([t.keypoints(start, stop) for t in members])           # (persons, T, V, C)
        where = f"track{'s' if len(group) > 1 else ''} {', '.join(map(str, group))}"
        dims = _coordinates(where, keypoints.shape[-1], fmt.dims)
        convert = ClipConverter(layout or format, dims, image_shape, padding)
        out.append(resample(convert(where, KeypointClip(keypoints), format), num_frames))
    if not out:
        return np.zeros((0, NUM_CHANNELS, num_frames, get_layout(layout or format).num_joints, NUM_PERSONS),
                        np.float32)
    return np.stack(out).astype(np.float32)
