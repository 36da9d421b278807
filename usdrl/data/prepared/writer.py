"""The writer: a plan run through the process pool into preallocated arrays, written into a hidden folder
that is renamed into place (all or nothing) under a lock; and :func:`prepare_dataset`, which plans and writes."""

import glob
import json
import logging
import os
import shutil
import uuid
from os import PathLike
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from ..._io import atomic_write_text
from ..._version import __version__
from ...errors import ConfigError, DataFormatError
from ...skeleton import get_layout
from ..preprocess import PADDINGS
from .planners import _PLANNERS, _Plan, _SplitPlan
from .pool import _run_tasks
from .recipes import RECIPE_VERSION
from .schema import (
    BENCHMARKS,
    FORMAT,
    FORMAT_VERSION,
    IGNORE_LABEL,
    MANIFEST,
    NUM_CHANNELS,
    NUM_PERSONS,
    SOURCES,
    UNTRIMMED,
    moved_aside,
)

try:
    import fcntl
except ImportError:  # Windows: outputs are not locked, and what killed runs left is not cleaned
    fcntl = None

logger = logging.getLogger(__name__)


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
        if plan.image_shapes:  # 2D data: one (height, width) per sample
            np.save(folder / "image_shape.npy", np.asarray(plan.image_shapes, dtype=np.float64).reshape(-1, 2))
        self.frame_labels = None
        if plan.kind == UNTRIMMED:
            self.frame_labels = _RowWriter(folder / "frame_labels.npy", self.shape[:1] + self.shape[2:3], np.int64)

    def arrays(self) -> dict[str, dict]:
        """Shapes and dtypes of the split's arrays, for the manifest."""
        n = len(self.plan.names)
        out = {"data": (self.shape, "float32"), "num_frames": ((n,), "int64"), "labels": ((n,), "int64")}
        if self.frame_labels is not None:
            out["frame_labels"] = ((n, self.max_frames), "int64")
        if self.plan.image_shapes:
            out["image_shape"] = ((n, 2), "float64")
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
    aside = moved_aside(out)
    if not out.exists() and aside:
        os.rename(aside[0], out)
        logger.warning("put back %s: a killed prepare had moved it aside to %s", out, aside[0])
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
    """Convert a raw dataset into a prepared dataset folder (:mod:`usdrl.data.prepared` describes the layout).

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
