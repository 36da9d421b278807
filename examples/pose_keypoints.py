"""From a 2D pose estimator's keypoints to an action class: COCO-17 ``(T, 17, 3)`` arrays in, class names out.

Run: ``python examples/pose_keypoints.py`` (offline, seconds on a CPU).

Pose estimators such as MMPose or YOLO-pose give, for every person in a video, an array
``(T, 17, 3)``: the 17 COCO keypoints of each frame as x, y in pixels and a confidence
score. ``usdrl.data.pose_to_clip`` turns such arrays (one per person) into a model clip
``(3, T, 17, 2)``: x / width, y / height, the score as third channel, two person slots.

**What the model here is.** The embedded default model takes 3D NTU-25 joints, so it cannot
read COCO-17 keypoints. This script therefore builds a *tiny, randomly initialised* COCO-17
encoder (``USDRLConfig.from_preset("tiny", layout="coco17")``, no pretraining at all) and
trains only a linear head on its frozen features (``usdrl.tasks.recognition.linear_probe``)
for six actions. The stand-in for a pose estimator's output is the library's synthetic 3D
actions seen by a virtual 1920x1080 camera (``usdrl.data.synthetic.project_coco17``). It shows
the data path and the API, not a model for real videos: for those, pretrain a COCO-17 model
on your keypoints (``usdrl prepare ntu2d`` / ``examples/pretrain_own_data.py``, with
``layout="coco17"``) or load converted reference weights, then fit a head on labelled clips
exactly as below.

The last part is the "ten lines" path: the raw keypoint arrays of a new video to a
predicted class name with its confidence.
"""

import logging
import time

import numpy as np
import torch

from usdrl import USDRL, USDRLConfig
from usdrl.data import pose_to_clip
from usdrl.data.preprocess import resample
from usdrl.data.synthetic import ACTION_NAMES, make_clips, project_coco17
from usdrl.tasks.recognition import ProbeConfig, linear_probe

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


def to_input(people: list[np.ndarray], num_frames: int = 64) -> np.ndarray:
    """A video's keypoint arrays ``[(T, 17, 3), ...]`` -> model input ``(3, num_frames, 17, 2)``."""
    clip = pose_to_clip(people, image_shape=IMAGE_SHAPE)      # (3, T, 17, 2): x/width, y/height, score
    return resample(clip, num_frames)                          # all T frames linearly resampled to 64


def dataset(videos, labels) -> torch.utils.data.TensorDataset:
    inputs = np.stack([to_input(people) for people in videos])
    return torch.utils.data.TensorDataset(torch.from_numpy(inputs), torch.from_numpy(labels))


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("usdrl").setLevel(logging.WARNING)
    train_videos, train_labels = pose_estimator_output(20 * len(CLASSES), seed=0)
    test_videos, test_labels = pose_estimator_output(6 * len(CLASSES), seed=1)
    logger.info("keypoints of %d training and %d test videos, e.g. video 0: %d person(s) of shape %s",
                len(train_videos), len(test_videos), len(train_videos[0]), train_videos[0][0].shape)

    torch.manual_seed(0)
    model = USDRL(USDRLConfig.from_preset("tiny", layout="coco17", in_channels=3)).eval()   # eval: no drop path
    start = time.perf_counter()
    result = linear_probe(model, (dataset(train_videos, train_labels), dataset(test_videos, test_labels)),
                          num_classes=len(NAMES), class_names=NAMES,
                          config=ProbeConfig(lr=0.05, epochs=100, standardize=True))
    logger.info("tiny random COCO-17 encoder (hidden %d), linear head trained in %.1f s: test accuracy %.1f%% "
                "(chance %.1f%%)", model.config.hidden_size, time.perf_counter() - start, 100 * result.last_top1,
                100 / len(NAMES))

    # New videos, straight from the pose estimator to a class name: the "ten lines".
    new_videos, new_labels = pose_estimator_output(3, seed=7)
    for people, label in zip(new_videos, new_labels, strict=True):
        clip = pose_to_clip(people, image_shape=IMAGE_SHAPE)               # [(T, 17, 3) per person] -> (3, T, 17, 2)
        x = torch.from_numpy(resample(clip, model.config.num_frames))[None]  # (1, 3, 64, 17, 2)
        with torch.inference_mode():
            probabilities = model(x).softmax(-1)[0]                          # (6,)
        confidence, k = probabilities.max(0)
        logger.info("new video, %d frames: predicted %s (%.0f%%), truly %s", len(people[0]),
                    model.config.class_names[k], 100 * confidence, NAMES[label])


if __name__ == "__main__":
    main()
