"""Preprocessing recipes: how a raw 3D sequence or 2D annotation becomes a prepared sample."""

from dataclasses import asdict, dataclass

import numpy as np

from ..preprocess import align_view, fill_empty_frames, pad_bodies, select_bodies
from ..pyskl import annotation_to_clip
from .schema import NUM_PERSONS

#: Version of the preprocessing recipes, in the manifest as ``recipe_version`` (absent: 1). 2: the
#: 3D view alignment equals the reference's for every body orientation (bodies facing away differ).
RECIPE_VERSION = 2


@dataclass(frozen=True)
class Recipe3D:
    """Preprocessing of 3D sequences ``(3, T, V, M')`` -> ``(3, T', V, 2)`` float32.

    Attributes:
        alignment: view-alignment recipe name (``"ntu"`` or ``"uav"``, see :func:`align_view`).
        select_bodies: keep the 2 most energetic of the first ``max_candidates`` body slots
            (otherwise the slots are kept in order, padded to 2).
        max_candidates: body slots considered by the selection.
        max_frames: keep at most this many frames (after body selection), or ``None``.
        fill_empty_frames: apply :func:`fill_empty_frames` (before alignment).
    """

    alignment: str
    select_bodies: bool = True
    max_candidates: int = 4
    max_frames: int | None = None
    fill_empty_frames: bool = True

    def length(self, num_frames: int) -> int:
        """Frames ``T'`` of the result for a sequence of ``num_frames`` frames."""
        return num_frames if self.max_frames is None else min(num_frames, self.max_frames)

    def apply(self, data: np.ndarray) -> np.ndarray:
        """``(3, T, V, M')`` -> ``(3, length(T), V, 2)`` float32."""
        if self.select_bodies:
            data = select_bodies(data, NUM_PERSONS, max_candidates=self.max_candidates)
        else:
            data = pad_bodies(data, NUM_PERSONS)
        data = data[:, : self.length(data.shape[1])]
        if self.fill_empty_frames:
            data = fill_empty_frames(data)
        return align_view(data, self.alignment).astype(np.float32, copy=False)


@dataclass(frozen=True)
class Recipe2D:
    """pyskl 2D annotation -> ``(3, T, 17, 2)`` float32 (see :func:`annotation_to_clip`).

    Attributes:
        padding: third channel: ``"confidence"`` (keypoint scores) or ``"zero"``.
        legacy_2d_norm: reproduce the reference NTU-2D scaling bug instead of x/width, y/height.
    """

    padding: str = "confidence"
    legacy_2d_norm: bool = False

    def apply(self, annotation: dict) -> np.ndarray:
        clip = annotation_to_clip(annotation, padding=self.padding, legacy_2d_norm=self.legacy_2d_norm,
                                  num_persons=NUM_PERSONS)
        return clip.astype(np.float32, copy=False)


def _describe(recipe: Recipe3D | Recipe2D) -> dict:
    """A recipe as a JSON-able dict for the manifest."""
    return {"kind": type(recipe).__name__, **asdict(recipe)}
