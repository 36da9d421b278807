"""``usdrl segment`` (and ``usdrl detect --eval``) end to end on a tiny prepared synthetic PKU-MMD II dataset."""

import json

import numpy as np
import pytest
import torch
from data_helpers import prepare_synthetic

from usdrl import USDRL, USDRLConfig
from usdrl.cli import main
from usdrl.data import SkeletonDataset
from usdrl.tasks.detection import frame_scores, ground_truth
from usdrl.tasks.detection_eval import read_detection_proposals
from usdrl.tasks.metrics import detection_map, segmentation_metrics

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
    model = USDRL.from_pretrained(detector)
    assert model.config.num_frame_classes == 52
    # The figures are those of the saved model's per-frame argmax on every test sequence.
    test = SkeletonDataset(prepared, "test_untrimmed", sampling="windows", num_frames=32)
    predictions, truths = [], []
    for i in range(len(test.names)):
        length = int(test.lengths[i])
        predictions.append(frame_scores(model, test.padded_clips[i, :, :length]).argmax(1).numpy())
        truths.append(np.asarray(test.frame_labels[i, :length]))
    assert result["sequences"] == len(truths)
    correct = sum(int((p == t).sum()) for p, t in zip(predictions, truths, strict=True))
    assert result["Acc"] == pytest.approx(correct / sum(len(t) for t in truths), abs=1e-12)
    expected = segmentation_metrics(predictions, truths, bg_class=0)
    assert {k: result[k] for k in METRICS} == pytest.approx({k: v / 100 for k, v in expected.items()}, abs=1e-12)
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
    assert result["mAP"]["0.1"]["mAP_v"] >= result["mAP"]["0.5"]["mAP_v"]
    files = sorted((tmp_path / "pred").iterdir())
    assert len(files) == result["videos"]
    # The mAP is that of the written proposals against the frame labels' segments, over present classes.
    predictions = {path.stem: read_detection_proposals(path) for path in files}
    truth = {name: segments for name, segments in ground_truth(prepared).items() if name in predictions}
    expected = detection_map(truth, predictions, (0.1, 0.5), present_classes=True)
    for iou in ("0.1", "0.5"):
        assert (result["mAP"][iou]["mAP_a"], result["mAP"][iou]["mAP_v"]) == pytest.approx(
            (expected[float(iou)]["mAP_a"], expected[float(iou)]["mAP_v"]), abs=1e-6)
