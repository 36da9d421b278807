"""`usdrl encode`, `to_model_input` (the prepare recipe for one clip) and the frame-wise linear probe."""

import numpy as np
import pytest
import torch
from data_helpers import prepare_synthetic

from usdrl import USDRL, USDRLConfig
from usdrl.cli import main
from usdrl.data import SkeletonDataset, read_ntu_skeleton, to_model_input
from usdrl.tasks.detection import frame_probe
from usdrl.tasks.recognition import ProbeConfig


@pytest.fixture(scope="module")
def ntu(tmp_path_factory):
    """Raw synthetic NTU files and their prepared dataset."""
    root = tmp_path_factory.mktemp("encode")
    return prepare_synthetic(root, "ntu60", 24, seed=5)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("model") / "tiny"
    USDRL(USDRLConfig.from_preset("tiny", num_frames=32)).save_pretrained(folder)
    return folder


def test_to_model_input_equals_the_prepared_dataset(ntu):
    files, prepared = ntu
    dataset = SkeletonDataset(prepared, "test", num_frames=48)
    by_name = {path.stem: path for path in files}
    for index in (0, len(dataset) - 1):
        raw = read_ntu_skeleton(by_name[dataset.names[index]]).data
        expected = np.asarray(dataset[index][0])
        got = to_model_input(raw, 48)
        assert got.shape == (3, 48, 25, 2) and got.dtype == np.float32
        np.testing.assert_allclose(got, expected, atol=1e-6)


def test_to_model_input_refuses_2d_data():
    with pytest.raises(ValueError, match="expected 3 channels"):
        to_model_input(np.zeros((2, 10, 17, 1), np.float32))


def test_encode_a_npy_file_and_a_prepared_split(model_dir, ntu, tmp_path, capsys):
    model = USDRL.from_pretrained(model_dir)
    clips = np.random.default_rng(0).normal(size=(5, 3, 32, 25, 2)).astype(np.float32)
    np.save(tmp_path / "clips.npy", clips)
    assert main(["encode", str(model_dir), str(tmp_path / "clips.npy"), str(tmp_path / "emb.npy"), "--normalize"]) == 0
    embeddings = np.load(tmp_path / "emb.npy")
    assert embeddings.shape == (5, 128) and embeddings.dtype == np.float32
    np.testing.assert_allclose(embeddings, model.encode(clips, normalize=True, convert_to_numpy=True), atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(embeddings, axis=1), 1.0, atol=1e-5)
    assert "features (5, 128)" in capsys.readouterr().out

    _, prepared = ntu
    assert main(["encode", str(model_dir), str(prepared), str(tmp_path / "test.npy"), "--split", "test",
                 "--dense"]) == 0
    test = SkeletonDataset(prepared, "test", num_frames=32)
    dense = np.load(tmp_path / "test.npy")
    assert dense.shape == (len(test), 32, 128)
    first = torch.as_tensor(np.asarray(test[0][0]))[None]
    np.testing.assert_allclose(dense[:1], model.dense_features(first, convert_to_numpy=True), atol=1e-5)


def test_encode_errors_exit_1_with_a_message(model_dir, ntu, tmp_path, capsys):
    _, prepared = ntu
    assert main(["encode", str(model_dir), str(prepared), str(tmp_path / "x.npy")]) == 1
    assert "is a prepared dataset of splits train, test: name one with --split" in capsys.readouterr().err
    np.save(tmp_path / "bad.npy", np.zeros((2, 3, 32, 17, 2), np.float32))
    assert main(["encode", str(model_dir), str(tmp_path / "bad.npy"), str(tmp_path / "x.npy")]) == 1
    assert "25" in capsys.readouterr().err
    (tmp_path / "clips.csv").write_text("1,2\n")
    assert main(["encode", str(model_dir), str(tmp_path / "clips.csv"), str(tmp_path / "x.npy")]) == 1
    assert "expected a .npy array" in capsys.readouterr().err
    assert not (tmp_path / "x.npy").exists()


def test_frame_probe_trains_only_the_frame_head(tmp_path):
    prepare_synthetic(tmp_path, "pkummd1", 8)
    torch.manual_seed(0)
    model = USDRL(USDRLConfig.from_preset("tiny", num_frames=32))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    windows = {split: SkeletonDataset(tmp_path / "prepared", split, sampling="windows", num_frames=32,
                                      window_stride=16) for split in ("train_untrimmed", "test_untrimmed")}
    result = frame_probe(model, windows["train_untrimmed"], windows["test_untrimmed"], num_classes=30,
                         config=ProbeConfig(lr=0.05, epochs=10, batch_size=256, standardize=True))
    assert model.frame_head.out_features == 30 and model.config.num_frame_classes == 30
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
    test = windows["test_untrimmed"]
    clips = torch.stack([torch.as_tensor(np.asarray(test[i][0])) for i in range(len(test))])
    labels = torch.stack([torch.as_tensor(np.asarray(test[i][1])) for i in range(len(test))]).long()
    with torch.inference_mode():
        predictions = model.eval().forward_frames(clips).argmax(-1)
    valid = labels >= 0
    accuracy = (predictions[valid] == labels[valid]).sum().item() / valid.sum().item()
    # The installed head is the trained one: the same frames right, to the last frame.
    assert accuracy == pytest.approx(result.last_top1, abs=1e-12)
    assert result.last_top1 > float((labels[valid] == 0).float().mean()) - 0.05
