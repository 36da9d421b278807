"""My own classes: teach the pretrained model five new actions from a few labelled clips.

Run: ``python examples/finetune_own_classes.py [--out FOLDER]`` (offline, seconds on a CPU).

A user has a handful of labelled skeleton clips of their own actions. Here five classes of
the library's synthetic action generator stand in for them (8 clips per class to train on,
6 held-out clips per class to test on), preprocessed as ``usdrl prepare`` does
(``usdrl.data.to_model_input``). The script

1. loads the embedded NTU-25 model (``usdrl.hub.NTU25_MODEL``, ``usdrl-synthetic-small``: a small
   encoder for 3D Kinect-style joints pretrained on synthetic actions, *not* on real recordings);
2. gives it a fresh 5-class head named after the user's classes and trains that head on the
   frozen encoder (``usdrl.tasks.recognition.linear_probe``, which calls
   ``model.reset_classifier(5, class_names=...)`` and fits the head on features computed
   once, with each feature standardised: seconds on a CPU), and reports held-out accuracy;
3. saves the model with ``save_pretrained`` (``config.json`` keeps the class names), reloads
   it with ``USDRL.from_pretrained(folder)`` and predicts class names with confidences.

Why the head only: with 8 clips per class, finetuning every weight as well
(``usdrl.tasks.finetune.finetune``, or a few extra epochs of AdamW from the fitted head) lowered
the held-out accuracy in our runs with the demo weights; it is for hundreds of clips per class, e.g.
``finetune(model, (train, test), num_classes=5, class_names=NAMES, config=FinetuneConfig(epochs=50))``.

With real data, replace ``my_clips`` by your recordings: ``(3, T, 25, M)`` Kinect-style joints
in metres, each passed through ``to_model_input(clip, 64, length=T)``. Keypoints of a pose
estimator (COCO-17 2D and other formats) go to the default universal model instead:
``examples/pose_keypoints.py``.
"""

import argparse
import logging
import tempfile
import time

import numpy as np
import torch

from usdrl import USDRL
from usdrl.data import to_model_input
from usdrl.data.synthetic import make_clips
from usdrl.hub import NTU25_MODEL
from usdrl.tasks.recognition import ProbeConfig, linear_probe

logger = logging.getLogger("finetune_own_classes")

# The user's classes, played by five synthetic ones: {synthetic class index: the user's name}.
MY_CLASSES = {4: "clap", 10: "kick", 13: "squat", 14: "jump", 16: "bow"}
NAMES = list(MY_CLASSES.values())


def my_clips(per_class: int, seed: int) -> torch.utils.data.TensorDataset:
    """``per_class`` labelled clips of each of my classes: model inputs ``(N, 3, 64, 25, 2)``, labels 0..4."""
    clips = make_clips(per_class * len(MY_CLASSES), seed=seed, classes=list(MY_CLASSES))
    inputs = np.stack([to_model_input(clip, 64, length=n) for clip, n in zip(clips.data, clips.lengths,
                                                                                strict=True)])
    labels = np.array([list(MY_CLASSES).index(k) for k in clips.labels])
    return torch.utils.data.TensorDataset(torch.from_numpy(inputs), torch.from_numpy(labels))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", help="folder to save the trained model in (default: a temporary folder)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("usdrl").setLevel(logging.WARNING)          # the library's per-epoch lines

    train, test = my_clips(8, seed=10), my_clips(6, seed=11)
    logger.info("my data: %d training and %d test clips of %d classes (%s)", len(train), len(test), len(NAMES),
                ", ".join(NAMES))
    model = USDRL.from_pretrained(NTU25_MODEL)
    start = time.perf_counter()
    result = linear_probe(model, (train, test), num_classes=len(NAMES), class_names=NAMES,
                          config=ProbeConfig(lr=0.05, epochs=100, standardize=True))
    logger.info("new %d-class head trained on the frozen encoder in %.1f s: test accuracy %.1f%% (chance %.1f%%)",
                model.config.num_classes, time.perf_counter() - start, 100 * result.last_top1, 100 / len(NAMES))

    out = args.out or tempfile.mkdtemp(prefix="usdrl-my-classes-")
    model.save_pretrained(out)
    reloaded = USDRL.from_pretrained(out)
    logger.info("saved to %s and reloaded: classes %s", out, reloaded.config.class_names)
    clips, labels = test.tensors
    with torch.inference_mode():
        probabilities = reloaded(clips).softmax(-1)
        same = torch.equal(probabilities.argmax(1), model(clips).argmax(1))
    logger.info("reloaded model predicts as the trained one: %s", same)
    for i in range(0, len(clips), 7):
        confidence, k = probabilities[i].max(0)
        logger.info("  test clip %2d (%s): predicted %s, %.0f%%", i, NAMES[labels[i]], reloaded.config.class_names[k],
                    100 * confidence)


if __name__ == "__main__":
    main()
