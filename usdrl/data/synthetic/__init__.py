"""Synthetic skeleton actions: the project's stand-in for NTU RGB+D and PKU-MMD data.

A procedural articulated body on the NTU-25 layout is posed by 26 parameters per frame
(root translation and heading, trunk, head and limb angles); forward kinematics turns the
poses into joint positions, so every bone keeps its length over time. Each action class is
a short program that animates the pose parameters over a normalised time ``u in [0, 1]``.
Clips vary in speed, amplitude, phase, duration, body (per subject), viewpoint (per
camera and setup) and sensor noise, and carry idle motion (breathing, sway).

Coordinates follow Kinect v2 camera space, as in NTU and PKU-MMD: metres, ``y`` up,
``z`` the distance from the sensor (bodies stand about 2.5-4 m away), ``x`` towards the
sensor's left, so a body facing the camera has its right shoulder at larger ``x``. The
pinhole projection of :func:`project_coco17` makes an unmirrored image (Kinect's own colour
frames are mirrored), so ``x`` runs leftwards there and the left shoulder of a subject
facing the camera lands on the right of the image.

Everything is numpy and deterministic: clip ``i`` of ``clips(n, seed=s)`` depends only on
``(s, i)``, and bodies and camera setups depend only on ``population_seed``.

Legend: ``N`` clips, ``C = 3`` coordinates, ``T`` frames, ``V = 25`` joints, ``M = 2``
persons; clip arrays are ``(C, T, V, M)`` like the rest of the library.

Modules: :mod:`~usdrl.data.synthetic.body` (pose parameters, body dimensions, forward
kinematics), :mod:`~usdrl.data.synthetic.programs` (one program per action class),
:mod:`~usdrl.data.synthetic.generator` (:class:`SyntheticActions`, :func:`make_clips`,
:func:`make_untrimmed`) and :mod:`~usdrl.data.synthetic.projection` (:func:`project_coco17`,
:func:`render_keypoints`). Every public name is importable from ``usdrl.data.synthetic`` itself.
"""

from .generator import (
    CAMERA_YAW_DEG,
    ClipMeta,
    SyntheticActions,
    SyntheticClips,
    UntrimmedSequence,
    make_clips,
    make_untrimmed,
)
from .programs import ACTION_NAMES, NUM_CLASSES, TWO_PERSON_CLASSES
from .projection import DetectorNoise, project_coco17, render_keypoints

__all__ = [
    "ACTION_NAMES",
    "CAMERA_YAW_DEG",
    "NUM_CLASSES",
    "TWO_PERSON_CLASSES",
    "ClipMeta",
    "DetectorNoise",
    "SyntheticActions",
    "SyntheticClips",
    "UntrimmedSequence",
    "make_clips",
    "make_untrimmed",
    "project_coco17",
    "render_keypoints",
]
