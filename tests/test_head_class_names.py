"""A head trained on a prepared dataset takes the class names of its manifest (``usdrl prepare folder``
keeps the user's names), so saved models and reports name the classes instead of numbering them."""

import numpy as np
import torch

from usdrl import USDRL, USDRLConfig
from usdrl.cli import main
from usdrl.data.prepared import SkeletonDataset, head_class_names


def _prepared(tmp_path):
    """A tiny COCO-17 folder dataset: 8 clips, classes 'wave' (sorted after 'drink'), ratio split."""
    raw = tmp_path / "raw"
    base = np.array([[50, 10], [52, 8], [48, 8], [54, 9], [46, 9], [60, 25], [40, 25], [62, 40], [38, 40],
                     [63, 55], [37, 55], [56, 60], [44, 60], [56, 80], [44, 80], [56, 100], [44, 100]], np.float32)
    rng = np.random.default_rng(0)
    for k in range(8):
        label = ("wave", "drink")[k % 2]
        xy = base[None] + rng.normal(0, 2, (20, 17, 2)).astype(np.float32) + (k % 2) * 10
        (raw / label).mkdir(parents=True, exist_ok=True)
        np.save(raw / label / f"clip{k}.npy", np.concatenate([xy, np.full((20, 17, 1), 0.9, np.float32)], -1))
    assert main(["prepare", "folder", str(raw), str(tmp_path / "prepared"), "--format", "coco17",
                 "--image-size", "100", "120", "--test-ratio", "0.5", "--workers", "1"]) == 0
    return tmp_path / "prepared"


def _encoder(path, **names):
    torch.manual_seed(0)
    config = USDRLConfig.from_preset("tiny", layout="coco17", hidden_size=16, num_heads=1, num_frames=16, **names)
    USDRL(config).save_pretrained(path)
    return path


def test_probe_and_finetune_take_the_manifests_class_names(tmp_path, capsys):
    data = _prepared(tmp_path)
    assert SkeletonDataset(data, "train", num_frames=16).class_names == ["drink", "wave"]  # sorted sub-folders
    plain = _encoder(tmp_path / "plain")
    # a model whose config names 3 other classes: a fresh head for the data's 2 classes gets the data's names
    named = _encoder(tmp_path / "named", num_classes=3, class_names=["a", "b", "c"])
    capsys.readouterr()
    assert main(["linear-probe", str(plain), "--data", str(data), "--epochs", "2", "--out", str(tmp_path / "probed"),
                 "--confusion", str(tmp_path / "confusion.csv"), "--json"]) == 0
    assert USDRL.from_pretrained(tmp_path / "probed").config.class_names == ["drink", "wave"]
    lines = (tmp_path / "confusion.csv").read_text().splitlines()
    assert lines[0] == "true \\ predicted,drink,wave"
    assert [line.split(",")[0] for line in lines[1:]] == ["drink", "wave"]
    assert main(["finetune", str(named), "--data", str(data), "--epochs", "1", "--batch-size", "4",
                 "--out", str(tmp_path / "tuned"), "--json"]) == 0
    tuned = USDRL.from_pretrained(tmp_path / "tuned").config
    assert (tuned.num_classes, tuned.class_names) == (2, ["drink", "wave"])


def test_names_given_win_and_a_mismatched_count_gives_none(tmp_path):
    data = _prepared(tmp_path)
    train = SkeletonDataset(data, "train", num_frames=16)
    assert head_class_names(torch.utils.data.Subset(train, [0]), 2) == ["drink", "wave"]
    assert head_class_names(train, 3) is None
    assert head_class_names(torch.utils.data.TensorDataset(torch.zeros(2)), 2) is None
    from usdrl.tasks.recognition import ProbeConfig, linear_probe

    model = USDRL.from_pretrained(_encoder(tmp_path / "enc"))
    test = SkeletonDataset(data, "test", num_frames=16)
    linear_probe(model, (train, test), num_classes=2, config=ProbeConfig(epochs=1), class_names=["mine", "yours"])
    assert model.config.class_names == ["mine", "yours"]
