"""2D projection and keypoint rendering: NTU-25 bodies as COCO-17 pixels (:func:`project_coco17`) or as the
keypoints of any registered format, seen by a moved camera through a detector (:func:`render_keypoints`)."""

from dataclasses import dataclass

import numpy as np

from ...errors import ConfigError, InputError
from ...skeleton import COCO17
from .body import _J, _JITTER_SCALE, _rot

#: COCO-17 keypoints taken directly from an NTU-25 joint.
_COCO_FROM_NTU = {
    "left_shoulder": "shoulder_left", "right_shoulder": "shoulder_right", "left_elbow": "elbow_left",
    "right_elbow": "elbow_right", "left_wrist": "wrist_left", "right_wrist": "wrist_right",
    "left_hip": "hip_left", "right_hip": "hip_right", "left_knee": "knee_left", "right_knee": "knee_right",
    "left_ankle": "ankle_left", "right_ankle": "ankle_right",
}
#: Face keypoints as offsets (forward, up, right) in metres from the NTU head joint.
_FACE = {
    "nose": (0.10, -0.02, 0.0), "left_eye": (0.08, 0.02, -0.032), "right_eye": (0.08, 0.02, 0.032),
    "left_ear": (0.0, 0.0, -0.075), "right_ear": (0.0, 0.0, 0.075),
}


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-9)


def _coco17_points(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """COCO-17 points in 3D from NTU-25 joints ``x (..., 25, 3)``: ``(..., 17, 3)`` and the visibility of each,
    ``(..., 17)`` in [0, 1] (1 for body joints; lower for face points turned away from the camera)."""
    head = x[..., _J["head"], :]
    up = _unit(head - x[..., _J["neck"], :])
    right = x[..., _J["shoulder_right"], :] - x[..., _J["shoulder_left"], :]
    forward = _unit(np.cross(up, right))
    right = np.cross(forward, up)
    points = np.empty(x.shape[:-2] + (len(COCO17.joint_names), 3))
    visibility = np.ones(points.shape[:-1])
    to_camera = _unit(-head)
    for k, name in enumerate(COCO17.joint_names):
        if name in _COCO_FROM_NTU:
            points[..., k, :] = x[..., _J[_COCO_FROM_NTU[name]], :]
            continue
        f, u, r = _FACE[name]
        points[..., k, :] = head + f * forward + u * up + r * right
        facing = _unit(f * forward + r * right)
        visibility[..., k] = np.clip(0.5 + (facing * to_camera).sum(-1), 0.0, 1.0)
    return points, visibility


def _pinhole(points: np.ndarray, image_size: tuple[int, int], focal: float,
             principal: tuple[float, float] | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pixels ``(..., 2)`` of Kinect camera-space ``points (..., 3)`` (``u = cx - focal x / z``, ``v = cy - focal
    y / z``), and whether each point is in front of the camera and inside the image."""
    height, width = image_size
    cx, cy = (width / 2, height / 2) if principal is None else principal
    z = points[..., 2]
    in_front = z > 0.1
    z = np.where(in_front, z, 1.0)
    pixels = np.stack([cx - focal * points[..., 0] / z, cy - focal * points[..., 1] / z], axis=-1)
    inside = (pixels[..., 0] >= 0) & (pixels[..., 0] < width) & (pixels[..., 1] >= 0) & (pixels[..., 1] < height)
    return pixels, in_front, inside


def project_coco17(data: np.ndarray, *, image_size: tuple[int, int] = (1080, 1920), focal: float = 1060.0,
                   principal: tuple[float, float] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Project NTU-25 bodies in Kinect camera space to COCO-17 pixel keypoints.

    A pinhole camera at the Kinect's origin, looking along +z, with ``u = cx - focal * x / z``
    and ``v = cy - focal * y / z`` (Kinect ``x`` points to the image's left, ``y`` up). Face
    keypoints are synthesised from the head, neck and shoulder geometry.

    Args:
        data: (3, T, 25, M) joints in metres; an all-zero body means "absent".
        image_size: (height, width) in pixels.
        focal: focal length in pixels (Kinect v2 colour camera: about 1060).
        principal: (cx, cy); defaults to the image centre.

    Returns:
        keypoints (M, T, 17, 2) float32 pixels and scores (M, T, 17) float32 in [0, 1]: 0 for
        absent bodies, points behind the camera or outside the image; lower for face
        points turned away from the camera.
    """
    if data.ndim != 4 or data.shape[0] != 3 or data.shape[2] != len(_J):
        raise InputError(f"expected (3, T, 25, M) NTU-25 joints, got {data.shape}")
    x = np.asarray(data, dtype=np.float64).transpose(3, 1, 2, 0)  # m t v c
    present = np.abs(x).sum(axis=(2, 3)) > 0  # (M, T)
    points, visibility = _coco17_points(x)
    pixels, in_front, inside = _pinhole(points, image_size, focal, principal)
    valid = present[..., None] & in_front & inside
    scores = np.where(valid, 0.35 + 0.6 * visibility, 0.0)
    pixels = np.where(present[..., None, None] & in_front[..., None], pixels, 0.0)
    return pixels.astype(np.float32), scores.astype(np.float32)


@dataclass(frozen=True)
class DetectorNoise:
    """How a pose estimator or sensor degrades the keypoints of :func:`render_keypoints`.

    Attributes:
        jitter: standard deviation (metres, in 3D before any projection) of the per-joint jitter;
            extremities shake 1.8 times more.
        drop_rate: chance per joint and frame that the joint is missed (zero coordinates and score).
        occlusion_rate: chance per joint and person that the joint is missed in every frame of the clip.
        low_score_rate: chance per joint and frame of an unsure detection: a score in
            ``low_scores`` and an extra jitter of twice ``jitter``.
        scores: range of the factor on the other joints' scores (2D formats, whose scores are
            ``0.35 + 0.6 * visibility`` as in :func:`project_coco17`; 3D formats score 1).
        low_scores: range of the unsure joints' scores.
    """

    jitter: float = 0.015
    drop_rate: float = 0.05
    occlusion_rate: float = 0.0
    low_score_rate: float = 0.1
    scores: tuple[float, float] = (0.6, 1.0)
    low_scores: tuple[float, float] = (0.05, 0.3)


def render_keypoints(data: np.ndarray, format: str, *, yaw=None, rng: np.random.Generator | None = None,
                     noise: DetectorNoise | None = None, image_size: tuple[int, int] = (1080, 1920),
                     focal: float = 1060.0) -> np.ndarray:
    """Synthetic NTU-25 clips as keypoints of another format, seen by another camera, as a detector gives them.

    Each clip is first turned by ``yaw`` about the vertical axis through its centre (a camera moved
    around the subjects), then its joints and face points (as in :func:`project_coco17`) are mapped
    onto ``format``'s joints by name (:func:`usdrl.universal.best_of`; a joint the NTU body and the
    face cannot give is absent). 3D formats get metres in their own y direction; 2D formats the
    pixels of :func:`project_coco17`'s camera (MediaPipe's normalised formats: divided by the image
    size), with scores from the face visibility and the noise.

    Args:
        data: ``(N, 3, T, 25, M)`` joints in Kinect camera space (metres); all-zero joints are absent.
        format: a registered keypoint format (:func:`usdrl.keypoints.list_formats`).
        yaw: ``(N,)`` radians (default 0).
        rng: the noise's random numbers (needed with ``noise``).
        noise: :class:`DetectorNoise`; default: none (scores 1, or the face visibility).
        image_size: (height, width) in pixels of the pinhole camera of 2D formats.
        focal: its focal length in pixels.

    Returns:
        ``(N, M, T, V, dims + 1)`` float32 keypoints of ``format`` with a score channel; an absent
        joint (missing from the format's mapping, dropped, outside the image) has zeros throughout.
    """
    from ...keypoints import convert_keypoints, get_format
    from ...universal import best_of

    fmt = get_format(format)
    if data.ndim != 5 or data.shape[1] != 3 or data.shape[3] != len(_J):
        raise InputError(f"expected (N, 3, T, 25, M) NTU-25 joints, got {data.shape}")
    if noise is not None and rng is None:
        raise ConfigError("render_keypoints with noise needs an rng")
    x = np.asarray(data, dtype=np.float64).transpose(0, 4, 2, 3, 1)           # n m t v c
    present = (x != 0).any(-1, keepdims=True)                                 # (N, M, T, 25, 1)
    if yaw is not None:
        center = (x * present).sum((1, 2, 3), keepdims=True) / np.maximum(present.sum((1, 2, 3), keepdims=True), 1)
        turned = np.einsum("nij,nmtvj->nmtvi", _rot("y", np.asarray(yaw, np.float64)), x - center) + center
        x = np.where(present, turned, 0.0)
    if noise is not None:
        x = x + rng.normal(0.0, noise.jitter, x.shape) * _JITTER_SCALE[:, None]
    coco, visibility = _coco17_points(x)
    coco_present = present[..., [_J[_COCO_FROM_NTU.get(n, "head")] for n in COCO17.joint_names], :]
    parts = [convert_keypoints(np.concatenate([points, np.broadcast_to(score, points.shape[:-1])[..., None],
                                               ok.astype(np.float64)], axis=-1),
                               src=src, dst=format, has_scores=False, match_convention=False)
             for points, score, ok, src in ((x, 1.0, present, "ntu25"), (coco, visibility, coco_present, "coco17"))]
    joined, _ = best_of(parts, fmt.joint_names)
    points, score, ok = joined[..., :3], joined[..., 3], joined[..., 4] > 0.999  # a stand-in needs all its joints
    score = 0.35 + 0.6 * score if fmt.dims == 2 else np.ones_like(score)
    if noise is not None:
        unsure = rng.random(score.shape) < noise.low_score_rate
        points = points + rng.normal(0.0, 2.0 * noise.jitter, points.shape) * unsure[..., None]
        low, high = noise.scores if fmt.dims == 2 else (1.0, 1.0)
        score = np.where(unsure, rng.uniform(*noise.low_scores, score.shape),
                         score * rng.uniform(low, high, score.shape))
        ok &= rng.random(ok.shape) >= noise.drop_rate
        ok &= rng.random(ok.shape[:-2] + (1, ok.shape[-1])) >= noise.occlusion_rate
    if fmt.dims == 2:
        pixels, in_front, inside = _pinhole(points, image_size, focal, None)
        ok &= in_front & inside
        points = pixels / np.array(image_size[::-1]) if fmt.convention.units == "normalized" else pixels
    elif fmt.convention.y_up is False:
        points = points * np.array([-1.0, -1.0, 1.0])                           # Kinect y up -> the format's y down
    out = np.concatenate([points, score[..., None]], axis=-1)
    return np.where(ok[..., None], out, 0.0).astype(np.float32)
