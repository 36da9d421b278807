"""The training engine under pretraining and every task: device, precision, schedules, resumable runs.

Pretraining (:mod:`usdrl.train.pretrain`) and the supervised tasks (linear probe, finetuning and
the semi-supervised protocol, detection and segmentation training) all stand on this module;
it imports neither. One :class:`TrainingRun` per run:

* **device**: :func:`resolve_device` turns ``"auto" | "cpu" | "cuda" | "cuda:1" | "mps"`` into a
  ``torch.device`` (a clear :class:`~usdrl.errors.ConfigError` when it is absent); the run moves
  the model there (:meth:`TrainingRun.place`) and every batch (:meth:`TrainingRun.to_device`).
* **precision**: ``fp32``, ``bf16`` (autocast), ``fp16`` (autocast and a ``GradScaler``) or
  ``auto``, resolved by :func:`resolve_precision` alone.
* **optimiser and schedule** from plain numbers (:func:`build_optimizer`, :func:`step_schedule`,
  :func:`warmup_cosine_schedule`, :func:`constant_schedule`): schedules are torch LR schedulers
  stepped once per optimiser step or epoch, closed-form in their position.
* **checkpoints** (``RUN_DIR/checkpoint_NNNN.pt``, via :mod:`usdrl._checkpoint`: atomic, with a
  SHA-256, the newest intact one resumed) of everything a bit-exact resume needs: the model,
  optimiser, scheduler and scaler states, epoch and step, the torch (CPU and CUDA), numpy and
  Python RNGs and the datasets' own random generators. The data order is derived from
  ``(seed, epoch)`` (:class:`EpochSampler`), so it needs no state.
* the **divergence guard** (:meth:`TrainingRun.check_loss` raises
  :class:`~usdrl.errors.TrainingDivergedError`), **metrics** in ``RUN_DIR/metrics.jsonl`` (and
  TensorBoard event files in ``RUN_DIR/tensorboard`` when it is installed) and a **tqdm bar**
  shown when the ``usdrl`` loggers are at INFO or below.
* **DDP** under ``torchrun`` (:func:`setup_distributed`): the batch size stays the global one.
  :meth:`TrainingRun.loader` gives each process its share of every global batch
  (:class:`GlobalBatchSampler`), :meth:`TrainingRun.wrap` all-reduces the gradients, and
  :meth:`TrainingRun.global_mean` turns a process's summed loss into one whose averaged gradient
  is exactly that of the mean over the whole batch, so N processes follow one process's
  trajectory (to rounding). :meth:`TrainingRun.share` / :meth:`TrainingRun.gather` split an
  evaluation over the processes. Only rank 0 writes checkpoints and metrics.
"""

import bisect
import dataclasses
import json
import logging
import math
import os
import random
import warnings
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.utils.data
from tqdm.auto import tqdm

from ._checkpoint import latest_checkpoint, newest_intact_checkpoint, read_metrics, remove_stale_temporaries
from ._checkpoint import save_checkpoint as write_checkpoint
from ._io import atomic_write_text
from ._version import __version__
from .errors import ConfigError, TrainingDivergedError
from .precision import AUTOCAST_DTYPES, resolve_device
from .precision import resolve_precision as machine_precision

logger = logging.getLogger(__name__)

PRECISIONS = ("auto", "fp32", "bf16", "fp16")

__all__ = ["PRECISIONS", "EpochSampler", "GlobalBatchSampler", "RunOptions", "StepFactor", "TrainingRun",
           "WarmupCosineFactor", "build_optimizer", "config_dict", "constant_schedule", "derived_seed",
           "gather_shares", "is_main_process", "latest_checkpoint", "process_share", "resolve_device",
           "resolve_precision", "setup_distributed", "step_schedule", "warmup_cosine_schedule"]


# ---- device and precision ---------------------------------------------------------------
def resolve_precision(precision: str, device: torch.device) -> str:
    """``fp32``, ``bf16`` or ``fp16`` for training in ``precision`` on ``device``.

    ``auto`` is decided by :func:`usdrl.precision.resolve_precision` (bf16 where it is native: CUDA
    with bf16, a CPU with AVX512-BF16 or AMX; fp16 on other CUDA devices; else fp32). The other
    values are returned as given.
    """
    if precision not in PRECISIONS:
        raise ConfigError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision != "auto":
        return precision
    return machine_precision("auto", device, training=True).name


def setup_distributed(device: str | torch.device | None = "auto") -> tuple[int, int, torch.device]:
    """``(rank, world_size, device)``; joins the process group when started by torchrun (``WORLD_SIZE > 1``).

    Under torchrun each process takes ``cuda:LOCAL_RANK`` when ``device`` is ``auto`` or ``cuda``
    (NCCL), else the device asked for (gloo).
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and device in (None, "auto", "cuda") and torch.cuda.is_available():
        device = f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
    resolved = resolve_device(device)
    if resolved.type == "cuda":
        torch.cuda.set_device(resolved)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if resolved.type == "cuda" else "gloo")
    return (dist.get_rank() if dist.is_initialized() else 0), world, resolved


def is_main_process() -> bool:
    """Whether this process writes results: rank 0 under torchrun (``RANK``), or the only process."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank() == 0
    return int(os.environ.get("RANK", "0")) == 0


def _rank_and_world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def process_share(dataset):
    """This process's share of ``dataset`` for an evaluation split over the processes: the items
    ``rank, rank + world, ...`` (a ``Subset``), or ``dataset`` itself in one process. :func:`gather_shares`
    puts the results back in the dataset's order."""
    rank, world = _rank_and_world()
    if world == 1:
        return dataset
    return torch.utils.data.Subset(dataset, range(rank, len(dataset), world))


def gather_shares(part: torch.Tensor, total: int) -> torch.Tensor:
    """Every process's rows ``part`` (its :func:`process_share` of ``total`` items, in order) joined into
    all ``total`` rows in the dataset's order, on ``part``'s device, in every process.

    ``part`` is ``(n_rank, ...)``; the result ``(total, ...)``. One process: ``part`` itself."""
    rank, world = _rank_and_world()
    if world == 1:
        return part
    longest = -(-total // world)
    transport = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else \
        torch.device("cpu")
    padded = torch.zeros((longest, *part.shape[1:]), dtype=part.dtype, device=transport)
    padded[: len(part)] = part.to(transport)
    parts = [torch.empty_like(padded) for _ in range(world)]
    dist.all_gather(parts, padded)
    joined = torch.empty((total, *part.shape[1:]), dtype=part.dtype, device=transport)
    for r, rows in enumerate(parts):
        count = len(range(r, total, world))
        joined[r::world] = rows[:count]
    return joined.to(part.device)


# ---- optimisers and schedules -------------------------------------------------------------
def build_optimizer(params, name: str, *, lr: float, weight_decay: float = 0.0,
                    momentum: float = 0.9) -> torch.optim.Optimizer:
    """``adam``, ``adamw`` or ``sgd`` (with ``momentum``) over ``params`` (tensors or parameter groups,
    a group's own ``lr`` winning)."""
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    raise ConfigError(f"optimizer must be adam, adamw or sgd, got {name!r}")


@dataclass(frozen=True)
class StepFactor:
    """``gamma ** (milestones <= position)``: the factor of a step schedule at ``position``."""

    milestones: tuple[int, ...]
    gamma: float

    def __call__(self, position: int) -> float:
        return self.gamma ** bisect.bisect_right(sorted(self.milestones), position)


@dataclass(frozen=True)
class WarmupCosineFactor:
    """Linear warm-up over ``warmup`` positions (``(p + 1) / warmup``), then cosine decay to 0 at ``total``."""

    total: int
    warmup: int

    def __call__(self, position: int) -> float:
        if position < self.warmup:
            return (position + 1) / self.warmup
        return 0.5 * (1 + math.cos(math.pi * (position - self.warmup) / max(1, self.total - self.warmup)))


def step_schedule(optimizer, milestones, gamma: float) -> torch.optim.lr_scheduler.LambdaLR:
    """The learning rate times ``gamma`` at each milestone (positions counted in scheduler steps)."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, StepFactor(tuple(milestones), gamma))


def warmup_cosine_schedule(optimizer, total: int, warmup: int) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up then cosine decay (:class:`WarmupCosineFactor`) over ``total`` scheduler steps."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, WarmupCosineFactor(total, warmup))


def constant_schedule(optimizer) -> torch.optim.lr_scheduler.LambdaLR:
    """A learning rate that never changes."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, StepFactor((), 1.0))


def _resume_schedule(scheduler: torch.optim.lr_scheduler.LambdaLR, state: dict) -> None:
    """Move ``scheduler`` to the saved position; its rates come from its own (closed-form) factors and base
    rates, so a resume with allowed changed settings follows the new ones."""
    scheduler.last_epoch = state["last_epoch"]
    rates = [base * factor(scheduler.last_epoch) for base, factor in zip(scheduler.base_lrs, scheduler.lr_lambdas,
                                                                          strict=True)]
    for group, rate in zip(scheduler.optimizer.param_groups, rates, strict=True):
        group["lr"] = rate
    scheduler._last_lr = rates


# ---- data order ---------------------------------------------------------------------------
def derived_seed(*parts: int) -> int:
    """A 63-bit seed from integers (stable across runs and processes)."""
    value = 0
    for part in parts:
        value = (value * 1_000_003 + int(part)) % (2**63 - 1)
    return value


class EpochSampler(torch.utils.data.Sampler):
    """Sample indices in an order derived from ``(seed, epoch)`` alone; this process's share under DDP.

    Call :meth:`set_epoch` before each epoch. With ``world_size`` processes every process takes
    ``num_samples // world_size`` indices of the shuffled order (the remainder left out).
    """

    def __init__(self, num_samples: int, seed: int, *, shuffle: bool = True, rank: int = 0, world_size: int = 1):
        self.num_samples, self.seed, self.shuffle, self.rank, self.world = num_samples, seed, shuffle, rank, world_size
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.num_samples // self.world

    def __iter__(self):
        if self.shuffle:
            order = torch.randperm(self.num_samples,
                                   generator=torch.Generator().manual_seed(derived_seed(self.seed, self.epoch)))
        else:
            order = torch.arange(self.num_samples)
        return iter(order[: len(self) * self.world].view(len(self), self.world)[:, self.rank].tolist())


class GlobalBatchSampler(torch.utils.data.Sampler):
    """Batches of one epoch, this process's share of each: a DataLoader ``batch_sampler``.

    The global batches are those of one process: the order derived from ``(seed, epoch)`` (as
    :class:`EpochSampler`'s) cut into ``batch_size`` indices, the last one shorter unless
    ``drop_last``. With ``world_size`` processes each global batch is cut into ``world_size``
    contiguous parts (sizes differing by at most one) and process ``rank`` takes its part; a last
    batch of fewer indices than processes is left out (logged), since a process cannot take an empty
    part. Call :meth:`set_epoch` before each epoch.
    """

    def __init__(self, num_samples: int, batch_size: int, seed: int, *, shuffle: bool = True, rank: int = 0,
                 world_size: int = 1, drop_last: bool = False):
        if batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {batch_size}", keywords=("batch_size",))
        self.order = EpochSampler(num_samples, seed, shuffle=shuffle)
        self.batch_size, self.rank, self.world, self.drop_last = batch_size, rank, world_size, drop_last
        full, rest = divmod(num_samples, batch_size)
        self._rest = 0 if drop_last else rest
        if 0 < self._rest < world_size:
            logger.warning("the last batch of each epoch (%d samples) is left out: it has fewer samples than the %d "
                           "processes", self._rest, world_size)
            self._rest = 0
        self._batches = full + (self._rest > 0)

    def set_epoch(self, epoch: int) -> None:
        self.order.set_epoch(epoch)

    def __len__(self) -> int:
        """Optimiser steps per epoch (the same in every process)."""
        return self._batches

    def __iter__(self):
        order = torch.tensor(list(self.order), dtype=torch.long)
        for step in range(self._batches):
            batch = order[step * self.batch_size:(step + 1) * self.batch_size]
            yield batch.tensor_split(self.world)[self.rank].tolist()


def _base_datasets(dataset):
    """``dataset`` and the datasets it wraps (``Subset.dataset``, ``ConcatDataset.datasets``)."""
    found = [dataset]
    for inner in getattr(dataset, "datasets", None) or [getattr(dataset, "dataset", None)]:
        if inner is not None:
            found += _base_datasets(inner)
    return found


def _rng_state() -> dict:
    numpy_state = np.random.get_state()
    return {"torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else [],
            "numpy": [numpy_state[0], torch.from_numpy(numpy_state[1].astype(np.int64)), *numpy_state[2:]],
            "python": random.getstate()}


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    name, keys, *rest = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), *rest))
    random.setstate(state["python"])


# ---- the run ------------------------------------------------------------------------------
@dataclass
class RunOptions:
    """How a training call runs (the same options as the command line's).

    Attributes:
        run_dir: the run folder (``--out``): checkpoints, ``metrics.jsonl``, TensorBoard files and
            the final model. ``None``: nothing is written (and nothing can resume).
        device: ``auto``, ``cpu``, ``cuda``, ``cuda:N`` or ``mps`` (``--device``); ``None``: where
            the model already is (pretraining: ``auto``).
        precision: ``fp32``, ``bf16``, ``fp16`` or ``auto`` (``--precision``; pretraining: ``None``
            takes the run config's).
        save_every: checkpoint every this many epochs, and after the last (``--save-every``).
        resume: continue from the newest intact checkpoint of ``run_dir`` (``--resume``).
        allow_changed_config: resume even when settings that change the trajectory differ
            (``--allow-changed-config``; logged as a warning).
        show_progress_bar: a tqdm bar; ``None`` shows it when logging is at INFO or below.
    """

    run_dir: str | os.PathLike | None = None
    device: str | None = None
    precision: str | None = None
    save_every: int = 1
    resume: bool = False
    allow_changed_config: bool = False
    show_progress_bar: bool | None = None

    def __post_init__(self):
        if self.save_every < 1:
            raise ConfigError(f"save_every must be >= 1, got {self.save_every}", keywords=("save_every",))
        if self.resume and self.run_dir is None:
            raise ConfigError("resume needs the run folder (run_dir, --out) to resume from")
        if self.precision is not None and self.precision not in PRECISIONS:
            raise ConfigError(f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")


def _flatten(settings: dict, prefix: str = "") -> dict:
    """Nested settings as one level: ``{"augment": {"shear_range": 0.5}}`` -> ``{"augment.shear_range": 0.5}``."""
    flat = {}
    for name, value in settings.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{name}."))
        else:
            flat[f"{prefix}{name}"] = value
    return flat


class TrainingRun:
    """One training run: its device and precision, checkpoints, resume, divergence guard and metrics.

    Args:
        options: :class:`RunOptions`.
        config: the run's settings (JSON-native, e.g. a config dataclass as a dict); saved in every
            checkpoint as ``config`` and compared on resume.
        facts: other values that change the trajectory (the number of clips, of processes, the
            precision); saved as ``run`` and compared alike.
        resumable_changes: names of ``config`` (dotted when nested) a resume may change.
        default_device: the device when ``options.device`` is ``None`` (the model's, usually).
        max_loss: :meth:`check_loss` stops a run whose loss is above this or not finite.
        distributed: the loop supports several processes (it shards its data and wraps its model
            with :meth:`wrap`); otherwise a run under torchrun is refused.

    A loop calls :meth:`place` on its model, :meth:`resume` once its optimiser and scheduler exist,
    then per epoch :meth:`set_epoch` on its samplers, per step :meth:`to_device`, :meth:`autocast`,
    :meth:`check_loss`, :meth:`backward_step` and :meth:`log`, and :meth:`end_epoch` after each epoch.
    """

    def __init__(self, options: RunOptions, *, config: dict, facts: dict | None = None,
                 resumable_changes=(), default_device: torch.device | str | None = "auto", precision: str = "fp32",
                 max_loss: float = math.inf, distributed: bool = False):
        if not distributed and int(os.environ.get("WORLD_SIZE", "1")) > 1:
            raise ConfigError("this training loop runs in one process only (it does not shard its batches); run it "
                              "without torchrun")
        self.options, self.config, self.max_loss = options, config, max_loss
        self.run_dir = Path(options.run_dir) if options.run_dir is not None else None
        self.rank, self.world, self.device = setup_distributed(options.device if options.device is not None
                                                               else default_device)
        self.precision = resolve_precision(options.precision or precision, self.device)
        self.facts = {**(facts or {}), "world_size": self.world, "precision": self.precision}
        self.resumable_changes = tuple(resumable_changes)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.precision == "fp16")
        self.epoch = self.step = 0
        self.stateful: dict = {"scaler": self.scaler}
        self.datasets: list = []
        self._writer = None
        self.show_progress_bar = (logger.getEffectiveLevel() <= logging.INFO if options.show_progress_bar is None
                                  else options.show_progress_bar) and self.rank == 0
        self._checkpoint = self._find_checkpoint()

    # ---- placement and precision ------------------------------------------------------
    def place(self, module: torch.nn.Module) -> torch.nn.Module:
        """``module`` moved to the run's device (in place; returned)."""
        return module.to(self.device)

    def to_device(self, batch):
        """``batch`` (a tensor, or tuples, lists and dicts of them) on the run's device; other values as they are."""
        if isinstance(batch, torch.Tensor):
            return batch.to(self.device, non_blocking=True)
        if isinstance(batch, list | tuple):
            return type(batch)(self.to_device(item) for item in batch)
        if isinstance(batch, dict):
            return {key: self.to_device(value) for key, value in batch.items()}
        return batch

    def autocast(self):
        """Autocast to the run's precision (nothing for ``fp32``)."""
        dtype = AUTOCAST_DTYPES.get(self.precision)
        return torch.autocast(self.device.type, dtype=dtype) if dtype is not None else nullcontext()

    def wrap(self, module: torch.nn.Module, *, find_unused_parameters: bool = False,
             broadcast_buffers: bool = True) -> torch.nn.Module:
        """``module`` under DistributedDataParallel when several processes run (its gradients averaged over
        them), else itself. ``find_unused_parameters``: the forward pass leaves some parameters out (a
        second head); their gradients then stay as one process leaves them. ``broadcast_buffers=False``
        for modules whose buffers are constants (a USDRL model's positional tables and anchors, some of
        them views that a broadcast cannot write into)."""
        if self.world == 1:
            return module
        return torch.nn.parallel.DistributedDataParallel(module, find_unused_parameters=find_unused_parameters,
                                                         broadcast_buffers=broadcast_buffers)

    def loader(self, dataset, *, batch_size: int, seed: int, shuffle: bool = True, num_workers: int = 0,
               drop_last: bool = False) -> torch.utils.data.DataLoader:
        """A DataLoader over ``dataset`` whose batches are this process's shares of the global batches of
        ``batch_size`` (:class:`GlobalBatchSampler`); the datasets' random generators go into the
        checkpoints. Call :meth:`set_epoch` before each epoch; ``len()`` is the steps per epoch."""
        sampler = GlobalBatchSampler(len(dataset), batch_size, seed, shuffle=shuffle, rank=self.rank,
                                     world_size=self.world, drop_last=drop_last)
        self.datasets.append(dataset)
        return torch.utils.data.DataLoader(dataset, batch_sampler=sampler, num_workers=num_workers,
                                           pin_memory=self.device.type == "cuda")

    def batches(self, num_samples: int, *, batch_size: int, seed: int, shuffle: bool = True,
                drop_last: bool = False) -> GlobalBatchSampler:
        """Index batches (this process's shares of the global batches) over ``num_samples`` items held in
        memory; :meth:`set_epoch` works on it as on a loader."""
        return GlobalBatchSampler(num_samples, batch_size, seed, shuffle=shuffle, rank=self.rank,
                                  world_size=self.world, drop_last=drop_last)

    @staticmethod
    def set_epoch(loader, epoch: int) -> None:
        """Give ``loader``'s sampler (or a :class:`GlobalBatchSampler` itself) the epoch (its order)."""
        sampler = loader if isinstance(loader, GlobalBatchSampler) else loader.batch_sampler \
            if isinstance(loader.batch_sampler, GlobalBatchSampler) else loader.sampler
        sampler.set_epoch(epoch)

    # ---- the global batch -------------------------------------------------------------
    def global_mean(self, total: torch.Tensor, count: int | torch.Tensor) -> torch.Tensor:
        """The loss to back-propagate for a mean over the global batch, from this process's share.

        ``total`` is the sum of the per-item losses of this process's ``count`` items (frames, clips).
        Returns ``world * total / (count summed over the processes)``: after DDP averages the gradients
        over the ``world`` processes, each holds exactly the gradient of the global mean. One process:
        ``total / count``. A batch with no item counted gives 0."""
        count = torch.as_tensor(count, dtype=torch.float32, device=total.device)
        if self.world > 1:
            count = count.clone()
            dist.all_reduce(count)
        return total * self.world / count.clamp(min=1)

    def global_value(self, loss: torch.Tensor) -> float:
        """The value of the global loss from a :meth:`global_mean` loss (the mean of the processes' values,
        which are ``world`` times their shares); every process must call it."""
        value = loss.detach().float().reshape(())
        if self.world > 1:
            value = value.clone()
            dist.all_reduce(value)
            value = value / self.world
        return value.item()

    def share(self, dataset):
        """This process's share of ``dataset`` for an evaluation (:func:`process_share`)."""
        return process_share(dataset)

    def gather(self, part: torch.Tensor, total: int) -> torch.Tensor:
        """All ``total`` rows from every process's :meth:`share` results, in order (:func:`gather_shares`)."""
        return gather_shares(part, total)

    def seed_process(self, seed: int) -> None:
        """Under torchrun, give each process its own torch random stream (drop path) from ``seed`` and its
        rank; one process: nothing (its stream stays as it was seeded)."""
        if self.world > 1:
            torch.manual_seed(derived_seed(seed, self.rank, 3))

    # ---- one step ---------------------------------------------------------------------
    def check_loss(self, loss: torch.Tensor) -> None:
        """Raise :class:`TrainingDivergedError` when ``loss`` (on any process) is not finite or above ``max_loss``."""
        bad = torch.tensor(float(not torch.isfinite(loss) or loss.item() > self.max_loss), device=self.device)
        if self.world > 1:
            dist.all_reduce(bad)
        if bad.item():
            kept = f"the last good checkpoint in {self.run_dir} is kept" if self.run_dir else "no checkpoint was kept"
            raise TrainingDivergedError(
                f"loss {loss.item():.4g} at epoch {self.epoch}, step {self.step} is not finite or above "
                f"max_loss={self.max_loss:g}; {kept} (lower the learning rate or use fp32)")

    def backward_step(self, loss: torch.Tensor, optimizer, *, parameters=None,
                      grad_clip: float | None = None) -> float | None:
        """Guard ``loss``, back-propagate it (scaled under fp16) and step ``optimizer``; counts the step.

        With ``grad_clip`` the gradient norm of ``parameters`` is clipped and returned."""
        self.check_loss(loss)
        optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        norm = None
        if grad_clip is not None:
            self.scaler.unscale_(optimizer)
            norm = float(torch.nn.utils.clip_grad_norm_(parameters, grad_clip))
        self.scaler.step(optimizer)
        self.scaler.update()
        self.step += 1
        return norm

    @staticmethod
    def advance(scheduler) -> None:
        """``scheduler.step()``, quiet about an optimiser step the fp16 loss scaler skipped (PyTorch warns
        that the schedule moved first; the engine's schedules are closed-form in their position, so
        nothing is lost)."""
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r"Detected call of `lr_scheduler\.step\(\)` before")
            scheduler.step()

    def progress(self, total: int, **kwargs):
        """A tqdm bar over ``total`` steps, shown as :attr:`show_progress_bar` says (rank 0 only)."""
        return tqdm(total=total, disable=not self.show_progress_bar, **kwargs)

    # ---- checkpoints --------------------------------------------------------------------
    def _find_checkpoint(self) -> dict | None:
        if self.run_dir is None:
            return None
        if not self.options.resume:
            path = latest_checkpoint(self.run_dir)
            if path is not None:
                raise ConfigError(f"{self.run_dir} already holds {path.name}: pass resume=True to continue it, "
                                  "or choose another folder", keywords=("resume",))
            return None
        found = newest_intact_checkpoint(self.run_dir)
        if found is None:
            raise ConfigError(f"nothing to resume: {self.run_dir} has no checkpoint")
        logger.info("resuming from %s", found[0])
        self._check_resumed_settings(found[1])
        return found[1]

    @property
    def resumed_state(self) -> dict | None:
        """The checkpoint this run resumes from (before :meth:`resume`), else ``None``."""
        return self._checkpoint

    def _check_resumed_settings(self, checkpoint: dict) -> None:
        """Refuse (or, when allowed, warn about) a resume whose settings would change the run's trajectory."""
        saved = {**_flatten(checkpoint.get("config", {})), **checkpoint.get("run", {})}
        now = {**_flatten(self.config), **self.facts}
        changed = [f"{name}: {saved[name]!r} in the checkpoint, {now[name]!r} now"
                   for name in sorted(saved.keys() & now.keys())
                   if name not in self.resumable_changes and saved[name] != now[name]]
        if not changed:
            return
        if not self.options.allow_changed_config:
            raise ConfigError(f"resuming {self.run_dir} with settings that change its trajectory: "
                              f"{'; '.join(changed)}. Resume with the run's settings, or pass "
                              "allow_changed_config=True to continue with the new ones",
                              keywords=("allow_changed_config",))
        logger.warning("resuming %s with changed settings (allowed): %s", self.run_dir, "; ".join(changed))

    def resume(self, **stateful) -> dict:
        """Register the objects a checkpoint holds (``model=``, ``optimizer=``, ``scheduler=``, ...: anything
        with ``state_dict``) and, when resuming, restore them, the RNGs, the datasets' generators, the
        epoch and the step. Returns the checkpoint's ``extra`` (what the loop saved with :meth:`end_epoch`),
        ``{}`` for a fresh run."""
        self.stateful.update(stateful)
        checkpoint, self._checkpoint = self._checkpoint, None
        if checkpoint is None:
            return {}
        for name, value in self.stateful.items():
            if isinstance(value, torch.optim.lr_scheduler.LambdaLR):
                _resume_schedule(value, checkpoint[name])
            else:
                value.load_state_dict(checkpoint[name])
        own = checkpoint.get("process_rngs") or []
        own = own[self.rank] if len(own) == self.world else {"rng": checkpoint["rng"], "data": checkpoint["data"]}
        _set_rng_state(own["rng"])
        for dataset, state in zip(self._rng_datasets(), own["data"], strict=True):
            dataset.set_rng_state(state)
        self.epoch, self.step = checkpoint["epoch"], checkpoint["step"]
        return checkpoint.get("extra", {})

    def _rng_datasets(self) -> list:
        """The datasets of :meth:`loader` whose own random generators a checkpoint keeps."""
        return [d for dataset in self.datasets for d in _base_datasets(dataset) if hasattr(d, "rng_state")]

    def save_checkpoint(self, extra: dict | None = None, **fields) -> Path | None:
        """Write ``checkpoint_<epoch>.pt`` and its checksum atomically (rank 0, with a run folder); returns its path.

        Under torchrun every process must call it: the random generators of every process are
        gathered (``process_rngs``), so that each resumes its own. A full disk raises
        :class:`usdrl.errors.CheckpointWriteError` (an OSError) naming the file and the space it
        needs; the earlier checkpoints are untouched.
        """
        if self.run_dir is None:
            return None
        rngs = {"rng": _rng_state(), "data": [d.rng_state() for d in self._rng_datasets()]}
        process_rngs = [rngs]
        if self.world > 1:
            process_rngs = [None] * self.world
            dist.all_gather_object(process_rngs, rngs)
        if self.rank != 0:
            return None
        state = {name: value.state_dict() for name, value in self.stateful.items()}
        state.update(epoch=self.epoch, step=self.step, config=self.config, run=self.facts, extra=extra or {},
                     usdrl_version=__version__, **rngs, **fields)
        if self.world > 1:
            state["process_rngs"] = process_rngs
        path = self.run_dir / f"checkpoint_{self.epoch:04d}.pt"
        write_checkpoint(path, state)
        logger.info("saved %s", path)
        return path

    def end_epoch(self, total_epochs: int, extra: dict | None = None, **fields) -> None:
        """Count the epoch and checkpoint it when ``save_every`` says so or it is the last one; ``extra``
        (JSON-like: histories, losses) comes back from :meth:`resume`."""
        self.epoch += 1
        if self.epoch % self.options.save_every == 0 or self.epoch == total_epochs:
            self.save_checkpoint(extra, **fields)

    # ---- the run folder and metrics -----------------------------------------------------
    def __enter__(self) -> "TrainingRun":
        """Open the run folder: create it, remove temporaries killed writes left, trim metric lines written
        after the checkpoint resumed from (they are replayed), and open TensorBoard when installed."""
        if self.rank == 0 and self.run_dir is not None:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            remove_stale_temporaries(self.run_dir)
            self._trim_metrics()
            self._writer = _tensorboard(self.run_dir)
        return self

    def __exit__(self, *exc) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def log(self, record: dict) -> None:
        """Append ``record`` (with ``step`` and this run's ``epoch``) to ``metrics.jsonl`` and TensorBoard."""
        record = {"epoch": self.epoch, "step": self.step, **record}
        if self.rank == 0 and self.run_dir is not None:
            with open(self.run_dir / "metrics.jsonl", "a", encoding="utf-8") as f:
                f.write(json.dumps(record) + "\n")
        if self._writer is not None:
            for name, value in record.items():
                if name not in ("epoch", "step"):
                    self._writer.add_scalar(name, value, record["step"])

    def _trim_metrics(self) -> None:
        """Keep the metric lines up to the resumed step; a torn last line is dropped with a warning, damage
        elsewhere raises DataFormatError naming the line."""
        path = self.run_dir / "metrics.jsonl"
        if path.exists():
            kept = [line for line, record in read_metrics(path) if record["step"] <= self.step]
            atomic_write_text(path, "".join(f"{line}\n" for line in kept))


def _tensorboard(run_dir: Path):
    """A TensorBoard writer into ``run_dir/tensorboard`` when TensorBoard is installed, else ``None``."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None
    return SummaryWriter(str(run_dir / "tensorboard"))


def config_dict(config) -> dict:
    """A config dataclass as a JSON-native dict (tuples as lists), as checkpoints store it."""
    return json.loads(json.dumps(dataclasses.asdict(config)))
