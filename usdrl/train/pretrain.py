"""Self-supervised pretraining of USDRL: MG-FD losses over MPCT views, from one CPU to many GPUs.

:class:`Pretrainer` runs the loop: every step draws ``num_views`` augmented views of a
batch, encodes them in one pass, projects the pooled features of each domain (temporal,
spatial, instance) and minimises the MG-FD loss. It checkpoints atomically with checksums
(:mod:`usdrl._checkpoint`), resumes from the newest intact checkpoint with the same losses as
an uninterrupted run, logs metrics to ``metrics.jsonl``, stops on a collapsing loss, and runs
under ``torchrun`` with DistributedDataParallel.

Randomness is derived, not carried: the sample order of an epoch comes from
``(seed, epoch)`` and every draw inside a step (augmentations, drop path) from
``(seed, step, rank)``. A resumed run therefore needs only the weights, the optimiser
state and the step counter to replay exactly what the uninterrupted run would have done.
"""

import dataclasses
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from einops import rearrange
from torch import nn
from tqdm.auto import tqdm

from .._checkpoint import latest_checkpoint, newest_intact_checkpoint, read_metrics, remove_stale_temporaries
from .._checkpoint import save_checkpoint as write_checkpoint
from .._io import atomic_write_text
from .._version import __version__
from ..config import USDRLConfig
from ..convert import save_projectors
from ..errors import ConfigError, InputError, USDRLError
from ..model import USDRL
from .augment import AugmentConfig, make_views
from .losses import LossConfig, MGFDLoss
from .projectors import Projectors

logger = logging.getLogger(__name__)

#: Views of the multi-modal MPCT model: three uni-modal views around one fused anchor.
MULTIMODAL_VIEWS = ("joint", "bone", "motion", "fused")
#: Settings a resumed run may change without changing what it computes (the rest must match the checkpoint's).
RESUMABLE_CHANGES = ("epochs", "save_every", "log_every", "max_loss", "grad_checkpointing")


class TrainingDivergedError(USDRLError, RuntimeError):
    """The loss became non-finite or exploded; the last good checkpoint is kept."""


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
        precision: ``fp32``, ``bf16`` (autocast) or ``fp16`` (autocast with loss scaling, the
            releases' CUDA AMP); the loss itself is computed in float32.
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
        if self.precision not in ("fp32", "bf16", "fp16"):
            raise ConfigError(f"precision must be fp32, bf16 or fp16, got {self.precision!r}")
        for name in ("epochs", "batch_size", "num_views", "save_every", "log_every"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
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
        num_views = views.shape[0]
        if self.model.config.modality == "multi":
            names = MULTIMODAL_VIEWS[: num_views - 1] + ("fused",)
            pooled = [self.model.forward_features(v, name) for v, name in zip(views, names, strict=True)]
            y_t = torch.stack([t.amax(dim=1) for t, _ in pooled])
            y_s = torch.stack([s.amax(dim=1) for _, s in pooled])
        else:
            t, s = self.model.forward_features(rearrange(views, "k n c t v m -> (k n) c t v m"))
            y_t = rearrange(t.amax(dim=1), "(k n) d -> k n d", k=num_views)
            y_s = rearrange(s.amax(dim=1), "(k n) d -> k n d", k=num_views)
        return self.projectors(y_t, y_s)


def _distributed() -> tuple[int, int, torch.device]:
    """``(rank, world_size, device)``; joins the process group when started by torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    rank = dist.get_rank() if dist.is_initialized() else 0
    if torch.cuda.is_available():
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        return rank, world, torch.device("cuda", local)
    return rank, world, torch.device("cpu")


def _seed(*parts: int) -> int:
    """A 63-bit seed from integers (stable across runs and processes)."""
    value = 0
    for part in parts:
        value = (value * 1_000_003 + int(part)) % (2**63 - 1)
    return value


def _flatten(settings: dict, prefix: str = "") -> dict:
    """Nested settings as one level: ``{"augment": {"shear_range": 0.5}}`` -> ``{"augment.shear_range": 0.5}``."""
    flat = {}
    for name, value in settings.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{name}."))
        else:
            flat[f"{prefix}{name}"] = value
    return flat


def _tensorboard(run_dir: Path):
    """A TensorBoard writer into ``run_dir/tensorboard`` when TensorBoard is installed, else ``None``."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None
    return SummaryWriter(str(run_dir / "tensorboard"))


class Pretrainer:
    """Pretrain a USDRL encoder on unlabelled clips.

    Args:
        model_config: the encoder to build (ignored when resuming: the checkpoint's is used).
        config: the run settings.
        data: clips ``(N, C, Tmax, V, M)`` (a numpy memmap is read batch by batch).
        num_frames: valid frames per clip ``(N,)``.
        run_dir: where checkpoints, ``metrics.jsonl`` and the final ``model/`` go.
        resume: continue from the newest intact checkpoint in ``run_dir`` (damaged newer ones
            are skipped with a warning). Its settings must equal ``config`` except for
            :data:`RESUMABLE_CHANGES`, the number of clips and of processes too (a changed value
            changes the trajectory), else ConfigError lists the differences.
        allow_changed_config: resume even when those settings differ (logged as a warning).
        metadata: config metadata for the saved model (``dataset``, ``protocol``, ...).
    """

    def __init__(self, model_config: USDRLConfig, config: PretrainConfig, data, num_frames, run_dir,
                 *, resume: bool = False, allow_changed_config: bool = False, metadata: dict | None = None,
                 show_progress_bar: bool | None = None):
        self.config = config
        self.data, self.num_frames = data, np.asarray(num_frames)
        self.run_dir = Path(run_dir)
        self.rank, self.world, self.device = _distributed()
        self.show_progress_bar = (logger.getEffectiveLevel() <= logging.INFO if show_progress_bar is None
                                  else show_progress_bar) and self.rank == 0
        checkpoint = self._find_checkpoint(resume)
        if checkpoint is not None:
            self._check_resumed_settings(checkpoint, allow_changed_config)
            model_config = USDRLConfig.from_dict(checkpoint["model_config"])
        model_config = model_config.replace(**(metadata or {}))
        self._check_data(model_config)
        if config.batch_size % self.world:
            raise ConfigError(f"batch_size {config.batch_size} is not divisible by {self.world} processes")
        self.steps_per_epoch = len(self.data) // config.batch_size
        if self.steps_per_epoch == 0:
            raise InputError(f"{len(self.data)} clips are fewer than one batch of {config.batch_size}")

        torch.manual_seed(config.seed)
        encoder = USDRL(model_config)
        encoder.set_grad_checkpointing(config.grad_checkpointing)
        self.module = PretrainingModel(encoder, sync_batchnorm=config.sync_batchnorm).to(self.device)
        self.optimizer = torch.optim.Adam(self.module.parameters(), lr=config.lr, weight_decay=config.weight_decay)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=config.precision == "fp16")
        self.criterion = MGFDLoss(config.loss, global_batch=True)
        self.epoch = self.step = 0
        self._writer = None
        if checkpoint is not None:
            self._restore(checkpoint)
        self.network = (nn.parallel.DistributedDataParallel(self.module) if self.world > 1 else self.module)

    # ---- set-up ------------------------------------------------------------------------
    def _check_data(self, model_config: USDRLConfig) -> None:
        if self.data.ndim != 5 or self.data.shape[1] != model_config.in_channels or \
                self.data.shape[3:] != (model_config.num_joints, model_config.num_persons):
            raise InputError(f"expected clips (N, {model_config.in_channels}, T, {model_config.num_joints}, "
                             f"{model_config.num_persons}) for layout {model_config.layout}, got {self.data.shape}")
        if self.num_frames.shape != (len(self.data),):
            raise InputError(f"num_frames must have shape ({len(self.data)},), got {self.num_frames.shape}")

    def _find_checkpoint(self, resume: bool) -> dict | None:
        if not resume:
            path = latest_checkpoint(self.run_dir)
            if path is not None:
                raise ConfigError(f"{self.run_dir} already holds {path.name}: pass resume=True (--resume) to "
                                  "continue it, or choose another folder")
            return None
        found = newest_intact_checkpoint(self.run_dir)
        if found is None:
            raise ConfigError(f"nothing to resume: {self.run_dir} has no checkpoint")
        logger.info("resuming from %s", found[0])
        return found[1]

    def _run_facts(self) -> dict:
        """What a checkpoint records of the run besides its config: these change the trajectory too."""
        return {"num_clips": len(self.data), "world_size": self.world}

    def _check_resumed_settings(self, checkpoint: dict, allow_changed_config: bool) -> None:
        """Refuse (or, when allowed, warn about) a resume whose settings would change the run's trajectory."""
        saved = {**_flatten(PretrainConfig.from_dict(checkpoint["config"]).to_dict()), **checkpoint.get("run", {})}
        now = {**_flatten(self.config.to_dict()), **self._run_facts()}
        changed = [f"{name}: {saved[name]!r} in the checkpoint, {now[name]!r} now"
                   for name in sorted(saved.keys() & now.keys())
                   if name not in RESUMABLE_CHANGES and saved[name] != now[name]]
        if not changed:
            return
        if not allow_changed_config:
            raise ConfigError(f"resuming {self.run_dir} with settings that change its trajectory: "
                              f"{'; '.join(changed)}. Resume with the run's settings, or pass "
                              "allow_changed_config=True (--allow-changed-config) to continue with the new ones")
        logger.warning("resuming %s with changed settings (allowed): %s", self.run_dir, "; ".join(changed))

    def _restore(self, checkpoint: dict) -> None:
        self.module.load_state_dict(checkpoint["model"])
        self.optimizer.load_state_dict(checkpoint["optimizer"])
        self.scaler.load_state_dict(checkpoint["scaler"])
        self.epoch, self.step = checkpoint["epoch"], checkpoint["step"]

    # ---- the loop ----------------------------------------------------------------------
    def _epoch_batches(self, epoch: int) -> np.ndarray:
        """This process's sample indices for every step of ``epoch``: ``(steps, batch_size / world)``."""
        order = torch.randperm(len(self.data), generator=torch.Generator().manual_seed(_seed(self.config.seed, epoch)))
        steps = order[: self.steps_per_epoch * self.config.batch_size].view(self.steps_per_epoch, self.world, -1)
        return steps[:, self.rank].numpy()

    def _load(self, indices: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        order = np.sort(indices)  # sorted reads are kinder to a memmap; the batch order is irrelevant
        clips = torch.from_numpy(np.ascontiguousarray(self.data[order], dtype=np.float32))
        return clips.to(self.device), torch.from_numpy(self.num_frames[order].astype(np.int64)).to(self.device)

    def _views(self, clips: torch.Tensor, lengths: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """The ``num_views`` views ``(K, N, C, T, V, M)`` of a batch: MPCT's augmentations (a subclass may
        draw others, e.g. :class:`usdrl.train.cross_format.CrossFormatPretrainer`)."""
        return make_views(clips, lengths, self.config.num_views, generator, self.config.augment,
                          self.module.model.config.layout)

    def _train_step(self, indices: np.ndarray) -> dict[str, float]:
        """One optimisation step on the clips ``indices``; returns the logged loss parts."""
        config = self.config
        generator = torch.Generator(self.device).manual_seed(_seed(config.seed, self.step, self.rank, 1))
        torch.manual_seed(_seed(config.seed, self.step, self.rank, 2))  # drop path
        clips, lengths = self._load(indices)
        views = self._views(clips, lengths, generator)
        dtype = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[config.precision]
        with torch.autocast(self.device.type, dtype=dtype, enabled=dtype is not None):
            embeddings = self.network(views)
        loss, parts = self.criterion({k: v.float() for k, v in embeddings.items()})
        self._guard(loss)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if config.grad_clip is not None:
            self.scaler.unscale_(self.optimizer)
            parts["grad_norm"] = float(nn.utils.clip_grad_norm_(self.module.parameters(), config.grad_clip))
        self.scaler.step(self.optimizer)
        self.scaler.update()
        return parts

    def _guard(self, loss: torch.Tensor) -> None:
        bad = torch.tensor(float(not torch.isfinite(loss) or loss.item() > self.config.max_loss), device=self.device)
        if self.world > 1:
            dist.all_reduce(bad)
        if bad.item():
            raise TrainingDivergedError(
                f"loss {loss.item():.4g} at epoch {self.epoch}, step {self.step} is not finite or above "
                f"max_loss={self.config.max_loss:g}; the last good checkpoint in {self.run_dir} is kept "
                "(lower the learning rate or use fp32)")

    def fit(self) -> USDRL:
        """Train from the current epoch to ``config.epochs``; returns the trained encoder.

        Writes ``checkpoint_NNNN.pt`` every ``save_every`` epochs and after the last, the
        metrics (``metrics.jsonl``, and TensorBoard event files under ``tensorboard/`` when
        TensorBoard is installed) and the final ``save_pretrained`` folder ``model/`` (with
        ``projectors.safetensors``).
        """
        if self.rank == 0:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            remove_stale_temporaries(self.run_dir)
            self._trim_metrics()
        self._writer = _tensorboard(self.run_dir) if self.rank == 0 else None
        try:
            self._fit()
        finally:
            if self._writer is not None:
                self._writer.close()
        if self.rank == 0:
            self._save_final()
        return self.module.model

    def _fit(self) -> None:
        config = self.config
        self.module.train()
        with tqdm(total=(config.epochs - self.epoch) * self.steps_per_epoch, disable=not self.show_progress_bar,
                  unit="step") as bar:
            while self.epoch < config.epochs:
                for group in self.optimizer.param_groups:
                    group["lr"] = config.learning_rate(self.epoch)
                for indices in self._epoch_batches(self.epoch):
                    metrics = self._train_step(indices)
                    self.step += 1
                    if self.step % config.log_every == 0:
                        self._log({"epoch": self.epoch, "step": self.step, "lr": config.learning_rate(self.epoch),
                                   **metrics})
                    bar.update()
                    bar.set_postfix(epoch=self.epoch, loss=f"{metrics['loss']:.4g}")
                self.epoch += 1
                if self.epoch % config.save_every == 0 or self.epoch == config.epochs:
                    self.save_checkpoint()

    # ---- files -------------------------------------------------------------------------
    def _log(self, record: dict) -> None:
        if self.rank == 0:
            with open(self.run_dir / "metrics.jsonl", "a", encoding="utf-8") as f:
                f.write(json.dumps(record) + "\n")
        if self._writer is not None:
            for name, value in record.items():
                if name not in ("epoch", "step"):
                    self._writer.add_scalar(name, value, record["step"])

    def _trim_metrics(self) -> None:
        """Drop metric lines a killed run wrote after the checkpoint resumed from (they are replayed).

        A torn last line (a kill mid-write) is dropped with a warning; damage elsewhere raises
        DataFormatError naming the line.
        """
        path = self.run_dir / "metrics.jsonl"
        if path.exists():
            kept = [line for line, record in read_metrics(path) if record["step"] <= self.step]
            atomic_write_text(path, "".join(f"{line}\n" for line in kept))

    def save_checkpoint(self) -> Path | None:
        """Write ``checkpoint_<epoch>.pt`` and its checksum atomically (rank 0 only); returns its path.

        A full disk raises :class:`usdrl._checkpoint.CheckpointWriteError` (an OSError) naming the
        file and the space it needs; the earlier checkpoints are untouched.
        """
        if self.rank != 0:
            return None
        state = {
            "model": self.module.state_dict(), "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict(), "epoch": self.epoch, "step": self.step,
            "model_config": self.module.model.config.to_dict(), "config": self.config.to_dict(),
            "run": self._run_facts(), "usdrl_version": __version__,
        }
        path = self.run_dir / f"checkpoint_{self.epoch:04d}.pt"
        write_checkpoint(path, state)
        logger.info("saved %s", path)
        return path

    def _save_final(self) -> None:
        folder = self.run_dir / "model"
        self.module.model.save_pretrained(folder)
        save_projectors(self.module.projectors.state_dict(), folder)
        logger.info("wrote the pretrained model to %s", folder)

