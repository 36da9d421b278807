"""Worker tasks (one raw file or annotation -> its samples) and the process pool that runs them in order."""

import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ...errors import DataFormatError
from ..pkummd import ActionInstance, frame_labels, read_pkummd_skeleton
from ..sequence import SkeletonSequence
from .recipes import Recipe2D, Recipe3D

# A sample as a worker returns it: (data (C, T, V, M) float32, per-frame labels (T,) int64 or None).
_Result = tuple[np.ndarray, np.ndarray | None]


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
