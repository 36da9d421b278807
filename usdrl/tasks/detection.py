"""Temporal action detection (PKU-MMD I, spec §6.8) and segmentation (PKU-MMD II, §6.9).

Training: every parameter of the model and a frame-wise head (background = class 0) are
trained with per-frame cross-entropy on windows of untrimmed sequences
(``SkeletonDataset(path, "train_untrimmed", sampling="windows")``; :func:`train_detector`), or
only the head on the frozen encoder's dense features (:func:`frame_probe`); frames past a
sequence's end (label -1) are ignored. Two recipes: the library's (:class:`FinetuneConfig`:
AdamW, warm-up and cosine decay, the model in train mode) and the reference's
(:class:`ReferenceDetectionConfig`: the TPAMI release's ``action_detection.py``).

Inference: a whole sequence is cut into windows of the model's frames every ``stride``
frames (overlaps allowed, the last window reaching the end); each frame's class
probabilities are the average over the windows that contain it. Proposals are the
maximal runs of frames whose probability of an action class exceeds a threshold
(:func:`usdrl.tasks.metrics.proposals_from_scores`), written one file per video in the
official ``label,start,end,score`` format.
"""

import logging
from collections.abc import Callable
from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.utils.data
from torch import nn

from .._io import atomic_write_text
from ..data.prepared import IGNORE_LABEL, SkeletonDataset, UniversalDataset, open_split
from ..engine import (
    RunOptions,
    TrainingRun,
    build_optimizer,
    config_dict,
    constant_schedule,
    derived_seed,
    gather_shares,
    is_main_process,
    process_share,
)
from ..errors import ConfigError, InputError
from ..model import USDRL
from ..universal import check_universal, window_converter
from .finetune import FinetuneConfig, make_optimizer
from .metrics import detection_map, proposals_from_scores, segmentation_metrics, segments_of
from .recognition import ProbeConfig, ProbeResult, as_model, classes_of, train_linear_head

if TYPE_CHECKING:  # the tasks do not import the pretraining package at run time
    from ..train.cross_format import FormatAlignment

logger = logging.getLogger(__name__)

#: The IoU thresholds of the PKU-MMD evaluation.
IOU_THRESHOLDS = (0.1, 0.2, 0.3, 0.4, 0.5)


@dataclass
class DetectionConfig:
    """Inference settings: window ``stride`` (default: the window length, i.e. no overlap),
    proposal ``threshold`` (0.02 in the reference), ``min_length`` and optional temporal ``nms_iou``."""

    stride: int | None = None
    threshold: float = 0.02
    min_length: int = 1
    nms_iou: float | None = None


@dataclass
class ReferenceDetectionConfig:
    """The detection finetuning of the TPAMI release (``action_detection.py``, ``scripts/detection.sh``).

    Every parameter and the frame head in one SGD group (momentum 0.9, weight decay 0) at a
    constant learning rate (the release defines a step schedule but never calls it), batch
    512, 150 epochs, plain per-frame cross-entropy, and the model held in ``eval()`` mode
    while it trains (no drop path).
    """

    epochs: int = 150
    batch_size: int = 512
    lr: float = 0.005
    momentum: float = 0.9
    weight_decay: float = 0.0
    seed: int = 0

    def __post_init__(self):
        for name in ("epochs", "batch_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")


def _smoothing_sum(logits: torch.Tensor, labels: torch.Tensor,
                   clamp: float = 4.0) -> tuple[torch.Tensor, torch.Tensor]:
    """``(sum over valid neighbour pairs of the class-mean truncated squared difference, number of valid
    pairs)``: the two parts of :func:`smoothing_loss`."""
    log_p = logits.log_softmax(-1)
    delta = (log_p[:, 1:] - log_p[:, :-1].detach()).square().clamp(max=clamp**2)
    valid = ((labels[:, 1:] != IGNORE_LABEL) & (labels[:, :-1] != IGNORE_LABEL)).unsqueeze(-1)
    return (delta * valid).sum() / logits.shape[-1], valid.sum()


def smoothing_loss(logits: torch.Tensor, labels: torch.Tensor, clamp: float = 4.0) -> torch.Tensor:
    """MS-TCN's truncated mean squared error between the log-probabilities of neighbouring frames.

    ``logits (B, T, K)``; ``labels (B, T)`` mark padding with -1 (pairs touching it are left
    out). ``mean(min((log p_t - log p_{t-1})^2, clamp^2))``, the previous frame detached.
    """
    total, count = _smoothing_sum(logits, labels, clamp)
    return total / count.clamp(min=1)


class _FrameLogits(nn.Module):
    """``model.forward_frames`` as a module's ``forward``, so that DistributedDataParallel can wrap it."""

    def __init__(self, model: USDRL):
        super().__init__()
        self.model = model

    def forward(self, clips: torch.Tensor, views: torch.Tensor | None = None):
        """Frame logits ``(B, T, K)`` of clips ``(B, C, T, V, M)``; with ``views (K', N, C, T, V, M)`` also
        their pooled embeddings ``(K', N, D)`` (one forward, so that DDP sees both)."""
        logits = self.model.forward_frames(clips)
        if views is None:
            return logits
        pooled = self.model.forward_head(self.model.forward_features(views.flatten(0, 1)), pre_logits=True)
        return logits, pooled.unflatten(0, views.shape[:2])


def train_detector(model: USDRL, data, *, config: FinetuneConfig | ReferenceDetectionConfig | None = None,
                   num_classes: int | None = None, smoothing: float = 0.0, split: str = "train_untrimmed",
                   window_stride: int | None = None, num_workers: int = 0,
                   alignment: "FormatAlignment | None" = None,
                   run: RunOptions | None = None) -> list[float]:
    """Train ``model`` with a fresh frame-wise head of ``num_classes`` (background included; default: the
    data's frame classes) on ``(clip (C, T, V, M), frame labels (T,))`` windows; returns the mean loss of
    every epoch.

    ``data``: a dataset of windows (e.g. ``SkeletonDataset(path, "train_untrimmed", sampling="windows")``),
    or a prepared dataset folder (its untrimmed ``split``), a split folder or ``(folder, split)``, cut
    into windows of the model's frames every ``window_stride`` frames (default: the window length).
    ``config``: the library's recipe (:class:`FinetuneConfig`, the default) or the reference's
    (:class:`ReferenceDetectionConfig`). ``smoothing`` weights :func:`smoothing_loss` (MS-TCN
    uses 0.15 for segmentation). ``alignment`` (:class:`usdrl.train.cross_format.FormatAlignment`,
    universal models): each step also adds its cross-format InfoNCE term on clips it renders (seeded by
    the run's seed, step and rank, so a resumed run draws alike), logged as ``alignment``. ``run``
    (:class:`~usdrl.engine.RunOptions`): device (default: where the model is), precision, run folder
    (checkpoints, and the trained model's save_pretrained files at the end), resume; the model is left
    on the run's device in eval mode.

    Under torchrun ``config.batch_size`` stays the global batch: each process trains on its share of
    every batch, DDP averages the gradients, and the frame losses are means over the frames of the
    whole batch (:meth:`~usdrl.engine.TrainingRun.global_mean`), so the steps are one process's. The
    returned losses are the global ones; only rank 0 writes the run folder. The alignment term is each
    process's own (``alignment.batch_size`` clips per process, their own negatives), averaged by DDP."""
    windows = open_split(data, split, model=model, head=False, sampling="windows", window_stride=window_stride)
    num_classes = classes_of(windows, num_classes)
    config = config or FinetuneConfig()
    reference = isinstance(config, ReferenceDetectionConfig)
    settings = {**config_dict(config), "recipe": type(config).__name__, "smoothing": smoothing}
    if alignment is not None:
        check_universal(model.config)
        settings["alignment"] = alignment.to_dict()
    engine = TrainingRun(run or RunOptions(), config=settings,
                         facts={"num_windows": len(windows), "num_classes": num_classes},
                         resumable_changes=("eval_every",), default_device=next(model.parameters()).device,
                         distributed=True)
    torch.manual_seed(config.seed)
    model.reset_frame_classifier(num_classes)
    engine.place(model)
    loader = engine.loader(windows, batch_size=config.batch_size, seed=config.seed, num_workers=num_workers)
    if reference:
        optimizer = build_optimizer(model.parameters(), "sgd", lr=config.lr, momentum=config.momentum,
                                    weight_decay=config.weight_decay)
        schedule = constant_schedule(optimizer)  # the release defines a step schedule but never calls it
        criterion = nn.CrossEntropyLoss(ignore_index=IGNORE_LABEL, reduction="sum")
    else:
        optimizer, schedule = make_optimizer(model, config, len(loader))
        criterion = nn.CrossEntropyLoss(ignore_index=IGNORE_LABEL, label_smoothing=config.label_smoothing,
                                        reduction="sum")
    if engine.resumed_state is None:  # (a resumed run restores each process's own generators)
        engine.seed_process(config.seed)
    losses = engine.resume(model=model, optimizer=optimizer, scheduler=schedule).get("losses", [])
    # parameters the frame loss does not reach (a clip head; a causal model's spatial stream) keep no
    # gradient, as in one process
    network = engine.wrap(_FrameLogits(model), find_unused_parameters=model.head is not None or model.config.causal,
                          broadcast_buffers=False)
    model.train(not reference)
    with engine, engine.progress((config.epochs - engine.epoch) * len(loader), unit="step") as bar:
        while engine.epoch < config.epochs:
            engine.set_epoch(loader, engine.epoch)
            epoch_losses = []
            for batch in loader:
                clips, labels = engine.to_device(batch)
                labels = labels.long()
                lr = optimizer.param_groups[-1]["lr"]
                record = {"lr": lr}
                with engine.autocast():
                    if alignment is None:
                        logits = network(clips)                                        # (B, T, K)
                    else:
                        views = alignment.views(derived_seed(config.seed, engine.step, engine.rank), engine.device)
                        logits, embeddings = network(clips, views)
                logits = logits.float()
                loss = engine.global_mean(criterion(logits.flatten(0, 1), labels.flatten()),
                                          (labels != IGNORE_LABEL).sum())
                if smoothing:
                    loss = loss + smoothing * engine.global_mean(*_smoothing_sum(logits, labels))
                if alignment is not None:
                    aligned = alignment.loss(embeddings)
                    loss = loss + alignment.weight * aligned
                    record["alignment"] = engine.global_value(aligned)
                engine.backward_step(loss, optimizer)
                engine.advance(schedule)
                epoch_losses.append(engine.global_value(loss))
                engine.log({**record, "loss": epoch_losses[-1]})
                bar.update()
            losses.append(float(np.mean(epoch_losses)))
            logger.info("epoch %d: frame loss %.4f", engine.epoch + 1, losses[-1])
            engine.end_epoch(config.epochs, {"losses": losses})
    model.eval()
    if engine.run_dir is not None and is_main_process():  # under torchrun rank 0 alone writes
        model.save_pretrained(engine.run_dir)
    return losses


def frame_probe(model: USDRL, train_windows, test_windows, *, num_classes: int,
                config: ProbeConfig | None = None, batch_size: int = 64) -> ProbeResult:
    """Train a frame-wise head on the frozen encoder's dense features (a per-frame linear probe).

    ``train_windows`` / ``test_windows`` yield ``(clip (C, T, V, M), frame labels (T,))`` (e.g.
    ``SkeletonDataset(path, "train_untrimmed", sampling="windows")``); frames labelled -1 are left
    out. The dense features ``(windows, T, D)`` are computed once; the encoder is not changed, the
    trained head becomes ``model.frame_head`` and the model is left in eval mode. Returns the
    per-frame accuracy history."""
    def frames(windows) -> tuple[torch.Tensor, torch.Tensor]:
        # under torchrun each process computes its share of the windows and every process gets all
        loader = torch.utils.data.DataLoader(process_share(windows), batch_size=batch_size)
        features, labels = [], []
        for clips, frame_labels in loader:
            features.append(model.dense_features(clips, batch_size=batch_size, show_progress_bar=False))
            labels.append(torch.as_tensor(frame_labels).long())
        features = gather_shares(torch.cat(features), len(windows)).flatten(0, 1)
        labels = gather_shares(torch.cat(labels), len(windows)).flatten()
        keep = labels != IGNORE_LABEL
        return features[keep], labels[keep]

    head, result = train_linear_head(*frames(train_windows), *frames(test_windows), num_classes, config)
    model.reset_frame_classifier(num_classes)
    model.frame_head.load_state_dict(head.state_dict())
    model.eval()
    return result


def _window_starts(length: int, window: int, stride: int) -> list[int]:
    """Window starts every ``stride`` frames until the sequence is covered (the last one may overhang)."""
    starts = list(range(0, max(1, length - window + stride), stride))
    return [s for s in starts if s < length] or [0]


def frame_scores(model: USDRL, sequence: np.ndarray, *, stride: int | None = None, batch_size: int = 64,
                 format: str | None = None, image_size: tuple[int, int] | None = None) -> torch.Tensor:
    """Per-frame class probabilities ``(T, K)`` of one untrimmed sequence.

    ``sequence``: the model's input for the whole sequence ``(C, T, V, M)``, or, with ``format`` (a
    universal model), keypoints of that registered format ``(M, T, V, C)`` (persons, frames, joints,
    coordinates [+ score]; ``image_size`` as in :meth:`~usdrl.USDRL.encode_keypoints`), each window
    turned into the universal input on its own (:func:`usdrl.universal.window_converter`).
    Windows of ``model.config.num_frames`` frames start every ``stride`` frames (default: no
    overlap); frames past the end of the sequence are zero-padded; every frame's
    probabilities are averaged over the windows that contain it.
    """
    return _window_scores(model, sequence, stride, batch_size, window_converter(model.config, format, image_size),
                          "(C, T, V, M)" if format is None else f"{format} keypoints (M, T, V, C)")


def _window_scores(model: USDRL, sequence: np.ndarray, stride: int | None, batch_size: int,
                   to_input: Callable[[np.ndarray], np.ndarray], expected: str) -> torch.Tensor:
    """:func:`frame_scores` of ``sequence`` (``expected``: its shape, for the message), whose windows
    ``(W, ·, T, ·, ·)`` become model input by ``to_input``."""
    if model.frame_head is None:
        raise ConfigError("detection needs a model with a frame-wise head (train one with train_detector)",
                          keywords=("train_detector",))
    sequence = np.asarray(sequence, dtype=np.float32)
    if sequence.ndim != 4 or sequence.shape[1] < 1:
        raise InputError(f"expected one sequence {expected}, got shape {sequence.shape}")
    window = model.config.num_frames
    stride = stride or window
    if not 1 <= stride <= window:
        raise ConfigError(f"stride must be in 1..{window}, got {stride}", keywords=("stride",))
    length = sequence.shape[1]
    starts = _window_starts(length, window, stride)
    padded = np.zeros((sequence.shape[0], starts[-1] + window, *sequence.shape[2:]), dtype=np.float32)
    padded[:, :length] = sequence
    clips = torch.from_numpy(to_input(np.stack([padded[:, s:s + window] for s in starts])))
    model.eval()
    with torch.inference_mode():
        probabilities = torch.cat([model.forward_frames(batch).float().softmax(-1).cpu()
                                   for batch in clips.split(batch_size)])
    total = torch.zeros(padded.shape[1], probabilities.shape[-1])
    count = torch.zeros(padded.shape[1], 1)
    for start, p in zip(starts, probabilities, strict=True):
        total[start:start + window] += p
        count[start:start + window] += 1
    return (total / count)[:length]


def _stored_sequence_scores(model: USDRL, dataset, index: int, stride: int | None) -> torch.Tensor:
    """:func:`frame_scores` of sequence ``index`` of an untrimmed split. A universal view of a prepared split
    (:class:`~usdrl.data.prepared.UniversalDataset`) cuts the windows from the stored sequence and converts
    each on its own, as its training windows are, not the whole sequence at once."""
    length = int(dataset.lengths[index])
    if isinstance(dataset, UniversalDataset):
        def to_input(windows: np.ndarray) -> np.ndarray:
            return dataset.convert(windows, np.full(len(windows), index))
        stored = dataset.dataset.padded_clips[index, :, :length]
        return _window_scores(model, stored, stride, 64, to_input, "(C, T, V, M)")
    return frame_scores(model, dataset.padded_clips[index, :, :length], stride=stride)


def detect_sequence(model: USDRL, sequence: np.ndarray, *, config: DetectionConfig | None = None,
                    format: str | None = None, image_size: tuple[int, int] | None = None
                    ) -> list[tuple[int, int, int, float]]:
    """The actions ``[(label, start, end, score)]`` (end exclusive, label 0 = background never given) of one
    untrimmed sequence: :func:`frame_scores` (``sequence``, ``format`` and ``image_size`` as there) every
    ``config.stride`` frames, then :func:`_proposals`."""
    config = config or DetectionConfig()
    return _proposals(frame_scores(model, sequence, stride=config.stride, format=format, image_size=image_size),
                      config)


def _proposals(scores: torch.Tensor, config: DetectionConfig) -> list[tuple[int, int, int, float]]:
    """:func:`~usdrl.tasks.metrics.proposals_from_scores` of frame scores ``(T, K)`` with the config's threshold,
    minimum length and NMS (background 0)."""
    return proposals_from_scores(scores.numpy(), config.threshold, background=0, min_length=config.min_length,
                                 nms_iou=config.nms_iou)


def detect_dataset(model: USDRL, data, *, config: DetectionConfig | None = None, out_dir=None,
                   split: str = "test_untrimmed") -> dict[str, list[tuple[int, int, int, float]]]:
    """Proposals ``{video: [(label, start, end, score)]}`` for every sequence of a prepared untrimmed
    split; with ``out_dir``, also one official-format file per video (``<video>.txt``, written by rank 0
    alone under torchrun; every process returns the proposals).

    ``data``: a :class:`~usdrl.data.SkeletonDataset` of an untrimmed split, or a prepared dataset
    folder (its ``split``), a split folder or ``(folder, split)``."""
    config = config or DetectionConfig()
    dataset = open_split(data, split, model=model, head=False, sampling="windows")
    proposals = {name: _proposals(_stored_sequence_scores(model, dataset, index, config.stride), config)
                 for index, name in enumerate(dataset.names)}
    if out_dir is not None and is_main_process():
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        for name, rows in proposals.items():
            lines = "".join(f"{label},{start},{end},{score:.6f}\n" for label, start, end, score in rows)
            atomic_write_text(out / f"{Path(name).stem}.txt", lines)
    return proposals


def ground_truth(data, split: str = "test_untrimmed") -> dict[str, list[tuple[int, int, int]]]:
    """``{video: [(label, start, end)]}`` action segments (background excluded) from a prepared split's
    per-frame labels (``data``: an untrimmed :class:`~usdrl.data.SkeletonDataset`, a prepared dataset
    folder with ``split``, a split folder or ``(folder, split)``)."""
    dataset = open_split(data, split, sampling="windows")
    labels = dataset.frame_labels
    return {name: segments_of(labels[i, : dataset.lengths[i]], bg_class=0) for i, name in enumerate(dataset.names)}


def evaluate_segmentation(model: USDRL, data, *, config: DetectionConfig | None = None,
                          split: str = "test_untrimmed", overlaps=(0.1, 0.25, 0.5)) -> dict[str, float]:
    """Action segmentation (PKU-MMD II): frame accuracy, Edit and F1@overlaps, in percent, of the per-frame
    argmax over whole sequences (windows every ``config.stride`` frames, overlaps averaged), background = 0.
    ``data`` as for :func:`detect_dataset`."""
    dataset = open_split(data, split, model=model, head=False, sampling="windows")
    stride = (config or DetectionConfig()).stride
    labels = dataset.frame_labels
    predictions, truths = [], []
    for index in range(len(dataset.names)):
        predictions.append(_stored_sequence_scores(model, dataset, index, stride).argmax(1).numpy())
        truths.append(np.asarray(labels[index, :int(dataset.lengths[index])]))
    return segmentation_metrics(predictions, truths, overlaps, bg_class=0)


def evaluate_detection(model: USDRL, data, *, config: DetectionConfig | None = None, split: str = "test_untrimmed",
                       iou_thresholds=IOU_THRESHOLDS, present_classes: bool = False) -> dict[float, dict[str, float]]:
    """``{iou: {mAP_a, mAP_v, AP, F1}}`` (the official PKU-MMD ``evaluate.py``, see
    :func:`~usdrl.tasks.metrics.detection_map`) of ``model`` on a prepared untrimmed split (``data`` as for
    :func:`detect_dataset`)."""
    dataset = open_split(data, split, model=model, head=False, sampling="windows")
    return detection_map(ground_truth(dataset), detect_dataset(model, dataset, config=config), iou_thresholds,
                         present_classes=present_classes)


# ---- the detect and segment protocols: an optional training step, then inference -----------------------------
@dataclass
class DetectionResult:
    """What :func:`detect` found: ``proposals`` ``{video: [(label, start, end, score)]}``, the folder
    they were written to (``out``) and, when evaluated, ``scores`` ``{iou: {mAP_a, mAP_v, AP, F1}}``
    (fractions in [0, 1]; ``"mAP"`` in :meth:`to_json`)."""

    proposals: dict[str, list[tuple[int, int, int, float]]]
    out: str | None = None
    scores: dict[float, dict[str, float]] | None = None

    def to_json(self) -> dict:
        """A summary as one JSON object (what ``usdrl detect --json`` prints): the number of proposals and
        of videos, ``out``, and ``mAP`` keyed by the IoU thresholds as strings when evaluated."""
        summary = {"proposals": sum(len(rows) for rows in self.proposals.values()), "videos": len(self.proposals),
                   "out": self.out}
        if self.scores is not None:
            summary["mAP"] = {str(iou): dict(values) for iou, values in self.scores.items()}
        return summary


@dataclass
class SegmentationResult:
    """What :func:`segment` measured: ``metrics`` ``{Acc, Edit, F1@10, F1@25, F1@50}`` as fractions in
    [0, 1] (:func:`~usdrl.tasks.metrics.segmentation_metrics` divided by 100) over the ``sequences``
    sequences of ``split``."""

    metrics: dict[str, float]
    split: str
    sequences: int

    def to_json(self) -> dict:
        """The figures as one JSON object (what ``usdrl segment --json`` prints)."""
        return {**self.metrics, "split": self.split, "sequences": self.sequences}


def _frame_model(model, data, *, split: str, train, train_split: str, stride: int | None, smoothing: float,
                 num_workers: int, run: RunOptions | None) -> tuple[USDRL, SkeletonDataset]:
    """The model with a frame-wise head for the untrimmed ``split`` of ``data``, and that split.

    The split is opened (and a model without training checked against it) before any work, so a bad
    split or model fails at once. With ``train`` (a :class:`FinetuneConfig` or
    :class:`ReferenceDetectionConfig`) a fresh frame-wise head and the encoder are first trained on
    the windows of ``train_split`` of the same dataset (:func:`train_detector`, saved to ``run``'s
    folder when it has one)."""
    name = str(model) if isinstance(model, (str, PathLike)) else "the model"
    run = run or RunOptions()
    if run.run_dir is not None and train is None:
        raise ConfigError("run_dir needs train (without training there is nothing new to save)",
                          keywords=("run_dir", "train"))
    model = as_model(model)
    target = open_split(data, split, model=model, head=False, sampling="windows")
    if train is None:
        if model.frame_head is None:
            raise ConfigError(f"{name} has no frame-wise head; train one first with train_detector",
                              keywords=("train_detector",))
        target.check_config(model.config)
        return model, target
    train_detector(model, (target.path.parent, train_split), config=train, smoothing=smoothing,
                   window_stride=stride, num_workers=num_workers, run=run)
    return model, target


def detect(model: USDRL | str | PathLike, data, *, config: DetectionConfig | None = None, out_dir=None,
           split: str = "test_untrimmed", train: FinetuneConfig | ReferenceDetectionConfig | None = None,
           train_split: str = "train_untrimmed", smoothing: float = 0.0, iou_thresholds=None,
           present_classes: bool = False, num_workers: int = 0, run: RunOptions | None = None) -> DetectionResult:
    """Temporal action detection on a prepared untrimmed split (``usdrl detect``).

    ``model``: a :class:`~usdrl.model.USDRL` or its folder, registered name or Hub repo; with ``train``
    (a :class:`FinetuneConfig` or :class:`ReferenceDetectionConfig`) a fresh frame-wise head and the
    encoder are first trained on the windows of ``train_split`` (:func:`train_detector`, with
    ``smoothing``, windows every ``config.stride`` frames; ``run``: device, precision, run folder
    where the trained model is saved, resume), else the model's own frame-wise head is used.
    ``data``: a prepared dataset folder (its ``split``), a split folder or ``(folder, split)``.
    The proposals (:func:`detect_dataset`) are written to ``out_dir`` when given; with
    ``iou_thresholds`` they are also scored against the split's own frame labels
    (:func:`~usdrl.tasks.metrics.detection_map`, ``present_classes`` as there).

    Under torchrun the training step runs on every process (DDP, see :func:`train_detector`); each
    process then detects on the whole split and returns the same result, and rank 0 alone writes the
    proposal files and the trained model.
    """
    config = config or DetectionConfig()
    model, target = _frame_model(model, data, split=split, train=train, train_split=train_split,
                                 stride=config.stride, smoothing=smoothing, num_workers=num_workers, run=run)
    proposals = detect_dataset(model, target, config=config, out_dir=out_dir)
    scores = None
    if iou_thresholds is not None:
        scores = detection_map(ground_truth(target), proposals, iou_thresholds, present_classes=present_classes)
    return DetectionResult(proposals, None if out_dir is None else str(out_dir), scores)


def segment(model: USDRL | str | PathLike, data, *, config: DetectionConfig | None = None,
            split: str = "test_untrimmed", train: FinetuneConfig | ReferenceDetectionConfig | None = None,
            train_split: str = "train_untrimmed", smoothing: float = 0.15, num_workers: int = 0,
            run: RunOptions | None = None) -> SegmentationResult:
    """Action segmentation of a prepared untrimmed split (``usdrl segment``): the per-frame argmax of the
    model's frame-wise head over whole sequences (:func:`evaluate_segmentation`, windows every
    ``config.stride`` frames). ``model``, ``data``, ``train`` (MS-TCN's smoothing loss weighted by
    ``smoothing``) and ``run`` as for :func:`detect`."""
    config = config or DetectionConfig()
    model, target = _frame_model(model, data, split=split, train=train, train_split=train_split,
                                 stride=config.stride, smoothing=smoothing, num_workers=num_workers, run=run)
    metrics = evaluate_segmentation(model, target, config=config)
    return SegmentationResult({name: value / 100 for name, value in metrics.items()}, target.split,
                              len(target.names))
