"""Joint layouts and the joint / motion / bone modalities.

A :class:`SkeletonLayout` names the joints of a skeleton and carries everything the
library derives from the topology: the parent of each joint (for bones), the edges
(for drawing), left/right pairs (for flipping) and the joints used to centre and
align a body.

Modalities are pure functions on tensors whose last three axes are ``(T, V, M)``,
i.e. a clip ``(C, T, V, M)`` or a batch ``(N, C, T, V, M)``.
"""

from dataclasses import dataclass

import torch

from .errors import ConfigError
from .keypoints.formats import KeypointFormat, get_format, list_formats

MODALITIES = ("joint", "motion", "bone")


@dataclass(frozen=True)
class SkeletonLayout:
    """A joint layout.

    Attributes:
        name: registry name, e.g. ``"ntu25"``.
        joint_names: one name per joint, in storage order.
        parents: 0-based parent of each joint for the bone modality; a joint that is its
            own parent gets a zero bone.
        edges: 0-based undirected edges for drawing the skeleton.
        flip_pairs: 0-based left/right joint pairs swapped by a horizontal flip.
        center_joint: joint subtracted per frame when a sequence is centred.
        x_axis_joints: ``(a, b)``: view alignment rotates ``joint a - joint b`` onto +x.
        z_axis_joints: ``(a, b)``: view alignment rotates ``joint b - joint a`` onto +z.
    """

    name: str
    joint_names: tuple[str, ...]
    parents: tuple[int, ...]
    edges: tuple[tuple[int, int], ...]
    flip_pairs: tuple[tuple[int, int], ...]
    center_joint: int
    x_axis_joints: tuple[int, int] | None = None
    z_axis_joints: tuple[int, int] | None = None

    def __post_init__(self):
        v = len(self.joint_names)
        if len(self.parents) != v:
            raise ConfigError(f"layout {self.name!r}: {v} joint names but {len(self.parents)} parents")
        used = [self.center_joint, *self.parents]
        used += [j for pair in (*self.edges, *self.flip_pairs) for j in pair]
        used += [*(self.x_axis_joints or ()), *(self.z_axis_joints or ())]
        bad = [j for j in used if not 0 <= j < v]
        if bad:
            raise ConfigError(f"layout {self.name!r}: joint indices {sorted(set(bad))} are outside 0..{v - 1}")

    @property
    def num_joints(self) -> int:
        return len(self.joint_names)


def _one_based(pairs):
    return tuple((a - 1, b - 1) for a, b in pairs)


NTU25 = SkeletonLayout(
    name="ntu25",
    joint_names=(
        "spine_base", "spine_mid", "neck", "head",
        "shoulder_left", "elbow_left", "wrist_left", "hand_left",
        "shoulder_right", "elbow_right", "wrist_right", "hand_right",
        "hip_left", "knee_left", "ankle_left", "foot_left",
        "hip_right", "knee_right", "ankle_right", "foot_right",
        "spine_shoulder", "hand_tip_left", "thumb_left", "hand_tip_right", "thumb_right",
    ),
    # The bone pairs of the reference release (child, parent), 1-based: (21, 21) is a
    # constant-zero bone and the hands chain tip -> thumb -> hand.
    parents=tuple(p - 1 for p in (2, 21, 21, 3, 21, 5, 6, 7, 21, 9, 10, 11, 1, 13, 14, 15, 1, 17, 18, 19,
                                  21, 23, 8, 25, 12)),
    edges=_one_based(((1, 2), (2, 21), (3, 21), (4, 3), (5, 21), (6, 5), (7, 6), (8, 7), (9, 21), (10, 9),
                      (11, 10), (12, 11), (13, 1), (14, 13), (15, 14), (16, 15), (17, 1), (18, 17), (19, 18),
                      (20, 19), (22, 8), (23, 8), (24, 12), (25, 12))),
    flip_pairs=_one_based(((5, 9), (6, 10), (7, 11), (8, 12), (13, 17), (14, 18), (15, 19), (16, 20),
                           (22, 24), (23, 25))),
    center_joint=1,
    x_axis_joints=(8, 4),
    z_axis_joints=(0, 1),
)

_COCO_NAMES = (
    "nose", "left_eye", "right_eye", "left_ear", "right_ear",
    "left_shoulder", "right_shoulder", "left_elbow", "right_elbow",
    "left_wrist", "right_wrist", "left_hip", "right_hip",
    "left_knee", "right_knee", "left_ankle", "right_ankle",
)
# A tree rooted at the nose (pyskl's `coco` layout); used for bones in both 17-joint layouts.
_COCO_PARENTS = (0, 0, 0, 1, 2, 0, 0, 5, 6, 7, 8, 5, 6, 11, 12, 13, 14)
_COCO_FLIPS = ((1, 2), (3, 4), (5, 6), (7, 8), (9, 10), (11, 12), (13, 14), (15, 16))

COCO17 = SkeletonLayout(
    name="coco17",
    joint_names=_COCO_NAMES,
    parents=_COCO_PARENTS,
    edges=tuple((v, p) for v, p in enumerate(_COCO_PARENTS) if v != p),
    flip_pairs=_COCO_FLIPS,
    center_joint=0,
)

UAV17 = SkeletonLayout(
    name="uav17",
    joint_names=_COCO_NAMES,
    parents=_COCO_PARENTS,
    edges=((10, 8), (8, 6), (9, 7), (7, 5), (15, 13), (13, 11), (16, 14), (14, 12),
           (11, 5), (12, 6), (11, 12), (5, 6), (5, 0), (6, 0), (1, 0), (2, 0), (3, 1), (4, 2)),
    flip_pairs=_COCO_FLIPS,
    # The UAV-Human recipe of the reference: centre on joint 1, hip -> shoulder onto +z.
    center_joint=1,
    z_axis_joints=(11, 5),
)

_LAYOUTS: dict[str, SkeletonLayout] = {}


def register_layout(layout: SkeletonLayout, *, overwrite: bool = False) -> None:
    """Make ``layout`` available by name to configs and models."""
    if layout.name in _LAYOUTS and not overwrite:
        raise ConfigError(f"a layout named {layout.name!r} is already registered (pass overwrite=True)")
    _LAYOUTS[layout.name] = layout


def get_layout(name: str) -> SkeletonLayout:
    """The registered layout called ``name``."""
    try:
        return _LAYOUTS[name]
    except KeyError:
        raise ConfigError(f"unknown layout {name!r}; known layouts: {', '.join(sorted(_LAYOUTS))}") from None


def list_layouts() -> list[str]:
    """Names of the registered layouts."""
    return sorted(_LAYOUTS)


for _layout in (NTU25, COCO17, UAV17):
    register_layout(_layout)


def layout_from_format(fmt: KeypointFormat) -> SkeletonLayout:
    """The layout of a keypoint format: its joints, bone tree, drawing edges, left/right pairs and
    centre joint; with both shoulders, view alignment rotates right minus left shoulder onto +x."""
    shoulders = {"right_shoulder", "left_shoulder"} <= set(fmt.joint_names)
    return SkeletonLayout(
        name=fmt.name, joint_names=fmt.joint_names, parents=fmt.parents, edges=fmt.edges,
        flip_pairs=fmt.flip_pairs, center_joint=fmt.center_joint,
        x_axis_joints=(fmt.index("right_shoulder"), fmt.index("left_shoulder")) if shoulders else None)


# Every keypoint format without a hand-written layout above gets one of the same name, so a
# model can be built for any format (``USDRLConfig(layout="mediapipe33")``).
for _name in list_formats():
    if _name not in _LAYOUTS:
        register_layout(layout_from_format(get_format(_name)))


def to_motion(x: torch.Tensor) -> torch.Tensor:
    """Frame differences ``x[t+1] - x[t]`` over axis T of ``(..., C, T, V, M)``; the last frame is 0."""
    out = torch.zeros_like(x)
    out[..., :-1, :, :] = x[..., 1:, :, :] - x[..., :-1, :, :]
    return out


def to_bone(x: torch.Tensor, layout: SkeletonLayout) -> torch.Tensor:
    """Bone vectors ``x[v] - x[parent(v)]`` over axis V of ``(..., C, T, V, M)``."""
    if x.shape[-2] != layout.num_joints:
        raise ConfigError(f"layout {layout.name!r} has {layout.num_joints} joints, the input has {x.shape[-2]}")
    parents = torch.tensor(layout.parents, device=x.device)
    return x - x.index_select(-2, parents)


def apply_modality(x: torch.Tensor, modality: str, layout: SkeletonLayout) -> torch.Tensor:
    """Turn joint coordinates ``(..., C, T, V, M)`` into the given modality (same shape)."""
    if modality == "joint":
        return x
    if modality == "motion":
        return to_motion(x)
    if modality == "bone":
        return to_bone(x, layout)
    raise ConfigError(f"unknown modality {modality!r}; expected one of {', '.join(MODALITIES)}")
