"""Detection: sliding-window frame scores, proposals, training and the official mAP on synthetic PKU-MMD."""

import json

import numpy as np
import pytest
import torch
from data_helpers import prepare_synthetic

from usdrl import USDRL, ConfigError, USDRLConfig
from usdrl.cli import main
from usdrl.data import SkeletonDataset
from usdrl.data.synthetic_files import write_synthetic_pkummd
from usdrl.tasks.detection import (
    DetectionConfig,
    _window_starts,
    detect_dataset,
    evaluate_detection,
    evaluate_segmentation,
    frame_scores,
    ground_truth,
    smoothing_loss,
    train_detector,
)
from usdrl.tasks.detection_eval import read_detection_proposals
from usdrl.tasks.finetune import FinetuneConfig
from usdrl.tasks.metrics import detection_map, temporal_nms


def test_window_starts_cover_the_sequence():
    assert _window_starts(130, 64, 64) == [0, 64, 128]
    assert _window_starts(64, 64, 32) == [0]
    assert _window_starts(10, 64, 16) == [0]
    assert _window_starts(100, 64, 16) == [0, 16, 32, 48]


def test_overlapping_window_scores_are_averaged():
    torch.manual_seed(0)
    model = USDRL(USDRLConfig.from_preset("tiny", num_frames=16, num_frame_classes=3)).eval()
    sequence = np.random.default_rng(0).normal(size=(3, 40, 25, 2)).astype(np.float32)
    scores = frame_scores(model, sequence, stride=8)
    assert scores.shape == (40, 3)
    torch.testing.assert_close(scores.sum(1), torch.ones(40))
    padded = np.zeros((3, 48, 25, 2), dtype=np.float32)
    padded[:, :40] = sequence
    with torch.no_grad():
        windows = {s: model.forward_frames(torch.from_numpy(padded[None, :, s:s + 16]))[0].softmax(-1)
                   for s in (0, 8, 16, 24, 32)}
    # frame 20 lies in the windows starting at 8 and 16; frame 3 only in the first
    torch.testing.assert_close(scores[20], (windows[8][12] + windows[16][4]) / 2)
    torch.testing.assert_close(scores[3], windows[0][3])
    with pytest.raises(ConfigError, match="frame-wise head"):
        frame_scores(USDRL(USDRLConfig.from_preset("tiny")), sequence)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    root = tmp_path_factory.mktemp("detection")
    return prepare_synthetic(root, "pkummd1", 12)[1]


def test_train_detect_and_evaluate(prepared, tmp_path):
    torch.manual_seed(0)
    model = USDRL(USDRLConfig.from_preset("tiny", hidden_size=32, num_heads=1))
    windows = SkeletonDataset(prepared, "train_untrimmed", sampling="windows", window_stride=32)
    losses = train_detector(model, windows, num_classes=52,
                            config=FinetuneConfig(epochs=4, batch_size=8, lr=2e-3, warmup_epochs=1))
    assert len(losses) == 4 and losses[-1] < losses[0]
    truth = ground_truth(prepared)
    assert all(label >= 1 for segments in truth.values() for label, _, _ in segments)
    proposals = detect_dataset(model, prepared, config=DetectionConfig(stride=32, threshold=0.3),
                               out_dir=tmp_path / "proposals")
    assert set(proposals) == set(truth)
    files = sorted(p.name for p in (tmp_path / "proposals").iterdir())
    assert len(files) == len(truth)
    results = evaluate_detection(model, prepared, config=DetectionConfig(stride=32, threshold=0.3),
                                 iou_thresholds=(0.1, 0.5))
    # The evaluation is the official metric of these very proposals against the frame labels' segments.
    assert results == detection_map(truth, proposals, (0.1, 0.5))
    assert results[0.1]["mAP_v"] >= results[0.5]["mAP_v"]
    # A known value: the ground truth itself, as proposals, scores AP 1 in every video.
    perfect = {name: [(*segment, 1.0) for segment in segments] for name, segments in truth.items()}
    assert all(v["mAP_v"] == 1.0 for v in detection_map(truth, perfect, (0.1, 0.5)).values())


def test_under_torchrun_every_process_detects_and_rank_0_alone_writes(prepared, tmp_path, monkeypatch):
    torch.manual_seed(0)
    model = USDRL(USDRLConfig.from_preset("tiny", hidden_size=16, num_heads=1, num_frame_classes=52)).eval()
    config = DetectionConfig(stride=32, threshold=0.01)  # an untrained head: about 1/52 per class
    main_proposals = detect_dataset(model, prepared, config=config, out_dir=tmp_path / "rank0")
    monkeypatch.setenv("RANK", "1")  # another process of a torchrun: it returns the proposals, writes nothing
    assert detect_dataset(model, prepared, config=config, out_dir=tmp_path / "rank1") == main_proposals
    assert not (tmp_path / "rank1").exists()
    written = {path.stem: read_detection_proposals(path) for path in (tmp_path / "rank0").iterdir()}
    assert sum(map(len, written.values())) == sum(map(len, main_proposals.values())) > 0


def test_cli_detect_then_evaluate(prepared, tmp_path, capsys):
    torch.manual_seed(0)
    USDRL(USDRLConfig.from_preset("tiny", hidden_size=32, num_heads=1)).save_pretrained(tmp_path / "encoder")
    assert main(["detect", str(tmp_path / "encoder"), "--data", str(prepared), "--out", str(tmp_path / "pred"),
                 "--train-epochs", "1", "--save-model", str(tmp_path / "detector"), "--threshold", "0.3"]) == 0
    assert "proposals for" in capsys.readouterr().out
    assert USDRL.from_pretrained(tmp_path / "detector").config.num_frame_classes == 52
    gt_dir = tmp_path / "gt"
    gt_dir.mkdir()
    for name, segments in ground_truth(prepared).items():
        lines = "".join(f"{label},{start},{end},1\n" for label, start, end in segments)
        (gt_dir / f"{name}.txt").write_text(lines)
    assert main(["eval-detection", str(gt_dir), str(tmp_path / "pred"), "--iou", "0.5", "--json"]) == 0
    scores = json.loads(capsys.readouterr().out)["0.5"]
    predictions = {path.stem: read_detection_proposals(path) for path in (tmp_path / "pred").iterdir()}
    truth = {name: segments for name, segments in ground_truth(prepared).items() if name in predictions}
    expected = detection_map(truth, predictions, (0.5,))[0.5]
    assert (scores["mAP_a"], scores["mAP_v"]) == pytest.approx((expected["mAP_a"], expected["mAP_v"]), abs=1e-12)
    # The ground-truth files given as proposals: every video is found exactly, AP 1.
    assert main(["eval-detection", str(gt_dir), str(gt_dir), "--iou", "0.5", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["0.5"]["mAP_v"] == 1.0


def test_nms_keeps_a_proposal_whose_iou_equals_the_threshold():
    # (0, 4) and (0, 8) overlap by 4 of 8 frames: IoU exactly 0.5. Only an IoU above the threshold suppresses.
    proposals = [(1, 0, 8, 0.9), (2, 0, 4, 0.5), (1, 20, 30, 0.1)]
    assert temporal_nms(proposals, 0.5) == proposals
    assert temporal_nms(proposals, 0.49) == [proposals[0], proposals[2]]


def test_smoothing_loss_hand_worked():
    logits = torch.log(torch.tensor([[[0.5, 0.5], [0.5, 0.5], [0.9, 0.1]]]))
    labels = torch.tensor([[0, 0, -1]])
    assert smoothing_loss(logits, labels).item() == 0.0            # identical frames; the padded pair is ignored
    labels = torch.tensor([[0, 0, 1]])
    expected = ((np.log(0.9) - np.log(0.5)) ** 2 + (np.log(0.1) - np.log(0.5)) ** 2) / 2 / 2   # pairs, classes
    assert smoothing_loss(logits, labels).item() == pytest.approx(expected, rel=1e-5)
    assert smoothing_loss(logits, labels, clamp=0.1).item() == pytest.approx(0.01 * 2 / 2 / 2)


def test_segmentation_on_phase_two(tmp_path):
    write_synthetic_pkummd(tmp_path / "raw", 8, phase=2, seed=1)
    assert main(["prepare", "pkummd2", str(tmp_path / "raw"), str(tmp_path / "prepared"), "--benchmark", "xsub",
                 "--workers", "1"]) == 0
    torch.manual_seed(0)
    model = USDRL(USDRLConfig.from_preset("tiny", hidden_size=32, num_heads=1))
    windows = SkeletonDataset(tmp_path / "prepared", "train_untrimmed", sampling="windows")
    losses = train_detector(model, windows, num_classes=52, smoothing=0.15,
                            config=FinetuneConfig(epochs=3, batch_size=8, lr=2e-3, warmup_epochs=1))
    assert losses[-1] < losses[0]
    metrics = evaluate_segmentation(model, tmp_path / "prepared")
    assert set(metrics) == {"Acc", "Edit", "F1@10", "F1@25", "F1@50"}
    assert 0 <= metrics["Acc"] <= 100 and metrics["F1@10"] >= metrics["F1@50"]
