"""Batched pretraining augmentations on skeleton batches ``(N, C, T, V, M)``.

Every function works on a whole batch at once, on any device, and draws its random
parameters from a :class:`torch.Generator` (``None``: torch's global generator). Parameters
are drawn on the generator's device and moved to the batch's, so a CPU generator draws the
same crops and matrices for a batch on CPU or GPU. A generator on the batch's device avoids
the transfers, which are small except for the batch-sized noise of :func:`gaussian_noise`.

The reference pipeline (spec §5), used by :func:`augment` for every view:

1. :func:`random_crop_resize`: a random crop of each sample's valid frames, linearly
   resampled to ``output_frames``;
2. :func:`random_spatial`: per sample, joint corruption (probability ``corruption_prob``)
   or a shear.

Extras the reference lacks, all off by default: :func:`random_rotation`,
:func:`random_flip`, :func:`gaussian_noise`, :func:`random_temporal_mask`.
"""

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from einops import rearrange

from ..errors import ConfigError, InputError
from ..skeleton import SkeletonLayout, get_layout

# einops axes: n samples, c coordinates, t frames, v joints, m bodies, k views.


@dataclass
class AugmentConfig:
    """Parameters of the pretraining augmentations (JSON-native; defaults are the reference's).

    A temporal crop comes first; then, per sample, joint corruption (with probability
    ``corruption_prob``) or else a shear; then the optional extras, off by default.

    Attributes:
        output_frames: frames of every view.
        min_crop_ratio: the crop keeps ``floor(n * s)`` of the ``n`` valid frames, with
            ``s ~ U(min_crop_ratio, max_crop_ratio)`` ...
        max_crop_ratio: ... see ``min_crop_ratio``.
        min_crop_length: ... but at least this many frames (and at most ``n``).
        corruption_prob: probability of joint corruption instead of shear.
        corrupted_joints: distinct joints corrupted per sample.
        corruption_pool: the joints are drawn from the first ``corruption_pool`` joints;
            ``None``: all joints of the layout (the AAAI release; 17 reproduces the TPAMI
            release's restriction).
        zero_mask_prob: probability that corruption zeroes the joints, else it multiplies
            their coordinates by one random matrix with entries ``U(-mix_range, mix_range)``.
        mix_range: see ``zero_mask_prob``.
        shear_range: shear off-diagonals are ``U(-shear_range, shear_range)`` (unit diagonal).
        rotation_degrees: extra: maximal rotation angle about x, y and z; each angle is
            ``U(-a, a)`` per sample, applied as ``Rz @ Ry @ Rx``.
        flip_prob: extra: probability of a horizontal flip (left/right joints swapped, x negated).
        noise_std: extra: standard deviation of Gaussian noise added to present joints.
        temporal_mask_prob: extra: probability of zeroing one contiguous span of frames ...
        temporal_mask_max_ratio: ... of ``U{1..floor(ratio * output_frames)}`` frames.
    """

    output_frames: int = 64
    min_crop_ratio: float = 0.1
    max_crop_ratio: float = 1.0
    min_crop_length: int = 64
    corruption_prob: float = 0.5
    corrupted_joints: int = 15
    corruption_pool: int | None = None
    zero_mask_prob: float = 0.5
    mix_range: float = 1.0
    shear_range: float = 1.0
    rotation_degrees: tuple[float, float, float] = (0.0, 0.0, 0.0)
    flip_prob: float = 0.0
    noise_std: float = 0.0
    temporal_mask_prob: float = 0.0
    temporal_mask_max_ratio: float = 0.25

    def __post_init__(self):
        self.rotation_degrees = tuple(float(a) for a in self.rotation_degrees)
        if len(self.rotation_degrees) != 3 or min(self.rotation_degrees) < 0:
            raise ConfigError(f"rotation_degrees must be 3 non-negative angles, got {self.rotation_degrees}")
        for name in ("output_frames", "min_crop_length"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not 0 < self.min_crop_ratio <= self.max_crop_ratio <= 1:
            raise ConfigError(f"need 0 < min_crop_ratio <= max_crop_ratio <= 1, got {self.min_crop_ratio}, "
                              f"{self.max_crop_ratio}")
        for name in ("corruption_prob", "zero_mask_prob", "flip_prob", "temporal_mask_prob"):
            if not 0 <= getattr(self, name) <= 1:
                raise ConfigError(f"{name} must lie in [0, 1], got {getattr(self, name)}")
        for name in ("corrupted_joints", "mix_range", "shear_range", "noise_std"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.corruption_pool is not None and self.corruption_pool < self.corrupted_joints:
            raise ConfigError(f"corruption_pool={self.corruption_pool} is smaller than "
                              f"corrupted_joints={self.corrupted_joints}")
        if not 0 < self.temporal_mask_max_ratio <= 1:
            raise ConfigError(f"temporal_mask_max_ratio must lie in (0, 1], got {self.temporal_mask_max_ratio}")


# --------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------


def _check_batch(x: torch.Tensor) -> None:
    if x.ndim != 5:
        raise InputError(f"expected a batch (N, C, T, V, M), got shape {tuple(x.shape)}")


def _device(generator: torch.Generator | None) -> torch.device:
    return torch.device("cpu") if generator is None else generator.device


def _uniform(shape, low, high, generator, dtype=torch.float32) -> torch.Tensor:
    """``U(low, high)`` of ``shape`` on the generator's device (``low``, ``high`` may be tensors)."""
    return torch.rand(shape, generator=generator, device=_device(generator), dtype=dtype).mul_(high - low).add_(low)


def _coin(n: int, prob: float, generator) -> torch.Tensor:
    """``(n,)`` bool, each true with probability ``prob``."""
    return torch.rand(n, generator=generator, device=_device(generator)) < prob


def _uniform_int(high: torch.Tensor, generator) -> torch.Tensor:
    """Integers uniform in ``[0, high)`` elementwise, ``high >= 1``."""
    draw = torch.rand(high.shape, generator=generator, device=high.device, dtype=torch.float64)
    return torch.minimum(draw.mul_(high).long(), high - 1)


# --------------------------------------------------------------------------------------
# temporal crop and resize
# --------------------------------------------------------------------------------------


def _valid_lengths(x: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
    """``(N,)`` int64 valid lengths on ``x``'s device, checked (``lengths`` may be anywhere: a list, host tensor)."""
    n, t = x.shape[0], x.shape[2]
    if lengths is None:
        return torch.full((n,), t, dtype=torch.long, device=x.device)
    lengths = torch.as_tensor(lengths).to(x.device, torch.long)
    if lengths.shape != (n,):
        raise InputError(f"lengths must have shape ({n},), got {tuple(lengths.shape)}")
    if not torch.equal(lengths.clamp(1, t), lengths):
        raise InputError(f"lengths must lie in 1..{t}, got {lengths.tolist()}")
    return lengths


def draw_crop(lengths: torch.Tensor, generator: torch.Generator | None = None,
              config: AugmentConfig | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Random crops ``(start, length)`` (each ``(N,)`` int64) of ``lengths (N,)`` valid frames per sample.

    ``s ~ U(min_crop_ratio, max_crop_ratio)``; ``length = clamp(floor(n * s), min_crop_length, n)``;
    ``start`` uniform in ``[0, n - length]``. Drawn on the generator's device.
    """
    config = config or AugmentConfig()
    n = torch.as_tensor(lengths).to(_device(generator), torch.long)
    ratio = _uniform(n.shape, config.min_crop_ratio, config.max_crop_ratio, generator, torch.float64)
    length = torch.minimum((n * ratio).long().clamp_min_(config.min_crop_length), n)  # n * ratio >= 0: long() floors
    return _uniform_int(n - length + 1, generator), length


@functools.lru_cache(maxsize=32)
def _resize_table(frames: int, size: int, device: torch.device, dtype: torch.dtype,
                  index: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """The linear resampling of a crop of every length ``0..frames`` to ``size`` frames, as used by
    :func:`crop_resize`: source frames ``(frames + 1, size, 2)`` (``index``) and weights (``dtype``) of the
    two crop frames that each output frame reads (row 0 is unused).

    Output frame ``j`` of a crop of ``n`` frames reads position ``p = max(0, (j + 0.5) * n / size - 0.5)``:
    frames ``floor(p)`` and ``min(floor(p) + 1, n - 1)``, weighted ``1 - w`` and ``w = p - floor(p)``.
    """
    length = torch.arange(frames + 1, device=device).clamp_min_(1)[:, None]
    steps = torch.arange(size, device=device, dtype=torch.float64) + 0.5
    position = (steps * (length.double() / size) - 0.5).clamp_min_(0)  # (frames + 1, size)
    low = position.long()  # at most n - 1, as p < n - 1/2
    weight = position.sub_(low)
    pairs = torch.stack([low, torch.minimum(low + 1, length - 1)], dim=-1).to(index)
    return pairs, torch.stack([1 - weight, weight], dim=-1).to(dtype)


def crop_resize(x: torch.Tensor, start: torch.Tensor, length: torch.Tensor, size: int = 64,
                source: torch.Tensor | None = None) -> torch.Tensor:
    """Frames ``[start, start + length)`` of each sample, linearly resampled to ``size``: ``(K, C, size, V, M)``.

    ``start``, ``length``: ``(K,)`` crops; crop ``i`` reads sample ``source[i]`` of ``x (N, C, T, V, M)``
    (default ``source = arange(N)``, ``K = N``). The maths of ``F.interpolate(mode="linear",
    align_corners=False)`` over time (as :func:`usdrl.data.preprocess.resample`): output frame
    ``j`` is ``(1 - w) x[low] + w x[high]`` at source position ``max(0, (j + 0.5) * length / size - 0.5)``
    of the crop (``low`` its floor, ``high = min(low + 1, length - 1)``, ``w = position - low``). Only
    frames inside the crops are read.
    """
    _check_batch(x)
    n, c, t, v, m = x.shape
    device = x.device
    index = torch.int32 if n * c * t < 2**31 else torch.long  # embedding_bag takes either; int32 builds faster
    pairs, weights = _resize_table(t, size, device, x.dtype, index)
    length = length.to(device, torch.long)
    source = torch.arange(n, device=device) if source is None else source.to(device, torch.long)
    # x as a table of rows (N * C * T, V * M): frame f of channel d of sample s is row (s * C + d) * T + f. Output
    # row (k, d, j) is one embedding bag, the rows of frames start + pairs[length, j] of channel d of sample
    # source[k], weighted by weights[length, j]: gathers and interpolation in one pass that writes the output once.
    first = (source * (c * t) + start.to(device, torch.long))[:, None] + torch.arange(0, c * t, t, device=device)
    rows = first.to(index)[:, :, None, None] + pairs.index_select(0, length)[:, None]  # (K, C, size, 2)
    out = F.embedding_bag(rows.view(-1, 2), x.reshape(n * c * t, v * m), mode="sum",
                          per_sample_weights=weights.index_select(0, length)[:, None].expand_as(rows).reshape(-1, 2))
    return out.view(-1, c, size, v, m)


def random_crop_resize(x: torch.Tensor, lengths: torch.Tensor | None = None,
                       generator: torch.Generator | None = None, config: AugmentConfig | None = None) -> torch.Tensor:
    """:func:`draw_crop` then :func:`crop_resize`: ``(N, C, T, V, M) -> (N, C, output_frames, V, M)``.

    ``lengths (N,)``: valid frames per sample (default: all ``T``); later frames are never read.
    """
    _check_batch(x)
    config = config or AugmentConfig()
    start, length = draw_crop(_valid_lengths(x, lengths), generator, config)
    return crop_resize(x, start, length, config.output_frames)


# --------------------------------------------------------------------------------------
# linear maps of joint coordinates: shear, corruption, rotation
# --------------------------------------------------------------------------------------


def transform_joints(x: torch.Tensor, matrices: torch.Tensor, joints: torch.Tensor | None = None) -> torch.Tensor:
    """Apply one ``(C, C)`` matrix per sample to joint coordinates: ``x'[c] = sum_d A[c, d] x[d]``.

    ``matrices (N, C, C)``; ``joints (N, V)`` bool picks the joints to transform (default: all),
    the others are kept.
    """
    _check_batch(x)
    n, c, t, v, m = x.shape
    matrices = matrices.to(x.device, x.dtype)
    coords = x.reshape(n, c, -1)
    if joints is None:
        return torch.bmm(matrices, coords).view_as(x)
    # x + mask * (A - I) x, with the mask spread over (v m) so that the product runs on contiguous rows.
    change = torch.bmm(matrices - torch.eye(c, device=x.device, dtype=x.dtype), coords).view(n, c, t, v * m)
    mask = joints.to(x.device, x.dtype)[:, None, None, :, None].expand(n, 1, 1, v, m).reshape(n, 1, 1, v * m)
    return torch.addcmul(x.reshape(n, c, t, v * m), change, mask, out=change).view_as(x)


def _shear_matrices(n: int, channels: int, generator, config: AugmentConfig) -> torch.Tensor:
    """``(n, C, C)``: unit diagonal, off-diagonals ``U(-shear_range, shear_range)``."""
    matrices = _uniform((n, channels, channels), -config.shear_range, config.shear_range, generator)
    matrices.diagonal(dim1=1, dim2=2).fill_(1)
    return matrices


def _corruption(n: int, joints: int, channels: int, generator, config: AugmentConfig):
    """Matrices ``(n, C, C)`` and joints ``(n, V)`` of a joint corruption: ``corrupted_joints`` distinct
    joints per sample get the zero matrix (probability ``zero_mask_prob``) or one random
    ``U(-mix_range, mix_range)`` matrix."""
    pool = joints if config.corruption_pool is None else config.corruption_pool
    if not config.corrupted_joints <= pool <= joints:
        raise InputError(f"cannot corrupt {config.corrupted_joints} of the first {pool} joints of {joints}")
    device = _device(generator)
    # The joints of the corrupted_joints smallest of pool uniform draws: a uniform random subset.
    draws = torch.rand(n, pool, generator=generator, device=device)
    chosen = torch.zeros(n, joints, dtype=torch.bool, device=device)
    chosen.scatter_(1, draws.topk(config.corrupted_joints, dim=1, largest=False, sorted=False).indices, True)
    mix = _uniform((n, channels, channels), -config.mix_range, config.mix_range, generator)
    return mix.masked_fill_(_coin(n, config.zero_mask_prob, generator)[:, None, None], 0), chosen


def _rotation_matrices(n: int, generator, config: AugmentConfig) -> torch.Tensor:
    """``(n, 3, 3)``: ``Rz @ Ry @ Rx`` with angles ``U(-a, a)`` degrees about each axis."""
    limits = torch.tensor(config.rotation_degrees, device=_device(generator))
    angles = torch.deg2rad(_uniform((n, 3), -limits, limits, generator))
    cos, sin = angles.cos(), angles.sin()
    one, zero = torch.ones_like(cos[:, 0]), torch.zeros_like(cos[:, 0])

    def about(axis: int) -> torch.Tensor:
        c, s = cos[:, axis], sin[:, axis]
        rows = {0: [[one, zero, zero], [zero, c, -s], [zero, s, c]],
                1: [[c, zero, s], [zero, one, zero], [-s, zero, c]],
                2: [[c, -s, zero], [s, c, zero], [zero, zero, one]]}[axis]
        return torch.stack([torch.stack(row, dim=-1) for row in rows], dim=-2)

    return about(2) @ about(1) @ about(0)


def random_shear(x: torch.Tensor, generator: torch.Generator | None = None,
                 config: AugmentConfig | None = None) -> torch.Tensor:
    """A random shear of every sample (one matrix per sample, all joints and frames)."""
    _check_batch(x)
    return transform_joints(x, _shear_matrices(x.shape[0], x.shape[1], generator, config or AugmentConfig()))


def random_joint_corruption(x: torch.Tensor, generator: torch.Generator | None = None,
                            config: AugmentConfig | None = None) -> torch.Tensor:
    """Zero, or mix by one random matrix, ``corrupted_joints`` distinct joints of every sample."""
    _check_batch(x)
    n, c, _, v, _ = x.shape
    return transform_joints(x, *_corruption(n, v, c, generator, config or AugmentConfig()))


def random_spatial(x: torch.Tensor, generator: torch.Generator | None = None,
                   config: AugmentConfig | None = None) -> torch.Tensor:
    """Per sample, :func:`random_joint_corruption` with probability ``corruption_prob``, else
    :func:`random_shear` (the reference's spatial step), as one batched transform."""
    _check_batch(x)
    config = config or AugmentConfig()
    n, c, _, v, _ = x.shape
    shear = _shear_matrices(n, c, generator, config)
    mix, chosen = _corruption(n, v, c, generator, config)
    corrupt = _coin(n, config.corruption_prob, generator)
    return transform_joints(x, torch.where(corrupt[:, None, None], mix, shear), chosen | ~corrupt[:, None])


def random_rotation(x: torch.Tensor, generator: torch.Generator | None = None,
                    config: AugmentConfig | None = None) -> torch.Tensor:
    """Rotate every sample of a 3-channel batch by random angles (``rotation_degrees``)."""
    _check_batch(x)
    if x.shape[1] != 3:
        raise InputError(f"rotation needs xyz coordinates (C = 3), got shape {tuple(x.shape)}")
    return transform_joints(x, _rotation_matrices(x.shape[0], generator, config or AugmentConfig()))


# --------------------------------------------------------------------------------------
# flip, noise, temporal masking
# --------------------------------------------------------------------------------------


def flip_joints(x: torch.Tensor, flip_pairs, which: torch.Tensor | None = None) -> torch.Tensor:
    """Horizontal flip: swap each ``(left, right)`` joint pair and negate x (channel 0).

    ``which (N,)`` bool selects the samples to flip (default: all).
    """
    _check_batch(x)
    permutation = list(range(x.shape[3]))
    for a, b in flip_pairs:
        permutation[a], permutation[b] = b, a
    sign = torch.ones(x.shape[1], dtype=x.dtype, device=x.device)
    sign[0] = -1
    flipped = x[:, :, :, permutation] * rearrange(sign, "c -> c 1 1 1")
    if which is None:
        return flipped
    return torch.where(rearrange(which.to(x.device), "n -> n 1 1 1 1"), flipped, x)


def random_flip(x: torch.Tensor, layout: SkeletonLayout | str, generator: torch.Generator | None = None,
                config: AugmentConfig | None = None) -> torch.Tensor:
    """:func:`flip_joints` with the layout's ``flip_pairs``, each sample with probability ``flip_prob``."""
    _check_batch(x)
    layout = get_layout(layout) if isinstance(layout, str) else layout
    if layout.num_joints != x.shape[3]:
        raise InputError(f"layout {layout.name!r} has {layout.num_joints} joints, the batch {x.shape[3]}")
    config = config or AugmentConfig()
    return flip_joints(x, layout.flip_pairs, _coin(x.shape[0], config.flip_prob, generator))


def gaussian_noise(x: torch.Tensor, generator: torch.Generator | None = None,
                   config: AugmentConfig | None = None) -> torch.Tensor:
    """Add ``N(0, noise_std^2)`` to every coordinate of the present joints; absent (all-zero) joints stay zero."""
    _check_batch(x)
    config = config or AugmentConfig()
    noise = torch.randn(x.shape, generator=generator, device=_device(generator), dtype=x.dtype).to(x.device)
    present = (x != 0).any(dim=1, keepdim=True)
    return x + config.noise_std * noise * present


def random_temporal_mask(x: torch.Tensor, generator: torch.Generator | None = None,
                         config: AugmentConfig | None = None) -> torch.Tensor:
    """With probability ``temporal_mask_prob`` per sample, zero ``U{1..floor(temporal_mask_max_ratio * T)}``
    consecutive frames starting uniformly in ``[0, T - span]``."""
    _check_batch(x)
    config = config or AugmentConfig()
    n, t = x.shape[0], x.shape[2]
    longest = torch.full((n,), max(1, math.floor(config.temporal_mask_max_ratio * t)), device=_device(generator))
    span = (_uniform_int(longest, generator) + 1) * _coin(n, config.temporal_mask_prob, generator)
    start = _uniform_int(t - span + 1, generator)
    frames = torch.arange(t, device=_device(generator))
    masked = (frames >= start[:, None]) & (frames < (start + span)[:, None])  # (N, T)
    return x.masked_fill(rearrange(masked.to(x.device), "n t -> n 1 t 1 1"), 0)


# --------------------------------------------------------------------------------------
# views
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ViewSteps:
    """The steps that change a view's values, called in :func:`make_views`'s order with its draws: a
    variant of the augmentations for another input (e.g. :mod:`usdrl.train.universal_views`) replaces
    some and keeps the draws. Each takes and returns ``(N, C, T, V, M)``; ``crop_resize`` is called as
    :func:`crop_resize`, the others as :func:`random_spatial`."""

    crop_resize: Callable = crop_resize
    spatial: Callable = random_spatial
    rotation: Callable = random_rotation
    noise: Callable = gaussian_noise


def _augment_crops(x: torch.Tensor, lengths: torch.Tensor | None, source: torch.Tensor, generator,
                   config: AugmentConfig, layout, steps: ViewSteps = ViewSteps()) -> torch.Tensor:
    """Crop-resize sample ``source[i]`` for view ``i``, then the spatial step and the enabled extras."""
    start, length = draw_crop(_valid_lengths(x, lengths).index_select(0, source), generator, config)
    views = steps.spatial(steps.crop_resize(x, start, length, config.output_frames, source), generator, config)
    if any(config.rotation_degrees):
        views = steps.rotation(views, generator, config)
    if config.flip_prob:
        if layout is None:
            raise ConfigError("flip_prob > 0 needs the skeleton layout (its left/right joint pairs)")
        views = random_flip(views, layout, generator, config)
    if config.noise_std:
        views = steps.noise(views, generator, config)
    if config.temporal_mask_prob:
        views = random_temporal_mask(views, generator, config)
    return views


def _views(x: torch.Tensor, lengths, num_views: int, generator, config: AugmentConfig | None, layout,
           steps: ViewSteps = ViewSteps()) -> torch.Tensor:
    """:func:`make_views` of a checked batch with ``steps``: ``(num_views, N, C, output_frames, V, M)``."""
    if num_views < 1:
        raise ConfigError(f"num_views must be >= 1, got {num_views}")
    source = torch.arange(num_views * len(x), device=x.device) % len(x)
    views = _augment_crops(x, lengths, source, generator, config or AugmentConfig(), layout, steps)
    return views.unflatten(0, (num_views, len(x)))  # (k n) c t v m -> k n c t v m


def augment(x: torch.Tensor, lengths: torch.Tensor | None = None, generator: torch.Generator | None = None,
            config: AugmentConfig | None = None, layout: SkeletonLayout | str | None = None) -> torch.Tensor:
    """One augmented view of every sample: ``(N, C, T, V, M) -> (N, C, output_frames, V, M)``.

    Crop-resize, the spatial step, then the enabled extras (rotation, flip, noise,
    temporal mask). ``layout`` is needed only for flips.
    """
    _check_batch(x)
    return _augment_crops(x, lengths, torch.arange(len(x), device=x.device), generator,
                          config or AugmentConfig(), layout)


def make_views(x: torch.Tensor, lengths: torch.Tensor | None = None, num_views: int = 4,
               generator: torch.Generator | None = None, config: AugmentConfig | None = None,
               layout: SkeletonLayout | str | None = None) -> torch.Tensor:
    """``num_views`` independent :func:`augment` views of every sample, all drawn in one batched pass.

    ``x (N, C, T, V, M)``, ``lengths (N,)`` -> ``(num_views, N, C, output_frames, V, M)``. The
    crops read ``x`` in place (it is not copied per view).
    """
    _check_batch(x)
    return _views(x, lengths, num_views, generator, config, layout)
