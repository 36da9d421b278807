"""Every training command, interrupted mid-epoch and resumed, ends exactly as an uninterrupted run; Python = --json.

Each command runs three epochs with a checkpoint every two: the interrupted run stops in the
third epoch (after its first metrics line there, so the resume must also drop the lines the
killed run wrote after its checkpoint), resumes from ``checkpoint_0002.pt`` and must write the
same ``metrics.jsonl`` (every loss, bit for bit), print the same result and save the same weights
as the straight run. (``usdrl pretrain``'s SIGKILL test is in test_resume_hardening.py.)
"""

import json
from dataclasses import asdict

import pytest
import torch
from data_helpers import prepare_synthetic
from safetensors.torch import load_file

from usdrl import USDRL, USDRLConfig
from usdrl._checkpoint import load_checkpoint
from usdrl.cli import main
from usdrl.engine import TrainingRun


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """A tiny encoder and prepared NTU-60, PKU-MMD I and II datasets."""
    root = tmp_path_factory.mktemp("engine")
    torch.manual_seed(0)
    USDRL(USDRLConfig.from_preset("tiny", hidden_size=32, num_heads=1)).save_pretrained(root / "encoder")
    return {"encoder": root / "encoder", **{source: prepare_synthetic(root / source, source, count)[1]
                                            for source, count in (("ntu60", 60), ("pkummd1", 6), ("pkummd2", 6))}}


def command(name: str, folders, run_dir) -> list[str]:
    encoder = str(folders["encoder"])
    common = ["--save-every", "2", "--device", "cpu", "--json"]
    return {
        "linear-probe": ["linear-probe", encoder, "--data", str(folders["ntu60"]), "--epochs", "3", "--batch-size",
                         "8", "--lr", "0.05", "--out", str(run_dir)],
        "finetune": ["finetune", encoder, "--data", str(folders["ntu60"]), "--epochs", "3", "--batch-size", "8",
                     "--fraction", "0.5", "--out", str(run_dir)],
        "finetune-fp16": ["finetune", encoder, "--data", str(folders["ntu60"]), "--epochs", "3", "--batch-size",
                          "8", "--precision", "fp16", "--out", str(run_dir)],  # the loss scaler's state resumes too
        "detect": ["detect", encoder, "--data", str(folders["pkummd1"]), "--out", str(run_dir) + "-proposals",
                   "--train-epochs", "3", "--batch-size", "4", "--stride", "32", "--save-model", str(run_dir)],
        "detect-reference": ["detect", encoder, "--data", str(folders["pkummd1"]), "--out",
                             str(run_dir) + "-proposals", "--recipe", "reference", "--train-epochs", "3",
                             "--batch-size", "4", "--stride", "32", "--save-model", str(run_dir)],
        "segment": ["segment", encoder, "--data", str(folders["pkummd2"]), "--train-epochs", "3", "--batch-size",
                    "4", "--stride", "32", "--save-model", str(run_dir)],
    }[name] + common


def result_of(capsys) -> dict:
    result = json.loads(capsys.readouterr().out)
    result.pop("out", None)  # the proposals folder differs between the runs
    return result


@pytest.mark.parametrize("name", ["linear-probe", "finetune", "finetune-fp16", "detect", "detect-reference",
                                  "segment"])
def test_an_interrupted_run_resumes_to_the_same_losses_result_and_weights(name, folders, tmp_path, capsys,
                                                                          monkeypatch):
    assert main(command(name, folders, tmp_path / "straight")) == 0
    straight = result_of(capsys)

    log = TrainingRun.log

    def interrupted_log(self, record):
        log(self, record)
        if self.epoch == 2:  # the third epoch's first line is written: Ctrl-C
            raise KeyboardInterrupt

    monkeypatch.setattr(TrainingRun, "log", interrupted_log)
    assert main(command(name, folders, tmp_path / "run")) == 130
    left = sorted(p.name for p in (tmp_path / "run").iterdir())
    assert "checkpoint_0002.pt" in left and "checkpoint_0003.pt" not in left, left
    steps = [json.loads(line)["step"] for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert max(steps) > load_checkpoint(tmp_path / "run" / "checkpoint_0002.pt")["step"]  # lines to replay
    monkeypatch.setattr(TrainingRun, "log", log)

    assert main(command(name, folders, tmp_path / "run") + ["--resume"]) == 0
    assert result_of(capsys) == straight
    expected = (tmp_path / "straight" / "metrics.jsonl").read_text()
    assert (tmp_path / "run" / "metrics.jsonl").read_text() == expected
    got, want = (load_file(folder / "model.safetensors") for folder in (tmp_path / "run", tmp_path / "straight"))
    assert want.keys() == got.keys() and all(torch.equal(got[k], want[k]) for k in want)


def test_a_run_folder_is_not_overwritten_and_resume_needs_one(folders, tmp_path, capsys):
    args = command("linear-probe", folders, tmp_path / "probe")
    assert main(args) == 0
    capsys.readouterr()
    assert main(args) == 1
    assert "already holds checkpoint_0003.pt: pass --resume to continue it" in capsys.readouterr().err
    assert main(command("finetune", folders, tmp_path / "empty") + ["--resume"]) == 1
    assert "nothing to resume" in capsys.readouterr().err


def test_a_resume_with_a_changed_learning_rate_is_refused(folders, tmp_path, capsys):
    args = command("finetune", folders, tmp_path / "tune")
    assert main(args) == 0
    capsys.readouterr()
    assert main(args + ["--resume", "--lr", "0.01"]) == 1
    assert "lr: 0.0005 in the checkpoint, 0.01 now" in capsys.readouterr().err


def test_python_and_json_results_are_equal(folders, tmp_path, capsys):
    from usdrl.data.prepared import SkeletonDataset
    from usdrl.engine import RunOptions
    from usdrl.tasks.finetune import FinetuneConfig, finetune, labelled_subset
    from usdrl.tasks.recognition import ProbeConfig, linear_probe, probe_datasets

    def as_json(result) -> dict:
        return json.loads(json.dumps({k: v for k, v in asdict(result).items() if k != "confusion"}))

    assert main(command("linear-probe", folders, tmp_path / "cli-probe")) == 0
    model = USDRL.from_pretrained(folders["encoder"])
    train, test = probe_datasets(folders["ntu60"], num_frames=model.config.num_frames)
    result = linear_probe(model, train, test, num_classes=train.num_classes,
                          config=ProbeConfig(lr=0.05, epochs=3, batch_size=8),
                          run=RunOptions(tmp_path / "py-probe", device="cpu", save_every=2))
    assert as_json(result) == result_of(capsys)

    assert main(command("finetune", folders, tmp_path / "cli-tune")) == 0
    model = USDRL.from_pretrained(folders["encoder"])
    train = SkeletonDataset(folders["ntu60"], "train", sampling="random_crop", num_frames=model.config.num_frames,
                            seed=0)
    test = SkeletonDataset(folders["ntu60"], "test", num_frames=model.config.num_frames)
    subset = torch.utils.data.Subset(train, labelled_subset(train.labels, 0.5).tolist())
    result = finetune(model, subset, test, num_classes=train.num_classes,
                      config=FinetuneConfig(epochs=3, batch_size=8),
                      run=RunOptions(tmp_path / "py-tune", device="cpu", save_every=2))
    assert {**as_json(result), "train_clips": len(subset)} == result_of(capsys)

    from usdrl.tasks.detection import evaluate_segmentation, train_detector

    assert main(command("segment", folders, tmp_path / "cli-segment")) == 0
    model = USDRL.from_pretrained(folders["encoder"])
    windows = SkeletonDataset(folders["pkummd2"], "train_untrimmed", sampling="windows",
                              num_frames=model.config.num_frames, window_stride=32)
    train_detector(model, windows, num_classes=windows.num_classes, smoothing=0.15,
                   config=FinetuneConfig(epochs=3, batch_size=4),
                   run=RunOptions(tmp_path / "py-segment", device="cpu", save_every=2))
    metrics = evaluate_segmentation(model, folders["pkummd2"], stride=32)
    printed = result_of(capsys)
    assert {name: printed[name] for name in metrics} == {name: value / 100 for name, value in metrics.items()}
