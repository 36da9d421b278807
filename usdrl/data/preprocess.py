"""Preprocessing of skeleton clips: pure numpy functions, no hidden state.

Every function takes a clip ``(C, T, V, M)`` (channels, frames, joints, bodies) and returns
a new array; inputs are never modified. A body or joint that is all zeros is *absent*.
Floating results keep the input's float type (float32 for integer or float16 input).

Where a function works on a valid prefix, ``length`` is the number of valid frames
(default: all ``T``); frames after it are padding and are ignored.
"""

from dataclasses import dataclass

import numpy as np
from einops import rearrange

from ..errors import ConfigError, InputError
from ..skeleton import NTU25, UAV17

# einops axes: c coordinates, t frames, v joints, m bodies.

# --------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------


def _clip(data: np.ndarray, channels: int | None = None) -> np.ndarray:
    """``data`` as a float array of shape (C, T, V, M), checked."""
    data = np.asarray(data)
    if data.ndim != 4:
        raise InputError(f"expected a (C, T, V, M) array, got shape {data.shape}")
    if channels is not None and data.shape[0] != channels:
        raise InputError(f"expected {channels} channels, got shape {data.shape}")
    if not np.issubdtype(data.dtype, np.floating):
        return data.astype(np.float32)
    return data.astype(np.result_type(data.dtype, np.float32), copy=False)


def _valid_length(data: np.ndarray, length: int | None) -> int:
    n = data.shape[1] if length is None else int(length)
    if not 1 <= n <= data.shape[1]:
        raise InputError(f"length must be in 1..{data.shape[1]}, got {length}")
    return n


def _check_ratio(ratio: float, name: str) -> float:
    if not 0 < ratio <= 1:
        raise InputError(f"{name} must be in (0, 1], got {ratio}")
    return float(ratio)


def _present(data: np.ndarray) -> np.ndarray:
    """``(T, V, M)`` bool: the joint has a non-zero channel."""
    return (data != 0).any(axis=0)


# --------------------------------------------------------------------------------------
# bodies
# --------------------------------------------------------------------------------------


def body_energy(data: np.ndarray) -> np.ndarray:
    """``(M,)`` motion energy of each body of ``(C, T, V, M)``.

    The energy of a body is the sum over channels of the standard deviation of that
    channel over all joints of the frames where the body is present (0 if never present).
    """
    data = _clip(data)
    frames = _present(data).any(axis=1)  # (T, M)
    energy = np.zeros(data.shape[3])
    for m in range(data.shape[3]):
        body = data[..., m][:, frames[:, m]]  # (C, T', V)
        if body.size:
            energy[m] = rearrange(body, "c t v -> c (t v)").std(axis=1).sum()
    return energy


def top_bodies(data: np.ndarray, num_bodies: int = 2, *, max_candidates: int | None = None) -> np.ndarray:
    """Indices of the (at most) ``num_bodies`` bodies of highest :func:`body_energy`, highest first.

    Only the first ``max_candidates`` body slots are candidates (``None``: all). Ties keep
    slot order.
    """
    data = _clip(data)
    candidates = data if max_candidates is None else data[..., :max_candidates]
    return np.argsort(-body_energy(candidates), kind="stable")[:num_bodies]


def pad_bodies(data: np.ndarray, num_bodies: int = 2) -> np.ndarray:
    """Append all-zero bodies to reach ``num_bodies`` ``(C, T, V, num_bodies)``; more is an error."""
    data = _clip(data)
    if data.shape[3] > num_bodies:
        raise InputError(f"clip has {data.shape[3]} bodies, more than {num_bodies}; select bodies first")
    out = np.zeros((*data.shape[:3], num_bodies), dtype=data.dtype)
    out[..., :data.shape[3]] = data
    return out


def select_bodies(data: np.ndarray, num_bodies: int = 2, *, max_candidates: int | None = None) -> np.ndarray:
    """Keep the ``num_bodies`` most energetic bodies, highest first, zero-padded: ``(C, T, V, num_bodies)``.

    The NTU and UAV-Human recipes use ``max_candidates=4`` (bodies past the 4th slot of
    a frame are ignored), with body slots by position in the frame.
    """
    data = _clip(data)
    return pad_bodies(data[..., top_bodies(data, num_bodies, max_candidates=max_candidates)], num_bodies)


# --------------------------------------------------------------------------------------
# empty frames, centring, view alignment
# --------------------------------------------------------------------------------------


def fill_empty_frames(data: np.ndarray) -> np.ndarray:
    """Fill empty frames of each body, as the NTU / UAV-Human recipe does.

    Per body that is present at all: if its first frame is empty, its non-empty frames are
    moved to the front, in order (closing its gaps); then the empty frames after its last
    non-empty frame ``L`` are filled by repeating frames ``0..L`` (``0, 1, ..., L, 0, 1, ...``).
    Otherwise empty frames in between stay empty. Because the fill is periodic, a padded
    array gives the same valid prefix as the valid frames alone.
    """
    data = _clip(data)
    out = data.copy()
    frames = _present(data).any(axis=1)  # (T, M)
    num_frames = data.shape[1]
    for m in range(data.shape[3]):
        valid = frames[:, m]
        if not valid.any():
            continue
        body = out[..., m]
        if not valid[0]:
            kept = body[:, valid]  # every frame is rewritten below: the kept ones, then their repetition
            body[:, :kept.shape[1]] = kept
            valid = np.arange(num_frames) < kept.shape[1]
        length = int(np.flatnonzero(valid)[-1]) + 1
        body[:, length:] = body[:, np.arange(num_frames - length) % length]
    return out


def center_on_joint(data: np.ndarray, joint: int) -> np.ndarray:
    """Subtract body 0's ``joint`` from every body, per frame; absent joints stay zero."""
    data = _clip(data)
    if not 0 <= joint < data.shape[2]:
        raise InputError(f"joint {joint} is outside 0..{data.shape[2] - 1}")
    center = data[:, :, joint:joint + 1, 0:1]  # (C, T, 1, 1)
    return (data - center) * _present(data)


#: Below these, the reference's ``rotation_matrix`` / ``angle_between`` give the identity / angle 0.
_TINY_AXIS = _TINY_ANGLE = _TINY_VECTOR = 1e-6


def _angle_between(vector: np.ndarray, target: np.ndarray) -> float:
    """The reference's ``angle_between``: 0 if either vector has ``sum(|v|) < 1e-6``, else the
    arccos of the clipped dot product of the unit vectors. ``vector`` is normalised in its own
    float type, as the reference does with the float32 clip."""
    if np.abs(vector).sum() < _TINY_VECTOR or np.abs(target).sum() < _TINY_VECTOR:
        return 0.0
    unit = vector / np.linalg.norm(vector)
    return float(np.arccos(np.clip(np.dot(unit, target / np.linalg.norm(target)), -1.0, 1.0)))


def _axis_angle_matrix(axis, angle: float) -> np.ndarray:
    """``(3, 3)`` counter-clockwise rotation by ``angle`` radians about ``axis`` (any length).

    The reference's ``rotation_matrix`` (UmURL ``data_gen/rotation.py``): the identity when
    ``sum(|axis|) < 1e-6`` or ``|angle| < 1e-6``. Written as Rodrigues' formula
    ``cos(a) I + sin(a) [k]x + (1 - cos(a)) k k^T`` for the unit axis ``k``.
    """
    axis = np.asarray(axis, dtype=np.float64)
    if np.abs(axis).sum() < _TINY_AXIS or abs(angle) < _TINY_ANGLE:
        return np.eye(3)
    k = axis / np.linalg.norm(axis)
    cross = np.array([[0.0, -k[2], k[1]], [k[2], 0.0, -k[0]], [-k[1], k[0], 0.0]])
    return np.cos(angle) * np.eye(3) + np.sin(angle) * cross + (1 - np.cos(angle)) * np.outer(k, k)


def rotation_onto(vector: np.ndarray, target: np.ndarray) -> np.ndarray:
    """``(3, 3)`` rotation of the reference's view alignment, taking ``vector`` onto ``target``'s direction.

    As UmURL's ``pre_normalization``: :func:`_axis_angle_matrix` about ``vector x target`` by
    the angle between them, for every direction (the smallest rotation doing it). Degenerate
    cases give the identity as in the reference: a vector or target with ``sum(|v|) < 1e-6``,
    ``sum(|vector x target|) < 1e-6`` (so exactly opposite vectors are left unrotated, and so
    are nearly parallel or opposite ones with a tiny cross product; the threshold is absolute,
    in the clip's units) and an angle below 1e-6 radians.
    """
    vector = np.asarray(vector)
    vector = vector if np.issubdtype(vector.dtype, np.floating) else vector.astype(np.float64)
    target = np.asarray(target, dtype=np.float64)
    axis = np.cross(vector.astype(np.float64), target)
    return _axis_angle_matrix(axis, _angle_between(vector, target))


def rotate(data: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Apply a ``(3, 3)`` matrix to every xyz vector of a ``(3, T, V, M)`` clip."""
    data = _clip(data, 3)
    return np.einsum("ij,jtvm->itvm", matrix, data).astype(data.dtype)


@dataclass(frozen=True)
class AlignmentRecipe:
    """A view-alignment recipe (joint conventions as in :class:`usdrl.skeleton.SkeletonLayout`).

    Attributes:
        center_joint: body 0's joint subtracted per frame.
        z_axis_joints: ``(a, b)``: rotate ``joint b - joint a`` of body 0 in frame 0 onto +z.
        x_axis_joints: ``(a, b)``: rotate ``joint a - joint b`` of body 0 in frame 0 onto +x.
            Applied after the z rotation.
    """

    center_joint: int
    z_axis_joints: tuple[int, int] | None = None
    x_axis_joints: tuple[int, int] | None = None


#: ``"ntu"`` (NTU RGB+D and PKU-MMD): centre on spine-mid, right minus left shoulder onto +x.
#: ``"uav"`` (UAV-Human): centre on joint 1, left hip -> left shoulder onto +z.
ALIGNMENT_RECIPES = {
    "ntu": AlignmentRecipe(center_joint=NTU25.center_joint, x_axis_joints=NTU25.x_axis_joints),
    "uav": AlignmentRecipe(center_joint=UAV17.center_joint, z_axis_joints=UAV17.z_axis_joints),
}


def _recipe(recipe: str | AlignmentRecipe) -> AlignmentRecipe:
    if isinstance(recipe, AlignmentRecipe):
        return recipe
    if recipe not in ALIGNMENT_RECIPES:
        raise ConfigError(f"unknown alignment recipe {recipe!r}; expected one of {', '.join(ALIGNMENT_RECIPES)}")
    return ALIGNMENT_RECIPES[recipe]


def align_view(data: np.ndarray, recipe: str | AlignmentRecipe = "ntu") -> np.ndarray:
    """Centre and rotate a ``(3, T, V, M)`` clip by a recipe (name or :class:`AlignmentRecipe`).

    Centring is per frame; each rotation is computed once from body 0 in frame 0 (after the
    previous steps) and applied to every frame. Absent joints stay zero. Each rotation is
    :func:`rotation_onto`, the reference's (UmURL ``pre_normalization``) for every body
    orientation: a body facing away from the camera, or leaning toward it, is turned by the
    smallest rotation about ``vector x axis``, and exactly opposite vectors leave the clip
    unrotated.
    """
    recipe = _recipe(recipe)
    data = _clip(data, 3)
    axis_joints = [*(recipe.z_axis_joints or ()), *(recipe.x_axis_joints or ())]
    if axis_joints and max(axis_joints) >= data.shape[2]:
        raise InputError(f"the alignment recipe turns joint {max(axis_joints)}, but the clip has "
                         f"{data.shape[2]} joints (shape {data.shape})")
    out = center_on_joint(data, recipe.center_joint)
    if recipe.z_axis_joints is not None:
        a, b = recipe.z_axis_joints
        out = rotate(out, rotation_onto(out[:, 0, b, 0] - out[:, 0, a, 0], [0.0, 0.0, 1.0]))
    if recipe.x_axis_joints is not None:
        a, b = recipe.x_axis_joints
        out = rotate(out, rotation_onto(out[:, 0, a, 0] - out[:, 0, b, 0], [1.0, 0.0, 0.0]))
    return out


def preprocess_3d(
    data: np.ndarray, recipe: str | AlignmentRecipe = "ntu", *, num_bodies: int = 2, max_candidates: int | None = 4
) -> np.ndarray:
    """The full 3D recipe: :func:`select_bodies`, :func:`fill_empty_frames`, :func:`align_view`.

    ``(3, T, V, M)`` -> ``(3, T, V, num_bodies)``, e.g. the ``data`` of an NTU or UAV-Human
    :class:`~usdrl.data.SkeletonSequence`.
    """
    selected = select_bodies(_clip(data, 3), num_bodies, max_candidates=max_candidates)
    return align_view(fill_empty_frames(selected), recipe)


# --------------------------------------------------------------------------------------
# 2D data
# --------------------------------------------------------------------------------------


def normalize_2d(data: np.ndarray, image_shape: tuple[int, int], *, legacy: bool = False) -> np.ndarray:
    """Scale pixel coordinates by the image size; channels 0, 1 are x, y, others are kept.

    ``image_shape`` is ``(height, width)`` as in pyskl annotations. By default x is divided
    by the width and y by the height, for every joint. ``legacy=True`` reproduces the
    reference NTU-2D feeder instead: joint 0 (x and y) is divided by the height, joint 1
    (x and y) by the width, and all other joints stay in pixels.
    """
    data = _clip(data)
    if data.shape[0] < 2:
        raise InputError(f"expected x and y channels, got shape {data.shape}")
    height, width = (float(s) for s in image_shape)
    if height <= 0 or width <= 0:
        raise InputError(f"image_shape must be positive (height, width), got {image_shape}")
    out = data.copy()
    if legacy:
        out[:2, :, 0] /= height
        out[:2, :, 1] /= width
    else:
        out[0] /= width
        out[1] /= height
    return out


PADDINGS = ("confidence", "zero")


def pad_2d(data: np.ndarray, scores: np.ndarray | None = None, padding: str = "confidence") -> np.ndarray:
    """``(2, T, V, M)`` x, y -> ``(3, T, V, M)`` with a third channel of scores or zeros.

    ``scores`` is ``(T, V, M)``, needed for ``padding="confidence"``.
    """
    data = _clip(data, 2)
    if padding not in PADDINGS:
        raise ConfigError(f"unknown padding {padding!r}; expected one of {', '.join(PADDINGS)}")
    third = np.zeros(data.shape[1:], dtype=data.dtype)
    if padding == "confidence":
        if scores is None:
            raise InputError("padding='confidence' needs scores")
        scores = np.asarray(scores)
        if scores.shape != data.shape[1:]:
            raise InputError(f"scores must have shape {data.shape[1:]}, got {scores.shape}")
        third = scores.astype(data.dtype)
    return np.concatenate([data, third[None]], axis=0)


# --------------------------------------------------------------------------------------
# temporal sampling
# --------------------------------------------------------------------------------------


def resample(data: np.ndarray, size: int = 64, *, length: int | None = None) -> np.ndarray:
    """Linearly resample the first ``length`` frames to ``size``: ``(C, size, V, M)``.

    The maths of ``torch.nn.functional.interpolate(mode="bilinear", align_corners=False)``
    over time: output frame ``j`` reads source position ``max(0, (j + 0.5) * n / size - 0.5)``.
    When upsampling (``n <= size``) the first and last outputs equal the first and last
    valid frames.
    """
    data = _clip(data)
    n = _valid_length(data, length)
    if size < 1:
        raise InputError(f"size must be >= 1, got {size}")
    src = np.maximum((np.arange(size) + 0.5) * (n / size) - 0.5, 0.0)
    low = np.minimum(np.floor(src).astype(np.int64), n - 1)
    high = np.minimum(low + 1, n - 1)
    weight = (src - low)[None, :, None, None]
    out = data[:, low] * (1 - weight) + data[:, high] * weight
    return out.astype(data.dtype)


def to_model_input(
    data: np.ndarray, num_frames: int = 64, recipe: str | AlignmentRecipe = "ntu", *, length: int | None = None
) -> np.ndarray:
    """One recorded 3D clip as a model trained on ``usdrl prepare`` data expects it.

    ``(3, T, V, M')`` joint coordinates (the first ``length`` frames valid; default all ``T``)
    -> ``(3, num_frames, V, 2)`` float32: :func:`preprocess_3d` (the two most active bodies,
    empty frames filled, centred and rotated by ``recipe``) then :func:`resample` of the valid
    frames, as ``SkeletonDataset``'s default sampling does.
    """
    data = _clip(data, 3)
    valid = _valid_length(data, length)
    return resample(preprocess_3d(data[:, :valid], recipe), num_frames).astype(np.float32, copy=False)


def observed_length(length: int, ratio: float) -> int:
    """Frames kept for early prediction of a clip of ``length`` valid frames: ``max(3, floor(length * ratio))``,
    at most ``length``."""
    ratio = _check_ratio(ratio, "ratio")
    return min(int(length), max(3, int(np.floor(length * ratio))))


def crop_observed(data: np.ndarray, ratio: float, *, length: int | None = None) -> np.ndarray:
    """The observed prefix ``(C, observed_length(n, ratio), V, M)`` of the valid frames."""
    data = _clip(data)
    n = _valid_length(data, length)
    return data[:, :observed_length(n, ratio)].copy()


def random_crop_resize(
    data: np.ndarray,
    rng: np.random.Generator,
    *,
    length: int | None = None,
    min_ratio: float = 0.1,
    max_ratio: float = 1.0,
    min_length: int = 64,
    size: int = 64,
) -> np.ndarray:
    """Random temporal crop, resampled to ``size``: ``(C, size, V, M)`` (pretraining views).

    Draws ``s ~ U(min_ratio, max_ratio)``; the crop has ``clamp(floor(n * s), min_length, n)``
    frames and starts uniformly in ``[0, n - crop]``, ``n`` the valid frames (``length``).
    """
    data = _clip(data)
    n = _valid_length(data, length)
    ratio = rng.uniform(_check_ratio(min_ratio, "min_ratio"), _check_ratio(max_ratio, "max_ratio"))
    crop = min(max(int(np.floor(n * ratio)), min_length), n)
    start = int(rng.integers(0, n - crop + 1))
    return resample(data[:, start:start + crop], size)


def center_crop_resize(
    data: np.ndarray, ratio: float = 1.0, *, length: int | None = None, size: int = 64
) -> np.ndarray:
    """Central crop keeping ``ratio`` of the valid frames, resampled to ``size``: ``(C, size, V, M)``.

    Keeps frames ``[b, n - b)`` with ``b = floor((1 - ratio) * n / 2)``.
    """
    data = _clip(data)
    n = _valid_length(data, length)
    begin = int(np.floor((1 - _check_ratio(ratio, "ratio")) * n / 2))
    return resample(data[:, begin:n - begin], size)
