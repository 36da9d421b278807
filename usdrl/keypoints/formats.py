"""The keypoint formats of common pose estimators, motion-capture fits and depth sensors, as data.

Each :class:`KeypointFormat` lists its joints in storage order under one shared vocabulary
of names (``left_shoulder``, ``spine_mid``, ``head``, ...), so that any two formats can be
converted through the names they share (:func:`usdrl.keypoints.convert_keypoints`). Left/right
pairs follow from the names (``left_x`` <-> ``right_x``); bones are ``(joint, parent)`` pairs
forming one tree rooted at :attr:`KeypointFormat.root`; ``links`` adds the drawing edges that
are not bones (e.g. COCO's shoulder-to-shoulder line).

The tables are written from each format's own documentation (noted in ``source``); where a
format's own name differs from the shared one it is kept in ``aliases`` (e.g. H36M's
``right_foot`` is the ankle, Kinect v1's ``shoulder_center`` is Kinect v2's ``spine_shoulder``).

Coordinate conventions (:class:`Convention`): ``units`` are ``"pixels"`` (with the image
size), ``"normalized"`` (x / width, y / height in [0, 1]), ``"metres"`` or ``"unknown"``;
``y_up`` says whether y grows upwards (3D sensor and body-model frames) or downwards (image
and camera frames); ``None`` where the format does not document it.
"""

from dataclasses import dataclass, field, replace

from ..errors import ConfigError

LEFT, RIGHT = "left_", "right_"


@dataclass(frozen=True)
class Convention:
    """Coordinate convention of a format.

    Attributes:
        dims: 2 (x, y) or 3 (x, y, z).
        units: ``"pixels"``, ``"normalized"``, ``"metres"`` or ``"unknown"``.
        y_up: True if y grows upwards, False if downwards (image rows), None if undocumented.
        description: the frame in words.
    """

    dims: int
    units: str
    y_up: bool | None
    description: str


IMAGE_PIXELS = Convention(2, "pixels", False, "image pixels, origin top-left, x right, y down")
IMAGE_NORMALIZED = Convention(2, "normalized", False, "x / width, y / height in [0, 1], origin top-left, y down")
KINECT = Convention(3, "metres", True, "Kinect camera space: origin at the sensor, x to the sensor's left, y up, "
                                       "z away from the sensor")
CAMERA_METRES = Convention(3, "metres", False, "camera frame: x right, y down, z forward (the frame of 3D lifters "
                                               "trained on Human3.6M camera coordinates)")


@dataclass(frozen=True)
class KeypointFormat:
    """A keypoint format.

    Attributes:
        name: registry name, e.g. ``"coco17"``.
        joint_names: shared-vocabulary name of each joint, in storage order.
        root: the joint the bone tree hangs from.
        bones: ``(joint, parent)`` name pairs, one for every joint but the root.
        convention: the coordinate convention of the format's usual output.
        source: where the definition comes from.
        links: extra drawing edges ``(a, b)`` that are not bones.
        aliases: ``{shared name: the format's own name}`` where they differ.
        center: the joint a body is centred on (default: the root).
    """

    name: str
    joint_names: tuple[str, ...]
    root: str
    bones: tuple[tuple[str, str], ...]
    convention: Convention
    source: str
    links: tuple[tuple[str, str], ...] = ()
    aliases: dict[str, str] = field(default_factory=dict)
    center: str | None = None

    def __post_init__(self):
        names = self.joint_names
        if len(set(names)) != len(names):
            raise ConfigError(f"format {self.name!r}: joint names repeat")
        used = [self.root, *(j for pair in (*self.bones, *self.links) for j in pair), *self.aliases,
                *([self.center] if self.center else [])]
        unknown = sorted(set(used) - set(names))
        if unknown:
            raise ConfigError(f"format {self.name!r}: {unknown} are not joints of the format")
        children = [child for child, _ in self.bones]
        if sorted(children + [self.root]) != sorted(names):
            raise ConfigError(f"format {self.name!r}: every joint but the root needs exactly one parent")

    @property
    def num_joints(self) -> int:
        return len(self.joint_names)

    @property
    def dims(self) -> int:
        return self.convention.dims

    def index(self, name: str) -> int:
        """Storage index of the joint ``name``."""
        try:
            return self.joint_names.index(name)
        except ValueError:
            raise ConfigError(f"format {self.name!r} has no joint {name!r}") from None

    @property
    def parents(self) -> tuple[int, ...]:
        """0-based parent of each joint; the root is its own parent."""
        parent = dict(self.bones)
        return tuple(self.index(parent.get(name, name)) for name in self.joint_names)

    @property
    def edges(self) -> tuple[tuple[int, int], ...]:
        """0-based drawing edges: the bones, then the extra links."""
        return tuple((self.index(a), self.index(b)) for a, b in (*self.bones, *self.links))

    @property
    def flip_pairs(self) -> tuple[tuple[int, int], ...]:
        """0-based ``(left, right)`` pairs: every ``left_x`` with its ``right_x``."""
        return tuple((i, self.index(RIGHT + name[len(LEFT):])) for i, name in enumerate(self.joint_names)
                     if name.startswith(LEFT))

    @property
    def center_joint(self) -> int:
        return self.index(self.center or self.root)


def _sides(*names: str) -> tuple[str, ...]:
    """``("a", "b")`` -> ``("left_a", "right_a", "left_b", "right_b")``."""
    return tuple(side + n for n in names for side in (LEFT, RIGHT))


def _chain(*pairs: tuple[str, str]) -> tuple[tuple[str, str], ...]:
    """Bones ``(child, parent)`` given for the left side, plus the same for the right side."""
    out = []
    for child, parent in pairs:
        for side in (LEFT, RIGHT):
            out.append((side + child if not child.startswith("@") else child[1:],
                        side + parent if not parent.startswith("@") else parent[1:]))
    return tuple(out)


# -- COCO family (2D pose estimators: MMPose, rtmlib, YOLO-pose, AlphaPose) -----------------

_COCO = ("nose", "left_eye", "right_eye", "left_ear", "right_ear", *_sides("shoulder", "elbow", "wrist", "hip",
                                                                            "knee", "ankle"))
# The tree of pyskl's `coco` layout (what the existing coco17 layout uses): eyes on the nose,
# ears on the eyes, shoulders on the nose, arms on the shoulders, hips on the shoulders, legs on the hips.
_COCO_BONES = _chain(("eye", "@nose"), ("ear", "eye"), ("shoulder", "@nose"), ("elbow", "shoulder"),
                     ("wrist", "elbow"), ("hip", "shoulder"), ("knee", "hip"), ("ankle", "knee"))
_COCO_LINKS = (("left_shoulder", "right_shoulder"), ("left_hip", "right_hip"),
               ("left_ear", "left_shoulder"), ("right_ear", "right_shoulder"))
_FEET = _sides("big_toe", "small_toe", "heel")
_FOOT_BONES = _chain(("big_toe", "ankle"), ("small_toe", "ankle"), ("heel", "ankle"))

COCO17 = KeypointFormat(
    "coco17", _COCO, "nose", _COCO_BONES, IMAGE_PIXELS,
    "COCO keypoints (cocodataset.org keypoint task; mmpose configs/_base_/datasets/coco.py)",
    links=_COCO_LINKS)

COCO_WHOLEBODY23 = KeypointFormat(
    "coco_wholebody23",
    _COCO + ("left_big_toe", "left_small_toe", "left_heel", "right_big_toe", "right_small_toe", "right_heel"),
    "nose", _COCO_BONES + _FOOT_BONES, IMAGE_PIXELS,
    "COCO-WholeBody body and feet, keypoints 0-22 of 133 (jin-s13/COCO-WholeBody; mmpose coco_wholebody.py)",
    links=_COCO_LINKS)

HALPE26 = KeypointFormat(
    "halpe26",
    _COCO + ("head", "neck", "mid_hip", "left_big_toe", "right_big_toe", "left_small_toe", "right_small_toe",
             "left_heel", "right_heel"),
    "mid_hip",
    (("neck", "mid_hip"), ("head", "neck"), ("nose", "neck"), *_chain(("eye", "@nose"), ("ear", "eye")),
     *_chain(("shoulder", "@neck"), ("elbow", "shoulder"), ("wrist", "elbow"), ("hip", "@mid_hip"),
             ("knee", "hip"), ("ankle", "knee"))) + _FOOT_BONES,
    IMAGE_PIXELS,
    "Halpe-FullBody body keypoints 0-25 (Fang-Haoshu/Halpe-FullBody, AlphaPose; mmpose halpe26.py)",
    links=(("left_eye", "right_eye"), ("left_ear", "left_shoulder"), ("right_ear", "right_shoulder")),
    aliases={"mid_hip": "hip"})

UAV17 = KeypointFormat(
    "uav17", _COCO, "nose", _COCO_BONES,
    Convention(3, "unknown", None, "x, y, z tokens of the UAV-Human skeleton files; units and axes are not "
                                   "documented (SUTDCV/UAV-Human issue #18)"),
    "UAV-Human skeletons: 17 joints in COCO order (SUTDCV/UAV-Human)",
    links=_COCO_LINKS, center="left_eye")

# -- OpenPose ---------------------------------------------------------------------------------

_OPENPOSE_HEAD = ("nose", "neck", "right_shoulder", "right_elbow", "right_wrist", "left_shoulder", "left_elbow",
                  "left_wrist")
_OPENPOSE_FACE = ("right_eye", "left_eye", "right_ear", "left_ear")
_OPENPOSE_BONES = (("nose", "neck"), *_chain(("shoulder", "@neck"), ("elbow", "shoulder"), ("wrist", "elbow"),
                                             ("eye", "@nose"), ("ear", "eye"), ("knee", "hip"), ("ankle", "knee")))

OPENPOSE25 = KeypointFormat(
    "openpose25",
    _OPENPOSE_HEAD + ("mid_hip", "right_hip", "right_knee", "right_ankle", "left_hip", "left_knee", "left_ankle")
    + _OPENPOSE_FACE + ("left_big_toe", "left_small_toe", "left_heel", "right_big_toe", "right_small_toe",
                        "right_heel"),
    "neck", _OPENPOSE_BONES + (("mid_hip", "neck"),) + _chain(("hip", "@mid_hip")) + _FOOT_BONES, IMAGE_PIXELS,
    "OpenPose BODY_25 (CMU-Perceptual-Computing-Lab/openpose doc/02_output.md)",
    aliases={"mid_hip": "MidHip"}, center="mid_hip")

OPENPOSE18 = KeypointFormat(
    "openpose18",
    _OPENPOSE_HEAD + ("right_hip", "right_knee", "right_ankle", "left_hip", "left_knee", "left_ankle")
    + _OPENPOSE_FACE,
    "neck", _OPENPOSE_BONES + _chain(("hip", "@neck")), IMAGE_PIXELS,
    "OpenPose COCO-18 (CMU-Perceptual-Computing-Lab/openpose doc/02_output.md; the neck is not a COCO keypoint)")

# -- MediaPipe ------------------------------------------------------------------------------------

MEDIAPIPE33 = KeypointFormat(
    "mediapipe33",
    ("nose", "left_eye_inner", "left_eye", "left_eye_outer", "right_eye_inner", "right_eye", "right_eye_outer",
     "left_ear", "right_ear", "mouth_left", "mouth_right", *_sides("shoulder", "elbow", "wrist", "pinky", "index",
                                                                   "thumb", "hip", "knee", "ankle", "heel",
                                                                   "foot_index")),
    "nose",
    (("mouth_left", "nose"), ("mouth_right", "nose"),
     *_chain(("eye_inner", "@nose"), ("eye", "eye_inner"), ("eye_outer", "eye"), ("ear", "eye_outer"),
             ("shoulder", "@nose"), ("elbow", "shoulder"), ("wrist", "elbow"), ("pinky", "wrist"),
             ("index", "wrist"), ("thumb", "wrist"), ("hip", "shoulder"), ("knee", "hip"), ("ankle", "knee"),
             ("heel", "ankle"), ("foot_index", "ankle"))),
    IMAGE_NORMALIZED,
    "MediaPipe Pose / BlazePose 33 landmarks (ai.google.dev mediapipe pose_landmarker). Image landmarks: x, y "
    "normalised by the image size, z depth relative to the hips; world landmarks: metres, origin at the centre "
    "of the hips, y down as in the image",
    links=(("left_shoulder", "right_shoulder"), ("left_hip", "right_hip"), ("mouth_left", "mouth_right"),
           ("left_pinky", "left_index"), ("right_pinky", "right_index"), ("left_heel", "left_foot_index"),
           ("right_heel", "right_foot_index")))

MEDIAPIPE33_WORLD = replace(
    MEDIAPIPE33, name="mediapipe33_world",
    convention=Convention(3, "metres", False, "MediaPipe world landmarks: metres, origin at the centre of the "
                                              "hips, x and y oriented as in the image (y down)"),
    source="MediaPipe Pose world landmarks (pose_world_landmarks), the 33 landmarks of mediapipe33", center=None)

# -- Kinect, NTU RGB+D, Human3.6M, SMPL -------------------------------------------------------

_KINECT_ARMS = ("left_shoulder", "left_elbow", "left_wrist", "left_hand", "right_shoulder", "right_elbow",
                "right_wrist", "right_hand", "left_hip", "left_knee", "left_ankle", "left_foot", "right_hip",
                "right_knee", "right_ankle", "right_foot")
_KINECT_LIMBS = _chain(("shoulder", "@spine_shoulder"), ("elbow", "shoulder"), ("wrist", "elbow"),
                       ("hand", "wrist"), ("hip", "@spine_base"), ("knee", "hip"), ("ankle", "knee"),
                       ("foot", "ankle"))

NTU25 = KeypointFormat(
    "ntu25",
    ("spine_base", "spine_mid", "neck", "head", *_KINECT_ARMS, "spine_shoulder", "left_hand_tip", "left_thumb",
     "right_hand_tip", "right_thumb"),
    # The bone tree of the reference release (what the ntu25 layout's bone modality uses): rooted at the
    # spine-shoulder, the spine hanging downwards, each hand tip hanging from the thumb.
    "spine_shoulder",
    (("spine_mid", "spine_shoulder"), ("spine_base", "spine_mid"), ("neck", "spine_shoulder"), ("head", "neck"),
     *_KINECT_LIMBS, *_chain(("thumb", "hand"), ("hand_tip", "thumb"))),
    KINECT,
    "Kinect v2 body joints (JointType enumeration of the Kinect for Windows SDK 2.0), as in NTU RGB+D and "
    "PKU-MMD", center="spine_mid")

KINECT20 = KeypointFormat(
    "kinect20",
    ("spine_base", "spine_mid", "spine_shoulder", "head", *_KINECT_ARMS),
    "spine_base",
    (("spine_mid", "spine_base"), ("spine_shoulder", "spine_mid"), ("head", "spine_shoulder"), *_KINECT_LIMBS),
    KINECT,
    "Kinect v1 skeleton (NUI_SKELETON_POSITION_INDEX of the Kinect for Windows SDK 1.x), as in MSRC-12",
    aliases={"spine_base": "hip_center", "spine_mid": "spine", "spine_shoulder": "shoulder_center"},
    center="spine_mid")

UTD_MHAD20 = KeypointFormat(
    "utd_mhad20",
    ("head", "spine_shoulder", "spine_mid", "spine_base", *_KINECT_ARMS),
    KINECT20.root, KINECT20.bones, KINECT,
    "UTD-MHAD skeletons: the Kinect v1 joints with the trunk listed head first (head, shoulder centre, spine, "
    "hip centre, then the limbs as in Kinect v1)",
    aliases=KINECT20.aliases, center="spine_mid")

H36M17 = KeypointFormat(
    "h36m17",
    ("pelvis", "right_hip", "right_knee", "right_ankle", "left_hip", "left_knee", "left_ankle", "spine", "thorax",
     "neck_base", "head_top", "left_shoulder", "left_elbow", "left_wrist", "right_shoulder", "right_elbow",
     "right_wrist"),
    "pelvis",
    (("spine", "pelvis"), ("thorax", "spine"), ("neck_base", "thorax"), ("head_top", "neck_base"),
     *_chain(("hip", "@pelvis"), ("knee", "hip"), ("ankle", "knee"), ("shoulder", "@thorax"), ("elbow", "shoulder"),
             ("wrist", "elbow"))),
    CAMERA_METRES,
    "Human3.6M 17 joints as 3D lifters use them (VideoPose3D / MotionBERT order: right leg 1-3, left leg 4-6, "
    "left arm 11-13, right arm 14-16)",
    aliases={"pelvis": "root", "right_ankle": "right_foot", "left_ankle": "left_foot", "head_top": "head",
             "neck_base": "neck"})

SMPL24 = KeypointFormat(
    "smpl24",
    ("pelvis", "left_hip", "right_hip", "spine1", "left_knee", "right_knee", "spine2", "left_ankle", "right_ankle",
     "spine3", "left_foot", "right_foot", "neck", "left_collar", "right_collar", "head", "left_shoulder",
     "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hand", "right_hand"),
    "pelvis",
    (("spine1", "pelvis"), ("spine2", "spine1"), ("spine3", "spine2"), ("neck", "spine3"), ("head", "neck"),
     *_chain(("hip", "@pelvis"), ("knee", "hip"), ("ankle", "knee"), ("foot", "ankle"), ("collar", "@spine3"),
             ("shoulder", "collar"), ("elbow", "shoulder"), ("wrist", "elbow"), ("hand", "wrist"))),
    Convention(3, "metres", True, "SMPL body frame: metres, y up, the body facing +z in the rest pose"),
    "SMPL kinematic tree, 24 joints (smpl.is.tue.mpg.de; SMPL's kintree_table)")

FORMATS: dict[str, KeypointFormat] = {}


def register_format(fmt: KeypointFormat, *, overwrite: bool = False) -> None:
    """Make ``fmt`` available by name to :func:`get_format` and the converters."""
    if fmt.name in FORMATS and not overwrite:
        raise ConfigError(f"a keypoint format named {fmt.name!r} is already registered (pass overwrite=True)")
    FORMATS[fmt.name] = fmt


def get_format(name: str) -> KeypointFormat:
    """The registered keypoint format called ``name``."""
    try:
        return FORMATS[name]
    except KeyError:
        raise ConfigError(f"unknown keypoint format {name!r}; known formats: {', '.join(sorted(FORMATS))}") from None


def list_formats() -> list[str]:
    """Names of the registered keypoint formats."""
    return sorted(FORMATS)


for _fmt in (COCO17, COCO_WHOLEBODY23, HALPE26, H36M17, OPENPOSE25, OPENPOSE18, MEDIAPIPE33, MEDIAPIPE33_WORLD,
             NTU25, KINECT20, UTD_MHAD20, UAV17, SMPL24):
    register_format(_fmt)
