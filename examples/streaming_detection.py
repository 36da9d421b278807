"""Live action detection: pose keypoints arrive one frame at a time, finished actions come out with their latency.

Run: ``python examples/streaming_detection.py`` (offline, seconds on a CPU).

A live source (a video pose estimator, here a generator replaying a synthetic untrimmed
sequence of actions separated by background, never seen in training, as the COCO-17 2D
keypoints a camera would see) yields one frame ``(M, 17, 3)`` at a time: x, y pixels and a
confidence per joint, for each of the ``M`` people in view.

``usdrl.tasks.streaming.StreamingDetector(model, format="coco17")`` runs the frame-wise head of
the embedded default model (``usdrl.hub.DEFAULT_MODEL``, the universal ``usdrl-universal-small``:
demo weights trained on synthetic actions) on windows of 64 frames starting every 16 frames,
each window turned into the universal input on its own (no per-format preprocessing to write),
averages overlapping windows, and reports an action (frames above the threshold for one class)
as soon as the scores of the frame after it are final: its latency is at most 64 frames. The
script logs every action of 8 frames or more when it is reported, then checks that the stream
gave exactly the offline result (``usdrl.tasks.detection.detect_sequence`` on the whole recorded
sequence, the same ``format``) and lists the true actions with the best detection of each.

Any other registered format works the same way (``usdrl.keypoints.list_formats()``; 3D NTU-25
joints from a Kinect: ``format="ntu25"``).
"""

import logging
from collections.abc import Iterator

import numpy as np

from usdrl import USDRL
from usdrl.data.synthetic import NUM_CLASSES, TWO_PERSON_CLASSES, make_untrimmed, render_keypoints
from usdrl.hub import DEFAULT_MODEL
from usdrl.tasks.detection import DetectionConfig, detect_sequence, frame_scores
from usdrl.tasks.metrics import temporal_iou
from usdrl.tasks.streaming import StreamingDetector

logger = logging.getLogger("streaming_detection")

STRIDE, THRESHOLD, MIN_LENGTH = 16, 0.5, 8     # as `usdrl demo`: windows every 16 frames, p > 0.5, 8+ frames
FORMAT = "coco17"


def pose_estimator(keypoints: np.ndarray) -> Iterator[np.ndarray]:
    """The live source: keypoint frames ``(M, 17, 3)`` one at a time."""
    for t in range(keypoints.shape[1]):
        yield keypoints[:, t]


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    model = USDRL.from_pretrained(DEFAULT_MODEL)
    names = ["background", *model.config.class_names]          # frame-head column k + 1 is class k
    one_person = [k for k in range(NUM_CLASSES) if k not in TWO_PERSON_CLASSES]
    recording = make_untrimmed(seed=7, num_actions=(4, 5), classes=one_person)
    keypoints = render_keypoints(recording.data[None], FORMAT)[0]          # (M, T, 17, 3) pixels + confidence
    logger.info("live source: %d frames of %d actions with background in between, %s keypoints %s per frame",
                keypoints.shape[1], len(recording.segments), FORMAT, keypoints[:, 0].shape)

    detector = StreamingDetector(model, stride=STRIDE, threshold=THRESHOLD, format=FORMAT)
    found, scores = [], []                        # every action reported, the final frame scores as they come
    for t, frame in enumerate(pose_estimator(keypoints)):
        output = detector.push(frame)
        found += output.actions
        scores.append(output.scores)
        for label, start, end, score in output.actions:
            if end - start >= MIN_LENGTH:
                logger.info("frame %4d: %-16s frames %4d-%4d (score %.2f), reported %2d frames after its end",
                            t + 1, names[label], start, end, score, t + 1 - end)
    final = detector.finish()
    found += final.actions
    scores.append(final.scores)
    for label, start, end, score in final.actions:
        if end - start >= MIN_LENGTH:
            logger.info("end of stream: %-16s frames %4d-%4d (score %.2f)", names[label], start, end, score)

    # The same sequence, recorded and processed offline.
    offline_scores = frame_scores(model, keypoints, stride=STRIDE, format=FORMAT).numpy()          # (T, 30)
    offline = detect_sequence(model, keypoints, format=FORMAT, config=DetectionConfig(STRIDE, THRESHOLD))
    logger.info("frame scores: streaming vs offline, largest difference %.1g",
                np.abs(np.concatenate(scores) - offline_scores).max())
    same = (sorted(a[:3] for a in found) == [p[:3] for p in offline]
            and np.allclose(sorted(a[3] for a in found), sorted(p[3] for p in offline), atol=1e-4))
    logger.info("streaming actions equal the offline proposals: %s (%d actions, %d of %d+ frames)", same,
                len(offline), sum(e - s >= MIN_LENGTH for _, s, e, _ in offline), MIN_LENGTH)
    for k, start, end in recording.segments:
        iou = max((temporal_iou((start, end), (s, e)) for label, s, e, _ in found if label == k + 1), default=0.0)
        logger.info("  true %-16s frames %4d-%4d: best detection IoU %.2f", names[k + 1], start, end, iou)


if __name__ == "__main__":
    main()
