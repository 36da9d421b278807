"""Prepared datasets as universal model input, and several prepared datasets read as one.

:class:`UniversalDataset` turns the items of a :class:`~usdrl.data.prepared.SkeletonDataset` of any
registered keypoint format, 2D or 3D, into the input of a universal model
(:func:`usdrl.universal.to_universal`) as they are read; :class:`MixedDataset` joins several datasets
(e.g. the universal views of an NTU-25 3D and a COCO-17 2D dataset) into one. For a universal model
:meth:`SkeletonDataset.for_model <usdrl.data.prepared.SkeletonDataset.for_model>` and
:func:`~usdrl.data.prepared.open_split` return a :class:`UniversalDataset`; for a list of folders, a
:class:`MixedDataset`.
"""

import logging

import numpy as np
import torch.utils.data

from ...errors import ConfigError
from ..preprocess import ALIGNMENT_RECIPES
from .reader import SkeletonDataset
from .schema import IGNORE_LABEL, NUM_CHANNELS

logger = logging.getLogger(__name__)

#: Samples converted at once when a :class:`LazyClips` is read.
CHUNK = 16

_WARNED_NO_IMAGE_SHAPES: set[str] = set()


class LazyClips:
    """An array-like ``(N, C, T, V, M)`` float32 whose samples are made when they are read: index the
    samples first (``clips[i]``, ``clips[i, :, :n]``, ``clips[a:b]``, ``clips[[i, j]]``) or take it all
    (``np.asarray(clips)``). The :attr:`~UniversalDataset.padded_clips` of the datasets of this module.

    ``read(rows)`` gives the samples ``rows`` (an int64 array), called with at most :data:`CHUNK` rows at a time.
    """

    dtype = np.dtype(np.float32)

    def __init__(self, shape: tuple[int, ...], read):
        self.shape, self._read = tuple(int(size) for size in shape), read

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, key):
        key = key if isinstance(key, tuple) else (key,)
        if not key or key[0] is Ellipsis or key[0] is None:
            raise IndexError("index the samples first (clips[i], clips[a:b], clips[i, :, :n]), or use np.asarray")
        rows = np.arange(self.shape[0])[key[0]]
        if np.ndim(rows) == 0:
            return self._rows(np.array([rows]))[0][key[1:]]
        return self._rows(rows)[(slice(None), *key[1:])]

    def _rows(self, rows: np.ndarray) -> np.ndarray:
        parts = [np.asarray(self._read(rows[i:i + CHUNK]), dtype=np.float32) for i in range(0, len(rows), CHUNK)]
        return np.concatenate(parts) if parts else np.zeros((0, *self.shape[1:]), np.float32)

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        """Every sample (numpy casts the result to ``dtype``)."""
        return self[:]


def _recipe(manifest: dict, kind: str) -> dict:
    """The manifest's preprocessing recipe of the ``kind`` splits (PKU-MMD datasets have one per kind), or {}."""
    recipe = manifest.get("preprocessing") or {}
    return recipe if "kind" in recipe else recipe.get(kind) or {}


def _centre_joint(recipe: dict) -> int | None:
    """Body 0's joint that a 3D recipe's view alignment put at the origin in every frame (None: no alignment)."""
    alignment = recipe.get("alignment")
    if isinstance(alignment, dict):
        return alignment["center_joint"]
    return ALIGNMENT_RECIPES[alignment].center_joint if alignment in ALIGNMENT_RECIPES else None


class UniversalDataset(torch.utils.data.Dataset):
    """A prepared split of any registered keypoint format, 2D or 3D, read as universal model input.

    Item ``i`` is ``(to_universal(clip), label)`` where ``(clip (C, T, V, M), label)`` is item ``i`` of
    ``dataset`` (labels, per-frame labels for windows, unchanged) and the clip is read as keypoints
    ``(M, T, V, C)`` of the keypoint format named by the dataset's layout: ``(6, T, 30, M)`` float32
    (:func:`usdrl.universal.to_universal`), not resampled again, so frames past a clip's end (windows)
    and padded persons stay absent (all zero).

    * **2D data** (``usdrl prepare folder``, ``keypoints``, ``pyskl``, ``ntu2d``): x and y are multiplied
      back by the image width and height the preparation divided them by (the split's
      ``image_shape.npy``), so the body keeps its proportions; a format in normalised units (MediaPipe)
      is then multiplied by them once more, as ``to_universal(..., image_size=...)`` does. The third
      channel is the score with ``padding="confidence"``; with ``"zero"`` the keypoints have no scores.
      A 2D dataset prepared before the image shapes were recorded is read as it is (its bodies squeezed
      by the images' aspect ratio; a warning says so): prepare it again to keep them.
    * **3D data** (metres): as they are, except that the view alignment of the preparation put body 0's
      centre joint exactly at the origin in every frame, where ``to_universal`` would take it for an
      absent joint: each clip is moved along z (which changes nothing else, since ``to_universal``
      centres every clip on its hips) so that every joint present stays present.

    Raises ConfigError when the universal input cannot read the data: a layout that is not a
    registered keypoint format, channels that do not fit it (3D clips of a 2D format, other than 3
    channels) or 2D data prepared with ``legacy_2d_norm``.

    The attributes the tasks read are the dataset's (``labels``, ``lengths``, ``names``,
    ``num_classes``, ``class_names``, ``frame_labels``, ``windows``, ``manifest``, ``split``, ``path``,
    ...); :attr:`padded_clips` converts the stored samples as they are read. ``dataset`` is the
    wrapped :class:`~usdrl.data.prepared.SkeletonDataset` (its random crops go into training
    checkpoints through it).
    """

    def __init__(self, dataset: SkeletonDataset):
        from ...keypoints import get_format, list_formats

        if not isinstance(dataset, SkeletonDataset):
            raise ConfigError(f"UniversalDataset reads a SkeletonDataset, got {type(dataset).__name__}")
        self.dataset = dataset
        manifest = dataset.manifest
        where = f"{dataset.path} ({manifest['source']} {manifest['benchmark']})"
        if dataset.layout not in list_formats():
            raise ConfigError(f"{where}: layout {dataset.layout!r} is not a registered keypoint format, so a "
                              f"universal model cannot read it; the formats are {', '.join(list_formats())} "
                              "(usdrl.keypoints.register_format adds one)")
        #: The keypoint format of the clips (the dataset's layout).
        self.format = get_format(dataset.layout)
        recipe = _recipe(manifest, dataset.kind)
        #: 2 or 3: the coordinates of the clips.
        self.dims = {"Recipe2D": 2, "Recipe3D": 3}.get(recipe.get("kind"), self.format.dims)
        channels = manifest["num_channels"]
        if self.dims > self.format.dims or channels != NUM_CHANNELS:
            what = "x, y, z" if self.dims == 3 else "x, y and a score (or zero)"
            raise ConfigError(f"{where}: {self.dims}D clips of {channels} channels per joint in the "
                              f"{self.format.dims}D keypoint format {self.format.name}; a universal model reads "
                              f"{NUM_CHANNELS} channels per joint ({what}) of a format with at least {self.dims} "
                              "dimensions")
        if recipe.get("legacy_2d_norm"):
            raise ConfigError(f"{where} was prepared with legacy_2d_norm (the reference's NTU-2D scaling, which "
                              "leaves a body's proportions unknown); prepare it again without it for a universal "
                              "model",
                              keywords=("legacy_2d_norm",))
        #: Whether the third channel of 2D clips is a score (``padding="confidence"``).
        self.has_scores = self.dims == 2 and recipe.get("padding") != "zero"
        #: 3D: the joint of body 0 that the view alignment put at the origin in every frame (None: none, and 2D).
        self.centre_joint = _centre_joint(recipe)
        self._sizes = None
        if self.dims == 2 and dataset.image_shapes is not None:
            self._sizes = dataset.image_shapes[:, ::-1]   # (width, height)
        elif self.dims == 2 and str(dataset.path) not in _WARNED_NO_IMAGE_SHAPES:
            _WARNED_NO_IMAGE_SHAPES.add(str(dataset.path))
            logger.warning("%s: its 2D keypoints were divided by their images' width and height, which this "
                           "prepared dataset does not record (it predates image_shape.npy), so a universal model "
                           "reads its bodies squeezed by the aspect ratio; prepare it again to keep their proportions",
                           dataset.path)

    # -- conversion ----------------------------------------------------------------------
    def convert(self, clips: np.ndarray, samples: np.ndarray) -> np.ndarray:
        """Universal input ``(B, 6, T, 30, M)`` of clips ``(B, C, T, V, M)`` read from the stored samples
        ``samples`` ``(B,)`` of the dataset (whose image shapes apply)."""
        from ...universal import to_universal

        keypoints = np.asarray(clips).transpose(0, 4, 2, 3, 1)       # (B, M, T, V, C)
        if self.dims == 3:
            return to_universal(self._keep_centre(keypoints), self.format.name)
        coordinates = keypoints[..., :2]
        if self._sizes is not None:
            size = self._sizes[np.asarray(samples)][:, None, None, None]                # (B, 1, 1, 1, 2)
            coordinates = coordinates * size          # undo the preparation's division by the image size
            if self.format.convention.units == "normalized":
                coordinates = coordinates * size      # to_universal's image_size: normalised units to pixels
        if self.has_scores:
            coordinates = np.concatenate([coordinates, keypoints[..., 2:]], axis=-1)
        return to_universal(coordinates, self.format.name, has_scores=self.has_scores)

    def _keep_centre(self, keypoints: np.ndarray) -> np.ndarray:
        """3D keypoints ``(B, M, T, V, 3)`` moved along z so that no present joint is at the origin: a joint
        is present when it is not all zero, or it is :attr:`centre_joint` of body 0 in a frame where body 0
        has a joint."""
        present = (keypoints != 0).any(-1)
        if self.centre_joint is not None:
            present[:, 0, :, self.centre_joint] = present[:, 0].any(-1)
        shift = 1 + np.abs(keypoints[..., 2]).max(axis=(1, 2, 3), keepdims=True)     # per clip: z + shift >= 1
        out = keypoints.copy()
        out[..., 2] += shift * present
        return out

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int):
        index = range(len(self))[index]
        clip, label = self.dataset[index]
        sample = self.dataset.windows[index, 0] if self.dataset.windows is not None else index
        return self.convert(clip[None], np.array([sample]))[0], label

    # -- what the tasks read -----------------------------------------------------------------
    @property
    def padded_clips(self) -> LazyClips:
        """The stored samples as universal input ``(N, 6, Tmax, 30, M)``, converted as they are read (a
        :class:`LazyClips`), zero after each sample's valid frames."""
        shape = self.dataset.padded_clips.shape
        return LazyClips((shape[0], *self.input_shape[:1], shape[2], *self.input_shape[2:]),
                         lambda rows: self.convert(self.dataset.padded_clips[rows], rows))

    @property
    def input_shape(self) -> tuple[int, int, int, int]:
        """Shape of one item's clip ``(6, T, 30, M)``."""
        from ...universal import IN_CHANNELS, UNIVERSAL

        return (IN_CHANNELS, self.dataset.num_frames, UNIVERSAL.num_joints, self.dataset.input_shape[3])

    @property
    def layout(self) -> str:
        """``"universal"``: the layout of the items (the data's own is :attr:`format`)."""
        from ...universal import UNIVERSAL

        return UNIVERSAL.name

    def check_config(self, config, *, head: bool = True) -> None:
        """ConfigError unless ``config`` is a universal model's that fits these items (persons, frames and,
        with ``head``, classes, as :meth:`usdrl.data.prepared.SkeletonDataset.check_config`)."""
        self.dataset._check_fit(config, head=head, universal=True)

    labels = property(lambda self: self.dataset.labels, doc="``(N,)`` class of each stored sample.")
    lengths = property(lambda self: self.dataset.lengths, doc="``(N,)`` valid frames of each stored sample.")
    names = property(lambda self: self.dataset.names, doc="Sample names.")
    num_classes = property(lambda self: self.dataset.num_classes, doc="Classes of the labels.")
    class_names = property(lambda self: self.dataset.class_names, doc="Class names from the manifest, or None.")
    frame_labels = property(lambda self: self.dataset.frame_labels, doc="Untrimmed splits: per-frame labels.")
    windows = property(lambda self: self.dataset.windows, doc="``windows``: (sequence, first frame) of each item.")
    manifest = property(lambda self: self.dataset.manifest, doc="The dataset's manifest.")
    split = property(lambda self: self.dataset.split, doc="The split's name.")
    path = property(lambda self: self.dataset.path, doc="The split's folder.")
    kind = property(lambda self: self.dataset.kind, doc="``clips`` or ``untrimmed``.")
    sampling = property(lambda self: self.dataset.sampling, doc="The temporal sampling.")
    num_frames = property(lambda self: self.dataset.num_frames, doc="Frames per item.")


def _check_same(datasets, attribute: str, what: str) -> None:
    """ConfigError unless every dataset that has ``attribute`` has the same value."""
    values = {getattr(d, attribute) for d in datasets if hasattr(d, attribute)}
    if len(values) > 1:
        raise ConfigError(f"the datasets to mix differ in {what}: {', '.join(sorted(map(str, values)))}")


class MixedDataset(torch.utils.data.ConcatDataset):
    """Several datasets read as one: their items one after the other (a ``torch.utils.data.ConcatDataset``),
    with the attributes the tasks read joined, e.g. prepared datasets of different keypoint formats read
    by one universal model (``open_split([ntu, coco], "train", model=model)``).

    The datasets must give items alike: one layout (``"universal"`` for mixed formats), clip shape,
    kind of split and sampling (ConfigError otherwise). Labels are taken as they are, so the datasets
    must share one class numbering: :attr:`num_classes` is the largest one's and :attr:`class_names`
    the longest list when every other is its beginning (ConfigError when two disagree).
    :attr:`padded_clips` holds every stored sample, zero-padded to the longest.
    """

    def __init__(self, datasets):
        datasets = list(datasets)
        if not datasets:
            raise ConfigError("a MixedDataset needs at least one dataset")
        super().__init__(datasets)
        _check_same(datasets, "layout", "layout (read datasets of different layouts with a universal model: "
                                    "open_split([...], split, model=universal_model))")
        _check_same(datasets, "input_shape", "clip shape (C, T, V, M) (open them for one model)")
        _check_same(datasets, "kind", "kind of split")
        _check_same(datasets, "sampling", "sampling")
        names = [d.class_names for d in datasets if getattr(d, "class_names", None)]
        longest = max(names, key=len, default=None)
        for other in names:
            if other != longest[:len(other)]:
                k = next(i for i in range(len(other)) if other[i] != longest[i])
                raise ConfigError(f"the datasets to mix name their classes differently (class {k} is {other[k]!r} "
                                  f"in one, {longest[k]!r} in another): their labels must share one numbering")
        self._class_names = None if longest is None else list(longest)

    def _joined(self, attribute: str) -> list:
        missing = [type(d).__name__ for d in self.datasets if not hasattr(d, attribute)]
        if missing:
            raise ConfigError(f"a {missing[0]} among the mixed datasets has no .{attribute}")
        return [getattr(d, attribute) for d in self.datasets]

    @property
    def labels(self) -> np.ndarray:
        """``(N,)`` the labels of every dataset's samples, in order."""
        return np.concatenate(self._joined("labels"))

    @property
    def lengths(self) -> np.ndarray:
        """``(N,)`` valid frames of every stored sample."""
        return np.concatenate(self._joined("lengths"))

    @property
    def names(self) -> list[str]:
        """Every dataset's sample names, as they are (two datasets may use one name)."""
        return [name for names in self._joined("names") for name in names]

    @property
    def num_classes(self) -> int:
        """Classes of the labels: the largest of the datasets'."""
        return max(int(n) for n in self._joined("num_classes"))

    @property
    def class_names(self) -> list[str] | None:
        """Class names: the longest of the datasets' lists (every other begins it), or None."""
        return None if self._class_names is None else list(self._class_names)

    @property
    def input_shape(self) -> tuple[int, int, int, int]:
        """Shape of one item's clip."""
        return tuple(self.datasets[0].input_shape)

    # the same in every dataset (checked when mixed)
    layout = property(lambda self: self.datasets[0].layout,
                      doc="The datasets' layout (``\"universal\"`` for universal input).")
    kind = property(lambda self: self.datasets[0].kind, doc="``clips`` or ``untrimmed``.")
    sampling = property(lambda self: self.datasets[0].sampling, doc="The datasets' temporal sampling.")
    num_frames = property(lambda self: self.datasets[0].num_frames, doc="Frames per item.")

    @property
    def split(self) -> str:
        """The split names, joined by ``+`` when they differ."""
        return "+".join(dict.fromkeys(self._joined("split")))

    @property
    def manifests(self) -> list[dict]:
        """Each dataset's manifest."""
        return self._joined("manifest")

    @property
    def manifest(self) -> dict:
        """What describes the mixture: ``source`` ``"mixed"``, ``benchmark`` listing each dataset's source
        and benchmark (a trained model's protocol names them), and ``parts``, the manifests."""
        parts = self.manifests
        return {"source": "mixed", "benchmark": ", ".join(f"{m['source']} {m['benchmark']}" for m in parts),
                "parts": parts}

    @property
    def windows(self) -> np.ndarray | None:
        """``windows`` sampling: ``(W, 2)`` (sequence index among all the datasets', first frame) of each item."""
        windows = self._joined("windows")
        if any(w is None for w in windows):
            return None
        offsets = np.cumsum([0] + [len(n) for n in self._joined("lengths")])[:-1]
        return np.concatenate([w + np.array([offset, 0]) for w, offset in zip(windows, offsets, strict=True)])

    @property
    def frame_labels(self) -> np.ndarray:
        """Untrimmed splits: per-frame labels ``(N, Tmax)``, -1 past each sequence."""
        parts = self._joined("frame_labels")
        out = np.full((sum(len(p) for p in parts), max(p.shape[1] for p in parts)), IGNORE_LABEL, np.int64)
        start = 0
        for part in parts:
            out[start:start + len(part), : part.shape[1]] = part
            start += len(part)
        return out

    @property
    def padded_clips(self) -> LazyClips:
        """Every stored sample ``(N, C, Tmax, V, M)`` (zero after each one's valid frames), read as needed."""
        parts = self._joined("padded_clips")
        counts = [len(p) for p in parts]
        starts = np.cumsum([0] + counts)
        shape = (starts[-1], parts[0].shape[1], max(p.shape[2] for p in parts), *parts[0].shape[3:])

        def read(rows: np.ndarray) -> np.ndarray:
            out = np.zeros((len(rows), *shape[1:]), np.float32)
            which = np.searchsorted(starts, rows, side="right") - 1
            for part in np.unique(which):
                chosen = np.flatnonzero(which == part)
                values = np.asarray(parts[part][rows[chosen] - starts[part]])
                out[chosen, :, : values.shape[2]] = values
            return out

        return LazyClips(shape, read)

    def check_config(self, config, *, head: bool = True) -> None:
        """Every dataset's ``check_config``."""
        for dataset in self._joined("check_config"):
            dataset(config, head=head)
