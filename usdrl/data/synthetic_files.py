"""Synthetic data written in the raw dataset formats, so that readers and ``usdrl prepare`` run on real-format files.

Each writer draws clips or untrimmed sequences from :class:`~usdrl.data.synthetic.SyntheticActions` and
lays them out the way the dataset is distributed (the folder layouts ``usdrl prepare`` expects):

* :func:`write_synthetic_ntu`: a folder of NTU RGB+D ``SsssCcccPpppRrrrAaaa.skeleton`` files (CRLF).
* :func:`write_synthetic_pkummd`: a PKU-MMD folder: skeleton files, label files and the two split
  files, with the released folder and file names of phase 1 or phase 2.
* :func:`write_synthetic_uav`: a folder of UAV-Human ``P…S…G…B…H…UC…LC…A…R…_….txt`` files holding the
  COCO-17 projection of the clips (joint lines ``x y score`` in pixels).
* :func:`write_synthetic_ntu2d`: a pyskl ``ntu60_hrnet.pkl``-style pickle (2D COCO-17 keypoints).

:func:`write_synthetic` picks one of them by format name (the ``usdrl synth`` command).

Shapes: ``C`` coordinates, ``T`` frames, ``V`` joints, ``M`` persons.
"""

import logging
import pickle
from os import PathLike
from pathlib import Path

import numpy as np

from .._io import atomic_write
from ..errors import ConfigError
from .ntu import split_ntu_samples, write_ntu_skeleton
from .pkummd import ActionInstance, write_pkummd_labels, write_pkummd_skeleton, write_pkummd_split
from .synthetic import SyntheticActions, SyntheticClips, project_coco17
from .uav import write_uav_skeleton

logger = logging.getLogger(__name__)

#: Folder and split-file names of the PKU-MMD releases, per phase: (skeletons, labels, cross-subject, cross-view).
PKUMMD_LAYOUT = {
    1: ("PKU_Skeleton_Renew", "Train_Label_PKU_final", "Split/cross-subject.txt", "Split/cross-view.txt"),
    2: ("Skeleton_v2", "Label_PKUMMD_v2", "cross_subject_v2.txt", "cross_view_v2.txt"),
}
#: PKU-MMD view letter of each synthetic camera ID (1: +45 deg, 2: front, 3: -45 deg).
CAMERA_VIEWS = {1: "L", 2: "M", 3: "R"}
#: Image size ``(height, width)`` of the 2D projections (the NTU colour camera).
IMAGE_SHAPE = (1080, 1920)


def _unique_clips(clips: SyntheticClips) -> list[tuple[int, str]]:
    """``(index, name)`` of each clip whose NTU name was not used by an earlier clip."""
    seen, out = set(), []
    for i, name in enumerate(clips.names()):
        if name in seen:
            logger.debug("synthetic clip %d repeats the name %s; not written", i, name)
            continue
        seen.add(name)
        out.append((i, name))
    return out


def _valid(clips: SyntheticClips, i: int) -> np.ndarray:
    """Clip ``i`` without its padding: ``(3, T_i, 25, 2)``."""
    return clips.data[i, :, : clips.lengths[i]]


def write_synthetic_ntu(
    folder: str | PathLike, num_clips: int, *, seed: int = 0, generator: SyntheticActions | None = None
) -> list[Path]:
    """Write ``num_clips`` synthetic clips as NTU ``.skeleton`` files named by :meth:`ClipMeta.names`.

    Single-person classes get one body per frame, interactions two. A clip whose name an
    earlier clip already has is skipped (names encode setup, camera, subject, replication
    and class, which can repeat), so fewer files than ``num_clips`` may be written.
    Returns the files written, in clip order.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    clips = (generator or SyntheticActions()).clips(num_clips, seed=seed)
    return [write_ntu_skeleton(folder / f"{name}.skeleton", _valid(clips, i)) for i, name in _unique_clips(clips)]


def _pkummd_stem(phase: int, index: int, camera: int) -> str:
    """Stem of sequence ``index``: ``XXXX-V`` (phase 1) or ``AxxNyy-V`` (phase 2, unique for index < 338)."""
    view = CAMERA_VIEWS[camera]
    if phase == 1:
        return f"{index + 1:04d}-{view}"
    return f"A{index // 13 % 26 + 1:02d}N{index % 13 + 1:02d}-{view}"


def write_synthetic_pkummd(
    folder: str | PathLike,
    num_sequences: int,
    *,
    phase: int = 1,
    seed: int = 0,
    generator: SyntheticActions | None = None,
) -> list[Path]:
    """Write ``num_sequences`` untrimmed synthetic sequences as a PKU-MMD release folder.

    Layout (see :data:`PKUMMD_LAYOUT`), phase 1::

        folder/PKU_Skeleton_Renew/0001-M.txt      150 numbers per frame line
        folder/Train_Label_PKU_final/0001-M.txt   label,start,end,confidence lines
        folder/Split/cross-subject.txt, folder/Split/cross-view.txt

    and for phase 2 ``Skeleton_v2/``, ``Label_PKUMMD_v2/`` and ``cross_subject_v2.txt`` /
    ``cross_view_v2.txt`` in ``folder``, stems ``AxxNyy-V``. Labels are 1-based class
    indices (synthetic class ``k`` is ``k + 1``), frames ``[start, end)``, confidence 2.
    Cross-subject: every third distinct subject (in ID order, starting with the lowest) is
    a test subject; cross-view: views M and R train, L tests. Skeletons are written with
    ``%.9g`` so that they read back exactly. Returns the skeleton files, in sequence order.
    """
    if phase not in PKUMMD_LAYOUT:
        raise ConfigError(f"phase must be 1 or 2, got {phase}")
    folder = Path(folder)
    skeleton_dir, label_dir, xsub_file, xview_file = (folder / part for part in PKUMMD_LAYOUT[phase])
    for path in (skeleton_dir, label_dir, xsub_file.parent):
        path.mkdir(parents=True, exist_ok=True)
    generator = generator or SyntheticActions()
    paths, subjects, stems = [], [], []
    for i in range(num_sequences):
        sequence = generator.untrimmed(seed=seed * 1_000_003 + i)
        stem = _pkummd_stem(phase, i, int(sequence.meta.camera[0]))
        paths.append(write_pkummd_skeleton(skeleton_dir / f"{stem}.txt", sequence.data, float_format="%.9g"))
        write_pkummd_labels(label_dir / f"{stem}.txt",
                            [ActionInstance(k + 1, start, end, 2) for k, start, end in sequence.segments])
        subjects.append(int(sequence.meta.subject[0]))
        stems.append(stem)
    test_subjects = set(sorted(set(subjects))[::3])
    xsub_test = [s for s, subject in zip(stems, subjects, strict=True) if subject in test_subjects]
    xview_test = [s for s in stems if s.endswith("-L")]
    for path, test in ((xsub_file, xsub_test), (xview_file, xview_test)):
        write_pkummd_split(path, [s for s in stems if s not in test], test)
    return paths


def _coco_clip(clip: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """COCO-17 projection of an NTU-25 clip ``(3, T, 25, M)``: pixels ``(M', T, 17, 2)``, scores ``(M', T, 17)``.

    Persons that are all zero in the clip are dropped (``M'`` persons remain).
    """
    keypoints, scores = project_coco17(clip)
    present = (clip != 0).any(axis=(0, 1, 2))
    return keypoints[present], scores[present]


def write_synthetic_uav(
    folder: str | PathLike, num_clips: int, *, seed: int = 0, generator: SyntheticActions | None = None
) -> list[Path]:
    """Write ``num_clips`` synthetic clips as UAV-Human skeleton files (17 joints, COCO order).

    Joint lines hold ``x y score``: the clip's COCO-17 projection in pixels and its score
    (the reader takes them as x, y, z). File names follow the UAV-Human scheme with
    ``P`` = subject - 1, ``S`` = setup, ``A`` = the 0-based class, ``R`` = replication - 1
    and the clip index as the 8-digit timestamp, so every name is unique. Returns the
    files written, in clip order.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    clips = (generator or SyntheticActions()).clips(num_clips, seed=seed)
    meta = clips.meta
    paths = []
    for i in range(num_clips):
        keypoints, scores = _coco_clip(_valid(clips, i))
        data = np.concatenate([keypoints, scores[..., None]], axis=-1).transpose(3, 1, 2, 0)  # (3, T, 17, M)
        name = (f"P{meta.subject[i] - 1:03d}S{meta.setup[i]:02d}G10B00H00UC102000LC092000"
                f"A{clips.labels[i]:03d}R{meta.replication[i] - 1}_{i:08d}")
        paths.append(write_uav_skeleton(folder / f"{name}.txt", data))
    return paths


def write_synthetic_ntu2d(
    path: str | PathLike, num_clips: int, *, seed: int = 0, generator: SyntheticActions | None = None
) -> Path:
    """Write a pyskl ``ntu60_hrnet.pkl``-style pickle of ``num_clips`` synthetic clips.

    The pickle is ``{"split": {"xsub_train", "xsub_val", "xview_train", "xview_val"},
    "annotations": [...]}``; each annotation has ``frame_dir`` (the NTU name), ``label``
    (0-based), ``img_shape`` and ``original_shape`` ``(1080, 1920)``, ``total_frames``,
    ``keypoint`` ``(M, T, 17, 2)`` float16 pixels and ``keypoint_score`` ``(M, T, 17)``
    float16 (``M`` the persons present). Split lists follow the NTU-60 rules, official
    missing samples dropped; repeated names are skipped as in :func:`write_synthetic_ntu`.
    Returns ``path``.
    """
    clips = (generator or SyntheticActions()).clips(num_clips, seed=seed)
    annotations = []
    for i, name in _unique_clips(clips):
        keypoints, scores = _coco_clip(_valid(clips, i))
        annotations.append({
            "frame_dir": name, "label": int(clips.labels[i]), "img_shape": IMAGE_SHAPE,
            "original_shape": IMAGE_SHAPE, "total_frames": int(clips.lengths[i]),
            "keypoint": keypoints.astype(np.float16), "keypoint_score": scores.astype(np.float16),
        })
    names = [ann["frame_dir"] for ann in annotations]
    split = {}
    for protocol in ("xsub", "xview"):
        parts = split_ntu_samples(names, f"ntu60-{protocol}")
        split[f"{protocol}_train"], split[f"{protocol}_val"] = parts["train"], parts["test"]

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            pickle.dump({"split": split, "annotations": annotations}, f, protocol=2)

    return atomic_write(path, write)


#: Raw formats :func:`write_synthetic` writes: name -> (what is counted, the ``usdrl prepare`` sources reading it).
SYNTHETIC_FORMATS = {
    "ntu": ("clips", "ntu60, ntu120"),
    "pkummd1": ("sequences", "pkummd1"),
    "pkummd2": ("sequences", "pkummd2"),
    "uav": ("clips", "uav"),
    "ntu2d": ("clips", "ntu2d"),
}


def write_synthetic(fmt: str, out: str | PathLike, count: int, *, seed: int = 0) -> list[Path]:
    """Write ``count`` synthetic clips (or untrimmed sequences for ``pkummd1``/``pkummd2``) in the raw
    format ``fmt`` (a key of :data:`SYNTHETIC_FORMATS`) to ``out``: a folder, or the pickle file for
    ``ntu2d``. Returns the skeleton files written (for ``ntu2d`` the pickle)."""
    if fmt not in SYNTHETIC_FORMATS:
        raise ConfigError(f"unknown synthetic format {fmt!r}; expected one of {', '.join(SYNTHETIC_FORMATS)}")
    if count < 1:
        raise ConfigError(f"count must be >= 1, got {count}", keywords=("count",))
    if fmt.startswith("pkummd"):
        return write_synthetic_pkummd(out, count, phase=int(fmt[-1]), seed=seed)
    if fmt == "ntu2d":
        return [write_synthetic_ntu2d(out, count, seed=seed)]
    return {"ntu": write_synthetic_ntu, "uav": write_synthetic_uav}[fmt](out, count, seed=seed)
