"""The procedural body: 26 pose parameters per frame, body dimensions, and forward kinematics to NTU-25 joints.

Pose parameters (one row per frame) are angles in radians and translations in metres; the body frame has
+x to the body's right, +y up, +z backwards.
"""

import math

import numpy as np

from ...skeleton import NTU25

_PI = math.pi
_J = {name: i for i, name in enumerate(NTU25.joint_names)}

# ---------------------------------------------------------------------------------------
# Pose parameters (one row per frame). Angles in radians, translations in metres.
# Limb bones point along ``_direction(flex, azimuth)``: flex 0 = down, pi/2 = horizontal,
# pi = up; azimuth 0 = forwards, pi/2 = outwards (to the limb's own side).
_FWD, _RIGHT, _UP, _YAW, _FLEX, _LEAN, _TWIST, _HEAD = range(8)
#: upper-arm flex, upper-arm azimuth, forearm flex, forearm azimuth, wrist flex; right / left.
_ARM = {1: [8, 9, 10, 11, 12], -1: [13, 14, 15, 16, 17]}
#: thigh flex, thigh azimuth, knee bend, ankle flex; right / left.
_LEG = {1: [18, 19, 20, 21], -1: [22, 23, 24, 25]}
_NUM_DOF = 26

_REST = np.zeros(_NUM_DOF)
_REST[_HEAD] = 0.05
for _side in (1, -1):
    _REST[_ARM[_side]] = (0.1, 0.5, 0.25, 0.3, 0.1)
    _REST[_LEG[_side]] = (0.02, 0.3, 0.04, 0.0)
#: Amplitude (radians or metres) of the idle motion of each pose parameter.
_IDLE = np.zeros(_NUM_DOF)
_IDLE[[_FWD, _RIGHT, _YAW, _FLEX, _LEAN, _TWIST, _HEAD]] = (0.012, 0.015, 0.1, 0.015, 0.012, 0.03, 0.05)
for _side in (1, -1):
    _IDLE[_ARM[_side]] = (0.05, 0.1, 0.06, 0.1, 0.1)
_FPS = 30.0

# Body dimensions, as fractions of the standing height.
_BONE_NAMES = ("spine_low", "spine_up", "neck", "head", "shoulder_width", "shoulder_drop", "upper_arm",
               "forearm", "hand", "hand_tip", "thumb", "hip_width", "hip_drop", "thigh", "shin",
               "ankle_height", "foot")
_PROPORTIONS = np.array([0.11, 0.16, 0.045, 0.075, 0.10, 0.015, 0.17, 0.15, 0.045, 0.04, 0.03, 0.045, 0.03,
                         0.24, 0.235, 0.04, 0.08])
_B = {name: i for i, name in enumerate(_BONE_NAMES)}
_FOOT_REST_FLEX = _PI / 2 - 0.25

# Per-joint scale of the sensor jitter: extremities shake more.
_JITTER_SCALE = np.ones(len(NTU25.joint_names))
_JITTER_SCALE[[_J[n] for n in NTU25.joint_names if n.startswith(("hand", "wrist", "thumb", "foot", "ankle"))]] = 1.8


def _smoothstep(x: np.ndarray) -> np.ndarray:
    """Smooth 0 -> 1 ramp of ``x`` clipped to [0, 1] (any shape)."""
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


def _rot(axis: str, angle: np.ndarray) -> np.ndarray:
    """Rotation matrices (..., 3, 3) about ``axis`` by ``angle`` (...), right-handed."""
    i, j = {"x": (1, 2), "y": (2, 0), "z": (0, 1)}[axis]
    c, s = np.cos(angle), np.sin(angle)
    r = np.zeros(np.shape(angle) + (3, 3))
    r[..., 3 - i - j, 3 - i - j] = 1.0
    r[..., i, i] = c
    r[..., j, j] = c
    r[..., i, j] = -s
    r[..., j, i] = s
    return r


def _direction(flex: np.ndarray, azimuth: np.ndarray, side: int) -> tuple[np.ndarray, np.ndarray]:
    """Unit bone direction and a unit normal of it, each (F, 3), in the body frame.

    The body frame has +x to the body's right, +y up, +z backwards. ``flex`` lifts the
    bone from hanging down towards the front (azimuth 0) or its own side (``pi / 2``);
    ``side`` is +1 for right limbs and -1 for left ones, so left and right mirror.
    """
    sf, cf, sa, ca = np.sin(flex), np.cos(flex), np.sin(azimuth), np.cos(azimuth)
    d = np.stack([side * sf * sa, -cf, -sf * ca], axis=-1)
    normal = np.stack([side * cf * sa, sf, -cf * ca], axis=-1)
    return d, normal


# ---------------------------------------------------------------------------------------
# Forward kinematics.

def _forward_kinematics(q: np.ndarray, bones: np.ndarray) -> np.ndarray:
    """Joint positions of bodies posed by ``q``.

    Args:
        q: (F, D) pose parameters, one row per frame.
        bones: (F, B) body dimensions in metres (see ``_BONE_NAMES``).

    Returns:
        (F, 25, 3) NTU-25 joints in the body's stage frame: +x right, +y up, +z backwards,
        the lower foot on the floor ``y = 0``, the spine base above ``(right, -fwd)``.
    """
    b = {name: bones[:, i, None] for name, i in _B.items()}
    yaw = _rot("y", q[:, _YAW])
    flex, lean = -q[:, _FLEX], -q[:, _LEAN]
    lower = yaw @ _rot("z", 0.4 * lean) @ _rot("x", 0.4 * flex)
    trunk = yaw @ _rot("y", q[:, _TWIST]) @ _rot("z", lean) @ _rot("x", flex)
    head = trunk @ _rot("x", -q[:, _HEAD])

    joints = np.zeros((len(q), len(NTU25.joint_names), 3))
    joints[:, _J["spine_mid"]] = b["spine_low"] * lower[:, :, 1]
    joints[:, _J["spine_shoulder"]] = joints[:, _J["spine_mid"]] + b["spine_up"] * trunk[:, :, 1]
    joints[:, _J["neck"]] = joints[:, _J["spine_shoulder"]] + b["neck"] * head[:, :, 1]
    joints[:, _J["head"]] = joints[:, _J["neck"]] + b["head"] * head[:, :, 1]

    zero = np.zeros(len(q))
    for side, name in ((1, "right"), (-1, "left")):
        upper_f, upper_a, fore_f, fore_a, wrist = q[:, _ARM[side]].T
        upper, _ = _direction(upper_f, upper_a, side)
        fore, _ = _direction(fore_f, fore_a, side)
        hand, palm = _direction(fore_f + wrist, fore_a, side)
        shoulder = np.stack([side * b["shoulder_width"][:, 0], -b["shoulder_drop"][:, 0], zero], axis=-1)
        arm = np.stack([shoulder, b["upper_arm"] * upper, b["forearm"] * fore, b["hand"] * hand,
                        b["hand_tip"] * hand, b["thumb"] * (0.5 * hand + 0.866 * palm)], axis=1)
        arm = np.einsum("fij,fkj->fki", trunk, arm)
        chain = [f"shoulder_{name}", f"elbow_{name}", f"wrist_{name}", f"hand_{name}"]
        parent = joints[:, _J["spine_shoulder"]]
        for k, joint in enumerate(chain):
            parent = joints[:, _J[joint]] = parent + arm[:, k]
        joints[:, _J[f"hand_tip_{name}"]] = parent + arm[:, 4]
        joints[:, _J[f"thumb_{name}"]] = parent + arm[:, 5]

        thigh_f, thigh_a, knee, ankle = q[:, _LEG[side]].T
        thigh, _ = _direction(thigh_f, thigh_a, side)
        shin, _ = _direction(thigh_f - knee, thigh_a, side)
        foot, _ = _direction(_FOOT_REST_FLEX + ankle, np.full(len(q), 0.25), side)
        hip = np.stack([side * b["hip_width"][:, 0], -b["hip_drop"][:, 0], zero], axis=-1)
        leg = np.einsum("fij,fkj->fki", yaw, np.stack([hip, b["thigh"] * thigh, b["shin"] * shin,
                                                       b["foot"] * foot], axis=1))
        parent = joints[:, _J["spine_base"]]
        for k, joint in enumerate((f"hip_{name}", f"knee_{name}", f"ankle_{name}", f"foot_{name}")):
            parent = joints[:, _J[joint]] = parent + leg[:, k]

    ankles = joints[:, [_J["ankle_right"], _J["ankle_left"]], 1] - b["ankle_height"]
    toes = joints[:, [_J["foot_right"], _J["foot_left"]], 1] - 0.02
    lowest = np.minimum(ankles, toes).min(axis=1)
    joints += np.stack([q[:, _RIGHT], q[:, _UP] - lowest, -q[:, _FWD]], axis=-1)[:, None, :]
    return joints
