"""`SkeletonSequence`: one skeleton recording as read from a dataset file.

Shapes (C channels, T frames, V joints, M body slots):

* ``data``: ``(C, T, V, M)`` float32 joint coordinates; an absent body or joint is all zeros.
* ``body_counts``: ``(T,)`` int64, bodies recorded in each frame; slot ``m`` of frame ``t``
  holds a body iff ``m < body_counts[t]``.
* ``body_ids``: ``(T, M)`` uint64 tracking IDs (0 where no body is recorded).
* ``body_info``: ``(T, M, K)`` float32, the per-body fields of the file after the ID.
* ``joint_info``: ``(K, T, V, M)`` float32, per-joint fields other than the coordinates.

The per-body arrays are ``None`` for formats that have no such data (PKU-MMD).
"""

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


@dataclass
class SkeletonSequence:
    """A skeleton sequence with what its file and file name say about it.

    Attributes:
        data: ``(C, T, V, M)`` float32 coordinates; ``T`` counts every frame record of the
            file, including frames without bodies.
        layout: joint layout name (``"ntu25"``, ``"uav17"``, ...), see :mod:`usdrl.skeleton`.
        name: sample name, the file name without its extension.
        source: the file the sequence was read from, if any.
        meta: fields parsed from the file name (e.g. ``setup``, ``camera``, ``performer``,
            ``replication``, ``action`` and the 0-based ``label`` for NTU); empty when the
            name does not follow the dataset's naming scheme.
        body_counts: ``(T,)`` int64 bodies per frame, or ``None``.
        body_ids: ``(T, M)`` uint64 body tracking IDs, or ``None``.
        body_info: ``(T, M, K)`` float32 per-body fields after the ID, or ``None``.
        joint_info: ``(K, T, V, M)`` float32 per-joint fields besides ``data``, or ``None``.
    """

    data: np.ndarray
    layout: str
    name: str = ""
    source: Path | None = None
    meta: dict = field(default_factory=dict)
    body_counts: np.ndarray | None = None
    body_ids: np.ndarray | None = None
    body_info: np.ndarray | None = None
    joint_info: np.ndarray | None = None

    @property
    def num_frames(self) -> int:
        """Number of frame records ``T``."""
        return int(self.data.shape[1])

    @property
    def num_joints(self) -> int:
        """Joints per body ``V``."""
        return int(self.data.shape[2])

    @property
    def num_bodies(self) -> int:
        """Body slots ``M`` (the most bodies in any frame for NTU-style files)."""
        return int(self.data.shape[3])

    @property
    def label(self) -> int | None:
        """0-based class index from the file name, or ``None`` when the name has none."""
        return self.meta.get("label")
