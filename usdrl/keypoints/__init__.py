"""Keypoint formats and the conversion between them.

* :mod:`usdrl.keypoints.formats`: the registry (:func:`get_format`, :func:`list_formats`,
  :func:`register_format`) of COCO-17, COCO-WholeBody body, Halpe-26, H36M-17, OpenPose
  BODY_25 / COCO-18, MediaPipe 33, Kinect v2 / NTU-25, Kinect v1, UTD-MHAD, UAV-Human, SMPL-24.
* :func:`convert_keypoints`: any format to any other through joint names, with a per-joint mask.
* :mod:`usdrl.keypoints.tracking`: per-frame detections to person tracks (imported on use: scipy).
"""

from .convert import STAND_INS, ConvertedKeypoints, JointSource, conversion_matrix, convert_keypoints
from .formats import FORMATS, Convention, KeypointFormat, get_format, list_formats, register_format

__all__ = [
    "FORMATS",
    "STAND_INS",
    "Convention",
    "ConvertedKeypoints",
    "JointSource",
    "KeypointFormat",
    "conversion_matrix",
    "convert_keypoints",
    "get_format",
    "list_formats",
    "register_format",
]
