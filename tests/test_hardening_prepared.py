"""Damaged prepared datasets are refused when opened, with a DataFormatError naming the file."""

import json
import shutil

import numpy as np
import pytest

from usdrl.data import SkeletonDataset, prepare_dataset
from usdrl.data.synthetic import SyntheticActions
from usdrl.data.synthetic_files import write_synthetic_ntu2d
from usdrl.errors import DataFormatError


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    root = tmp_path_factory.mktemp("prepared")
    generator = SyntheticActions(num_frames_range=(20, 30))
    pkl = write_synthetic_ntu2d(root / "ntu60_hrnet.pkl", 16, seed=2, generator=generator)
    return prepare_dataset("ntu2d", pkl, root / "out", benchmark="xsub", show_progress_bar=False)


@pytest.fixture
def copy(prepared, tmp_path):
    out = tmp_path / "copy"
    shutil.copytree(prepared, out)
    SkeletonDataset(out, "train")  # intact before the damage
    return out


def edit_manifest(folder, edit):
    manifest = json.loads((folder / "manifest.json").read_text())
    edit(manifest)
    (folder / "manifest.json").write_text(json.dumps(manifest))


def edit_array(folder, key, edit):
    file = folder / "train" / f"{key}.npy"
    array = np.load(file)
    edit(array)
    np.save(file, array)


def truncate(file, size):
    file.write_bytes(file.read_bytes()[:size])


def edit_names(folder, edit):
    file = folder / "train" / "names.json"
    file.write_text(json.dumps(edit(json.loads(file.read_text()))))


def arrays(manifest):
    return manifest["splits"]["train"]["arrays"]


DAMAGE = {
    "empty data.npy": (lambda f: (f / "train" / "data.npy").write_bytes(b""),
                       r"train/data.npy: cannot be read as a .npy array"),
    "truncated data.npy": (lambda f: truncate(f / "train" / "data.npy", 500),
                           r"train/data.npy: cannot be read as a .npy array"),
    "split entry without keys": (lambda f: edit_manifest(f, lambda m: m["splits"].update(train={})),
                                 r"manifest.json: split 'train' must have 'kind' \('clips' or 'untrimmed'\) and "
                                 r"'arrays', found \{\}"),
    "array entry without shape": (lambda f: edit_manifest(f, lambda m: arrays(m)["labels"].pop("shape")),
                                  r"split 'train': array 'labels' must be \{'shape': \[sizes\], 'dtype': 'int64'\}"),
    "unknown dtype": (lambda f: edit_manifest(f, lambda m: arrays(m)["data"].update(dtype="float99")),
                      r"array 'data' must be .*'dtype': 'float32'\}, found \{.*'float99'"),
    "sizes that disagree": (lambda f: edit_manifest(f, lambda m: arrays(m)["labels"]["shape"].__setitem__(0, 3)),
                            r"array 'labels' has shape \[3\], expected \[\d+\]"),
    "num_joints a string": (lambda f: edit_manifest(f, lambda m: m.update(num_joints="17")),
                            r"manifest.json: num_joints must be a positive integer, found '17'"),
    "data stored as float64": (lambda f: np.save(f / "train" / "data.npy",
                                                 np.load(f / "train" / "data.npy").astype(np.float64)),
                               r"train/data.npy: shape .* float64, the manifest says .* float32"),
    "missing names.json": (lambda f: (f / "train" / "names.json").unlink(),
                           r"train/names.json: cannot be read as a JSON list of sample names"),
    "short names.json": (lambda f: edit_names(f, lambda names: names[:-1]), r"train/names.json: \d+ names for \d+"),
    "names not strings": (lambda f: (f / "train" / "names.json").write_text("[1, 2]"),
                          r"train/names.json: expected a JSON list of sample names, found \[1, 2\]"),
    "num_frames beyond the array": (lambda f: edit_array(f, "num_frames", lambda a: a.__setitem__(2, 10**6)),
                                    r"train/num_frames.npy: sample 2 \(S\d+C\d+P\d+R\d+A\d+\) has 1000000 frames; "
                                    r"expected 1 to \d+"),
    "negative num_frames": (lambda f: edit_array(f, "num_frames", lambda a: a.__setitem__(0, -4)),
                            r"train/num_frames.npy: sample 0 .* has -4 frames"),
    "label past the classes": (lambda f: edit_array(f, "labels", lambda a: a.__setitem__(1, 60)),
                               r"train/labels.npy: sample 1 .* has label 60; expected 0 to 59"),
}


@pytest.mark.parametrize("kind", DAMAGE)
def test_damaged_prepared_dataset_is_refused_at_open(copy, kind):
    damage, words = DAMAGE[kind]
    damage(copy)
    with pytest.raises(DataFormatError, match=words):
        SkeletonDataset(copy, "train")


def test_nan_data_is_named_when_read(copy):
    edit_array(copy, "data", lambda a: a.__setitem__((3, 0, 1, 2, 0), np.nan))
    dataset = SkeletonDataset(copy, "train")
    dataset[2]
    with pytest.raises(DataFormatError, match=rf"train/data.npy: sample 3 \({dataset.names[3]}\) holds NaN"):
        dataset[3]
