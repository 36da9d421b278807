"""What pose estimators write, as keypoint clips: the COCO results JSON and OpenPose's per-frame JSON.

* **COCO results** (MMPose, AlphaPose, Detectron2, YOLO-pose exports; one file per video): a
  JSON list of detections ``{"image_id", "keypoints": [x1, y1, s1, x2, ...], ...}``, with an
  optional ``"track_id"``; a COCO-style object with such an ``"annotations"`` list is read too.
  Frames are the image ids (integers: frame ``image_id - min``; otherwise in sorted order).
  17 keypoints are COCO-17, 26 Halpe-26, 133 COCO-WholeBody (its first 23, body and feet, are kept).
* **OpenPose** (``--write_json``; one folder per video): one ``<video>_<frame>_keypoints.json``
  per frame, ``{"people": [{"person_id": [-1], "pose_keypoints_2d": [x1, y1, c1, ...]}, ...]}``,
  frames in file-name order; 25 keypoints are BODY_25, 18 COCO-18.

Where the detections carry no identities (no ``track_id``, OpenPose's ``person_id`` of -1),
:class:`~usdrl.keypoints.tracking.PoseTracker` links them into persons. Either way a clip holds
every person over every frame, NaN where a person is not seen.
"""

import json
from dataclasses import dataclass
from os import PathLike
from pathlib import Path

import numpy as np

from ..errors import DataFormatError
from ..keypoints.tracking import PoseTracker
from .importers import KeypointClip

OPENPOSE_SUFFIX = "_keypoints.json"
#: Format of each joint count of the COCO results, and the joints kept (COCO-WholeBody: body and feet).
COCO_RESULT_FORMATS = {17: ("coco17", 17), 26: ("halpe26", 26), 133: ("coco_wholebody23", 23)}
OPENPOSE_FORMATS = {25: "openpose25", 18: "openpose18"}


def _load_json(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise DataFormatError(f"{path}, line {exc.lineno}: not valid JSON ({exc.msg})") from None
    except UnicodeDecodeError:
        raise DataFormatError(f"{path}: not UTF-8 text") from None


def _flat_keypoints(where: str, values, joints: int | None = None) -> np.ndarray:
    """``[x1, y1, s1, ...]`` -> ``(V, 3)`` float32."""
    try:
        flat = np.asarray(values, dtype=np.float32)
    except (TypeError, ValueError):
        raise DataFormatError(f"{where}: keypoints must be a flat list of numbers") from None
    if flat.ndim != 1 or len(flat) == 0 or len(flat) % 3 or (joints is not None and len(flat) != 3 * joints):
        expected = "a multiple of 3" if joints is None else f"{3 * joints}"
        raise DataFormatError(f"{where}: {flat.size} keypoint values; expected {expected} (x, y, score per joint)")
    return flat.reshape(-1, 3)


def persons_over_frames(frames: list[tuple[list[int] | None, np.ndarray]]) -> np.ndarray:
    """Per frame ``(ids or None, poses (P, V, 3))`` -> ``(M, T, V, 3)``, NaN where a person is unseen.

    With ids in every frame the persons are those ids (in sorted order); otherwise the poses
    are linked by a :class:`~usdrl.keypoints.tracking.PoseTracker` (keypoint distance).
    """
    num_joints = next(poses.shape[1] for _, poses in frames if len(poses))
    if all(ids is not None for ids, _ in frames):
        order = sorted({i for ids, _ in frames for i in ids})
        out = np.full((len(order), len(frames), num_joints, 3), np.nan, dtype=np.float32)
        for t, (ids, poses) in enumerate(frames):
            for person, pose in zip(ids, poses, strict=True):
                out[order.index(person), t] = pose
        return out
    tracker = PoseTracker()
    for _, poses in frames:
        tracker.update(poses if len(poses) else np.zeros((0, num_joints, 3), np.float32))
    return np.stack([track.keypoints(0, len(frames)) for track in tracker.tracks])


def read_coco_results(path: str | PathLike) -> KeypointClip:
    """One video's detections in the COCO results format -> a clip (see the module notes)."""
    path = Path(path)
    content = _load_json(path)
    if isinstance(content, dict) and isinstance(content.get("annotations"), list):
        content = content["annotations"]
    if not isinstance(content, list) or not content:
        raise DataFormatError(f"{path}: expected a non-empty JSON list of detections with 'image_id' and "
                              f"'keypoints'")
    by_frame: dict = {}
    joints = None
    for index, det in enumerate(content):
        where = f"{path}: detection {index}"
        if not isinstance(det, dict) or "image_id" not in det or "keypoints" not in det:
            raise DataFormatError(f"{where}: expected an object with 'image_id' and 'keypoints'")
        if not isinstance(det["image_id"], int | str) or isinstance(det["image_id"], bool):
            raise DataFormatError(f"{where}: 'image_id' must be an integer or a string, found {det['image_id']!r}")
        pose = _flat_keypoints(where, det["keypoints"], joints)
        joints = len(pose)
        track = det.get("track_id")
        if track is not None and (not isinstance(track, int) or isinstance(track, bool)):
            raise DataFormatError(f"{where}: 'track_id' must be an integer, found {track!r}")
        by_frame.setdefault(det["image_id"], []).append((track, pose))
    if joints not in COCO_RESULT_FORMATS:
        raise DataFormatError(f"{path}: {joints} keypoints per detection; expected one of "
                              f"{', '.join(map(str, COCO_RESULT_FORMATS))} (COCO-17, Halpe-26, COCO-WholeBody)")
    fmt, kept = COCO_RESULT_FORMATS[joints]
    image_ids = list(by_frame)
    if all(isinstance(i, int) for i in image_ids):
        first = min(image_ids)
        slots = list(range(first, max(image_ids) + 1))
    else:
        slots = sorted(image_ids, key=str)
    frames = []
    for image_id in slots:
        found = by_frame.get(image_id, [])
        ids = [track for track, _ in found]
        poses = np.stack([pose[:kept] for _, pose in found]) if found else np.zeros((0, kept, 3), np.float32)
        frames.append((None if None in ids else ids, poses))
    return KeypointClip(persons_over_frames(frames), format=fmt)


def read_openpose_folder(folder: str | PathLike) -> KeypointClip:
    """One video's OpenPose ``*_keypoints.json`` files -> a clip (see the module notes)."""
    folder = Path(folder)
    files = sorted(folder.glob(f"*{OPENPOSE_SUFFIX}"))
    if not files:
        raise DataFormatError(f"{folder}: no OpenPose *{OPENPOSE_SUFFIX} files")
    frames = []
    joints = None
    for file in files:
        content = _load_json(file)
        people = content.get("people") if isinstance(content, dict) else None
        if not isinstance(people, list):
            raise DataFormatError(f"{file}: expected an object with a 'people' list")
        ids, poses = [], []
        for index, person in enumerate(people):
            where = f"{file}: people[{index}]"
            if not isinstance(person, dict) or "pose_keypoints_2d" not in person:
                raise DataFormatError(f"{where}: no 'pose_keypoints_2d'")
            pose = _flat_keypoints(where, person["pose_keypoints_2d"], joints)
            joints = len(pose)
            person_id = person.get("person_id", -1)
            person_id = person_id[0] if isinstance(person_id, list) and person_id else person_id
            ids.append(None if not isinstance(person_id, int) or person_id < 0 else person_id)
            poses.append(pose)
        frames.append((None if None in ids else ids,
                       np.stack(poses) if poses else np.zeros((0, joints or 25, 3), np.float32)))
    if joints is None:
        raise DataFormatError(f"{folder}: no person in any of the {len(files)} frames")
    if joints not in OPENPOSE_FORMATS:
        raise DataFormatError(f"{folder}: {joints} keypoints per person; expected 25 (BODY_25) or 18 (COCO-18)")
    frames = [(ids, poses if len(poses) else np.zeros((0, joints, 3), np.float32)) for ids, poses in frames]
    return KeypointClip(persons_over_frames(frames), format=OPENPOSE_FORMATS[joints])


def read_pose_estimator_output(path: str | PathLike) -> KeypointClip:
    """An OpenPose frame folder (:func:`read_openpose_folder`) or a COCO results file (:func:`read_coco_results`)."""
    path = Path(path)
    return read_openpose_folder(path) if path.is_dir() else read_coco_results(path)


def find_pose_estimator_outputs(raw: str | PathLike) -> dict[str, Path]:
    """``{clip name: path}`` below ``raw``: each folder holding ``*_keypoints.json`` files (OpenPose) and
    each other ``.json`` file (COCO results), named by their path below ``raw`` (without suffix)."""
    raw = Path(raw)
    if not raw.is_dir():
        raise DataFormatError(f"{raw}: not a folder; expected COCO results .json files or OpenPose output folders")
    clips: dict[str, Path] = {}
    for folder in sorted([raw, *(p for p in raw.rglob("*") if p.is_dir())]):
        files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() == ".json")
        if any(p.name.endswith(OPENPOSE_SUFFIX) for p in files):
            clips[folder.relative_to(raw).as_posix() if folder != raw else raw.name] = folder
        else:
            clips.update({p.relative_to(raw).with_suffix("").as_posix(): p for p in files})
    if not clips:
        raise DataFormatError(f"{raw}: no COCO results .json files or OpenPose *{OPENPOSE_SUFFIX} folders found")
    return clips


@dataclass(frozen=True)
class KeypointSequence:
    """One recording's keypoints as a universal model's detectors take them
    (:func:`usdrl.tasks.detection.detect_sequence` with ``format`` and ``image_size``).

    Attributes:
        keypoints: ``(M, T, V, C)`` float32: coordinates, then the score when there is one.
        format: the registered keypoint format.
        image_size: ``(height, width)`` of the images for a format in normalised units (MediaPipe),
            when the file gives it; else None.
    """

    keypoints: np.ndarray
    format: str
    image_size: tuple[int, int] | None = None


def _is_coco_results(path: Path) -> bool:
    """Whether a ``.json`` file is a COCO results list (or a COCO-style object with ``annotations``)."""
    content = _load_json(path)
    return (isinstance(content, list) and bool(content) and isinstance(content[0], dict)) or (
        isinstance(content, dict) and isinstance(content.get("annotations"), list))


def read_keypoint_sequence(path: str | PathLike, format: str | None = None) -> KeypointSequence:
    """The keypoints of one recording, from any file the library reads keypoints from: a keypoint file
    (``.npy``, ``.npz``, ``.json``; :func:`~usdrl.data.read_keypoint_file`), a COCO results JSON or an
    OpenPose folder (:func:`read_pose_estimator_output`).

    ``format``: the keypoint format; default: the file's own (a ``format`` field, the pose estimator's
    joint count), else the only registered format with the clip's joint count. Scores given apart from
    the keypoints become their last channel. DataFormatError when the channels fit neither the format's
    coordinates nor coordinates and a score.
    """
    from ..keypoints import get_format
    from .importers import guess_format, read_keypoint_file

    path = Path(path)
    if path.is_dir() or (path.suffix.lower() == ".json" and _is_coco_results(path)):
        clip = read_pose_estimator_output(path)
    else:
        clip = read_keypoint_file(path)
    keypoints = clip.keypoints
    fmt = get_format(format or clip.format or guess_format(keypoints.shape[2], where=f"{path}: "))
    if keypoints.shape[2] != fmt.num_joints:
        raise DataFormatError(f"{path}: {keypoints.shape[2]} joints, the format {fmt.name} has {fmt.num_joints}")
    if clip.scores is not None and keypoints.shape[3] == fmt.dims:
        keypoints = np.concatenate([keypoints, clip.scores[..., None]], axis=-1)
    if keypoints.shape[3] not in (fmt.dims, fmt.dims + 1):
        raise DataFormatError(f"{path}: {keypoints.shape[3]} channels per joint; the {fmt.dims}D format {fmt.name} "
                              f"takes {fmt.dims} coordinates, optionally followed by a score")
    normalised = fmt.convention.units == "normalized"
    image_size = tuple(int(s) for s in clip.image_shape) if normalised and clip.image_shape else None
    return KeypointSequence(np.ascontiguousarray(keypoints, dtype=np.float32), fmt.name, image_size)
