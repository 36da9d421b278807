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

from ..data.prepared import SkeletonDataset, resolve_split
from ..errors import ConfigError
from ..model import USDRL
from .metrics import observation_curve
from .recognition import ProbeConfig, as_model, encode_dataset, train_linear_head

logger = logging.getLogger(__name__)

RATIOS = tuple(round(0.1 * i, 1) for i in range(1, 11))
PROTOCOLS = ("full", "observed")


@dataclass
class EarlyPredictionResult:
    """Top-1 accuracy per observation ratio, the (unnormalised, trapezoidal) area under the curve
    (NaN for one ratio) and the protocol that measured them."""

    accuracy: dict[float, float]
    area: float
    protocol: str = "full"

    def to_json(self) -> dict:
        """The figures as one JSON object (what ``usdrl early-prediction --json`` prints): the ratios as
        string keys."""
        return {"accuracy": {str(ratio): value for ratio, value in self.accuracy.items()}, "area": self.area,
                "protocol": self.protocol}


def early_prediction(model: USDRL | str | PathLike, data, *, config: ProbeConfig | None = None,
                     split: str = "test", ratios=RATIOS, protocol: str = "full", train_split: str = "train",
                     batch_size: int = 64, num_workers: int = 0, device=None) -> EarlyPredictionResult:
    """Top-1 accuracy on the observed parts of a prepared split, per ratio (``usdrl early-prediction``).

    ``model``: a :class:`~usdrl.model.USDRL` or its folder, registered name or Hub repo. ``data``: a
    prepared dataset folder (its split ``split``), one of its split folders or ``(folder, split)``; the
    clips are reopened per ratio, so a dataset object does not do. ``protocol="full"`` evaluates
    ``model``'s clip-level head; ``"observed"`` trains a linear probe (``config``, a
    :class:`~usdrl.tasks.recognition.ProbeConfig`) per ratio on the observed parts of ``train_split``
    of the same dataset and reports its best evaluation (``model`` and its head are not changed).
    """
    if protocol not in PROTOCOLS:
        raise ConfigError(f"unknown protocol {protocol!r}; expected one of {', '.join(PROTOCOLS)}",
                          keywords=("protocol",))
    bad = [ratio for ratio in ratios if not 0 < ratio <= 1]
    if bad or not len(ratios):
        raise ConfigError(f"observe_ratio must be in (0, 1], got {bad or 'no ratios'}", keywords=("observe_ratio",))
    model = as_model(model)
    if protocol == "full" and model.head is None:
        raise ConfigError("early prediction needs a model with a clip-level head (train one with linear_probe), "
                          "or protocol='observed'", keywords=("linear_probe",))
    if isinstance(data, tuple):
        data, split = data
    if not isinstance(data, (str, PathLike)):
        raise ConfigError(f"early prediction reopens the clips at every ratio: give a prepared dataset folder, a "
                          f"split folder or (folder, split), not a {type(data).__name__}")
    root, split = resolve_split(data, split)
    SkeletonDataset.for_model(root, split, model, head=protocol == "full")  # checked before any work
    num_classes = SkeletonDataset(root, train_split).num_classes if protocol == "observed" else None

    def features(split_name: str, ratio: float):
        dataset = SkeletonDataset.for_model(root, split_name, model, head=False, observe_ratio=ratio)
        return encode_dataset(model, dataset, batch_size=batch_size, num_workers=num_workers, device=device)

    accuracy = {}
    for ratio in ratios:
        test_features, test_labels = features(split, ratio)
        if protocol == "full":
            predictions = model.head(test_features.to(model.head.weight.device)).argmax(1).cpu()
            accuracy[float(ratio)] = float((predictions == test_labels).double().mean())
        else:
            _, result = train_linear_head(*features(train_split, ratio), test_features, test_labels,
                                          num_classes, config)
            accuracy[float(ratio)] = result.best_top1
        logger.info("observed %.0f%%: top-1 %.2f%%", 100 * ratio, 100 * accuracy[float(ratio)])
    area = observation_curve(accuracy) if len(accuracy) > 1 else float(np.nan)
    return EarlyPredictionResult(accuracy, area, protocol)
