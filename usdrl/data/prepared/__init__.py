"""Prepared datasets: raw skeleton datasets converted once into memory-mappable arrays.

:func:`prepare_dataset` (``usdrl prepare``) reads a raw dataset, applies its preprocessing
recipe and writes, for one benchmark::

    OUT/manifest.json                 layout, source, benchmark, recipe, counts, shapes, version
    OUT/<split>/data.npy              float32 (N, C, Tmax, V, M), zero after each sample's valid frames
    OUT/<split>/num_frames.npy        int64 (N,) valid frames of each sample
    OUT/<split>/labels.npy            int64 (N,) 0-based class; -1 for untrimmed sequences
    OUT/<split>/names.json            JSON list of the N sample names
    OUT/<split>/frame_labels.npy      int64 (N, Tmax) per-frame labels, -1 after the valid frames
                                      (untrimmed splits only; 0 = background, k = PKU-MMD class k)
    OUT/<split>/image_shape.npy       float64 (N, 2) (height, width) each sample's x and y were divided by
                                      (2D data only; absent in 2D datasets prepared before it was kept)

with ``C = 3`` channels, ``V`` joints of the layout, ``M = 2`` persons and ``Tmax`` the longest
sample of the split. Splits:

* ``ntu60``, ``ntu120``, ``uav``, ``ntu2d``: ``train`` and ``test``, trimmed clips.
* ``pkummd1``, ``pkummd2``: ``train`` and ``test`` hold the trimmed clips cut from the sequences
  by their label files (one per label line, frames ``[start, end)``, label ``PKU class - 1``,
  51 classes: recognition); ``train_untrimmed`` and ``test_untrimmed`` hold the whole
  sequences with per-frame labels (52 frame classes, 0 = background: detection on phase 1,
  segmentation on phase 2). Both phases get both kinds.

:class:`SkeletonDataset` reads one split lazily (memory maps opened in each process on first
use) and returns model clips ``(C, T, V, M)`` with the chosen temporal sampling. A universal model
reads any of them through :class:`UniversalDataset`, and several prepared datasets are read as one
through :class:`MixedDataset` (:mod:`~usdrl.data.prepared.views`).

**Writing.** A first pass lists the samples and their lengths from the files' headers (the
NTU/UAV frame count, the PKU-MMD line count and label files, the pickle's arrays), so that
the arrays can be preallocated (sparse ``.npy`` files made by ``open_memmap``). The second
pass parses and preprocesses the files in a process pool (``workers``, a bounded number of
files in flight) and writes each sample with positional writes into the preallocated
files: the writer's memory holds a few samples, whatever the dataset size (a writable
memory map would count every written page as resident). Everything is written into a
hidden temporary folder beside ``OUT`` that is renamed into place at the end, after the
manifest; a failed or interrupted run removes it, and :func:`read_manifest` refuses any
folder without a complete manifest. A run holds the lock file ``.OUT.lock`` while it writes
(one run per output at a time), so the hidden ``.OUT.tmp-*`` and ``.OUT.old-*`` folders a
killed run leaves are provably stale: the next run into ``OUT`` deletes them, and first puts
back an old dataset that an ``overwrite`` killed between its two renames had moved aside.

**Modules.** :mod:`~usdrl.data.prepared.schema` (format, file names, sources and benchmarks),
:mod:`~usdrl.data.prepared.recipes` (preprocessing recipes), :mod:`~usdrl.data.prepared.pool`
(worker tasks and the process pool), :mod:`~usdrl.data.prepared.planners` (the first pass, per
source), :mod:`~usdrl.data.prepared.writer` (the second pass and :func:`prepare_dataset`) and
:mod:`~usdrl.data.prepared.reader` (:func:`read_manifest`, :class:`SkeletonDataset`). Every name
below is importable from ``usdrl.data.prepared`` itself.
"""

from .planners import NTU120_CLASSES
from .reader import SAMPLINGS, SkeletonDataset, head_class_names, open_split, read_manifest, resolve_split
from .recipes import RECIPE_VERSION, Recipe2D, Recipe3D
from .schema import (
    BENCHMARKS,
    CLIPS,
    FORMAT,
    FORMAT_VERSION,
    IGNORE_LABEL,
    MANIFEST,
    NUM_CHANNELS,
    NUM_PERSONS,
    RAW_LAYOUTS,
    SOURCES,
    UNTRIMMED,
)
from .views import LazyClips, MixedDataset, UniversalDataset
from .writer import prepare_dataset

__all__ = [
    "BENCHMARKS",
    "CLIPS",
    "FORMAT",
    "FORMAT_VERSION",
    "IGNORE_LABEL",
    "MANIFEST",
    "NTU120_CLASSES",
    "NUM_CHANNELS",
    "NUM_PERSONS",
    "RAW_LAYOUTS",
    "RECIPE_VERSION",
    "SAMPLINGS",
    "SOURCES",
    "UNTRIMMED",
    "LazyClips",
    "MixedDataset",
    "Recipe2D",
    "Recipe3D",
    "SkeletonDataset",
    "UniversalDataset",
    "head_class_names",
    "open_split",
    "prepare_dataset",
    "read_manifest",
    "resolve_split",
]
