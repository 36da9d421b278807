"""Metrics of the downstream protocols: recognition, detection (PKU-MMD), segmentation, early prediction.

Conventions:

* Recognition accuracies and detection mAPs are fractions in ``[0, 1]``; segmentation
  metrics (frame accuracy, Edit, F1) are percentages in ``[0, 100]`` as in MS-TCN.
* A temporal segment ``(start, end)`` covers frames ``start <= t < end``; a proposal is
  ``(label, start, end, score)`` and a ground-truth instance ``(label, start, end)`` (any
  further fields, such as the PKU-MMD confidence, are ignored).
* Detection follows the official PKU-MMD ``evaluate.py`` exactly; every point where it is
  quirky is reproduced and named in the docstrings of :func:`average_precision` and
  :func:`detection_map`.
"""

import logging
from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import torch

from ..errors import InputError

logger = logging.getLogger(__name__)

#: ``number_label`` of the official PKU-MMD ``evaluate.py``: label slots 0 (background) to 51.
PKUMMD_LABEL_SLOTS = 52


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
    """The official PKU-MMD overlap of segments ``a = (s1, e1)`` and ``b = (s2, e2)``.

    ``(min(e1, e2) - max(s1, s2)) / (max(e1, e2) - min(s1, s2))``, clipped below at 0 (the
    official script takes ``max(0.0, ...)`` over the ground truth, so disjoint segments
    score 0). Zero-length segments: the numerator is at most 0, so the overlap is 0; two
    identical zero-length segments (0 / 0, a ZeroDivisionError in the official script)
    also give 0, since neither covers a frame.
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


def _overlaps(proposals: Sequence[tuple], ground_truth: Sequence[tuple]) -> list[float]:
    """For each proposal, its best :func:`temporal_iou` with a same-label instance of ``ground_truth`` (0 if none)."""
    out = []
    for proposal in proposals:
        label, start, end = int(proposal[0]), proposal[1], proposal[2]
        best = 0.0
        for gt in ground_truth:
            if int(gt[0]) == label:
                best = max(best, temporal_iou((start, end), (gt[1], gt[2])))
        out.append(best)
    return out


def _ap_from_overlaps(confidences: Sequence[float], overlaps: Sequence[float], iou: float, total: int) -> float:
    """The official ``ap(lst, ratio, total)`` on precomputed overlaps (see :func:`average_precision`)."""
    if total == 0:
        return 0.0
    order = sorted(range(len(confidences)), key=lambda i: confidences[i])  # ascending, stable
    positive = [overlaps[i] >= iou for i in order]
    pos = sum(positive) * 1.0
    number = len(positive) * 1.0
    score = 0.0
    old_precision = 0.0
    old_recall = min(pos / total, 1)
    for is_positive in positive:
        number -= 1
        if not is_positive:
            continue
        pos -= 1
        if number == 0:
            break
        precision = pos / number
        recall = min(pos / total, 1)
        old_precision = max(old_precision, precision)
        score += old_precision * (old_recall - recall)
        old_recall = recall
    return score + old_precision * old_recall


def average_precision(proposals: Sequence[tuple], ground_truth: Sequence[tuple], iou: float) -> float:
    """AP of ``proposals`` ``(label, start, end, score)`` against ``ground_truth`` ``(label, start, end)``.

    This is the official PKU-MMD ``ap`` (``evaluate.py``), reproduced operation for operation:

    * A proposal's overlap is its best :func:`temporal_iou` with any ground-truth instance
      of its own label; it is positive if the overlap is ``>= iou``. As in the official
      script, several proposals may be positive on the same instance; an instance counts
      once only through the recall, ``min(#positives / #instances, 1)``.
    * Proposals are sorted by ascending score with a stable sort (ties keep the given
      order, so of two equal scores the one given first is ranked lower) and swept out
      from the lowest. Each time a positive is removed, precision ``pos / remaining`` and
      recall are taken; precision is the running maximum over the sweep, and the area
      ``precision * delta recall`` is accumulated; the rest down to recall 0 is added at
      the end with the last precision. When the last remaining proposal is a positive the
      sweep stops before computing its precision (the official ``if number == 0: break``).
      Precision is thus measured after removing each positive, so a list with a single
      positive scores 0 and perfect proposals score 1 only with at least two instances.
    * No ground truth (``#instances == 0``) gives AP 0; no proposals give AP 0.

    Returns a fraction in ``[0, 1]``.
    """
    overlaps = _overlaps(proposals, ground_truth)
    return _ap_from_overlaps([p[3] for p in proposals], overlaps, iou, len(ground_truth))


def _check_thresholds(iou_thresholds: Iterable[float]) -> tuple[float, ...]:
    thresholds = tuple(float(t) for t in iou_thresholds)
    if not thresholds or any(not 0.0 <= t <= 1.0 for t in thresholds):
        raise InputError(f"iou_thresholds must be a non-empty list of values in [0, 1], got {thresholds}")
    return thresholds


def _check_instances(video, items: Sequence[tuple], width: int, what: str, slots: int | None) -> None:
    for item in items:
        if len(item) < width:
            raise InputError(f"video {video!r}: each {what} needs {width} fields, got {tuple(item)}")
        label = item[0]
        if int(label) != label or label < 0 or (slots is not None and label >= slots):
            limit = "a non-negative integer" if slots is None else f"an integer in 0..{slots - 1}"
            raise InputError(f"video {video!r}: {what} label must be {limit}, got {label!r}")


def detection_map(
    ground_truth: Mapping[str, Sequence[tuple]],
    predictions: Mapping[str, Sequence[tuple]],
    iou_thresholds: Iterable[float] = (0.1, 0.2, 0.3, 0.4, 0.5),
    *,
    label_slots: int | None = PKUMMD_LABEL_SLOTS,
) -> dict[float, dict[str, float]]:
    """mAP over actions and over videos at each IoU threshold, as the official PKU-MMD ``evaluate.py``.

    ``ground_truth[video]``: instances ``(label, start, end[, ...])``; ``predictions[video]``:
    proposals ``(label, start, end, score)``. Returns ``{iou: {"mAP_a": ..., "mAP_v": ...}}``
    with fractions in ``[0, 1]``; AP is :func:`average_precision`.

    * **Videos**: those of ``ground_truth``, in its order. A video missing from
      ``predictions`` or with no proposals has AP 0 (its instances still count for
      ``mAP_a``). A video with no ground truth has AP 0 and still counts in ``mAP_v`` (the
      official ``ap`` returns 0 for ``total == 0``). Predictions for a video absent from
      the ground truth raise InputError (the official script fails there too).
    * **mAP_v** = mean over those videos of the AP of the video's proposals.
    * **mAP_a**: proposals and instances are pooled per label over all videos (in video
      order, then as given). With ``label_slots = 52`` (the default, the official
      ``number_label``) mAP_a is the sum of the APs of labels 0..51 divided by 52: a label
      with no ground truth, background 0 included, contributes AP 0 to that mean, so even
      perfect proposals on all 51 actions give 51/52. Labels must then be below 52. With
      ``label_slots=None`` mAP_a is the mean over the labels present in the ground truth
      only (proposals of other labels are then ignored), the usual definition.
    * No ground-truth video at all raises InputError; empty predictions everywhere give 0.
    """
    thresholds = _check_thresholds(iou_thresholds)
    if not ground_truth:
        raise InputError("ground_truth must hold at least one video, got none")
    unknown = [v for v in predictions if v not in ground_truth]
    if unknown:
        raise InputError(f"predictions name videos absent from the ground truth, e.g. {unknown[0]!r}")
    per_video = []  # (proposals, overlaps, ground truth)
    for video, gt in ground_truth.items():
        props = list(predictions.get(video, ()))
        _check_instances(video, gt, 3, "ground-truth instance", label_slots)
        _check_instances(video, props, 4, "proposal", label_slots)
        per_video.append((props, _overlaps(props, gt), gt))
    present = sorted({int(g[0]) for _, _, gt in per_video for g in gt})
    labels = range(label_slots) if label_slots is not None else present
    pooled = {c: ([], [], 0) for c in labels}  # label -> (scores, overlaps, #instances)
    for props, overlaps, gt in per_video:
        for p, o in zip(props, overlaps, strict=True):
            if int(p[0]) in pooled:
                pooled[int(p[0])][0].append(p[3])
                pooled[int(p[0])][1].append(o)
        for g in gt:
            scores, ovl, total = pooled[int(g[0])]
            pooled[int(g[0])] = (scores, ovl, total + 1)
    out = {}
    for t in thresholds:
        ap_a = [_ap_from_overlaps(s, o, t, n) for s, o, n in pooled.values()]
        ap_v = [_ap_from_overlaps([p[3] for p in props], o, t, len(gt)) for props, o, gt in per_video]
        out[t] = {"mAP_a": sum(ap_a) / len(ap_a) if ap_a else 0.0, "mAP_v": sum(ap_v) / len(ap_v)}
        logger.debug("IoU %.2f: mAP_a %.4f, mAP_v %.4f", t, out[t]["mAP_a"], out[t]["mAP_v"])
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
