"""Metrics of the downstream protocols: recognition, detection (PKU-MMD), segmentation, early prediction.

Conventions:

* Recognition accuracies and detection mAPs are fractions in ``[0, 1]``; segmentation
  metrics (frame accuracy, Edit, F1) are percentages in ``[0, 100]`` as in MS-TCN.
* A temporal segment ``(start, end)`` covers frames ``start <= t < end``; a proposal is
  ``(label, start, end, score)`` and a ground-truth instance ``(label, start, end)`` (any
  further fields, such as the PKU-MMD confidence, are ignored).
* Detection follows the latest official PKU-MMD ``evaluate.py`` exactly; every point where it
  is quirky is reproduced and named in the docstrings of :func:`average_precision` and
  :func:`detection_map`.
"""

import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import NamedTuple

import numpy as np
import torch

from ..errors import InputError

logger = logging.getLogger(__name__)

#: ``number_label`` of the official PKU-MMD ``evaluate.py``: label slots 0 (background) to 51.
PKUMMD_LABEL_SLOTS = 52
#: The labels the official mAP_action averages over: 1..51 (label 0 is never scored).
PKUMMD_ACTION_LABELS = range(1, PKUMMD_LABEL_SLOTS)


# ----------------------------------------------------------------------------- recognition

def _as_numpy(x, name: str) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    try:
        return np.asarray(x)
    except (TypeError, ValueError) as err:
        raise InputError(f"{name} must be an array or tensor, got {type(x).__name__}") from err


def _int_labels(x, name: str) -> np.ndarray:
    arr = _as_numpy(x, name)
    if arr.ndim != 1:
        raise InputError(f"{name} must be 1-D, got shape {arr.shape}")
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        raise InputError(f"{name} must hold integers, got dtype {arr.dtype}")
    return arr.astype(np.int64)


def topk_accuracy(scores, labels, k: int | Iterable[int] = (1, 5)) -> dict[str, float]:
    """Top-k accuracies of ``scores`` ``(N, K)`` (logits or probabilities) for ``labels`` ``(N,)``.

    A sample is correct at k when its label is among the k highest-scoring classes. Ties
    in score are ranked by class index (lower first, a stable descending sort), so a tie
    never counts twice. Returns ``{"top1": fraction, "top5": fraction, ...}`` in ``[0, 1]``.
    Raises InputError for mismatched shapes, ``N == 0``, or ``k`` outside ``1..K``.
    """
    scores = torch.as_tensor(_as_numpy(scores, "scores"))
    labels = torch.as_tensor(_int_labels(labels, "labels"))
    ks = (k,) if isinstance(k, int) else tuple(k)
    if scores.ndim != 2 or scores.shape[0] != labels.shape[0] or scores.shape[0] == 0:
        raise InputError(f"scores must be (N, K) with N = len(labels) = {labels.shape[0]} > 0, "
                         f"got {tuple(scores.shape)}")
    num_classes = scores.shape[1]
    if not ks or any(not 1 <= kk <= num_classes for kk in ks):
        raise InputError(f"every k must be in 1..{num_classes} (the number of classes), got {ks}")
    if labels.min() < 0 or labels.max() >= num_classes:
        raise InputError(f"labels must be in 0..{num_classes - 1}, got {labels.min().item()}..{labels.max().item()}")
    order = torch.sort(scores, dim=1, descending=True, stable=True).indices
    hit_rank = (order == labels[:, None]).float().argmax(dim=1)
    return {f"top{kk}": float((hit_rank < kk).double().mean()) for kk in ks}


def confusion_matrix(pred, labels, num_classes: int) -> np.ndarray:
    """``(K, K)`` int64 counts: row = true label, column = predicted label (sklearn's convention).

    ``pred`` and ``labels`` are ``(N,)`` integers in ``0..num_classes - 1`` (InputError otherwise).
    """
    pred, labels = _int_labels(pred, "pred"), _int_labels(labels, "labels")
    if pred.shape != labels.shape:
        raise InputError(f"pred and labels must have the same length, got {pred.shape[0]} and {labels.shape[0]}")
    for name, arr in (("pred", pred), ("labels", labels)):
        if arr.size and (arr.min() < 0 or arr.max() >= num_classes):
            raise InputError(f"{name} must be in 0..{num_classes - 1}, got {arr.min()}..{arr.max()}")
    flat = np.bincount(labels * num_classes + pred, minlength=num_classes * num_classes)
    return flat.reshape(num_classes, num_classes).astype(np.int64)


# ----------------------------------------------------------------------------- detection

def temporal_iou(a: Sequence[float], b: Sequence[float]) -> float:
    """Temporal IoU of segments ``a = (s1, e1)`` and ``b = (s2, e2)``, clipped below at 0.

    ``(min(e1, e2) - max(s1, s2)) / (max(e1, e2) - min(s1, s2))``, 0 for disjoint segments and
    for two identical zero-length ones (0 / 0). Used by :func:`temporal_nms` and the demos;
    the PKU-MMD mAP uses the unclipped overlap (see :func:`detection_map`).
    """
    s1, e1 = a[0], a[1]
    s2, e2 = b[0], b[1]
    union = max(e1, e2) - min(s1, s2)
    if union <= 0:
        return 0.0
    return max(0.0, (min(e1, e2) - max(s1, s2)) * 1.0 / (1.0 * union))


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """Maximal runs ``[u, v)`` of True in a 1-D boolean array."""
    edges = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    return list(zip(np.flatnonzero(edges == 1).tolist(), np.flatnonzero(edges == -1).tolist(), strict=True))


def temporal_nms(proposals: Sequence[tuple], iou: float) -> list[tuple]:
    """Greedy class-agnostic temporal NMS of ``(label, start, end, score)`` proposals.

    Repeatedly keep the best-scoring proposal and drop every proposal, of any class, whose
    :func:`temporal_iou` with a kept one exceeds ``iou``. It is class-agnostic because the
    runs of one class from :func:`proposals_from_scores` never overlap, so per-class NMS
    would do nothing there. Score ties keep the earlier proposal; the kept proposals are
    returned in their input order.
    """
    order = sorted(range(len(proposals)), key=lambda i: -proposals[i][3])
    kept: list[int] = []
    for i in order:
        if all(temporal_iou(proposals[i][1:3], proposals[j][1:3]) <= iou for j in kept):
            kept.append(i)
    return [proposals[i] for i in sorted(kept)]


def proposals_from_scores(
    scores, threshold: float = 0.02, *, background: int | None = 0, min_length: int = 1, nms_iou: float | None = None
) -> list[tuple[int, int, int, float]]:
    """Detection proposals from per-frame class probabilities ``scores`` ``(T, K)`` (§6.8 steps 2-3).

    For every class ``c != background`` (all classes if ``background`` is None), each maximal
    run ``[u, v)`` of frames with ``scores[t, c] > threshold`` (strictly above) becomes
    ``(c, u, v, mean(scores[u:v, c]))``; the label is the column index. Runs shorter than
    ``min_length`` frames are dropped (the reference has no minimum: 1), then
    :func:`temporal_nms` (class-agnostic) is applied if ``nms_iou`` is given (the reference has
    none). Proposals come ordered by class, then start frame.
    """
    arr = _as_numpy(scores, "scores").astype(np.float64)
    if arr.ndim != 2:
        raise InputError(f"scores must be (T, K), got shape {arr.shape}")
    if min_length < 1:
        raise InputError(f"min_length must be >= 1, got {min_length}", keywords=("min_length",))
    out = []
    for c in range(arr.shape[1]):
        if c == background:
            continue
        for u, v in _runs(arr[:, c] > threshold):
            if v - u >= min_length:
                out.append((c, u, v, float(arr[u:v, c].mean())))
    return out if nms_iou is None else temporal_nms(out, nms_iou)


class _Segments(NamedTuple):
    """Proposals or ground-truth instances as arrays ``(n,)``, in list order (scores 0 for instances)."""

    label: np.ndarray  # int64
    start: np.ndarray  # float64
    end: np.ndarray
    score: np.ndarray
    video: np.ndarray  # int64 index of the video

    @classmethod
    def of(cls, rows: Sequence[tuple], videos: Sequence[int]) -> "_Segments":
        """From ``(label, start, end[, score, ...])`` rows (no score: 0) and each row's video."""
        fields = np.array([(r[0], r[1], r[2], r[3] if len(r) > 3 else 0.0) for r in rows], dtype=np.float64)
        fields = fields.reshape(len(rows), 4)
        return cls(fields[:, 0].astype(np.int64), fields[:, 1], fields[:, 2], fields[:, 3],
                   np.asarray(videos, dtype=np.int64).reshape(len(rows)))

    def take(self, index) -> "_Segments":
        return _Segments(*(field[index] for field in self))


def _overlaps(proposals: _Segments, instances: _Segments) -> np.ndarray:
    """``(P, G)`` overlaps as the official ``evaluate.py`` defines them.

    0 unless label and video agree; otherwise ``(min(e) - max(s)) / (max(e) - min(s))``, not
    clipped (disjoint segments are negative). A zero union (one zero-length segment, repeated)
    gives 0, where the official script divides by zero.
    """
    same = (proposals.label[:, None] == instances.label) & (proposals.video[:, None] == instances.video)
    inter = np.minimum(proposals.end[:, None], instances.end) - np.maximum(proposals.start[:, None], instances.start)
    union = np.maximum(proposals.end[:, None], instances.end) - np.minimum(proposals.start[:, None], instances.start)
    out = np.zeros(same.shape)
    np.divide(inter, union, out=out, where=same & (union != 0))
    return out


def _match(proposals: _Segments, instances: _Segments, iou: float) -> tuple[np.ndarray, np.ndarray]:
    """The official ``match``: ``(record, counts)``, the instance each proposal recorded ``(P,)``
    (-1: none) and how many proposals recorded each instance ``(G,)``.

    Each proposal walks the instances of its label in list order: an instance whose overlap is
    below ``iou``, or below the overlap with the instance recorded so far, is skipped, any
    other is recorded. Before any is recorded, the official script compares with
    ``ground[cos_map[x]]`` with ``cos_map[x] = -1``: the list's last instance, reproduced here.
    (For ``iou >= 0`` that quirk never changes the record: the last instance is either not a
    candidate, overlap 0 or below ``iou``, or the walk's own last candidate.)
    """
    record = np.full(len(proposals.label), -1, dtype=np.int64)
    counts = np.zeros(len(instances.label), dtype=np.int64)
    if not len(instances.label):
        return record, counts
    with_last = _overlaps(proposals, instances.take([-1]))[:, 0]
    for label in np.unique(proposals.label):
        rows, cols = np.flatnonzero(proposals.label == label), np.flatnonzero(instances.label == label)
        overlaps = _overlaps(proposals.take(rows), instances.take(cols))
        for row, proposal in enumerate(rows.tolist()):
            current = with_last[proposal]
            for col in np.flatnonzero(overlaps[row] >= iou).tolist():
                if overlaps[row, col] >= current:
                    record[proposal], current = cols[col], overlaps[row, col]
    np.add.at(counts, record[record >= 0], 1)
    return record, counts


def _precision_recall(positive: int, proposals: int, instances: int) -> tuple[float, float]:
    """The official ``calc_pr``: ``(positive / proposals, positive / instances)``, ``(0, 0)`` if either count is 0."""
    if proposals == 0 or instances == 0:
        return 0.0, 0.0
    return positive / proposals, positive / instances


def _official_ap(proposals: _Segments, instances: _Segments, iou: float) -> float:
    """The official ``ap(lst, ratio, ground)`` (see :func:`average_precision`)."""
    ranked = proposals.take(np.argsort(proposals.score, kind="stable"))
    record, counts = _match(ranked, instances, iou)
    positive, remaining, total = int((counts > 0).sum()), len(record), len(counts)
    best_precision, recall = _precision_recall(positive, remaining, total)
    score = 0.0
    for instance in record.tolist():
        remaining -= 1
        if instance < 0:
            continue
        counts[instance] -= 1
        if counts[instance] == 0:
            positive -= 1
        precision, new_recall = _precision_recall(positive, remaining, total)
        best_precision = max(best_precision, precision)
        score += best_precision * (recall - new_recall)
        recall = new_recall
    return score


def _official_f1(proposals: _Segments, instances: _Segments, iou: float) -> float:
    """The official ``f1``: ``2PR / (P + R)`` of the matched instances; 0 when ``P + R = 0`` (the official
    script divides by zero there)."""
    _, counts = _match(proposals, instances, iou)
    precision, recall = _precision_recall(int((counts > 0).sum()), len(proposals.label), len(counts))
    return 2 * precision * recall / (precision + recall) if precision + recall else 0.0


def average_precision(proposals: Sequence[tuple], ground_truth: Sequence[tuple], iou: float) -> float:
    """AP of one video's ``proposals`` ``(label, start, end, score)`` against ``ground_truth`` ``(label, start, end)``.

    The official PKU-MMD ``ap`` (latest ``evaluate.py``, as the TPAMI release's ``cal_mAP.py``):

    * **Matching**: proposals sorted by ascending score (stable: of equal scores the one given
      first ranks lower). Each walks the instances of its label in the given order and
      records the last one with the highest overlap ``>= iou`` (the unclipped overlap
      ``(min(e) - max(s)) / (max(e) - min(s))``; the official index -1 quirk is reproduced,
      see :func:`_match`). ``positive`` = instances recorded by at least one proposal, so
      duplicates on one instance count once.
    * **Sweep**: precision ``positive / proposals left`` and recall ``positive / instances``
      (both 0 when either count is 0) start from the whole list. Proposals are removed from
      the lowest score up; an unmatched one only lowers the count of proposals left; a matched
      one lowers its instance's count and, when that reaches 0, ``positive``; each time,
      precision and recall are recomputed, precision is kept as a running maximum and
      ``AP += max precision * (previous recall - recall)``. No tail term, no early stop.

    No ground truth or no proposals give 0. Returns a fraction in ``[0, 1]``.
    """
    _check_instances("", ground_truth, 3, "ground-truth instance", None)
    _check_instances("", proposals, 4, "proposal", None)
    return _official_ap(_Segments.of(proposals, [0] * len(proposals)),
                        _Segments.of(ground_truth, [0] * len(ground_truth)), float(iou))


def _check_thresholds(iou_thresholds: Iterable[float]) -> tuple[float, ...]:
    thresholds = tuple(float(t) for t in iou_thresholds)
    if not thresholds or any(not 0.0 <= t <= 1.0 for t in thresholds):
        raise InputError(f"iou_thresholds must be a non-empty list of values in [0, 1], got {thresholds}")
    return thresholds


def _check_instances(video, items: Sequence[tuple], width: int, what: str, slots: int | None) -> None:
    where = f"video {video!r}: " if video != "" else ""
    for item in items:
        if len(item) < width:
            raise InputError(f"{where}each {what} needs {width} fields, got {tuple(item)}")
        label = item[0]
        if int(label) != label or label < 0 or (slots is not None and label >= slots):
            limit = "a non-negative integer" if slots is None else f"an integer in 0..{slots - 1}"
            raise InputError(f"{where}{what} label must be {limit}, got {label!r}")
        if not all(math.isfinite(float(x)) for x in item[1:width]):
            raise InputError(f"{where}{what} needs finite numbers, got {tuple(item)}")


def detection_map(
    ground_truth: Mapping[str, Sequence[tuple]],
    predictions: Mapping[str, Sequence[tuple]],
    iou_thresholds: Iterable[float] = (0.1, 0.2, 0.3, 0.4, 0.5),
    *,
    present_classes: bool = False,
) -> dict[float, dict[str, float]]:
    """mAP over actions and videos, global AP and F1 at each IoU threshold, as the official PKU-MMD ``evaluate.py``.

    ``predictions[video]``: proposals ``(label, start, end, score)``; ``ground_truth[video]``:
    instances ``(label, start, end[, ...])``. Returns ``{iou: {"mAP_a", "mAP_v", "AP", "F1"}}``,
    fractions in ``[0, 1]``. This is the latest revision of the official script (reproduced
    line for line by the TPAMI release's ``scripts/cal_mAP.py``, which gave its 75.7 / 74.9):

    * **Videos** are those of ``predictions``, in its order (the files of the prediction
      folder); each is paired with its ``ground_truth`` entry (InputError if missing).
      Ground-truth videos without predictions are not evaluated at all.
    * **AP** of a list is :func:`average_precision`'s, with overlaps 0 across videos.
    * **mAP_a**: the mean over labels 1..51 (51 terms: label 0 is background and never scored,
      a label without instances contributes 0) of the AP of the label's proposals and
      instances pooled over the videos (in video order, then as given). Labels must be in
      0..51. ``present_classes=True`` averages over the labels >= 1 present in the ground
      truth instead (any non-negative labels; not the official figure).
    * **mAP_v**: the mean over the videos of each video's AP.
    * **AP** and **F1**: all proposals against all instances (label-major, then video order);
      ``F1 = 2PR / (P + R)`` of the matched instances (0 when ``P + R = 0``, where the
      official script divides by zero).

    Raises InputError for no prediction video, a bad proposal or instance, or a threshold
    outside ``[0, 1]``.
    """
    thresholds = _check_thresholds(iou_thresholds)
    videos = list(predictions)
    if not videos:
        raise InputError("predictions must hold at least one video, got none")
    unknown = [v for v in videos if v not in ground_truth]
    if unknown:
        raise InputError(f"predictions name videos absent from the ground truth, e.g. {unknown[0]!r}")
    ignored = len(ground_truth) - len(videos)
    if ignored:
        logger.info("%d ground-truth videos have no predictions and are not evaluated", ignored)
    slots = None if present_classes else PKUMMD_LABEL_SLOTS
    for video in videos:
        _check_instances(video, ground_truth[video], 3, "ground-truth instance", slots)
        _check_instances(video, predictions[video], 4, "proposal", slots)
    proposals = _Segments.of([p for v in videos for p in predictions[v]],
                             [i for i, v in enumerate(videos) for _ in predictions[v]])
    instances = _Segments.of([g for v in videos for g in ground_truth[v]],
                             [i for i, v in enumerate(videos) for _ in ground_truth[v]])
    labels = sorted(set(instances.label.tolist()) - {0}) if present_classes else PKUMMD_ACTION_LABELS
    all_proposals = proposals.take(np.argsort(proposals.label, kind="stable"))
    all_instances = instances.take(np.argsort(instances.label, kind="stable"))
    out = {}
    for t in thresholds:
        ap_a = [_official_ap(proposals.take(proposals.label == c), instances.take(instances.label == c), t)
                for c in labels]
        ap_v = [_official_ap(proposals.take(proposals.video == i), instances.take(instances.video == i), t)
                for i in range(len(videos))]
        out[t] = {"mAP_a": sum(ap_a) / len(ap_a) if ap_a else 0.0, "mAP_v": sum(ap_v) / len(ap_v),
                  "AP": _official_ap(all_proposals, all_instances, t),
                  "F1": _official_f1(all_proposals, all_instances, t)}
        logger.debug("IoU %.2f: %s", t, out[t])
    return out


# ----------------------------------------------------------------------------- segmentation

def segments_of(labels, bg_class: int | Iterable[int] | None = None) -> list[tuple[int, int, int]]:
    """Run-length segments ``(label, start, end)`` (``end`` exclusive) of a 1-D label sequence.

    Segments whose label is in ``bg_class`` are left out (None: keep all).
    """
    arr = _int_labels(labels, "labels")
    background = _bg_set(bg_class)
    if arr.size == 0:
        return []
    bounds = np.flatnonzero(np.diff(arr)) + 1
    starts = np.concatenate([[0], bounds]).tolist()
    ends = np.concatenate([bounds, [arr.size]]).tolist()
    return [(int(arr[s]), s, e) for s, e in zip(starts, ends, strict=True) if int(arr[s]) not in background]


def _bg_set(bg_class) -> frozenset[int]:
    if bg_class is None:
        return frozenset()
    return frozenset([int(bg_class)] if isinstance(bg_class, int | np.integer) else map(int, bg_class))


def _pair(pred, gt) -> tuple[np.ndarray, np.ndarray]:
    pred, gt = _int_labels(pred, "pred"), _int_labels(gt, "gt")
    if pred.shape != gt.shape:
        raise InputError(f"pred and gt must have the same length, got {pred.shape[0]} and {gt.shape[0]}")
    return pred, gt


def frame_accuracy(pred, gt) -> float:
    """Percentage of frames whose predicted label equals the ground truth (``(T,)`` each, T > 0)."""
    pred, gt = _pair(pred, gt)
    if gt.size == 0:
        raise InputError("frame_accuracy needs at least one frame, got 0")
    return 100.0 * float((pred == gt).mean())


def _levenshtein(a: Sequence[int], b: Sequence[int]) -> int:
    row = list(range(len(b) + 1))
    for i, x in enumerate(a, start=1):
        prev, row[0] = row[0], i
        for j, y in enumerate(b, start=1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (x != y))
    return row[-1]


def edit_score(pred, gt, bg_class: int | Iterable[int] | None = None) -> float:
    """Segmental Edit score ``100 * (1 - Levenshtein(P, Y) / max(|P|, |Y|))`` (MS-TCN's ``edit_score``).

    ``P`` and ``Y`` are the label sequences of :func:`segments_of` for ``pred`` and ``gt``
    (background segments dropped, as MS-TCN's ``bg_class``). When both are empty (e.g.
    all background) the score is 100 (MS-TCN divides 0 by 0 there).
    """
    pred, gt = _pair(pred, gt)
    p = [s[0] for s in segments_of(pred, bg_class)]
    y = [s[0] for s in segments_of(gt, bg_class)]
    if not p and not y:
        return 100.0
    return 100.0 * (1.0 - _levenshtein(p, y) / max(len(p), len(y)))


def _f1_counts(pred, gt, overlap: float, bg_class) -> tuple[int, int, int]:
    """MS-TCN ``f_score``: (tp, fp, fn) of predicted segments against ground-truth segments at IoU ``overlap``.

    Each predicted segment, in temporal order, is compared with the ground-truth segment of
    highest IoU (same label required, the first on ties); it is a true positive if that
    IoU is ``>= overlap`` and that segment is not yet matched, a false positive otherwise.
    """
    pred, gt = _pair(pred, gt)
    p_seg, y_seg = segments_of(pred, bg_class), segments_of(gt, bg_class)
    hits = np.zeros(len(y_seg), dtype=bool)
    tp = fp = 0
    for label, start, end in p_seg:
        ious = [(min(end, e) - max(start, s)) / (max(end, e) - min(start, s)) if lab == label else 0.0
                for lab, s, e in y_seg]
        best = int(np.argmax(ious)) if ious else -1
        if best >= 0 and ious[best] >= overlap and not hits[best]:
            tp += 1
            hits[best] = True
        else:
            fp += 1
    return tp, fp, len(y_seg) - int(hits.sum())


def _f1(tp: int, fp: int, fn: int) -> float:
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    return 100.0 * 2 * precision * recall / (precision + recall) if precision + recall else 0.0


def f1_at_overlap(pred, gt, overlap: float, bg_class: int | Iterable[int] | None = None) -> float:
    """F1@overlap (percent) of one sequence: ``2PR / (P + R)`` from the counts of MS-TCN's ``f_score``.

    ``overlap`` is a fraction (0.1 for F1@10). Segment IoU uses exclusive ends ``[start,
    end)``; MS-TCN's ``get_labels_start_end_time`` records the last segment's end as
    ``T - 1``, an off-by-one that is not reproduced. With no predicted and no ground-truth
    segments F1 is 0 (precision and recall are 0/0, taken as 0 as MS-TCN's ``nan_to_num``).
    """
    return _f1(*_f1_counts(pred, gt, overlap, bg_class))


def _as_sequences(x, name: str) -> list:
    if isinstance(x, np.ndarray | torch.Tensor) and x.ndim == 1:
        return [x]
    if isinstance(x, Sequence) and x and not isinstance(x[0], int | np.integer):
        return list(x)
    return [_int_labels(x, name)]


def segmentation_metrics(
    pred, gt, overlaps: Iterable[float] = (0.1, 0.25, 0.5), bg_class: int | Iterable[int] | None = None
) -> dict[str, float]:
    """Frame accuracy, Edit and F1@overlaps of one ``(T,)`` sequence or a list of them (as MS-TCN's ``eval.py``).

    Over several sequences: ``Acc`` = correct frames / all frames, ``Edit`` = mean of the
    per-sequence scores, ``F1@k`` from tp/fp/fn summed over the sequences. Frame accuracy
    counts background frames; Edit and F1 ignore ``bg_class`` segments. Returns
    ``{"Acc", "Edit", "F1@10", "F1@25", "F1@50"}`` in percent.
    """
    preds, gts = _as_sequences(pred, "pred"), _as_sequences(gt, "gt")
    if len(preds) != len(gts) or not gts:
        raise InputError(f"pred and gt must hold the same number (> 0) of sequences, got {len(preds)} and {len(gts)}")
    pairs = [_pair(p, g) for p, g in zip(preds, gts, strict=True)]
    frames = sum(g.size for _, g in pairs)
    if frames == 0:
        raise InputError("segmentation_metrics needs at least one frame, got 0")
    out = {"Acc": 100.0 * sum(int((p == g).sum()) for p, g in pairs) / frames,
           "Edit": float(np.mean([edit_score(p, g, bg_class) for p, g in pairs]))}
    for overlap in overlaps:
        counts = np.sum([_f1_counts(p, g, overlap, bg_class) for p, g in pairs], axis=0)
        out[f"F1@{round(overlap * 100):d}"] = _f1(*counts.tolist())
    return out


# ----------------------------------------------------------------------------- early prediction

def observation_curve(accuracies, ratios: Sequence[float] | None = None) -> float:
    """Trapezoidal area under accuracy vs observation ratio.

    ``accuracies``: a mapping ``{ratio: accuracy}`` or a sequence matched with ``ratios``
    (default 0.1, 0.2, ..., 1.0). The area is not normalised: constant accuracy ``a`` over
    0.1..1.0 gives ``0.9 * a``. Needs at least two points with distinct increasing ratios.
    """
    if isinstance(accuracies, Mapping):
        ratios, accuracies = zip(*sorted(accuracies.items()), strict=True) if accuracies else ((), ())
    acc = np.asarray(accuracies, dtype=np.float64)
    x = np.linspace(0.1, 1.0, 10) if ratios is None else np.asarray(ratios, dtype=np.float64)
    if acc.ndim != 1 or x.shape != acc.shape or acc.size < 2 or np.any(np.diff(x) <= 0):
        raise InputError(f"need >= 2 accuracies at increasing ratios, got {acc.size} accuracies "
                         f"at ratios {x.tolist()}")
    return float(np.sum((acc[1:] + acc[:-1]) * np.diff(x)) / 2.0)
