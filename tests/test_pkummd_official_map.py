"""``eval-detection`` on random official-format folders equals a transcription of the official PKU-MMD script.

The transcription below follows the latest ``evaluate.py`` of ECHO960/PKU-MMD (and the TPAMI
release's ``scripts/cal_mAP.py``, which reproduces it) step by step, in plain lists: files read
as floats with the video name appended, overlaps not clipped, each proposal walking the whole
ground list and comparing with ``ground[-1]`` before it has a match, the sweep from the whole
list's precision and recall. Videos are taken in name order (the script takes ``os.listdir``'s).
"""

import json
import os
import random

import pytest

from usdrl.cli import main
from usdrl.tasks import eval_detection_folders

NUMBER_LABEL = 52
THRESHOLDS = (0.0, 0.1, 0.3, 0.5, 0.7)


def _rows(path, video):
    with open(path) as file:
        return [[float(x) for x in line.replace(",", " ").split()] + [video] for line in file]


def _overlap(prop, ground):
    if int(prop[0]) != int(ground[0]) or prop[4] != ground[4]:
        return 0
    return (min(prop[2], ground[2]) - max(prop[1], ground[1])) / (max(prop[2], ground[2]) - min(prop[1], ground[1]))


def _match(props, grounds, theta):
    picks, hits = [], [0] * len(grounds)
    for prop in props:
        pick = -1
        for y, ground in enumerate(grounds):
            if int(ground[0]) != int(prop[0]):
                continue
            if _overlap(prop, ground) < theta or _overlap(prop, ground) < _overlap(prop, grounds[pick]):
                continue
            pick = y
        if pick != -1:
            hits[pick] += 1
        picks.append(pick)
    return picks, hits


def _pr(positive, proposals, grounds):
    if proposals == 0 or grounds == 0:
        return 0, 0
    return positive / proposals, positive / grounds


def _ap(props, grounds, theta):
    props = sorted(props, key=lambda prop: prop[3])
    picks, hits = _match(props, grounds, theta)
    positive, left = sum(h > 0 for h in hits), len(props)
    best, recall = _pr(positive, left, len(grounds))
    score = 0
    for pick in picks:
        left -= 1
        if pick == -1:
            continue
        hits[pick] -= 1
        if hits[pick] == 0:
            positive -= 1
        precision, new_recall = _pr(positive, left, len(grounds))
        if precision > best:
            best = precision
        score += best * (recall - new_recall)
        recall = new_recall
    return score


def _f1(props, grounds, theta):
    _, hits = _match(props, grounds, theta)
    precision, recall = _pr(sum(h > 0 for h in hits), len(props), len(grounds))
    return 2 * precision * recall / (precision + recall) if precision + recall else 0


def official_scores(gt_dir, pred_dir, theta):
    videos = sorted(os.listdir(pred_dir))
    v_props = [_rows(os.path.join(pred_dir, v), v) for v in videos]
    v_grounds = [_rows(os.path.join(gt_dir, v), v) for v in videos]
    a_props = [[row for rows in v_props for row in rows if int(row[0]) == c] for c in range(NUMBER_LABEL)]
    a_grounds = [[row for rows in v_grounds for row in rows if int(row[0]) == c] for c in range(NUMBER_LABEL)]
    all_props, all_grounds = sum(a_props, []), sum(a_grounds, [])
    return {
        "mAP_a": sum(_ap(a_props[c], a_grounds[c], theta) for c in range(1, NUMBER_LABEL)) / (NUMBER_LABEL - 1),
        "mAP_v": sum(_ap(p, g, theta) for p, g in zip(v_props, v_grounds, strict=True)) / len(v_props),
        "AP": _ap(all_props, all_grounds, theta),
        "F1": _f1(all_props, all_grounds, theta),
    }


def _random_folders(root, seed):
    """Official-format folders: integer label files (one with a line written end first, one empty, one
    without a proposal file) and proposals near the instances (jittered, duplicated, mislabelled,
    label 0, tied scores) plus false alarms; one proposal file empty."""
    rnd = random.Random(seed)
    gt_dir, pred_dir = root / "gt", root / "pred"
    gt_dir.mkdir()
    pred_dir.mkdir()
    labels = rnd.sample(range(1, NUMBER_LABEL), 6)  # few labels, so they pool across videos
    for v in range(9):
        name = f"{v:04d}-{'LMR'[v % 3]}.txt"
        instances = []
        for _ in range(0 if v == 3 else rnd.randint(2, 7)):
            start = rnd.randint(0, 3000)
            instances.append([rnd.choice(labels), start, start + rnd.randint(20, 200), rnd.randint(1, 2)])
        if v == 1:
            instances[0][1], instances[0][2] = instances[0][2], instances[0][1]
        (gt_dir / name).write_text("".join(",".join(map(str, i)) + "\n" for i in instances))
        if v == 8:
            continue  # ground truth without a proposal file
        proposals = []
        for label, start, end, _ in [] if v == 5 else instances:
            for _ in range(rnd.choice([0, 1, 1, 2, 3])):
                s, e = sorted((start + rnd.randint(-40, 40), end + rnd.randint(-40, 40)))
                label = label if rnd.random() < 0.8 else rnd.choice([0, *labels])
                proposals.append((label, s, e + 1, round(rnd.random(), 2)))
        for _ in range(0 if v == 5 else rnd.randint(0, 4)):
            start = rnd.randint(0, 3000)
            proposals.append((rnd.choice([0, *labels]), start, start + rnd.randint(5, 150), round(rnd.random(), 2)))
        rnd.shuffle(proposals)
        (pred_dir / name).write_text("".join(f"{a},{b},{c},{d}\n" for a, b, c, d in proposals))
    return gt_dir, pred_dir


@pytest.mark.parametrize("seed", range(6))
def test_random_folders_equal_the_official_script(tmp_path, seed):
    gt_dir, pred_dir = _random_folders(tmp_path, seed)
    out = eval_detection_folders(gt_dir, pred_dir, THRESHOLDS)
    for theta in THRESHOLDS:
        assert out[theta] == official_scores(gt_dir, pred_dir, theta)  # the same operations: equal to the bit


def test_cli_json_equals_the_official_script(tmp_path, capsys):
    gt_dir, pred_dir = _random_folders(tmp_path, 11)
    assert main(["eval-detection", str(gt_dir), str(pred_dir), "--iou", "0.5", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out == {"0.5": official_scores(gt_dir, pred_dir, 0.5)}
