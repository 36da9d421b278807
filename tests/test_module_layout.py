"""The module layout: split modules keep their old import paths, import on their own, and stay out of
``import usdrl``."""

import importlib
import json
import subprocess
import sys

import pytest

# (old import path, name, the module that defines it now)
MOVED = [
    *[("usdrl.data.prepared", name, "usdrl.data.prepared.schema") for name in (
        "FORMAT", "FORMAT_VERSION", "MANIFEST", "NUM_PERSONS", "NUM_CHANNELS", "IGNORE_LABEL", "CLIPS", "UNTRIMMED",
        "BENCHMARKS", "SOURCES", "RAW_LAYOUTS")],
    *[("usdrl.data.prepared", name, "usdrl.data.prepared.recipes") for name in ("RECIPE_VERSION", "Recipe3D",
                                                                                 "Recipe2D")],
    ("usdrl.data.prepared", "NTU120_CLASSES", "usdrl.data.prepared.planners"),
    ("usdrl.data.prepared", "prepare_dataset", "usdrl.data.prepared.writer"),
    *[("usdrl.data.prepared", name, "usdrl.data.prepared.reader") for name in (
        "SAMPLINGS", "read_manifest", "head_class_names", "SkeletonDataset")],
    *[("usdrl.data", name, "usdrl.data.prepared.reader") for name in ("SkeletonDataset", "read_manifest")],
    ("usdrl.data", "prepare_dataset", "usdrl.data.prepared.writer"),
    *[("usdrl.data.synthetic", name, "usdrl.data.synthetic.generator") for name in (
        "CAMERA_YAW_DEG", "ClipMeta", "SyntheticActions", "SyntheticClips", "UntrimmedSequence", "make_clips",
        "make_untrimmed")],
    *[("usdrl.data.synthetic", name, "usdrl.data.synthetic.programs") for name in (
        "ACTION_NAMES", "NUM_CLASSES", "TWO_PERSON_CLASSES")],
    *[("usdrl.data.synthetic", name, "usdrl.data.synthetic.projection") for name in (
        "DetectorNoise", "project_coco17", "render_keypoints")],
    *[("usdrl.data.ntu", name, "usdrl.data.kinect_text") for name in (
        "SPARE_BODY_SLOTS", "BodyFrameGrammar", "BodyFrames", "parse_body_frames", "format_body_frames",
        "default_body_counts", "check_body_counts", "slot_bodies")],
    ("usdrl.data.uav", "parse_body_frames", "usdrl.data.kinect_text"),
    ("usdrl.export", "OnnxExportError", "usdrl.errors"),
    ("usdrl._checkpoint", "CheckpointWriteError", "usdrl.errors"),
    *[("usdrl.convert", name, "usdrl.convert") for name in (
        "load_reference_checkpoint", "convert_reference_checkpoint", "ReferenceCheckpoint")],
]

#: Modules that ``import usdrl`` did not import before the split and must not import now.
NOT_IMPORTED_BY_USDRL = [
    "usdrl.data", "usdrl.data.prepared", "usdrl.data.synthetic", "usdrl.data.ntu", "usdrl.data.uav",
    "usdrl.data.kinect_text", "usdrl._text", "usdrl.convert", "usdrl.export", "usdrl._checkpoint", "usdrl.tasks",
    "usdrl.train",
]

NEW_MODULES = [
    "usdrl.data.prepared.schema", "usdrl.data.prepared.recipes", "usdrl.data.prepared.pool",
    "usdrl.data.prepared.planners", "usdrl.data.prepared.writer", "usdrl.data.prepared.reader",
    "usdrl.data.synthetic.body", "usdrl.data.synthetic.programs", "usdrl.data.synthetic.generator",
    "usdrl.data.synthetic.projection", "usdrl.data.kinect_text", "usdrl._text", "usdrl.hub", "usdrl.convert",
    "usdrl.tasks", "usdrl.train",
]


@pytest.mark.parametrize(("old", "name", "home"), MOVED, ids=[f"{old}.{name}" for old, name, _ in MOVED])
def test_old_import_paths_give_the_object_of_its_new_home(old, name, home):
    obj = getattr(importlib.import_module(home), name)
    assert getattr(importlib.import_module(old), name) is obj
    assert getattr(obj, "__module__", home) == home  # classes and functions: defined there (constants have none)


def test_import_usdrl_does_not_import_the_split_modules():
    code = "import sys, json, usdrl; print(json.dumps(sorted(m for m in sys.modules if m.startswith('usdrl'))))"
    loaded = json.loads(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                       check=True).stdout)
    assert "usdrl.hub" in loaded  # the registry is part of `import usdrl` ...
    assert not [m for m in loaded if m in NOT_IMPORTED_BY_USDRL or m.startswith(("usdrl.data.", "usdrl.tasks.",
                                                                               "usdrl.train."))]


def test_every_new_module_imports_first_in_a_fresh_package():
    """Each module imported before any other usdrl module: an import cycle would fail here."""
    code = (
        "import importlib, json, sys\n"
        "failed = {}\n"
        f"for name in {NEW_MODULES!r}:\n"
        "    for key in [k for k in sys.modules if k == 'usdrl' or k.startswith('usdrl.')]:\n"
        "        del sys.modules[key]\n"
        "    try:\n"
        "        importlib.import_module(name)\n"
        "    except Exception as exc:\n"
        "        failed[name] = repr(exc)\n"
        "print(json.dumps(failed))\n"
    )
    failed = json.loads(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                       check=True).stdout.splitlines()[-1])
    assert failed == {}


def test_the_hub_no_longer_forwards_the_converter():
    import usdrl.hub

    for name in ("load_reference_checkpoint", "convert_reference_checkpoint", "ReferenceCheckpoint"):
        assert not hasattr(usdrl.hub, name)


def test_tasks_and_train_export_their_entry_points_without_hiding_their_modules():
    import types

    import usdrl.tasks
    import usdrl.train
    from usdrl.tasks.detection import train_detector
    from usdrl.tasks.recognition import linear_probe
    from usdrl.train.pretrain import Pretrainer

    assert usdrl.tasks.linear_probe is linear_probe and usdrl.tasks.train_detector is train_detector
    assert usdrl.train.Pretrainer is Pretrainer
    assert isinstance(usdrl.tasks.finetune, types.ModuleType) and isinstance(usdrl.train.augment, types.ModuleType)
    for package in (usdrl.tasks, usdrl.train):
        assert [name for name in package.__all__ if not hasattr(package, name)] == []
