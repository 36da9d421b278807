"""The pretraining loop: outputs, exact resumption, the collapse guard, precision, DDP."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from usdrl import USDRL, ConfigError, USDRLConfig
from usdrl.data.synthetic import make_clips
from usdrl.train.pretrain import PretrainConfig, Pretrainer, TrainingDivergedError, latest_checkpoint

MODEL = USDRLConfig.from_preset("tiny", hidden_size=32, num_heads=1)


@pytest.fixture(scope="module")
def clips():
    synthetic = make_clips(24, seed=0)
    return synthetic.data, synthetic.lengths


def run(clips, run_dir, *, model=MODEL, resume=False, allow_changed_config=False, **changes):
    config = PretrainConfig(**{"epochs": 2, "batch_size": 8, "save_every": 1, **changes})
    trainer = Pretrainer(model, config, *clips, run_dir, resume=resume, allow_changed_config=allow_changed_config,
                         metadata={"dataset": "synthetic"}, show_progress_bar=False)
    return trainer, trainer.fit()


@pytest.fixture(scope="module")
def straight(clips, tmp_path_factory):
    """An uninterrupted 3-epoch run: ``(run folder, trained encoder)``."""
    run_dir = tmp_path_factory.mktemp("straight") / "run"
    return run_dir, run(clips, run_dir, epochs=3)[1]


def metrics(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_a_run_writes_checkpoints_metrics_and_a_loadable_model(clips, tmp_path):
    _, model = run(clips, tmp_path / "run")
    names = sorted(p.name for p in (tmp_path / "run").iterdir() if p.name != "tensorboard")
    assert names == ["checkpoint_0001.pt", "checkpoint_0001.pt.sha256", "checkpoint_0002.pt",
                     "checkpoint_0002.pt.sha256", "metrics.jsonl", "model"]
    lines = metrics(tmp_path / "run")
    assert [(m["epoch"], m["step"]) for m in lines] == [(0, 1), (0, 2), (0, 3), (1, 4), (1, 5), (1, 6)]
    assert all(np.isfinite(m["loss"]) and m["loss"] > 0 and m["lr"] == 5e-4 for m in lines)
    loaded = USDRL.from_pretrained(tmp_path / "run" / "model")
    assert loaded.config.dataset == "synthetic" and loaded.config.hidden_size == 32
    x = torch.randn(2, *MODEL.input_shape)
    torch.testing.assert_close(loaded.encode(x), model.encode(x))
    assert (tmp_path / "run" / "model" / "projectors.safetensors").is_file()


def test_a_subclass_chooses_the_encoder_it_pretrains(clips, tmp_path):
    # the hook a variant's benchmark uses (benchmarks/universal_design.py): the encoder it builds is the one trained
    built = []

    class Variant(Pretrainer):
        def _new_encoder(self, model_config):
            model = USDRL(model_config)
            model.encoder.temporal.embed = torch.nn.Sequential(model.encoder.temporal.embed, torch.nn.Tanh())
            built.append((model, model.encoder.temporal.embed[0][0].weight.detach().clone()))
            return model

    trained = Variant(MODEL, PretrainConfig(epochs=1, batch_size=8), *clips, tmp_path / "run",
                      show_progress_bar=False).fit()
    (model, initial), = built
    assert trained is model and isinstance(trained.encoder.temporal.embed[1], torch.nn.Tanh)
    assert not torch.equal(trained.encoder.temporal.embed[0][0].weight, initial)


def test_pretraining_lowers_the_loss(straight):
    # At initialisation the embeddings barely vary, so the variance term dominates; training spreads
    # them out. Each epoch's mean loss is below the previous one's, and the variance part falls too.
    lines = metrics(straight[0])
    by_epoch = [np.mean([m["loss"] for m in lines if m["epoch"] == e]) for e in range(3)]
    assert by_epoch[0] > by_epoch[1] > by_epoch[2]
    assert lines[-1]["loss"] < 0.99 * lines[0]["loss"] and lines[-1]["vac"] < lines[0]["vac"]


def test_metrics_also_go_to_tensorboard(clips, tmp_path):
    event_accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")
    run(clips, tmp_path / "run", epochs=1)
    events = event_accumulator.EventAccumulator(str(tmp_path / "run" / "tensorboard"))
    events.Reload()
    losses = [(e.step, e.value) for e in events.Scalars("loss")]
    expected = [(m["step"], m["loss"]) for m in metrics(tmp_path / "run")]
    assert [step for step, _ in losses] == [step for step, _ in expected] == [1, 2, 3]
    np.testing.assert_allclose([v for _, v in losses], [v for _, v in expected], rtol=1e-6)


def test_resuming_replays_the_uninterrupted_run(clips, straight, tmp_path):
    straight_dir, straight_model = straight
    run(clips, tmp_path / "resumed", epochs=2)
    _, resumed = run(clips, tmp_path / "resumed", epochs=3, resume=True)
    expected, got = metrics(straight_dir), metrics(tmp_path / "resumed")
    assert [m["step"] for m in got] == list(range(1, 10))
    np.testing.assert_allclose([m["loss"] for m in got], [m["loss"] for m in expected], rtol=1e-6)
    for (name, a), b in zip(straight_model.state_dict().items(), resumed.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, msg=name)


def test_a_run_killed_mid_epoch_resumes_from_its_last_checkpoint(clips, straight, tmp_path, monkeypatch):
    original = Pretrainer._train_step

    def killed_at_step_5(self, indices):
        if self.step == 4:  # in epoch 1, after checkpoint_0001 (step 3) and one logged step
            raise KeyboardInterrupt
        return original(self, indices)

    monkeypatch.setattr(Pretrainer, "_train_step", killed_at_step_5)
    with pytest.raises(KeyboardInterrupt):
        run(clips, tmp_path / "killed", epochs=3)
    assert latest_checkpoint(tmp_path / "killed").name == "checkpoint_0001.pt"
    assert [m["step"] for m in metrics(tmp_path / "killed")] == [1, 2, 3, 4]
    monkeypatch.setattr(Pretrainer, "_train_step", original)
    run(clips, tmp_path / "killed", epochs=3, resume=True)
    np.testing.assert_allclose([m["loss"] for m in metrics(tmp_path / "killed")],
                               [m["loss"] for m in metrics(straight[0])], rtol=1e-6)


def test_the_collapse_guard_stops_and_keeps_the_last_checkpoint(clips, tmp_path):
    run(clips, tmp_path / "run", epochs=1)
    before = (tmp_path / "run" / "checkpoint_0001.pt").read_bytes()
    with pytest.raises(TrainingDivergedError, match="above max_loss=1e-09.*last good checkpoint"):
        run(clips, tmp_path / "run", epochs=2, resume=True, max_loss=1e-9)
    assert (tmp_path / "run" / "checkpoint_0001.pt").read_bytes() == before
    assert latest_checkpoint(tmp_path / "run").name == "checkpoint_0001.pt"


def test_run_folder_rules(clips, tmp_path):
    with pytest.raises(ConfigError, match="nothing to resume"):
        run(clips, tmp_path / "empty", resume=True)
    run(clips, tmp_path / "run", epochs=1)
    with pytest.raises(ConfigError, match="already holds checkpoint_0001.pt"):
        run(clips, tmp_path / "run", epochs=1)
    with pytest.raises(ConfigError, match="precision must be"):
        PretrainConfig(precision="int8")


def test_bf16_and_grad_checkpointing(clips, tmp_path):
    trainer, _ = run(clips, tmp_path / "bf16", epochs=1, precision="bf16", grad_checkpointing=True, grad_clip=1.0)
    lines = metrics(tmp_path / "bf16")
    assert all(np.isfinite(m["loss"]) and m["grad_norm"] >= 0 for m in lines)
    assert all(layer.grad_checkpointing for layer in trainer.module.model.encoder.temporal.layers)


def test_multimodal_pretraining(clips, tmp_path):
    _, model = run(clips, tmp_path / "multi", model=MODEL.replace(modality="multi"), epochs=1)
    assert model.config.modality == "multi"
    assert all(np.isfinite(m["loss"]) for m in metrics(tmp_path / "multi"))


def test_two_processes_with_torchrun(clips, tmp_path):
    np.save(tmp_path / "data.npy", clips[0])
    np.save(tmp_path / "num_frames.npy", clips[1])
    script = tmp_path / "train.py"
    script.write_text(textwrap.dedent(f"""
        import sys, numpy as np, torch
        from usdrl import USDRLConfig
        from usdrl.train.pretrain import PretrainConfig, Pretrainer
        torch.set_num_threads(1)
        model = USDRLConfig.from_preset("tiny", hidden_size=32, num_heads=1)
        config = PretrainConfig(epochs=int(sys.argv[1]), batch_size=8, save_every=1)
        data = np.load({str(tmp_path / "data.npy")!r}, mmap_mode="r")
        frames = np.load({str(tmp_path / "num_frames.npy")!r})
        Pretrainer(model, config, data, frames, {str(tmp_path / "run")!r}, resume=sys.argv[2] == "resume",
                   show_progress_bar=False).fit()
    """))
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(script)]
    env = {k: v for k, v in os.environ.items() if k not in ("WORLD_SIZE", "RANK", "LOCAL_RANK")}
    for epochs, mode in (("1", "new"), ("2", "resume")):
        result = subprocess.run(command + [epochs, mode], capture_output=True, text=True, timeout=300, env=env)
        assert result.returncode == 0, result.stderr[-3000:]
    assert [m["step"] for m in metrics(tmp_path / "run")] == [1, 2, 3, 4, 5, 6]
    assert latest_checkpoint(tmp_path / "run").name == "checkpoint_0002.pt"
    assert USDRL.from_pretrained(tmp_path / "run" / "model").config.hidden_size == 32


def test_cli_prepare_then_pretrain_then_resume(tmp_path, capsys):
    from usdrl.cli import main
    from usdrl.data.synthetic_files import write_synthetic_ntu

    write_synthetic_ntu(tmp_path / "raw", 40, seed=0)
    assert main(["prepare", "ntu60", str(tmp_path / "raw"), str(tmp_path / "prepared"), "--benchmark", "xsub",
                 "--workers", "1"]) == 0
    settings = tmp_path / "settings.json"
    settings.write_text(json.dumps({"model": {"hidden_size": 32, "num_heads": 1},
                                    "pretrain": {"augment": {"shear_range": 0.5}}}))
    common = ["pretrain", "--data", str(tmp_path / "prepared"), "--out", str(tmp_path / "run"), "--config",
              str(settings), "--preset", "tiny", "--batch-size", "8", "--save-every", "1"]
    assert main(common + ["--epochs", "1"]) == 0
    assert main(common + ["--epochs", "1"]) == 1  # the folder holds a run: --resume or another folder
    assert "pass --resume to continue it" in capsys.readouterr().err
    assert main(common + ["--epochs", "2", "--resume"]) == 0
    assert "after 2 epochs" in capsys.readouterr().out
    lines = metrics(tmp_path / "run")
    assert lines[-1]["epoch"] == 1 and {"epoch", "step", "loss"} <= set(lines[0])
    model = USDRL.from_pretrained(tmp_path / "run" / "model")
    assert (model.config.dataset, model.config.protocol, model.config.hidden_size) == ("ntu60", "xsub", 32)
    checkpoint = torch.load(latest_checkpoint(tmp_path / "run"), weights_only=True)
    assert checkpoint["config"]["augment"]["shear_range"] == 0.5

    (tmp_path / "bad.json").write_text("{not json")
    assert main(["pretrain", "--data", str(tmp_path / "prepared"), "--out", str(tmp_path / "run2"),
                 "--config", str(tmp_path / "bad.json")]) == 1
    assert "not valid JSON" in capsys.readouterr().err


def test_cli_pretrain_help_documents_every_option(capsys):
    from usdrl.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(["pretrain", "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for option in ("--data", "--out", "--config", "--preset", "--modality", "--epochs", "--batch-size",
                   "--save-every", "--seed", "--resume", "--allow-changed-config", "--precision",
                   "--grad-checkpointing", "torchrun"):
        assert option in text
