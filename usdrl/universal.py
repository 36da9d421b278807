"""The universal input: keypoints of any registered format, 2D or 3D, as one fixed-width model input.

A model configured with ``layout="universal"`` and ``in_channels=6`` reads every format of
:mod:`usdrl.keypoints` through :func:`to_universal`: the keypoints are mapped by joint name
(:func:`usdrl.keypoints.convert_keypoints`) onto :data:`UNIVERSAL_JOINTS` (the 25 Kinect v2 /
NTU joints and the 5 COCO face points), turned y-up, centred and scaled, and given three
indicator channels. Each joint of the input ``(6, T, 30, M)`` holds::

    x, y, z     normalised coordinates (z = 0 for 2D keypoints)
    score       the detector's confidence (1 where the format has none; a stand-in's is the mean of
                its joints'), 0 for an absent joint
    exact       1 if the format has the joint itself, 0 for a stand-in or an absent joint
    depth       1 if z was observed (3D keypoints), else 0

An absent joint (the format lacks it, the detector missed it, or it is not finite) is all
zeros: masked, never imputed. The streams keep their fixed widths, so the encoder is the
ordinary DSTE or STTR (see ``docs/universal.md`` for why this design).
"""

import functools
from collections.abc import Callable

import numpy as np

from .errors import ConfigError, InputError
from .keypoints import JointSource, convert_keypoints, get_format
from .keypoints.convert import resolve_scores
from .skeleton import SkeletonLayout, get_layout, register_layout

#: The canonical joints: Kinect v2 / NTU-25 in its order, then the COCO face points.
FACE_JOINTS = ("nose", "left_eye", "right_eye", "left_ear", "right_ear")
UNIVERSAL_JOINTS = get_format("ntu25").joint_names + FACE_JOINTS
#: The channels of a universal joint.
CHANNELS = ("x", "y", "z", "score", "exact", "depth")
IN_CHANNELS = len(CHANNELS)
_INDEX = {name: i for i, name in enumerate(UNIVERSAL_JOINTS)}
_CENTER = _INDEX["spine_base"]
#: The joints that fix a clip's centre (the hips) and scale (the limbs): every registered format has them,
#: so a clip is normalised alike whatever format it comes in.
_HIPS = [_INDEX["left_hip"], _INDEX["right_hip"]]
_LIMBS = [_INDEX[side + part] for side in ("left_", "right_")
          for part in ("shoulder", "elbow", "wrist", "hip", "knee", "ankle")]


def _universal_layout() -> SkeletonLayout:
    ntu = get_layout("ntu25")
    face_parents = {"nose": "head", "left_eye": "nose", "right_eye": "nose", "left_ear": "left_eye",
                    "right_ear": "right_eye"}
    parents = ntu.parents + tuple(_INDEX[face_parents[name]] for name in FACE_JOINTS)
    face_edges = tuple((_INDEX[name], _INDEX[parent]) for name, parent in face_parents.items())
    face_flips = ((_INDEX["left_eye"], _INDEX["right_eye"]), (_INDEX["left_ear"], _INDEX["right_ear"]))
    return SkeletonLayout(name="universal", joint_names=UNIVERSAL_JOINTS, parents=parents,
                          edges=ntu.edges + face_edges, flip_pairs=ntu.flip_pairs + face_flips,
                          center_joint=_CENTER)


UNIVERSAL = _universal_layout()
register_layout(UNIVERSAL)


def best_of(conversions, names) -> tuple[np.ndarray, np.ndarray]:
    """Join conversions of one clip into other formats, joint by joint, into the joints ``names``.

    ``conversions`` are :class:`~usdrl.keypoints.ConvertedKeypoints` with the same leading shape;
    each joint of ``names`` is taken from the first conversion that has it exactly, else from
    the first that has a stand-in for it. Returns ``(keypoints (..., len(names), C), mask (len(names),))``
    with the :class:`~usdrl.keypoints.JointSource` of each joint (missing joints all zero).
    """
    first = conversions[0].keypoints
    out = np.zeros(first.shape[:-2] + (len(names), first.shape[-1]), dtype=np.float32)
    mask = np.full(len(names), JointSource.MISSING, dtype=np.int8)
    for j, name in enumerate(names):
        found = []
        for i, conversion in enumerate(conversions):
            joint_names = get_format(conversion.format).joint_names
            if name in joint_names and conversion.mask[joint_names.index(name)] != JointSource.MISSING:
                found.append((conversion.mask[joint_names.index(name)], i, joint_names.index(name)))
        if found:
            source, i, k = max(found, key=lambda item: (item[0], -item[1]))
            out[..., j, :] = conversions[i].keypoints[..., k, :]
            mask[j] = source
    return out, mask


def to_universal(keypoints, format: str, *, scores=None, has_scores: bool | None = None,
                 image_size: tuple[int, int] | None = None) -> np.ndarray:
    """Keypoints of a registered format as universal model input.

    Args:
        keypoints: ``(M, T, V, C)`` (persons, frames, joints, channels) or a batch ``(N, M, T, V, C)``
            of format ``format``: x, y (2D) or x, y, z (3D), optionally followed by a score
            channel. An all-zero or non-finite joint is absent.
        format: the keypoint format (:func:`usdrl.keypoints.list_formats`); its convention says
            whether y points down (image rows, camera frames: the clip is turned 180 degrees about
            the depth axis to point y up) and whether it is 2D or 3D.
        scores: optional confidences ``(..., V)`` instead of a score channel.
        has_scores: whether the last channel is a score (default: ``C == dims + 1``).
        image_size: ``(height, width)`` of the images of a format in normalised units (MediaPipe's
            image landmarks): x and y are multiplied by them first, so that the body keeps its
            proportions; without it such a body is squeezed by the image's aspect ratio.

    Returns:
        ``(6, T, 30, M)`` float32 (``(N, 6, T, 30, M)`` for a batch): per clip, coordinates
        centred on the mean of its hip joints and divided by the RMS distance of its limb joints
        (shoulders to ankles) from there in x and y, so pixels, normalised units and metres land
        on one scale; see the module docstring for the channels.
    """
    fmt = get_format(format)
    x = np.asarray(keypoints, dtype=np.float32)
    if x.ndim not in (4, 5):
        raise InputError(f"expected {format} keypoints (M, T, V, C) or (N, M, T, V, C), got shape {x.shape}")
    has_scores, scores = resolve_scores(x, fmt, scores, has_scores)
    dims = x.shape[-1] - int(has_scores)
    if dims not in (2, 3) or x.shape[-2] != fmt.num_joints:
        raise InputError(f"expected {format} keypoints (..., {fmt.num_joints}, 2 or 3 [+ score]), "
                         f"got shape {x.shape} (has_scores={has_scores})")
    if scores is None and has_scores:
        scores = x[..., -1]
    coords = x[..., :dims]
    if image_size is not None:
        if fmt.convention.units != "normalized":
            raise ConfigError(f"image_size is for formats in normalised units; {format} is in {fmt.convention.units}")
        coords = coords * np.array([image_size[1], image_size[0], 1][:dims], np.float32)
    score = np.ones(x.shape[:-1], np.float32) if scores is None else np.nan_to_num(scores, nan=0.0)
    present = np.isfinite(coords).all(-1) & (coords != 0).any(-1) & (score > 0)
    stacked = np.concatenate([np.where(present[..., None], coords, 0.0), np.where(present, score, 0.0)[..., None],
                              present[..., None]], axis=-1).astype(np.float32)
    conversions = [convert_keypoints(stacked, src=format, dst=dst, has_scores=False, match_convention=False)
                   for dst in ("ntu25", "coco17")]
    joined, mask = best_of(conversions, UNIVERSAL_JOINTS)
    # a joint is present when every joint it was built from was (the mean of the 0/1 flags is 1)
    present = (joined[..., -1] > 0.999) & (mask != JointSource.MISSING)
    xyz = np.zeros(joined.shape[:-1] + (3,), np.float32)
    xyz[..., :dims] = joined[..., :dims]
    if fmt.convention.y_up is False:
        xyz[..., :2] *= -1
    xyz = normalise_body(xyz, present)
    depth = float(dims == 3)
    channels = [xyz, joined[..., dims:dims + 1], np.broadcast_to(mask == JointSource.EXACT, present.shape)[..., None],
                np.full(present.shape + (1,), depth)]
    out = np.where(present[..., None], np.concatenate(channels, axis=-1), 0.0).astype(np.float32)
    return np.ascontiguousarray(out.swapaxes(-4, -1))  # (..., M, T, V, C) -> (..., C, T, V, M)


def _clip_mean(values: np.ndarray, weight: np.ndarray, joints) -> tuple[np.ndarray, np.ndarray]:
    """Per clip of ``values (..., M, T, V, K)``, the ``weight``-ed mean over ``joints`` and the total weight."""
    axes = (-4, -3, -2)
    w = weight[..., joints, :]
    total = w.sum(axes, keepdims=True)
    return (values[..., joints, :] * w).sum(axes, keepdims=True) / np.maximum(total, 1), total


def normalise_body(xyz: np.ndarray, present: np.ndarray, *, hips=_HIPS, limbs=_LIMBS) -> np.ndarray:
    """Centre each clip of ``xyz (..., M, T, V, 3)`` (``present (..., M, T, V)``) on the mean of its present
    ``hips`` joints and divide it by the RMS distance of its present ``limbs`` joints from there in x and y (all
    present joints stand in where a clip lacks them); absent joints come out zero. ``hips`` and ``limbs`` index
    the joint axis (default: the universal joints' hips and shoulders to ankles, as :func:`to_universal` uses)."""
    weight = present[..., None].astype(np.float32)
    every = slice(None)
    hip_mean, hip_weight = _clip_mean(xyz, weight, hips)
    centred = (xyz - np.where(hip_weight > 0, hip_mean, _clip_mean(xyz, weight, every)[0])) * weight
    square = (centred[..., :2] ** 2).sum(-1, keepdims=True)
    limb_mean, limb_weight = _clip_mean(square, weight, limbs)
    spread = np.sqrt(np.where(limb_weight > 0, limb_mean, _clip_mean(square, weight, every)[0]))
    return centred / np.maximum(spread, 1e-6)


def model_input(keypoints, format: str, *, num_frames: int, num_persons: int, scores=None,
                has_scores: bool | None = None, image_size: tuple[int, int] | None = None) -> np.ndarray:
    """:func:`to_universal`, then resampled to ``num_frames`` frames and zero-filled to ``num_persons``.

    Returns ``(N, 6, num_frames, 30, num_persons)`` (a batch) or ``(6, num_frames, 30, num_persons)``.
    More persons than ``num_persons`` is an InputError (pick them first, e.g. with
    :func:`usdrl.data.preprocess.select_bodies`).
    """
    from .data.preprocess import resample

    data = to_universal(keypoints, format, scores=scores, has_scores=has_scores, image_size=image_size)
    single = data.ndim == 4
    batch = data[None] if single else data
    if batch.shape[-1] > num_persons:
        raise InputError(f"got {batch.shape[-1]} persons, the model takes {num_persons}; select the persons first")
    padded = np.zeros(batch.shape[:-1] + (num_persons,), np.float32)
    padded[..., : batch.shape[-1]] = batch
    out = np.stack([resample(clip, num_frames) for clip in padded])
    return out[0] if single else out


def window_converter(config, format: str | None, image_size: tuple[int, int] | None = None
                     ) -> Callable[[np.ndarray], np.ndarray]:
    """What turns windows ``(W, ·, T, ·, ·)`` cut from a sequence into the input of a model of ``config``:
    nothing when ``format`` is None (the windows are model input), else :func:`model_input` of ``format``
    keypoints ``(W, M, T, V, C)``, each window normalised on its own (windows have the model's frames, so
    none is resampled and zero frames padding a sequence's end stay absent). ConfigError unless ``config``
    is universal; an unknown format fails here, before any window is cut."""
    if format is None:
        if image_size is not None:
            raise ConfigError("image_size is for keypoints: give their format too", keywords=("format",))
        return lambda windows: windows
    check_universal(config)
    get_format(format)
    return functools.partial(model_input, format=format, num_frames=config.num_frames,
                             num_persons=config.num_persons, image_size=image_size)


def is_universal(config) -> bool:
    """Whether ``config`` describes a universal model (``layout="universal"``, ``in_channels=6``)."""
    return config.layout == UNIVERSAL.name and config.in_channels == IN_CHANNELS


def check_universal(config) -> None:
    """ConfigError unless ``config`` describes a universal model."""
    if not is_universal(config):
        raise ConfigError(f"keypoints of any format need a universal model (layout='universal', in_channels="
                          f"{IN_CHANNELS}); this one has layout {config.layout!r} with {config.in_channels} channels")
