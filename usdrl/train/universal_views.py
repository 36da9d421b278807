"""MPCT views of universal input: the augmentations of :mod:`usdrl.train.augment` for ``(N, 6, T, 30, M)``.

A universal clip (:mod:`usdrl.universal`) holds per joint three coordinates (x, y, z; z = 0 for
2D keypoints) and three indicators (score, exact, depth); an absent joint is zero in all six.
The standard augmentations treat every channel as a coordinate; here each step acts on what it
means to change, and keeps absent joints absent:

The pipeline and its draws are :func:`usdrl.train.augment.make_views`' (:class:`~usdrl.train.augment.ViewSteps`
replaced by :data:`UNIVERSAL_STEPS`):

1. **crop-resize** (:func:`~usdrl.train.augment.draw_crop`, :func:`~usdrl.train.augment.crop_resize`):
   all six channels, so the frames come with their indicators (a score is blended like a
   coordinate). A joint stays present in an output frame only when every source frame it reads with
   a non-zero weight has it; where the resampling blends a present and an absent frame, the joint is
   made absent (all six channels zero) rather than pulled towards the origin.
2. **spatial step** (shear, or joint corruption with probability ``corruption_prob``): the matrices
   act on x, y, z alone. The new z of a 2D joint (depth 0) is set back to 0, so 2D keypoints get no
   invented depth. A corrupted joint whose matrix is zero becomes absent in all six channels; a
   mixed one keeps its indicators.
3. **rotation** (extra): x, y, z as above; a yaw of a 2D clip foreshortens x and adds no depth.
4. **flip** (extra): the universal layout's left/right joints swap, all six channels, and x is negated.
5. **noise** (extra): ``N(0, noise_std^2)`` on x, y (and z of 3D joints) of present joints only.
6. **temporal mask** (extra): whole frames zeroed, all six channels.

Every draw comes from the generator in the order and shapes of :func:`usdrl.train.augment.make_views` on
the three coordinate channels, so the x, y, z of a 3D clip whose joints are present throughout are
the standard views' of its coordinates (:func:`universal_views` draws what ``make_views(x[:, :3])`` does).
"""

import torch

from ..errors import InputError
from ..universal import IN_CHANNELS, UNIVERSAL
from .augment import (
    AugmentConfig,
    ViewSteps,
    _coin,
    _corruption,
    _device,
    _rotation_matrices,
    _shear_matrices,
    _views,
    crop_resize,
    transform_joints,
)

#: The coordinate channels (x, y, z) and the depth indicator of the universal input.
COORDINATES, DEPTH = slice(0, 3), 5


def _check_universal(x: torch.Tensor) -> None:
    if x.ndim != 5 or x.shape[1] != IN_CHANNELS or x.shape[3] != UNIVERSAL.num_joints:
        raise InputError(f"expected universal input (N, {IN_CHANNELS}, T, {UNIVERSAL.num_joints}, M), "
                         f"got shape {tuple(x.shape)}")


def _present(x: torch.Tensor) -> torch.Tensor:
    """``(N, 1, T, V, M)`` bool: the joints that are not all zero."""
    return (x != 0).any(dim=1, keepdim=True)


def _set_coordinates(x: torch.Tensor, coordinates: torch.Tensor) -> torch.Tensor:
    """``x`` with its x, y, z replaced by ``coordinates (N, 3, T, V, M)``, z kept 0 where depth is 0 (2D)."""
    depth = x[:, DEPTH:] > 0  # the last channel
    coordinates = torch.cat([coordinates[:, :2], coordinates[:, 2:] * depth], dim=1)
    return torch.cat([coordinates, x[:, 3:]], dim=1)


def universal_crop_resize(x: torch.Tensor, start: torch.Tensor, length: torch.Tensor, size: int = 64,
                          source: torch.Tensor | None = None) -> torch.Tensor:
    """:func:`~usdrl.train.augment.crop_resize` of universal input, absent joints kept absent.

    All six channels are resampled; a joint is then zeroed in every channel of each output frame that
    reads (with a non-zero weight) a source frame where it is absent.
    """
    _check_universal(x)
    views = crop_resize(x, start, length, size, source)
    absent = crop_resize((~_present(x)).to(x.dtype), start, length, size, source)
    return views * (absent == 0)


def universal_spatial(x: torch.Tensor, generator: torch.Generator | None = None,
                      config: AugmentConfig | None = None) -> torch.Tensor:
    """:func:`~usdrl.train.augment.random_spatial` on x, y, z: per sample, joint corruption (probability
    ``corruption_prob``) or a shear; z stays 0 for 2D joints, and a joint the corruption zeroes becomes absent."""
    _check_universal(x)
    config = config or AugmentConfig()
    n, v = x.shape[0], x.shape[3]
    shear = _shear_matrices(n, 3, generator, config)
    mix, chosen = _corruption(n, v, 3, generator, config)
    corrupt = _coin(n, config.corruption_prob, generator)
    joints = chosen | ~corrupt[:, None]
    out = _set_coordinates(x, transform_joints(x[:, COORDINATES], torch.where(corrupt[:, None, None], mix, shear),
                                               joints))
    erased = (corrupt & (mix == 0).flatten(1).all(1))[:, None] & chosen  # (N, V): joints zeroed by the corruption
    return out.masked_fill(erased.to(x.device)[:, None, None, :, None], 0)


def universal_rotation(x: torch.Tensor, generator: torch.Generator | None = None,
                       config: AugmentConfig | None = None) -> torch.Tensor:
    """:func:`~usdrl.train.augment.random_rotation` of x, y, z (angles ``rotation_degrees``); z stays 0 for 2D
    joints (a turn about the vertical axis foreshortens a 2D body's x)."""
    _check_universal(x)
    matrices = _rotation_matrices(x.shape[0], generator, config or AugmentConfig())
    return _set_coordinates(x, transform_joints(x[:, COORDINATES], matrices))


def universal_noise(x: torch.Tensor, generator: torch.Generator | None = None,
                    config: AugmentConfig | None = None) -> torch.Tensor:
    """:func:`~usdrl.train.augment.gaussian_noise` on x, y, z of the present joints (z of 3D joints only); the
    indicators and absent joints are unchanged."""
    _check_universal(x)
    config = config or AugmentConfig()
    shape = (x.shape[0], 3, *x.shape[2:])
    noise = torch.randn(shape, generator=generator, device=_device(generator), dtype=x.dtype).to(x.device)
    coordinates = x[:, COORDINATES] + config.noise_std * noise * _present(x)
    return _set_coordinates(x, coordinates)


#: The steps of a universal view that differ from the standard ones (flip and temporal mask are the same).
UNIVERSAL_STEPS = ViewSteps(crop_resize=universal_crop_resize, spatial=universal_spatial,
                            rotation=universal_rotation, noise=universal_noise)


def universal_augment(x: torch.Tensor, lengths: torch.Tensor | None = None,
                      generator: torch.Generator | None = None, config: AugmentConfig | None = None) -> torch.Tensor:
    """One augmented view of every universal clip: ``(N, 6, T, 30, M) -> (N, 6, output_frames, 30, M)``
    (the steps of the module docstring; ``lengths (N,)``: valid frames, default all)."""
    _check_universal(x)
    return _views(x, lengths, 1, generator, config, UNIVERSAL, UNIVERSAL_STEPS)[0]


def universal_views(x: torch.Tensor, lengths: torch.Tensor | None = None, num_views: int = 4,
                    generator: torch.Generator | None = None, config: AugmentConfig | None = None) -> torch.Tensor:
    """``num_views`` independent :func:`universal_augment` views of every clip, drawn in one batched pass (as
    :func:`usdrl.train.augment.make_views`): ``(N, 6, T, 30, M) -> (num_views, N, 6, output_frames, 30, M)``."""
    _check_universal(x)
    return _views(x, lengths, num_views, generator, config, UNIVERSAL, UNIVERSAL_STEPS)


__all__ = ["UNIVERSAL_STEPS", "universal_augment", "universal_crop_resize", "universal_noise", "universal_rotation",
           "universal_spatial", "universal_views"]
