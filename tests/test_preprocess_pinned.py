"""View alignment and body selection pinned by the joints' names, not by the library's constants.

The joint indices come from the joint tables of the data-formats spec (NTU: §"Kinect v2
joints", UAV-Human: COCO-17), and the expectations from the reference recipe (UmURL's
``pre_normalization``): centre per frame on body 0's centre joint, then the *minimal* rotation
that takes one bone of body 0 in frame 0 onto an axis. A body already facing the camera is left
as it is; a body turned about an axis normal to that bone is turned back, whatever the sign.
These tests hold for any faithful implementation of that recipe. Turns are kept within 90 degrees:
beyond, the reference's handling of near-opposite bones is pinned with the alignment's own tests.
"""

import math

import numpy as np
import pytest

from usdrl.data import preprocess_3d
from usdrl.data.preprocess import align_view

# NTU RGB+D (Kinect v2), 0-based: SpineBase 0, SpineMid 1, ShoulderLeft 4, ShoulderRight 8.
NTU_SPINE_BASE, NTU_SPINE_MID, NTU_SHOULDER_LEFT, NTU_SHOULDER_RIGHT = 0, 1, 4, 8
# COCO-17 (UAV-Human): left_shoulder 5, right_shoulder 6, left_hip 11.
COCO_LEFT_SHOULDER, COCO_RIGHT_SHOULDER, COCO_LEFT_HIP = 5, 6, 11


def axis_angle(axis, degrees) -> np.ndarray:
    """Counter-clockwise rotation about ``axis`` (Euler-Rodrigues): v cos + (k x v) sin + k (k.v)(1 - cos)."""
    k = np.asarray(axis, dtype=np.float64) / np.linalg.norm(axis)
    theta = math.radians(degrees)
    cross = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return math.cos(theta) * np.eye(3) + math.sin(theta) * cross + (1 - math.cos(theta)) * np.outer(k, k)


def ntu_body_facing_the_camera(seed: int, frames: int = 5) -> np.ndarray:
    """``(3, T, 25, 2)``: body 0 upright along z, right shoulder at +x of the left one (it faces the
    camera in the reference's frame); the other joints and body 1 random; body 0's spine-mid moves."""
    rng = np.random.default_rng(seed)
    data = rng.normal(scale=0.3, size=(3, frames, 25, 2))
    data[:, :, NTU_SPINE_MID, 0] = np.array([0.1, 0.2, 3.0])[:, None]
    data[:, :, NTU_SPINE_BASE, 0] = np.array([0.1, 0.2, 2.7])[:, None]
    data[:, :, NTU_SHOULDER_RIGHT, 0] = np.array([0.3, 0.2, 3.25])[:, None]
    data[:, :, NTU_SHOULDER_LEFT, 0] = np.array([-0.1, 0.2, 3.25])[:, None]
    data[..., 0] += np.linspace(0, 0.5, frames)[None, :, None]  # the body walks: centring is per frame
    return data


def centred(data: np.ndarray, joint: int) -> np.ndarray:
    return data - data[:, :, joint:joint + 1, 0:1]


def turned(data: np.ndarray, matrix: np.ndarray, offset=(0.7, -0.4, 1.1)) -> np.ndarray:
    """The clip seen from another camera: every point rotated by ``matrix`` and shifted."""
    return np.einsum("ij,jtvm->itvm", matrix, data) + np.asarray(offset)[:, None, None, None]


def test_ntu_a_body_facing_the_camera_is_only_centred():
    data = ntu_body_facing_the_camera(0)
    out = align_view(data, "ntu")
    np.testing.assert_allclose(out, centred(data, NTU_SPINE_MID), atol=1e-6)
    shoulders = out[:, 0, NTU_SHOULDER_RIGHT, 0] - out[:, 0, NTU_SHOULDER_LEFT, 0]
    np.testing.assert_allclose(shoulders, [0.4, 0, 0], atol=1e-6)  # right shoulder on the +x side


@pytest.mark.parametrize("axis", [(0, 0, 1), (0, 1, 0), (0, 1, 1), (0, -2, 1)])
@pytest.mark.parametrize("degrees", [-80, -35, 20, 60])
def test_ntu_a_turned_body_is_turned_back(axis, degrees):
    # Any turn about an axis normal to the shoulders (the vertical, the depth axis, or between) is
    # undone by the minimal rotation, whichever its sign; a sign slip would double it instead, and
    # aligning on the shoulders the wrong way round would turn the clip about half round.
    data = ntu_body_facing_the_camera(1)
    out = align_view(turned(data, axis_angle(axis, degrees)), "ntu")
    np.testing.assert_allclose(out, centred(data, NTU_SPINE_MID), atol=1e-5)


def uav_body_upright(seed: int, frames: int = 4) -> np.ndarray:
    """``(3, T, 17, 2)``: body 0's left hip -> left shoulder bone along +z."""
    rng = np.random.default_rng(seed)
    data = rng.normal(scale=0.3, size=(3, frames, 17, 2)) + 0.5
    data[:, :, COCO_LEFT_HIP, 0] = np.array([0.2, -0.1, 1.0])[:, None]
    data[:, :, COCO_LEFT_SHOULDER, 0] = np.array([0.2, -0.1, 1.5])[:, None]
    return data


@pytest.mark.parametrize("axis", [(1, 0, 0), (0, 1, 0), (1, -1, 0)])
@pytest.mark.parametrize("degrees", [-80, -35, 35])
def test_uav_a_tilted_body_is_stood_up(axis, degrees):
    # The UAV recipe takes left hip -> left shoulder onto +z: tilts about x and y (and between) are undone.
    data = uav_body_upright(3)
    out = align_view(turned(data, axis_angle(axis, degrees)), "uav")
    center = out[:, :, 1:2, 0:1]
    np.testing.assert_allclose(out[:, 0, COCO_LEFT_SHOULDER, 0] - out[:, 0, COCO_LEFT_HIP, 0], [0, 0, 0.5],
                               atol=1e-6)
    assert not center.any()  # centred per frame on body 0's joint 1
    np.testing.assert_allclose(out, centred(data, 1), atol=1e-5)


def test_the_fifth_body_is_never_a_candidate():
    # The reference parses at most 4 bodies per frame: a 5th, however energetic, is dropped. Among the
    # first four the two of highest energy (sum over xyz of the std over present frames) are kept,
    # the more energetic first.
    rng = np.random.default_rng(4)
    spreads = [0.1, 0.4, 0.2, 0.3, 5.0]  # energies follow the spreads: body 4, then 1, then 3
    data = np.stack([rng.normal(scale=s, size=(3, 6, 25)) + 1 for s in spreads], axis=-1)
    out = preprocess_3d(data, "ntu")
    np.testing.assert_allclose(out, align_view(data[..., [1, 3]], "ntu"), atol=1e-6)
    everything = preprocess_3d(data, "ntu", max_candidates=None)
    np.testing.assert_allclose(everything, align_view(data[..., [4, 1]], "ntu"), atol=1e-6)
