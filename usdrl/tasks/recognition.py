"""Action recognition by linear evaluation: a linear classifier on a frozen encoder (spec §6.2).

The encoder runs in ``eval()`` mode (no drop path: the AAAI release's behaviour; the
TPAMI script's ``train()`` mode made frozen features stochastic). The protocol of the
reference: SGD with momentum 0.9 and no weight decay, batch 512, 160 epochs with the
learning rate times 0.1 at epochs 120 and 140, cross-entropy, the head initialised
N(0, 0.01). The test split is evaluated every 5 epochs; the reference reports the
**best** of those evaluations (model selection on the test set), so both the best and
the last accuracy are returned.

The reference schedule assumes a large training set (NTU-60 x-sub: about 80 steps of 512
clips per epoch). On a small one it gives a few hundred steps in all, and a head on features
of small spread hardly moves (measured: 8% top-1 where kNN on the same features gives 63%).
So below :data:`SMALL_DATASET` training samples the defaults change: batches of a tenth of
the training set and standardised features (see :meth:`ProbeConfig.resolve`); giving
``batch_size`` and ``standardize`` explicitly always wins.

With deterministic clip sampling (the reference's: whole sequences, or a fixed centre
crop) the frozen features of every clip are the same at every epoch, so they are
computed once and the head trains on them. The reference trains PKU-MMD II's probe on
the fixed central 50% of every training clip and tests on whole clips
(:func:`probe_datasets` with ``train_crop=0.5``).
"""

import dataclasses
import logging
import math
from dataclasses import dataclass, field, replace
from os import PathLike

import numpy as np
import torch
import torch.utils.data
from torch import nn

from ..data.prepared import SkeletonDataset, head_class_names, open_split
from ..engine import (
    RunOptions,
    TrainingRun,
    build_optimizer,
    config_dict,
    gather_shares,
    is_main_process,
    process_share,
    setup_distributed,
    step_schedule,
)
from ..errors import ConfigError, InputError
from ..model import USDRL
from .metrics import confusion_matrix, topk_accuracy

logger = logging.getLogger(__name__)

#: The reference protocol's batch size.
REFERENCE_BATCH_SIZE = 512
#: Steps per epoch the small-dataset defaults keep (a batch of a tenth of the training set).
MIN_STEPS_PER_EPOCH = 10
#: Training sets smaller than this get the small-dataset defaults (fewer than 10 reference batches).
SMALL_DATASET = MIN_STEPS_PER_EPOCH * REFERENCE_BATCH_SIZE


@dataclass
class ProbeConfig:
    """Linear-evaluation settings (the reference's by default; its learning rate for NTU-60 x-sub).

    ``lr`` per protocol in the reference: 0.006 for NTU-60 x-sub and NTU-120, 0.03 for
    NTU-60 x-view, 0.01 for PKU-MMD II. ``standardize`` (not in the reference) scales every
    feature dimension to zero mean and unit variance over the training set first, which
    helps features of small or very different scales (e.g. a young or randomly initialised
    encoder's). ``batch_size`` and ``standardize`` left at ``None`` follow the training set's
    size (:meth:`resolve`): the reference's 512 and no standardisation from
    :data:`SMALL_DATASET` samples on, a tenth of the set and standardisation below.
    """

    lr: float = 0.006
    epochs: int = 160
    lr_milestones: list[int] = field(default_factory=lambda: [120, 140])
    lr_gamma: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 0.0
    batch_size: int | None = None
    eval_every: int = 5
    seed: int = 0
    standardize: bool | None = None

    def __post_init__(self):
        for name in ("epochs", "batch_size", "eval_every"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}", keywords=(name,))

    def resolve(self, num_train: int) -> "ProbeConfig":
        """This config with ``batch_size`` and ``standardize`` chosen for ``num_train`` training samples
        where they are ``None``: the reference's (512, no standardisation) from :data:`SMALL_DATASET`
        on; below, ``ceil(num_train / 10)`` and standardised features, so that the schedule takes ten
        steps per epoch on features of unit scale."""
        small = num_train < SMALL_DATASET
        resolved = replace(self, batch_size=self.batch_size or (math.ceil(num_train / MIN_STEPS_PER_EPOCH) if small
                                                                 else REFERENCE_BATCH_SIZE),
                           standardize=small if self.standardize is None else self.standardize)
        if small and (self.batch_size, self.standardize) != (resolved.batch_size, resolved.standardize):
            logger.info("%d training samples (< %d): batch size %d%s instead of the reference's 512 (pass "
                        "batch_size=512, standardize=False for the reference protocol)", num_train, SMALL_DATASET,
                        resolved.batch_size, ", standardised features" if resolved.standardize else "")
        return resolved


@dataclass
class ProbeResult:
    """What a linear evaluation (or a finetuning) measured.

    Attributes:
        best_top1, best_top5, best_epoch: the best test evaluation (the reference's figure).
        last_top1, last_top5: the test accuracy after the last epoch.
        history: ``[(epoch, top1, top5)]`` of every evaluation (epochs counted from 1).
        confusion: ``(K, K)`` confusion matrix of the last epoch (rows: true class).
        train_clips: training samples the head saw (None when not known).
        class_names: names of the head's classes (None when it has none), for :meth:`write_confusion`.
    """

    best_top1: float
    best_top5: float
    best_epoch: int
    last_top1: float
    last_top5: float
    history: list[tuple[int, float, float]]
    confusion: np.ndarray
    train_clips: int | None = None
    class_names: list[str] | None = None

    @classmethod
    def from_history(cls, history: list[tuple[int, float, float]], confusion: np.ndarray,
                     train_clips: int | None = None) -> "ProbeResult":
        """The result of evaluations ``[(epoch, top1, top5)]`` (the last one is the final model)."""
        best = max(history, key=lambda row: row[1])
        return cls(best_top1=best[1], best_top5=best[2], best_epoch=best[0], last_top1=history[-1][1],
                   last_top5=history[-1][2], history=history, confusion=confusion, train_clips=train_clips)

    def to_json(self) -> dict:
        """Every figure, as JSON values (what ``usdrl linear-probe --json`` and ``usdrl finetune --json``
        print): ``history`` as ``[[epoch, top1, top5], ...]``; not the confusion matrix and class names."""
        summary = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                   if f.name not in ("confusion", "class_names")}
        summary["history"] = [list(row) for row in self.history]
        return summary

    def write_confusion(self, path) -> None:
        """Write :attr:`confusion` ``(K, K)`` as CSV (atomically): a header of predicted classes, one row
        per true class, named by :attr:`class_names` (default: the class indices)."""
        from .._io import atomic_write_text

        names = self.class_names or [str(k) for k in range(len(self.confusion))]
        if len(names) != len(self.confusion):
            raise InputError(f"expected {len(self.confusion)} class names for the confusion matrix, got {len(names)}")
        rows = ["true \\ predicted," + ",".join(names)]
        rows += [f"{name}," + ",".join(str(int(v)) for v in row)
                 for name, row in zip(names, self.confusion, strict=True)]
        atomic_write_text(path, "\n".join(rows) + "\n")


def _evaluate(head: nn.Linear, features: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    with torch.no_grad():
        return topk_accuracy(head(features), labels, k=(1, min(5, head.out_features)))


def train_linear_head(train_features: torch.Tensor, train_labels: torch.Tensor, test_features: torch.Tensor,
                      test_labels: torch.Tensor, num_classes: int, config: ProbeConfig | None = None, *,
                      run: RunOptions | None = None) -> tuple[nn.Linear, ProbeResult]:
    """Train a linear head on fixed features ``(N, D)`` with labels ``(N,)``; returns ``(head, result)``.

    ``config``'s ``None`` fields are resolved for ``N`` training samples (:meth:`ProbeConfig.resolve`).
    The returned head takes the raw features (a standardisation is folded into it). ``run``
    (:class:`~usdrl.engine.RunOptions`): device (default: the features'), precision, run folder,
    checkpoints and resume. The batches of epoch ``e`` come in an order derived from ``(seed, e)``.

    Under torchrun every process holds all the features; each takes its share of every batch of
    ``batch_size`` and DDP averages the gradients, so the head is the one process's (to rounding)."""
    config = (config or ProbeConfig()).resolve(len(train_features))
    if train_features.ndim != 2 or test_features.ndim != 2 or train_features.shape[1] != test_features.shape[1]:
        raise InputError(f"expected train and test features (N, D) of one width, got {tuple(train_features.shape)} "
                         f"and {tuple(test_features.shape)}")
    for name, labels, features in (("train", train_labels, train_features), ("test", test_labels, test_features)):
        if labels.shape != (len(features),) or labels.min() < 0 or labels.max() >= num_classes:
            raise InputError(f"{name} labels must be (N,) = ({len(features)},) in 0..{num_classes - 1}")
    engine = TrainingRun(run or RunOptions(), config=config_dict(config),
                         facts={"num_clips": len(train_features), "num_classes": num_classes},
                         resumable_changes=("epochs", "eval_every"), default_device=train_features.device,
                         distributed=True)
    train_features, train_labels, test_features, test_labels = engine.to_device(
        (train_features.float(), train_labels.long(), test_features.float(), test_labels.long()))
    if config.standardize:
        mean, std = train_features.mean(0), train_features.std(0) + 1e-6
        train_features, test_features = (train_features - mean) / std, (test_features - mean) / std
    head = nn.Linear(train_features.shape[1], num_classes)
    nn.init.normal_(head.weight, std=0.01, generator=torch.Generator().manual_seed(config.seed))
    nn.init.zeros_(head.bias)
    engine.place(head)
    optimizer = build_optimizer(head.parameters(), "sgd", lr=config.lr, momentum=config.momentum,
                                weight_decay=config.weight_decay)
    schedule = step_schedule(optimizer, config.lr_milestones, config.lr_gamma)  # per epoch
    top5_k = min(5, num_classes)
    history = engine.resume(head=head, optimizer=optimizer, scheduler=schedule).get("history", [])
    network = engine.wrap(head)
    batches = engine.batches(len(train_features), batch_size=config.batch_size, seed=config.seed)
    with engine, engine.progress(config.epochs - engine.epoch, unit="epoch") as bar:
        while engine.epoch < config.epochs:
            engine.set_epoch(batches, engine.epoch)
            lr = optimizer.param_groups[0]["lr"]
            for batch in batches:
                batch = engine.to_device(torch.tensor(batch, dtype=torch.long))
                with engine.autocast():
                    logits = network(train_features[batch]).float()
                loss = engine.global_mean(nn.functional.cross_entropy(logits, train_labels[batch], reduction="sum"),
                                          len(batch))
                engine.backward_step(loss, optimizer)
            engine.advance(schedule)
            epoch = engine.epoch + 1
            engine.log({"lr": lr, "loss": engine.global_value(loss)})
            if epoch % config.eval_every == 0 or epoch == config.epochs:
                scores = _evaluate(head, test_features, test_labels)
                history.append((epoch, scores["top1"], scores[f"top{top5_k}"]))
                engine.log({"top1": scores["top1"], f"top{top5_k}": scores[f"top{top5_k}"]})
                logger.info("epoch %d: top-1 %.2f%%", epoch, 100 * scores["top1"])
            engine.end_epoch(config.epochs, {"history": history})
            bar.update()
    with torch.no_grad():
        predictions = head(test_features).argmax(1)
        if config.standardize:  # fold the standardisation into the head: it then takes raw features
            head.bias -= head.weight @ (mean / std)
            head.weight /= std
    return head, ProbeResult.from_history(history, confusion_matrix(predictions.cpu(), test_labels.cpu(),
                                                                    num_classes))


def encode_dataset(model: USDRL, dataset, *, batch_size: int = 64, num_workers: int = 0,
                   device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Global features ``(N, 2H)`` and labels ``(N,)`` of a dataset of ``(clip, label)`` items
    (e.g. a :class:`~usdrl.data.SkeletonDataset`), read batch by batch."""
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, num_workers=num_workers)
    features, labels = [], []
    for clips, batch_labels in loader:
        features.append(model.encode(clips, batch_size=batch_size, device=device, show_progress_bar=False))
        labels.append(torch.as_tensor(batch_labels).long())
    if not features:
        raise InputError("the dataset to encode is empty")
    return torch.cat(features), torch.cat(labels)


def as_model(model) -> USDRL:
    """``model`` itself, or the model a folder, registered name or Hub repo names
    (:meth:`~usdrl.model.USDRL.from_pretrained`): what every task's ``model`` argument takes."""
    if isinstance(model, USDRL):
        return model
    if isinstance(model, (str, PathLike)):
        return USDRL.from_pretrained(model)
    raise InputError(f"expected a USDRL model or the folder, registered name or Hub repo of one, got "
                     f"{type(model).__name__}")


def split_pair(data, names: tuple[str, str]) -> tuple:
    """The two parts of a two-split task's ``data``: a prepared dataset folder gives ``(folder, names[0])``
    and ``(folder, names[1])``; a pair ``(a, b)`` of datasets or split folders gives ``(a, b)``."""
    if isinstance(data, (tuple, list)):
        if len(data) != 2:
            raise InputError(f"expected data as a prepared dataset folder or a pair ({names[0]}, {names[1]}), got "
                             f"{len(data)} items")
        return tuple(data)
    return (data, names[0]), (data, names[1])


def classes_of(dataset, num_classes: int | None) -> int:
    """``num_classes``, else the classes of ``dataset``'s labels (a :class:`~usdrl.data.SkeletonDataset`
    or a ``Subset`` of one)."""
    if num_classes is not None:
        return num_classes
    while isinstance(dataset, torch.utils.data.Subset):
        dataset = dataset.dataset
    if not hasattr(dataset, "num_classes"):
        raise ConfigError(f"give num_classes: a {type(dataset).__name__} does not say how many classes it has",
                          keywords=("num_classes",))
    return int(dataset.num_classes)


def save_trained(model: USDRL, run: RunOptions, dataset, protocol: str) -> None:
    """Name the protocol that trained ``model``'s head in its config (``"<protocol> on <source>
    <benchmark>"`` when ``dataset`` is a prepared split or a ``Subset`` of one) and, with a run folder,
    save the model there (:meth:`~usdrl.model.USDRL.save_pretrained` files next to the checkpoints); under
    torchrun only rank 0 writes."""
    while isinstance(dataset, torch.utils.data.Subset):
        dataset = dataset.dataset
    manifest = getattr(dataset, "manifest", None)
    if manifest is not None:
        model.config = model.config.replace(protocol=f"{protocol} on {manifest['source']} {manifest['benchmark']}")
    if run.run_dir is not None and is_main_process():  # under torchrun rank 0 alone writes
        model.save_pretrained(run.run_dir)


def _encode_split(model: USDRL, dataset, *, batch_size: int, num_workers: int) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`encode_dataset` of the whole ``dataset``; under torchrun each process encodes its share and
    every process gets all the features ``(N, 2H)`` and labels ``(N,)``, in the dataset's order."""
    share = process_share(dataset)
    if share is dataset:
        return encode_dataset(model, dataset, batch_size=batch_size, num_workers=num_workers)
    if len(dataset) < torch.distributed.get_world_size():
        raise InputError(f"{len(dataset)} clips are fewer than the {torch.distributed.get_world_size()} processes")
    features, labels = encode_dataset(model, share, batch_size=batch_size, num_workers=num_workers)
    return gather_shares(features, len(dataset)), gather_shares(labels, len(dataset))


def linear_probe(model: USDRL | str | PathLike, data, *, config: ProbeConfig | None = None,
                 num_classes: int | None = None, train_split: str = "train", test_split: str = "test",
                 train_crop: float | None = None, batch_size: int = 64, num_workers: int = 0,
                 class_names: list[str] | None = None, run: RunOptions | None = None) -> ProbeResult:
    """Linear evaluation of ``model``'s frozen global features (``usdrl linear-probe``); the trained head
    becomes ``model.head`` and the model is left in eval mode.

    Args:
        model: the encoder (its weights are not changed; its head is replaced), or its folder,
            registered name or Hub repo.
        data: a prepared dataset folder (its ``train_split`` and ``test_split``, every clip resampled
            whole to the model's frames, see :func:`probe_datasets`), or a pair ``(train, test)`` of
            datasets of ``(clip (C, T, V, M), label)`` items with deterministic sampling (their
            features are computed once) or split folders.
        config: the protocol (:class:`ProbeConfig`).
        num_classes: classes of the head (default: the training split's).
        train_split: the training split of a dataset folder.
        test_split: the evaluated split of a dataset folder.
        train_crop: the fixed central fraction of every training clip kept (default: whole clips;
            :func:`probe_datasets`).
        batch_size: clips per forward pass when computing features.
        num_workers: data-loading processes.
        class_names: stored in the model's config with the head (default: the class names in the
            manifest of the training split, :func:`~usdrl.data.prepared.head_class_names`).
        run: :class:`~usdrl.engine.RunOptions`: the device the features are computed and the head
            trained on (default: where the model is; the model is moved there), precision, run
            folder (checkpoints of the head's training, and the probed model's save_pretrained
            files at the end), resume.

    Under torchrun each process encodes its share of the clips, every process gets all the features,
    and the head trains with DDP on shares of each batch (see :func:`train_linear_head`); only rank 0
    writes the run folder.
    """
    model = as_model(model)
    run = run or RunOptions()
    if isinstance(data, (tuple, list)):
        if train_crop is not None:
            raise ConfigError("train_crop crops the training split of a prepared dataset folder; with a pair "
                              "(train, test) crop your training dataset itself (sampling='center_crop')",
                              keywords=("train_crop",))
        train, test = (open_split(part, model=model, head=False) for part in split_pair(data, ("", "")))
    else:
        train, test = probe_datasets(data, model=model, train_split=train_split, test_split=test_split,
                                     train_crop=train_crop)
    num_classes = classes_of(train, num_classes)
    _, _, device = setup_distributed(run.device if run.device is not None else next(model.parameters()).device)
    model.to(device)
    train_features, train_labels = _encode_split(model, train, batch_size=batch_size, num_workers=num_workers)
    test_features, test_labels = _encode_split(model, test, batch_size=batch_size, num_workers=num_workers)
    head, result = train_linear_head(train_features, train_labels, test_features, test_labels, num_classes, config,
                                     run=dataclasses.replace(run, device=str(device)))
    model.reset_classifier(num_classes, class_names or head_class_names(train, num_classes))
    model.head.load_state_dict(head.state_dict())
    model.eval()  # ready to predict, as after finetune()
    save_trained(model, run, train, "linear probe")
    return dataclasses.replace(result, train_clips=len(train), class_names=model.config.class_names)


def probe_datasets(data, *, num_frames: int | None = None, model=None, train_split: str = "train",
                   test_split: str = "test",
                   train_crop: float | None = None) -> tuple[SkeletonDataset, SkeletonDataset]:
    """The train and test datasets of a linear evaluation on a prepared dataset folder ``data``.

    Every clip is resampled whole to ``num_frames`` (or, given ``model``, to the model's frames, both
    splits checked against its config, :meth:`~usdrl.data.SkeletonDataset.for_model`), except that with
    ``train_crop`` the training clips keep only their fixed central ``train_crop`` fraction (frames
    ``[b, n - b)``, ``b = floor((1 - train_crop) * n / 2)``), as the reference's PKU-MMD II probe does
    with 0.5.
    """
    if (num_frames is None) == (model is None):
        raise ConfigError("give probe_datasets either num_frames or model")
    crop = {} if train_crop is None else {"sampling": "center_crop", "ratio": train_crop}
    if model is not None:
        return (SkeletonDataset.for_model(data, train_split, model, head=False, **crop),
                SkeletonDataset.for_model(data, test_split, model, head=False))
    return (SkeletonDataset(data, train_split, num_frames=num_frames, **crop),
            SkeletonDataset(data, test_split, num_frames=num_frames))
