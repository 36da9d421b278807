"""Early action prediction: recognising an action from the first part of it (spec §6.6).

A clip observed up to ratio ``r`` keeps its first ``max(3, floor(n * r))`` valid frames,
which are resampled to the model's frames, as the reference feeders do. A model with a
clip-level head (e.g. from :func:`usdrl.tasks.recognition.linear_probe`) is evaluated at
observation ratios 10% ... 100%; the result is the accuracy curve and the area under it.
Models pretrained with ``USDRLConfig(causal=True)`` see only frames ``<= t`` in their
temporal stream, the variant the paper describes for this task.
"""

import logging
from dataclasses import dataclass
from os import PathLike

import numpy as np

from ..data.prepared import SkeletonDataset
from ..errors import ConfigError
from ..model import USDRL
from .metrics import observation_curve
from .recognition import encode_dataset

logger = logging.getLogger(__name__)

RATIOS = tuple(round(0.1 * i, 1) for i in range(1, 11))


@dataclass
class EarlyPredictionResult:
    """Top-1 accuracy per observation ratio and the (unnormalised, trapezoidal) area under the curve."""

    accuracy: dict[float, float]
    area: float


def early_prediction(model: USDRL, data: str | PathLike, split: str = "test", *, ratios=RATIOS,
                     batch_size: int = 64, num_workers: int = 0, device=None) -> EarlyPredictionResult:
    """Top-1 accuracy of ``model``'s head on the observed prefixes of a prepared split, per ratio."""
    if model.head is None:
        raise ConfigError("early prediction needs a model with a clip-level head (train one with linear-probe)")
    accuracy = {}
    for ratio in ratios:
        dataset = SkeletonDataset(data, split, num_frames=model.config.num_frames, observe_ratio=ratio)
        features, labels = encode_dataset(model, dataset, batch_size=batch_size, num_workers=num_workers,
                                          device=device)
        predictions = model.head(features.to(model.head.weight.device)).argmax(1).cpu()
        accuracy[float(ratio)] = float((predictions == labels).double().mean())
        logger.info("observed %.0f%%: top-1 %.2f%%", 100 * ratio, 100 * accuracy[float(ratio)])
    area = observation_curve(accuracy) if len(accuracy) > 1 else float(np.nan)
    return EarlyPredictionResult(accuracy, area)
