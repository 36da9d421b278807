"""Downstream protocols: metrics, kNN retrieval and the PKU-MMD detection evaluation."""

from .detection_eval import eval_detection_folders, read_detection_labels, read_detection_proposals
from .metrics import (
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
from .retrieval import knn_classify, nearest_neighbours, retrieval_accuracy

__all__ = [
    "average_precision",
    "confusion_matrix",
    "detection_map",
    "edit_score",
    "eval_detection_folders",
    "f1_at_overlap",
    "frame_accuracy",
    "knn_classify",
    "nearest_neighbours",
    "observation_curve",
    "proposals_from_scores",
    "read_detection_labels",
    "read_detection_proposals",
    "retrieval_accuracy",
    "segmentation_metrics",
    "segments_of",
    "temporal_iou",
    "temporal_nms",
    "topk_accuracy",
]
