"""pyskl annotations with unusable values are refused per sample; `prepare ntu2d` writes the rest and reports."""

import json
import logging
import pickle

import numpy as np
import pytest

from usdrl.data import annotation_to_clip, load_pyskl, prepare_dataset, read_manifest
from usdrl.data.synthetic import SyntheticActions
from usdrl.data.synthetic_files import write_synthetic_ntu2d
from usdrl.errors import DataFormatError


@pytest.fixture(scope="module")
def content(tmp_path_factory):
    path = write_synthetic_ntu2d(tmp_path_factory.mktemp("pkl") / "ntu60_hrnet.pkl", 24, seed=4,
                                 generator=SyntheticActions(num_frames_range=(20, 40)))
    with open(path, "rb") as f:
        return pickle.load(f)


def annotation(content, **changes):
    ann = {key: (value.copy() if isinstance(value, np.ndarray) else value)
           for key, value in content["annotations"][0].items()}
    ann.update(changes)
    return ann


def with_nan(array, index=(0, 1, 2)):
    array = array.astype(np.float32)
    array[index] = np.nan
    return array


def with_inf(score):
    score = score.copy()
    score[:, 3] = np.inf
    return score


def dump(path, split, annotations):
    with open(path, "wb") as f:
        pickle.dump({"split": split, "annotations": annotations}, f, protocol=4)  # 2 stores b"" as a global call
    return path


BAD = {
    "NaN keypoint": (lambda ann: {"keypoint": with_nan(ann["keypoint"], (0, 1, 2, 0))},
                     r"'keypoint' holds NaN or infinite values \(first at index \(0, 1, 2, 0\)\)"),
    "inf score": (lambda ann: {"keypoint_score": with_inf(ann["keypoint_score"])},
                  r"'keypoint_score' holds NaN or infinite values \(first at index \(0, 3, 0\)\)"),
    "zero frames": (lambda ann: {"keypoint": ann["keypoint"][:, :0], "keypoint_score": ann["keypoint_score"][:, :0],
                                 "total_frames": 0}, r"'keypoint' has no frames \(T = 0\)"),
    "total_frames an array": (lambda ann: {"total_frames": np.array([ann["total_frames"]] * 2)},
                              r"total_frames must be the integer \d+ .* found a int64 array of shape \(2,\)"),
}


@pytest.mark.parametrize("kind", BAD)
def test_load_pyskl_names_the_bad_annotation_or_skips_it(content, tmp_path, kind):
    make, words = BAD[kind]
    bad = annotation(content, **make(content["annotations"][0]))
    good = content["annotations"][1]
    path = dump(tmp_path / "a.pkl", {}, [good, bad])
    with pytest.raises(DataFormatError, match=rf"a.pkl: annotations\[1\] \({bad['frame_dir']}\): {words}"):
        load_pyskl(path)
    loaded = load_pyskl(path, skip_invalid=True)
    assert [a["frame_dir"] for a in loaded["annotations"]] == [good["frame_dir"]]
    [(name, message)] = loaded["invalid"]
    assert name == bad["frame_dir"] and f"annotations[1] ({name})" in message


@pytest.mark.parametrize("kind", ["NaN keypoint", "inf score", "zero frames"])
def test_annotation_to_clip_refuses_unusable_values(content, kind):
    make, words = BAD[kind]
    with pytest.raises(DataFormatError, match=words):
        annotation_to_clip(annotation(content, **make(content["annotations"][0])))


def test_prepare_ntu2d_writes_the_good_samples_and_reports_the_rest(content, tmp_path, caplog):
    annotations = [dict(ann) for ann in content["annotations"]]
    train, test = list(content["split"]["xsub_train"]), list(content["split"]["xsub_val"])
    by_name = {ann["frame_dir"]: ann for ann in annotations}
    bad_names = {}
    for name, (kind, make) in zip(train[:4], [(k, BAD[k][0]) for k in BAD], strict=True):
        by_name[name].update(make(by_name[name]))
        bad_names[name] = kind
    by_name[train[4]]["label"] = 10**6
    bad_names[train[4]] = "label"
    split = {"xsub_train": train + [train[5]], "xsub_val": test}  # train[5] listed twice
    path = dump(tmp_path / "ntu60_hrnet.pkl", split, annotations)
    with caplog.at_level(logging.WARNING, logger="usdrl"):
        out = prepare_dataset("ntu2d", path, tmp_path / "out", benchmark="xsub", show_progress_bar=False)
    assert "6 annotation(s) or split entries left out (the rest is written)" in caplog.text
    names = json.loads((out / "train" / "names.json").read_text())
    assert names == [name for name in train if name not in bad_names]
    assert json.loads((out / "test" / "names.json").read_text()) == test
    data = np.load(out / "train" / "data.npy")
    assert np.isfinite(data).all() and len(data) == len(train) - 5
    labels = np.load(out / "train" / "labels.npy")
    assert labels.max() < 60
    skipped = read_manifest(out)["skipped"]["invalid_annotations"]
    assert len(skipped) == 6
    for name in bad_names:
        assert sum(name in message for message in skipped) >= 1
    assert any("label 1000000 is outside the 120 NTU classes" in message for message in skipped)
    assert any(f"xsub_train entry {train[5]}: listed again" in message for message in skipped)


def test_prepare_ntu2d_with_no_usable_sample_in_a_split_fails(content, tmp_path):
    annotations = [dict(ann, keypoint=with_nan(ann["keypoint"])) for ann in content["annotations"]]
    path = dump(tmp_path / "ntu60_hrnet.pkl", content["split"], annotations)
    with pytest.raises(DataFormatError, match="no usable sample in xsub_train"):
        prepare_dataset("ntu2d", path, tmp_path / "out", benchmark="xsub", show_progress_bar=False)
    assert not (tmp_path / "out").exists()
