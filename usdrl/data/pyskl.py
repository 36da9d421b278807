"""PYSKL / MMAction2 annotation pickles and pose-estimator keypoints -> model clips.

Pickles are read by :func:`restricted_load`, which rebuilds only numpy arrays, dtypes and
scalars (numpy 1.x and 2.x module paths) and builtin containers; any other global is
refused with DataFormatError before it is imported or called.

Layouts: pyskl stores ``keypoint`` as ``(M, T, V, C)`` (persons, frames, joints, coords)
and ``keypoint_score`` as ``(M, T, V)``; the library's clips are ``(C, T, V, M)``.
"""

import logging
from os import PathLike

import numpy as np
from einops import rearrange

from ..errors import DataFormatError, InputError
from ._pickle import restricted_load
from .preprocess import normalize_2d, pad_2d, pad_bodies, top_bodies

logger = logging.getLogger(__name__)
# einops axes: c coordinates, t frames, v joints, m bodies (persons).


def _fail(source: str, index: int, ann: dict, message: str) -> DataFormatError:
    frame_dir = ann.get("frame_dir", "?") if isinstance(ann, dict) else "?"
    return DataFormatError(f"{source}: annotations[{index}] ({frame_dir}): {message}")


def _is_int(value) -> bool:
    return isinstance(value, int | np.integer) and not isinstance(value, bool)


def _check_annotation(source: str, index: int, ann) -> None:
    if not isinstance(ann, dict):
        raise _fail(source, index, ann, f"expected a dict, found {type(ann).__name__}")
    if not isinstance(ann.get("frame_dir"), str):
        raise _fail(source, index, ann, "field 'frame_dir' must be a string")
    if "label" in ann and not (_is_int(ann["label"]) and ann["label"] >= 0):
        raise _fail(source, index, ann, f"field 'label' must be an integer >= 0, found {_describe(ann['label'])}")
    for key in ("img_shape", "original_shape"):
        shape = ann.get(key)
        if key in ann and not (isinstance(shape, tuple | list) and len(shape) == 2
                               and all(_is_int(s) and s > 0 for s in shape)):
            raise _fail(source, index, ann, f"field {key!r} must be (height, width), found {shape!r}")
    keypoint = ann.get("keypoint")
    if "keypoint" in ann:
        if not (isinstance(keypoint, np.ndarray) and keypoint.ndim == 4 and keypoint.shape[3] in (2, 3)
                and np.issubdtype(keypoint.dtype, np.floating)):
            raise _fail(source, index, ann, f"field 'keypoint' must be a float (M, T, V, 2|3) array, found "
                                            f"{getattr(keypoint, 'shape', type(keypoint).__name__)}")
        if "total_frames" in ann and not (_is_int(ann["total_frames"]) and ann["total_frames"] == keypoint.shape[1]):
            raise _fail(source, index, ann, f"total_frames must be the integer {keypoint.shape[1]} (the frames of "
                                            f"'keypoint'), found {_describe(ann['total_frames'])}")
    if "keypoint_score" in ann:
        score = ann["keypoint_score"]
        expected = keypoint.shape[:3] if keypoint is not None else None
        if not (isinstance(score, np.ndarray) and score.ndim == 3 and np.issubdtype(score.dtype, np.floating)
                and (expected is None or score.shape == expected)):
            raise _fail(source, index, ann, f"field 'keypoint_score' must be a float {expected or '(M, T, V)'} "
                                            f"array, found {getattr(score, 'shape', type(score).__name__)}")
    problem = _value_problem(ann)
    if problem:
        raise _fail(source, index, ann, problem)


def _describe(value) -> str:
    """A short description of a field's value for an error message (arrays by dtype and shape)."""
    if isinstance(value, np.ndarray):
        return f"a {value.dtype} array of shape {value.shape}"
    return repr(value) if len(repr(value)) <= 40 else type(value).__name__


def _value_problem(ann: dict) -> str | None:
    """What makes the arrays of a well-typed annotation unusable (no frames, NaN or infinite values), or None."""
    keypoint, score = ann.get("keypoint"), ann.get("keypoint_score")
    if isinstance(keypoint, np.ndarray) and keypoint.ndim == 4 and keypoint.shape[1] == 0:
        return "'keypoint' has no frames (T = 0)"
    for key, array in (("keypoint", keypoint), ("keypoint_score", score)):
        if isinstance(array, np.ndarray) and array.dtype.kind == "f" and not np.isfinite(array).all():
            where = np.argwhere(~np.isfinite(array))[0].tolist()
            return f"{key!r} holds NaN or infinite values (first at index {tuple(where)})"
    return None


def load_pyskl(path: str | PathLike, *, skip_invalid: bool = False) -> dict:
    """Load a pyskl / MMAction2 skeleton-annotation pickle with the restricted unpickler.

    Returns ``{"split": {name: [frame_dir, ...]}, "annotations": [dict, ...], "invalid":
    [(frame_dir, message), ...]}``; a pickle holding a bare list of annotations gets an empty ``split``.
    Known annotation fields are checked (``frame_dir`` str, ``label`` int >= 0,
    ``img_shape`` (h, w), ``keypoint`` finite float ``(M, T >= 1, V, 2|3)`` with the integer
    ``total_frames == T``, ``keypoint_score`` finite ``(M, T, V)``); other fields (e.g.
    ``frame_inds``, ``box_score``, ``valid`` of the Kinetics "table of contents" kind) are
    passed through. Raises DataFormatError for the first bad annotation, or with
    ``skip_invalid`` leaves each out and lists it in ``invalid`` as ``(frame_dir or None,
    message naming it)``.
    """
    source = str(path)
    content = restricted_load(path)
    if isinstance(content, list):
        content = {"split": {}, "annotations": content}
    if not isinstance(content, dict) or not isinstance(content.get("annotations"), list):
        raise DataFormatError(f"{source}: expected a dict with an 'annotations' list or a list of annotations")
    split = content.setdefault("split", {})
    if not isinstance(split, dict) or not all(
        isinstance(k, str) and isinstance(v, list | tuple) and all(isinstance(x, str) for x in v)
        for k, v in split.items()
    ):
        raise DataFormatError(f"{source}: field 'split' must map split names to lists of frame_dir strings")
    valid, invalid = [], []
    for index, ann in enumerate(content["annotations"]):
        try:
            _check_annotation(source, index, ann)
        except DataFormatError as err:
            if not skip_invalid:
                raise
            frame_dir = ann.get("frame_dir") if isinstance(ann, dict) else None
            invalid.append((frame_dir if isinstance(frame_dir, str) else None, str(err)))
            continue
        valid.append(ann)
    content.update(annotations=valid, invalid=invalid)
    return content


def pyskl_to_clip(keypoint: np.ndarray) -> np.ndarray:
    """pyskl ``(M, T, V, C)`` -> clip ``(C, T, V, M)`` float32."""
    keypoint = np.asarray(keypoint)
    if keypoint.ndim != 4:
        raise InputError(f"expected (M, T, V, C) keypoints, got shape {keypoint.shape}")
    return np.ascontiguousarray(rearrange(keypoint.astype(np.float32), "m t v c -> c t v m"))


def clip_to_pyskl(clip: np.ndarray) -> np.ndarray:
    """Clip ``(C, T, V, M)`` -> pyskl ``(M, T, V, C)`` float32."""
    clip = np.asarray(clip)
    if clip.ndim != 4:
        raise InputError(f"expected a (C, T, V, M) clip, got shape {clip.shape}")
    return np.ascontiguousarray(rearrange(clip.astype(np.float32), "c t v m -> m t v c"))


def _finish_2d(xy, scores, image_shape, padding, num_persons, legacy) -> np.ndarray:
    """``(2, T, V, M)`` pixels + ``(T, V, M)`` scores -> ``(3, T, V, num_persons)``."""
    if xy.shape[3] > num_persons:
        order = top_bodies(xy, num_persons)
        logger.info("keeping the %d most energetic of %d persons", num_persons, xy.shape[3])
        xy = xy[..., order]
        scores = None if scores is None else scores[..., order]
    if image_shape is not None:
        xy = normalize_2d(xy, image_shape, legacy=legacy)
    return pad_bodies(pad_2d(xy, scores, padding), num_persons)


def annotation_to_clip(
    ann: dict,
    *,
    padding: str = "confidence",
    normalize: bool = True,
    legacy_2d_norm: bool = False,
    num_persons: int = 2,
) -> np.ndarray:
    """One pyskl annotation -> model clip ``(3, T, V, num_persons)`` float32.

    3D annotations (``keypoint`` ``(M, T, 25, 3)``) are transposed as they are. 2D ones
    (``(M, T, 17, 2)`` + ``keypoint_score``) are divided by ``img_shape`` when
    ``normalize`` (``legacy_2d_norm`` reproduces the reference NTU-2D scaling, see
    :func:`~usdrl.data.preprocess.normalize_2d`), then get a third channel of scores or
    zeros (``padding``). Persons beyond ``num_persons`` are dropped by lowest motion
    energy; missing persons are zero. Raises DataFormatError if the annotation has no
    keypoints, no frames, or NaN / infinite keypoints or scores.
    """
    frame_dir = ann.get("frame_dir", "?")
    if not isinstance(ann.get("keypoint"), np.ndarray):
        raise DataFormatError(f"annotation {frame_dir}: no 'keypoint' array (a table-of-contents annotation?)")
    problem = _value_problem(ann)
    if problem:
        raise DataFormatError(f"annotation {frame_dir}: {problem}")
    clip = pyskl_to_clip(ann["keypoint"])
    if clip.shape[0] == 3:
        if clip.shape[3] > num_persons:
            clip = clip[..., top_bodies(clip, num_persons)]
        return pad_bodies(clip, num_persons)
    scores = ann.get("keypoint_score")
    scores = None if scores is None else rearrange(np.asarray(scores, dtype=np.float32), "m t v -> t v m")
    if normalize and "img_shape" not in ann:
        raise DataFormatError(f"annotation {frame_dir}: normalize=True needs 'img_shape'")
    image_shape = ann["img_shape"] if normalize else None
    return _finish_2d(clip, scores, image_shape, padding, num_persons, legacy_2d_norm)


def pose_to_clip(
    keypoints,
    *,
    image_shape: tuple[int, int] | None = None,
    padding: str = "confidence",
    num_persons: int = 2,
) -> np.ndarray:
    """COCO-17 keypoints from a pose estimator -> model clip ``(3, T, 17, num_persons)`` float32.

    ``keypoints`` is one person ``(T, 17, K)``, a stack ``(M, T, 17, K)`` or a list of
    ``(T, 17, K)`` arrays, with K = 2 (x, y) or 3 (x, y, score), in pixels, as MMPose or
    YOLO-pose give them (other estimators' joints must first be mapped to COCO-17 order).
    Non-finite values mark a missing joint: its x, y and score become 0. With
    ``image_shape`` ``(height, width)`` x and y are divided by width and height.
    ``padding="confidence"`` needs K = 3.
    """
    if isinstance(keypoints, list | tuple):
        shapes = {np.shape(p) for p in keypoints}
        if len(shapes) != 1:
            raise InputError(f"expected one or more persons with the same (T, 17, K) shape, got {sorted(shapes)}")
    given = np.asarray(keypoints, dtype=np.float32)
    people = given[None] if given.ndim == 3 else given
    if people.ndim != 4 or people.shape[2] != 17 or people.shape[3] not in (2, 3):
        raise InputError(f"expected (T, 17, 2|3) keypoints per person or a stack (M, T, 17, 2|3), got shape "
                         f"{given.shape}")
    missing = ~np.isfinite(people).all(axis=-1, keepdims=True)
    people = np.where(missing, 0.0, people).astype(np.float32)
    clip = pyskl_to_clip(people)  # (K, T, 17, M)
    scores = clip[2] if clip.shape[0] == 3 else None
    return _finish_2d(clip[:2], scores, image_shape, padding, num_persons, legacy=False)
