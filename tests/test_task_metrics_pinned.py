"""Metrics pinned where the hand-worked tests of test_task_metrics.py left them free: error
messages (each names what was expected and what came), logging, degenerate sizes, the
official detection script's index -1 quirk under a negative threshold, and float types.
Expected values are worked by hand from the definitions in the docstrings."""

import logging

import numpy as np
import pytest
import torch

from usdrl.errors import InputError
from usdrl.tasks import (
    average_precision,
    confusion_matrix,
    detection_map,
    frame_accuracy,
    observation_curve,
    proposals_from_scores,
    segmentation_metrics,
    segments_of,
    temporal_iou,
    temporal_nms,
    topk_accuracy,
)

RAGGED = [[0.1, 0.2], [0.3]]  # numpy cannot make an array of it


def test_recognition_messages():
    with pytest.raises(InputError, match=r"^scores must be an array or tensor, got list$"):
        topk_accuracy(RAGGED, [0, 1])
    with pytest.raises(InputError, match=r"^labels must be an array or tensor, got list$"):
        topk_accuracy(np.zeros((2, 3)), RAGGED)
    with pytest.raises(InputError, match=r"^labels must be 1-D, got shape \(2, 1\)$"):
        topk_accuracy(np.zeros((2, 3)), [[0], [1]])
    with pytest.raises(InputError, match=r"^labels must hold integers, got dtype float64$"):
        topk_accuracy(np.zeros((2, 3)), [0.0, 1.0])
    with pytest.raises(InputError, match=r"^labels must be in 0\.\.2, got 0\.\.3$"):
        topk_accuracy(np.zeros((2, 3)), [0, 3], k=1)
    with pytest.raises(InputError, match=r"^every k must be in 1\.\.0 \(the number of classes\), got \(1,\)$"):
        topk_accuracy(np.zeros((2, 0)), [0, 0], k=1)
    with pytest.raises(InputError, match=r"^pred must hold integers, got dtype float64$"):
        confusion_matrix([0.0], [0], 2)
    with pytest.raises(InputError, match=r"^labels must be 1-D, got shape \(1, 1\)$"):
        confusion_matrix([0], [[0]], 2)
    with pytest.raises(InputError, match=r"^pred and labels must have the same length, got 2 and 3$"):
        confusion_matrix([0, 1], [0, 1, 1], 2)
    with pytest.raises(InputError, match=r"^labels must be in 0\.\.1, got 0\.\.5$"):
        confusion_matrix([0, 1], [0, 5], 2)


def test_topk_of_one_sample_and_a_wide_tie():
    assert topk_accuracy([[0.1, 0.9]], [1], k=1) == {"top1": 1.0}
    # 3000 classes, every 7th tied at the top: class 7 is the second of the tie by index (rank 1),
    # so it is in the top 5 but not the top 1 (a sort that is not stable would scatter the tie).
    scores = torch.zeros(2, 3000)
    scores[:, ::7] = 1
    assert topk_accuracy(scores, [7, 0], k=(1, 5)) == {"top1": 0.5, "top5": 1.0}


def test_confusion_matrix_keeps_classes_never_seen():
    np.testing.assert_array_equal(confusion_matrix([0], [0], 3), [[1, 0, 0], [0, 0, 0], [0, 0, 0]])


def test_temporal_iou_and_nms_by_hand():
    assert temporal_iou((0, 0.5), (0.25, 0.75)) == pytest.approx(1 / 3)  # a union below one frame
    # The better-scoring proposal, given second, wins: IoU 8 / 10 > 0.5 drops the first.
    assert temporal_nms([(1, 0, 10, 0.5), (2, 2, 10, 0.9)], 0.5) == [(2, 2, 10, 0.9)]


def test_proposals_messages():
    with pytest.raises(InputError, match=r"^scores must be an array or tensor, got list$"):
        proposals_from_scores(RAGGED)
    with pytest.raises(InputError, match=r"^scores must be \(T, K\), got shape \(5,\)$"):
        proposals_from_scores(np.zeros(5))
    with pytest.raises(InputError, match=r"^min_length must be >= 1, got 0$") as err:
        proposals_from_scores(np.zeros((5, 2)), min_length=0)
    assert err.value.keywords == ("min_length",)


def test_average_precision_messages_name_the_field_without_a_video():
    gt = [(1, 0, 10)]
    with pytest.raises(InputError, match=r"^each proposal needs 4 fields, got \(1, 0, 5\)$"):
        average_precision([(1, 0, 5)], gt, 0.5)
    with pytest.raises(InputError, match=r"^each ground-truth instance needs 3 fields, got \(1, 0\)$"):
        average_precision([(1, 0, 5, 0.5)], [(1, 0)], 0.5)
    with pytest.raises(InputError, match=r"^proposal label must be a non-negative integer, got -1$"):
        average_precision([(-1, 0, 5, 0.5)], gt, 0.5)
    with pytest.raises(InputError, match=r"^ground-truth instance label must be a non-negative integer, got 1\.5$"):
        average_precision([(1, 0, 5, 0.5)], [(1.5, 0, 10)], 0.5)
    with pytest.raises(InputError, match=r"^proposal needs finite numbers, got \(1, nan, 5, 0\.5\)$"):
        average_precision([(1, float("nan"), 5, 0.5)], gt, 0.5)


def test_the_index_minus_one_quirk_under_a_negative_threshold():
    """Before any record the official walk compares with the list's *last* instance. With a
    negative threshold a disjoint proposal (overlap (10 - 20) / (30 - 0) = -1/3) is a candidate;
    when the last instance has another label its overlap is 0 > -1/3, so nothing is recorded."""
    proposal = [(1, 0, 10, 0.9)]
    # Last instance is the candidate itself: recorded; AP = 1 * (1/2 - 0) = 0.5 (precision 1, recall 1/2 -> 0).
    assert average_precision(proposal, [(2, 0, 10), (1, 20, 30)], -0.5) == 0.5
    # Last instance of label 2: the walk starts from overlap 0 and records nothing.
    assert average_precision(proposal, [(1, 20, 30), (2, 0, 10)], -0.5) == 0.0


def test_detection_map_messages_name_the_video():
    gt = {"v1": [(1, 0, 10)]}
    with pytest.raises(InputError, match=r"^predictions must hold at least one video, got none$"):
        detection_map(gt, {})
    with pytest.raises(InputError, match=r"^video 'v1': each proposal needs 4 fields, got \(1, 0, 5\)$"):
        detection_map(gt, {"v1": [(1, 0, 5)]})
    with pytest.raises(InputError, match=r"^video 'v1': each ground-truth instance needs 3 fields, got \(1, 0\)$"):
        detection_map({"v1": [(1, 0)]}, {"v1": [(1, 0, 5, 0.5)]})
    with pytest.raises(InputError, match=r"^video 'v1': proposal label must be an integer in 0\.\.51, got 52$"):
        detection_map(gt, {"v1": [(52, 0, 5, 0.5)]})
    with pytest.raises(InputError, match=r"^video 'v1': ground-truth instance label must be an integer in 0\.\.51, "
                                         r"got 60$"):
        detection_map({"v1": [(60, 0, 10)]}, {"v1": [(1, 0, 5, 0.5)]})
    # present_classes: any non-negative label; label 60 matched exactly is AP 1 at every threshold.
    out = detection_map({"v1": [(60, 0, 10)]}, {"v1": [(60, 0, 10, 0.5)]}, (0.5,), present_classes=True)
    assert out == {0.5: {"mAP_a": 1.0, "mAP_v": 1.0, "AP": 1.0, "F1": 1.0}}


def test_detection_map_logs_the_ignored_videos_and_each_threshold(caplog):
    gt = {"v1": [(1, 0, 10)], "v2": [(1, 0, 10)], "v3": [(2, 0, 10)]}
    with caplog.at_level(logging.DEBUG, logger="usdrl.tasks.metrics"):
        out = detection_map(gt, {"v1": [(1, 0, 10, 0.5)]}, (0.5,))
    messages = [r.getMessage() for r in caplog.records if r.name == "usdrl.tasks.metrics"]
    assert messages == ["2 ground-truth videos have no predictions and are not evaluated", f"IoU 0.50: {out[0.5]}"]
    assert out[0.5]["mAP_v"] == 1.0 and out[0.5]["mAP_a"] == pytest.approx(1 / 51)


def test_segmentation_messages_and_sizes():
    with pytest.raises(InputError, match=r"^gt must hold integers, got dtype float64$"):
        frame_accuracy([0], [0.0])
    with pytest.raises(InputError, match=r"^pred must hold integers, got dtype float64$"):
        frame_accuracy([0.0], [0])
    with pytest.raises(InputError, match=r"^frame_accuracy needs at least one frame, got 0$"):
        frame_accuracy([], [])
    with pytest.raises(InputError, match=r"^labels must be 1-D, got shape \(1, 2\)$"):
        segments_of([[0, 1]])
    with pytest.raises(InputError, match=r"^pred must be 1-D, got shape \(2, 2\)$"):
        segmentation_metrics(np.zeros((2, 2), int), [0, 0])
    with pytest.raises(InputError, match=r"^gt must be 1-D, got shape \(2, 2\)$"):
        segmentation_metrics([0, 0], np.zeros((2, 2), int))
    with pytest.raises(InputError, match=r"^pred and gt must hold the same number \(> 0\) of sequences, got 2 and 1$"):
        segmentation_metrics([np.zeros(2, int), np.zeros(2, int)], [np.zeros(2, int)])
    with pytest.raises(InputError, match=r"^segmentation_metrics needs at least one frame, got 0$"):
        segmentation_metrics([np.zeros(0, int)], [np.zeros(0, int)])
    assert segmentation_metrics([3], [3]) == {"Acc": 100.0, "Edit": 100.0, "F1@10": 100.0, "F1@25": 100.0,
                                              "F1@50": 100.0}


def test_segmentation_metrics_pass_the_background_on():
    """pred 0 0 1 1, gt 0 0 0 1 with background 0: one segment each, label 1, IoU 1/2: F1@50 100, F1@75 0."""
    pred, gt = [0, 0, 1, 1], [0, 0, 0, 1]
    with_bg = segmentation_metrics(pred, gt, overlaps=(0.5, 0.75), bg_class=0)
    assert with_bg == {"Acc": 75.0, "Edit": 100.0, "F1@50": 100.0, "F1@75": 0.0}
    # Background kept: segments (0,0,2),(1,2,4) against (0,0,3),(1,3,4): IoUs 2/3 and 1/2, both >= 0.5.
    assert segmentation_metrics(pred, gt, overlaps=(0.6,)) == {"Acc": 75.0, "Edit": 100.0, "F1@60": 50.0}
    # bg_class=1 leaves one segment of label 0 each (IoU 2/3) and drops the differing tails.
    assert segmentation_metrics([0, 0, 1, 1], [0, 0, 0, 2], overlaps=(0.5,), bg_class=1) == {
        "Acc": 50.0, "Edit": 50.0, "F1@50": pytest.approx(200 / 3)}  # tp 1, fp 0, fn 1 (50 with the tails kept)
    # Edit: pred 0 1 0 with background 0 is one segment (1) against none: 100 * (1 - 1/1) = 0
    # (33.3 = 100 * (1 - 2/3) if the background were kept).
    assert segmentation_metrics([0, 1, 0], [0, 0, 0], overlaps=(), bg_class=0)["Edit"] == 0.0


def test_observation_curve_checks_and_float64():
    with pytest.raises(InputError, match=r"^need >= 2 accuracies at increasing ratios, got 0 accuracies "
                                         r"at ratios \[\]$"):
        observation_curve({})
    for accuracies, ratios in [([0.5, 0.6], [0.2, 0.1]), ([0.5, 0.6], [0.1, 0.1]), ([0.5, 0.6, 0.7], [0.1, 0.2]),
                               ([[0.5, 0.6], [0.5, 0.6]], [[0.1, 0.2], [0.1, 0.2]])]:
        with pytest.raises(InputError, match=r"^need >= 2 accuracies at increasing ratios"):
            observation_curve(accuracies, ratios)
    # float32 inputs are taken in float64: (a + b) * (r1 - r0) / 2 with the float32 values widened.
    a, b = float(np.float32(0.1)), float(np.float32(0.2))
    r0, r1 = float(np.float32(0.1)), float(np.float32(0.3))
    area = observation_curve(np.array([0.1, 0.2], np.float32), np.array([0.1, 0.3], np.float32))
    assert area == (a + b) * (r1 - r0) / 2
