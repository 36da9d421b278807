"""Prepared datasets end to end: synthetic data -> raw-format files -> `usdrl prepare` -> SkeletonDataset."""

import json
import math
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from usdrl import USDRLConfig
from usdrl.cli import main
from usdrl.data import (
    align_view,
    annotation_to_clip,
    center_crop_resize,
    fill_empty_frames,
    frame_labels,
    missing_samples,
    prepared,
    preprocess_3d,
    read_ntu_skeleton,
    read_pkummd_labels,
    read_pkummd_skeleton,
    read_uav_skeleton,
    resample,
    select_bodies,
    write_ntu_skeleton,
)
from usdrl.data.prepared import SkeletonDataset, prepare_dataset, read_manifest
from usdrl.data.synthetic import SyntheticActions
from usdrl.data.synthetic_files import (
    PKUMMD_LAYOUT,
    write_synthetic_ntu,
    write_synthetic_ntu2d,
    write_synthetic_pkummd,
    write_synthetic_uav,
)
from usdrl.data.uav import CSV1_TRAIN_PERSONS
from usdrl.errors import ConfigError, DataFormatError

# The official rules (data-formats spec 1.6), written out independently of the library.
NTU60_XSUB_TRAIN = {1, 2, 4, 5, 8, 9, 13, 14, 15, 16, 17, 18, 19, 25, 27, 28, 31, 34, 35, 38}
T = 64


@pytest.fixture(scope="module")
def generator():
    # Clips of 30-70 frames: some are upsampled to 64 frames, some downsampled.
    return SyntheticActions(num_frames_range=(30, 70))


@pytest.fixture(scope="module")
def ntu_raw(tmp_path_factory, generator):
    """40 synthetic clips as .skeleton files, plus one official missing sample and one NTU-120-only setup."""
    raw = tmp_path_factory.mktemp("ntu_raw")
    files = write_synthetic_ntu(raw / "nturgbd_skeletons_s001_to_s017", 40, seed=3, generator=generator)
    shutil.copy(files[0], raw / f"{sorted(missing_samples('ntu60'))[0]}.skeleton")
    shutil.copy(files[1], raw / f"S018{files[1].name[4:]}")
    return raw


def prepare_cli(*args: str) -> Path:
    assert main(["prepare", *args]) == 0
    return Path(args[2])


@pytest.fixture(scope="module")
def ntu_xsub(ntu_raw, tmp_path_factory):
    return prepare_cli("ntu60", str(ntu_raw), str(tmp_path_factory.mktemp("out") / "ntu60_xsub"),
                       "--benchmark", "xsub", "--workers", "2")


def raw_names(raw: Path, pattern: str) -> list[str]:
    return sorted(p.stem for p in raw.rglob(pattern))


def expected_ntu_split(names: list[str], source: str, benchmark: str) -> dict[str, list[str]]:
    out = {"train": [], "test": []}
    for name in sorted(names):
        setup, camera, performer = int(name[1:4]), int(name[5:8]), int(name[9:12])
        if name in missing_samples(source) or (source == "ntu60" and setup > 17):
            continue
        train = {"xsub": performer in NTU60_XSUB_TRAIN, "xview": camera in (2, 3), "xset": setup % 2 == 0}[benchmark]
        out["train" if train else "test"].append(name)
    return out


def load_split(out: Path, split: str) -> dict:
    folder = out / split
    arrays = {key: np.load(folder / f"{key}.npy") for key in ("data", "num_frames", "labels")}
    if (folder / "frame_labels.npy").exists():
        arrays["frame_labels"] = np.load(folder / "frame_labels.npy")
    arrays["names"] = json.loads((folder / "names.json").read_text())
    return arrays


def no_leftovers(out: Path) -> bool:
    """No hidden temporary sibling of ``out`` is left."""
    return not list(out.parent.glob(f".{out.name}.*"))


# --------------------------------------------------------------------------------------
# CLI and NTU
# --------------------------------------------------------------------------------------


def test_help_documents_every_option_and_raw_layout(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["prepare", "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for word in ("--benchmark", "--workers", "--overwrite", "--padding", "--legacy-2d-norm", "xsub", "xview",
                 "xset", "csv1", "csv2", "PKU_Skeleton_Renew", "cross_subject_v2.txt", "ntu60_hrnet.pkl",
                 ".skeleton", "train_untrimmed"):
        assert word in text
    for source in prepared.SOURCES:
        assert f"{source}: RAW is" in text


@pytest.mark.parametrize(("source", "benchmark"), [("ntu60", "xsub"), ("ntu60", "xview"), ("ntu120", "xset")])
def test_ntu_splits_follow_the_official_rules(ntu_raw, ntu_xsub, tmp_path, source, benchmark):
    out = ntu_xsub if (source, benchmark) == ("ntu60", "xsub") else prepare_cli(
        source, str(ntu_raw), str(tmp_path / "out"), "--benchmark", benchmark, "--workers", "1")
    expected = expected_ntu_split(raw_names(ntu_raw, "*.skeleton"), source, benchmark)
    assert expected["train"] and expected["test"]
    manifest = read_manifest(out)
    assert (manifest["source"], manifest["benchmark"], manifest["layout"]) == (source, benchmark, "ntu25")
    assert manifest["num_classes"] == (60 if source == "ntu60" else 120)
    for split, names in expected.items():
        arrays = load_split(out, split)
        assert arrays["names"] == names
        assert manifest["splits"][split]["count"] == len(names)
        assert arrays["labels"].tolist() == [int(name[-3:]) - 1 for name in names]
    kept = len(expected["train"]) + len(expected["test"])
    assert manifest["skipped"]["missing_or_outside"] == len(raw_names(ntu_raw, "*.skeleton")) - kept


def test_ntu_values_round_trip(ntu_raw, ntu_xsub):
    manifest = read_manifest(ntu_xsub)
    assert manifest["usdrl_version"] and manifest["preprocessing"]["alignment"] == "ntu"
    dataset = SkeletonDataset(ntu_xsub, "test")
    arrays = load_split(ntu_xsub, "test")
    assert arrays["data"].dtype == np.float32 and arrays["data"].shape[1:] == (3, arrays["num_frames"].max(), 25, 2)
    assert list(arrays["data"].shape) == manifest["splits"]["test"]["arrays"]["data"]["shape"]
    for i, name in enumerate(arrays["names"]):
        sequence = read_ntu_skeleton(next(ntu_raw.rglob(f"{name}.skeleton")))
        reference = preprocess_3d(sequence.data)
        n = arrays["num_frames"][i]
        assert n == sequence.num_frames
        np.testing.assert_array_equal(arrays["data"][i, :, :n], reference)
        assert not arrays["data"][i, :, n:].any()
        clip, label = dataset[i]
        np.testing.assert_array_equal(clip, resample(reference, T))
        assert label == arrays["labels"][i]


def test_ntu_recipe_ignores_bodies_past_the_fourth(tmp_path):
    # The reference parses at most 4 bodies per frame: the 5th, the most energetic by far, is dropped,
    # and of the first four the two of highest energy (slots 1 then 3) are kept.
    rng = np.random.default_rng(5)
    spreads = [0.1, 0.4, 0.2, 0.3, 5.0]
    data = np.stack([rng.normal(scale=s, size=(3, 8, 25)) + 1 for s in spreads], axis=-1).astype(np.float32)
    raw = tmp_path / "raw"
    raw.mkdir()
    for name in ("S001C001P001R001A001", "S001C001P003R001A002"):   # one training, one test performer
        write_ntu_skeleton(raw / f"{name}.skeleton", data)
    out = prepare_dataset("ntu60", raw, tmp_path / "out", benchmark="xsub", workers=1)
    expected = align_view(read_ntu_skeleton(raw / "S001C001P001R001A001.skeleton").data[..., [1, 3]], "ntu")
    for split in ("train", "test"):
        np.testing.assert_allclose(load_split(out, split)["data"][0], expected, atol=1e-6)


def test_sampling_modes(ntu_raw, ntu_xsub):
    names = load_split(ntu_xsub, "train")["names"]
    references = [preprocess_3d(read_ntu_skeleton(next(ntu_raw.rglob(f"{name}.skeleton"))).data) for name in names]
    base = SkeletonDataset(ntu_xsub / "train")  # split=None: a split folder
    assert base.split == "train" and len(base) == len(names) and base.input_shape == (3, T, 25, 2)
    short = next(i for i, ref in enumerate(references) if ref.shape[1] <= T)
    clip, _ = base[short]
    assert clip.shape == (3, T, 25, 2) and clip.dtype == np.float32
    np.testing.assert_array_equal(clip[:, 0], references[short][:, 0])  # upsampling keeps both ends
    np.testing.assert_allclose(clip[:, -1], references[short][:, -1], rtol=1e-6, atol=1e-7)

    center = SkeletonDataset(ntu_xsub, "train", sampling="center_crop")
    half = SkeletonDataset(ntu_xsub, "train", sampling="center_crop", ratio=0.5)
    observed = SkeletonDataset(ntu_xsub, "train", observe_ratio=0.5)
    observed_center = SkeletonDataset(ntu_xsub, "train", sampling="center_crop", ratio=0.5, observe_ratio=0.5)
    full_crop = SkeletonDataset(ntu_xsub, "train", sampling="random_crop", ratio=(1.0, 1.0), seed=0)
    for i, ref in enumerate(references):
        prefix = ref[:, : max(3, math.floor(ref.shape[1] * 0.5))]
        np.testing.assert_array_equal(center[i][0], base[i][0])
        np.testing.assert_array_equal(full_crop[i][0], base[i][0])
        np.testing.assert_array_equal(half[i][0], center_crop_resize(ref, 0.5))
        np.testing.assert_array_equal(observed[i][0], resample(prefix, T))
        np.testing.assert_array_equal(observed_center[i][0], center_crop_resize(prefix, 0.5))

    crops = [SkeletonDataset(ntu_xsub, "train", sampling="random_crop", num_frames=32, seed=7) for _ in range(2)]
    first, second = [[crops[k][i][0] for i in range(len(names))] for k in range(2)]
    assert all(np.array_equal(a, b) for a, b in zip(first, second, strict=True))  # same seed, same crops
    assert first[0].shape == (3, 32, 25, 2)
    again = [crops[0][i][0] for i in range(len(names))]
    assert not all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))  # a new draw each call


@pytest.mark.parametrize("options", [
    {"sampling": "shuffle"}, {"sampling": "windows"}, {"ratio": 0.5}, {"observe_ratio": 0.0},
    {"num_frames": 0}, {"sampling": "random_crop", "ratio": (0.8, 0.2)}, {"window_stride": 8},
])
def test_bad_sampling_options_raise_config_errors(ntu_xsub, options):
    with pytest.raises(ConfigError):
        SkeletonDataset(ntu_xsub, "train", **options)


def test_unknown_split_source_and_benchmark(ntu_raw, ntu_xsub, tmp_path, capsys):
    with pytest.raises(ConfigError, match="train_untrimmed"):
        SkeletonDataset(ntu_xsub, "train_untrimmed")
    with pytest.raises(ConfigError, match="xview"):
        prepare_dataset("ntu60", ntu_raw, tmp_path / "out", benchmark="xset")
    assert main(["prepare", "pkummd1", str(tmp_path / "nowhere"), str(tmp_path / "out"), "--benchmark", "xsub"]) == 1
    assert "nowhere" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


# --------------------------------------------------------------------------------------
# Model configs and DataLoader
# --------------------------------------------------------------------------------------


def test_check_config_names_each_mismatch(ntu_xsub):
    dataset = SkeletonDataset(ntu_xsub, "train")
    config = USDRLConfig.from_preset("tiny", num_classes=60)
    dataset.check_config(config)
    cases = {"layout": {"layout": "coco17"}, "persons": {"num_persons": 1}, "channels": {"in_channels": 2},
             "frames": {"num_frames": 32}, "num_classes": {"num_classes": 10}}
    for word, change in cases.items():
        with pytest.raises(ConfigError, match=word) as info:
            dataset.check_config(USDRLConfig.from_preset("tiny", **{"num_classes": 60, **change}))
        assert str(ntu_xsub / "train") in str(info.value)
    with pytest.raises(ConfigError, match="layout 'uav17' in the config, 'ntu25' in the data; joints 17 in"):
        dataset.check_config(USDRLConfig.from_preset("tiny", layout="uav17"))


def test_check_config_says_what_to_do(ntu_xsub):
    dataset = SkeletonDataset(ntu_xsub, "train")
    with pytest.raises(ConfigError) as info:
        dataset.check_config(USDRLConfig.from_preset("tiny", layout="uav17", num_frames=32, num_classes=10))
    message = str(info.value)
    assert "\n" not in message  # one line, each kind of mismatch with its fix
    layout, frames, head = message.split("; and ")
    assert layout.endswith("(ntu60 xsub, sampling resample): layout 'uav17' in the config, 'ntu25' in the data; "
                           "joints 17 in the config, 25 in the data: use a model pretrained (or converted) for "
                           f"layout 'ntu25', e.g. `usdrl pretrain --data {ntu_xsub}`")
    assert frames == "frames 32 in the config, 64 in the data: open the dataset with num_frames=32 " \
                     "(SkeletonDataset resamples each clip to it)"
    assert "`model.reset_classifier(60)`" in head
    SkeletonDataset(ntu_xsub, "train", num_frames=32).check_config(USDRLConfig.from_preset("tiny", num_frames=32))


def test_dataloader_with_two_workers(ntu_xsub):
    dataset = SkeletonDataset(ntu_xsub, "train")
    dataset[0]  # a map opened in the parent must not leak into the workers
    loader = torch.utils.data.DataLoader(dataset, batch_size=8, num_workers=2)
    clips, labels = zip(*loader, strict=True)
    assert torch.cat(labels).tolist() == dataset.labels.tolist()
    expected = np.stack([dataset[i][0] for i in range(len(dataset))])
    np.testing.assert_array_equal(torch.cat(clips).numpy(), expected)

    crops = SkeletonDataset(ntu_xsub, "train", sampling="random_crop", num_frames=16, seed=1)

    def epoch(seed: int) -> torch.Tensor:
        torch.manual_seed(seed)
        return torch.cat([b for b, _ in torch.utils.data.DataLoader(crops, batch_size=4, num_workers=2)])

    first, again, other = epoch(0), epoch(0), epoch(1)
    assert first.shape == (len(crops), 3, 16, 25, 2)
    assert torch.equal(first, again) and not torch.equal(first, other)  # reproducible under torch.manual_seed


# --------------------------------------------------------------------------------------
# Atomicity and overwriting
# --------------------------------------------------------------------------------------


def test_a_bad_file_mid_run_leaves_no_output(ntu_raw, tmp_path, capsys):
    raw = tmp_path / "raw"
    shutil.copytree(ntu_raw, raw)
    kept = expected_ntu_split(raw_names(raw, "*.skeleton"), "ntu120", "xset")["test"]
    bad = next(raw.rglob(f"{kept[len(kept) // 2]}.skeleton"))
    bad.write_text("\r\n".join(bad.read_text().splitlines()[:500]) + "\r\n")  # truncated mid-frame
    out = tmp_path / "out"
    assert main(["prepare", "ntu120", str(raw), str(out), "--benchmark", "xset", "--workers", "2"]) == 1
    assert bad.name in capsys.readouterr().err
    assert not out.exists() and no_leftovers(out)
    with pytest.raises(DataFormatError, match="manifest.json is missing"):
        SkeletonDataset(out, "train")


def test_a_crash_while_overwriting_keeps_the_old_dataset(ntu_raw, tmp_path, monkeypatch):
    out = prepare_dataset("ntu60", ntu_raw, tmp_path / "out", benchmark="xview", workers=1)
    before = (out / "manifest.json").read_text(), (out / "train" / "data.npy").read_bytes()
    calls = []
    run = prepared.pool._SkeletonFileTask.run

    def crash_on_the_fifth_file(self):
        calls.append(self.path)
        if len(calls) == 5:
            raise KeyboardInterrupt
        return run(self)

    monkeypatch.setattr(prepared.pool._SkeletonFileTask, "run", crash_on_the_fifth_file)
    with pytest.raises(KeyboardInterrupt):
        prepare_dataset("ntu60", ntu_raw, out, benchmark="xsub", workers=1, overwrite=True)
    assert len(calls) == 5 and no_leftovers(out)
    assert ((out / "manifest.json").read_text(), (out / "train" / "data.npy").read_bytes()) == before
    assert SkeletonDataset(out, "train").manifest["benchmark"] == "xview"


def test_existing_output_needs_overwrite(ntu_raw, tmp_path, capsys):
    out = tmp_path / "out"
    args = ["prepare", "ntu60", str(ntu_raw), str(out), "--workers", "1", "--benchmark"]
    assert main([*args, "xview"]) == 0
    assert main([*args, "xsub"]) == 1 and "--overwrite" in capsys.readouterr().err
    assert read_manifest(out)["benchmark"] == "xview"
    assert main([*args, "xsub", "--overwrite"]) == 0
    assert read_manifest(out)["benchmark"] == "xsub" and no_leftovers(out)
    stranger = tmp_path / "stranger"
    stranger.mkdir()
    (stranger / "notes.txt").write_text("keep me")
    with pytest.raises(ConfigError, match="not a prepared dataset"):
        prepare_dataset("ntu60", ntu_raw, stranger, benchmark="xsub", overwrite=True)
    assert (stranger / "notes.txt").read_text() == "keep me"


def test_reader_refuses_incomplete_or_inconsistent_folders(ntu_xsub, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(ntu_xsub, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["splits"]["train"]["arrays"]["data"]["shape"][2] += 1  # more frames than the file holds
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(DataFormatError, match="data.npy: shape"):
        SkeletonDataset(copy, "train")
    (copy / "manifest.json").write_text('{"format": "usdrl-prepared", "format_ver')
    with pytest.raises(DataFormatError, match="not a valid manifest"):
        SkeletonDataset(copy, "train")
    (copy / "manifest.json").unlink()
    with pytest.raises(DataFormatError, match="manifest.json is missing"):
        read_manifest(copy)


# --------------------------------------------------------------------------------------
# PKU-MMD
# --------------------------------------------------------------------------------------


def split_file_stems(path: Path) -> dict[str, list[str]]:
    lines = path.read_text().splitlines()
    return {part: [s.strip() for s in lines[k].strip().rstrip(",").split(",")]
            for part, k in (("train", 1), ("test", 3))}


@pytest.fixture(scope="module", params=[(1, "xsub"), (2, "xview")], ids=["pkummd1-xsub", "pkummd2-xview"])
def pkummd(request, tmp_path_factory, generator):
    phase, benchmark = request.param
    raw = tmp_path_factory.mktemp(f"pkummd{phase}")
    write_synthetic_pkummd(raw, 5, phase=phase, seed=2, generator=generator)
    out = prepare_cli(f"pkummd{phase}", str(raw), str(raw.parent / f"{raw.name}_out"), "--benchmark", benchmark)
    skeletons, labels, xsub, xview = (raw / part for part in PKUMMD_LAYOUT[phase])
    return out, skeletons, labels, split_file_stems(xsub if benchmark == "xsub" else xview)


def test_pkummd_untrimmed_sequences_keep_per_frame_labels(pkummd):
    out, skeletons, labels, stems = pkummd
    manifest = read_manifest(out)
    assert (manifest["num_classes"], manifest["num_frame_classes"]) == (51, 52)
    for part in ("train", "test"):
        arrays = load_split(out, f"{part}_untrimmed")
        assert arrays["names"] == stems[part]
        assert (arrays["labels"] == -1).all()
        for i, stem in enumerate(stems[part]):
            raw = read_pkummd_skeleton(skeletons / f"{stem}.txt").data
            n = arrays["num_frames"][i]
            assert n == raw.shape[1]
            np.testing.assert_array_equal(arrays["data"][i, :, :n], align_view(raw, "ntu"))
            expected = frame_labels(read_pkummd_labels(labels / f"{stem}.txt"), n)
            assert expected.max() > 0
            np.testing.assert_array_equal(arrays["frame_labels"][i, :n], expected)
            assert (arrays["frame_labels"][i, n:] == -1).all()


def test_pkummd_clips_are_cut_by_the_label_files(pkummd):
    out, skeletons, labels, stems = pkummd
    for part in ("train", "test"):
        arrays = load_split(out, part)
        expected = [(stem, a) for stem in stems[part] for a in read_pkummd_labels(labels / f"{stem}.txt")]
        assert len(arrays["names"]) == len(expected) > 0
        for i, (stem, action) in enumerate(expected):
            raw = read_pkummd_skeleton(skeletons / f"{stem}.txt").data
            assert arrays["names"][i] == f"{stem}:{action.start}-{action.end}"
            assert arrays["labels"][i] == action.label - 1
            assert arrays["num_frames"][i] == action.end - action.start
            np.testing.assert_array_equal(arrays["data"][i, :, : action.end - action.start],
                                          preprocess_3d(raw[:, action.start:action.end]))
    dataset = SkeletonDataset(out, "train")
    assert dataset.num_classes == 51 and dataset[0][0].shape == (3, T, 25, 2)


@pytest.mark.parametrize("stride", [T, 24])
def test_windows_cover_each_sequence(pkummd, stride):
    out, *_ = pkummd
    dataset = SkeletonDataset(out, "test_untrimmed", sampling="windows", window_stride=stride)
    arrays = load_split(out, "test_untrimmed")
    assert dataset.num_classes == 52
    assert sorted(set(dataset.windows[:, 0].tolist())) == list(range(len(arrays["names"])))
    for sequence, n in enumerate(arrays["num_frames"]):
        rows = np.flatnonzero(dataset.windows[:, 0] == sequence)
        starts = dataset.windows[rows, 1]
        assert starts.tolist() == list(range(0, stride * len(rows), stride))
        assert starts[-1] + T >= n > starts[-1] and (len(rows) == 1 or starts[-2] + T < n)
        covered = np.full(n, -2)
        for row, start in zip(rows, starts, strict=True):
            clip, per_frame = dataset[row]
            valid = min(T, n - start)
            assert clip.shape == (3, T, 25, 2) and per_frame.shape == (T,)
            np.testing.assert_array_equal(clip[:, :valid], arrays["data"][sequence, :, start:start + valid])
            assert not clip[:, valid:].any() and (per_frame[valid:] == -1).all()
            covered[start:start + valid] = per_frame[:valid]
        np.testing.assert_array_equal(covered, arrays["frame_labels"][sequence, :n])
    config = USDRLConfig.from_preset("tiny", num_frame_classes=51)
    with pytest.raises(ConfigError, match="num_frame_classes 51 in the config, 52 in the data"):
        dataset.check_config(config)
    dataset.check_config(config.replace(num_frame_classes=52))


def test_pkummd_split_stems_without_files_are_skipped(tmp_path, generator):
    raw = tmp_path / "raw"
    write_synthetic_pkummd(raw, 3, phase=1, seed=5, generator=generator)
    split_file = raw / PKUMMD_LAYOUT[1][2]
    stems = split_file_stems(split_file)
    split_file.write_text(f"Training videos:\n{', '.join(stems['train'] + ['0999-L'])},\n"
                          f"Validation videos:\n{', '.join(stems['test'])},\n")
    out = prepare_dataset("pkummd1", raw, tmp_path / "out", benchmark="xsub", workers=1)
    manifest = read_manifest(out)
    assert manifest["skipped"]["sequences_without_files"] == ["0999-L"]
    assert load_split(out, "train_untrimmed")["names"] == stems["train"]
    split_file.write_text(f"Training videos:\nA01N01-L,\nValidation videos:\n{stems['test'][0]},\n")
    with pytest.raises(DataFormatError, match="A01N01-L is not a phase-1 stem"):
        prepare_dataset("pkummd1", raw, tmp_path / "out2", benchmark="xsub")


# --------------------------------------------------------------------------------------
# UAV-Human and NTU-2D
# --------------------------------------------------------------------------------------


def test_uav_csv1(tmp_path, generator):
    raw = tmp_path / "uav"
    files = write_synthetic_uav(raw, 30, seed=4, generator=generator)
    out = prepare_cli("uav", str(raw), str(tmp_path / "out"), "--benchmark", "csv1", "--workers", "2")
    manifest = read_manifest(out)
    assert (manifest["layout"], manifest["num_joints"], manifest["num_classes"]) == ("uav17", 17, 155)
    assert manifest["preprocessing"]["max_frames"] == 300
    by_split = {"train": [], "test": []}
    for path in sorted(files, key=lambda p: p.name):
        by_split["train" if int(path.name[1:4]) in CSV1_TRAIN_PERSONS else "test"].append(path)
    for split, paths in by_split.items():
        arrays = load_split(out, split)
        assert arrays["names"] == [p.stem for p in paths]
        assert arrays["labels"].tolist() == [int(p.name.split("A")[1][:3]) for p in paths]
        for i, path in enumerate(paths):
            reference = preprocess_3d(read_uav_skeleton(path).data, "uav")
            np.testing.assert_array_equal(arrays["data"][i, :, : arrays["num_frames"][i]], reference)
    dataset = SkeletonDataset(out, "train")
    assert dataset.layout == "uav17" and dataset[0][0].shape == (3, T, 17, 2)
    dataset.check_config(USDRLConfig.from_preset("tiny", layout="uav17"))


def test_uav_keeps_at_most_300_frames(tmp_path):
    raw = tmp_path / "uav"
    files = write_synthetic_uav(raw, 2, seed=1, generator=SyntheticActions(num_frames_range=(305, 310)))
    out = prepare_dataset("uav", raw, tmp_path / "out", benchmark="csv2", workers=1)
    found = 0
    for split in ("train", "test"):
        arrays = load_split(out, split)
        assert (arrays["num_frames"] == 300).all()
        for i, name in enumerate(arrays["names"]):
            data = read_uav_skeleton(raw / f"{name}.txt").data
            assert data.shape[1] > 300
            reference = align_view(fill_empty_frames(select_bodies(data, 2, max_candidates=4)[:, :300]), "uav")
            np.testing.assert_array_equal(arrays["data"][i], reference)
            found += 1
    assert found == len(files)


def test_ntu2d_from_a_pyskl_pickle(tmp_path, generator):
    pkl = write_synthetic_ntu2d(tmp_path / "ntu60_hrnet.pkl", 30, seed=6, generator=generator)
    with open(pkl, "rb") as f:
        content = pickle.load(f)
    assert set(content["split"]) == {"xsub_train", "xsub_val", "xview_train", "xview_val"}
    assert set(content["annotations"][0]) == {"frame_dir", "label", "img_shape", "original_shape", "total_frames",
                                              "keypoint", "keypoint_score"}
    out = prepare_cli("ntu2d", str(pkl), str(tmp_path / "out"), "--benchmark", "xsub", "--padding", "zero")
    manifest = read_manifest(out)
    assert (manifest["layout"], manifest["num_joints"], manifest["num_classes"]) == ("coco17", 17, 60)
    assert manifest["preprocessing"]["padding"] == "zero"
    annotations = {ann["frame_dir"]: ann for ann in content["annotations"]}
    for split, key in (("train", "xsub_train"), ("test", "xsub_val")):
        arrays = load_split(out, split)
        assert arrays["names"] == content["split"][key]
        for i, name in enumerate(arrays["names"]):
            ann = annotations[name]
            assert arrays["labels"][i] == ann["label"] and arrays["num_frames"][i] == ann["total_frames"]
            clip = arrays["data"][i, :, : ann["total_frames"]]
            np.testing.assert_array_equal(clip, annotation_to_clip(ann, padding="zero"))
            assert not clip[2].any()
            x_pixels = ann["keypoint"][0, :, :, 0].astype(np.float32)
            np.testing.assert_allclose(clip[0, :, :, 0], x_pixels / 1920, rtol=1e-6)  # x / width, every joint
    SkeletonDataset(out, "test").check_config(USDRLConfig.from_preset("tiny", layout="coco17"))


def test_ntu_synthetic_files_read_back(tmp_path, generator):
    files = write_synthetic_ntu(tmp_path, 6, seed=9, generator=generator)
    clips = generator.clips(6, seed=9)
    first = {}
    for i, name in enumerate(clips.names()):
        first.setdefault(name, i)
    assert [p.stem for p in files] == list(first)
    for path in files:
        i = first[path.stem]
        sequence = read_ntu_skeleton(path)
        assert path.read_bytes().endswith(b"\r\n") and sequence.label == clips.labels[i]
        expected = clips.data[i, :, : clips.lengths[i]]
        bodies = sequence.num_bodies  # 1 for single-person classes, 2 for interactions
        np.testing.assert_array_equal(sequence.data, expected[..., :bodies])
        assert not expected[..., bodies:].any()


def test_ntu2d_classes_follow_the_samples(tmp_path, generator):
    pkl = write_synthetic_ntu2d(tmp_path / "ntu60_hrnet.pkl", 6, seed=8, generator=generator)
    with open(pkl, "rb") as f:
        content = pickle.load(f)
    old = content["split"]["xsub_train"][0]
    new = "S018" + old[4:]  # an NTU-120-only setup
    content["split"]["xsub_train"][0] = new
    next(ann for ann in content["annotations"] if ann["frame_dir"] == old)["frame_dir"] = new
    with open(tmp_path / "ntu120_hrnet.pkl", "wb") as f:
        pickle.dump(content, f, protocol=2)
    out = prepare_dataset("ntu2d", tmp_path / "ntu120_hrnet.pkl", tmp_path / "out", benchmark="xsub")
    assert read_manifest(out)["num_classes"] == 120
    with pytest.raises(DataFormatError, match="xset_train"):
        prepare_dataset("ntu2d", pkl, tmp_path / "out2", benchmark="xset")
