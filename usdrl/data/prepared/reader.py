"""The reader: :func:`read_manifest` and :class:`SkeletonDataset`, one split of a prepared dataset read
lazily, checked as :func:`~usdrl.data.prepared.prepare_dataset` writes it, as model clips."""

import json
import logging
import os
import shlex
from os import PathLike
from pathlib import Path

import numpy as np
import torch.utils.data

from ...errors import ConfigError, DataFormatError
from ..preprocess import center_crop_resize, observed_length, random_crop_resize, resample
from .recipes import RECIPE_VERSION
from .schema import (
    CLIPS,
    FORMAT,
    FORMAT_VERSION,
    IGNORE_LABEL,
    MANIFEST,
    NUM_CHANNELS,
    NUM_PERSONS,
    UNTRIMMED,
    moved_aside,
)

logger = logging.getLogger(__name__)

#: Temporal sampling modes of :class:`SkeletonDataset`.
SAMPLINGS = ("resample", "random_crop", "center_crop", "windows")

_MANIFEST_KEYS = ("source", "benchmark", "layout", "num_channels", "num_joints", "num_persons", "num_classes",
                  "splits")


def read_manifest(path: str | PathLike) -> dict:
    """The manifest of the prepared dataset folder ``path``.

    Raises DataFormatError when ``path`` has no complete manifest (not a prepared dataset,
    or a run that did not finish), or one of another format version.
    """
    path = Path(path)
    file = path / MANIFEST
    if not file.is_file():
        aside = moved_aside(path) if not path.exists() else []
        if aside:
            raise DataFormatError(f"{path} does not exist: a killed `usdrl prepare --overwrite` left the previous "
                                  f"dataset at {aside[0]}; run the same prepare command again (it puts that "
                                  "back first) or move it back")
        raise DataFormatError(f"{path}: not a prepared dataset: {MANIFEST} is missing (an interrupted "
                              f"`usdrl prepare` leaves none; run it again)")
    try:
        manifest = json.loads(file.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise DataFormatError(f"{file}: not a valid manifest ({exc})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise DataFormatError(f"{file}: not a {FORMAT} manifest")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise DataFormatError(f"{file}: format version {manifest.get('format_version')!r}; this usdrl reads "
                              f"version {FORMAT_VERSION} (prepare the dataset again)")
    missing = [key for key in _MANIFEST_KEYS if key not in manifest]
    if missing:
        raise DataFormatError(f"{file}: the manifest lacks {', '.join(missing)}")
    for key in _MANIFEST_KEYS:
        value = manifest[key]
        if key == "splits":
            fits = isinstance(value, dict) and all(isinstance(name, str) for name in value)
        elif key.startswith("num_"):
            fits = _is_count(value) and value > 0
        else:
            fits = isinstance(value, str)
        if not fits:
            kind = ("a dict of splits" if key == "splits" else "a positive integer" if key.startswith("num_")
                    else "a string")
            raise DataFormatError(f"{file}: {key} must be {kind}, found {_short(value)}")
    _warn_if_old_recipe(path, manifest)
    return manifest


_WARNED_OLD_RECIPE: set[str] = set()


def _warn_if_old_recipe(path: Path, manifest: dict) -> None:
    """Warn once per folder about a 3D dataset prepared before :data:`RECIPE_VERSION`, naming the
    command that remakes it (2D ``ntu2d`` data has no view alignment and is unchanged)."""
    version = manifest.get("recipe_version", 1)
    key = str(path.resolve())
    if version >= RECIPE_VERSION or manifest["source"] == "ntu2d" or key in _WARNED_OLD_RECIPE:
        return
    _WARNED_OLD_RECIPE.add(key)
    command = shlex.join(["usdrl", "prepare", manifest["source"], manifest.get("raw", "RAW"), str(path),
                          "--benchmark", manifest["benchmark"], "--overwrite"])
    logger.warning("%s was prepared with recipe version %s; since version %d the view alignment equals the "
                   "reference's for bodies facing away from the camera, so its clips differ from what usdrl "
                   "prepares now. Remake it with: %s", path, version, RECIPE_VERSION, command)


#: The dtype of each array of a split, as :func:`prepare_dataset` writes it.
_ARRAY_DTYPES = {"data": "float32", "num_frames": "int64", "labels": "int64", "frame_labels": "int64",
                 "image_shape": "float64"}


def _is_count(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _check_split_entry(file: Path, manifest: dict, split: str) -> dict:
    """The manifest's entry of ``split`` (``file`` is the manifest), checked: its kind, and each array's
    shape and dtype as :func:`prepare_dataset` writes them, consistent with each other and the manifest."""
    entry = manifest["splits"][split]
    where = f"{file}: split {split!r}"
    if not (isinstance(entry, dict) and entry.get("kind") in (CLIPS, UNTRIMMED)
            and isinstance(entry.get("arrays"), dict)):
        raise DataFormatError(f"{where} must have 'kind' ({CLIPS!r} or {UNTRIMMED!r}) and 'arrays', "
                              f"found {_short(entry)}")
    arrays = entry["arrays"]
    keys = (["data", "num_frames", "labels"] + (["frame_labels"] if entry["kind"] == UNTRIMMED else [])
            + (["image_shape"] if "image_shape" in arrays else []))  # 2D data, unless prepared before it was kept
    for key in keys:
        spec = arrays.get(key)
        if not (isinstance(spec, dict) and isinstance(spec.get("shape"), list) and all(map(_is_count, spec["shape"]))
                and spec.get("dtype") == _ARRAY_DTYPES[key]):
            raise DataFormatError(f"{where}: array {key!r} must be {{'shape': [sizes], 'dtype': "
                                  f"'{_ARRAY_DTYPES[key]}'}}, found {_short(spec)}")
    data = arrays["data"]["shape"]
    if len(data) != 5:
        raise DataFormatError(f"{where}: data must have 5 dimensions (N, C, T, V, M), found {data}")
    count, max_frames = data[0], data[2]
    expected = {"data": [count, manifest["num_channels"], max_frames, manifest["num_joints"], manifest["num_persons"]],
                "num_frames": [count], "labels": [count], "frame_labels": [count, max_frames],
                "image_shape": [count, 2]}
    for key in keys:
        if arrays[key]["shape"] != expected[key]:
            raise DataFormatError(f"{where}: array {key!r} has shape {arrays[key]['shape']}, expected {expected[key]} "
                                  "from the data array and the manifest")
    if entry.get("count", count) != count:
        raise DataFormatError(f"{where}: count {_short(entry['count'])} but the data holds {count} samples")
    return entry


def _resolve_split(path: Path, split: str | None) -> tuple[Path, str]:
    """``(dataset folder, split)``; with ``split=None``, ``path`` must be a split folder."""
    if split is not None:
        return path, split
    if not (path.parent / MANIFEST).is_file():
        raise ConfigError(f"{path}: give a split, or the path of a split folder inside a prepared dataset")
    return path.parent, path.name


def _load_array(folder: Path, key: str, spec: dict, mmap: bool) -> np.ndarray:
    """``folder/key.npy`` (memory-mapped when ``mmap``), checked against the manifest's shape and dtype."""
    file = folder / f"{key}.npy"
    try:
        array = np.load(file, mmap_mode="r" if mmap else None, allow_pickle=False)
    except (OSError, ValueError, EOFError, TypeError) as exc:  # EOFError: an empty file
        raise DataFormatError(f"{file}: cannot be read as a .npy array ({exc})") from None
    if list(array.shape) != spec["shape"] or array.dtype != np.dtype(spec["dtype"]):
        raise DataFormatError(f"{file}: shape {array.shape} {array.dtype}, the manifest says "
                              f"{tuple(spec['shape'])} {spec['dtype']}")
    return array


def head_class_names(dataset, num_classes: int) -> list[str] | None:
    """The class names of a new ``num_classes`` head trained on ``dataset`` (a :class:`SkeletonDataset`,
    or a ``Subset`` of one): its manifest's ``class_names`` when they number ``num_classes``, else None."""
    while isinstance(dataset, torch.utils.data.Subset):
        dataset = dataset.dataset
    names = getattr(dataset, "class_names", None)
    return names if names is not None and len(names) == num_classes else None


def _load_names(file: Path, count: int) -> list[str]:
    """The ``count`` sample names in ``file`` (a JSON list of strings), or DataFormatError naming it."""
    try:
        names = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise DataFormatError(f"{file}: cannot be read as a JSON list of sample names ({exc})") from None
    if not (isinstance(names, list) and all(isinstance(name, str) for name in names)):
        raise DataFormatError(f"{file}: expected a JSON list of sample names, found {_short(names)}")
    if len(names) != count:
        raise DataFormatError(f"{file}: {len(names)} names for {count} samples")
    return names


class SkeletonDataset(torch.utils.data.Dataset):
    """One split of a prepared dataset, read lazily, as model clips.

    Args:
        path: the prepared dataset folder (or, with ``split=None``, one of its split folders).
        split: split name, e.g. ``"train"``, ``"test"``, ``"train_untrimmed"``.
        sampling: temporal sampling of the valid frames to ``num_frames``:

            * ``"resample"``: the whole valid sequence, linearly resampled.
            * ``"random_crop"``: a random crop of ``clamp(floor(n * s), num_frames, n)`` frames,
              ``s ~ U(ratio)``, resampled (the pretraining crop, spec section 5.1).
            * ``"center_crop"``: the central ``ratio`` of the frames, resampled (section 5.5).
            * ``"windows"`` (untrimmed splits only): consecutive windows of ``num_frames``
              frames at the original frame rate, starting every ``window_stride`` frames until
              the sequence is covered; frames past its end are zero with label -1.

        num_frames: frames ``T`` per clip.
        ratio: ``random_crop``: ``(min, max)`` of ``s``, default ``(0.1, 1.0)``; ``center_crop``:
            the kept fraction, default 1.0. Not used by the other modes.
        observe_ratio: early prediction: only the first ``max(3, floor(n * observe_ratio))``
            valid frames are observed (cropped before sampling, section 6.6). Not with ``windows``.
        window_stride: ``windows`` only: frames between window starts, 1..num_frames
            (default ``num_frames``: non-overlapping windows).
        seed: seed of the random crops. In a DataLoader worker the stream also depends on
            torch's per-worker seed, so crops differ between workers and epochs and are
            reproducible under ``torch.manual_seed``.

    Items: ``(clip, label)`` with clip ``(C, T, V, M)`` float32 and label an int, or for
    ``windows`` ``(clip, per-frame labels (T,) int64)``.

    Opening checks the folder as :func:`prepare_dataset` writes it and raises DataFormatError
    naming the file: the manifest's fields and split entry, each array's shape and dtype,
    ``names.json`` (N strings), lengths in ``1..Tmax`` and labels in range. The data itself is
    checked clip by clip as it is read: NaN or infinite values name the sample.
    """

    def __init__(
        self,
        path: str | PathLike,
        split: str | None = None,
        *,
        sampling: str = "resample",
        num_frames: int = 64,
        ratio: float | tuple[float, float] | None = None,
        observe_ratio: float | None = None,
        window_stride: int | None = None,
        seed: int | None = None,
    ):
        root, split = _resolve_split(Path(path), split)
        self.manifest = read_manifest(root)
        splits = self.manifest["splits"]
        if split not in splits:
            raise ConfigError(f"{root} has no split {split!r}; it has {', '.join(splits)}")
        self.split = split
        self.path = root / split
        entry = _check_split_entry(root / MANIFEST, self.manifest, split)
        self.kind = entry["kind"]
        self._arrays = entry["arrays"]
        self.num_frames = int(num_frames)
        self.sampling = sampling
        self.ratio = self._check_sampling(sampling, ratio, observe_ratio)
        self.observe_ratio = observe_ratio
        #: ``(N,)`` int64 valid frames of each sample.
        self.lengths = np.asarray(_load_array(self.path, "num_frames", self._arrays["num_frames"], mmap=False))
        #: ``(N,)`` int64 0-based class of each sample (-1 for untrimmed sequences).
        self.labels = np.asarray(_load_array(self.path, "labels", self._arrays["labels"], mmap=False))
        #: 2D data: ``(N, 2)`` float64 ``(height, width)`` that each sample's x and y were divided by (``(1, 1)``
        #: for keypoints in normalised units given without one); None for 3D data and 2D data prepared before
        #: the image shapes were recorded.
        self.image_shapes = None
        if "image_shape" in self._arrays:
            self.image_shapes = np.asarray(_load_array(self.path, "image_shape", self._arrays["image_shape"],
                                                       mmap=False))
        self.window_stride = self._check_stride(window_stride)
        #: ``windows`` only: ``(W, 2)`` int64 ``(sequence index, first frame)`` of each item.
        self.windows = self._make_windows() if sampling == "windows" else None
        self.seed = seed
        self._names = _load_names(self.path / "names.json", len(self.lengths))
        self._check_lengths_and_labels()
        self._pid = None
        self._data = self._frame_labels = None
        self._rng, self._rng_key = None, None
        self._open()  # check the big arrays once; they are reopened lazily in each process

    # -- configuration -----------------------------------------------------------------
    def _check_sampling(self, sampling, ratio, observe_ratio):
        if sampling not in SAMPLINGS:
            raise ConfigError(f"unknown sampling {sampling!r}; expected one of {', '.join(SAMPLINGS)}")
        if self.num_frames < 1:
            raise ConfigError(f"num_frames must be at least 1, got {self.num_frames}")
        if (sampling == "windows") != (self.kind == UNTRIMMED):
            raise ConfigError(f"split {self.split!r} holds {self.kind}; sampling {sampling!r} is for "
                              f"{'untrimmed sequences' if sampling == 'windows' else 'clips'}"
                              + (" (use sampling='windows')" if self.kind == UNTRIMMED else ""))
        if observe_ratio is not None and (sampling == "windows" or not 0 < observe_ratio <= 1):
            raise ConfigError(f"observe_ratio must be in (0, 1] and needs clips, got {observe_ratio} with {sampling}",
                              keywords=("observe_ratio",))
        if sampling == "random_crop":
            low, high = (0.1, 1.0) if ratio is None else ratio
            if not 0 < low <= high <= 1:
                raise ConfigError(f"random_crop needs ratio (min, max) with 0 < min <= max <= 1, got {ratio}")
            return float(low), float(high)
        if sampling == "center_crop":
            ratio = 1.0 if ratio is None else ratio
            if not 0 < ratio <= 1:
                raise ConfigError(f"center_crop needs a ratio in (0, 1], got {ratio}")
            return float(ratio)
        if ratio is not None:
            raise ConfigError(f"ratio is for random_crop and center_crop, not {sampling}")
        return None

    def _check_stride(self, stride):
        if stride is None:
            return self.num_frames if self.sampling == "windows" else None
        if self.sampling != "windows" or not 1 <= stride <= self.num_frames:
            raise ConfigError(f"window_stride must be in 1..num_frames={self.num_frames} with sampling='windows', "
                              f"got {stride} with {self.sampling!r}", keywords=("window_stride",))
        return int(stride)

    def _make_windows(self) -> np.ndarray:
        counts = 1 + np.ceil(np.maximum(self.lengths - self.num_frames, 0) / self.window_stride).astype(np.int64)
        sequence = np.repeat(np.arange(len(self.lengths)), counts)
        first = np.arange(len(sequence)) - np.repeat(np.cumsum(counts) - counts, counts)
        return np.stack([sequence, first * self.window_stride], axis=1).astype(np.int64)

    # -- description ---------------------------------------------------------------------
    @property
    def layout(self) -> str:
        """Joint layout name of the data (``ntu25``, ``uav17``, ``coco17``)."""
        return self.manifest["layout"]

    @property
    def num_classes(self) -> int:
        """Classes of the labels returned: clip classes, or frame classes (background included) for windows."""
        if self.sampling == "windows":
            return int(self.manifest["num_frame_classes"])
        return int(self.manifest["num_classes"])

    @property
    def class_names(self) -> list[str] | None:
        """Names of the clip classes, in label order, from the manifest (``usdrl prepare folder``,
        ``keypoints`` and ``pyskl`` keep them); None when the manifest has none."""
        names = self.manifest.get("class_names")
        return list(names) if names else None

    @property
    def input_shape(self) -> tuple[int, int, int, int]:
        """Shape of one clip ``(C, T, V, M)``."""
        m = self.manifest
        return (m["num_channels"], self.num_frames, m["num_joints"], m["num_persons"])

    @property
    def names(self) -> list[str]:
        """Sample names (for windows: of the sequences, index with ``windows[:, 0]``)."""
        return self._names

    def _check_lengths_and_labels(self) -> None:
        """DataFormatError naming the file and the first sample whose length is outside ``1..Tmax`` or
        whose label is outside ``0..num_classes - 1`` (``-1`` for untrimmed sequences)."""
        max_frames = self._arrays["data"]["shape"][2]
        bad = np.flatnonzero((self.lengths < 1) | (self.lengths > max_frames))
        if len(bad):
            i = int(bad[0])
            raise DataFormatError(f"{self.path / 'num_frames.npy'}: sample {i} ({self._names[i]}) has "
                                  f"{self.lengths[i]} frames; expected 1 to {max_frames} (the data's frames)")
        if self.kind == UNTRIMMED:
            bad, expected = np.flatnonzero(self.labels != IGNORE_LABEL), f"{IGNORE_LABEL} (untrimmed)"
        else:
            classes = self.manifest["num_classes"]
            bad, expected = np.flatnonzero((self.labels < 0) | (self.labels >= classes)), f"0 to {classes - 1}"
        if len(bad):
            i = int(bad[0])
            raise DataFormatError(f"{self.path / 'labels.npy'}: sample {i} ({self._names[i]}) has label "
                                  f"{self.labels[i]}; expected {expected}")
        if self.image_shapes is not None:
            bad = np.flatnonzero(~(np.isfinite(self.image_shapes) & (self.image_shapes > 0)).all(1))
            if len(bad):
                i = int(bad[0])
                raise DataFormatError(f"{self.path / 'image_shape.npy'}: sample {i} ({self._names[i]}) has image "
                                      f"shape {self.image_shapes[i].tolist()}; expected a positive (height, width)")

    def _finite(self, values: np.ndarray, sample: int) -> np.ndarray:
        """``values`` read from sample ``sample`` of data.npy, or DataFormatError if they hold NaN or inf."""
        if not np.isfinite(values).all():
            raise DataFormatError(f"{self.path / 'data.npy'}: sample {sample} ({self._names[sample]}) holds NaN "
                                  "or infinite values (a damaged file? prepare the dataset again)")
        return values

    def check_config(self, config, *, head: bool = True) -> None:
        """Raise ConfigError naming, in one line, every way a :class:`~usdrl.config.USDRLConfig` does not fit
        this data, each kind of mismatch with what to do about it.

        Checked: layout, joints, persons, channels, frames, and (with ``head``) the classes of the
        head that the labels are for (clip head, or frame head for windows) when the config has
        one. Tasks that replace the head or do not use it pass ``head=False``.

        A universal model (``layout="universal"``) reads the data of any registered keypoint format, but
        as a :class:`~usdrl.data.prepared.UniversalDataset` of this split (what :meth:`for_model` returns),
        never these clips themselves: given one, this raises ConfigError saying so.
        """
        from ...universal import UNIVERSAL

        if config.layout == UNIVERSAL.name:
            raise ConfigError(f"a universal model reads {self.path} as universal input: open the split with "
                              "SkeletonDataset.for_model(path, split, model) or open_split(..., model=model), or "
                              "wrap this dataset in usdrl.data.prepared.UniversalDataset")
        self._check_fit(config, head=head, universal=False)

    def _check_fit(self, config, *, head: bool, universal: bool) -> None:
        """:meth:`check_config`'s comparison, against this data as it is or (``universal``) as its universal input."""
        from ...universal import IN_CHANNELS, UNIVERSAL

        channels, frames, joints, persons = self.input_shape
        if self.sampling == "windows":
            classes, reset, trainers = "num_frame_classes", "reset_frame_classifier", "train_detector and frame_probe"
        else:
            classes, reset, trainers = "num_classes", "reset_classifier", "linear_probe and finetune"
        if universal:
            layout = {"layout": (config.layout, UNIVERSAL.name), "joints": (config.num_joints, UNIVERSAL.num_joints)}
            hint = (f"this is the universal input of the {self.layout} data: use a universal model (layout="
                    f"'universal', in_channels={IN_CHANNELS}), or read the data without it")
            channels, advice = IN_CHANNELS, f"{IN_CHANNELS} channels in the universal input"
        else:
            layout = {"layout": (config.layout, self.layout), "joints": (config.num_joints, joints)}
            hint = (f"use a model pretrained (or converted) for layout {self.layout!r}, e.g. "
                    f"`usdrl pretrain --data {self.path.parent}`")
            advice = f"{NUM_CHANNELS} channels (xyz, or x, y and score/zero for 2D data)"
        # (compared fields, what to do when any of them differs)
        kinds = [
            (layout, hint),
            ({"persons": (config.num_persons, persons), "channels": (config.in_channels, channels)},
             f"prepared data always has {NUM_PERSONS} persons (an all-zero one pads one-person clips) and "
             f"{advice}, so use a model with num_persons={NUM_PERSONS}, in_channels={channels}"),
            ({"frames": (config.num_frames, frames)},
             f"open the dataset with num_frames={config.num_frames} (SkeletonDataset "
             + ("cuts windows of that length)" if self.sampling == "windows" else "resamples each clip to it)")),
        ]
        if head and getattr(config, classes):
            kinds.append(({classes: (getattr(config, classes), self.num_classes)},
                          f"`model.{reset}({self.num_classes})` gives the model a fresh head for this data "
                          f"({trainers} do that themselves)"))
        problems = []
        for pairs, hint in kinds:
            found = [f"{what} {mine!r} in the config, {theirs!r} in the data" for what, (mine, theirs) in pairs.items()
                     if mine != theirs]
            if found:
                problems.append("; ".join(found) + f": {hint}")
        if problems:
            raise ConfigError(f"the model config does not fit {self.path} ({self.manifest['source']} "
                              f"{self.manifest['benchmark']}, sampling {self.sampling}"
                              + (", as universal input" if universal else "") + "): "
                              + "; and ".join(problems), keywords=("linear_probe", "finetune", "train_detector"))

    # -- access ------------------------------------------------------------------------
    def _open(self) -> np.ndarray:
        """The data memory map of this process (opened on first use after a fork or unpickling)."""
        if self._pid != os.getpid():
            self._data = _load_array(self.path, "data", self._arrays["data"], mmap=True)
            if self.kind == UNTRIMMED:
                self._frame_labels = _load_array(self.path, "frame_labels", self._arrays["frame_labels"], mmap=True)
            self._pid = os.getpid()
        return self._data

    @property
    def padded_clips(self) -> np.ndarray:
        """The stored samples ``(N, C, Tmax, V, M)`` as a read-only memory map, zero after each
        sample's valid frames (:attr:`lengths`); what batched pipelines such as pretraining read."""
        return self._open()

    @property
    def frame_labels(self) -> np.ndarray:
        """Untrimmed splits: per-frame labels ``(N, Tmax)`` (0 = background, -1 after each sequence)."""
        if self.kind != UNTRIMMED:
            raise ConfigError(f"split {self.split!r} holds {self.kind}; only untrimmed splits have frame labels")
        self._open()
        return self._frame_labels

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state.update(_data=None, _frame_labels=None, _pid=None, _rng=None, _rng_key=None)
        return state

    def rng_state(self) -> dict | None:
        """The state of this process's random-crop generator (``None`` before its first crop): what a
        training checkpoint keeps for an exact resume (:mod:`usdrl.engine`)."""
        return None if self._rng is None else {"key": self._rng_key, "state": self._rng.bit_generator.state}

    def set_rng_state(self, state: dict | None) -> None:
        """Restore a :meth:`rng_state`."""
        self._rng = self._rng_key = None
        if state is not None:
            self._rng, self._rng_key = np.random.default_rng(), state["key"]
            self._rng.bit_generator.state = state["state"]

    def _generator(self) -> np.random.Generator:
        info = torch.utils.data.get_worker_info()
        key = None if info is None else info.seed
        if self._rng is None or self._rng_key != key:
            entropy = [part for part in (self.seed, key) if part is not None]
            self._rng, self._rng_key = np.random.default_rng(entropy or None), key
        return self._rng

    def __len__(self) -> int:
        return len(self.windows) if self.windows is not None else len(self.lengths)

    def __getitem__(self, index: int):
        index = range(len(self))[index]
        data = self._open()
        if self.windows is not None:
            return self._window(data, *self.windows[index])
        n = int(self.lengths[index])
        if self.observe_ratio is not None:
            n = observed_length(n, self.observe_ratio)
        valid = self._finite(data[index, :, :n], index)
        if self.sampling == "resample":
            clip = resample(valid, self.num_frames)
        elif self.sampling == "random_crop":
            low, high = self.ratio
            clip = random_crop_resize(valid, self._generator(), min_ratio=low, max_ratio=high,
                                      min_length=self.num_frames, size=self.num_frames)
        else:
            clip = center_crop_resize(valid, self.ratio, size=self.num_frames)
        return np.asarray(clip, dtype=np.float32), int(self.labels[index])

    def _window(self, data: np.ndarray, sequence: int, start: int) -> tuple[np.ndarray, np.ndarray]:
        valid = min(self.num_frames, int(self.lengths[sequence]) - int(start))
        clip = np.zeros(self.input_shape, dtype=np.float32)
        clip[:, :valid] = self._finite(data[sequence, :, start:start + valid], sequence)
        labels = np.full(self.num_frames, IGNORE_LABEL, dtype=np.int64)
        labels[:valid] = self._frame_labels[sequence, start:start + valid]
        return clip, labels

    # -- opening a split for a model (usdrl.tasks, usdrl.train) -----------------------------------
    @classmethod
    def for_model(cls, path, split: str | None, model, *, head: bool = True, **options) -> torch.utils.data.Dataset:
        """Split ``split`` of the prepared dataset at ``path`` sampled as ``model`` takes it
        (``num_frames=model.config.num_frames``), checked against the model's config
        (:meth:`check_config`; ``head=False`` for tasks that replace or do not use the head).

        ``path``: a prepared dataset folder, or one of its split folders (then ``split`` may be
        None, see :func:`resolve_split`), or a list of them: several prepared datasets read as one
        (a :class:`~usdrl.data.prepared.MixedDataset` of each one's split, each checked). ``model``: a
        :class:`~usdrl.model.USDRL` or its :class:`~usdrl.config.USDRLConfig`. ``options``: the other
        keywords of the constructor (``sampling``, ``window_stride``, ``observe_ratio``, ``seed``, ...).

        A universal model (``layout="universal"``) gets a :class:`~usdrl.data.prepared.UniversalDataset`:
        the split's clips, of any registered keypoint format, 2D or 3D, as universal input.
        """
        from ...universal import UNIVERSAL
        from .views import MixedDataset, UniversalDataset

        if isinstance(path, list):
            return MixedDataset([cls.for_model(part, split, model, head=head, **options) for part in path])
        config = getattr(model, "config", model)
        root, split = resolve_split(path, split)
        dataset = cls(root, split, num_frames=config.num_frames, **options)
        if config.layout == UNIVERSAL.name:
            dataset = UniversalDataset(dataset)
        dataset.check_config(config, head=head)
        return dataset


def resolve_split(path: str | PathLike, split: str | None = None) -> tuple[Path, str]:
    """``(dataset folder, split name)`` of ``path``: a prepared dataset folder (then ``split`` names the
    split) or one of its split folders (then that split, whatever ``split`` says: it is only the default
    for a dataset folder). ConfigError when ``path`` is neither, or is a dataset folder and ``split`` is None."""
    path = Path(path)
    if (path / MANIFEST).is_file():
        if split is None:
            raise ConfigError(f"{path} is a prepared dataset of splits {', '.join(read_manifest(path)['splits'])}: "
                              "name one with split", keywords=("split",))
        return path, split
    if (path.parent / MANIFEST).is_file():
        return path.parent, path.name
    raise ConfigError(f"{path}: expected a prepared dataset folder (with {MANIFEST}) or one of its split folders")


def open_split(data, split: str | None = None, *, model=None, head: bool = True,
               **options) -> torch.utils.data.Dataset:
    """The dataset a task reads, from any of the forms a task's ``data`` takes:

    * a dataset object (a :class:`SkeletonDataset`, a ``Subset`` of one, or any sized sequence of
      ``(clip (C, T, V, M), label)`` items, a list included): returned unchanged, ``split`` and
      ``options`` unused;
    * a prepared dataset folder: its split ``split`` (the task's default split);
    * a split folder inside a prepared dataset: that split;
    * a pair ``(path, split)``: that split of that dataset folder;
    * a list of prepared dataset folders, split folders or datasets: one
      :class:`~usdrl.data.prepared.MixedDataset` of them all (each folder's split ``split``), e.g.
      prepared datasets of different keypoint formats read by one universal model.

    A path is opened as ``model`` takes it when ``model`` is given (:meth:`SkeletonDataset.for_model`,
    checked with ``head``; a universal model gets a :class:`~usdrl.data.prepared.UniversalDataset`), else
    with ``options`` alone.
    """
    if isinstance(data, list) and data and all(isinstance(part, (str, PathLike, torch.utils.data.Dataset))
                                               for part in data):
        from .views import MixedDataset

        return MixedDataset([open_split(part, split, model=model, head=head, **options) for part in data])
    if isinstance(data, tuple):
        if len(data) != 2 or not isinstance(data[0], (str, PathLike)) or not isinstance(data[1], str):
            raise ConfigError(f"expected data as (prepared folder, split name), got {data!r}")
        data, split = data
    if not isinstance(data, (str, PathLike)):
        if isinstance(data, torch.utils.data.Dataset) or hasattr(data, "__len__") and hasattr(data, "__getitem__"):
            return data
        raise ConfigError(f"expected a dataset, a prepared dataset folder, a split folder or (folder, split), "
                          f"got {type(data).__name__}")
    if model is None:
        return SkeletonDataset(*resolve_split(data, split), **options)
    return SkeletonDataset.for_model(data, split, model, head=head, **options)
