"""Action programs: each class is a short program animating the pose parameters over normalised time
``u in [0, 1]``; the class table (:data:`ACTION_NAMES`, :data:`TWO_PERSON_CLASSES`)."""

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial

import numpy as np

from .body import _ARM, _FLEX, _FWD, _HEAD, _LEAN, _LEG, _PI, _RIGHT, _TWIST, _UP, _YAW, _smoothstep

# ---------------------------------------------------------------------------------------
# Timing helpers of the programs. ``u`` is (T,).

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
