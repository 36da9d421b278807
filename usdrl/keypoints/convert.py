"""Conversion between keypoint formats through joint names.

:func:`convert_keypoints` maps ``(..., V, C)`` keypoints of one registered format onto
another's joints. Each target joint is

* **exact** when the source has a joint of the same name,
* a **stand-in** when it can be built from source joints by one of the rules of
  :data:`STAND_INS` (e.g. NTU's ``spine_mid`` as the midpoint of the hip and shoulder
  centres, COCO's ``nose`` from a ``head`` joint), rules applying recursively,
* **missing** otherwise: zero coordinates and score (how the library marks an absent
  joint), or NaN, or an error, as asked.

The per-joint :class:`JointSource` mask says which is which. Scores (a last channel, or a
separate ``scores`` array) travel with the coordinates; a stand-in gets the lowest score of
the joints it is built from. A source joint with non-finite coordinates is absent: every
target joint built from it is zero with score 0.
"""

import logging
from dataclasses import dataclass
from enum import IntEnum

import numpy as np

from ..errors import ConfigError, InputError
from .formats import LEFT, RIGHT, KeypointFormat, get_format

logger = logging.getLogger(__name__)


class JointSource(IntEnum):
    """How a target joint was obtained."""

    MISSING = 0
    STAND_IN = 1
    EXACT = 2


def _mirrored(rules: dict[str, tuple[tuple[str, ...], ...]]) -> dict[str, tuple[tuple[str, ...], ...]]:
    """``rules`` plus, for every ``left_*`` rule, the same rule for the right side."""
    out = dict(rules)
    for name, recipes in rules.items():
        if name.startswith(LEFT):
            out[RIGHT + name[len(LEFT):]] = tuple(
                tuple(RIGHT + n[len(LEFT):] if n.startswith(LEFT) else n for n in recipe) for recipe in recipes)
    return out


#: Stand-in rules: for a joint name, the recipes tried in order; a recipe is a tuple of joint
#: names whose mean stands in for the joint (each resolved exactly or by its own rules).
STAND_INS: dict[str, tuple[tuple[str, ...], ...]] = _mirrored({
    # centre of the hips
    "mid_hip": (("pelvis",), ("spine_base",), ("left_hip", "right_hip")),
    "pelvis": (("mid_hip",), ("spine_base",), ("left_hip", "right_hip")),
    "spine_base": (("pelvis",), ("mid_hip",), ("left_hip", "right_hip")),
    # centre of the shoulders, neck
    "spine_shoulder": (("thorax",), ("neck",), ("left_shoulder", "right_shoulder")),
    "thorax": (("spine_shoulder",), ("neck",), ("left_shoulder", "right_shoulder")),
    "neck": (("spine_shoulder",), ("thorax",), ("neck_base",), ("left_shoulder", "right_shoulder")),
    "neck_base": (("neck",), ("spine_shoulder",), ("thorax",)),
    # middle of the spine: the midpoint of the hip and shoulder centres
    "spine_mid": (("spine",), ("spine_base", "spine_shoulder")),
    "spine": (("spine_mid",), ("spine_base", "spine_shoulder")),
    # head
    "head": (("head_top",), ("nose",), ("left_ear", "right_ear")),
    "head_top": (("head",), ("nose",)),
    "nose": (("head",), ("head_top",)),
    # hands and feet
    "left_hand": (("left_pinky", "left_index"),),
    "left_hand_tip": (("left_index",),),
    "left_index": (("left_hand_tip",),),
    "left_foot": (("left_big_toe", "left_small_toe"), ("left_foot_index",)),
    "left_big_toe": (("left_foot_index",),),
    "left_foot_index": (("left_big_toe",), ("left_foot",)),
})

MISSING_FILLS = ("zero", "nan", "error")


def _resolve(name: str, src: KeypointFormat, visiting: frozenset) -> dict[int, float] | None:
    """Weights ``{source index: weight}`` giving ``name`` from ``src``'s joints, or None."""
    if name in src.joint_names:
        return {src.index(name): 1.0}
    for recipe in STAND_INS.get(name, ()):
        if visiting & set(recipe):
            continue
        parts = [_resolve(part, src, visiting | {name}) for part in recipe]
        if all(p is not None for p in parts):
            weights: dict[int, float] = {}
            for part in parts:
                for index, w in part.items():
                    weights[index] = weights.get(index, 0.0) + w / len(parts)
            return weights
    return None


_CACHE: dict[tuple[str, str], tuple] = {}


def _conversion(src: str, dst: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(weights (V_dst, V_src) float32, sources (V_dst,) int8, contributors (V_dst, K))``, cached.

    ``contributors`` lists the source joints of each target joint (a row padded with its first;
    0 for a missing joint)."""
    src_fmt, dst_fmt = get_format(src), get_format(dst)
    cached = _CACHE.get((src, dst))
    if cached is not None and cached[0] is src_fmt and cached[1] is dst_fmt:   # not re-registered since
        return cached[2:]
    weights = np.zeros((dst_fmt.num_joints, src_fmt.num_joints), dtype=np.float32)
    sources = np.full(dst_fmt.num_joints, JointSource.MISSING, dtype=np.int8)
    for j, name in enumerate(dst_fmt.joint_names):
        found = _resolve(name, src_fmt, frozenset())
        if found is None:
            continue
        for index, w in found.items():
            weights[j, index] = w
        sources[j] = JointSource.EXACT if name in src_fmt.joint_names else JointSource.STAND_IN
    rows = [np.flatnonzero(row) for row in weights]
    width = max(1, *(len(r) for r in rows))
    contributors = np.array([np.pad(r, (0, width - len(r)), mode="edge") if len(r) else np.zeros(width, int)
                             for r in rows])
    for array in (weights, sources, contributors):
        array.flags.writeable = False
    _CACHE[(src, dst)] = (src_fmt, dst_fmt, weights, sources, contributors)
    return weights, sources, contributors


def conversion_matrix(src: str, dst: str) -> tuple[np.ndarray, np.ndarray]:
    """``(weights (V_dst, V_src) float32, sources (V_dst,) JointSource)`` of a conversion.

    Row ``j`` of ``weights`` holds the mean that gives target joint ``j`` (all zero when it is missing).
    """
    weights, sources, _ = _conversion(src, dst)
    return weights.copy(), sources.copy()


@dataclass(frozen=True)
class ConvertedKeypoints:
    """The result of :func:`convert_keypoints`.

    Attributes:
        keypoints: ``(..., V_dst, C)`` float32, the channels of the input (a score channel included).
        mask: ``(V_dst,)`` int8 :class:`JointSource` of each target joint.
        scores: ``(..., V_dst)`` float32 when scores were passed separately, else None.
        format: the target format's name.
    """

    keypoints: np.ndarray
    mask: np.ndarray
    scores: np.ndarray | None
    format: str

    @property
    def exact(self) -> list[str]:
        return self._names(JointSource.EXACT)

    @property
    def stand_ins(self) -> list[str]:
        return self._names(JointSource.STAND_IN)

    @property
    def missing(self) -> list[str]:
        return self._names(JointSource.MISSING)

    def _names(self, kind: JointSource) -> list[str]:
        names = get_format(self.format).joint_names
        return [names[j] for j in np.flatnonzero(self.mask == kind)]


def resolve_scores(x: np.ndarray, fmt: KeypointFormat, scores, has_scores: bool | None
                   ) -> tuple[bool, np.ndarray | None]:
    """``(has_scores, scores)`` for keypoints ``x (..., V, C)`` of ``fmt``: whether the last channel is a
    score (default: ``C`` is one past the format's dimensions), and separate ``scores (..., V)`` as
    float32, checked against ``x``'s shape (``None`` when not given)."""
    if has_scores is None:
        has_scores = x.shape[-1] == fmt.dims + 1
    if scores is not None:
        scores = np.asarray(scores, dtype=np.float32)
        if scores.shape != x.shape[:-1]:
            raise InputError(f"scores must have shape {x.shape[:-1]}, got {scores.shape}")
    return has_scores, scores


def convert_keypoints(
    x,
    *,
    src: str,
    dst: str,
    scores=None,
    has_scores: bool | None = None,
    missing: str = "zero",
    match_convention: bool = True,
) -> ConvertedKeypoints:
    """Convert keypoints ``(..., V_src, C)`` of format ``src`` to format ``dst`` through joint names.

    Args:
        x: keypoints, joints on axis -2 and channels last, e.g. ``(M, T, V, C)``.
        src: the input's format, a registered name (:func:`~usdrl.keypoints.list_formats`).
        dst: the output's format.
        scores: optional ``(..., V_src)`` confidences, converted alongside.
        has_scores: whether the last channel of ``x`` is a score; default: when
            ``C == dims + 1`` of ``src`` (x, y, score for 2D; x, y, z, score for 3D).
        missing: fill of missing joints: ``"zero"`` (coordinates and score 0, the library's
            absent joint), ``"nan"`` (NaN coordinates, score 0), or ``"error"`` (raise ConfigError
            naming them).
        match_convention: when both formats are 3D and document opposite y directions,
            rotate by 180 degrees about the depth axis (``x, y -> -x, -y``), which turns a y-down
            camera frame into a y-up one without mirroring left and right.

    Returns :class:`ConvertedKeypoints`; round trips ``a -> b -> a`` give back every joint
    that is exact both ways.
    """
    if missing not in MISSING_FILLS:
        raise ConfigError(f"unknown missing fill {missing!r}; expected one of {', '.join(MISSING_FILLS)}")
    src_fmt, dst_fmt = get_format(src), get_format(dst)
    x = np.asarray(x, dtype=np.float32)
    if x.ndim < 2 or x.shape[-2] != src_fmt.num_joints:
        raise InputError(f"expected keypoints (..., {src_fmt.num_joints}, C) of format {src!r}, got shape {x.shape}")
    has_scores, scores = resolve_scores(x, src_fmt, scores, has_scores)
    coords = x.shape[-1] - int(has_scores)
    if coords < 2:
        raise InputError(f"expected at least x and y channels, got {x.shape[-1]} channel(s) with "
                         f"has_scores={has_scores}")
    weights, sources, contributors = _conversion(src, dst)
    absent = sources == JointSource.MISSING
    if missing == "error" and absent.any():
        names = [dst_fmt.joint_names[j] for j in np.flatnonzero(absent)]
        raise ConfigError(f"{src} has no joint for {dst} joints {names} (exact or stand-in)")

    valid = np.isfinite(x[..., :coords]).all(axis=-1)                            # (..., V_src)
    clean = np.where(valid[..., None], x, np.float32(0.0))
    out = np.matmul(weights, clean)                                              # (..., V_dst, C)
    out_valid = valid[..., contributors].all(axis=-1) & ~absent                  # (..., V_dst)

    def lowest(values: np.ndarray) -> np.ndarray:
        """Per target joint, the lowest of its contributors' ``values (..., V_src)``; 0 if missing."""
        return np.where(out_valid, values[..., contributors].min(axis=-1), np.float32(0.0)).astype(np.float32)

    if has_scores:
        out[..., -1] = lowest(clean[..., -1])
    out_scores = None if scores is None else lowest(np.where(valid, scores, 0.0))
    if match_convention and src_fmt.dims == dst_fmt.dims == 3 and coords == 3 and None not in (
            src_fmt.convention.y_up, dst_fmt.convention.y_up) and src_fmt.convention.y_up != dst_fmt.convention.y_up:
        out[..., :2] *= -1
    out[..., :coords] = np.where(out_valid[..., None], out[..., :coords], 0.0)
    if missing == "nan":
        out[..., absent, :coords] = np.nan
    return ConvertedKeypoints(out, sources.copy(), out_scores, dst)
