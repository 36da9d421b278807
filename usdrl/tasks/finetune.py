"""Full finetuning, semi-supervised subsets and score-level ensembles (spec §6.4, §6.5).

The reference release has no finetuning code and the paper's hyperparameters were not
available, so the recipe here is this library's choice (documented in ``FinetuneConfig``):
AdamW, a linear warm-up then cosine decay, optional layer-wise learning-rate decay, and
whatever temporal sampling the training dataset applies (random crops recommended). Training
runs on the engine (:mod:`usdrl.engine`): any device and precision, checkpoints and exact resume.
"""

import dataclasses
import logging
from contextlib import nullcontext
from dataclasses import dataclass
from os import PathLike

import numpy as np
import torch
import torch.utils.data
from torch import nn

from ..data.prepared import SkeletonDataset, head_class_names, open_split
from ..engine import RunOptions, TrainingRun, build_optimizer, config_dict, warmup_cosine_schedule
from ..errors import ConfigError, InputError
from ..model import USDRL
from .metrics import confusion_matrix, topk_accuracy
from .recognition import ProbeResult, as_model, classes_of, save_trained, split_pair

logger = logging.getLogger(__name__)


@dataclass
class FinetuneConfig:
    """Finetuning settings (this library's recipe; the paper's were not available).

    Attributes:
        epochs, batch_size: training length and clips per step.
        lr: peak AdamW learning rate of the head; the encoder's layers get
            ``lr * layer_decay ** depth`` counted from the top (``layer_decay=1``: one rate for all).
        warmup_epochs: linear warm-up from 0, then cosine decay to 0.
        weight_decay, label_smoothing: AdamW and loss settings.
        eval_every: epochs between test evaluations (and after the last).
        seed: seeds the head, the sample order and the crops.
    """

    epochs: int = 100
    batch_size: int = 64
    lr: float = 5e-4
    warmup_epochs: int = 5
    layer_decay: float = 1.0
    weight_decay: float = 0.05
    label_smoothing: float = 0.0
    eval_every: int = 5
    seed: int = 0

    def __post_init__(self):
        if not 0 < self.layer_decay <= 1:
            raise ConfigError(f"layer_decay must be in (0, 1], got {self.layer_decay}", keywords=("layer_decay",))
        for name in ("epochs", "batch_size", "eval_every"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}", keywords=(name,))


def _depth(name: str, num_layers: int) -> int:
    """Depth of a parameter from the input: embeddings and positions 0, layer ``i`` ``i + 1``, heads on top."""
    for stream in ("temporal", "spatial"):
        prefix = f"encoder.{stream}.layers."
        if name.startswith(prefix):
            return int(name[len(prefix):].split(".", 1)[0]) + 1
    return num_layers + 1 if name.startswith(("head.", "frame_head.")) else 0


def parameter_groups(model: USDRL, lr: float, layer_decay: float) -> list[dict]:
    """Optimiser groups with layer-wise learning rates ``lr * layer_decay ** (top - depth)``."""
    top = model.config.num_layers + 1
    groups: dict[int, list] = {}
    for name, parameter in model.named_parameters():
        groups.setdefault(_depth(name, model.config.num_layers), []).append(parameter)
    return [{"params": params, "lr": lr * layer_decay ** (top - depth)} for depth, params in sorted(groups.items())]


def make_optimizer(model: USDRL, config: FinetuneConfig, steps_per_epoch: int):
    """AdamW over :func:`parameter_groups` and its warm-up + cosine schedule (a torch scheduler stepped
    after every optimiser step): ``(optimizer, scheduler)``."""
    optimizer = build_optimizer(parameter_groups(model, config.lr, config.layer_decay), "adamw", lr=config.lr,
                                weight_decay=config.weight_decay)
    schedule = warmup_cosine_schedule(optimizer, config.epochs * steps_per_epoch,
                                      config.warmup_epochs * steps_per_epoch)
    return optimizer, schedule


def predict_dataset(model: USDRL, dataset, *, batch_size: int = 64,
                    num_workers: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Clip-head logits ``(N, K)`` and labels ``(N,)`` (on the CPU) of every ``(clip, label)`` item of
    ``dataset``, computed where the model is."""
    if model.head is None:
        raise ConfigError("predictions need a model with a clip head (train one with linear_probe or finetune)",
                          keywords=("linear_probe", "finetune"))
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, num_workers=num_workers)
    return _evaluate(model, loader)


def _evaluate(model: USDRL, loader, run: TrainingRun | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits ``(N, K)`` and labels ``(N,)`` on the CPU; the clips go where the model is (in ``run``'s precision)."""
    model.eval()
    device = next(model.parameters()).device
    scores, labels = [], []
    with torch.inference_mode(), run.autocast() if run is not None else nullcontext():
        for clips, batch_labels in loader:
            scores.append(model(clips.to(device)).float().cpu())
            labels.append(torch.as_tensor(batch_labels).long())
    return torch.cat(scores), torch.cat(labels)


def finetune(model: USDRL | str | PathLike, data, *, config: FinetuneConfig | None = None,
             num_classes: int | None = None, fraction: float = 1.0, balanced: bool = True,
             train_split: str = "train", test_split: str = "test", num_workers: int = 0,
             class_names: list[str] | None = None, run: RunOptions | None = None) -> ProbeResult:
    """Train every parameter of ``model`` with a fresh ``num_classes`` head on the training clips; evaluate on
    the test clips (``usdrl finetune``).

    ``model``: a :class:`~usdrl.model.USDRL` or its folder, registered name or Hub repo. ``data``: a
    prepared dataset folder (its ``train_split`` with random temporal crops seeded by ``config.seed``,
    its ``test_split`` resampled whole, both at the model's frames) or a pair ``(train, test)`` of
    datasets of ``(clip (C, T, V, M), label)`` items or split folders. ``fraction < 1`` trains on a
    :func:`labelled_subset` of the training clips (``balanced`` per class, seeded by ``config.seed``):
    the semi-supervised protocol. ``num_classes`` defaults to the training split's. ``run``
    (:class:`~usdrl.engine.RunOptions`): device (default: where the model is), precision, run folder
    (checkpoints, and the finetuned model's save_pretrained files at the end), resume. Returns best and
    last top-1/top-5 as :class:`ProbeResult`; the model is left on the run's device in eval mode. The new
    head's ``class_names`` (stored in the model's config) default to those in the manifest of the
    training split.

    Under torchrun (``torchrun --nproc_per_node=N``) ``config.batch_size`` stays the global batch: each
    process trains on its share of every batch, DDP averages the gradients and the loss is scaled so
    that the step is one process's on the whole batch (:meth:`~usdrl.engine.TrainingRun.global_mean`);
    each process evaluates a share of the test clips. Only rank 0 writes the run folder (the
    checkpoints and the finetuned model's files).
    """
    config = config or FinetuneConfig()
    model = as_model(model)
    if isinstance(data, (tuple, list)):
        train, test = (open_split(part, model=model, head=False) for part in split_pair(data, ("", "")))
    else:
        train = SkeletonDataset.for_model(data, train_split, model, head=False, sampling="random_crop",
                                          seed=config.seed)
        test = SkeletonDataset.for_model(data, test_split, model, head=False)
    num_classes = classes_of(train, num_classes)
    if fraction != 1:
        labels = getattr(train, "labels", None)
        if labels is None:
            raise ConfigError(f"fraction < 1 needs the training labels: a {type(train).__name__} has no .labels; "
                              "pass a labelled_subset of it instead", keywords=("fraction",))
        train = torch.utils.data.Subset(train, labelled_subset(labels, fraction, balanced=balanced,
                                                               seed=config.seed).tolist())
    result = _finetune(model, train, test, num_classes=num_classes, config=config, num_workers=num_workers,
                       class_names=class_names, run=run or RunOptions())
    save_trained(model, run or RunOptions(), train, "finetuning")
    return dataclasses.replace(result, class_names=model.config.class_names)


def _finetune(model: USDRL, train, test, *, num_classes: int, config: FinetuneConfig, num_workers: int,
              class_names: list[str] | None, run: RunOptions) -> ProbeResult:
    """The training loop of :func:`finetune` on two datasets."""
    config = config or FinetuneConfig()
    engine = TrainingRun(run or RunOptions(), config=config_dict(config),
                         facts={"num_clips": len(train), "num_classes": num_classes},
                         resumable_changes=("eval_every",), default_device=next(model.parameters()).device,
                         distributed=True)
    torch.manual_seed(config.seed)
    model.reset_classifier(num_classes, class_names or head_class_names(train, num_classes))
    engine.place(model)
    train_loader = engine.loader(train, batch_size=config.batch_size, seed=config.seed, num_workers=num_workers)
    test_loader = torch.utils.data.DataLoader(engine.share(test), batch_size=config.batch_size,
                                              num_workers=num_workers)
    optimizer, schedule = make_optimizer(model, config, len(train_loader))
    criterion = nn.CrossEntropyLoss(label_smoothing=config.label_smoothing, reduction="sum")
    k5 = min(5, num_classes)
    if engine.resumed_state is None:  # (a resumed run restores each process's own generators)
        engine.seed_process(config.seed)
    history = engine.resume(model=model, optimizer=optimizer, scheduler=schedule).get("history", [])
    # a frame-wise head the clip loss does not reach keeps no gradient, as in one process
    network = engine.wrap(model, find_unused_parameters=model.frame_head is not None,
                          broadcast_buffers=False)  # its buffers are constants

    def evaluate() -> tuple[torch.Tensor, torch.Tensor]:
        scores, labels = _evaluate(model, test_loader, engine)
        return engine.gather(scores, len(test)), engine.gather(labels, len(test))

    evaluated = None
    with engine, engine.progress((config.epochs - engine.epoch) * len(train_loader), unit="step") as bar:
        while engine.epoch < config.epochs:
            model.train()
            engine.set_epoch(train_loader, engine.epoch)
            for batch in train_loader:
                clips, labels = engine.to_device(batch)
                lr = optimizer.param_groups[-1]["lr"]
                with engine.autocast():
                    logits = network(clips).float()
                loss = engine.global_mean(criterion(logits, labels.long()), len(labels))
                engine.backward_step(loss, optimizer)
                engine.advance(schedule)
                loss_value = engine.global_value(loss)
                engine.log({"lr": lr, "loss": loss_value})
                bar.update()
            epoch = engine.epoch + 1
            if epoch % config.eval_every == 0 or epoch == config.epochs:
                evaluated = evaluate()
                accuracy = topk_accuracy(*evaluated, k=(1, k5))
                history.append((epoch, accuracy["top1"], accuracy[f"top{k5}"]))
                engine.log({"top1": accuracy["top1"], f"top{k5}": accuracy[f"top{k5}"]})
                logger.info("epoch %d: loss %.4f, test top-1 %.2f%%", epoch, loss_value, 100 * accuracy["top1"])
            engine.end_epoch(config.epochs, {"history": history})
    scores, labels = evaluated if evaluated is not None else evaluate()
    model.eval()
    return ProbeResult.from_history(history, confusion_matrix(scores.argmax(1), labels, num_classes),
                                    train_clips=len(train))


def labelled_subset(labels, fraction: float, *, balanced: bool = True, seed: int = 0) -> np.ndarray:
    """Indices of a labelled subset of ``fraction`` of the samples (the semi-supervised protocol).

    ``balanced=True`` takes ``max(1, round(n_c * fraction))`` samples of every class ``c``;
    ``balanced=False`` reproduces the reference: shuffle all indices (seed 0 in the reference)
    and keep the first ``floor(N * fraction)``. Returns sorted indices.
    """
    labels = np.asarray(labels)
    if not 0 < fraction <= 1:
        raise ConfigError(f"fraction must be in (0, 1], got {fraction}", keywords=("fraction",))
    rng = np.random.default_rng(seed)
    if not balanced:
        return np.sort(rng.permutation(len(labels))[: int(len(labels) * fraction)])
    chosen = [rng.permutation(np.flatnonzero(labels == c))[: max(1, round(np.sum(labels == c) * fraction))]
              for c in np.unique(labels)]
    return np.sort(np.concatenate(chosen))


def ensemble_scores(*scores: torch.Tensor) -> torch.Tensor:
    """Score-level ensemble (the "3s" of joint, motion and bone models): the sum of softmax scores.

    Each input is ``(N, K)`` logits of one model on the same clips; returns ``(N, K)``.
    """
    if not scores or any(s.shape != scores[0].shape or s.ndim != 2 for s in scores):
        raise InputError(f"expected logits (N, K) of one shape, got {[tuple(s.shape) for s in scores]}")
    return torch.stack([s.softmax(dim=-1) for s in scores]).sum(0)


@dataclass
class EnsembleResult:
    """Top-1 accuracy of each model of an ensemble alone (keyed ``"<name> (<modality>)"``) and of the
    ensemble (key ``"ensemble"``), on ``clips`` clips (``usdrl ensemble``)."""

    top1: dict[str, float]
    clips: int

    def to_json(self) -> dict:
        """The figures as one JSON object (what ``usdrl ensemble --json`` prints)."""
        return {"top1": dict(self.top1), "clips": self.clips}


def ensemble_evaluation(models, data, *, split: str = "test", batch_size: int = 64,
                        num_workers: int = 0) -> EnsembleResult:
    """Score-level ensemble of models with clip heads for the same classes (e.g. the joint, bone and
    motion models of the "3s" figures): each model alone, then the sum of their softmax scores
    (:func:`ensemble_scores`).

    ``models``: :class:`~usdrl.model.USDRL` models or their folders, registered names or Hub repos.
    ``data``: a prepared dataset folder (its split ``split``), a split folder or ``(folder, split)``;
    each model reads it at its own frames, checked against its config head included.
    """
    names = [str(model) if isinstance(model, (str, PathLike)) else f"model {i}" for i, model in enumerate(models)]
    if not names:
        raise InputError("an ensemble needs at least one model")
    scores, figures, labels = [], {}, None
    for name, model in zip(names, models, strict=True):
        model = as_model(model)
        dataset = open_split(data, split, model=model)
        logits, labels = predict_dataset(model, dataset, batch_size=batch_size, num_workers=num_workers)
        if scores and logits.shape != scores[0].shape:
            raise ConfigError(f"{name} gives {logits.shape[1]} classes, {names[0]} {scores[0].shape[1]}: "
                              "the models of an ensemble share one head size")
        scores.append(logits)
        figures[f"{name} ({model.config.modality})"] = topk_accuracy(logits, labels, k=(1,))["top1"]
    figures["ensemble"] = topk_accuracy(ensemble_scores(*scores), labels, k=(1,))["top1"]
    return EnsembleResult(top1=figures, clips=len(labels))
