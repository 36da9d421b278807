"""Planners: the first pass over a raw dataset, from the files' headers, listing each split's samples
(name, label, length) and the worker tasks that produce them."""

import logging
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..._text import read_lines
from ...errors import DataFormatError
from ..ntu import parse_ntu_name, read_ntu_skeleton, split_ntu_samples
from ..pkummd import NUM_CLASSES as PKUMMD_CLASSES
from ..pkummd import ActionInstance, parse_pkummd_name, read_pkummd_labels, read_pkummd_split
from ..pyskl import load_pyskl
from ..uav import NUM_CLASSES as UAV_CLASSES
from ..uav import parse_uav_name, read_uav_skeleton, split_uav_samples
from .pool import _AnnotationTask, _PKUMMDTask, _SkeletonFileTask
from .recipes import Recipe2D, Recipe3D, _describe
from .schema import CLIPS, IGNORE_LABEL, RAW_LAYOUTS, UNTRIMMED

logger = logging.getLogger(__name__)


@dataclass
class _SplitPlan:
    """The samples of one output split, in order."""

    kind: str
    names: list[str] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)
    lengths: list[int] = field(default_factory=list)
    #: 2D data: the ``(height, width)`` each sample's x and y were divided by (empty for 3D data).
    image_shapes: list[tuple[float, float]] = field(default_factory=list)


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

    def add(self, task, samples: Iterable[tuple]) -> None:
        """Add ``task``, which yields one sample per ``(split, name, label, length)``, in order; 2D samples
        add the ``(height, width)`` their x and y are divided by: ``(split, name, label, length, image_shape)``."""
        targets = []
        for split, name, label, length, *image_shape in samples:
            plan = self.splits[split]
            targets.append((split, len(plan.names)))
            plan.names.append(name)
            plan.labels.append(int(label))
            plan.lengths.append(int(length))
            if image_shape:
                plan.image_shapes.append(tuple(float(size) for size in image_shape[0]))
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
            plan.add(_AnnotationTask(ann, recipe), [(part, ann["frame_dir"], ann["label"], ann["keypoint"].shape[1],
                                                     ann["img_shape"])])
    return plan


_PLANNERS = {"ntu60": _plan_ntu, "ntu120": _plan_ntu, "pkummd1": _plan_pkummd, "pkummd2": _plan_pkummd,
             "uav": _plan_uav, "ntu2d": _plan_ntu2d}
