"""Evaluate folders of PKU-MMD label and proposal files with the official mAP (§6.8).

Both folders hold one file per video with the same name, lines ``label,start,end,confidence``
(ground truth) and ``label,start,end,score`` (proposals), read as the official ``evaluate.py``
reads them: numbers separated by commas or whitespace, taken as given.
"""

import logging
from collections.abc import Iterable
from os import PathLike
from pathlib import Path

from .._text import format_error, parse_int, read_lines
from ..errors import DataFormatError
from .metrics import detection_map

logger = logging.getLogger(__name__)


def _parse_float(path, number: int, token: str, what: str) -> float:
    try:
        value = float(token)
    except ValueError:
        raise format_error(path, number, f"{what} must be a number, found {token!r}") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise format_error(path, number, f"{what} must be finite, found {token!r}")
    return value


def _read_rows(path: str | PathLike, last: str) -> list[tuple[int, float, float, float]]:
    """``label,start,end,<last>`` lines (commas or whitespace): an integer label >= 0 and finite numbers."""
    out = []
    for number, line in enumerate(read_lines(path), start=1):
        fields = line.replace(",", " ").split()
        if len(fields) != 4:
            raise format_error(path, number, f"expected label,start,end,{last}, found {len(fields)} fields")
        label = parse_int(path, number, fields[0], "the label")
        start = _parse_float(path, number, fields[1], "the start frame")
        end = _parse_float(path, number, fields[2], "the end frame")
        out.append((label, start, end, _parse_float(path, number, fields[3], f"the {last}")))
    return out


def read_detection_proposals(path: str | PathLike) -> list[tuple[int, float, float, float]]:
    """Read a proposal file: one ``label,start,end,score`` line per proposal (commas or whitespace).

    ``label`` is an integer >= 0; ``start``, ``end`` and ``score`` are finite numbers (the
    official script reads every field with ``float``) with ``start <= end``. An empty file
    means no proposals. Raises DataFormatError naming file and line for anything else.
    """
    rows = _read_rows(path, "score")
    for number, (_, start, end, _) in enumerate(rows, start=1):
        if start > end:
            raise format_error(path, number, f"start {start:g} is after end {end:g}")
    return rows


def read_detection_labels(path: str | PathLike) -> list[tuple[int, float, float, float]]:
    """Read a ground-truth label file for evaluation: ``label,start,end,confidence`` lines.

    As :func:`read_detection_proposals`, but a line with ``start > end`` (the PKU-MMD release
    has a few) is kept as given and logged: the official overlap is then negative, so the
    instance is never matched but still counts in recall, as in the official script.
    """
    rows = _read_rows(path, "confidence")
    for number, (_, start, end, _) in enumerate(rows, start=1):
        if start > end:
            logger.warning("%s, line %d: start %g > end %g; kept (never matched, as in the official evaluate.py)",
                           path, number, start, end)
    return rows


def _video_files(folder: Path) -> dict[str, Path]:
    if not folder.is_dir():
        raise NotADirectoryError(f"{folder}: not a directory")
    return {p.name: p for p in sorted(folder.iterdir()) if p.is_file() and not p.name.startswith(".")}


def eval_detection_folders(
    gt_dir: str | PathLike,
    pred_dir: str | PathLike,
    iou_thresholds: Iterable[float] = (0.1, 0.2, 0.3, 0.4, 0.5),
    *,
    present_classes: bool = False,
) -> dict[float, dict[str, float]]:
    """Official scores of the proposal files in ``pred_dir`` against ``gt_dir``: ``{iou: {mAP_a, mAP_v, AP, F1}}``.

    As in the official ``evaluate.py``, the videos evaluated are the files of ``pred_dir``
    (an empty file is a video with no proposals, AP 0); ground-truth files without a
    proposal file are skipped (logged), so a full label folder can be used for a test
    split. Files are taken in name order (the official script takes ``os.listdir`` order,
    which only matters for exact score ties across videos). Hidden files are ignored. A
    proposal file without a ground-truth file raises DataFormatError; so does an empty
    ``pred_dir``. See :func:`~usdrl.tasks.metrics.detection_map` for the metric and
    ``present_classes``.
    """
    gt_files, pred_files = _video_files(Path(gt_dir)), _video_files(Path(pred_dir))
    if not pred_files:
        raise DataFormatError(f"{pred_dir}: no proposal files")
    missing = [name for name in pred_files if name not in gt_files]
    if missing:
        raise DataFormatError(f"{pred_files[missing[0]]}: no ground-truth file {Path(gt_dir) / missing[0]}")
    skipped = len(gt_files) - len(pred_files)
    if skipped:
        logger.info("%d ground-truth files have no proposal file and are not evaluated", skipped)
    ground_truth = {name: read_detection_labels(gt_files[name]) for name in pred_files}
    predictions = {name: read_detection_proposals(path) for name, path in pred_files.items()}
    return detection_map(ground_truth, predictions, iou_thresholds, present_classes=present_classes)
