"""Self-supervised pretraining of USDRL: MG-FD losses over MPCT views, from one CPU to many GPUs.

:class:`Pretrainer` runs the loop: every step draws ``num_views`` augmented views of a
batch, encodes them in one pass, projects the pooled features of each domain (temporal,
spatial, instance) and minimises the MG-FD loss. It stands on the training engine
(:mod:`usdrl.engine`): it checkpoints atomically with checksums, resumes from the newest intact
checkpoint with the same losses as an uninterrupted run, logs metrics to ``metrics.jsonl``, stops
on a collapsing loss (:class:`~usdrl.errors.TrainingDivergedError`), and runs under ``torchrun``
with DistributedDataParallel.

Randomness is derived, not carried: the sample order of an epoch comes from
``(seed, epoch)`` and every draw inside a step (augmentations, drop path) from
``(seed, step, rank)``. A resumed run therefore needs only the weights, the optimiser
state and the step counter to replay exactly what the uninterrupted run would have done.
"""

import dataclasses
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path

import numpy as np
import torch
from einops import rearrange
from torch import nn

from ..config import USDRLConfig
from ..convert import save_projectors
from ..engine import (
    PRECISIONS,
    RunOptions,
    TrainingRun,
    build_optimizer,
    derived_seed,
    latest_checkpoint,
    step_schedule,
)
from ..errors import ConfigError, DataFormatError, InputError, TrainingDivergedError
from ..model import USDRL
from ..universal import UNIVERSAL
from .augment import AugmentConfig, make_views
from .losses import LossConfig, MGFDLoss
from .projectors import Projectors
from .universal_views import universal_views

logger = logging.getLogger(__name__)

__all__ = ["MULTIMODAL_VIEWS", "PretrainConfig", "Pretrainer", "PretrainingModel", "TrainingDivergedError",
           "latest_checkpoint"]

#: Views of the multi-modal MPCT model: three uni-modal views around one fused anchor.
MULTIMODAL_VIEWS = ("joint", "bone", "motion", "fused")
#: Settings a resumed run may change without changing what it computes (the rest must match the checkpoint's).
RESUMABLE_CHANGES = ("epochs", "save_every", "log_every", "max_loss", "grad_checkpointing")


@dataclass
class PretrainConfig:
    """Everything about a pretraining run except the model (JSON-native).

    The defaults are this library's own choice (the AAAI schedule and optimiser at batch 256,
    fp32, without the cross-correlation term); the reference releases' runs are named recipes
    (:mod:`usdrl.train.recipes`, ``usdrl pretrain --recipe``) that set every value.

    Attributes:
        epochs: epochs to train.
        batch_size: clips per step over all processes (divided evenly between them); under DDP
            the MG-FD loss is computed on the whole (gathered) batch.
        lr, weight_decay: Adam settings.
        lr_milestones, lr_gamma: the learning rate is multiplied by ``lr_gamma`` at each
            milestone epoch.
        num_views: augmented views per clip (MPCT; the last one is the anchor).
        precision: ``fp32``, ``bf16`` (autocast), ``fp16`` (autocast with loss scaling, the
            releases' CUDA AMP) or ``auto`` (:func:`usdrl.engine.resolve_precision`); the loss
            itself is computed in float32.
        grad_checkpointing: recompute layer activations in the backward pass.
        grad_clip: clip the gradient norm to this value (``None``: no clipping).
        max_loss: the collapse guard stops a run whose loss exceeds this (or is not finite).
        save_every: checkpoint every this many epochs (and always after the last).
        log_every: write a metrics line every this many steps.
        seed: seeds the sample order, the augmentations and the initial weights.
        sync_batchnorm: under DDP, the projectors' batch norms use the statistics of the global
            batch (``False``: each process's own slice, as the releases' ``DataParallel`` replicas).
    """

    epochs: int = 451
    batch_size: int = 256
    lr: float = 5e-4
    weight_decay: float = 1e-5
    lr_milestones: list[int] = field(default_factory=lambda: [351])
    lr_gamma: float = 0.1
    num_views: int = 4
    precision: str = "fp32"
    grad_checkpointing: bool = False
    grad_clip: float | None = None
    max_loss: float = 1e4
    save_every: int = 50
    log_every: int = 1
    seed: int = 0
    sync_batchnorm: bool = False
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    loss: LossConfig = field(default_factory=LossConfig)

    def __post_init__(self):
        if isinstance(self.augment, dict):
            self.augment = AugmentConfig(**self.augment)
        if isinstance(self.loss, dict):
            self.loss = LossConfig(**self.loss)
        if self.precision not in PRECISIONS:
            raise ConfigError(f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        for name in ("epochs", "batch_size", "num_views", "save_every", "log_every"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}", keywords=(name,))
        if self.num_views < 2:
            raise ConfigError("MPCT needs at least 2 views (num_views >= 2)")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "PretrainConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown pretraining config keys {unknown}; known keys: {sorted(known)}")
        return cls(**data)

    def learning_rate(self, epoch: int) -> float:
        """The step schedule: ``lr * lr_gamma ** (milestones passed by epoch)``."""
        return self.lr * self.lr_gamma ** sum(epoch >= m for m in self.lr_milestones)


class PretrainingModel(nn.Module):
    """The encoder and its three projectors: views ``(K, N, C, T, V, M)`` to embeddings.

    Returns ``{"temporal": (K, N, 2H), "spatial": (K, N, 2H), "instance": (K, N, 4H)}``.
    A single-modality model encodes all views in one pass; a multi-modal model encodes
    view ``k`` through :data:`MULTIMODAL_VIEWS` ``[k]`` (the anchor is the fused view).
    """

    def __init__(self, model: USDRL, *, sync_batchnorm: bool = False):
        super().__init__()
        self.model = model
        self.projectors = Projectors(model.config.hidden_size, sync_batchnorm=sync_batchnorm)

    def forward(self, views: torch.Tensor) -> dict[str, torch.Tensor]:
        num_views, model = views.shape[0], self.model
        if model.config.modality == "multi":
            names = MULTIMODAL_VIEWS[: num_views - 1] + ("fused",)
            pooled = torch.stack([model.forward_head(model.forward_features(v, name), pre_logits=True)
                                  for v, name in zip(views, names, strict=True)])
        else:
            features = model.forward_features(rearrange(views, "k n c t v m -> (k n) c t v m"))
            pooled = rearrange(model.forward_head(features, pre_logits=True), "(k n) d -> k n d", k=num_views)
        y_t, y_s = pooled.chunk(2, dim=-1)  # the pooled temporal and spatial halves (K, N, H)
        return self.projectors(y_t, y_s)


class Pretrainer:
    """Pretrain a USDRL encoder on unlabelled clips (on the training engine, :mod:`usdrl.engine`).

    Args:
        model_config: the encoder to build (ignored when resuming: the checkpoint's is used).
        config: the run settings.
        data: clips ``(N, C, Tmax, V, M)`` (a numpy memmap is read batch by batch).
        lengths: valid frames per clip ``(N,)``.
        run_dir: where checkpoints, ``metrics.jsonl`` and the final ``model/`` go.
        resume: continue from the newest intact checkpoint in ``run_dir`` (damaged newer ones are
            skipped with a warning). Its settings must equal ``config`` except for
            :data:`RESUMABLE_CHANGES`, the number of clips and of processes too (a changed value
            changes the trajectory), else ConfigError lists the differences.
        allow_changed_config: resume even when those settings differ (logged as a warning).
        metadata: config metadata for the saved model (``dataset``, ``protocol``, ...).
        device: ``auto`` (default), ``cpu``, ``cuda``, ``cuda:N`` or ``mps``; under torchrun each
            process takes its own GPU.
    """

    def __init__(self, model_config: USDRLConfig, config: PretrainConfig, data, lengths, run_dir,
                 *, resume: bool = False, allow_changed_config: bool = False, metadata: dict | None = None,
                 show_progress_bar: bool | None = None, device: str | None = "auto"):
        self.config = config
        self.data, self.lengths = data, np.asarray(lengths)
        self.run_dir = Path(run_dir)
        options = RunOptions(run_dir=run_dir, device=device, save_every=config.save_every, resume=resume,
                             allow_changed_config=allow_changed_config, show_progress_bar=show_progress_bar)
        self.run = TrainingRun(options, config=self._run_settings(), facts={"num_clips": len(self.data)},
                               resumable_changes=RESUMABLE_CHANGES, precision=config.precision,
                               max_loss=config.max_loss, distributed=True)
        self.rank, self.world, self.device = self.run.rank, self.run.world, self.run.device
        checkpoint = self.run.resumed_state
        if checkpoint is not None:
            model_config = USDRLConfig.from_dict(checkpoint["model_config"])
        model_config = model_config.replace(**(metadata or {}))
        self._check_data(model_config)
        if config.batch_size % self.world:
            raise ConfigError(f"batch_size {config.batch_size} is not divisible by {self.world} processes",
                              keywords=("batch_size",))
        self.steps_per_epoch = len(self.data) // config.batch_size
        if self.steps_per_epoch == 0:
            raise InputError(f"{len(self.data)} clips are fewer than one batch of {config.batch_size}: use a "
                             f"batch_size of at most {len(self.data)}", keywords=("batch_size",))

        torch.manual_seed(config.seed)
        encoder = self._new_encoder(model_config)
        encoder.set_grad_checkpointing(config.grad_checkpointing)
        self.module = self.run.place(PretrainingModel(encoder, sync_batchnorm=config.sync_batchnorm))
        self.optimizer = build_optimizer(self.module.parameters(), "adam", lr=config.lr,
                                         weight_decay=config.weight_decay)
        self.schedule = step_schedule(self.optimizer, config.lr_milestones, config.lr_gamma)  # per epoch
        self.criterion = MGFDLoss(config.loss, global_batch=True)
        self.run.resume(model=self.module, optimizer=self.optimizer, scheduler=self.schedule)
        self.network = self.run.wrap(self.module)

    def _new_encoder(self, model_config: USDRLConfig) -> USDRL:
        """The encoder to pretrain (built once the seed is set; a subclass may build a variant)."""
        return USDRL(model_config)

    @classmethod
    def from_prepared(cls, data, run_dir, *, recipe: str | None = None, preset: str | None = None,
                      settings=None, modality: str | None = None, overrides: Mapping | None = None,
                      universal: bool | None = None, resume: bool = False, allow_changed_config: bool = False,
                      show_progress_bar: bool | None = None, device: str | None = "auto") -> "Pretrainer":
        """The pretraining run of ``usdrl pretrain``, on the clips of one or several prepared datasets.

        Args:
            data: a prepared dataset folder (its ``train`` split is used) or one split folder
                (:func:`~usdrl.data.prepared.resolve_split`), or a list of them, read as one
                (:class:`~usdrl.data.prepared.MixedDataset`; a list of one is that one); their labels are
                not used.
            run_dir: where checkpoints, ``metrics.jsonl`` and the final ``model/`` go.
            recipe: a reference release's run (:data:`usdrl.train.recipes.RECIPES`): every value set.
            preset: encoder size (``base``, ``small``, ``tiny``; default: the recipe's, else ``base``).
            settings: a dict, or the path of a JSON file, with optional ``"model"``
                (:class:`~usdrl.config.USDRLConfig` fields) and ``"pretrain"`` (:class:`PretrainConfig`
                fields; ``augment`` and ``loss`` may be partial) sections.
            modality: input modality (``joint``, ``motion``, ``bone``, ``multi``).
            overrides: :class:`PretrainConfig` fields set last (``None`` values are skipped).
            universal: pretrain a universal model (``layout="universal"``, :mod:`usdrl.universal`) on the
                data of any keypoint format, 2D or 3D, read as universal input
                (:class:`~usdrl.data.prepared.UniversalDataset`) and augmented by
                :func:`usdrl.train.universal_views.universal_views`. Default (``None``): when
                ``settings["model"]`` names the universal layout or the datasets have different layouts.
            resume: as for :class:`Pretrainer`.
            allow_changed_config: as for :class:`Pretrainer`.
            show_progress_bar: as for :class:`Pretrainer`.
            device: as for :class:`Pretrainer`.

        The model config is built from, each overriding the one before: the data's layout, channels and
        persons (a universal model's layout and 6 channels), the recipe's encoder, ``preset``,
        ``settings["model"]`` and ``modality``; the run's settings from the recipe (or the library's
        defaults), ``settings["pretrain"]`` and ``overrides``. The saved model's metadata names the data's
        source and benchmark (for several datasets: ``dataset="mixed"`` and each one's in ``protocol``) and,
        for a universal model, the keypoint formats read.
        """
        import os

        from ..config import PRESETS
        from ..data.prepared import MixedDataset, SkeletonDataset, open_split, resolve_split
        from ..universal import IN_CHANNELS
        from .recipes import get_recipe, merge_settings

        parts = list(data) if isinstance(data, list) else [data]
        if not parts:
            raise ConfigError("data names no prepared dataset")
        source = parts[0] if len(parts) == 1 else parts   # what open_split reads: one dataset, or several mixed
        splits = [SkeletonDataset(*resolve_split(part, "train")) for part in parts]
        settings = _read_settings(settings)
        if universal is None:
            universal = (settings.get("model", {}).get("layout") == UNIVERSAL.name
                         or len({split.layout for split in splits}) > 1)
        manifest = splits[0].manifest
        chosen = get_recipe(recipe) if recipe else None
        size = PRESETS[preset] if preset else {} if chosen else PRESETS["base"]
        model = {"layout": manifest["layout"], "in_channels": manifest["num_channels"],
                 "num_persons": manifest["num_persons"], **(chosen.model if chosen else {}), **size,
                 **settings.get("model", {})}
        if universal:
            model.update(layout=UNIVERSAL.name, in_channels=IN_CHANNELS)
        if modality:
            model["modality"] = modality
        model_config = USDRLConfig.from_dict(model)
        if model_config.layout == UNIVERSAL.name:
            dataset = open_split(source, "train", model=model_config, head=False)
        else:
            dataset = splits[0] if len(splits) == 1 else MixedDataset(splits)
        manifest = dataset.manifest
        run = merge_settings(settings.get("pretrain", {}),
                             {k: v for k, v in (overrides or {}).items() if v is not None})
        if chosen:
            chosen.check_run(manifest["source"], int(os.environ.get("WORLD_SIZE", "1")),
                             run.get("sync_batchnorm", chosen.config.sync_batchnorm))
            config = chosen.pretrain_config(run)
        else:
            config = PretrainConfig.from_dict(run)
        about = "self-supervised MG-FD/MPCT pretraining with usdrl" + (f" (recipe {chosen.name})" if chosen else "")
        if model_config.layout == UNIVERSAL.name:
            read = getattr(dataset, "datasets", [dataset])
            about += " of a universal model on " + ", ".join(f"{d.format.name} ({d.dims}D)" for d in read)
        metadata = {"dataset": manifest["source"], "protocol": manifest["benchmark"], "description": about}
        return cls(model_config, config, dataset.padded_clips, dataset.lengths, run_dir, resume=resume,
                   allow_changed_config=allow_changed_config, metadata=metadata,
                   show_progress_bar=show_progress_bar, device=device)

    def _run_settings(self) -> dict:
        """The settings recorded in the checkpoints and compared on resume: ``config``'s (a subclass adds
        its own, e.g. :class:`usdrl.train.cross_format.CrossFormatPretrainer` its renderings)."""
        return self.config.to_dict()

    @property
    def epoch(self) -> int:
        """Epochs done."""
        return self.run.epoch

    @property
    def step(self) -> int:
        """Optimisation steps done."""
        return self.run.step

    def _check_data(self, model_config: USDRLConfig) -> None:
        if self.data.ndim != 5 or self.data.shape[1] != model_config.in_channels or \
                self.data.shape[3:] != (model_config.num_joints, model_config.num_persons):
            raise InputError(f"expected clips (N, {model_config.in_channels}, T, {model_config.num_joints}, "
                             f"{model_config.num_persons}) for layout {model_config.layout}, got {self.data.shape}")
        if self.lengths.shape != (len(self.data),):
            raise InputError(f"lengths must have shape ({len(self.data)},), got {self.lengths.shape}")

    # ---- the loop ----------------------------------------------------------------------
    def _epoch_batches(self, epoch: int) -> np.ndarray:
        """This process's sample indices for every step of ``epoch``: ``(steps, batch_size / world)``."""
        order = torch.randperm(len(self.data),
                               generator=torch.Generator().manual_seed(derived_seed(self.config.seed, epoch)))
        steps = order[: self.steps_per_epoch * self.config.batch_size].view(self.steps_per_epoch, self.world, -1)
        return steps[:, self.rank].numpy()

    def _load(self, indices: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        order = np.sort(indices)  # sorted reads are kinder to a memmap; the batch order is irrelevant
        clips = torch.from_numpy(np.ascontiguousarray(self.data[order], dtype=np.float32))
        finite = torch.isfinite(clips).flatten(1).all(1)
        if not finite.all():  # damaged data, named here rather than blamed on the learning rate later
            where = getattr(self.data, "filename", None) or "the training clips"
            raise DataFormatError(f"{where}: samples {order[~finite.numpy()].tolist()} hold NaN or infinite "
                                  "values; remake the dataset (usdrl prepare ... --overwrite)")
        return self.run.to_device((clips, torch.from_numpy(self.lengths[order].astype(np.int64))))

    def _views(self, clips: torch.Tensor, lengths: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """The ``num_views`` views ``(K, N, C, T, V, M)`` of a batch: MPCT's augmentations, those of
        :mod:`usdrl.train.universal_views` for a universal model (a subclass may draw others, e.g.
        :class:`usdrl.train.cross_format.CrossFormatPretrainer`)."""
        if self.module.model.config.layout == UNIVERSAL.name:
            return universal_views(clips, lengths, self.config.num_views, generator, self.config.augment)
        return make_views(clips, lengths, self.config.num_views, generator, self.config.augment,
                          self.module.model.config.layout)

    def _train_step(self, indices: np.ndarray) -> dict[str, float]:
        """One optimisation step on the clips ``indices``; returns the logged loss parts."""
        config = self.config
        generator = torch.Generator(self.device).manual_seed(derived_seed(config.seed, self.step, self.rank, 1))
        torch.manual_seed(derived_seed(config.seed, self.step, self.rank, 2))  # drop path
        clips, lengths = self._load(indices)
        views = self._views(clips, lengths, generator)
        with self.run.autocast():
            embeddings = self.network(views)
        loss, parts = self.criterion({k: v.float() for k, v in embeddings.items()})
        norm = self.run.backward_step(loss, self.optimizer, parameters=self.module.parameters(),
                                      grad_clip=config.grad_clip)
        if norm is not None:
            parts["grad_norm"] = norm
        return parts

    def fit(self) -> USDRL:
        """Train from the current epoch to ``config.epochs``; returns the trained encoder.

        Writes ``checkpoint_NNNN.pt`` every ``save_every`` epochs and after the last, the
        metrics (``metrics.jsonl``, and TensorBoard event files under ``tensorboard/`` when
        TensorBoard is installed) and the final ``save_pretrained`` folder ``model/`` (with
        ``projectors.safetensors``).
        """
        config, run = self.config, self.run
        self.module.train()
        with run, run.progress((config.epochs - run.epoch) * self.steps_per_epoch, unit="step") as bar:
            while run.epoch < config.epochs:
                lr = self.optimizer.param_groups[0]["lr"]
                for indices in self._epoch_batches(run.epoch):
                    metrics = self._train_step(indices)
                    if run.step % config.log_every == 0:
                        run.log({"lr": lr, **metrics})
                    bar.update()
                    bar.set_postfix(epoch=run.epoch, loss=f"{metrics['loss']:.4g}")
                run.advance(self.schedule)
                run.end_epoch(config.epochs, model_config=self.module.model.config.to_dict())
        if self.rank == 0:
            self._save_final()
        return self.module.model

    def save_checkpoint(self) -> Path | None:
        """Write ``checkpoint_<epoch>.pt`` and its checksum atomically (rank 0 writes; under torchrun every
        process must call it, as the random generators of all are gathered); returns its path.

        A full disk raises :class:`usdrl.errors.CheckpointWriteError` (an OSError) naming the
        file and the space it needs; the earlier checkpoints are untouched.
        """
        return self.run.save_checkpoint(model_config=self.module.model.config.to_dict())

    def _save_final(self) -> None:
        folder = self.run_dir / "model"
        self.module.model.save_pretrained(folder)
        save_projectors(self.module.projectors.state_dict(), folder)
        logger.info("wrote the pretrained model to %s", folder)


def _read_settings(settings) -> dict:
    """The ``{"model": ..., "pretrain": ...}`` sections of :meth:`Pretrainer.from_prepared`'s ``settings``
    (a dict, a JSON file's path, or None), checked."""
    import json

    where = "settings"
    if isinstance(settings, (str, PathLike)):
        where = str(settings)
        try:
            settings = json.loads(Path(settings).read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{where}: not valid JSON ({exc})") from None
    settings = {} if settings is None else settings
    unknown = sorted(set(settings) - {"model", "pretrain"}) if isinstance(settings, dict) else ["(not an object)"]
    if unknown:
        raise ConfigError(f"{where}: unknown sections {unknown}; expected 'model' and/or 'pretrain'")
    return settings
