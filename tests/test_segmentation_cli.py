"""``usdrl segment`` (and ``usdrl detect --eval``) end to end on a tiny prepared synthetic PKU-MMD II dataset."""

import json

import pytest
import torch
from data_helpers import prepare_synthetic

from usdrl import USDRL, USDRLConfig
from usdrl.cli import main

METRICS = {"Acc", "Edit", "F1@10", "F1@25", "F1@50"}


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    root = tmp_path_factory.mktemp("segmentation")
    return prepare_synthetic(root, "pkummd2", 6, seed=3)[1]


@pytest.fixture(scope="module")
def encoder(tmp_path_factory):
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("encoder") / "tiny"
    USDRL(USDRLConfig.from_preset("tiny", hidden_size=32, num_heads=1, num_frames=32)).save_pretrained(folder)
    return folder


def test_segment_trains_saves_and_reports(prepared, encoder, tmp_path, capsys):
    detector = tmp_path / "detector"
    assert main(["segment", str(encoder), "--data", str(prepared), "--train-epochs", "1", "--batch-size", "8",
                 "--lr", "1e-3", "--smoothing", "0.15", "--save-model", str(detector), "--json"]) == 0
    out = capsys.readouterr().out
    assert len(out.strip().splitlines()) == 1                      # one JSON object, nothing else on stdout
    result = json.loads(out)
    assert set(result) == METRICS | {"split", "sequences"}
    assert result["split"] == "test_untrimmed" and result["sequences"] >= 1
    assert all(isinstance(result[k], float) and 0.0 <= result[k] <= 1.0 for k in METRICS)
    assert result["F1@10"] >= result["F1@25"] >= result["F1@50"]
    assert USDRL.from_pretrained(detector).config.num_frame_classes == 52
    # the saved model segments the same way without training, and the text report carries the same figures
    assert main(["segment", str(detector), "--data", str(prepared), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == result
    assert main(["segment", str(detector), "--data", str(prepared)]) == 0
    text = capsys.readouterr().out
    assert text.startswith(f"frame accuracy {100 * result['Acc']:.2f}%  Edit {100 * result['Edit']:.2f}  ")
    assert f"F1@50 {100 * result['F1@50']:.2f}" in text


def test_segment_refuses_bad_splits_and_models(prepared, encoder, tmp_path, capsys):
    assert main(["segment", str(encoder), "--data", str(prepared), "--split", "nope", "--train-epochs", "1"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("usdrl segment: error: ") and "no split 'nope'" in err and "test_untrimmed" in err
    assert "Traceback" not in err
    args = ["segment", str(encoder), "--data", str(prepared)]
    assert main([*args, "--train-split", "nope", "--train-epochs", "1"]) == 1
    assert "no split 'nope'" in capsys.readouterr().err
    assert main([*args, "--split", "test", "--train-epochs", "1"]) == 1
    assert "holds clips" in capsys.readouterr().err
    assert main(args) == 1
    assert "no frame-wise head; train one first with --train-epochs" in capsys.readouterr().err
    assert main([*args, "--save-model", str(tmp_path / "m")]) == 1
    assert "--save-model needs --train-epochs" in capsys.readouterr().err
    assert not (tmp_path / "m").exists()


def test_detect_eval_prints_map(prepared, encoder, tmp_path, capsys):
    assert main(["detect", str(encoder), "--data", str(prepared), "--out", str(tmp_path / "pred"),
                 "--train-epochs", "1", "--batch-size", "8", "--threshold", "0.3", "--eval", "--iou", "0.1",
                 "--iou", "0.5", "--present-classes", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert set(result) == {"proposals", "videos", "out", "mAP"}
    assert set(result["mAP"]) == {"0.1", "0.5"}
    assert all(0.0 <= v <= 1.0 for values in result["mAP"].values() for v in values.values())
    assert result["mAP"]["0.1"]["mAP_v"] >= result["mAP"]["0.5"]["mAP_v"]
    assert len(list((tmp_path / "pred").iterdir())) == result["videos"]
