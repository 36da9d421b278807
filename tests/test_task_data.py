"""What a task's ``data`` may be (the data package resolves it once), ``SkeletonDataset.for_model``, and
``usdrl pretrain`` = ``Pretrainer.from_prepared(...).fit()``."""

import json

import numpy as np
import pytest
import torch
from data_helpers import prepare_synthetic
from safetensors.torch import load_file

from usdrl import USDRL, ConfigError, USDRLConfig
from usdrl.cli import main
from usdrl.data.prepared import SkeletonDataset, open_split, resolve_split
from usdrl.tasks.recognition import ProbeConfig, linear_probe


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    return prepare_synthetic(tmp_path_factory.mktemp("task-data"), "ntu60", 40)[1]


def test_a_dataset_folder_needs_a_split_and_a_split_folder_names_its_own(prepared, tmp_path):
    assert resolve_split(prepared, "test") == (prepared, "test")
    assert resolve_split(prepared / "test") == (prepared, "test")
    assert resolve_split(prepared / "test", "train") == (prepared, "test")   # the split folder wins
    with pytest.raises(ConfigError, match="is a prepared dataset of splits train, test: name one with split$"):
        resolve_split(prepared)
    with pytest.raises(ConfigError, match="expected a prepared dataset folder"):
        resolve_split(tmp_path)


def test_open_split_takes_every_form_of_data(prepared):
    by_folder = open_split(prepared, "test", num_frames=16)
    assert (by_folder.path, by_folder.num_frames) == (prepared / "test", 16)
    assert open_split((prepared, "train")).split == "train"
    assert open_split(prepared / "train", "test").split == "train"
    assert open_split(by_folder, "train") is by_folder                   # a dataset object is used as given
    subset = torch.utils.data.Subset(by_folder, [0])
    assert open_split(subset) is subset
    with pytest.raises(ConfigError, match=r"expected data as \(prepared folder, split name\)"):
        open_split((prepared, "train", "test"))
    with pytest.raises(ConfigError, match="got int"):
        open_split(3, "train")


def test_for_model_samples_at_the_models_frames_and_checks_its_config(prepared):
    model = USDRL(USDRLConfig.from_preset("tiny", num_frames=24, num_classes=60))
    dataset = SkeletonDataset.for_model(prepared, "train", model)
    assert dataset.num_frames == 24 and dataset[0][0].shape == (3, 24, 25, 2)
    np.testing.assert_array_equal(dataset[1][0], SkeletonDataset(prepared, "train", num_frames=24)[1][0])
    assert SkeletonDataset.for_model(prepared / "test", None, model.config).split == "test"   # a config does too
    five = USDRL(USDRLConfig.from_preset("tiny", num_frames=24, num_classes=5))
    with pytest.raises(ConfigError, match="num_classes 5 in the config, 60 in the data"):
        SkeletonDataset.for_model(prepared, "train", five)
    assert SkeletonDataset.for_model(prepared, "train", five, head=False).num_classes == 60
    uav = USDRL(USDRLConfig.from_preset("tiny", layout="uav17"))
    with pytest.raises(ConfigError, match="layout 'uav17' in the config, 'ntu25' in the data"):
        open_split(prepared, "train", model=uav, head=False)


def test_a_probe_on_a_folder_equals_the_probe_on_its_datasets(prepared):
    torch.manual_seed(0)
    encoder = USDRL(USDRLConfig.from_preset("tiny", hidden_size=32, num_heads=1, num_frames=16))
    config = ProbeConfig(lr=0.05, epochs=3, batch_size=8)
    twin = USDRL(encoder.config)
    twin.load_state_dict(encoder.state_dict())
    by_folder = linear_probe(encoder, prepared, config=config)
    by_pair = linear_probe(twin, (SkeletonDataset(prepared, "train", num_frames=16),
                                  SkeletonDataset(prepared / "test", num_frames=16)), config=config)
    assert by_folder.to_json() == by_pair.to_json()
    assert by_folder.train_clips == len(SkeletonDataset(prepared, "train"))
    assert torch.equal(encoder.head.weight, twin.head.weight)
    assert encoder.config.protocol == "linear probe on ntu60 xsub"
    with pytest.raises(TypeError):   # the old form linear_probe(model, train, test) is gone: a pair now
        linear_probe(encoder, prepared, prepared, config=config)
    with pytest.raises(ConfigError, match="train_crop crops the training split of a prepared dataset folder"):
        linear_probe(encoder, (prepared / "train", prepared / "test"), train_crop=0.5)


def test_usdrl_pretrain_is_one_python_call(prepared, tmp_path, capsys):
    from usdrl.train.pretrain import Pretrainer

    settings = tmp_path / "settings.json"
    settings.write_text(json.dumps({"model": {"drop_path": 0.0}, "pretrain": {"loss": {"sim_weight": 4.0}}}))
    assert main(["pretrain", "--data", str(prepared), "--out", str(tmp_path / "cli"), "--preset", "tiny",
                 "--config", str(settings), "--modality", "bone", "--epochs", "1", "--batch-size", "8",
                 "--device", "cpu"]) == 0
    steps = len(SkeletonDataset(prepared, "train")) // 8
    assert capsys.readouterr().out == f"wrote {tmp_path / 'cli' / 'model'} after 1 epochs ({steps} steps)\n"
    trainer = Pretrainer.from_prepared(prepared / "train", tmp_path / "python", preset="tiny", settings=settings,
                                       modality="bone", overrides={"epochs": 1, "batch_size": 8, "lr": None},
                                       device="cpu")
    assert (trainer.config.loss.sim_weight, trainer.config.epochs, trainer.config.lr) == (4.0, 1, 5e-4)
    trainer.fit()
    cli, python = (USDRL.from_pretrained(tmp_path / run / "model") for run in ("cli", "python"))
    assert cli.config == python.config
    assert (python.config.modality, python.config.drop_path, python.config.hidden_size) == ("bone", 0.0, 64)
    assert (python.config.dataset, python.config.protocol) == ("ntu60", "xsub")
    got, want = (load_file(tmp_path / run / "model" / "model.safetensors") for run in ("python", "cli"))
    assert want.keys() == got.keys() and all(torch.equal(got[k], want[k]) for k in want)
    with pytest.raises(ConfigError, match="unknown sections"):
        Pretrainer.from_prepared(prepared, tmp_path / "bad", settings={"modle": {}})
