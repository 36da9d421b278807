"""From a 2D pose estimator's keypoints to an action class: COCO-17 ``(T, 17, 3)`` arrays in, class names out.

Run: ``python examples/pose_keypoints.py`` (offline, seconds on a CPU).

Pose estimators such as MMPose or YOLO-pose give, for every person in a video, an array
``(T, 17, 3)``: the 17 COCO keypoints of each frame as x, y in pixels and a confidence
score. The embedded universal model (``usdrl.hub.UNIVERSAL_MODEL``, ``usdrl-universal-small``)
reads them as they are, like every other registered keypoint format, 2D or 3D: stack the
persons to ``(M, T, 17, 3)`` and call ``model.encode_keypoints(keypoints, format="coco17")``.
No COCO-17-specific model is needed.

**What the model here is.** Demo weights: a small encoder pretrained across formats on the
library's *synthetic* actions, with a clip head for those 29 classes. The stand-in for a pose
estimator's output is the same synthetic 3D actions seen by a virtual 1920x1080 camera
(``usdrl.data.synthetic.project_coco17``). The script

1. classifies such videos with the model's own head (the synthetic classes it knows), then
2. trains a new linear head for six "own" actions on its frozen embeddings
   (``usdrl.tasks.recognition.train_linear_head``), as one would for real classes, and
3. runs the "ten lines" path: the raw keypoint arrays of a new video to a predicted class
   name with its confidence.

It shows the data path and the API, not a model for real videos: for those, pretrain a
universal model on your own keypoints (``usdrl.train.cross_format``) and fit a head on
labelled clips exactly as below.
"""

import logging
import time

import numpy as np
import torch

from usdrl import USDRL
from usdrl.data.synthetic import ACTION_NAMES, make_clips, project_coco17
from usdrl.hub import UNIVERSAL_MODEL
from usdrl.tasks.recognition import ProbeConfig, train_linear_head

logger = logging.getLogger("pose_keypoints")

CLASSES = [0, 4, 10, 13, 14, 16]          # synthetic classes standing in for the user's six actions
NAMES = [ACTION_NAMES[k] for k in CLASSES]
IMAGE_SHAPE = (1080, 1920)                 # (height, width) of the video frames


def pose_estimator_output(num_clips: int, seed: int) -> tuple[list[list[np.ndarray]], np.ndarray]:
    """Stand-in for running a pose estimator on videos: per video, a list of ``(T, 17, 3)`` arrays
    (x, y pixels and score) for each person seen, and the videos' labels (indices into ``CLASSES``)."""
    clips = make_clips(num_clips, seed=seed, classes=CLASSES)
    videos = []
    for clip, n in zip(clips.data, clips.lengths, strict=True):
        keypoints, scores = project_coco17(clip[:, :n], image_size=IMAGE_SHAPE)    # (M, T, 17, 2), (M, T, 17)
        videos.append([np.concatenate([keypoints[m], scores[m, ..., None]], axis=-1)
                       for m in range(len(keypoints)) if scores[m].any()])
    return videos, np.array([CLASSES.index(k) for k in clips.labels])


def embed(model: USDRL, videos) -> torch.Tensor:
    """Embeddings ``(N, 2H)`` of videos given as lists of per-person ``(T, 17, 3)`` arrays."""
    return torch.stack([model.encode_keypoints(np.stack(people), format="coco17", show_progress_bar=False)
                        for people in videos])


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("usdrl").setLevel(logging.WARNING)
    train_videos, train_labels = pose_estimator_output(20 * len(CLASSES), seed=0)
    test_videos, test_labels = pose_estimator_output(6 * len(CLASSES), seed=1)
    logger.info("keypoints of %d training and %d test videos, e.g. video 0: %d person(s) of shape %s",
                len(train_videos), len(test_videos), len(train_videos[0]), train_videos[0][0].shape)

    model = USDRL.from_pretrained(UNIVERSAL_MODEL)       # eval mode, a clip head for the 29 synthetic classes
    test_features = embed(model, test_videos)
    with torch.inference_mode():
        known = model.head(test_features).argmax(1).numpy()
    truth = np.array(CLASSES)[test_labels]
    logger.info("%s, its own head (29 synthetic classes): %.1f%% of the %d test videos right (chance 3.4%%)",
                UNIVERSAL_MODEL, 100 * np.mean(known == truth), len(test_videos))

    start = time.perf_counter()
    head, result = train_linear_head(embed(model, train_videos), torch.from_numpy(train_labels), test_features,
                                     torch.from_numpy(test_labels), len(NAMES),
                                     ProbeConfig(lr=0.05, epochs=100, standardize=True))
    logger.info("new linear head for %d own classes on the frozen embeddings, trained in %.1f s: test accuracy "
                "%.1f%% (chance %.1f%%)", len(NAMES), time.perf_counter() - start, 100 * result.last_top1,
                100 / len(NAMES))
    model.reset_classifier(len(NAMES), NAMES)
    model.head.load_state_dict(head.state_dict())

    # New videos, straight from the pose estimator to a class name: the "ten lines".
    new_videos, new_labels = pose_estimator_output(3, seed=7)
    for people, label in zip(new_videos, new_labels, strict=True):
        keypoints = np.stack(people)                                             # (M, T, 17, 3) pixels + score
        embedding = model.encode_keypoints(keypoints, format="coco17")           # (2H,)
        with torch.inference_mode():
            probabilities = model.head(embedding).softmax(-1)                    # (6,)
        confidence, k = probabilities.max(0)
        logger.info("new video, %d frames: predicted %s (%.0f%%), truly %s", len(people[0]),
                    model.config.class_names[k], 100 * confidence, NAMES[label])


if __name__ == "__main__":
    main()
