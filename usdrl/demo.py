"""The library's main job in one call, offline: recognise clips and detect actions in a long sequence.

:func:`run_demo` draws fresh clips and one untrimmed sequence from the synthetic action
generator (never seen in training), classifies the clips with the model's clip head, detects
the actions of the sequence with its frame-wise head (sliding windows, proposals from runs of
frames above a threshold) and, with matplotlib installed, draws an animated skeleton and a
timeline. The default model, the embedded universal ``usdrl-universal-small``, reads the clips
as NTU-25 3D joints and the sequence as the COCO-17 2D keypoints a pose estimator would give for
a video camera; an NTU-25 model (``usdrl-synthetic-small``) reads both as 3D joints prepared as
``usdrl prepare`` does. A universal model then reads the same clips twice, as NTU-25 3D and as
COCO-17 2D, and classifies and embeds both (one model, one embedding space for every format).
``usdrl demo`` prints the result.
"""

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ._io import atomic_write_text
from .data.prepared import Recipe3D
from .data.preprocess import to_model_input
from .data.synthetic import (
    ACTION_NAMES,
    NUM_CLASSES,
    TWO_PERSON_CLASSES,
    SyntheticClips,
    make_clips,
    make_untrimmed,
    render_keypoints,
)
from .errors import ConfigError, MissingDependencyError
from .hub import DEFAULT_MODEL, UNIVERSAL_MODEL
from .model import USDRL
from .tasks.detection import frame_scores
from .tasks.metrics import proposals_from_scores, temporal_iou
from .universal import is_universal, model_input

logger = logging.getLogger(__name__)

#: Demo detection settings: windows every 16 frames, proposals above 0.5 lasting 8+ frames.
STRIDE, THRESHOLD, MIN_LENGTH = 16, 0.5, 8
#: Frames per second of the synthetic sequences (NTU RGB+D's Kinect rate).
FPS = 30.0
#: What a universal model reads the untrimmed sequence as: a pose estimator's 2D keypoints of a video camera.
SEQUENCE_FORMAT = "coco17"


@dataclass
class ClipPrediction:
    """One recognised clip: its true and predicted class names and the predicted probability."""

    true_class: str
    predicted_class: str
    confidence: float

    @property
    def correct(self) -> bool:
        return self.true_class == self.predicted_class


@dataclass
class FormatComparison:
    """One clip read by a universal model in two formats.

    Attributes:
        true_class: the clip's class.
        predicted_from_3d, predicted_from_2d: the predicted class from its NTU-25 3D joints and from
            its COCO-17 2D keypoints (pixels of a video camera, with scores).
        cosine: cosine similarity of the two embeddings as ``encode`` gives them (close to 1 for any
            two clips: every embedding shares a large common part).
        centred_cosine: the cosine once the mean embedding of the demo's clips (both formats) is
            subtracted from both, which leaves what tells clips apart.
        centred_cosine_to_others: the mean centred cosine of its 3D embedding with the 2D embeddings of
            the other clips (what "not the same clip" looks like). Both centred ones are nan with one clip.
    """

    true_class: str
    predicted_from_3d: str
    predicted_from_2d: str
    cosine: float
    centred_cosine: float
    centred_cosine_to_others: float


@dataclass
class DemoResult:
    """What :func:`run_demo` found.

    Attributes:
        clips: one :class:`ClipPrediction` per clip.
        num_frames: frames of the untrimmed sequence.
        ground_truth: ``(label, start, end)`` actions of the sequence (frames ``start:end``).
        detections: ``(label, start, end, score)`` proposals. Labels are frame-head columns:
            0 is background, ``k + 1`` is ``class_names[k + 1]``.
        frame_class_names: a name per frame-head column (``"background"`` first).
        matches: per ground-truth action, ``(IoU, detection)`` of the same-class detection that
            overlaps it most (``(0.0, None)`` if there is none).
        files: pictures and the detection file written.
        formats: the clips read by the universal model as NTU-25 3D and as COCO-17 2D (empty
            without one).
        universal_model: that model's name (or ``None``).
        sequence_format: the keypoint format the sequence was read in (``coco17``: 2D keypoints of a
            video camera, by a universal model; ``ntu25``: the 3D joints, prepared, by an NTU-25 model).
    """

    clips: list[ClipPrediction]
    num_frames: int
    ground_truth: list[tuple[int, int, int]]
    detections: list[tuple[int, int, int, float]]
    frame_class_names: list[str]
    matches: list[tuple[float, tuple[int, int, int, float] | None]]
    files: list[Path] = field(default_factory=list)
    formats: list[FormatComparison] = field(default_factory=list)
    universal_model: str | None = None
    sequence_format: str = "ntu25"

    @property
    def accuracy(self) -> float:
        """Fraction of clips classified correctly."""
        return float(np.mean([clip.correct for clip in self.clips]))

    def found(self, iou: float = 0.5) -> int:
        """Ground-truth actions with a same-class detection overlapping them by at least ``iou``."""
        return sum(overlap >= iou for overlap, _ in self.matches)


def _check_model(model: USDRL) -> list[str]:
    config = model.config
    if model.head is None or model.frame_head is None:
        missing = "clip head" if model.head is None else "frame head"
        raise ConfigError(f"the demo needs a model with a clip head and a frame-wise head, e.g. {DEFAULT_MODEL!r}; "
                          f"this one has no {missing}")
    names = list(config.class_names or [])
    if names[:NUM_CLASSES] != list(ACTION_NAMES) or config.num_frame_classes != NUM_CLASSES + 1:
        raise ConfigError(f"the demo's clips are the {NUM_CLASSES} synthetic classes; this model's heads are for "
                          f"{config.num_classes} classes ({', '.join(names[:3]) or 'unnamed'}...) and "
                          f"{config.num_frame_classes} frame classes")
    if not is_universal(config) and (config.layout != "ntu25" or config.in_channels != 3):
        raise ConfigError(f"the demo's skeletons are 3D NTU-25 or, for a universal model, keypoints of any format; "
                          f"this model takes layout {config.layout} with {config.in_channels} channels")
    return ["background", *names]


def _recognise(model: USDRL, num_clips: int, rng: np.random.Generator,
               seed: int) -> tuple[list, np.ndarray, SyntheticClips]:
    """Classify fresh clips (a universal model reads them as NTU-25 3D keypoints); returns the predictions,
    the first clip as ``usdrl prepare`` gives it (to draw) and the clips."""
    classes = rng.choice(NUM_CLASSES, size=num_clips, replace=num_clips > NUM_CLASSES)
    clips = make_clips(num_clips, seed=seed, classes=classes.tolist())
    frames = model.config.num_frames
    pairs = list(zip(clips.data, clips.lengths, strict=True))
    if is_universal(model.config):
        inputs = np.stack([model_input(render_keypoints(clip[None, :, :n], "ntu25")[0], "ntu25", num_frames=frames,
                                       num_persons=model.config.num_persons) for clip, n in pairs])
        first = to_model_input(clips.data[0], frames, length=clips.lengths[0])
    else:
        inputs = np.stack([to_model_input(clip, frames, length=n) for clip, n in pairs])
        first = inputs[0]
    with torch.inference_mode():
        probabilities = model(torch.from_numpy(inputs)).softmax(-1)
    confidence, predicted = probabilities.max(-1)
    names = model.config.class_names
    predictions = [ClipPrediction(ACTION_NAMES[int(k)], names[int(p)], float(c))
                   for k, p, c in zip(clips.labels, predicted, confidence, strict=True)]
    return predictions, first, clips


def _sequence_scores(model: USDRL, sequence) -> tuple[np.ndarray, str]:
    """Frame scores ``(T, K)`` of the untrimmed ``sequence`` and what was read: a universal model reads the
    COCO-17 2D keypoints a pose estimator would give for a video camera at the sensor, an NTU-25 model the
    3D joints prepared as ``usdrl prepare`` does."""
    if is_universal(model.config):
        keypoints = render_keypoints(sequence.data[None], SEQUENCE_FORMAT)[0]           # (M, T, 17, 3)
        return frame_scores(model, keypoints, stride=STRIDE, format=SEQUENCE_FORMAT).numpy(), SEQUENCE_FORMAT
    data = Recipe3D("ntu", select_bodies=False, fill_empty_frames=False).apply(sequence.data)
    return frame_scores(model, data, stride=STRIDE).numpy(), "ntu25"


def _check_universal_model(model: USDRL) -> None:
    config = model.config
    if config.layout != "universal":
        raise ConfigError(f"the demo's format comparison needs a universal model, e.g. {UNIVERSAL_MODEL!r}; this "
                          f"one takes layout {config.layout}")
    if model.head is None or list(config.class_names or [])[:NUM_CLASSES] != list(ACTION_NAMES):
        raise ConfigError(f"the demo's clips are the {NUM_CLASSES} synthetic classes; this universal model has "
                          f"{'no clip head' if model.head is None else f'a head for {config.num_classes} classes'}")


def compare_formats(model: USDRL, clips: SyntheticClips) -> list[FormatComparison]:
    """Read every clip as NTU-25 3D joints and as COCO-17 2D keypoints (the pixels and scores a pose
    estimator would give for a video camera at the sensor) with the universal ``model``; classify and
    compare the two embeddings (:class:`FormatComparison` per clip)."""
    _check_universal_model(model)
    embeddings = {"ntu25": [], "coco17": []}
    for clip, length in zip(clips.data, clips.lengths, strict=True):
        for fmt, found in embeddings.items():
            keypoints = render_keypoints(clip[None, :, :length], fmt)[0]         # (M, T, V, dims + 1)
            found.append(model.encode_keypoints(keypoints, format=fmt, show_progress_bar=False))
    from_3d, from_2d = torch.stack(embeddings["ntu25"]), torch.stack(embeddings["coco17"])   # (N, 2H) each
    device = next(model.parameters()).device
    with torch.inference_mode():
        predicted_3d = model.head(from_3d.to(device)).argmax(-1).cpu()
        predicted_2d = model.head(from_2d.to(device)).argmax(-1).cpu()

    def cosines(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.normalize(a, dim=1) @ torch.nn.functional.normalize(b, dim=1).T   # (N, N)

    n = len(from_3d)
    raw = cosines(from_3d, from_2d).diagonal()
    if n > 1:
        mean = torch.cat([from_3d, from_2d]).mean(0)
        centred = cosines(from_3d - mean, from_2d - mean)
        same, others = centred.diagonal(), (centred.sum(1) - centred.diagonal()) / (n - 1)
    else:
        same = others = torch.full((n,), float("nan"))
    names = model.config.class_names
    return [FormatComparison(ACTION_NAMES[int(label)], names[int(p3)], names[int(p2)], float(raw[i]),
                             float(same[i]), float(others[i]))
            for i, (label, p3, p2) in enumerate(zip(clips.labels, predicted_3d, predicted_2d, strict=True))]


def _best_matches(truth, detections) -> list[tuple[float, tuple | None]]:
    return [max(((temporal_iou((s, e), d[1:3]), d) for d in detections if d[0] == label), default=(0.0, None),
                key=lambda match: match[0])
            for label, s, e in truth]


def run_demo(out_dir: str | os.PathLike = "usdrl-demo", *, model: str | USDRL = DEFAULT_MODEL, num_clips: int = 8,
             seed: int = 2026, pictures: bool = True,
             universal_model: str | USDRL | None = UNIVERSAL_MODEL) -> DemoResult:
    """Recognise ``num_clips`` fresh synthetic clips and detect the actions of one untrimmed sequence.

    Args:
        out_dir: folder for ``detections.txt`` (official PKU-MMD ``label,start,end,score``
            lines, nothing else: the official ``evaluate.py`` reads every line as numbers),
            ``detections_named.txt`` (the same rows with the class name and the times in
            seconds, under a header line) and, with matplotlib, ``clip.gif`` (the first clip,
            animated, with its prediction) and ``timeline.png`` (frame scores, true and
            detected actions).
        model: a model with clip and frame heads for the synthetic classes (a name or instance):
            universal (keypoints of any format) or NTU-25.
        num_clips: clips to recognise (distinct classes while there are enough).
        seed: draws the clips and the sequence.
        pictures: draw the pictures; without matplotlib they are skipped with a log message.
        universal_model: a universal model with a clip head for the synthetic classes (a name or
            instance) that reads the same clips as NTU-25 3D and COCO-17 2D (:func:`compare_formats`);
            ``None`` skips this part; the same name as ``model`` reuses that model.
    """
    if num_clips < 1:
        raise ConfigError(f"num_clips must be >= 1, got {num_clips}")
    loaded = USDRL.from_pretrained(model) if isinstance(model, str | os.PathLike) else model.eval()
    frame_names = _check_model(loaded)
    if universal_model is not None:
        universal = (loaded if universal_model == model else USDRL.from_pretrained(universal_model)
                     if isinstance(universal_model, str | os.PathLike) else universal_model.eval())
        _check_universal_model(universal)
    rng = np.random.default_rng(seed)
    clips, first_clip, drawn = _recognise(loaded, num_clips, rng, seed)

    one_person = [k for k in range(NUM_CLASSES) if k not in TWO_PERSON_CLASSES]
    sequence = make_untrimmed(seed=seed, num_actions=(4, 5), classes=one_person)
    scores, sequence_format = _sequence_scores(loaded, sequence)
    detections = proposals_from_scores(scores, THRESHOLD, background=0, min_length=MIN_LENGTH)
    truth = [(k + 1, start, end) for k, start, end in sequence.segments]
    result = DemoResult(clips, len(scores), truth, detections, frame_names, _best_matches(truth, detections),
                        sequence_format=sequence_format)
    if universal_model is not None:
        result.formats = compare_formats(universal, drawn)
        result.universal_model = str(universal_model) if isinstance(universal_model, str | os.PathLike) else None

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    lines = "".join(f"{label},{start},{end},{score:.4f}\n" for label, start, end, score in detections)
    result.files.append(atomic_write_text(out / "detections.txt", lines))
    named = "".join(f"{label},{frame_names[label]},{start},{end},{start / FPS:.2f},{end / FPS:.2f},{score:.4f}\n"
                    for label, start, end, score in detections)
    result.files.append(atomic_write_text(out / "detections_named.txt",
                                          "label,class,start_frame,end_frame,start_s,end_s,score\n" + named))
    if pictures:
        try:
            result.files += _draw(out, result, first_clip, scores)
        except MissingDependencyError as exc:
            logger.warning("%s", exc)
    return result


def _draw(out: Path, result: DemoResult, clip: np.ndarray, scores: np.ndarray) -> list[Path]:
    from .viz import animate_skeleton, plot_timeline

    first = result.clips[0]
    title = f"predicted: {first.predicted_class} ({100 * first.confidence:.0f}%)\ntrue: {first.true_class}"
    return [animate_skeleton(clip, out / "clip.gif", title=title),
            plot_timeline(scores, out / "timeline.png", class_names=result.frame_class_names,
                          ground_truth=result.ground_truth, detections=result.detections, threshold=THRESHOLD,
                          fps=FPS)]
