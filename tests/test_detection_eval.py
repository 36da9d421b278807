import json

import pytest

from usdrl.cli import main
from usdrl.data import ActionInstance, read_pkummd_labels, write_pkummd_labels
from usdrl.errors import DataFormatError
from usdrl.tasks import eval_detection_folders, read_detection_labels, read_detection_proposals

# The hand-worked example of test_task_metrics.test_detection_map_hand_worked.
EXPECTED = {"mAP_a": 1 / 51, "mAP_v": 1 / 2, "AP": 8 / 15, "F1": 8 / 11}
GT = {"0002-L.txt": [(1, 0, 10, 2), (1, 20, 30, 1), (2, 50, 60, 2)], "0003-M.txt": [(1, 0, 10, 1), (2, 5, 15, 1)]}
PRED = {"0002-L.txt": "1,0,10,0.9\n1,40,50,0.8\n1,20,30,0.7\n2,50,60,0.6\n",
        "0003-M.txt": "1 0 10 0.5\r\n2,100,110,0.95\r\n"}


@pytest.fixture
def folders(tmp_path):
    gt_dir, pred_dir = tmp_path / "gt", tmp_path / "pred"
    gt_dir.mkdir()
    pred_dir.mkdir()
    for name, instances in GT.items():
        write_pkummd_labels(gt_dir / name, [ActionInstance(*i) for i in instances])
    for name, text in PRED.items():
        (pred_dir / name).write_text(text, newline="")
    return gt_dir, pred_dir


def test_folders_hand_worked(folders):
    out = eval_detection_folders(*folders, (0.1, 0.5))
    assert set(out) == {0.1, 0.5}
    for value in out.values():
        assert value == pytest.approx(EXPECTED)
    assert eval_detection_folders(*folders, (0.5,), present_classes=True)[0.5] == pytest.approx(
        {**EXPECTED, "mAP_a": 1 / 2})


def test_ground_truth_without_proposals_is_skipped(folders, caplog):
    gt_dir, pred_dir = folders
    write_pkummd_labels(gt_dir / "0004-R.txt", [ActionInstance(3, 0, 10, 1)])
    (pred_dir / ".hidden").write_text("junk")
    with caplog.at_level("INFO", logger="usdrl.tasks.detection_eval"):
        out = eval_detection_folders(gt_dir, pred_dir, (0.5,))
    assert out[0.5] == pytest.approx(EXPECTED)  # label 3's instance is not counted
    assert "1 ground-truth files have no proposal file" in caplog.text


def test_empty_proposal_file_scores_zero(folders):
    gt_dir, pred_dir = folders
    (pred_dir / "0003-M.txt").write_text("")
    # Video 0003-M: no proposals, AP 0; mAP_v (3/4 + 0) / 2. Its instances still count. Label 1: 0.7 (a2),
    # 0.8, 0.9 (a1) against 3 instances: start (2/3, 2/3); 0.7 -> (1/2, 1/3): += 2/3 * 1/3; 0.8; 0.9 -> (0, 0):
    # += 2/3 * 1/3 -> 4/9. Label 2: 0.6 (a3) against 2: start (1, 1/2) -> += 1/2. Present: (4/9 + 1/2) / 2.
    out = eval_detection_folders(gt_dir, pred_dir, (0.5,), present_classes=True)[0.5]
    assert out["mAP_a"] == pytest.approx(17 / 36) and out["mAP_v"] == pytest.approx(3 / 8)


def test_reversed_ground_truth_is_kept_and_never_matched(folders, caplog):
    gt_dir, pred_dir = folders
    (gt_dir / "0003-M.txt").write_text("1,10,0,1\n2,5,15,1\n")  # instance b1 written end first
    with caplog.at_level("WARNING", logger="usdrl.tasks.detection_eval"):
        out = eval_detection_folders(gt_dir, pred_dir, (0.5,))[0.5]
    assert "0003-M.txt, line 1: start 10 > end 0; kept" in caplog.text
    # Video b: 0.5 no longer matches b1 (overlap (0 - 10) / 10): no proposal matched, AP 0; mAP_v 3/8.
    assert out["mAP_v"] == pytest.approx(3 / 8)
    assert read_detection_labels(gt_dir / "0003-M.txt") == [(1, 10.0, 0.0, 1.0), (2, 5.0, 15.0, 1.0)]


def test_missing_ground_truth_and_empty_folder(folders, tmp_path):
    gt_dir, pred_dir = folders
    (pred_dir / "0009-L.txt").write_text("1,0,10,0.5\n")
    with pytest.raises(DataFormatError, match="0009-L.txt: no ground-truth file"):
        eval_detection_folders(gt_dir, pred_dir)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataFormatError, match="no proposal files"):
        eval_detection_folders(gt_dir, empty)


def test_label_reader_rejects_float_scores(tmp_path):
    """Why proposals need their own reader: the label reader wants an integer confidence."""
    path = tmp_path / "p.txt"
    path.write_text("1,0,10,0.9\n")
    with pytest.raises(DataFormatError, match="confidence must be an integer"):
        read_pkummd_labels(path)
    assert read_detection_proposals(path) == [(1, 0.0, 10.0, 0.9)]


@pytest.mark.parametrize(("text", "message"), [
    ("1,0,10,0.5\n1,0,10\n", r"line 2: expected label,start,end,score, found 3 fields"),
    ("1.5,0,10,0.5\n", r"line 1: the label must be an integer"),
    ("-1,0,10,0.5\n", r"line 1: the label must be >= 0"),
    ("1,0,10,abc\n", r"line 1: the score must be a number"),
    ("1,0,10,nan\n", r"line 1: the score must be finite"),
    ("1,20,10,0.5\n", r"line 1: start 20 is after end 10"),
])
def test_bad_proposal_lines(tmp_path, text, message):
    path = tmp_path / "0002-L.txt"
    path.write_text(text)
    with pytest.raises(DataFormatError, match=message) as err:
        read_detection_proposals(path)
    assert "0002-L.txt" in str(err.value)


def test_proposal_reader_accepts_blank_trailing_lines_and_whitespace(tmp_path):
    path = tmp_path / "x.txt"
    path.write_text("3 5 9 1e-2\n0,1,1,1\n\n")
    assert read_detection_proposals(path) == [(3, 5.0, 9.0, 0.01), (0, 1.0, 1.0, 1.0)]


def test_cli_eval_detection(folders, capsys):
    assert main(["eval-detection", *map(str, folders), "--iou", "0.5", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert list(out) == ["0.5"] and out["0.5"] == pytest.approx(EXPECTED)
    assert out == {str(iou): values for iou, values in eval_detection_folders(*folders, [0.5]).items()}  # = Python
    assert main(["eval-detection", *map(str, folders), "--present-classes"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 5 and lines[-1] == "IoU 0.5: mAP_a 50.00  mAP_v 50.00  AP 53.33  F1 72.73"
    assert main(["eval-detection", str(folders[0]), str(folders[0] / "nowhere")]) == 1
    assert "nowhere: not a directory" in capsys.readouterr().err
