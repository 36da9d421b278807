"""Training-run files that survive kills and damage: verified checkpoints and the metrics log.

A checkpoint ``checkpoint_NNNN.pt`` (a ``torch.save`` dictionary, loadable with
``torch.load(weights_only=True)``) gets a ``checkpoint_NNNN.pt.sha256`` beside it in
``sha256sum`` format (``sha256sum -c`` checks it). Both are written atomically, the checksum
first, so a checkpoint that exists has its checksum (a kill in between leaves a checksum
without its file, or beside an older file it does not match: both read as damaged, never
as good). Loading verifies the checksum before unpickling: a truncated, empty or overwritten
file is refused, and so is one with flipped bytes that would still unpickle.
:func:`newest_intact_checkpoint` falls back past damaged checkpoints to the newest intact one.

The metrics log (``metrics.jsonl``, one JSON object per line, appended) may end in a torn
line after a kill; :func:`read_metrics` drops that line and refuses damage anywhere else.
"""

import errno
import hashlib
import json
import logging
import os
import re
import shutil
from pathlib import Path

import torch

from ._io import atomic_write, atomic_write_text
from .errors import CheckpointError, CheckpointWriteError, DataFormatError

logger = logging.getLogger(__name__)

CHECKPOINT_PATTERN = re.compile(r"checkpoint_(\d{4,})\.pt")
_CHUNK = 1 << 20


def checksum_path(path: str | os.PathLike) -> Path:
    """The checksum file of the checkpoint ``path``: ``path`` + ``.sha256``."""
    path = Path(path)
    return path.with_name(path.name + ".sha256")


def list_checkpoints(run_dir: str | os.PathLike) -> list[Path]:
    """The ``checkpoint_NNNN.pt`` files of ``run_dir``, oldest first (by their number); none if it is absent."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        return []
    found = [(int(m[1]), path) for path in run_dir.glob("checkpoint_*.pt")
             if (m := CHECKPOINT_PATTERN.fullmatch(path.name))]
    return [path for _, path in sorted(found)]


def latest_checkpoint(run_dir: str | os.PathLike) -> Path | None:
    """The newest ``checkpoint_NNNN.pt`` of a run folder (unverified), or ``None``."""
    found = list_checkpoints(run_dir)
    return found[-1] if found else None


class _Digest:
    """A write-only file object that hashes (and counts) what passes through it to ``file`` (if any)."""

    def __init__(self, file=None):
        self.file, self.sha256, self.size = file, hashlib.sha256(), 0

    def write(self, data) -> int:
        self.sha256.update(data)
        self.size += len(data)
        return self.file.write(data) if self.file is not None else len(data)

    def flush(self) -> None:
        if self.file is not None:
            self.file.flush()


def save_checkpoint(path: str | os.PathLike, state: dict) -> Path:
    """Write ``state`` with ``torch.save`` to ``path`` atomically, its SHA-256 to ``checksum_path(path)`` first.

    Raises :class:`CheckpointWriteError` when the disk is full, naming the file, the space it
    needs and the space free; the partial file is removed and the other checkpoints are untouched.
    """
    path = Path(path)

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as file:
            digest = _Digest(file)
            torch.save(state, digest)
        atomic_write_text(checksum_path(path), f"{digest.sha256.hexdigest()}  {path.name}\n")

    try:
        return atomic_write(path, write)
    except (OSError, RuntimeError) as exc:  # torch.save reports a failed write as RuntimeError
        if not _disk_full(exc):
            raise
        sizer = _Digest()
        torch.save(state, sizer)
        free = shutil.disk_usage(path.parent).free
        earlier = [p.name for p in list_checkpoints(path.parent) if p != path]
        untouched = f"the earlier checkpoints are untouched (newest: {earlier[-1]})" if earlier else \
            "no earlier checkpoint exists"
        raise CheckpointWriteError(
            errno.ENOSPC, f"no space left to write {path}: it needs {_size(sizer.size)} ({sizer.size:,} bytes), "
                          f"{_size(free)} free on that disk; the partial file was removed and {untouched}. "
                          "Free space, then resume") from exc


def _disk_full(exc: BaseException | None) -> bool:
    """Whether ``exc`` or an exception it was raised from is ENOSPC or EDQUOT."""
    while exc is not None:
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def _size(num_bytes: int) -> str:
    """``num_bytes`` for people: ``512 B``, ``3.4 KiB``, ``1.2 GiB``."""
    if num_bytes < 1024:
        return f"{num_bytes} B"
    exponent = min((num_bytes.bit_length() - 1) // 10, 4)
    return f"{num_bytes / 1024 ** exponent:.1f} {('', 'KiB', 'MiB', 'GiB', 'TiB')[exponent]}"


def _file_sha256(path: Path) -> str:
    sha256 = hashlib.sha256()
    with open(path, "rb") as file:
        while chunk := file.read(_CHUNK):
            sha256.update(chunk)
    return sha256.hexdigest()


def load_checkpoint(path: str | os.PathLike) -> dict:
    """The verified state of the checkpoint ``path`` (tensors on the CPU).

    Raises :class:`CheckpointError` naming the file when its checksum file is malformed, its
    bytes do not match it, or it does not unpickle. A checkpoint without a checksum file
    (written before usdrl checked them) is loaded unverified, with a warning.
    """
    path = Path(path)
    sidecar = checksum_path(path)
    if sidecar.is_file():
        fields = sidecar.read_text(encoding="utf-8", errors="replace").split()
        if len(fields) != 2 or not re.fullmatch(r"[0-9a-f]{64}", fields[0]) or fields[1] != path.name:
            raise CheckpointError(f"{sidecar}: expected '<64 hex digits>  {path.name}', got {fields[:2]}")
        actual = _file_sha256(path)
        if actual != fields[0]:
            raise CheckpointError(f"{path} is damaged: its SHA-256 is {actual[:16]}..., {sidecar.name} says "
                                  f"{fields[0][:16]}... ({path.stat().st_size} bytes)")
    else:
        logger.warning("%s has no checksum file %s: loading it unverified", path, sidecar.name)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # any unpickling failure: the file is not a checkpoint
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise CheckpointError(f"{path} cannot be read as a checkpoint ({type(exc).__name__}: {reason[:200]})") \
            from None
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: expected a checkpoint dictionary, got {type(state).__name__}")
    return state


def newest_intact_checkpoint(run_dir: str | os.PathLike) -> tuple[Path, dict] | None:
    """``(path, state)`` of the newest checkpoint of ``run_dir`` that verifies, or ``None`` if it has none.

    Damaged newer checkpoints are skipped with a warning each, and the one chosen is logged.
    Raises :class:`CheckpointError` listing every checkpoint and its damage when none is intact.
    """
    problems = []
    for path in reversed(list_checkpoints(run_dir)):
        try:
            state = load_checkpoint(path)
        except CheckpointError as exc:
            logger.warning("skipping a damaged checkpoint: %s", exc)
            problems.append(str(exc))
            continue
        if problems:
            logger.warning("resuming from %s, the newest intact checkpoint (%d newer %s damaged)", path.name,
                           len(problems), "one is" if len(problems) == 1 else "ones are")
        return path, state
    if problems:
        raise CheckpointError(f"no intact checkpoint in {run_dir}: " + "; ".join(problems))
    return None


def remove_stale_temporaries(run_dir: str | os.PathLike) -> None:
    """Delete the hidden temporary files that killed checkpoint writes left in ``run_dir``.

    Call only when no other process writes checkpoints into ``run_dir`` (one run per folder).
    """
    for tmp in Path(run_dir).glob(".checkpoint_*.tmp"):
        logger.info("removing %s, left by a killed checkpoint write (%s)", tmp.name, _size(tmp.stat().st_size))
        tmp.unlink(missing_ok=True)


def read_metrics(path: str | os.PathLike) -> list[tuple[str, dict]]:
    """The records of a metrics log: ``(line, record)`` per non-blank line, each record a dict with a ``step``.

    A last line that is not a JSON object (a kill mid-write tears it) is dropped with a
    warning; any other bad line raises :class:`DataFormatError` naming the file and line.
    """
    path = Path(path)
    lines = path.read_text(encoding="utf-8").splitlines()
    last = max((number for number, line in enumerate(lines, 1) if line.strip()), default=0)
    records = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            if number == last:
                logger.warning("%s, line %d: dropping a torn last line (a killed run was writing it): %r",
                               path, number, line[:80])
                break
            raise DataFormatError(f"{path}, line {number}: not valid JSON ({exc.msg}, column {exc.colno}); only "
                                  "the last line may be torn by a kill") from None
        if not isinstance(record, dict) or not isinstance(record.get("step"), int):
            raise DataFormatError(f"{path}, line {number}: expected a JSON object with an integer 'step', "
                                  f"got {line[:80]!r}")
        records.append((line, record))
    return records
