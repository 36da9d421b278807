"""Dataset readers and writers, and preprocessing, for skeleton action data.

Readers return :class:`SkeletonSequence` objects whose ``data`` is ``(C, T, V, M)``
float32; preprocessing functions (:mod:`usdrl.data.preprocess`) turn them into model
clips. Only numpy and einops are needed.

* NTU RGB+D 60/120 ``.skeleton``: :func:`read_ntu_skeleton`, :func:`write_ntu_skeleton`,
  :func:`parse_ntu_name`, :func:`missing_samples`, :func:`split_ntu_samples`.
* PKU-MMD I/II: :func:`read_pkummd_skeleton`, :func:`read_pkummd_labels`,
  :func:`read_pkummd_split`, :func:`frame_labels` and the writers.
* UAV-Human: :func:`read_uav_skeleton`, :func:`write_uav_skeleton`, :func:`parse_uav_name`,
  :func:`split_uav_samples`.
* pyskl / MMAction2 pickles and pose-estimator output: :func:`load_pyskl`,
  :func:`annotation_to_clip`, :func:`pose_to_clip`.
* Prepared datasets (``usdrl prepare``): :func:`prepare_dataset`, :func:`read_manifest`,
  :class:`SkeletonDataset`; read by a universal model: :class:`UniversalDataset`; several as one:
  :class:`MixedDataset`.
* Your own data (``usdrl prepare folder|keypoints|pyskl``): :func:`prepare_folder`,
  :func:`prepare_keypoints`, :func:`prepare_pyskl`, :func:`read_keypoint_file`,
  :class:`ImportOptions`; one model input per tracked person: :func:`track_inputs`.
* Synthetic actions: :mod:`usdrl.data.synthetic`; in the raw formats:
  :mod:`usdrl.data.synthetic_files`.
"""

from .importers import (
    ImportOptions,
    prepare_folder,
    prepare_keypoints,
    prepare_pyskl,
    read_keypoint_file,
    track_inputs,
)
from .ntu import (
    NTUSampleName,
    is_training_sample,
    missing_samples,
    parse_ntu_name,
    read_ntu_skeleton,
    read_sample_list,
    split_ntu_samples,
    write_ntu_skeleton,
)
from .pkummd import (
    ActionInstance,
    frame_labels,
    parse_pkummd_name,
    read_pkummd_labels,
    read_pkummd_skeleton,
    read_pkummd_split,
    write_pkummd_labels,
    write_pkummd_skeleton,
    write_pkummd_split,
)
from .prepared import (
    MixedDataset,
    SkeletonDataset,
    UniversalDataset,
    open_split,
    prepare_dataset,
    read_manifest,
    resolve_split,
)
from .preprocess import (
    ALIGNMENT_RECIPES,
    AlignmentRecipe,
    align_view,
    body_energy,
    center_crop_resize,
    center_on_joint,
    crop_observed,
    fill_empty_frames,
    normalize_2d,
    observed_length,
    pad_2d,
    pad_bodies,
    preprocess_3d,
    random_crop_resize,
    resample,
    select_bodies,
    to_model_input,
    top_bodies,
)
from .pyskl import annotation_to_clip, clip_to_pyskl, load_pyskl, pose_to_clip, pyskl_to_clip, restricted_load
from .sequence import SkeletonSequence
from .uav import UAVSampleName, parse_uav_name, read_uav_skeleton, split_uav_samples, write_uav_skeleton

__all__ = [
    "ALIGNMENT_RECIPES",
    "ActionInstance",
    "AlignmentRecipe",
    "ImportOptions",
    "MixedDataset",
    "NTUSampleName",
    "SkeletonDataset",
    "SkeletonSequence",
    "UAVSampleName",
    "UniversalDataset",
    "align_view",
    "annotation_to_clip",
    "body_energy",
    "center_crop_resize",
    "center_on_joint",
    "clip_to_pyskl",
    "crop_observed",
    "fill_empty_frames",
    "frame_labels",
    "is_training_sample",
    "load_pyskl",
    "missing_samples",
    "normalize_2d",
    "observed_length",
    "open_split",
    "pad_2d",
    "pad_bodies",
    "parse_ntu_name",
    "parse_pkummd_name",
    "parse_uav_name",
    "pose_to_clip",
    "prepare_dataset",
    "prepare_folder",
    "prepare_keypoints",
    "prepare_pyskl",
    "preprocess_3d",
    "pyskl_to_clip",
    "random_crop_resize",
    "read_manifest",
    "read_ntu_skeleton",
    "read_pkummd_labels",
    "read_pkummd_skeleton",
    "read_keypoint_file",
    "read_pkummd_split",
    "read_sample_list",
    "read_uav_skeleton",
    "resample",
    "resolve_split",
    "restricted_load",
    "select_bodies",
    "split_ntu_samples",
    "split_uav_samples",
    "to_model_input",
    "top_bodies",
    "track_inputs",
    "write_ntu_skeleton",
    "write_pkummd_labels",
    "write_pkummd_skeleton",
    "write_pkummd_split",
    "write_uav_skeleton",
]
