"""The training engine (device, precision, schedules, sampler, RNG state, guard) and the timm head contract."""

import json
import random
import subprocess
import sys

import numpy as np
import pytest
import torch

import usdrl.precision as precision_module
from usdrl import USDRL, ConfigError, TrainingDivergedError, USDRLConfig
from usdrl.engine import (
    EpochSampler,
    GlobalBatchSampler,
    RunOptions,
    StepFactor,
    TrainingRun,
    WarmupCosineFactor,
    _resume_schedule,
    _rng_state,
    _set_rng_state,
    resolve_device,
    resolve_precision,
    step_schedule,
    warmup_cosine_schedule,
)
from usdrl.precision import MachineInfo


def test_the_engine_sits_below_train_and_tasks_and_import_usdrl_stays_light():
    code = ("import sys, usdrl; light = sorted(m for m in sys.modules if m.startswith('usdrl'));"
            "import usdrl.engine; engine = sorted(m for m in sys.modules if m.startswith('usdrl'));"
            "import json; print(json.dumps([light, engine]))")
    light, engine = json.loads(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                              check=True).stdout)
    assert "usdrl.engine" not in light and "usdrl.train" not in light and "usdrl.tasks" not in light
    assert not [m for m in engine if m.startswith(("usdrl.train", "usdrl.tasks", "usdrl.data"))]


def test_devices_resolve_or_say_what_is_missing():
    assert resolve_device("cpu") == torch.device("cpu")
    if not torch.cuda.is_available() and not torch.backends.mps.is_available():
        assert resolve_device("auto") == resolve_device(None) == torch.device("cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match=r"device 'cuda:1' asked for, but CUDA is not available here"):
            resolve_device("cuda:1")
    else:
        with pytest.raises(ConfigError, match="CUDA device"):
            resolve_device(f"cuda:{torch.cuda.device_count()}")
    with pytest.raises(ConfigError, match="device must be auto, cpu, cuda, cuda:N or mps, got 'tpu'"):
        resolve_device("tpu")


def test_precision_auto_is_resolved_in_one_place(monkeypatch):
    # auto is usdrl.precision's decision: bf16 on a CPU with native bf16, fp32 on one without
    native = MachineInfo("Xeon", ("AVX2", "AVX-512", "AVX512-BF16", "AMX-BF16"), "AVX512", 2)
    monkeypatch.setattr(precision_module, "machine_info", lambda: native)
    assert resolve_precision("auto", torch.device("cpu")) == "bf16"
    monkeypatch.setattr(precision_module, "machine_info", lambda: MachineInfo("EPYC", ("AVX2",), "AVX2", 2))
    assert resolve_precision("auto", torch.device("cpu")) == "fp32"
    assert [resolve_precision(p, torch.device("cpu")) for p in ("fp32", "bf16", "fp16")] == ["fp32", "bf16", "fp16"]
    with pytest.raises(ConfigError, match="precision must be one of auto, fp32, bf16, fp16, got 'fp8'"):
        resolve_precision("fp8", torch.device("cpu"))
    with pytest.raises(ConfigError, match="resume needs the run folder"):
        RunOptions(resume=True)


def test_schedules_hand_worked_and_resumed_at_their_position():
    assert [StepFactor((2, 4), 0.1)(p) for p in range(6)] == pytest.approx([1, 1, 0.1, 0.1, 0.01, 0.01])
    # warm-up (p + 1) / 2 over 2 positions, then 0.5 (1 + cos(pi (p - 2) / 8)) to 0 at 10
    assert [WarmupCosineFactor(10, 2)(p) for p in (0, 1, 2, 6, 10)] == pytest.approx([0.5, 1, 1, 0.5, 0])

    def optimizer():
        return torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=2.0)

    straight = optimizer()
    schedule = warmup_cosine_schedule(straight, 10, 2)
    for _ in range(7):
        straight.step()
        schedule.step()
    resumed = optimizer()
    _resume_schedule(warmup_cosine_schedule(resumed, 10, 2), schedule.state_dict())
    assert resumed.param_groups[0]["lr"] == straight.param_groups[0]["lr"] == pytest.approx(2 * WarmupCosineFactor(
        10, 2)(7))
    changed = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=3.0)  # an allowed new rate is followed
    _resume_schedule(step_schedule(changed, [5], 0.5), {"last_epoch": 7})
    assert changed.param_groups[0]["lr"] == 1.5


def test_the_data_order_follows_seed_and_epoch_and_ranks_share_it():
    sampler = EpochSampler(10, seed=3)
    first = list(sampler)
    assert sorted(first) == list(range(10)) and list(sampler) == first
    sampler.set_epoch(1)
    assert list(sampler) != first
    sampler.set_epoch(0)
    assert list(sampler) == first
    shares = [list(EpochSampler(10, seed=3, rank=r, world_size=3)) for r in range(3)]
    assert all(len(s) == 3 for s in shares) and len(set(sum(shares, []))) == 9
    assert shares[0] == first[0:9:3]   # rank r takes every world_size-th index of the one order


def test_every_rng_is_restored():
    state = _rng_state()
    before = (torch.rand(3), np.random.rand(3), random.random())
    _set_rng_state(state)
    after = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(before[0], after[0]) and np.array_equal(before[1], after[1]) and before[2] == after[2]


def test_the_divergence_guard(tmp_path):
    run = TrainingRun(RunOptions(tmp_path, device="cpu"), config={}, max_loss=10.0)
    run.check_loss(torch.tensor(9.0))
    for loss in (float("nan"), float("inf"), 11.0):
        with pytest.raises(TrainingDivergedError, match=f"loss {loss:.4g} at epoch 0, step 0 is not finite or above "
                                                        "max_loss=10"):
            run.check_loss(torch.tensor(loss))


def test_a_one_process_loop_refuses_torchrun(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(ConfigError, match="runs in one process only .* run it without torchrun"):
        TrainingRun(RunOptions(device="cpu"), config={})


def test_global_batches_are_one_process_batches_shared_between_processes(caplog):
    one = GlobalBatchSampler(11, 4, seed=3)
    one.set_epoch(2)
    order = list(EpochSampler(11, seed=3))  # epoch 0, for contrast
    batches = list(one)
    epoch_two = EpochSampler(11, seed=3)
    epoch_two.set_epoch(2)
    expected = list(epoch_two)
    assert batches == [expected[0:4], expected[4:8], expected[8:11]] and len(one) == 3
    assert expected != order  # the epoch changes the order
    shares = []
    for rank in range(2):
        sampler = GlobalBatchSampler(11, 4, seed=3, rank=rank, world_size=2)
        sampler.set_epoch(2)
        shares.append(list(sampler))
    # each global batch cut into two contiguous parts, the longer first
    assert shares[0] == [expected[0:2], expected[4:6], expected[8:10]]
    assert shares[1] == [expected[2:4], expected[6:8], expected[10:11]]
    # a last batch smaller than the number of processes is left out, with a warning
    with caplog.at_level("WARNING", logger="usdrl.engine"):
        three = [list(GlobalBatchSampler(9, 4, seed=0, rank=r, world_size=3)) for r in range(3)]
    assert all(len(share) == 2 for share in three) and "last batch of each epoch (1 samples)" in caplog.text
    assert len(GlobalBatchSampler(9, 4, seed=0, drop_last=True)) == 2


def test_global_mean_in_one_process_is_the_mean():
    run = TrainingRun(RunOptions(device="cpu"), config={})
    losses = torch.tensor([1.0, 2.0, 6.0])
    assert run.global_mean(losses.sum(), 3).item() == 3.0
    assert run.global_mean(torch.tensor(0.0), torch.tensor(0)).item() == 0.0  # nothing counted: 0, not NaN
    assert run.global_value(torch.tensor(2.5)) == 2.5
    assert run.share([1, 2, 3]) == [1, 2, 3] and torch.equal(run.gather(losses, 3), losses)


def test_forward_head_and_get_classifier_follow_timm():
    torch.manual_seed(0)
    model = USDRL(USDRLConfig.from_preset("tiny", hidden_size=16, num_heads=1, num_classes=3)).eval()
    clips = torch.randn(2, *model.config.input_shape)
    y_t, y_s = model.forward_features(clips)
    pooled = torch.cat([y_t.max(dim=1).values, y_s.max(dim=1).values], dim=1)
    assert torch.equal(model.forward_head((y_t, y_s), pre_logits=True), pooled)
    assert torch.equal(model.forward_head((y_t, y_s)), model.get_classifier()(pooled))
    assert torch.equal(model(clips), model.forward_head((y_t, y_s)))
    assert model.get_classifier() is model.head
    torch.testing.assert_close(model.encode(clips), pooled)
    model.reset_classifier(0)
    assert isinstance(model.get_classifier(), torch.nn.Identity)
    assert torch.equal(model.forward_head((y_t, y_s)), pooled)
