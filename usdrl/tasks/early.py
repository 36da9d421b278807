"""Early action prediction: recognising an action from the first part of it (spec §6.6).

A clip observed up to ratio ``r`` keeps its first ``max(3, floor(n * r))`` valid frames,
which are resampled to the model's frames, as the reference feeders do. Two protocols:

* ``"observed"`` (the reference's): for every ratio a fresh linear probe is trained on the
  observed parts of the training clips and tested on the observed parts of the test clips;
  the figure is the probe's best test evaluation, as in linear evaluation. The TPAMI
  release's downstream feeder crops every clip it serves, training and test alike, to the
  observed ratio, and its documentation runs one linear evaluation per ratio.
* ``"full"``: the model's own clip-level head (e.g. from
  :func:`usdrl.tasks.recognition.linear_probe`, trained on whole clips) is evaluated on
  the observed parts of the test clips.

The result is the accuracy curve over the ratios (10% ... 100% by default) and the area
under it. Models pretrained with ``USDRLConfig(causal=True)`` see only frames ``<= t`` in
their temporal stream, the variant the paper describes for this task.
"""

import logging
from dataclasses import dataclass
from os import PathLike

import numpy as np

from ..data.prepared import SkeletonDataset
from ..errors import ConfigError
from ..model import USDRL
from .metrics import observation_curve
from .recognition import ProbeConfig, encode_dataset, train_linear_head

logger = logging.getLogger(__name__)

RATIOS = tuple(round(0.1 * i, 1) for i in range(1, 11))
PROTOCOLS = ("full", "observed")


@dataclass
class EarlyPredictionResult:
    """Top-1 accuracy per observation ratio and the (unnormalised, trapezoidal) area under the curve."""

    accuracy: dict[float, float]
    area: float


def early_prediction(model: USDRL, data: str | PathLike, split: str = "test", *, ratios=RATIOS,
                     protocol: str = "full", train_split: str = "train", probe_config: ProbeConfig | None = None,
                     batch_size: int = 64, num_workers: int = 0, device=None) -> EarlyPredictionResult:
    """Top-1 accuracy on the observed parts of a prepared split, per ratio.

    ``protocol="full"`` evaluates ``model``'s clip-level head; ``"observed"`` trains a linear
    probe (``probe_config``) per ratio on the observed parts of ``train_split`` and reports its
    best evaluation (``model`` and its head are not changed).
    """
    if protocol not in PROTOCOLS:
        raise ConfigError(f"unknown protocol {protocol!r}; expected one of {', '.join(PROTOCOLS)}")
    if protocol == "full" and model.head is None:
        raise ConfigError("early prediction needs a model with a clip-level head (train one with linear-probe), "
                          "or protocol='observed'")

    num_classes = SkeletonDataset(data, train_split).num_classes if protocol == "observed" else None

    def features(split_name: str, ratio: float):
        dataset = SkeletonDataset(data, split_name, num_frames=model.config.num_frames, observe_ratio=ratio)
        return encode_dataset(model, dataset, batch_size=batch_size, num_workers=num_workers, device=device)

    accuracy = {}
    for ratio in ratios:
        test_features, test_labels = features(split, ratio)
        if protocol == "full":
            predictions = model.head(test_features.to(model.head.weight.device)).argmax(1).cpu()
            accuracy[float(ratio)] = float((predictions == test_labels).double().mean())
        else:
            _, result = train_linear_head(*features(train_split, ratio), test_features, test_labels,
                                          num_classes, probe_config)
            accuracy[float(ratio)] = result.best_top1
        logger.info("observed %.0f%%: top-1 %.2f%%", 100 * ratio, 100 * accuracy[float(ratio)])
    area = observation_curve(accuracy) if len(accuracy) > 1 else float(np.nan)
    return EarlyPredictionResult(accuracy, area)
