"""Live action detection: skeleton frames arrive one at a time, finished actions come out with their latency.

Run: ``python examples/streaming_detection.py`` (offline, seconds on a CPU).

A live source (a Kinect-style sensor, here a generator replaying a synthetic untrimmed
sequence of actions separated by background, never seen in training) yields one frame
``(3, 25, M)`` of 3D joints at a time. Each frame is preprocessed as ``usdrl prepare`` does
for PKU-MMD sequences (``Recipe3D("ntu", select_bodies=False, fill_empty_frames=False)``):
body slots padded to 2, centred on body 0's spine joint in that frame, and rotated so that
the shoulders of body 0 *in the first frame* lie along x. The offline recipe takes that
rotation from frame 0 of the whole sequence; live, frame 0 is the first frame of the stream,
so the rotation is computed once from it and applied to every later frame, which gives the
offline preprocessing exactly (a stream that starts with nobody in view would need to wait
for a body before fixing the rotation).

``usdrl.tasks.streaming.StreamingDetector`` runs the frame-wise head of the embedded default
model (``usdrl.hub.DEFAULT_MODEL``, demo weights trained on synthetic actions) on windows of
64 frames starting every 16 frames, averages overlapping windows, and reports an action
(frames above the threshold for one class) as soon as the scores of the frame after it are
final: its latency is at most 64 frames. The script logs every action of 8 frames or more
when it is reported, then checks that the stream gave exactly the offline result
(``usdrl.tasks.detection.frame_scores`` on the whole recorded sequence, proposals from
``usdrl.tasks.metrics.proposals_from_scores``) and lists the true actions with the best
detection of each.
"""

import logging
from collections.abc import Iterator

import numpy as np

from usdrl import USDRL
from usdrl.data import ALIGNMENT_RECIPES, center_on_joint, pad_bodies
from usdrl.data.prepared import Recipe3D
from usdrl.data.preprocess import rotate, rotation_onto
from usdrl.data.synthetic import NUM_CLASSES, TWO_PERSON_CLASSES, make_untrimmed
from usdrl.hub import DEFAULT_MODEL
from usdrl.tasks.detection import frame_scores
from usdrl.tasks.metrics import proposals_from_scores, temporal_iou
from usdrl.tasks.streaming import StreamingDetector

logger = logging.getLogger("streaming_detection")

STRIDE, THRESHOLD, MIN_LENGTH = 16, 0.5, 8     # as `usdrl demo`: windows every 16 frames, p > 0.5, 8+ frames


def sensor(sequence: np.ndarray) -> Iterator[np.ndarray]:
    """The live source: raw frames ``(3, 25, M)`` one at a time."""
    for t in range(sequence.shape[1]):
        yield sequence[:, t]


class LiveAligner:
    """The NTU view alignment, frame by frame: centre every frame, rotate by the first frame's rotation."""

    def __init__(self):
        self.recipe = ALIGNMENT_RECIPES["ntu"]
        self.rotation = None

    def __call__(self, frame: np.ndarray) -> np.ndarray:
        """Raw frame ``(3, V, M)`` -> preprocessed frame ``(3, V, 2)`` float32."""
        clip = center_on_joint(pad_bodies(frame[:, None], 2), self.recipe.center_joint)    # (3, 1, V, 2)
        if self.rotation is None:                                                          # the first frame
            a, b = self.recipe.x_axis_joints
            self.rotation = rotation_onto(clip[:, 0, a, 0] - clip[:, 0, b, 0], [1.0, 0.0, 0.0])
        return rotate(clip, self.rotation)[:, 0].astype(np.float32)


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    model = USDRL.from_pretrained(DEFAULT_MODEL)
    names = ["background", *model.config.class_names]          # frame-head column k + 1 is class k
    one_person = [k for k in range(NUM_CLASSES) if k not in TWO_PERSON_CLASSES]
    recording = make_untrimmed(seed=7, num_actions=(4, 5), classes=one_person)
    logger.info("live source: %d frames of %d actions with background in between", recording.data.shape[1],
                len(recording.segments))

    detector, align = StreamingDetector(model, stride=STRIDE, threshold=THRESHOLD), LiveAligner()
    found, scores = [], []                        # every action reported, the final frame scores as they come
    for t, frame in enumerate(sensor(recording.data)):
        output = detector.push(align(frame))
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
    prepared = Recipe3D("ntu", select_bodies=False, fill_empty_frames=False).apply(recording.data)
    offline_scores = frame_scores(model, prepared, stride=STRIDE).numpy()          # (T, 30)
    offline = proposals_from_scores(offline_scores, THRESHOLD, background=0)
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
