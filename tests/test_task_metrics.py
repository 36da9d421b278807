import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from usdrl.errors import InputError
from usdrl.tasks import (
    average_precision,
    confusion_matrix,
    detection_map,
    edit_score,
    f1_at_overlap,
    frame_accuracy,
    observation_curve,
    proposals_from_scores,
    segmentation_metrics,
    segments_of,
    temporal_iou,
    temporal_nms,
    topk_accuracy,
)

# ----------------------------------------------------------------------------- recognition


def test_topk_accuracy_hand_worked_with_ties():
    scores = [[0.1, 0.5, 0.4],   # label 2: ranking 1, 2, 0 -> rank 2
              [0.3, 0.3, 0.4],   # label 1: ranking 2, then the 0.3 tie broken by index: 0, 1 -> rank 3
              [0.2, 0.2, 0.6]]   # label 0: ranking 2, 0, 1 -> rank 2
    out = topk_accuracy(scores, [2, 1, 0], k=(1, 2, 3))
    assert out == pytest.approx({"top1": 0.0, "top2": 2 / 3, "top3": 1.0})
    assert topk_accuracy(torch.tensor(scores), torch.tensor([1, 0, 0]), k=1) == {"top1": 1 / 3}  # argmaxes 1, 2, 2


def test_topk_accuracy_rejects_bad_input():
    with pytest.raises(InputError, match="every k"):
        topk_accuracy(np.zeros((2, 3)), [0, 1], k=(1, 5))
    with pytest.raises(InputError, match="labels must be in"):
        topk_accuracy(np.zeros((2, 3)), [0, 3], k=1)
    with pytest.raises(InputError, match=r"scores must be \(N, K\)"):
        topk_accuracy(np.zeros((2, 3)), [0], k=1)


def test_confusion_matrix_hand_worked():
    # (true, pred) pairs: (0, 0), (1, 1), (2, 1), (2, 2)
    cm = confusion_matrix([0, 1, 1, 2], [0, 1, 2, 2], 3)
    assert cm.dtype == np.int64
    np.testing.assert_array_equal(cm, [[1, 0, 0], [0, 1, 0], [0, 1, 1]])
    with pytest.raises(InputError, match="pred must be in 0..2"):
        confusion_matrix([3], [0], 3)


# ----------------------------------------------------------------------------- detection


def test_temporal_iou_cases():
    assert temporal_iou((0, 10), (5, 15)) == pytest.approx(5 / 15)
    assert temporal_iou((0, 10), (0, 10)) == 1.0
    assert temporal_iou((0, 10), (10, 20)) == 0.0   # touching: 0 / 20
    assert temporal_iou((0, 10), (30, 40)) == 0.0   # disjoint: -20 / 40 clipped to 0
    assert temporal_iou((5, 5), (0, 10)) == 0.0     # zero-length inside: 0 / 10
    assert temporal_iou((5, 5), (5, 5)) == 0.0      # 0 / 0: defined as 0


# The official PKU-MMD AP (latest evaluate.py), worked by hand rule by rule. Notation: P proposals left,
# G instances, pos = instances recorded by a proposal still left; (precision, recall) = (pos/P, pos/G).
TWO = [(1, 0, 10), (1, 20, 30)]


def test_ap_sweep_starts_from_the_whole_list_with_a_running_max_and_no_tail():
    # Ascending: m1 (on g1), u (unmatched), m2 (on g2). Start (2/3, 1), best 2/3.
    # m1: P 2, pos 1 -> (1/2, 1/2): best 2/3, AP += 2/3 * 1/2. u: P 1. m2: P 0, pos 0 -> (0, 0) (calc_pr's
    # zero), AP += 2/3 * 1/2 -> 2/3 (the early revision, from precision 0 and with its break, gave 1/2).
    proposals = [(1, 20, 30, 0.9), (1, 40, 50, 0.5), (1, 0, 10, 0.1)]
    assert average_precision(proposals, TWO, 0.5) == pytest.approx(2 / 3)
    # A single perfect proposal: start (1, 1); removing it gives (0, 0): AP 1 * 1.
    assert average_precision([(1, 0, 10, 0.9)], [(1, 0, 10)], 0.5) == pytest.approx(1.0)


def test_ap_ties_keep_the_given_order():
    pos, neg, top = (1, 0, 10, 0.5), (1, 40, 50, 0.5), (1, 20, 30, 0.9)
    # [pos, neg, top]: start (2/3, 1). pos: P 2, pos 1 -> (1/2, 1/2): += 2/3 * 1/2; neg; top: += 2/3 * 1/2 -> 2/3.
    assert average_precision([pos, neg, top], TWO, 0.5) == pytest.approx(2 / 3)
    # [neg, pos, top]: neg: P 2; pos: P 1, pos 1 -> (1, 1/2): best 1, += 1/2; top: += 1 * 1/2 -> 1.
    assert average_precision([neg, pos, top], TWO, 0.5) == pytest.approx(1.0)


def test_ap_counts_an_instance_once_however_many_proposals_record_it():
    # Three proposals on g1, none on g2: pos 1, start (1/3, 1/2). 0.7: P 2, g1 still recorded -> (1/2, 1/2),
    # += 0; 0.8: P 1 -> (1, 1/2), best 1, += 0; 0.9: P 0, pos 0 -> (0, 0), += 1 * 1/2 -> 1/2.
    dup = [(1, 0, 10, 0.9), (1, 0, 10, 0.8), (1, 0, 10, 0.7)]
    assert average_precision(dup, TWO, 0.5) == pytest.approx(0.5)  # the early revision counted 3 hits: 1.0


def test_ap_overlap_is_not_clipped():
    # At IoU 0 a disjoint proposal has a negative overlap, (10 - 40) / 50 and (30 - 40) / 30: not matched.
    # Start (1/2, 1/2); 0.8 (unmatched): P 1; 0.9: P 0, pos 0 -> (0, 0): += 1/2 * 1/2 -> 1/4.
    # (Clipped at 0 it would match g2 and give 1.)
    assert average_precision([(1, 0, 10, 0.9), (1, 40, 50, 0.8)], TWO, 0.0) == pytest.approx(0.25)


def test_matching_records_the_last_instance_of_highest_overlap():
    # p overlaps g1 (0, 8) and g2 (2, 10) by 0.8 each: ">=" records the later, g2; q (0, 7) overlaps g1 by 7/8
    # and g2 by 1/2 < 7/8: g1. Both recorded: start (1, 1); q: P 1, pos 1 -> (1, 1/2), += 1/2; p: += 1/2 -> 1.
    # (Recording the first of the tie, g1, would leave g2 unmatched: 1/2.)
    gt = [(1, 0, 8), (1, 2, 10)]
    assert average_precision([(1, 0, 10, 0.9), (1, 0, 7, 0.5)], gt, 0.5) == pytest.approx(1.0)


def test_matching_skips_an_instance_below_the_recorded_overlap_and_starts_from_the_last_instance():
    # g1 (0, 9), g2 (0, 6). p (0, 10): g1 0.9 is recorded (above p's overlap with the last instance g2, 0.6,
    # which the official script compares with first: ground[cos_map[x]] with cos_map[x] = -1); g2, 0.6 < 0.9,
    # is skipped, so p keeps g1. q (0, 5): g1 5/9 is skipped, being below q's overlap with the last instance
    # (g2, 5/6); then g2 is recorded. Two instances recorded: AP 1 (as in the previous test).
    # (Keeping the last instance above 0.5 instead would give p g2 as well: 1/2.)
    gt = [(1, 0, 9), (1, 0, 6)]
    assert average_precision([(1, 0, 10, 0.9), (1, 0, 5, 0.5)], gt, 0.5) == pytest.approx(1.0)


def test_ap_edge_cases():
    assert average_precision([], TWO, 0.5) == 0.0                          # no proposals: calc_pr gives 0
    assert average_precision([(1, 0, 10, 0.9)], [], 0.5) == 0.0            # no instances
    assert average_precision([(2, 0, 10, 0.9), (2, 20, 30, 0.8)], TWO, 0.1) == 0.0   # another label
    # A zero-length proposal at an instance's start: overlap 0 / 10, not matched at 0.1. Start (1/2, 1/2);
    # 0.8: P 1, pos 0 -> (0, 0): += 1/2 * 1/2; 0.9 unmatched -> 1/4.
    assert average_precision([(1, 20, 20, 0.9), (1, 0, 10, 0.8)], TWO, 0.1) == pytest.approx(0.25)
    # The same zero-length segment twice: 0 / 0 (the official script divides by zero) is overlap 0, a match
    # at IoU 0 only, as an instance of the label in another video is.
    assert average_precision([(1, 5, 5, 0.9)], [(1, 5, 5)], 0.1) == 0.0
    assert average_precision([(1, 5, 5, 0.9)], [(1, 5, 5)], 0.0) == 1.0


GT = {"a": [(1, 0, 10, 2), (1, 20, 30, 1), (2, 50, 60, 2)], "b": [(1, 0, 10, 1), (2, 5, 15, 1)]}
PRED = {"a": [(1, 0, 10, 0.9), (1, 40, 50, 0.8), (1, 20, 30, 0.7), (2, 50, 60, 0.6)],
        "b": [(1, 0, 10, 0.5), (2, 100, 110, 0.95)]}
# Overlaps are 1 or negative, so every threshold gives the same numbers.
# Video a: ascending 0.6 (a3), 0.7 (a2), 0.8 (-), 0.9 (a1); start (3/4, 1): 0.6 -> (2/3, 2/3): += 3/4 * 1/3;
#   0.7 -> (1/2, 1/3): += 3/4 * 1/3; 0.8; 0.9 -> (0, 0): += 3/4 * 1/3 -> AP 3/4.
# Video b: 0.5 (b1), 0.95 (-); start (1/2, 1/2): 0.5 -> P 1, pos 0: (0, 0): += 1/2 * 1/2 -> 1/4.  mAP_v = 1/2.
# Label 1 (a then b): 0.5 (b1), 0.7 (a2), 0.8, 0.9 (a1): as video a -> 3/4. Label 2: as video b -> 1/4.
# mAP_a = (3/4 + 1/4) / 51 = 1/51 (labels 1..51); over the labels present: 1/2.
# All (label-major): 0.5, 0.6, 0.7 matched, 0.8 not, 0.9 matched, 0.95 not; 4 of 5 instances, 6 proposals:
#   start (2/3, 4/5); each of the 4 matched removals lowers recall by 1/5 at best precision 2/3 -> AP 8/15.
#   F1 = 2 (2/3)(4/5) / (2/3 + 4/5) = 8/11.
EXPECTED = {"mAP_a": 1 / 51, "mAP_v": 1 / 2, "AP": 8 / 15, "F1": 8 / 11}


def test_detection_map_hand_worked():
    out = detection_map(GT, PRED, (0.1, 0.5))
    for t in (0.1, 0.5):
        assert out[t] == pytest.approx(EXPECTED)
    present = detection_map(GT, PRED, (0.5,), present_classes=True)
    assert present[0.5] == pytest.approx({**EXPECTED, "mAP_a": 1 / 2})


def test_detection_map_labels_1_to_51_only():
    # Perfect label-0 and label-7 proposals: neither changes mAP_a's 51 terms except label 7, whose instance
    # is now found with AP 1: (3/4 + 1/4 + 1) / 51. Label 0 is never scored, but counts in mAP_v and AP.
    gt = {"a": [*GT["a"], (0, 70, 80), (7, 90, 100)], "b": GT["b"]}
    pred = {"a": [*PRED["a"], (0, 70, 80, 0.3), (7, 90, 100, 0.2)], "b": PRED["b"]}
    assert detection_map(gt, pred, (0.5,))[0.5]["mAP_a"] == pytest.approx(2 / 51)
    assert detection_map(gt, pred, (0.5,), present_classes=True)[0.5]["mAP_a"] == pytest.approx(2 / 3)


def test_detection_map_videos_are_the_predictions():
    # Ground-truth video c has no predictions: not evaluated, its instances do not count in mAP_a either.
    gt = {**GT, "c": [(1, 0, 10), (2, 0, 10)]}
    assert detection_map(gt, PRED, (0.5,))[0.5] == pytest.approx(EXPECTED)
    # Only video a predicted: mAP_v = 3/4. Label 1 pools a's proposals with a's instances only: 0.7 (a2),
    # 0.8, 0.9 (a1), start (2/3, 1): 0.7 -> (1/2, 1/2): += 2/3 * 1/2; 0.8; 0.9 -> += 2/3 * 1/2 -> 2/3.
    # Label 2: the single a3 proposal, start (1, 1) -> 1. mAP_a = (2/3 + 1) / 51.
    out = detection_map(GT, {"a": PRED["a"]}, (0.5,))[0.5]
    assert out["mAP_v"] == pytest.approx(3 / 4) and out["mAP_a"] == pytest.approx(5 / 3 / 51)
    # A predicted video with no ground truth has AP 0 and counts in mAP_v; empty predictions score 0.
    out = detection_map({**GT, "c": []}, {**PRED, "c": [(1, 0, 10, 0.4)]}, (0.5,))[0.5]
    assert out["mAP_v"] == pytest.approx((3 / 4 + 1 / 4) / 3)
    assert detection_map(GT, {"a": [], "b": []}, (0.5,))[0.5] == {"mAP_a": 0.0, "mAP_v": 0.0, "AP": 0.0, "F1": 0.0}


def test_detection_map_rejects_bad_input():
    with pytest.raises(InputError, match="absent from the ground truth"):
        detection_map(GT, {"z": []})
    with pytest.raises(InputError, match="label must be an integer in 0..51"):
        detection_map(GT, {"a": [(52, 0, 1, 0.5)]})
    with pytest.raises(InputError, match="needs 4 fields"):
        detection_map(GT, {"a": [(1, 0, 1)]})
    with pytest.raises(InputError, match="finite numbers"):
        detection_map(GT, {"a": [(1, 0, 1, float("nan"))]})
    with pytest.raises(InputError, match="iou_thresholds"):
        detection_map(GT, PRED, (1.5,))
    with pytest.raises(InputError, match="at least one video"):
        detection_map(GT, {})


@settings(max_examples=30, deadline=None)
@given(st.lists(st.sets(st.tuples(st.integers(0, 51), st.integers(0, 500), st.integers(1, 100)),
                        min_size=1, max_size=4), min_size=1, max_size=4), st.randoms(use_true_random=False))
def test_perfect_predictions_score_one(videos, rnd):
    """Distinct instances per video, proposals = ground truth with any scores -> every figure 1."""
    gt = {f"v{i}": [(c, s, s + d) for c, s, d in sorted(instances)] for i, instances in enumerate(videos)}
    pred = {video: [(*g, rnd.random()) for g in segments] for video, segments in gt.items()}
    out = detection_map(gt, pred, (0.1, 0.5, 1.0), present_classes=True)
    has_action = any(g[0] != 0 for segments in gt.values() for g in segments)
    expected = {"mAP_a": 1.0 if has_action else 0.0, "mAP_v": 1.0, "AP": 1.0, "F1": 1.0}
    assert all(v == pytest.approx(expected) for v in out.values())


def test_proposals_from_scores_hand_worked():
    scores = np.zeros((6, 3))
    scores[:, 0] = 1.0                                   # background column: never a proposal
    scores[:, 1] = [0.5, 0.5, 0.01, 0.3, 0.02, 0.0]      # runs [0, 2) mean 0.5 and [3, 4) (0.02 is not above)
    scores[:, 2] = [0.0, 0.0, 0.0, 0.1, 0.2, 0.3]        # run [3, 6) mean 0.2
    out = proposals_from_scores(scores)
    assert out == [(1, 0, 2, pytest.approx(0.5)), (1, 3, 4, pytest.approx(0.3)), (2, 3, 6, pytest.approx(0.2))]
    assert [p[:3] for p in proposals_from_scores(scores, min_length=2)] == [(1, 0, 2), (2, 3, 6)]
    # NMS: (1, 3, 4) vs (2, 3, 6): IoU 1/3 > 0.3 -> the lower score (0.2) goes; (1, 0, 2) overlaps nothing.
    assert [p[:3] for p in proposals_from_scores(scores, nms_iou=0.3)] == [(1, 0, 2), (1, 3, 4)]
    assert [p[:3] for p in proposals_from_scores(scores, nms_iou=0.4)] == [(1, 0, 2), (1, 3, 4), (2, 3, 6)]
    assert len(proposals_from_scores(scores, background=None)) == 4   # + (0, 0, 6)
    assert proposals_from_scores(np.zeros((0, 3))) == []


def test_temporal_nms_ties_keep_earlier():
    props = [(1, 0, 10, 0.5), (2, 0, 10, 0.5), (3, 20, 30, 0.1)]
    assert temporal_nms(props, 0.5) == [props[0], props[2]]


# ----------------------------------------------------------------------------- segmentation


def test_segments_of():
    assert segments_of([0, 0, 1, 1, 1, 2, 0]) == [(0, 0, 2), (1, 2, 5), (2, 5, 6), (0, 6, 7)]
    assert segments_of([0, 0, 1, 1, 1, 2, 0], bg_class=0) == [(1, 2, 5), (2, 5, 6)]
    assert segments_of([0, 1, 2], bg_class=[0, 2]) == [(1, 1, 2)]
    assert segments_of([]) == []


def test_segmentation_hand_worked():
    gt = [1, 1, 1, 1, 2, 2, 2, 2, 2, 2]      # segments (1, 0, 4), (2, 4, 10)
    pred = [1, 1, 2, 2, 1, 1, 2, 2, 2, 2]    # segments (1, 0, 2), (2, 2, 4), (1, 4, 6), (2, 6, 10)
    assert frame_accuracy(pred, gt) == pytest.approx(60.0)     # frames 0, 1, 6..9 right
    assert edit_score(pred, gt) == pytest.approx(50.0)         # [1,2,1,2] vs [1,2]: 2 deletions / 4
    # IoUs with the best same-label GT: 2/4 = 0.5, 0, 0, 4/6. At 0.1..0.5: tp 2, fp 2, fn 0 -> P 1/2, R 1
    # -> F1 = 2 * 0.5 / 1.5 = 66.67. At 0.6: tp 1, fp 3, fn 1 -> P 1/4, R 1/2 -> F1 = 0.25 / 0.75 = 33.33.
    for overlap in (0.1, 0.25, 0.5):
        assert f1_at_overlap(pred, gt, overlap) == pytest.approx(200 / 3)
    assert f1_at_overlap(pred, gt, 0.6) == pytest.approx(100 / 3)
    assert f1_at_overlap(pred, gt, 0.7) == 0.0


def test_f1_matched_segment_counts_once():
    gt, pred = [1, 1, 1, 1], [1, 1, 2, 1]    # pred (1, 0, 2) IoU 0.5, (2, 2, 3) 0, (1, 3, 4) 0.25 on a hit GT
    assert f1_at_overlap(pred, gt, 0.1) == pytest.approx(50.0)   # tp 1, fp 2, fn 0: P 1/3, R 1
    assert edit_score(pred, gt) == pytest.approx(100 / 3)         # [1,2,1] vs [1]: 2 / 3


def test_background_handling():
    gt, pred = [0, 0, 1, 1, 0, 0], [0] * 6
    assert frame_accuracy(pred, gt) == pytest.approx(400 / 6)
    assert edit_score(pred, gt, bg_class=0) == 0.0              # P empty, Y = [1]
    assert f1_at_overlap(pred, gt, 0.1, bg_class=0) == 0.0      # tp 0, fp 0, fn 1
    assert edit_score(pred, pred, bg_class=0) == 100.0          # both empty
    assert f1_at_overlap(pred, pred, 0.1, bg_class=0) == 0.0    # 0 / 0 taken as 0
    # without bg_class the background runs are segments: [0] vs [0, 1, 0]: 2 insertions / 3
    assert edit_score(pred, gt) == pytest.approx(100 / 3)


def test_segmentation_metrics_over_sequences():
    seqs_gt = [np.array([1, 1, 1, 1, 2, 2, 2, 2, 2, 2]), np.array([1, 1, 1, 1])]
    seqs_pred = [np.array([1, 1, 2, 2, 1, 1, 2, 2, 2, 2]), np.array([1, 1, 2, 1])]
    out = segmentation_metrics(seqs_pred, seqs_gt)
    # Acc (6 + 3) / 14; Edit mean(50, 33.3); F1@10,25: tp 3, fp 4, fn 0 -> P 3/7, R 1 -> 60;
    # F1@50: sequence 2's (1, 0, 2) has IoU 0.5 >= 0.5 -> same counts -> 60.
    assert out == pytest.approx({"Acc": 900 / 14, "Edit": (50 + 100 / 3) / 2, "F1@10": 60.0, "F1@25": 60.0,
                                 "F1@50": 60.0})
    single = segmentation_metrics(seqs_pred[0], seqs_gt[0])
    assert single["Acc"] == pytest.approx(60.0) and single["F1@10"] == pytest.approx(200 / 3)
    with pytest.raises(InputError, match="same length"):
        segmentation_metrics([1, 2], [1])
    with pytest.raises(InputError, match="at least one frame"):
        frame_accuracy([], [])


def _levenshtein_matrix(a, b):
    d = np.zeros((len(a) + 1, len(b) + 1), dtype=int)
    d[:, 0], d[0, :] = np.arange(len(a) + 1), np.arange(len(b) + 1)
    for i in range(1, len(a) + 1):
        for j in range(1, len(b) + 1):
            d[i, j] = min(d[i - 1, j] + 1, d[i, j - 1] + 1, d[i - 1, j - 1] + (a[i - 1] != b[j - 1]))
    return d[-1, -1]


def _reference_f1_counts(pred, gt, overlap, bg):
    """Segments as frame sets; each prediction vs the best-IoU same-label GT (first on ties), MS-TCN style."""
    def segs(x):
        out, start = [], 0
        for t in range(1, len(x) + 1):
            if t == len(x) or x[t] != x[start]:
                if x[start] != bg:
                    out.append((x[start], set(range(start, t))))
                start = t
        return out
    p, y = segs(pred), segs(gt)
    hit, tp = [False] * len(y), 0
    for label, frames in p:
        ious = [len(frames & f) / len(frames | f) if lab == label else 0.0 for lab, f in y]
        j = max(range(len(y)), key=lambda i: (ious[i], -i)) if y else None
        if j is not None and ious[j] >= overlap and not hit[j]:
            hit[j], tp = True, tp + 1
    return tp, len(p) - tp, len(y) - sum(hit)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(0, 3), min_size=1, max_size=40), st.lists(st.integers(0, 3), min_size=1, max_size=40),
       st.sampled_from([None, 0]), st.sampled_from([0.1, 0.25, 0.5]))
def test_edit_and_f1_match_reference(pred, gt, bg, overlap):
    n = min(len(pred), len(gt))
    pred, gt = pred[:n], gt[:n]
    p = [s[0] for s in segments_of(pred, bg)]
    y = [s[0] for s in segments_of(gt, bg)]
    expected_edit = 100.0 if not p and not y else 100 * (1 - _levenshtein_matrix(p, y) / max(len(p), len(y)))
    assert edit_score(pred, gt, bg) == pytest.approx(expected_edit)
    tp, fp, fn = _reference_f1_counts(pred, gt, overlap, bg)
    prec = tp / (tp + fp) if tp + fp else 0.0
    rec = tp / (tp + fn) if tp + fn else 0.0
    expected = 200 * prec * rec / (prec + rec) if prec + rec else 0.0
    assert f1_at_overlap(pred, gt, overlap, bg) == pytest.approx(expected)
    # perfect predictions
    assert edit_score(gt, gt, bg) == 100.0 and frame_accuracy(gt, gt) == 100.0
    if any(v != bg for v in gt):
        assert f1_at_overlap(gt, gt, overlap, bg) == pytest.approx(100.0)


# ----------------------------------------------------------------------------- early prediction


def test_observation_curve():
    ratios = np.linspace(0.1, 1.0, 10)
    assert observation_curve([0.5] * 10) == pytest.approx(0.45)             # 0.5 * 0.9
    assert observation_curve(ratios) == pytest.approx((1 - 0.01) / 2)       # integral of x over [0.1, 1]
    assert observation_curve({1.0: 1.0, 0.5: 0.0}) == pytest.approx(0.25)  # one trapezoid, sorted by ratio
    with pytest.raises(InputError, match="increasing ratios"):
        observation_curve([0.5])
    assert math.isfinite(observation_curve([0.2, 0.4], ratios=[0.5, 1.0]))
