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
"""

import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import NamedTuple

import numpy as np

from ..errors import ConfigError, InputError
from ..skeleton import COCO17, NTU25

logger = logging.getLogger(__name__)

_PI = math.pi
_J = {name: i for i, name in enumerate(NTU25.joint_names)}
_NUM_PERSONS = 2

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

#: Horizontal angle (degrees) at which each camera ID sees the stage, NTU-style 3 cameras.
CAMERA_YAW_DEG = {1: 45.0, 2: 0.0, 3: -45.0}


# ---------------------------------------------------------------------------------------
# Small numeric helpers.

def _smoothstep(x: np.ndarray) -> np.ndarray:
    """Smooth 0 -> 1 ramp of ``x`` clipped to [0, 1] (any shape)."""
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


def _span(rng: np.random.Generator, lo: float, hi: float, u: np.ndarray, min_frames: int) -> float:
    """A duration as a fraction of the clip ``u`` (T,): drawn from U(lo, hi) but at least ``min_frames`` long."""
    return max(rng.uniform(lo, hi), min_frames / len(u))


def _cycles(rng: np.random.Generator, lo: float, hi: float, u: np.ndarray, min_period: int = 12) -> float:
    """Repetitions over the clip ``u`` (T,): drawn from U(lo, hi) but each at least ``min_period`` frames long."""
    return min(rng.uniform(lo, hi), len(u) / min_period)


def _window(u: np.ndarray, rng: np.random.Generator, hold: tuple[float, float] = (0.35, 0.8)) -> np.ndarray:
    """A random envelope over ``u`` (T,): 0 at both ends, rising to 1 and holding for about ``hold`` of the clip."""
    rise, fall = (min(_span(rng, 0.08, 0.2, u, 15), 0.3) for _ in range(2))
    length = rng.uniform(*hold) * (0.98 - rise - fall)
    start = rng.uniform(0.0, 0.98 - rise - length - fall)
    return _smoothstep((u - start) / rise) * _smoothstep((start + rise + length + fall - u) / fall)


def _keyframes(u: np.ndarray, times: Sequence[float], values) -> np.ndarray:
    """Smooth interpolation through ``values`` (K,) or (K, P) at increasing ``times`` (K,): (T,) or (T, P)."""
    times = np.asarray(times, dtype=float)
    values = np.asarray(values, dtype=float)
    k = np.clip(np.searchsorted(times, u, side="right") - 1, 0, len(times) - 2)
    s = _smoothstep((u - times[k]) / (times[k + 1] - times[k]))
    if values.ndim == 2:
        s = s[:, None]
    return values[k] + s * (values[k + 1] - values[k])


def _jitter_times(rng: np.random.Generator, times: Sequence[float], u: np.ndarray,
                  amount: float = 0.04) -> np.ndarray:
    """Keyframe ``times`` (K,) in [0, 1] for the clip ``u`` (T,), stretched and shifted as a whole, then moved
    by up to ``amount`` each; consecutive keys stay at least 6 frames apart (the last may pass 1)."""
    t = 0.5 + (np.asarray(times) - 0.5) * rng.uniform(0.65, 1.1) + rng.uniform(-0.12, 0.12)
    t = np.sort(t + rng.uniform(-amount, amount, len(times)))
    return t[0] + np.concatenate([[0.0], np.cumsum(np.maximum(np.diff(t), 6 / len(u)))])


def _blend(q: np.ndarray, idx, target, weight: np.ndarray) -> None:
    """Move pose parameters ``q[:, idx]`` (T, P) towards ``target`` (P values or (T,) arrays) by ``weight`` (T,)."""
    target = np.stack([np.broadcast_to(t, weight.shape) for t in target], axis=1)
    q[:, idx] += weight[:, None] * (target - q[:, idx])


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


# ---------------------------------------------------------------------------------------
# Motion helpers shared by the action programs. ``q`` is (T, D), ``u`` is (T,).

def _gait(q: np.ndarray, rng: np.random.Generator) -> None:
    """Add stepping legs and swinging arms wherever the root of ``q`` moves or turns."""
    step = np.hypot(np.diff(q[:, _FWD], prepend=q[0, _FWD]), np.diff(q[:, _RIGHT], prepend=q[0, _RIGHT]))
    step += 0.25 * np.abs(np.diff(q[:, _YAW], prepend=q[0, _YAW]))
    moving = np.clip(step / 0.01, 0.0, 1.0)
    phase = 2 * _PI * np.cumsum(step) / rng.uniform(0.55, 0.75) + rng.uniform(0, 2 * _PI)
    for side in (1, -1):
        swing = side * np.sin(phase)
        q[:, _LEG[side][0]] += moving * 0.35 * swing
        q[:, _LEG[side][2]] += moving * 0.7 * np.maximum(swing, 0.0)
        q[:, _ARM[side][0]] -= moving * 0.3 * swing


def _arm(q, side, pose, w) -> None:
    """Blend the arm on ``side`` towards ``pose`` = (upper flex, upper azimuth, fore flex, fore azimuth)."""
    _blend(q, _ARM[side][:4], pose, w)


def _hand(rng: np.random.Generator) -> int:
    """The acting side of a one-handed action: right (+1) for about 70% of performances, else left (-1)."""
    return 1 if rng.random() < 0.7 else -1


# ---------------------------------------------------------------------------------------
# One-person action programs: ``program(q, u, rng)`` animates ``q`` (T, D) in place.

def _wave(q, u, rng, side):
    """Forearm raised beside the head, swinging side to side."""
    w = _window(u, rng)
    osc = rng.uniform(0.2, 0.45) * np.sin(2 * _PI * _cycles(rng, 2, 5, u) * u + rng.uniform(0, 2 * _PI))
    _arm(q, side, (rng.uniform(1.1, 1.5), rng.uniform(1.2, 1.6), _PI - 0.3 + osc, _PI / 2), w)
    q[:, _HEAD] += 0.1 * w


def _raise_both_arms(q, u, rng):
    """Both arms lifted overhead (by the front or the sides), held, lowered."""
    w = _window(u, rng, hold=(0.3, 0.6))
    azimuth, lift = rng.uniform(0.2, 1.5), rng.uniform(0.8, 1.0)
    for side in (1, -1):
        _arm(q, side, (lift * (_PI - 0.15), azimuth, lift * (_PI - 0.1), azimuth), w)


def _punch(q, u, rng):
    """Guard up; the leading fist shoots forward a few times with a twist of the trunk."""
    w, side = _window(u, rng), _hand(rng)
    ext = np.maximum(np.sin(2 * _PI * _cycles(rng, 2, 4.5, u, 15) * u + rng.uniform(0, 2 * _PI)), 0.0) ** 2
    guard = np.array([0.5, 0.4, 2.2, 0.2])
    _arm(q, side, (guard + ext[:, None] * (np.array([1.5, 0.05, 1.55, -0.05]) - guard)).T, w)
    _arm(q, -side, guard, 0.8 * w)
    q[:, _TWIST] -= 0.25 * side * ext * w


def _clap(q, u, rng):
    """Both forearms forward, hands meeting repeatedly in front of the chest."""
    w = _window(u, rng)
    close = (0.5 + 0.5 * np.sin(2 * _PI * _cycles(rng, 3, 6, u) * u + rng.uniform(0, 2 * _PI))) ** 2
    height = rng.uniform(-0.2, 0.3)
    for side in (1, -1):
        _arm(q, side, (0.75 + height, 0.3, 1.5 + height, 0.35 - 0.9 * close), w)


def _reach_up(q, u, rng):
    """One arm stretched straight up, rising onto the toes."""
    w, side = _window(u, rng, hold=(0.3, 0.6)), _hand(rng)
    _arm(q, side, (_PI - 0.1, rng.uniform(0.0, 0.4), _PI - 0.05, 0.1), w)
    q[:, _LEAN] -= 0.1 * side * w
    for leg in (1, -1):
        q[:, _LEG[leg][3]] -= rng.uniform(0.2, 0.5) * w


def _throw(q, u, rng):
    """Wind-up behind the head, a fast overarm swing, follow-through."""
    side = _hand(rng)
    times = _jitter_times(rng, [0.0, 0.2, 0.42, 0.5, 0.58, 0.8, 1.0], u, 0.03)
    rest = q[0, _ARM[side][:4]]
    keys = [rest, rest, (2.4, 1.2, 3.3, 1.0), (1.6, 0.1, 1.5, 0.0), (0.7, -0.3, 0.6, -0.4), rest, rest]
    _arm(q, side, _keyframes(u, times, keys).T, np.ones_like(u))
    q[:, _TWIST] += side * _keyframes(u, times, [0, 0, 0.3, 0, -0.3, 0, 0])
    q[:, _FLEX] += _keyframes(u, times, [0, 0, -0.1, 0.1, 0.3, 0, 0])


def _point(q, u, rng):
    """One arm raised forward and held, slowly."""
    w, side = _window(u, rng, hold=(0.4, 0.7)), _hand(rng)
    _arm(q, side, (1.45 + rng.normal(0, 0.15), rng.uniform(0.0, 0.5), 1.5 + rng.normal(0, 0.1), 0.15), w)
    q[:, _ARM[side][4]] -= 0.1 * w


def _drink(q, u, rng):
    """Hand brought to the mouth, head tilted back."""
    w, side = _window(u, rng), _hand(rng)
    _arm(q, side, (0.6, 0.1, 2.64, -1.86), w)
    q[:, _ARM[side][4]] += 0.3 * w
    q[:, _HEAD] -= rng.uniform(0.1, 0.25) * w**4


def _phone_call(q, u, rng):
    """Elbow lifted sideways, hand held at the ear."""
    w, side = _window(u, rng, hold=(0.6, 0.85)), _hand(rng)
    _arm(q, side, (1.6, 0.9, 2.06, -2.07), w)
    q[:, _LEAN] += 0.08 * side * w
    q[:, _HEAD] += 0.05 * np.sin(2 * _PI * _cycles(rng, 1, 3, u) * u) * w


def _kick(q, u, rng, side):
    """Leg drawn back, kicked forward and up, put down."""
    times = _jitter_times(rng, [0.0, 0.25, 0.4, 0.5, 0.65, 0.8, 1.0], u, 0.05)
    height = rng.uniform(0.9, 1.4)
    idx = _LEG[side]
    rest = q[0, idx]
    keys = [rest, rest, (-0.35, 0.0, 1.2, 0.3), (height, 0.05, 0.1, -0.6), (0.3, 0.1, 0.8, 0.0), rest, rest]
    q[:, idx] = _keyframes(u, times, keys)
    q[:, _FLEX] += _keyframes(u, times, [0, 0, 0.05, -0.15, 0, 0, 0])
    for arm_side in (1, -1):
        q[:, _ARM[arm_side][1]] += _keyframes(u, times, [0, 0, 0.3, 0.6, 0.3, 0, 0])


def _step_forward(q, u, rng):
    """A step forward, a pause, a step back."""
    times = _jitter_times(rng, [0.0, 0.15, 0.4, 0.6, 0.85, 1.0], u)
    q[:, _FWD] += _keyframes(u, times, [0, 0, 1, 1, 0, 0]) * rng.uniform(0.3, 0.6)
    _gait(q, rng)


def _squat(q, u, rng):
    """Knees and hips bent together, arms forward for balance, once or a few times."""
    w = _window(u, rng)
    depth = w * (0.5 - 0.5 * np.cos(2 * _PI * _cycles(rng, 1, 3.5, u, 30) * u)) * rng.uniform(0.7, 1.0)
    for side in (1, -1):
        q[:, _LEG[side][0]] += 1.4 * depth
        q[:, _LEG[side][2]] += 2.2 * depth
        q[:, _ARM[side][0]] += 1.2 * depth
    q[:, _FLEX] += 0.5 * depth


def _jump(q, u, rng):
    """Crouch, take-off with arms swinging up, landing; one to three jumps."""
    start, end = rng.uniform(0.0, 0.2), rng.uniform(0.8, 1.0)
    jumps = max(1, min(int(rng.integers(1, 4)), int((end - start) * len(u) / 20)))  # 20+ frames per jump
    v = (jumps * np.clip((u - start) / (end - start), 0.0, 1.0)) % 1.0
    crouch = np.where(v < 0.3, np.sin(_PI * v / 0.3), np.where(v > 0.7, np.sin(_PI * (v - 0.7) / 0.3), 0.0))
    air = np.clip((v - 0.3) / 0.4, 0.0, 1.0)
    air = 4 * air * (1 - air)
    q[:, _UP] += rng.uniform(0.12, 0.3) * air
    q[:, _FLEX] += 0.3 * crouch
    for side in (1, -1):
        q[:, _LEG[side][0]] += 0.6 * crouch
        q[:, _LEG[side][2]] += 1.0 * crouch
        q[:, _LEG[side][3]] -= 0.6 * air
        q[:, _ARM[side][0]] += 1.8 * air - 0.5 * crouch


def _march(q, u, rng):
    """Knees lifted in turn, arms swinging."""
    w = _window(u, rng, hold=(0.6, 0.85))
    swing = np.sin(2 * _PI * _cycles(rng, 2, 5, u, 20) * u + rng.uniform(0, 2 * _PI))
    lift = rng.uniform(0.7, 1.2)
    for side in (1, -1):
        up = np.maximum(side * swing, 0.0) * w
        q[:, _LEG[side][0]] += lift * up
        q[:, _LEG[side][2]] += 1.6 * lift * up
        q[:, _ARM[side][0]] -= 0.5 * side * swing * w


def _bow(q, u, rng):
    """Trunk bent forward, arms hanging, then upright again."""
    w = _window(u, rng, hold=(0.1, 0.4))
    depth = rng.uniform(0.7, 1.2) * w
    q[:, _FLEX] += depth
    q[:, _HEAD] += 0.3 * depth
    for side in (1, -1):
        q[:, _ARM[side][0]] += 0.9 * depth
        q[:, _ARM[side][2]] += 0.9 * depth


def _turn(q, u, rng, turns):
    """The whole body turns by ``turns`` revolutions while stepping."""
    start, duration = rng.uniform(0.05, 0.35), _span(rng, 0.3, 0.6, u, 30 * turns)
    q[:, _YAW] += rng.choice((-1, 1)) * turns * 2 * _PI * _smoothstep((u - start) / duration)
    _gait(q, rng)


def _turn_around(q, u, rng):
    """Half a turn: the subject ends facing away."""
    _turn(q, u, rng, 0.5)


def _spin(q, u, rng):
    """A full turn with the arms out."""
    _turn(q, u, rng, 1.0)
    w = _window(u, rng)
    for side in (1, -1):
        _arm(q, side, (1.4, 1.5, 1.5, 1.5), w)


def _sit_down(q, u, rng):
    """From standing to sitting on a seat behind the subject; stays seated."""
    start = rng.uniform(0.1, 0.35)
    p = _smoothstep((u - start) / _span(rng, 0.3, 0.5, u, 30))
    for side in (1, -1):
        q[:, _LEG[side][0]] += 1.5 * p
        q[:, _LEG[side][2]] += 1.55 * p
        _arm(q, side, (0.5, 0.3, 1.1, 0.2), p)
    q[:, _FLEX] += 0.45 * np.sin(_PI * p) + 0.1 * p
    q[:, _FWD] -= 0.35 * p


def _stand_up(q, u, rng):
    """The time reverse of ``_sit_down``."""
    _sit_down(q, 1.0 - u, rng)


def _lean_side(q, u, rng):
    """Trunk bent sideways with the opposite arm stretched over the head."""
    w = _window(u, rng, hold=(0.2, 0.6))
    side = rng.choice((-1, 1))
    q[:, _LEAN] += side * rng.uniform(0.25, 0.45) * w
    _arm(q, -side, (_PI - 0.3, 1.4, _PI - 0.1, 1.2), w)


def _jumping_jack(q, u, rng):
    """Arms swung overhead and legs spread together, with small hops."""
    w = _window(u, rng, hold=(0.6, 0.85))
    cycle = 2 * _PI * _cycles(rng, 2, 4, u, 30) * u
    spread = w * (0.5 - 0.5 * np.cos(cycle))
    q[:, _UP] += 0.05 * w * np.abs(np.sin(cycle))
    for side in (1, -1):
        _arm(q, side, (0.15 + 2.7 * spread, _PI / 2, 0.2 + 2.8 * spread, _PI / 2), w)
        _blend(q, _LEG[side][:2], (0.3 * spread, _PI / 2), w)


# ---------------------------------------------------------------------------------------
# Two-person programs: ``program(q1, q2, u, rng, gap)`` animates both persons, who stand
# ``gap`` metres apart (facing each other unless the class says otherwise).

def _approach(q, w, gap, reach):
    """Walk one of two persons halfway towards the other (weighted by ``w`` (T,)), so that when both do,
    their roots end ``reach`` apart."""
    q[:, _FWD] += w * (gap - reach) / 2


def _handshake(q1, q2, u, rng, gap):
    """Both walk up to each other and shake right hands."""
    w = _window(u, rng)
    shake = 0.12 * np.sin(2 * _PI * _cycles(rng, 3, 6, u, 10) * u) * w**4
    reach = rng.uniform(0.7, 0.85)
    for q in (q1, q2):
        _approach(q, w, gap, reach)
        _gait(q, rng)
        _arm(q, 1, (0.9, -0.15, 1.25 + shake, -0.25), w**2)


def _push(q1, q2, u, rng, gap):
    """Person 1 walks up and shoves person 2 with both hands; person 2 stumbles back."""
    times = _jitter_times(rng, [0.0, 0.15, 0.45, 0.55, 0.7, 0.9, 1.0], u, 0.03)
    ready = _keyframes(u, times, [0, 0, 1, 1, 1, 0, 0])
    shove = _keyframes(u, times, [0, 0, 0, 1, 0.3, 0, 0])
    q1[:, _FWD] += ready * (gap - rng.uniform(0.55, 0.7))
    for side in (1, -1):
        _arm(q1, side, (0.9, 0.2, 2.0, -0.3), ready)
        _arm(q1, side, (1.5, 0.1, 1.55, 0.0), shove)
        q2[:, _ARM[side][0]] += _keyframes(u, times, [0, 0, 0, 0.3, 0.6, 0, 0])
    q2[:, _FWD] -= _keyframes(u, times, [0, 0, 0, 0.2, 1, 1, 1]) * rng.uniform(0.3, 0.6)
    q2[:, _FLEX] -= _keyframes(u, times, [0, 0, 0, 0.25, 0.1, 0, 0])
    _gait(q1, rng)
    _gait(q2, rng)


def _hug(q1, q2, u, rng, gap):
    """Both walk up close and wrap their arms around each other."""
    w = _window(u, rng)
    reach = rng.uniform(0.4, 0.5)
    for q in (q1, q2):
        _approach(q, w, gap, reach)
        _gait(q, rng)
        q[:, _FLEX] += 0.1 * w
        for side in (1, -1):
            _arm(q, side, (1.3, 0.9, 1.5, -1.1), w**2)


def _high_five(q1, q2, u, rng, gap):
    """Both walk up and slap raised right hands."""
    w = _window(u, rng)
    reach = rng.uniform(0.75, 0.9)
    for q in (q1, q2):
        _approach(q, w, gap, reach)
        _gait(q, rng)
        _arm(q, 1, (2.4, 0.3, 2.7, 0.2), w**3)


def _pass_object(q1, q2, u, rng, gap):
    """Person 1 holds out a hand; person 2 takes the object a moment later."""
    w = _window(u, rng)
    delay = rng.uniform(0.08, 0.15)
    reach = rng.uniform(0.8, 1.0)
    for q in (q1, q2):
        _approach(q, w, gap, reach)
        _gait(q, rng)
    _arm(q1, 1, (1.1, 0.15, 1.5, 0.0), w**2)
    receive = np.interp(u - delay, u, w) ** 2
    _arm(q2, 1, (1.1, 0.15, 1.5, 0.0), receive)
    _arm(q2, 1, (0.4, 0.2, 2.0, -0.3), receive * _smoothstep((u - 0.65) / 0.15))


def _follow(q1, q2, u, rng, gap):
    """Both walk the same way, person 2 behind and slightly later."""
    distance, start, length = rng.uniform(0.6, 1.1), rng.uniform(0.05, 0.2), _span(rng, 0.5, 0.7, u, 30)
    delay = rng.uniform(0.1, 0.2)
    q1[:, _FWD] += distance * (_smoothstep((u - start) / length) - 0.5)
    q2[:, _FWD] += distance * (_smoothstep((u - start - delay) / length) - 0.5)
    _gait(q1, rng)
    _gait(q2, rng)


#: Poses (upper flex, upper azimuth, fore flex, fore azimuth) an idle arm may rest in: on the hip,
#: in front of the belly, behind the back.
_FREE_ARM_POSES = np.array([(0.5, 1.6, 0.64, -_PI / 2), (0.2, 0.3, 1.5, -0.6), (-0.3, 0.2, 1.3, -2.3)])


def _free_arm(q, u, rng):
    """Now and then park the arm an action leaves still (the one that moves least) in a random pose."""
    motion = {side: np.ptp(q[:, _ARM[side]], axis=0).max() for side in (1, -1)}
    side = min(motion, key=motion.get)
    if motion[side] < 0.3 and rng.random() < 0.4:
        _arm(q, side, _FREE_ARM_POSES[rng.integers(len(_FREE_ARM_POSES))], _window(u, rng, hold=(0.5, 0.95)))


@dataclass(frozen=True)
class _ActionClass:
    name: str
    program: Callable
    two_person: bool = False
    facing: bool = True  # two-person classes: the persons face each other (else one behind the other)


_CLASSES = (
    _ActionClass("wave_right_hand", partial(_wave, side=1)),
    _ActionClass("wave_left_hand", partial(_wave, side=-1)),
    _ActionClass("raise_both_arms", _raise_both_arms),
    _ActionClass("punch_forward", _punch),
    _ActionClass("clap", _clap),
    _ActionClass("reach_up", _reach_up),
    _ActionClass("throw", _throw),
    _ActionClass("point_forward", _point),
    _ActionClass("drink", _drink),
    _ActionClass("phone_call", _phone_call),
    _ActionClass("kick_right", partial(_kick, side=1)),
    _ActionClass("kick_left", partial(_kick, side=-1)),
    _ActionClass("step_forward", _step_forward),
    _ActionClass("squat", _squat),
    _ActionClass("jump", _jump),
    _ActionClass("march_in_place", _march),
    _ActionClass("bow", _bow),
    _ActionClass("turn_around", _turn_around),
    _ActionClass("sit_down", _sit_down),
    _ActionClass("stand_up", _stand_up),
    _ActionClass("lean_side", _lean_side),
    _ActionClass("spin", _spin),
    _ActionClass("jumping_jack", _jumping_jack),
    _ActionClass("handshake", _handshake, two_person=True),
    _ActionClass("push", _push, two_person=True),
    _ActionClass("hug", _hug, two_person=True),
    _ActionClass("high_five", _high_five, two_person=True),
    _ActionClass("pass_object", _pass_object, two_person=True),
    _ActionClass("follow", _follow, two_person=True, facing=False),
)

#: Class names; a clip's label is the index into this tuple.
ACTION_NAMES: tuple[str, ...] = tuple(c.name for c in _CLASSES)
NUM_CLASSES = len(ACTION_NAMES)
#: Labels of the classes that fill both person slots; the others leave person 2 all zeros.
TWO_PERSON_CLASSES: frozenset[int] = frozenset(i for i, c in enumerate(_CLASSES) if c.two_person)
_SIT_DOWN, _STAND_UP = ACTION_NAMES.index("sit_down"), ACTION_NAMES.index("stand_up")


# ---------------------------------------------------------------------------------------
# Public results.

@dataclass(frozen=True)
class ClipMeta:
    """Recording metadata per clip, NTU-style (all 1-based ints, arrays of shape (N,)).

    Attributes:
        subject: performer ID ``P`` (the body shape; person 1 in two-person clips).
        camera: camera ID ``C`` (1: seen from +45 deg, 2: from the front, 3: from -45 deg).
        setup: setup ID ``S`` (camera height, distance, tilt and lateral offset).
        replication: replication ID ``R`` (the subject's own heading: -15 or +15 deg).
    """

    subject: np.ndarray
    camera: np.ndarray
    setup: np.ndarray
    replication: np.ndarray

    def names(self, labels: np.ndarray) -> list[str]:
        """NTU file stems ``SsssCcccPpppRrrrAaaa`` (``A`` is ``label + 1``) for ``labels`` (N,)."""
        rows = zip(self.setup, self.camera, self.subject, self.replication, labels, strict=True)
        return [f"S{s:03d}C{c:03d}P{p:03d}R{r:03d}A{a + 1:03d}" for s, c, p, r, a in rows]


class SyntheticClips(NamedTuple):
    """A batch of trimmed clips.

    Attributes:
        data: (N, 3, Tmax, 25, 2) float32 joint coordinates, zero after each clip's end.
        num_frames: (N,) int64 valid frames per clip.
        labels: (N,) int64 class indices into :data:`ACTION_NAMES`.
        meta: subject / camera / setup / replication IDs.
    """

    data: np.ndarray
    num_frames: np.ndarray
    labels: np.ndarray
    meta: ClipMeta

    def names(self) -> list[str]:
        """NTU file stems ``SsssCcccPpppRrrrAaaa``, one per clip."""
        return self.meta.names(self.labels)


class UntrimmedSequence(NamedTuple):
    """A long sequence of actions separated by background, PKU-MMD-style.

    Attributes:
        data: (3, T, 25, 2) float32 joint coordinates; person 2 is all zeros.
        labels: (T,) int64 per-frame labels: 0 = background, ``k + 1`` = class ``k``.
        segments: ``(k, start, end)`` per action in time order: class index ``k`` into
            :data:`ACTION_NAMES` and frames ``start:end`` (end exclusive).
        meta: the sequence's IDs, arrays of length 1.
    """

    data: np.ndarray
    labels: np.ndarray
    segments: list[tuple[int, int, int]]
    meta: ClipMeta


@dataclass
class _Person:
    """One body in one clip: poses (T, D), dimensions (B,) and its stage-to-camera transform."""

    q: np.ndarray
    bones: np.ndarray
    rotation: np.ndarray  # (3, 3)
    offset: np.ndarray  # (3,)


def _check_classes(classes: Sequence[int]) -> list[int]:
    """``classes`` as a non-empty list of valid class indices."""
    classes = [int(k) for k in classes]
    if not classes:
        raise ConfigError("classes is empty")
    bad = [k for k in classes if not 0 <= k < NUM_CLASSES]
    if bad:
        raise ConfigError(f"class indices {bad} are outside 0..{NUM_CLASSES - 1}")
    return classes


def _action_order(pool: list[int], count: int, rng: np.random.Generator) -> list[int]:
    """``count`` classes drawn from ``pool``; a ``sit_down`` is followed by ``stand_up`` when both are allowed."""
    pairs = _SIT_DOWN in pool and _STAND_UP in pool
    draw = [k for k in pool if not (pairs and k == _STAND_UP)]
    order: list[int] = []
    while len(order) < count:
        order.append(int(rng.choice(draw)))
        if pairs and order[-1] == _SIT_DOWN and len(order) < count:
            order.append(_STAND_UP)
    return order


def _idle(num_frames: int, rng: np.random.Generator) -> np.ndarray:
    """Idle motion (T, D): slow breathing, sway and drift with a random rate and phase per parameter."""
    t = np.arange(num_frames)[:, None]
    freq = rng.uniform(0.2, 0.75, _NUM_DOF) / _FPS  # periods of 1.3 to 5 seconds
    return _IDLE * rng.uniform(0.5, 1.5) * np.sin(2 * _PI * freq * t + rng.uniform(0, 2 * _PI, _NUM_DOF))


def _background(start: np.ndarray, end: np.ndarray, num_frames: int, rng: np.random.Generator) -> np.ndarray:
    """Background poses (T, D): a smooth blend from pose ``start`` (D,) to ``end`` (D,) plus a small fidget."""
    s = _smoothstep(np.linspace(-0.2, 1.2, num_frames))[:, None]
    q = start + s * (end - start)
    q[:, rng.choice(np.flatnonzero(_IDLE))] += rng.uniform(-0.2, 0.2) * np.sin(_PI * np.linspace(0, 1, num_frames))
    return q


def _place(view: tuple[np.ndarray, np.ndarray], heading: float,
           position: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Body-to-camera rotation (3, 3) and offset (3,) of a person turned by ``heading`` at stage ``position``."""
    rotation, origin = view
    return rotation @ _rot("y", np.float64(heading)), rotation @ position + origin


# ---------------------------------------------------------------------------------------
# The generator.

class SyntheticActions:
    """Generator of synthetic NTU-25 action clips and untrimmed sequences.

    Args:
        num_frames_range: inclusive (min, max) frames of a clip when no fixed length is asked.
        noise: scales all sensor noise; 0 gives exact forward-kinematics output.
        jitter: standard deviation (metres) of the Gaussian joint jitter at ``noise=1``.
        dropout_rate: chance per joint and frame that a joint reads (0, 0, 0) at ``noise=1``.
        outlier_rate: chance per joint and frame of a tracking glitch (a jump of ~25 cm) at ``noise=1``.
        num_subjects: size of the population of bodies (subject IDs 1..num_subjects).
        num_setups: number of camera setups (setup IDs 1..num_setups).
        population_seed: fixes the bodies of the subjects and the geometry of the setups,
            so clips generated with different seeds share subjects and setups.
    """

    def __init__(self, *, num_frames_range: tuple[int, int] = (40, 120), noise: float = 1.0, jitter: float = 0.01,
                 dropout_rate: float = 1e-3, outlier_rate: float = 5e-4, num_subjects: int = 40,
                 num_setups: int = 17, population_seed: int = 0):
        lo, hi = num_frames_range
        if not 2 <= lo <= hi:
            raise ConfigError(f"num_frames_range must be (min, max) with 2 <= min <= max, got {num_frames_range}")
        if num_subjects < 2 or num_setups < 1:
            raise ConfigError(f"need num_subjects >= 2 and num_setups >= 1, got {num_subjects}, {num_setups}")
        self.num_frames_range = (lo, hi)
        self.noise = noise
        self.jitter = jitter
        self.dropout_rate = dropout_rate
        self.outlier_rate = outlier_rate
        rng = np.random.default_rng([population_seed, 0])
        height = np.clip(rng.normal(1.72, 0.08, num_subjects), 1.5, 1.95)
        #: (num_subjects, B) body dimensions in metres.
        self.subject_bones = height[:, None] * _PROPORTIONS * np.exp(rng.normal(0, 0.04, (num_subjects,
                                                                                           len(_PROPORTIONS))))
        #: (num_subjects, D) each subject's habitual offsets from the rest pose.
        self.subject_style = rng.normal(0, 0.04, (num_subjects, _NUM_DOF)) * (_IDLE > 0)
        #: (num_setups, 4): camera height (m), distance (m), tilt (rad), lateral offset (m).
        self.setups = np.stack([rng.uniform(0.9, 1.2, num_setups), rng.uniform(2.8, 3.5, num_setups),
                                np.radians(rng.uniform(-4, 4, num_setups)), rng.uniform(-0.25, 0.25, num_setups)],
                               axis=1)

    # -- public API ------------------------------------------------------------------
    def clips(self, num_clips: int, *, seed: int = 0, num_frames: int | None = None,
              classes: Sequence[int] | None = None) -> SyntheticClips:
        """Generate ``num_clips`` trimmed clips.

        Labels cycle through ``classes`` (default: all) in order, so every class appears
        equally often; clip ``i`` is drawn from ``numpy.random.default_rng([seed, i])``, so
        a longer batch starts with the clips of a shorter one. ``num_frames`` fixes every
        clip's length; by default each draws one from ``num_frames_range``.

        Returns:
            :class:`SyntheticClips` with data (N, 3, Tmax, 25, 2) float32.
        """
        if num_clips < 1:
            raise ConfigError(f"num_clips must be at least 1, got {num_clips}")
        classes = _check_classes(range(NUM_CLASSES) if classes is None else classes)
        start = time.perf_counter()
        labels = np.array([classes[i % len(classes)] for i in range(num_clips)], dtype=np.int64)
        rngs = [np.random.default_rng([seed, i]) for i in range(num_clips)]
        plans = [self._plan_clip(int(k), rng, num_frames) for k, rng in zip(labels, rngs, strict=True)]
        bodies = self._render([persons for persons, _ in plans], rngs)
        lengths = np.array([body.shape[1] for body in bodies], dtype=np.int64)
        data = np.zeros((num_clips, 3, int(lengths.max()), len(_J), _NUM_PERSONS), dtype=np.float32)
        for i, body in enumerate(bodies):
            data[i, :, : lengths[i]] = body
        meta = ClipMeta(*np.array([ids for _, ids in plans], dtype=np.int64).reshape(-1, 4).T)
        logger.debug("generated %d synthetic clips in %.3f s", num_clips, time.perf_counter() - start)
        return SyntheticClips(data, lengths, labels, meta)

    def clip(self, label: int, rng: np.random.Generator, *, num_frames: int | None = None,
             subject: int | None = None, camera: int | None = None, setup: int | None = None) -> np.ndarray:
        """One clip of class ``label`` drawn from ``rng``: (3, T, 25, 2) float32.

        ``subject``, ``camera`` and ``setup`` fix those IDs instead of drawing them.
        """
        _check_classes([label])
        persons, _ = self._plan_clip(label, rng, num_frames, subject=subject, camera=camera, setup=setup)
        return self._render([persons], [rng])[0]

    def untrimmed(self, *, seed: int = 0, num_actions: tuple[int, int] = (3, 6),
                  gap_frames: tuple[int, int] = (10, 60), classes: Sequence[int] | None = None) -> UntrimmedSequence:
        """One untrimmed sequence of one subject: background, action, background, ..., background.

        Actions are drawn from ``classes`` (one-person classes only; default: all of them);
        their lengths follow ``num_frames_range`` and the background gaps ``gap_frames``
        (both inclusive). A drawn ``sit_down`` is followed by ``stand_up`` when that class
        is allowed, and ``stand_up`` is only drawn that way. Background frames blend one
        action's last pose into the next one's first pose, with idle motion and a fidget.
        """
        one_person = [k for k in range(NUM_CLASSES) if k not in TWO_PERSON_CLASSES]
        pool = _check_classes(one_person if classes is None else classes)
        if TWO_PERSON_CLASSES.intersection(pool):
            raise ConfigError(f"untrimmed sequences hold one person; drop classes {sorted(TWO_PERSON_CLASSES)}")
        rng = np.random.default_rng(seed)
        order = _action_order(pool, int(rng.integers(num_actions[0], num_actions[1] + 1)), rng)
        subject, camera, setup, replication = self._draw_ids(rng)
        rest = _REST + self.subject_style[subject - 1]
        pieces, labels, segments = [], [], []
        previous, frame = rest, 0
        for k in order:
            action = self._poses(k, self._num_frames(rng, None), rng, [rest], yaw=previous[_YAW])[0]
            gap = _background(previous, action[0], int(rng.integers(gap_frames[0], gap_frames[1] + 1)), rng)
            pieces += [gap, action]
            labels += [np.zeros(len(gap), np.int64), np.full(len(action), k + 1, np.int64)]
            segments.append((k, frame + len(gap), frame + len(gap) + len(action)))
            frame += len(gap) + len(action)
            previous = action[-1]
        pieces.append(_background(previous, previous, int(rng.integers(gap_frames[0], gap_frames[1] + 1)), rng))
        labels.append(np.zeros(len(pieces[-1]), np.int64))
        q = np.concatenate(pieces)
        q += _idle(len(q), rng)
        view = self._view(camera, setup, replication, rng)
        person = _Person(q, self.subject_bones[subject - 1], *_place(view, 0.0, np.zeros(3)))
        data = self._render([[person]], [rng])[0]
        meta = ClipMeta(*(np.array([v], dtype=np.int64) for v in (subject, camera, setup, replication)))
        return UntrimmedSequence(data, np.concatenate(labels), segments, meta)

    # -- sampling --------------------------------------------------------------------
    def _num_frames(self, rng: np.random.Generator, num_frames: int | None) -> int:
        if num_frames is None:
            return int(rng.integers(self.num_frames_range[0], self.num_frames_range[1] + 1))
        if num_frames < 2:
            raise ConfigError(f"num_frames must be at least 2, got {num_frames}")
        return int(num_frames)

    def _draw_ids(self, rng: np.random.Generator, subject: int | None = None, camera: int | None = None,
                  setup: int | None = None) -> tuple[int, int, int, int]:
        """(subject, camera, setup, replication) IDs, drawn where not given."""
        drawn = (int(rng.integers(1, len(self.subject_bones) + 1)), int(rng.integers(1, 4)),
                 int(rng.integers(1, len(self.setups) + 1)), int(rng.integers(1, 3)))
        given = (subject, camera, setup)
        subject, camera, setup = (d if g is None else int(g) for d, g in zip(drawn[:3], given, strict=True))
        for name, value, top in (("subject", subject, len(self.subject_bones)), ("camera", camera, 3),
                                 ("setup", setup, len(self.setups))):
            if not 1 <= value <= top:
                raise ConfigError(f"{name} must be in 1..{top}, got {value}")
        return subject, camera, setup, drawn[3]

    @staticmethod
    def _poses(label: int, num_frames: int, rng: np.random.Generator, rests: list[np.ndarray],
               yaw: float = 0.0, gap: float = 0.0) -> list[np.ndarray]:
        """Pose parameters (T, D) of each person of one action (one rest pose (D,) each), without idle motion."""
        tau = np.linspace(0.0, 1.0, num_frames)
        u = tau + rng.uniform(-0.4, 0.4) / _PI * np.sin(_PI * tau)  # a monotone time warp
        qs = []
        for rest in rests:
            rest = rest + rng.normal(0, 0.03, _NUM_DOF) * (_IDLE > 0)
            rest[_YAW] = yaw
            qs.append(np.tile(rest, (num_frames, 1)))
        if _CLASSES[label].two_person:
            _CLASSES[label].program(*qs, u, rng, gap)
        else:
            _CLASSES[label].program(qs[0], u, rng)
            _free_arm(qs[0], u, rng)
        return qs

    def _plan_clip(self, label: int, rng: np.random.Generator, num_frames: int | None,
                   **ids) -> tuple[list[_Person], tuple[int, int, int, int]]:
        """The persons of one clip and its IDs ``(subject, camera, setup, replication)``."""
        num_frames = self._num_frames(rng, num_frames)
        subject, camera, setup, replication = self._draw_ids(rng, **ids)
        bodies, gap = [subject - 1], 0.0
        placements = [(0.0, np.zeros(3))]
        action = _CLASSES[label]
        if action.two_person:
            num_subjects = len(self.subject_bones)
            bodies.append((subject - 1 + int(rng.integers(1, num_subjects))) % num_subjects)
            gap = rng.uniform(1.3, 1.7)
            # Person 1 stands on the left or the right of the stage, like NTU's arbitrary body order.
            side = rng.choice((-1.0, 1.0))
            ahead = np.array([side * gap / 2, 0.0, 0.0])
            if action.facing:
                placements = [(-side * _PI / 2, -ahead), (side * _PI / 2, ahead)]
            else:
                placements = [(-side * _PI / 2, ahead), (-side * _PI / 2, -ahead)]
        rests = [_REST + self.subject_style[body] for body in bodies]
        qs = self._poses(label, num_frames, rng, rests, gap=gap)
        view = self._view(camera, setup, replication, rng, extra_distance=0.25 if action.two_person else 0.0)
        persons = []
        for q, body, (heading, position) in zip(qs, bodies, placements, strict=True):
            q += _idle(num_frames, rng)
            persons.append(_Person(q, self.subject_bones[body], *_place(view, heading, position)))
        return persons, (subject, camera, setup, replication)

    def _view(self, camera: int, setup: int, replication: int, rng: np.random.Generator,
              extra_distance: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
        """Stage-to-camera rotation (3, 3) and the stage origin in camera space (3,) for one recording."""
        height, distance, tilt, lateral = self.setups[setup - 1]
        distance += extra_distance
        yaw = math.radians(CAMERA_YAW_DEG[camera] + (15.0 if replication == 2 else -15.0) + rng.normal(0, 10))
        pitch = _rot("x", np.float64(tilt + rng.normal(0, 0.02)))
        origin = np.array([lateral + rng.normal(0, 0.45), -height, distance + rng.uniform(-0.5, 0.5)])
        return pitch @ _rot("y", np.float64(yaw)), pitch @ origin

    # -- rendering -------------------------------------------------------------------
    def _render(self, clips: list[list[_Person]], rngs: list[np.random.Generator]) -> list[np.ndarray]:
        """Camera-space joints of each clip, (3, T, 25, 2) float32, with sensor noise from its ``rng``."""
        persons = [p for clip in clips for p in clip]
        lengths = [len(p.q) for p in persons]
        q = np.concatenate([p.q for p in persons])
        bones = np.repeat(np.stack([p.bones for p in persons]), lengths, axis=0)
        rotation = np.repeat(np.stack([p.rotation for p in persons]), lengths, axis=0)
        offset = np.repeat(np.stack([p.offset for p in persons]), lengths, axis=0)
        joints = np.einsum("fij,fvj->fvi", rotation, _forward_kinematics(q, bones)) + offset[:, None]
        per_person = iter(np.split(joints, np.cumsum(lengths)[:-1]))
        out = []
        for clip, rng in zip(clips, rngs, strict=True):
            body = np.zeros((3, len(clip[0].q), len(_J), _NUM_PERSONS), dtype=np.float32)
            for m in range(len(clip)):
                body[..., m] = self._sensor(next(per_person), rng).transpose(2, 0, 1)
            out.append(body)
        return out

    def _sensor(self, joints: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """``joints`` (T, 25, 3) as a noisy sensor reads them: jitter, dropouts to 0 and outliers."""
        if self.noise <= 0:
            return joints
        shape = joints.shape[:2]
        joints = joints + rng.normal(0, self.noise * self.jitter, joints.shape) * _JITTER_SCALE[:, None]
        outliers = rng.random(shape) < self.noise * self.outlier_rate
        joints[outliers] += rng.normal(0, 0.25, (int(outliers.sum()), 3))
        joints[rng.random(shape) < self.noise * self.dropout_rate] = 0.0
        return joints


# ---------------------------------------------------------------------------------------
# Convenience functions and the 2D projection.

def make_clips(num_clips: int, *, seed: int = 0, num_frames: int | None = None, classes: Sequence[int] | None = None,
               **options) -> SyntheticClips:
    """``SyntheticActions(**options).clips(num_clips, seed=seed, ...)``: data (N, 3, Tmax, 25, 2) float32."""
    return SyntheticActions(**options).clips(num_clips, seed=seed, num_frames=num_frames, classes=classes)


def make_untrimmed(*, seed: int = 0, num_actions: tuple[int, int] = (3, 6), gap_frames: tuple[int, int] = (10, 60),
                   classes: Sequence[int] | None = None, **options) -> UntrimmedSequence:
    """``SyntheticActions(**options).untrimmed(seed=seed, ...)``: data (3, T, 25, 2), labels (T,), segments."""
    return SyntheticActions(**options).untrimmed(seed=seed, num_actions=num_actions, gap_frames=gap_frames,
                                                 classes=classes)


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
    from ..keypoints import convert_keypoints, get_format
    from ..universal import best_of

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
