"""Prepared datasets: raw skeleton datasets converted once into memory-mappable arrays.

:func:`prepare_dataset` (``usdrl prepare``) reads a raw dataset, applies its preprocessing
recipe and writes, for one benchmark::

    OUT/manifest.json                 layout, source, benchmark, recipe, counts, shapes, version
    OUT/<split>/data.npy              float32 (N, C, Tmax, V, M), zero after each sample's valid frames
    OUT/<split>/num_frames.npy        int64 (N,) valid frames of each sample
    OUT/<split>/labels.npy            int64 (N,) 0-based class; -1 for untrimmed sequences
    OUT/<split>/names.json            JSON list of the N sample names
    OUT/<split>/frame_labels.npy      int64 (N, Tmax) per-frame labels, -1 after the valid frames
                                      (untrimmed splits only; 0 = background, k = PKU-MMD class k)

with ``C = 3`` channels, ``V`` joints of the layout, ``M = 2`` persons and ``Tmax`` the longest
sample of the split. Splits:

* ``ntu60``, ``ntu120``, ``uav``, ``ntu2d``: ``train`` and ``test``, trimmed clips.
* ``pkummd1``, ``pkummd2``: ``train`` and ``test`` hold the trimmed clips cut from the sequences
  by their label files (one per label line, frames ``[start, end)``, label ``PKU class - 1``,
  51 classes: recognition); ``train_untrimmed`` and ``test_untrimmed`` hold the whole
  sequences with per-frame labels (52 frame classes, 0 = background: detection on phase 1,
  segmentation on phase 2). Both phases get both kinds.

:class:`SkeletonDataset` reads one split lazily (memory maps opened in each process on first
use) and returns model clips ``(C, T, V, M)`` with the chosen temporal sampling.

**Writing.** A first pass lists the samples and their lengths from the files' headers (the
NTU/UAV frame count, the PKU-MMD line count and label files, the pickle's arrays), so that
the arrays can be preallocated (sparse ``.npy`` files made by ``open_memmap``). The second
pass parses and preprocesses the files in a process pool (``workers``, a bounded number of
files in flight) and writes each sample with positional writes into the preallocated
files: the writer's memory holds a few samples, whatever the dataset size (a writable
memory map would count every written page as resident). Everything is written into a
hidden temporary folder beside ``OUT`` that is renamed into place at the end, after the
manifest; a failed or interrupted run removes it, and :func:`read_manifest` refuses any
folder without a complete manifest. A run holds the lock file ``.OUT.lock`` while it writes
(one run per output at a time), so the hidden ``.OUT.tmp-*`` and ``.OUT.old-*`` folders a
killed run leaves are provably stale: the next run into ``OUT`` deletes them, and first puts
back an old dataset that an ``overwrite`` killed between its two renames had moved aside.
"""

import glob
import json
import logging
import os
import shlex
import shutil
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from os import PathLike
from pathlib import Path

import numpy as np
import torch.utils.data
from tqdm.auto import tqdm

from .._io import atomic_write_text
from .._version import __version__
from ..errors import ConfigError, DataFormatError
from ..skeleton import get_layout
from ._text import read_lines
from .ntu import parse_ntu_name, read_ntu_skeleton, split_ntu_samples
from .pkummd import NUM_CLASSES as PKUMMD_CLASSES
from .pkummd import (
    ActionInstance,
    frame_labels,
    parse_pkummd_name,
    read_pkummd_labels,
    read_pkummd_skeleton,
    read_pkummd_split,
)
from .preprocess import (
    PADDINGS,
    align_view,
    center_crop_resize,
    fill_empty_frames,
    observed_length,
    pad_bodies,
    random_crop_resize,
    resample,
    select_bodies,
)
from .pyskl import annotation_to_clip, load_pyskl
from .sequence import SkeletonSequence
from .uav import NUM_CLASSES as UAV_CLASSES
from .uav import parse_uav_name, read_uav_skeleton, split_uav_samples

try:
    import fcntl
except ImportError:  # Windows: outputs are not locked, and what killed runs left is not cleaned
    fcntl = None

logger = logging.getLogger(__name__)

FORMAT = "usdrl-prepared"
FORMAT_VERSION = 1
#: Version of the preprocessing recipes, in the manifest as ``recipe_version`` (absent: 1). 2: the
#: 3D view alignment equals the reference's for every body orientation (bodies facing away differ).
RECIPE_VERSION = 2
MANIFEST = "manifest.json"
NUM_PERSONS = 2
NUM_CHANNELS = 3
#: Label of frames after a sequence's end (and of padded window frames): ignore it in a loss.
IGNORE_LABEL = -1
CLIPS, UNTRIMMED = "clips", "untrimmed"
#: Temporal sampling modes of :class:`SkeletonDataset`.
SAMPLINGS = ("resample", "random_crop", "center_crop", "windows")

#: Benchmarks of each source.
BENCHMARKS = {
    "ntu60": ("xsub", "xview"),
    "ntu120": ("xsub", "xset"),
    "pkummd1": ("xsub", "xview"),
    "pkummd2": ("xsub", "xview"),
    "uav": ("csv1", "csv2"),
    "ntu2d": ("xsub", "xview", "xset"),
}
SOURCES = tuple(BENCHMARKS)

#: What ``RAW`` must be for each source (shown by ``usdrl prepare --help``).
RAW_LAYOUTS = {
    "ntu60": "a folder of NTU RGB+D SsssCcccPpppRrrrAaaa.skeleton files, searched recursively (e.g. the "
             "extracted nturgbd_skeletons_s001_to_s017 archive); the official missing samples are skipped and "
             "only setups S001-S017 are kept",
    "ntu120": "as ntu60, all setups (e.g. both skeleton archives extracted side by side)",
    "pkummd1": "a folder holding one sub-folder whose name contains 'skeleton' (e.g. PKU_Skeleton_Renew/) "
               "and one whose name contains 'label' (e.g. Train_Label_PKU_final/), both of <stem>.txt files, "
               "and, anywhere below, one split file named cross-subject*.txt / cross_subject*.txt (xsub) or "
               "cross-view*.txt / cross_view*.txt (xview), e.g. Split/cross-subject.txt",
    "pkummd2": "as pkummd1, with phase-2 stems AxxNyy-V (e.g. Skeleton_v2/, Label_PKUMMD_v2/, "
               "cross_subject_v2.txt)",
    "uav": "a folder of UAV-Human skeleton .txt files with their original P...A...R..._... names, searched "
           "recursively",
    "ntu2d": "the pyskl pickle ntu60_hrnet.pkl or ntu120_hrnet.pkl (a file); its split lists "
             "<benchmark>_train and <benchmark>_val are used",
}

# A sample as a worker returns it: (data (C, T, V, M) float32, per-frame labels (T,) int64 or None).
_Result = tuple[np.ndarray, np.ndarray | None]


# --------------------------------------------------------------------------------------
# Preprocessing recipes
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Recipe3D:
    """Preprocessing of 3D sequences ``(3, T, V, M')`` -> ``(3, T', V, 2)`` float32.

    Attributes:
        alignment: view-alignment recipe name (``"ntu"`` or ``"uav"``, see :func:`align_view`).
        select_bodies: keep the 2 most energetic of the first ``max_candidates`` body slots
            (otherwise the slots are kept in order, padded to 2).
        max_candidates: body slots considered by the selection.
        max_frames: keep at most this many frames (after body selection), or ``None``.
        fill_empty_frames: apply :func:`fill_empty_frames` (before alignment).
    """

    alignment: str
    select_bodies: bool = True
    max_candidates: int = 4
    max_frames: int | None = None
    fill_empty_frames: bool = True

    def length(self, num_frames: int) -> int:
        """Frames ``T'`` of the result for a sequence of ``num_frames`` frames."""
        return num_frames if self.max_frames is None else min(num_frames, self.max_frames)

    def apply(self, data: np.ndarray) -> np.ndarray:
        """``(3, T, V, M')`` -> ``(3, length(T), V, 2)`` float32."""
        if self.select_bodies:
            data = select_bodies(data, NUM_PERSONS, max_candidates=self.max_candidates)
        else:
            data = pad_bodies(data, NUM_PERSONS)
        data = data[:, : self.length(data.shape[1])]
        if self.fill_empty_frames:
            data = fill_empty_frames(data)
        return align_view(data, self.alignment).astype(np.float32, copy=False)


@dataclass(frozen=True)
class Recipe2D:
    """pyskl 2D annotation -> ``(3, T, 17, 2)`` float32 (see :func:`annotation_to_clip`).

    Attributes:
        padding: third channel: ``"confidence"`` (keypoint scores) or ``"zero"``.
        legacy_2d_norm: reproduce the reference NTU-2D scaling bug instead of x/width, y/height.
    """

    padding: str = "confidence"
    legacy_2d_norm: bool = False

    def apply(self, annotation: dict) -> np.ndarray:
        clip = annotation_to_clip(annotation, padding=self.padding, legacy_2d_norm=self.legacy_2d_norm,
                                  num_persons=NUM_PERSONS)
        return clip.astype(np.float32, copy=False)


def _describe(recipe: Recipe3D | Recipe2D) -> dict:
    """A recipe as a JSON-able dict for the manifest."""
    return {"kind": type(recipe).__name__, **asdict(recipe)}


# --------------------------------------------------------------------------------------
# Tasks: one raw file (or annotation) -> its samples; run in worker processes
# --------------------------------------------------------------------------------------


def _check_has_body(path: Path, data: np.ndarray) -> None:
    if not data.any():
        raise DataFormatError(f"{path}: no frame holds a body; expected at least one valid frame")


@dataclass(frozen=True)
class _SkeletonFileTask:
    """One NTU or UAV-Human skeleton file -> one clip."""

    path: Path
    reader: Callable[[Path], SkeletonSequence]
    recipe: Recipe3D

    def run(self) -> list[_Result]:
        data = self.reader(self.path).data
        _check_has_body(self.path, data)
        return [(self.recipe.apply(data), None)]


@dataclass(frozen=True)
class _PKUMMDTask:
    """One PKU-MMD skeleton file -> its clips ``[start, stop)`` in order, then the whole sequence."""

    path: Path
    instances: tuple[ActionInstance, ...]
    clips: tuple[tuple[int, int], ...]
    clip_recipe: Recipe3D
    sequence_recipe: Recipe3D

    def run(self) -> list[_Result]:
        data = read_pkummd_skeleton(self.path).data
        _check_has_body(self.path, data)
        out: list[_Result] = [(self.clip_recipe.apply(data[:, start:stop]), None) for start, stop in self.clips]
        out.append((self.sequence_recipe.apply(data), frame_labels(self.instances, data.shape[1])))
        return out


@dataclass(frozen=True)
class _AnnotationTask:
    """One pyskl annotation -> one clip."""

    annotation: dict
    recipe: Recipe2D

    def run(self) -> list[_Result]:
        return [(self.recipe.apply(self.annotation), None)]


def _run_task(task) -> list[_Result]:
    return task.run()


def _exit_with_parent(parent: int) -> None:
    """Worker initializer: end the worker once ``parent`` is gone (killed by SIGKILL, say), not wait forever."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, daemon=True).start()


def _run_tasks(tasks: Sequence, workers: int) -> Iterator[list[_Result]]:
    """Results of ``tasks`` in order; with ``workers > 1`` from a process pool, at most 2 per worker in flight."""
    if workers <= 1:
        yield from map(_run_task, tasks)
        return
    pending: deque = deque()
    remaining = iter(tasks)
    with ProcessPoolExecutor(max_workers=workers, initializer=_exit_with_parent, initargs=(os.getpid(),)) as pool:
        try:
            for task in remaining:
                pending.append(pool.submit(_run_task, task))
                if len(pending) >= 2 * workers:
                    break
            while pending:
                result = pending.popleft().result()
                task = next(remaining, None)
                if task is not None:
                    pending.append(pool.submit(_run_task, task))
                yield result
        finally:
            for future in pending:
                future.cancel()


# --------------------------------------------------------------------------------------
# Plans: the first pass, from file headers
# --------------------------------------------------------------------------------------


@dataclass
class _SplitPlan:
    """The samples of one output split, in order."""

    kind: str
    names: list[str] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)
    lengths: list[int] = field(default_factory=list)


@dataclass
class _Plan:
    """What to write: the splits, the tasks with their ``(split, index)`` targets, and the manifest facts."""

    layout: str
    num_classes: int
    recipe: dict
    splits: dict[str, _SplitPlan]
    num_frame_classes: int | None = None
    skipped: dict = field(default_factory=dict)
    tasks: list = field(default_factory=list)
    targets: list[list[tuple[str, int]]] = field(default_factory=list)
    parallel: bool = True
    extra: dict = field(default_factory=dict)  # more manifest entries (e.g. class_names)

    def add(self, task, samples: Iterable[tuple[str, str, int, int]]) -> None:
        """Add ``task``, which yields one sample per ``(split, name, label, length)``, in order."""
        targets = []
        for split, name, label, length in samples:
            plan = self.splits[split]
            targets.append((split, len(plan.names)))
            plan.names.append(name)
            plan.labels.append(int(label))
            plan.lengths.append(int(length))
        self.tasks.append(task)
        self.targets.append(targets)


def _find_files(raw: Path, pattern: str, what: str) -> list[Path]:
    """Files matching ``pattern`` below ``raw`` (recursively), sorted by name; names must be unique."""
    if not raw.is_dir():
        raise DataFormatError(f"{raw}: not a folder; expected a folder of {what}")
    files = sorted((p for p in raw.rglob(pattern) if p.is_file()), key=lambda p: (p.name, str(p)))
    if not files:
        raise DataFormatError(f"{raw}: no {what} found (searched recursively for {pattern})")
    for a, b in zip(files, files[1:], strict=False):
        if a.name == b.name:
            raise DataFormatError(f"{raw}: two files are named {a.name}: {a} and {b}")
    return files


def _declared_frames(path: Path) -> int:
    """The frame count on the first line of an NTU-style file (checked again by the full parse)."""
    with open(path, "rb") as f:
        first = f.readline().decode("ascii", errors="replace").strip()
    try:
        value = int(first)
    except ValueError:
        raise DataFormatError(f"{path}, line 1: the number of frames must be an integer, found {first!r}") from None
    if value < 0:
        raise DataFormatError(f"{path}, line 1: the number of frames must be >= 0, found {value}")
    return value


def _plan_clip_files(
    plan: _Plan, parts: dict[str, list[Path]], reader: Callable, recipe: Recipe3D, label_of: Callable[[Path], int]
) -> None:
    for split, paths in parts.items():
        for path in paths:
            plan.add(_SkeletonFileTask(path, reader, recipe),
                     [(split, path.stem, label_of(path), recipe.length(_declared_frames(path)))])


def _plan_ntu(source: str, raw: Path, benchmark: str, **_) -> _Plan:
    files = _find_files(raw, "*.skeleton", "NTU .skeleton files")
    parts = split_ntu_samples(files, f"{source}-{benchmark}")
    recipe = Recipe3D("ntu")
    plan = _Plan(layout="ntu25", num_classes=60 if source == "ntu60" else 120, recipe=_describe(recipe),
                 splits={"train": _SplitPlan(CLIPS), "test": _SplitPlan(CLIPS)})
    plan.skipped = {"missing_or_outside": len(files) - len(parts["train"]) - len(parts["test"])}
    _plan_clip_files(plan, parts, read_ntu_skeleton, recipe, lambda path: parse_ntu_name(path).label)
    return plan


def _plan_uav(source: str, raw: Path, benchmark: str, **_) -> _Plan:
    files = _find_files(raw, "*.txt", "UAV-Human skeleton .txt files")
    parts = split_uav_samples(files, benchmark)
    recipe = Recipe3D("uav", max_frames=300)
    plan = _Plan(layout="uav17", num_classes=UAV_CLASSES, recipe=_describe(recipe),
                 splits={"train": _SplitPlan(CLIPS), "test": _SplitPlan(CLIPS)})
    _plan_clip_files(plan, parts, read_uav_skeleton, recipe, lambda path: parse_uav_name(path).label)
    return plan


def _only(candidates: list[Path], raw: Path, what: str) -> Path:
    if len(candidates) != 1:
        found = ", ".join(str(p) for p in candidates) or "none"
        raise DataFormatError(f"{raw}: expected exactly one {what}, found {found}")
    return candidates[0]


def _pkummd_folders(raw: Path, benchmark: str) -> tuple[Path, Path, Path]:
    """The skeleton folder, label folder and split file of a PKU-MMD release folder."""
    if not raw.is_dir():
        raise DataFormatError(f"{raw}: not a folder; expected a PKU-MMD folder ({RAW_LAYOUTS['pkummd1']})")
    subfolders = [p for p in sorted(raw.iterdir()) if p.is_dir()]
    skeletons = _only([p for p in subfolders if "skeleton" in p.name.lower()], raw,
                      "sub-folder whose name contains 'skeleton'")
    labels = _only([p for p in subfolders if "label" in p.name.lower()], raw, "sub-folder whose name contains 'label'")
    prefix = "cross_subject" if benchmark == "xsub" else "cross_view"
    split_files = []
    for folder, dirs, files in os.walk(raw):
        dirs[:] = sorted(d for d in dirs if Path(folder, d) not in (skeletons, labels))
        split_files += [Path(folder, f) for f in sorted(files)
                        if f.lower().endswith(".txt") and f.lower().replace("-", "_").startswith(prefix)]
    return skeletons, labels, _only(split_files, raw, f"split file {prefix.replace('_', '-')}*.txt")


def _clip_ranges(path: Path, instances: Sequence[ActionInstance], num_frames: int) -> list[tuple[int, int, int]]:
    """``(label, start, stop)`` of the clip of each instance, frames ``[start, min(end, num_frames))``.

    Instances outside the sequence give no clip (logged); labels must be 1..51.
    """
    out = []
    for a in instances:
        if a.label > PKUMMD_CLASSES:
            raise DataFormatError(f"{path}: label {a.label} of {a} is outside 1..{PKUMMD_CLASSES}")
        stop = min(a.end, num_frames)
        if stop <= a.start:
            logger.warning("%s: %s lies outside the %d frames of the sequence; no clip", path, a, num_frames)
            continue
        out.append((a.label, a.start, stop))
    return out


def _plan_pkummd(source: str, raw: Path, benchmark: str, **_) -> _Plan:
    phase = int(source[-1])
    skeletons, labels, split_file = _pkummd_folders(raw, benchmark)
    clip_recipe, sequence_recipe = Recipe3D("ntu"), Recipe3D("ntu", select_bodies=False, fill_empty_frames=False)
    plan = _Plan(layout="ntu25", num_classes=PKUMMD_CLASSES, num_frame_classes=PKUMMD_CLASSES + 1,
                 recipe={CLIPS: _describe(clip_recipe), UNTRIMMED: _describe(sequence_recipe)},
                 splits={name: _SplitPlan(kind) for name, kind in (("train", CLIPS), ("test", CLIPS),
                                                                   ("train_untrimmed", UNTRIMMED),
                                                                   ("test_untrimmed", UNTRIMMED))})
    absent, dropped = [], 0
    for part, stems in read_pkummd_split(split_file).items():
        for stem in stems:
            if parse_pkummd_name(stem)["phase"] != phase:
                raise DataFormatError(f"{split_file}: {stem} is not a phase-{phase} stem, as {source} needs")
            skeleton, label_file = skeletons / f"{stem}.txt", labels / f"{stem}.txt"
            if not (skeleton.is_file() and label_file.is_file()):
                absent.append(stem)
                continue
            num_frames = len(read_lines(skeleton))
            if num_frames == 0:
                raise DataFormatError(f"{skeleton}, line 1: file is empty")
            instances = tuple(read_pkummd_labels(label_file))
            clips = _clip_ranges(label_file, instances, num_frames)
            dropped += len(instances) - len(clips)
            samples = [(part, f"{stem}:{start}-{stop}", label - 1, stop - start) for label, start, stop in clips]
            samples.append((f"{part}_untrimmed", stem, IGNORE_LABEL, num_frames))
            plan.add(_PKUMMDTask(skeleton, instances, tuple((a, b) for _, a, b in clips), clip_recipe,
                                 sequence_recipe), samples)
    if absent:
        logger.warning("%s lists %d sequences without a skeleton or label file (skipped), e.g. %s",
                       split_file, len(absent), absent[0])
    plan.skipped = {"sequences_without_files": absent, "instances_outside_sequence": dropped}
    return plan


#: Classes of NTU RGB+D 120; an NTU-2D label at or above it is refused.
NTU120_CLASSES = 120


def _ntu2d_classes(annotations: Iterable[dict]) -> int:
    """120 if any annotation is an NTU-120-only sample (label >= 60 or setup > 17), else 60."""
    for ann in annotations:
        if ann["label"] >= 60:
            return NTU120_CLASSES
        try:
            if parse_ntu_name(ann["frame_dir"]).setup > 17:
                return NTU120_CLASSES
        except DataFormatError:
            continue
    return 60


def _problem_2d_annotation(ann: dict | None) -> str | None:
    """Why an annotation the split lists cannot be an NTU-2D sample, or None."""
    if ann is None:
        return "listed by the split, but it has no annotation"
    keypoint = ann.get("keypoint")
    if keypoint is None or keypoint.shape[2:] != (17, 2) or "label" not in ann or "img_shape" not in ann:
        return f"must have 'label', 'img_shape' and 2D COCO-17 'keypoint' (M, T, 17, 2), found keys {sorted(ann)}"
    if ann["label"] >= NTU120_CLASSES:
        return f"label {ann['label']} is outside the {NTU120_CLASSES} NTU classes"
    return None


def _plan_ntu2d(source: str, raw: Path, benchmark: str, *, padding: str, legacy_2d_norm: bool) -> _Plan:
    """The NTU-2D plan. Each annotation that cannot be a sample (bad arrays, NaN, no frames, a label
    past 120, a duplicate name or split entry) is left out and reported; the rest is written."""
    if not raw.is_file():
        raise DataFormatError(f"{raw}: not a file; expected {RAW_LAYOUTS['ntu2d']}")
    content = load_pyskl(raw, skip_invalid=True)
    keys = {"train": f"{benchmark}_train", "test": f"{benchmark}_val"}
    for key in keys.values():
        if key not in content["split"]:
            raise DataFormatError(f"{raw}: no split list {key!r}; the pickle has {sorted(content['split'])}")
    problems = [message for _, message in content["invalid"]]
    rejected = {name for name, _ in content["invalid"]}
    by_name: dict[str, dict] = {}
    for ann in content["annotations"]:
        if ann["frame_dir"] in by_name:
            problems.append(f"{raw}: annotation {ann['frame_dir']} appears again; the first one is kept")
        by_name.setdefault(ann["frame_dir"], ann)
    parts: dict[str, list[dict]] = {}
    listed: set[str] = set()
    for part, key in keys.items():
        parts[part] = []
        for name in content["split"][key]:
            if name in rejected:
                continue  # reported with its annotation
            problem = (f"listed again (in {key})" if name in listed else _problem_2d_annotation(by_name.get(name)))
            listed.add(name)
            if problem:
                problems.append(f"{raw}: {key} entry {name}: {problem}")
            else:
                parts[part].append(by_name[name])
    if problems:
        logger.warning("%s: %d annotation(s) or split entries left out (the rest is written); %s%s", raw,
                       len(problems), "; ".join(problems[:5]), " ..." if len(problems) > 5 else "")
    for part, key in keys.items():
        if not parts[part]:
            raise DataFormatError(f"{raw}: no usable sample in {key}; {problems[0] if problems else 'it is empty'}")
    recipe = Recipe2D(padding, legacy_2d_norm)
    plan = _Plan(layout="coco17", num_classes=_ntu2d_classes(a for anns in parts.values() for a in anns),
                 recipe=_describe(recipe),
                 splits={"train": _SplitPlan(CLIPS), "test": _SplitPlan(CLIPS)}, parallel=False,
                 skipped={"invalid_annotations": problems})
    for part, annotations in parts.items():
        for ann in annotations:
            plan.add(_AnnotationTask(ann, recipe), [(part, ann["frame_dir"], ann["label"], ann["keypoint"].shape[1])])
    return plan


_PLANNERS = {"ntu60": _plan_ntu, "ntu120": _plan_ntu, "pkummd1": _plan_pkummd, "pkummd2": _plan_pkummd,
             "uav": _plan_uav, "ntu2d": _plan_ntu2d}


# --------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------


class _RowWriter:
    """Positional writes of rows into a preallocated ``.npy`` file of shape ``(N, ...)``."""

    def __init__(self, path: Path, shape: tuple[int, ...], dtype):
        self.dtype = np.dtype(dtype)
        self.row_bytes = int(np.prod(shape[1:])) * self.dtype.itemsize
        self.fd = None
        if np.prod(shape) == 0:  # an empty array cannot be memory-mapped
            np.save(path, np.zeros(shape, self.dtype))
            return
        array = np.lib.format.open_memmap(path, mode="w+", dtype=self.dtype, shape=shape)
        self.offset = array.offset
        del array
        self.fd = os.open(path, os.O_WRONLY)

    def write(self, index: int, values: np.ndarray, byte_offset: int = 0) -> None:
        """Write ``values`` at ``byte_offset`` bytes into row ``index``."""
        os.pwrite(self.fd, np.ascontiguousarray(values, dtype=self.dtype).tobytes(),
                  self.offset + index * self.row_bytes + byte_offset)

    def close(self) -> None:
        if self.fd is not None:
            os.fsync(self.fd)
            os.close(self.fd)
            self.fd = None


class _SplitWriter:
    """Writes one split folder: the small arrays at once, the data and per-frame labels row by row."""

    def __init__(self, folder: Path, plan: _SplitPlan, num_joints: int):
        folder.mkdir()
        self.plan = plan
        self.max_frames = max(plan.lengths, default=0)
        self.shape = (len(plan.names), NUM_CHANNELS, self.max_frames, num_joints, NUM_PERSONS)
        np.save(folder / "num_frames.npy", np.asarray(plan.lengths, dtype=np.int64))
        np.save(folder / "labels.npy", np.asarray(plan.labels, dtype=np.int64))
        (folder / "names.json").write_text(json.dumps(plan.names), encoding="utf-8")
        self.data = _RowWriter(folder / "data.npy", self.shape, np.float32)
        self.frame_labels = None
        if plan.kind == UNTRIMMED:
            self.frame_labels = _RowWriter(folder / "frame_labels.npy", self.shape[:1] + self.shape[2:3], np.int64)

    def arrays(self) -> dict[str, dict]:
        """Shapes and dtypes of the split's arrays, for the manifest."""
        n = len(self.plan.names)
        out = {"data": (self.shape, "float32"), "num_frames": ((n,), "int64"), "labels": ((n,), "int64")}
        if self.frame_labels is not None:
            out["frame_labels"] = ((n, self.max_frames), "int64")
        return {key: {"shape": list(shape), "dtype": dtype} for key, (shape, dtype) in out.items()}

    def write(self, index: int, data: np.ndarray, per_frame: np.ndarray | None) -> None:
        """Write sample ``index``: ``data`` ``(C, T, V, M)`` with ``T`` its planned length."""
        expected = (self.shape[1], self.plan.lengths[index], *self.shape[3:])
        if data.shape != expected:
            raise DataFormatError(f"sample {self.plan.names[index]}: preprocessing gave shape {data.shape}, "
                                  f"expected {expected} from the file's header")
        channel_bytes = self.data.row_bytes // NUM_CHANNELS
        for c in range(NUM_CHANNELS):
            self.data.write(index, data[c], c * channel_bytes)
        if self.frame_labels is not None:
            row = np.full(self.max_frames, IGNORE_LABEL, dtype=np.int64)
            row[: len(per_frame)] = per_frame
            self.frame_labels.write(index, row)

    def close(self) -> None:
        self.data.close()
        if self.frame_labels is not None:
            self.frame_labels.close()


def _write_splits(plan: _Plan, folder: Path, num_joints: int, workers: int, progress: bool, desc: str) -> dict:
    """Write every split of ``plan`` into ``folder``; returns the manifest's ``splits`` entry."""
    writers = {name: _SplitWriter(folder / name, split, num_joints) for name, split in plan.splits.items()}
    try:
        with tqdm(total=len(plan.tasks), unit="file", desc=desc, disable=not progress) as bar:
            for targets, results in zip(plan.targets, _run_tasks(plan.tasks, workers), strict=True):
                for (split, index), (data, per_frame) in zip(targets, results, strict=True):
                    writers[split].write(index, data, per_frame)
                bar.update()
    finally:
        for writer in writers.values():
            writer.close()
    return {name: {"kind": writer.plan.kind, "count": len(writer.plan.names), "max_frames": writer.max_frames,
                   "arrays": writer.arrays()} for name, writer in writers.items()}


def _check_output(out: Path, overwrite: bool) -> None:
    """Raise ConfigError unless ``out`` may be written: absent, or a prepared dataset / empty folder to overwrite."""
    if not out.exists():
        return
    if not overwrite:
        raise ConfigError(f"{out} exists; pass overwrite=True to replace it", keywords=("overwrite",))
    if not out.is_dir() or (any(out.iterdir()) and not (out / MANIFEST).is_file()):
        raise ConfigError(f"refusing to replace {out}: it is not a prepared dataset (no {MANIFEST})")


def _sibling(out: Path, kind: str) -> Path:
    """A new hidden folder ``.OUT.<kind>-<random>`` beside ``out`` (permissions from the umask)."""
    folder = out.parent / f".{out.name}.{kind}-{uuid.uuid4().hex[:12]}"
    folder.mkdir()
    return folder


class _OutputLock:
    """An exclusive lock on ``.OUT.lock`` beside ``out``, held while one run writes ``out``.

    Raises ConfigError when another run holds it. Without ``fcntl`` nothing is locked
    (``held`` is false).
    """

    def __init__(self, out: Path):
        self.path, self.file = out.parent / f".{out.name}.lock", None
        while fcntl is not None and self.file is None:
            file = open(self.path, "a")
            try:
                fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                file.close()
                raise ConfigError(f"another prepare is writing {out} (it holds {self.path}); wait for it to end, "
                                  "or choose another folder") from None
            if _same_file(file, self.path):
                self.file = file
            else:  # the run that held it deleted the file as we locked it: lock the new one
                file.close()

    @property
    def held(self) -> bool:
        return self.file is not None

    def release(self) -> None:
        if self.file is not None:
            self.path.unlink(missing_ok=True)
            self.file.close()
            self.file = None


def _same_file(file, path: Path) -> bool:
    try:
        return os.path.samestat(os.fstat(file.fileno()), os.stat(path))
    except FileNotFoundError:
        return False


def _claim_output(out: Path, overwrite: bool) -> _OutputLock:
    """Lock ``out``, repair and clean what killed runs left beside it, and check that it may be written."""
    lock = _OutputLock(out)
    try:
        if lock.held:
            _recover(out)
        _check_output(out, overwrite)
    except BaseException:
        lock.release()
        raise
    return lock


def _recover(out: Path) -> None:
    """Put back a dataset a killed ``overwrite`` moved aside, then delete the hidden folders killed runs left.

    Call only holding ``out``'s lock: then no other run is writing those folders.
    """
    pattern = glob.escape(f".{out.name}.")
    old_folders = sorted(out.parent.glob(f"{pattern}old-*"))
    moved_aside = [folder / out.name for folder in old_folders if (folder / out.name).exists()]
    if not out.exists() and moved_aside:
        os.rename(moved_aside[0], out)
        logger.warning("put back %s: a killed prepare had moved it aside to %s", out, moved_aside[0])
    for folder in sorted(out.parent.glob(f"{pattern}tmp-*")) + old_folders:
        logger.warning("deleting %s, left by a killed prepare", folder)
        shutil.rmtree(folder)


def _move_into_place(tmp: Path, out: Path, overwrite: bool) -> None:
    """Rename ``tmp`` to ``out``; an existing ``out`` is moved aside first and deleted after."""
    _check_output(out, overwrite)
    if not out.exists():
        os.rename(tmp, out)
        return
    old = _sibling(out, "old")
    os.rename(out, old / out.name)
    try:
        os.rename(tmp, out)
    except BaseException:
        os.rename(old / out.name, out)
        raise
    finally:
        shutil.rmtree(old, ignore_errors=True)


def _default_workers() -> int:
    return max(1, min(os.cpu_count() or 1, 8))


def prepare_dataset(
    source: str,
    raw: str | PathLike,
    out: str | PathLike,
    *,
    benchmark: str,
    workers: int | None = None,
    overwrite: bool = False,
    padding: str = "confidence",
    legacy_2d_norm: bool = False,
    show_progress_bar: bool | None = None,
) -> Path:
    """Convert a raw dataset into a prepared dataset folder (see the module notes for the layout).

    Args:
        source: ``ntu60``, ``ntu120``, ``pkummd1``, ``pkummd2``, ``uav`` or ``ntu2d``.
        raw: the raw data, laid out as :data:`RAW_LAYOUTS` describes.
        out: folder to create.
        benchmark: one of :data:`BENCHMARKS` ``[source]`` (``xsub``, ``xview``, ``xset``, ``csv1``, ``csv2``).
        workers: processes parsing files (default: the CPU count, at most 8); 1 parses in this
            process. ``ntu2d`` always converts in this process (the pickle is already in memory).
        overwrite: replace an existing prepared dataset at ``out``.
        padding: ``ntu2d`` only, see :class:`Recipe2D`.
        legacy_2d_norm: ``ntu2d`` only, see :class:`Recipe2D`.
        show_progress_bar: a tqdm bar over the files; ``None`` shows it when this logger is at
            INFO or below.

    Recipes: NTU: the 2 most energetic of the first 4 bodies, empty frames filled, ``ntu``
    alignment; UAV-Human: the same with ``uav`` alignment, at most 300 frames; PKU-MMD clips:
    as NTU; PKU-MMD sequences: the 2 person slots as stored, ``ntu`` alignment only (filling
    would move frames away from their labels); NTU-2D: :class:`Recipe2D`.

    Returns ``out``. Raises ConfigError for a bad source/benchmark/option or an existing
    ``out`` without ``overwrite``, DataFormatError (naming the file) for bad raw data; in
    every failure ``out`` is left as it was.
    """
    if source not in BENCHMARKS:
        raise ConfigError(f"unknown source {source!r}; expected one of {', '.join(SOURCES)}")
    if benchmark not in BENCHMARKS[source]:
        raise ConfigError(f"{source} has no benchmark {benchmark!r}; expected one of {', '.join(BENCHMARKS[source])}")
    if padding not in PADDINGS:
        raise ConfigError(f"unknown padding {padding!r}; expected one of {', '.join(PADDINGS)}")
    workers = _default_workers() if workers is None else int(workers)
    if workers < 1:
        raise ConfigError(f"workers must be at least 1, got {workers}")
    raw, out = Path(raw), Path(out)
    _check_output(out, overwrite)
    plan = _PLANNERS[source](source, raw, benchmark, padding=padding, legacy_2d_norm=legacy_2d_norm)
    return _write_plan(plan, source, benchmark, raw, out, workers=workers, overwrite=overwrite,
                       show_progress_bar=show_progress_bar)


def _write_plan(plan: _Plan, source: str, benchmark: str, raw: Path, out: Path, *, workers: int, overwrite: bool,
                show_progress_bar: bool | None) -> Path:
    """Run ``plan`` and write the prepared dataset ``out`` (all or nothing); the manifest gets
    ``plan.extra`` besides the usual facts. Returns ``out``."""
    if not plan.parallel:
        workers = 1
    if show_progress_bar is None:
        show_progress_bar = logger.getEffectiveLevel() <= logging.INFO
    layout = get_layout(plan.layout)
    out.parent.mkdir(parents=True, exist_ok=True)
    lock = _claim_output(out, overwrite)
    tmp = _sibling(out, "tmp")
    try:
        splits = _write_splits(plan, tmp, layout.num_joints, workers, show_progress_bar, f"{source} {benchmark}")
        manifest = {
            "format": FORMAT, "format_version": FORMAT_VERSION, "recipe_version": RECIPE_VERSION,
            "usdrl_version": __version__,
            "source": source, "benchmark": benchmark, "raw": str(raw),
            "layout": plan.layout, "num_channels": NUM_CHANNELS, "num_joints": layout.num_joints,
            "num_persons": NUM_PERSONS, "num_classes": plan.num_classes, "num_frame_classes": plan.num_frame_classes,
            "preprocessing": plan.recipe, "skipped": plan.skipped, "splits": splits, **plan.extra,
        }
        atomic_write_text(tmp / MANIFEST, json.dumps(manifest, indent=2) + "\n")
        _move_into_place(tmp, out, overwrite)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        lock.release()
    logger.info("prepared %s %s in %s: %s", source, benchmark, out,
                ", ".join(f"{name} {split['count']}" for name, split in splits.items()))
    return out


# --------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------

_MANIFEST_KEYS = ("source", "benchmark", "layout", "num_channels", "num_joints", "num_persons", "num_classes",
                  "splits")


def read_manifest(path: str | PathLike) -> dict:
    """The manifest of the prepared dataset folder ``path``.

    Raises DataFormatError when ``path`` has no complete manifest (not a prepared dataset,
    or a run that did not finish), or one of another format version.
    """
    path = Path(path)
    file = path / MANIFEST
    if not file.is_file():
        raise DataFormatError(f"{path}: not a prepared dataset: {MANIFEST} is missing (an interrupted "
                              f"`usdrl prepare` leaves none; run it again)")
    try:
        manifest = json.loads(file.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise DataFormatError(f"{file}: not a valid manifest ({exc})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise DataFormatError(f"{file}: not a {FORMAT} manifest")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise DataFormatError(f"{file}: format version {manifest.get('format_version')!r}; this usdrl reads "
                              f"version {FORMAT_VERSION} (prepare the dataset again)")
    missing = [key for key in _MANIFEST_KEYS if key not in manifest]
    if missing:
        raise DataFormatError(f"{file}: the manifest lacks {', '.join(missing)}")
    for key in _MANIFEST_KEYS:
        value = manifest[key]
        if key == "splits":
            fits = isinstance(value, dict) and all(isinstance(name, str) for name in value)
        elif key.startswith("num_"):
            fits = _is_count(value) and value > 0
        else:
            fits = isinstance(value, str)
        if not fits:
            kind = ("a dict of splits" if key == "splits" else "a positive integer" if key.startswith("num_")
                    else "a string")
            raise DataFormatError(f"{file}: {key} must be {kind}, found {_short(value)}")
    _warn_if_old_recipe(path, manifest)
    return manifest


_WARNED_OLD_RECIPE: set[str] = set()


def _warn_if_old_recipe(path: Path, manifest: dict) -> None:
    """Warn once per folder about a 3D dataset prepared before :data:`RECIPE_VERSION`, naming the
    command that remakes it (2D ``ntu2d`` data has no view alignment and is unchanged)."""
    version = manifest.get("recipe_version", 1)
    key = str(path.resolve())
    if version >= RECIPE_VERSION or manifest["source"] == "ntu2d" or key in _WARNED_OLD_RECIPE:
        return
    _WARNED_OLD_RECIPE.add(key)
    command = shlex.join(["usdrl", "prepare", manifest["source"], manifest.get("raw", "RAW"), str(path),
                          "--benchmark", manifest["benchmark"], "--overwrite"])
    logger.warning("%s was prepared with recipe version %s; since version %d the view alignment equals the "
                   "reference's for bodies facing away from the camera, so its clips differ from what usdrl "
                   "prepares now. Remake it with: %s", path, version, RECIPE_VERSION, command)


#: The dtype of each array of a split, as :func:`prepare_dataset` writes it.
_ARRAY_DTYPES = {"data": "float32", "num_frames": "int64", "labels": "int64", "frame_labels": "int64"}


def _is_count(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _check_split_entry(file: Path, manifest: dict, split: str) -> dict:
    """The manifest's entry of ``split`` (``file`` is the manifest), checked: its kind, and each array's
    shape and dtype as :func:`prepare_dataset` writes them, consistent with each other and the manifest."""
    entry = manifest["splits"][split]
    where = f"{file}: split {split!r}"
    if not (isinstance(entry, dict) and entry.get("kind") in (CLIPS, UNTRIMMED)
            and isinstance(entry.get("arrays"), dict)):
        raise DataFormatError(f"{where} must have 'kind' ({CLIPS!r} or {UNTRIMMED!r}) and 'arrays', "
                              f"found {_short(entry)}")
    arrays = entry["arrays"]
    keys = ["data", "num_frames", "labels"] + (["frame_labels"] if entry["kind"] == UNTRIMMED else [])
    for key in keys:
        spec = arrays.get(key)
        if not (isinstance(spec, dict) and isinstance(spec.get("shape"), list) and all(map(_is_count, spec["shape"]))
                and spec.get("dtype") == _ARRAY_DTYPES[key]):
            raise DataFormatError(f"{where}: array {key!r} must be {{'shape': [sizes], 'dtype': "
                                  f"'{_ARRAY_DTYPES[key]}'}}, found {_short(spec)}")
    data = arrays["data"]["shape"]
    if len(data) != 5:
        raise DataFormatError(f"{where}: data must have 5 dimensions (N, C, T, V, M), found {data}")
    count, max_frames = data[0], data[2]
    expected = {"data": [count, manifest["num_channels"], max_frames, manifest["num_joints"], manifest["num_persons"]],
                "num_frames": [count], "labels": [count], "frame_labels": [count, max_frames]}
    for key in keys:
        if arrays[key]["shape"] != expected[key]:
            raise DataFormatError(f"{where}: array {key!r} has shape {arrays[key]['shape']}, expected {expected[key]} "
                                  "from the data array and the manifest")
    if entry.get("count", count) != count:
        raise DataFormatError(f"{where}: count {_short(entry['count'])} but the data holds {count} samples")
    return entry


def _resolve_split(path: Path, split: str | None) -> tuple[Path, str]:
    """``(dataset folder, split)``; with ``split=None``, ``path`` must be a split folder."""
    if split is not None:
        return path, split
    if not (path.parent / MANIFEST).is_file():
        raise ConfigError(f"{path}: give a split, or the path of a split folder inside a prepared dataset")
    return path.parent, path.name


def _load_array(folder: Path, key: str, spec: dict, mmap: bool) -> np.ndarray:
    """``folder/key.npy`` (memory-mapped when ``mmap``), checked against the manifest's shape and dtype."""
    file = folder / f"{key}.npy"
    try:
        array = np.load(file, mmap_mode="r" if mmap else None, allow_pickle=False)
    except (OSError, ValueError, EOFError, TypeError) as exc:  # EOFError: an empty file
        raise DataFormatError(f"{file}: cannot be read as a .npy array ({exc})") from None
    if list(array.shape) != spec["shape"] or array.dtype != np.dtype(spec["dtype"]):
        raise DataFormatError(f"{file}: shape {array.shape} {array.dtype}, the manifest says "
                              f"{tuple(spec['shape'])} {spec['dtype']}")
    return array


def head_class_names(dataset, num_classes: int) -> list[str] | None:
    """The class names of a new ``num_classes`` head trained on ``dataset`` (a :class:`SkeletonDataset`,
    or a ``Subset`` of one): its manifest's ``class_names`` when they number ``num_classes``, else None."""
    while isinstance(dataset, torch.utils.data.Subset):
        dataset = dataset.dataset
    names = getattr(dataset, "class_names", None)
    return names if names is not None and len(names) == num_classes else None


def _load_names(file: Path, count: int) -> list[str]:
    """The ``count`` sample names in ``file`` (a JSON list of strings), or DataFormatError naming it."""
    try:
        names = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise DataFormatError(f"{file}: cannot be read as a JSON list of sample names ({exc})") from None
    if not (isinstance(names, list) and all(isinstance(name, str) for name in names)):
        raise DataFormatError(f"{file}: expected a JSON list of sample names, found {_short(names)}")
    if len(names) != count:
        raise DataFormatError(f"{file}: {len(names)} names for {count} samples")
    return names


class SkeletonDataset(torch.utils.data.Dataset):
    """One split of a prepared dataset, read lazily, as model clips.

    Args:
        path: the prepared dataset folder (or, with ``split=None``, one of its split folders).
        split: split name, e.g. ``"train"``, ``"test"``, ``"train_untrimmed"``.
        sampling: temporal sampling of the valid frames to ``num_frames``:

            * ``"resample"``: the whole valid sequence, linearly resampled.
            * ``"random_crop"``: a random crop of ``clamp(floor(n * s), num_frames, n)`` frames,
              ``s ~ U(ratio)``, resampled (the pretraining crop, spec section 5.1).
            * ``"center_crop"``: the central ``ratio`` of the frames, resampled (section 5.5).
            * ``"windows"`` (untrimmed splits only): consecutive windows of ``num_frames``
              frames at the original frame rate, starting every ``window_stride`` frames until
              the sequence is covered; frames past its end are zero with label -1.

        num_frames: frames ``T`` per clip.
        ratio: ``random_crop``: ``(min, max)`` of ``s``, default ``(0.1, 1.0)``; ``center_crop``:
            the kept fraction, default 1.0. Not used by the other modes.
        observe_ratio: early prediction: only the first ``max(3, floor(n * observe_ratio))``
            valid frames are observed (cropped before sampling, section 6.6). Not with ``windows``.
        window_stride: ``windows`` only: frames between window starts, 1..num_frames
            (default ``num_frames``: non-overlapping windows).
        seed: seed of the random crops. In a DataLoader worker the stream also depends on
            torch's per-worker seed, so crops differ between workers and epochs and are
            reproducible under ``torch.manual_seed``.

    Items: ``(clip, label)`` with clip ``(C, T, V, M)`` float32 and label an int, or for
    ``windows`` ``(clip, per-frame labels (T,) int64)``.

    Opening checks the folder as :func:`prepare_dataset` writes it and raises DataFormatError
    naming the file: the manifest's fields and split entry, each array's shape and dtype,
    ``names.json`` (N strings), lengths in ``1..Tmax`` and labels in range. The data itself is
    checked clip by clip as it is read: NaN or infinite values name the sample.
    """

    def __init__(
        self,
        path: str | PathLike,
        split: str | None = None,
        *,
        sampling: str = "resample",
        num_frames: int = 64,
        ratio: float | tuple[float, float] | None = None,
        observe_ratio: float | None = None,
        window_stride: int | None = None,
        seed: int | None = None,
    ):
        root, split = _resolve_split(Path(path), split)
        self.manifest = read_manifest(root)
        splits = self.manifest["splits"]
        if split not in splits:
            raise ConfigError(f"{root} has no split {split!r}; it has {', '.join(splits)}")
        self.split = split
        self.path = root / split
        entry = _check_split_entry(root / MANIFEST, self.manifest, split)
        self.kind = entry["kind"]
        self._arrays = entry["arrays"]
        self.num_frames = int(num_frames)
        self.sampling = sampling
        self.ratio = self._check_sampling(sampling, ratio, observe_ratio)
        self.observe_ratio = observe_ratio
        #: ``(N,)`` int64 valid frames of each sample.
        self.lengths = np.asarray(_load_array(self.path, "num_frames", self._arrays["num_frames"], mmap=False))
        #: ``(N,)`` int64 0-based class of each sample (-1 for untrimmed sequences).
        self.labels = np.asarray(_load_array(self.path, "labels", self._arrays["labels"], mmap=False))
        self.window_stride = self._check_stride(window_stride)
        #: ``windows`` only: ``(W, 2)`` int64 ``(sequence index, first frame)`` of each item.
        self.windows = self._make_windows() if sampling == "windows" else None
        self.seed = seed
        self._names = _load_names(self.path / "names.json", len(self.lengths))
        self._check_lengths_and_labels()
        self._pid = None
        self._data = self._frame_labels = None
        self._rng, self._rng_key = None, None
        self._open()  # check the big arrays once; they are reopened lazily in each process

    # -- configuration -----------------------------------------------------------------
    def _check_sampling(self, sampling, ratio, observe_ratio):
        if sampling not in SAMPLINGS:
            raise ConfigError(f"unknown sampling {sampling!r}; expected one of {', '.join(SAMPLINGS)}")
        if self.num_frames < 1:
            raise ConfigError(f"num_frames must be at least 1, got {self.num_frames}")
        if (sampling == "windows") != (self.kind == UNTRIMMED):
            raise ConfigError(f"split {self.split!r} holds {self.kind}; sampling {sampling!r} is for "
                              f"{'untrimmed sequences' if sampling == 'windows' else 'clips'}"
                              + (" (use sampling='windows')" if self.kind == UNTRIMMED else ""))
        if observe_ratio is not None and (sampling == "windows" or not 0 < observe_ratio <= 1):
            raise ConfigError(f"observe_ratio must be in (0, 1] and needs clips, got {observe_ratio} with {sampling}",
                              keywords=("observe_ratio",))
        if sampling == "random_crop":
            low, high = (0.1, 1.0) if ratio is None else ratio
            if not 0 < low <= high <= 1:
                raise ConfigError(f"random_crop needs ratio (min, max) with 0 < min <= max <= 1, got {ratio}")
            return float(low), float(high)
        if sampling == "center_crop":
            ratio = 1.0 if ratio is None else ratio
            if not 0 < ratio <= 1:
                raise ConfigError(f"center_crop needs a ratio in (0, 1], got {ratio}")
            return float(ratio)
        if ratio is not None:
            raise ConfigError(f"ratio is for random_crop and center_crop, not {sampling}")
        return None

    def _check_stride(self, stride):
        if stride is None:
            return self.num_frames if self.sampling == "windows" else None
        if self.sampling != "windows" or not 1 <= stride <= self.num_frames:
            raise ConfigError(f"window_stride must be in 1..num_frames={self.num_frames} with sampling='windows', "
                              f"got {stride} with {self.sampling!r}", keywords=("window_stride",))
        return int(stride)

    def _make_windows(self) -> np.ndarray:
        counts = 1 + np.ceil(np.maximum(self.lengths - self.num_frames, 0) / self.window_stride).astype(np.int64)
        sequence = np.repeat(np.arange(len(self.lengths)), counts)
        first = np.arange(len(sequence)) - np.repeat(np.cumsum(counts) - counts, counts)
        return np.stack([sequence, first * self.window_stride], axis=1).astype(np.int64)

    # -- description ---------------------------------------------------------------------
    @property
    def layout(self) -> str:
        """Joint layout name of the data (``ntu25``, ``uav17``, ``coco17``)."""
        return self.manifest["layout"]

    @property
    def num_classes(self) -> int:
        """Classes of the labels returned: clip classes, or frame classes (background included) for windows."""
        if self.sampling == "windows":
            return int(self.manifest["num_frame_classes"])
        return int(self.manifest["num_classes"])

    @property
    def class_names(self) -> list[str] | None:
        """Names of the clip classes, in label order, from the manifest (``usdrl prepare folder``,
        ``keypoints`` and ``pyskl`` keep them); None when the manifest has none."""
        names = self.manifest.get("class_names")
        return list(names) if names else None

    @property
    def input_shape(self) -> tuple[int, int, int, int]:
        """Shape of one clip ``(C, T, V, M)``."""
        m = self.manifest
        return (m["num_channels"], self.num_frames, m["num_joints"], m["num_persons"])

    @property
    def names(self) -> list[str]:
        """Sample names (for windows: of the sequences, index with ``windows[:, 0]``)."""
        return self._names

    def _check_lengths_and_labels(self) -> None:
        """DataFormatError naming the file and the first sample whose length is outside ``1..Tmax`` or
        whose label is outside ``0..num_classes - 1`` (``-1`` for untrimmed sequences)."""
        max_frames = self._arrays["data"]["shape"][2]
        bad = np.flatnonzero((self.lengths < 1) | (self.lengths > max_frames))
        if len(bad):
            i = int(bad[0])
            raise DataFormatError(f"{self.path / 'num_frames.npy'}: sample {i} ({self._names[i]}) has "
                                  f"{self.lengths[i]} frames; expected 1 to {max_frames} (the data's frames)")
        if self.kind == UNTRIMMED:
            bad, expected = np.flatnonzero(self.labels != IGNORE_LABEL), f"{IGNORE_LABEL} (untrimmed)"
        else:
            classes = self.manifest["num_classes"]
            bad, expected = np.flatnonzero((self.labels < 0) | (self.labels >= classes)), f"0 to {classes - 1}"
        if len(bad):
            i = int(bad[0])
            raise DataFormatError(f"{self.path / 'labels.npy'}: sample {i} ({self._names[i]}) has label "
                                  f"{self.labels[i]}; expected {expected}")

    def _finite(self, values: np.ndarray, sample: int) -> np.ndarray:
        """``values`` read from sample ``sample`` of data.npy, or DataFormatError if they hold NaN or inf."""
        if not np.isfinite(values).all():
            raise DataFormatError(f"{self.path / 'data.npy'}: sample {sample} ({self._names[sample]}) holds NaN "
                                  "or infinite values (a damaged file? prepare the dataset again)")
        return values

    def check_config(self, config, *, head: bool = True) -> None:
        """Raise ConfigError naming, in one line, every way a :class:`~usdrl.config.USDRLConfig` does not fit
        this data, each kind of mismatch with what to do about it.

        Checked: layout, joints, persons, channels, frames, and (with ``head``) the classes of the
        head that the labels are for (clip head, or frame head for windows) when the config has
        one. Tasks that replace the head or do not use it pass ``head=False``.
        """
        channels, frames, joints, persons = self.input_shape
        if self.sampling == "windows":
            classes, reset, trainers = "num_frame_classes", "reset_frame_classifier", "train_detector and frame_probe"
        else:
            classes, reset, trainers = "num_classes", "reset_classifier", "linear_probe and finetune"
        # (compared fields, what to do when any of them differs)
        kinds = [
            ({"layout": (config.layout, self.layout), "joints": (config.num_joints, joints)},
             f"use a model pretrained (or converted) for layout {self.layout!r}, e.g. "
             f"`usdrl pretrain --data {self.path.parent}`"),
            ({"persons": (config.num_persons, persons), "channels": (config.in_channels, channels)},
             f"prepared data always has {NUM_PERSONS} persons (an all-zero one pads one-person clips) and "
             f"{NUM_CHANNELS} channels (xyz, or x, y and score/zero for 2D data), so use a model with "
             f"num_persons={NUM_PERSONS}, in_channels={NUM_CHANNELS}"),
            ({"frames": (config.num_frames, frames)},
             f"open the dataset with num_frames={config.num_frames} (SkeletonDataset "
             + ("cuts windows of that length)" if self.sampling == "windows" else "resamples each clip to it)")),
        ]
        if head and getattr(config, classes):
            kinds.append(({classes: (getattr(config, classes), self.num_classes)},
                          f"`model.{reset}({self.num_classes})` gives the model a fresh head for this data "
                          f"({trainers} do that themselves)"))
        problems = []
        for pairs, hint in kinds:
            found = [f"{what} {mine!r} in the config, {theirs!r} in the data" for what, (mine, theirs) in pairs.items()
                     if mine != theirs]
            if found:
                problems.append("; ".join(found) + f": {hint}")
        if problems:
            raise ConfigError(f"the model config does not fit {self.path} ({self.manifest['source']} "
                              f"{self.manifest['benchmark']}, sampling {self.sampling}): "
                              + "; and ".join(problems), keywords=("linear_probe", "finetune", "train_detector"))

    # -- access ------------------------------------------------------------------------
    def _open(self) -> np.ndarray:
        """The data memory map of this process (opened on first use after a fork or unpickling)."""
        if self._pid != os.getpid():
            self._data = _load_array(self.path, "data", self._arrays["data"], mmap=True)
            if self.kind == UNTRIMMED:
                self._frame_labels = _load_array(self.path, "frame_labels", self._arrays["frame_labels"], mmap=True)
            self._pid = os.getpid()
        return self._data

    @property
    def padded_clips(self) -> np.ndarray:
        """The stored samples ``(N, C, Tmax, V, M)`` as a read-only memory map, zero after each
        sample's valid frames (:attr:`lengths`); what batched pipelines such as pretraining read."""
        return self._open()

    @property
    def frame_labels(self) -> np.ndarray:
        """Untrimmed splits: per-frame labels ``(N, Tmax)`` (0 = background, -1 after each sequence)."""
        if self.kind != UNTRIMMED:
            raise ConfigError(f"split {self.split!r} holds {self.kind}; only untrimmed splits have frame labels")
        self._open()
        return self._frame_labels

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state.update(_data=None, _frame_labels=None, _pid=None, _rng=None, _rng_key=None)
        return state

    def rng_state(self) -> dict | None:
        """The state of this process's random-crop generator (``None`` before its first crop): what a
        training checkpoint keeps for an exact resume (:mod:`usdrl.engine`)."""
        return None if self._rng is None else {"key": self._rng_key, "state": self._rng.bit_generator.state}

    def set_rng_state(self, state: dict | None) -> None:
        """Restore a :meth:`rng_state`."""
        self._rng = self._rng_key = None
        if state is not None:
            self._rng, self._rng_key = np.random.default_rng(), state["key"]
            self._rng.bit_generator.state = state["state"]

    def _generator(self) -> np.random.Generator:
        info = torch.utils.data.get_worker_info()
        key = None if info is None else info.seed
        if self._rng is None or self._rng_key != key:
            entropy = [part for part in (self.seed, key) if part is not None]
            self._rng, self._rng_key = np.random.default_rng(entropy or None), key
        return self._rng

    def __len__(self) -> int:
        return len(self.windows) if self.windows is not None else len(self.lengths)

    def __getitem__(self, index: int):
        index = range(len(self))[index]
        data = self._open()
        if self.windows is not None:
            return self._window(data, *self.windows[index])
        n = int(self.lengths[index])
        if self.observe_ratio is not None:
            n = observed_length(n, self.observe_ratio)
        valid = self._finite(data[index, :, :n], index)
        if self.sampling == "resample":
            clip = resample(valid, self.num_frames)
        elif self.sampling == "random_crop":
            low, high = self.ratio
            clip = random_crop_resize(valid, self._generator(), min_ratio=low, max_ratio=high,
                                      min_length=self.num_frames, size=self.num_frames)
        else:
            clip = center_crop_resize(valid, self.ratio, size=self.num_frames)
        return np.asarray(clip, dtype=np.float32), int(self.labels[index])

    def _window(self, data: np.ndarray, sequence: int, start: int) -> tuple[np.ndarray, np.ndarray]:
        valid = min(self.num_frames, int(self.lengths[sequence]) - int(start))
        clip = np.zeros(self.input_shape, dtype=np.float32)
        clip[:, :valid] = self._finite(data[sequence, :, start:start + valid], sequence)
        labels = np.full(self.num_frames, IGNORE_LABEL, dtype=np.int64)
        labels[:valid] = self._frame_labels[sequence, start:start + valid]
        return clip, labels

    # -- opening a split for a model (usdrl.tasks, usdrl.train) -----------------------------------
    @classmethod
    def for_model(cls, path: str | PathLike, split: str | None, model, *, head: bool = True,
                  **options) -> "SkeletonDataset":
        """Split ``split`` of the prepared dataset at ``path`` sampled as ``model`` takes it
        (``num_frames=model.config.num_frames``), checked against the model's config
        (:meth:`check_config`; ``head=False`` for tasks that replace or do not use the head).

        ``path``: a prepared dataset folder, or one of its split folders (then ``split`` may be
        None, see :func:`resolve_split`). ``model``: a :class:`~usdrl.model.USDRL` or its
        :class:`~usdrl.config.USDRLConfig`. ``options``: the other keywords of the constructor
        (``sampling``, ``window_stride``, ``observe_ratio``, ``seed``, ...).
        """
        config = getattr(model, "config", model)
        root, split = resolve_split(path, split)
        dataset = cls(root, split, num_frames=config.num_frames, **options)
        dataset.check_config(config, head=head)
        return dataset


def resolve_split(path: str | PathLike, split: str | None = None) -> tuple[Path, str]:
    """``(dataset folder, split name)`` of ``path``: a prepared dataset folder (then ``split`` names the
    split) or one of its split folders (then that split, whatever ``split`` says: it is only the default
    for a dataset folder). ConfigError when ``path`` is neither, or is a dataset folder and ``split`` is None."""
    path = Path(path)
    if (path / MANIFEST).is_file():
        if split is None:
            raise ConfigError(f"{path} is a prepared dataset of splits {', '.join(read_manifest(path)['splits'])}: "
                              "name one with split", keywords=("split",))
        return path, split
    if (path.parent / MANIFEST).is_file():
        return path.parent, path.name
    raise ConfigError(f"{path}: expected a prepared dataset folder (with {MANIFEST}) or one of its split folders")


def open_split(data, split: str | None = None, *, model=None, head: bool = True,
               **options) -> torch.utils.data.Dataset:
    """The dataset a task reads, from any of the forms a task's ``data`` takes:

    * a dataset object (a :class:`SkeletonDataset`, a ``Subset`` of one, or any sized sequence of
      ``(clip (C, T, V, M), label)`` items, a list included): returned unchanged, ``split`` and
      ``options`` unused;
    * a prepared dataset folder: its split ``split`` (the task's default split);
    * a split folder inside a prepared dataset: that split;
    * a pair ``(path, split)``: that split of that dataset folder.

    A path is opened as ``model`` takes it when ``model`` is given (:meth:`SkeletonDataset.for_model`,
    checked with ``head``), else with ``options`` alone.
    """
    if isinstance(data, tuple):
        if len(data) != 2 or not isinstance(data[0], (str, PathLike)) or not isinstance(data[1], str):
            raise ConfigError(f"expected data as (prepared folder, split name), got {data!r}")
        data, split = data
    if not isinstance(data, (str, PathLike)):
        if isinstance(data, torch.utils.data.Dataset) or hasattr(data, "__len__") and hasattr(data, "__getitem__"):
            return data
        raise ConfigError(f"expected a dataset, a prepared dataset folder, a split folder or (folder, split), "
                          f"got {type(data).__name__}")
    if model is None:
        return SkeletonDataset(*resolve_split(data, split), **options)
    return SkeletonDataset.for_model(data, split, model, head=head, **options)
