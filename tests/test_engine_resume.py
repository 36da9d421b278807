"""Every training command, interrupted mid-epoch and resumed, ends exactly as an uninterrupted run; Python = --json.

Each command runs three epochs with a checkpoint every two: the interrupted run stops in the
third epoch (after its first metrics line there, so the resume must also drop the lines the
killed run wrote after its checkpoint), resumes from ``checkpoint_0002.pt`` and must write the
same ``metrics.jsonl`` (every loss, bit for bit), print the same result and save the same weights
as the straight run. (``usdrl pretrain``'s SIGKILL test is in test_resume_hardening.py.)
"""

import json

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


def python_run(name: str, folders, run_dir):
    """The one library call that ``command(name, folders, run_dir)`` makes, as a Python user writes it."""
    from usdrl.engine import RunOptions
    from usdrl.tasks.detection import DetectionConfig, ReferenceDetectionConfig, detect, segment
    from usdrl.tasks.finetune import FinetuneConfig, finetune
    from usdrl.tasks.recognition import ProbeConfig, linear_probe

    encoder, run = folders["encoder"], RunOptions(run_dir, device="cpu", save_every=2)
    if name == "linear-probe":
        return linear_probe(encoder, folders["ntu60"], config=ProbeConfig(lr=0.05, epochs=3, batch_size=8), run=run)
    if name.startswith("finetune"):
        fp16 = name == "finetune-fp16"
        return finetune(encoder, folders["ntu60"], config=FinetuneConfig(epochs=3, batch_size=8),
                        fraction=1.0 if fp16 else 0.5, run=RunOptions(run_dir, device="cpu", save_every=2,
                                                                       precision="fp16" if fp16 else None))
    if name.startswith("detect"):
        train = (ReferenceDetectionConfig if name == "detect-reference" else FinetuneConfig)(epochs=3, batch_size=4)
        return detect(encoder, folders["pkummd1"], config=DetectionConfig(stride=32), out_dir=f"{run_dir}-proposals",
                      train=train, run=run)
    return segment(encoder, folders["pkummd2"], config=DetectionConfig(stride=32),
                   train=FinetuneConfig(epochs=3, batch_size=4), run=run)


@pytest.mark.parametrize("name", ["linear-probe", "finetune", "finetune-fp16", "detect", "detect-reference",
                                  "segment"])
def test_one_python_call_gives_the_json_result_and_the_saved_model_of_the_command(name, folders, tmp_path, capsys):
    assert main(command(name, folders, tmp_path / "cli")) == 0
    printed = result_of(capsys)
    result = python_run(name, folders, tmp_path / "python").to_json()
    result.pop("out", None)
    assert result == printed
    got, want = (load_file(folder / "model.safetensors") for folder in (tmp_path / "python", tmp_path / "cli"))
    assert want.keys() == got.keys() and all(torch.equal(got[k], want[k]) for k in want)
    assert USDRL.from_pretrained(tmp_path / "python").config == USDRL.from_pretrained(tmp_path / "cli").config
    if name.startswith("detect"):  # the same proposal files
        files = sorted(p.name for p in (tmp_path / "cli-proposals").iterdir())
        assert files and files == sorted(p.name for p in (tmp_path / "python-proposals").iterdir())
        assert all((tmp_path / "cli-proposals" / f).read_text() == (tmp_path / "python-proposals" / f).read_text()
                   for f in files)


def test_evaluation_commands_print_what_their_python_call_returns(folders, tmp_path, capsys, monkeypatch):
    from usdrl.tasks.early import early_prediction
    from usdrl.tasks.finetune import ensemble_evaluation
    from usdrl.tasks.retrieval import knn_evaluation

    encoder, ntu = str(folders["encoder"]), str(folders["ntu60"])
    assert main(command("linear-probe", folders, tmp_path / "probed")) == 0
    probed = str(tmp_path / "probed")
    capsys.readouterr()
    runs = [
        (["knn", encoder, "--data", ntu, "-k", "3", "--json"], lambda: knn_evaluation(encoder, ntu, k=3)),
        (["early-prediction", probed, "--data", ntu, "--ratio", "0.5", "--ratio", "1", "--json"],
         lambda: early_prediction(probed, ntu, ratios=(0.5, 1.0))),
        (["ensemble", probed, probed, "--data", ntu, "--json"], lambda: ensemble_evaluation([probed, probed], ntu)),
    ]
    for argv, call in runs:
        assert main(argv) == 0, argv
        printed = json.loads(capsys.readouterr().out)
        assert call().to_json() == printed, argv
    monkeypatch.setenv("RANK", "1")      # another process of a torchrun: it computes, rank 0 alone prints
    for argv, _ in runs:
        assert main(argv) == 0, argv
        assert capsys.readouterr().out == "", argv
    monkeypatch.delenv("RANK")
    # the figures are the tasks' own: an ensemble of one model twice scores as that model
    ensemble = ensemble_evaluation([probed, probed], ntu).top1
    assert ensemble["ensemble"] == ensemble[f"{probed} (joint)"]
    early = early_prediction(probed, ntu, ratios=(1.0,))
    assert early.accuracy[1.0] == pytest.approx(ensemble["ensemble"], abs=1e-12)  # the whole clips: its test top-1
