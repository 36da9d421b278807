"""The generator: bodies, camera setups, clips, untrimmed sequences and sensor noise (:class:`SyntheticActions`)."""

import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from ...errors import ConfigError
from .body import (
    _FPS,
    _IDLE,
    _J,
    _JITTER_SCALE,
    _NUM_DOF,
    _PI,
    _PROPORTIONS,
    _REST,
    _YAW,
    _forward_kinematics,
    _rot,
    _smoothstep,
)
from .programs import _CLASSES, _SIT_DOWN, _STAND_UP, NUM_CLASSES, TWO_PERSON_CLASSES, _free_arm

logger = logging.getLogger(__name__)

_NUM_PERSONS = 2

#: Horizontal angle (degrees) at which each camera ID sees the stage, NTU-style 3 cameras.
CAMERA_YAW_DEG = {1: 45.0, 2: 0.0, 3: -45.0}


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
        lengths: (N,) int64 valid frames per clip.
        labels: (N,) int64 class indices into :data:`ACTION_NAMES`.
        meta: subject / camera / setup / replication IDs.
    """

    data: np.ndarray
    lengths: np.ndarray
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
