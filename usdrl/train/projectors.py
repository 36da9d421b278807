"""The MG-FD projectors (spec §4.1), with per-view batch-norm statistics.

Each projector is ``Linear -> BN -> ReLU -> Linear -> BN -> ReLU -> Linear`` (temporal and
spatial ``H -> 2H -> 2H``, instance ``2H -> 2H -> 4H``), with the layer indices of the
reference so that a converted checkpoint's ``projectors.safetensors`` loads as it is.

All views go through one forward pass as ``(V, N, D)`` tensors; the batch norms
normalise each view with its own statistics and update their running statistics exactly
as ``V`` separate passes would.

Under DDP each process normalises with the statistics of its own slice of the batch (as the
reference's ``DataParallel`` replicas did), unless ``sync_batchnorm`` is set: then the
statistics are those of the global batch, with gradients through them (a synchronised batch
norm that, unlike ``nn.SyncBatchNorm``, also runs on CPU with the gloo backend).
"""

import os
from pathlib import Path

import torch
import torch.nn.functional as F
from einops import rearrange
from safetensors.torch import load_file
from torch import nn

from ..convert import PROJECTORS_FILE
from ..errors import CheckpointError, InputError
from .distributed import all_reduce_sum, world_size

# einops axes: k views, n samples, d features.


class ViewBatchNorm1d(nn.BatchNorm1d):
    """``BatchNorm1d`` over ``(N, D)``, or over ``(V, N, D)`` views normalised separately.

    With batch statistics (training, or no running statistics), view ``k`` is normalised
    with its own mean and variance, and the running statistics (and ``num_batches_tracked``)
    are updated once per view in view order: the same maths as ``V`` calls on ``(N, D)``.

    ``sync_stats = True`` takes the batch statistics over every process of a DDP run
    (the global batch), with gradients through them; in one process it changes nothing.
    """

    sync_stats: bool = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch_stats = self.training or self.running_mean is None
        synced = batch_stats and self.sync_stats and world_size() > 1
        if x.ndim != 3 and not synced:
            return super().forward(x)
        if x.ndim != 3:
            return self.forward(x[None])[0]
        num_views, dim = x.shape[0], x.shape[2]
        if not batch_stats:
            return super().forward(x.reshape(-1, dim)).view_as(x)
        flat = rearrange(x, "k n d -> n (k d)")
        weight = None if self.weight is None else self.weight.repeat(num_views)
        bias = None if self.bias is None else self.bias.repeat(num_views)
        update = self.training and self.running_mean is not None
        if synced:
            out, mean, var = _global_batch_norm(flat, weight, bias, self.eps)
            stats = (mean, var)
        else:
            # With momentum 1 these buffers receive each view's batch mean and unbiased variance.
            stats = (self.running_mean.new_zeros(num_views * dim), self.running_var.new_ones(num_views * dim)) \
                if update else (None, None)
            out = F.batch_norm(flat, *stats, weight, bias, True, 1.0, self.eps)
        if update:
            self._track(*(s.view(num_views, dim) for s in stats))
        return rearrange(out, "n (k d) -> k n d", k=num_views)

    @torch.no_grad()
    def _track(self, means: torch.Tensor, variances: torch.Tensor) -> None:
        """Fold per-view batch statistics ``(V, D)`` into the running statistics, one view at a time."""
        for mean, var in zip(means, variances, strict=True):
            self.num_batches_tracked.add_(1)
            factor = 1.0 / self.num_batches_tracked.item() if self.momentum is None else self.momentum
            self.running_mean.lerp_(mean, factor)
            self.running_var.lerp_(var, factor)


def _global_batch_norm(flat: torch.Tensor, weight, bias, eps: float):
    """Batch norm of ``(n, D)`` with the statistics of every process's rows together.

    Returns the normalised ``(n, D)`` and the global mean and unbiased variance ``(D,)`` (detached)."""
    x = flat.to(torch.promote_types(flat.dtype, torch.float32))  # statistics in float32 or better
    count = all_reduce_sum(x.new_tensor(float(x.shape[0])))
    mean = all_reduce_sum(x.sum(0)) / count
    centred = x - mean
    variance = all_reduce_sum(centred.pow(2).sum(0)) / count
    out = centred * torch.rsqrt(variance + eps)
    if weight is not None:
        out = out * weight + bias
    return out.to(flat.dtype), mean.detach(), (variance * count / (count - 1).clamp(min=1)).detach()


def projector(d_in: int, d_hidden: int, d_out: int) -> nn.Sequential:
    """``Linear -> BN -> ReLU -> Linear -> BN -> ReLU -> Linear`` (Linear at 0, 3, 6; BN at 1, 4)."""
    return nn.Sequential(nn.Linear(d_in, d_hidden), ViewBatchNorm1d(d_hidden), nn.ReLU(inplace=True),
                         nn.Linear(d_hidden, d_hidden), ViewBatchNorm1d(d_hidden), nn.ReLU(inplace=True),
                         nn.Linear(d_hidden, d_out))


class Projectors(nn.Module):
    """The temporal, spatial and instance projectors of a model of width ``hidden_size`` (H).

    ``forward(h_t, h_s)`` takes the max-pooled temporal and spatial features, ``(N, H)`` or
    views ``(V, N, H)``, and returns ``{"temporal": (..., 2H),
    "spatial": (..., 2H), "instance": (..., 4H)}``; the instance projector reads
    ``[h_t ; h_s]``, the model's global feature.
    """

    def __init__(self, hidden_size: int, *, sync_batchnorm: bool = False):
        super().__init__()
        h = hidden_size
        self.hidden_size = h
        self.temporal = projector(h, 2 * h, 2 * h)
        self.spatial = projector(h, 2 * h, 2 * h)
        self.instance = projector(2 * h, 2 * h, 4 * h)
        self.set_sync_batchnorm(sync_batchnorm)
        self.reset_parameters()

    def set_sync_batchnorm(self, enabled: bool = True) -> None:
        """Normalise with the global batch's statistics under DDP (see :class:`ViewBatchNorm1d`)."""
        for module in self.modules():
            if isinstance(module, ViewBatchNorm1d):
                module.sync_stats = enabled

    def reset_parameters(self) -> None:
        """Linear weights truncated normal (std 0.02), biases zero; batch norms at their defaults."""
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.trunc_normal_(module.weight, std=0.02, a=-2.0, b=2.0)
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.BatchNorm1d):
                module.reset_parameters()

    def forward(self, h_t: torch.Tensor, h_s: torch.Tensor) -> dict[str, torch.Tensor]:
        if h_t.shape != h_s.shape or h_t.shape[-1] != self.hidden_size:
            raise InputError(f"expected two (..., {self.hidden_size}) features of one shape, got "
                             f"{tuple(h_t.shape)} and {tuple(h_s.shape)}")
        return {"temporal": self.temporal(h_t), "spatial": self.spatial(h_s),
                "instance": self.instance(torch.cat([h_t, h_s], dim=-1))}

    @classmethod
    def from_file(cls, path: str | os.PathLike) -> "Projectors":
        """Projectors from a ``projectors.safetensors`` file, or a folder holding one (e.g. a converted
        reference checkpoint); the width is read from the weights."""
        path = Path(path)
        if path.is_dir():
            path = path / PROJECTORS_FILE
        state = load_file(path)
        if "temporal.0.weight" not in state:
            raise CheckpointError(f"{path}: no 'temporal.0.weight'; not a projectors file")
        projectors = cls(state["temporal.0.weight"].shape[1])
        try:
            projectors.load_state_dict(state)
        except RuntimeError as exc:
            raise CheckpointError(f"{path}: {exc}") from None
        return projectors
