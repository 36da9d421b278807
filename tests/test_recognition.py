"""Linear evaluation: the protocol on fixed features, and end to end on a prepared synthetic dataset."""

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from data_helpers import prepare_synthetic

from usdrl import USDRL, ConfigError, InputError, USDRLConfig
from usdrl.cli import main
from usdrl.data import SkeletonDataset
from usdrl.engine import RunOptions
from usdrl.tasks.early import early_prediction
from usdrl.tasks.recognition import ProbeConfig, encode_dataset, linear_probe, save_trained, train_linear_head


def blobs(n_per_class, num_classes, dim, spread, seed):
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(num_classes, dim, generator=torch.Generator().manual_seed(99)) * 3
    labels = torch.arange(num_classes).repeat_interleave(n_per_class)
    return centres[labels] + spread * torch.randn(len(labels), dim, generator=g), labels


def test_separable_features_are_learnt_perfectly_and_history_follows_the_schedule():
    train_x, train_y = blobs(20, 4, 8, 0.1, seed=1)
    test_x, test_y = blobs(10, 4, 8, 0.1, seed=2)
    config = ProbeConfig(lr=0.1, epochs=12, lr_milestones=[8], eval_every=5, batch_size=16)
    head, result = train_linear_head(train_x, train_y, test_x, test_y, 4, config)
    assert [epoch for epoch, _, _ in result.history] == [5, 10, 12]
    assert result.last_top1 == 1.0 and result.best_top1 == 1.0 and result.best_epoch == 5
    np.testing.assert_array_equal(result.confusion, np.diag([10, 10, 10, 10]))
    assert (head(test_x).argmax(1) == test_y).all()


def test_best_is_the_maximum_of_the_evaluations_and_last_the_final_one():
    train_x, train_y = blobs(15, 6, 8, 4.0, seed=3)   # overlapping classes: accuracy moves between evaluations
    test_x, test_y = blobs(15, 6, 8, 4.0, seed=4)
    _, result = train_linear_head(train_x, train_y, test_x, test_y, 6, ProbeConfig(lr=0.05, epochs=30))
    assert result.best_top1 == max(top1 for _, top1, _ in result.history)
    assert result.last_top1 == result.history[-1][1] and result.history[-1][0] == 30
    assert 1 / 6 < result.last_top1 < 1.0 and result.best_top5 >= result.best_top1
    assert result.confusion.sum() == len(test_y)


def test_standardisation_is_folded_into_the_returned_head():
    train_x, train_y = blobs(20, 4, 8, 0.5, seed=1)
    train_x = train_x * torch.linspace(0.01, 100, 8) + 50   # wildly different scales and offsets
    config = ProbeConfig(lr=0.1, epochs=10, batch_size=16, standardize=True)
    head, result = train_linear_head(train_x, train_y, train_x, train_y, 4, config)
    assert result.last_top1 == 1.0 and (head(train_x).argmax(1) == train_y).all()


def test_bad_inputs_are_refused():
    x, y = blobs(5, 3, 4, 0.1, seed=0)
    with pytest.raises(InputError, match="labels must be"):
        train_linear_head(x, y, x, y + 1, 3)
    with pytest.raises(InputError, match="one width"):
        train_linear_head(x, y, x[:, :2], y, 3)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    root = tmp_path_factory.mktemp("probe")
    return prepare_synthetic(root, "ntu60", 400)[1]


def test_linear_probe_on_a_prepared_dataset_sets_the_head(prepared):
    torch.manual_seed(0)
    model = USDRL(USDRLConfig.from_preset("tiny"))
    train, test = SkeletonDataset(prepared, "train"), SkeletonDataset(prepared, "test")
    config = ProbeConfig(lr=0.05, epochs=60, batch_size=32, standardize=True)
    result = linear_probe(model, (train, test), num_classes=60, config=config)
    assert model.head.out_features == 60 and not model.training  # ready to predict
    clips = torch.stack([test[i][0] if isinstance(test[i][0], torch.Tensor) else torch.from_numpy(test[i][0])
                         for i in range(len(test))])
    predictions = model(clips).argmax(1).numpy()
    assert float((predictions == test.labels).mean()) == pytest.approx(result.last_top1)
    assert result.best_top1 > 0.3   # chance is 1/29 on the synthetic classes


def test_the_trained_model_is_saved_by_rank_0_alone(prepared, tmp_path, monkeypatch):
    model = USDRL(USDRLConfig.from_preset("tiny", hidden_size=16, num_heads=1, num_classes=3))
    train = SkeletonDataset(prepared, "train", num_frames=model.config.num_frames)
    monkeypatch.setenv("RANK", "1")  # another process of a torchrun
    save_trained(model, RunOptions(run_dir=tmp_path / "rank1"), train, "linear probe")
    assert not (tmp_path / "rank1").exists()
    monkeypatch.setenv("RANK", "0")
    save_trained(model, RunOptions(run_dir=tmp_path / "rank0"), train, "linear probe")
    manifest = train.manifest
    expected = f"linear probe on {manifest['source']} {manifest['benchmark']}"
    assert USDRL.from_pretrained(tmp_path / "rank0").config.protocol == expected


def test_cli_linear_probe(prepared, tmp_path, capsys):
    torch.manual_seed(0)
    USDRL(USDRLConfig.from_preset("tiny")).save_pretrained(tmp_path / "encoder")
    assert main(["linear-probe", str(tmp_path / "encoder"), "--data", str(prepared), "--epochs", "10", "--lr",
                 "0.05", "--out", str(tmp_path / "probed"), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert set(result) >= {"best_top1", "best_epoch", "last_top1", "last_top5", "history"}
    model = USDRL.from_pretrained(tmp_path / "probed")
    assert model.config.num_classes == 60 and model.config.protocol == "linear probe on ntu60 xsub"

    # a model whose head is for other classes (e.g. transfer from another dataset): the task replaces it
    model.reset_classifier(5)
    model.save_pretrained(tmp_path / "five")
    assert main(["linear-probe", str(tmp_path / "five"), "--data", str(prepared), "--epochs", "5", "--out",
                 str(tmp_path / "again")]) == 0
    assert USDRL.from_pretrained(tmp_path / "again").config.num_classes == 60


def test_cli_knn_matches_the_python_api(prepared, tmp_path, capsys):
    torch.manual_seed(0)
    model = USDRL(USDRLConfig.from_preset("tiny"))
    model.save_pretrained(tmp_path / "encoder")
    assert main(["knn", str(tmp_path / "encoder"), "--data", str(prepared), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    (gallery, gallery_labels), (query, query_labels) = (encode_dataset(model.eval(), SkeletonDataset(prepared, s))
                                                        for s in ("train", "test"))
    # The default metric is cosine: the nearest gallery clip by angle, computed here by hand.
    nearest = (F.normalize(query, dim=1) @ F.normalize(gallery, dim=1).T).argmax(dim=1)
    expected = (gallery_labels[nearest] == query_labels).double().mean().item()
    by_dot = (gallery_labels[(query @ gallery.T).argmax(dim=1)] == query_labels).double().mean().item()
    assert by_dot != pytest.approx(expected)   # the data tells the metrics apart
    assert result == {"accuracy": pytest.approx(expected, abs=1e-12), "k": 1, "queries": len(query),
                      "gallery": len(gallery)}
    assert expected > 0.3   # far above chance (1/29) even for a random encoder on aligned synthetic clips


def test_early_prediction_curve(prepared, tmp_path, capsys):
    torch.manual_seed(0)
    model = USDRL(USDRLConfig.from_preset("tiny"))
    config = ProbeConfig(lr=0.05, epochs=60, batch_size=32, standardize=True)
    result = linear_probe(model, (SkeletonDataset(prepared, "train"), SkeletonDataset(prepared, "test")),
                          num_classes=60, config=config)
    model.eval().save_pretrained(tmp_path / "probed")
    curve = early_prediction(model, prepared, ratios=(0.2, 0.6, 1.0))
    assert list(curve.accuracy) == [0.2, 0.6, 1.0]
    assert curve.accuracy[1.0] == pytest.approx(result.last_top1)   # observing everything is plain recognition
    assert curve.accuracy[0.2] < curve.accuracy[1.0]
    assert curve.area == pytest.approx(0.2 * (curve.accuracy[0.2] + 2 * curve.accuracy[0.6] + curve.accuracy[1.0]))
    assert main(["early-prediction", str(tmp_path / "probed"), "--data", str(prepared), "--ratio", "0.2",
                 "--ratio", "1.0", "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["accuracy"] == pytest.approx({"0.2": curve.accuracy[0.2], "1.0": curve.accuracy[1.0]})
    with pytest.raises(ConfigError, match="needs a model with a clip-level head"):
        early_prediction(USDRL(USDRLConfig.from_preset("tiny")), prepared)


def test_cli_finetune_on_a_labelled_fraction(prepared, tmp_path, capsys):
    torch.manual_seed(0)
    USDRL(USDRLConfig.from_preset("tiny", hidden_size=32, num_heads=1)).save_pretrained(tmp_path / "encoder")
    assert main(["finetune", str(tmp_path / "encoder"), "--data", str(prepared), "--fraction", "0.1", "--epochs",
                 "2", "--batch-size", "8", "--out", str(tmp_path / "tuned"), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    train_labels = SkeletonDataset(prepared, "train").labels
    expected = sum(max(1, round(np.sum(train_labels == c) * 0.1)) for c in np.unique(train_labels))
    assert result["train_clips"] == expected and [h[0] for h in result["history"]] == [2]
    assert USDRL.from_pretrained(tmp_path / "tuned").config.num_classes == 60


def test_cli_confusion_and_ensemble_of_two_modalities(prepared, tmp_path, capsys):
    from usdrl.tasks.finetune import ensemble_scores, predict_dataset

    folders = []
    for modality in ("joint", "motion"):
        torch.manual_seed(0)
        USDRL(USDRLConfig.from_preset("tiny", modality=modality)).save_pretrained(tmp_path / modality)
        folders.append(str(tmp_path / f"{modality}-probed"))
        assert main(["linear-probe", str(tmp_path / modality), "--data", str(prepared), "--epochs", "10", "--lr",
                     "0.05", "--out", folders[-1], "--confusion", str(tmp_path / f"{modality}.csv"), "--json"]) == 0
        result = json.loads(capsys.readouterr().out)
        rows = (tmp_path / f"{modality}.csv").read_text().splitlines()
        matrix = np.array([[int(v) for v in row.split(",")[1:]] for row in rows[1:]])
        assert rows[0].startswith("true \\ predicted,0,1,") and matrix.shape == (60, 60)
        test_labels = SkeletonDataset(prepared, "test").labels
        assert matrix.sum() == len(test_labels) and (matrix.sum(1) == np.bincount(test_labels, minlength=60)).all()
        assert np.trace(matrix) / matrix.sum() == pytest.approx(result["last_top1"])

    assert main(["ensemble", *folders, "--data", str(prepared), "--json"]) == 0
    figures = json.loads(capsys.readouterr().out)["top1"]
    test = SkeletonDataset(prepared, "test")
    scores = [predict_dataset(USDRL.from_pretrained(folder), test)[0] for folder in folders]
    labels = torch.from_numpy(np.asarray(test.labels))
    assert figures[f"{folders[1]} (motion)"] == pytest.approx(float((scores[1].argmax(1) == labels).float().mean()))
    assert figures["ensemble"] == pytest.approx(float((ensemble_scores(*scores).argmax(1) == labels).float().mean()))
