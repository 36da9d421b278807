"""Downstream tasks: their entry points (linear probe, finetuning, early prediction, detection and
segmentation, streaming), metrics, kNN retrieval and the PKU-MMD detection evaluation.

Not imported by ``import usdrl``; import ``usdrl.tasks`` (or its modules) explicitly. Finetuning is
:func:`usdrl.tasks.finetune.finetune`, not imported here: the function would hide its module.
"""

from .detection import (
    DetectionConfig,
    ReferenceDetectionConfig,
    detect_dataset,
    evaluate_detection,
    evaluate_segmentation,
    frame_probe,
    frame_scores,
    train_detector,
)
from .detection_eval import eval_detection_folders, read_detection_labels, read_detection_proposals
from .early import EarlyPredictionResult, early_prediction
from .finetune import FinetuneConfig, ensemble_scores, labelled_subset, predict_dataset  # not ``finetune``: see above
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
from .recognition import ProbeConfig, ProbeResult, encode_dataset, linear_probe, probe_datasets
from .retrieval import knn_classify, nearest_neighbours, retrieval_accuracy
from .streaming import MultiTrackDetector, StreamingDetector, StreamOutput

__all__ = [
    "DetectionConfig",
    "EarlyPredictionResult",
    "FinetuneConfig",
    "MultiTrackDetector",
    "ProbeConfig",
    "ProbeResult",
    "ReferenceDetectionConfig",
    "StreamOutput",
    "StreamingDetector",
    "average_precision",
    "confusion_matrix",
    "detect_dataset",
    "detection_map",
    "early_prediction",
    "edit_score",
    "encode_dataset",
    "ensemble_scores",
    "eval_detection_folders",
    "evaluate_detection",
    "evaluate_segmentation",
    "f1_at_overlap",
    "frame_accuracy",
    "frame_probe",
    "frame_scores",
    "knn_classify",
    "labelled_subset",
    "linear_probe",
    "nearest_neighbours",
    "observation_curve",
    "predict_dataset",
    "probe_datasets",
    "proposals_from_scores",
    "read_detection_labels",
    "read_detection_proposals",
    "retrieval_accuracy",
    "segmentation_metrics",
    "segments_of",
    "temporal_iou",
    "temporal_nms",
    "topk_accuracy",
    "train_detector",
]
