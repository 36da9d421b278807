"""The training engine pinned where test_engine.py and the CLI resume tests leave it free.

A toy loop (a linear model, SGD, a step schedule, a dataset with its own random generator)
runs in-process through :class:`TrainingRun`: the checkpoint files and their contents, the
metric lines, a resume that ends bit for bit where the straight run did, the refusals and
their messages. The process group is simulated by :class:`FakeGroup`: one thread per rank,
collectives exchanged through a barrier (what gloo does between processes), so the
multi-process paths (shares, gathering, the global loss, the divergence vote, every process's
random generators in a checkpoint) run without spawning processes. Expected values are worked
by hand or by a second, direct computation.
"""

import json
import logging
import math
import random
import threading
import warnings

import numpy as np
import pytest
import torch
import torch.distributed as dist

import usdrl.engine as engine
from usdrl import ConfigError, TrainingDivergedError
from usdrl._checkpoint import load_checkpoint
from usdrl._version import __version__
from usdrl.engine import (
    EpochSampler,
    GlobalBatchSampler,
    RunOptions,
    TrainingRun,
    WarmupCosineFactor,
    _rng_state,
    _set_rng_state,
    build_optimizer,
    config_dict,
    constant_schedule,
    derived_seed,
    gather_shares,
    is_main_process,
    process_share,
    setup_distributed,
    step_schedule,
)


# ---- a simulated process group ---------------------------------------------------------------
class FakeGroup:
    """``world`` ranks, one thread each, whose collectives meet at a barrier."""

    def __init__(self, world: int, backend: str = "gloo"):
        self.world, self.backend = world, backend
        self.barrier = threading.Barrier(world, timeout=20)
        self.slots = [None] * world
        self.local = threading.local()

    def rank(self) -> int:
        return self.local.rank

    def _exchange(self, value) -> list:
        self.barrier.wait()
        self.slots[self.rank()] = value
        self.barrier.wait()
        every = list(self.slots)
        self.barrier.wait()
        return every

    def all_gather(self, parts, tensor) -> None:
        for part, other in zip(parts, self._exchange(tensor.clone()), strict=True):
            part.copy_(other)

    def all_reduce(self, tensor) -> None:
        tensor.copy_(torch.stack(self._exchange(tensor.clone())).sum(0))

    def all_gather_object(self, out, obj) -> None:
        out[:] = self._exchange(obj)

    def install(self, monkeypatch) -> None:
        monkeypatch.setenv("WORLD_SIZE", str(self.world))
        for name, value in (("is_available", lambda: True), ("is_initialized", lambda: True),
                            ("get_rank", self.rank), ("get_world_size", lambda: self.world),
                            ("get_backend", lambda: self.backend), ("all_gather", self.all_gather),
                            ("all_reduce", self.all_reduce), ("all_gather_object", self.all_gather_object)):
            monkeypatch.setattr(dist, name, value)

    def run(self, fn) -> list:
        """``fn(rank)`` in every rank; the results by rank (an exception in any rank is raised)."""
        results, errors = [None] * self.world, [None] * self.world

        def body(rank):
            self.local.rank = rank
            try:
                results[rank] = fn(rank)
            except BaseException as exc:  # noqa: BLE001 - handed to the test thread
                errors[rank] = exc
                self.barrier.abort()

        threads = [threading.Thread(target=body, args=(rank,)) for rank in range(self.world)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        first = next((e for e in errors if e is not None and not isinstance(e, threading.BrokenBarrierError)),
                     None) or next((e for e in errors if e is not None), None)
        if first is not None:
            raise first
        return results


class Items(torch.utils.data.Dataset):
    """Items ``0 .. n-1`` as float tensors, with a random generator of its own (as the augmenting datasets)."""

    def __init__(self, n: int, seed: int = 0):
        self.n, self.generator = n, np.random.default_rng(seed)

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index):
        return torch.tensor([float(index), 1.0]), torch.tensor(float(index % 3))

    def rng_state(self) -> dict:
        return self.generator.bit_generator.state

    def set_rng_state(self, state) -> None:
        self.generator.bit_generator.state = state


# ---- device, processes -----------------------------------------------------------------------
def test_setup_distributed_joins_the_group_on_the_local_gpu_or_with_gloo(monkeypatch):
    calls = []
    initialised = []
    monkeypatch.setattr(dist, "is_initialized", lambda: bool(initialised))
    monkeypatch.setattr(dist, "init_process_group", lambda backend: (calls.append(backend), initialised.append(1)))
    monkeypatch.setattr(dist, "get_rank", lambda: 1)
    monkeypatch.setattr(engine, "resolve_device", lambda device: (calls.append(device), torch.device(
        "cpu" if device in ("auto", None) else device))[1])
    monkeypatch.setattr(torch.cuda, "set_device", lambda device: calls.append(("set_device", device)))
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    # one process: the device as asked, no group, rank 0
    assert setup_distributed("auto") == (0, 1, torch.device("cpu")) and calls == ["auto"]
    calls.clear()
    assert setup_distributed() == (0, 1, torch.device("cpu")) and calls == ["auto"]
    # torchrun with CUDA: cuda:LOCAL_RANK for auto, None and cuda; NCCL
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("LOCAL_RANK", "3")
    for asked in ("auto", None, "cuda"):
        calls.clear()
        initialised.clear()
        assert setup_distributed(asked) == (1, 4, torch.device("cuda:3"))
        assert calls == ["cuda:3", ("set_device", torch.device("cuda:3")), "nccl"]
    monkeypatch.setenv("WORLD_SIZE", "2")  # two processes are already several
    calls.clear()
    initialised.clear()
    assert setup_distributed("cuda") == (1, 2, torch.device("cuda:3"))
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.delenv("LOCAL_RANK")
    calls.clear()
    initialised.clear()
    assert setup_distributed("auto") == (1, 4, torch.device("cuda:0"))
    # another device asked for: taken as it is, gloo; a group already joined is not joined again
    calls.clear()
    initialised.clear()
    assert setup_distributed("cpu") == (1, 4, torch.device("cpu")) and calls == ["cpu", "gloo"]
    calls.clear()
    assert setup_distributed("cpu") == (1, 4, torch.device("cpu")) and calls == ["cpu"]
    # without CUDA, auto stays auto (the CPU here) under torchrun too
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    calls.clear()
    initialised.clear()
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert setup_distributed("auto") == (1, 2, torch.device("cpu")) and calls == ["auto", "gloo"]


def test_the_main_process_is_rank_zero(monkeypatch):
    monkeypatch.delenv("RANK", raising=False)
    monkeypatch.setattr(dist, "is_initialized", lambda: False)
    monkeypatch.setattr(dist, "get_rank", lambda: 1)  # not asked: no group
    assert is_main_process()
    monkeypatch.setenv("RANK", "1")
    assert not is_main_process()
    monkeypatch.setenv("RANK", "0")
    assert is_main_process()
    monkeypatch.setattr(dist, "is_initialized", lambda: True)  # in a group its rank decides, not RANK
    assert not is_main_process()
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setattr(dist, "get_rank", lambda: 0)
    assert is_main_process()


@pytest.mark.parametrize("total", [7, 2, 6])
def test_shares_of_an_evaluation_gather_back_in_order(monkeypatch, total):
    group = FakeGroup(3)
    group.install(monkeypatch)
    data = torch.arange(total * 2, dtype=torch.float64).view(total, 2) / 10  # 0.1 is not a float32

    def rank_work(rank):
        share = process_share(list(range(total)))
        assert isinstance(share, torch.utils.data.Subset) and list(share) == list(range(rank, total, 3))
        return gather_shares(data[list(share)], total)

    for joined in group.run(rank_work):
        assert joined.dtype == torch.float64 and joined.shape == (total, 2)
        assert torch.equal(joined, data)


def test_gather_under_nccl_moves_through_the_current_gpu(monkeypatch):
    group = FakeGroup(2, backend="nccl")
    group.install(monkeypatch)
    made, moves = [], []
    real_zeros, real_empty = torch.zeros, torch.empty

    class Part(torch.Tensor):
        """A tensor whose moves are recorded (and not made: there is no GPU)."""

        def to(self, *args, **kwargs):
            moves.append((args, kwargs))
            return self.as_subclass(torch.Tensor)

    def on_gpu(factory):
        def make(*args, device=None, **kwargs):
            made.append((factory.__name__, device))
            return factory(*args, **kwargs).as_subclass(Part)
        return make

    monkeypatch.setattr(torch.cuda, "current_device", lambda: 1)
    monkeypatch.setattr(torch, "zeros", on_gpu(real_zeros))
    monkeypatch.setattr(torch, "empty", on_gpu(real_empty))
    data = torch.arange(5.0)
    results = group.run(lambda rank: gather_shares(data[rank::2].as_subclass(Part), 5))
    assert all(torch.equal(r, data) for r in results)
    # each process moves its part to the GPU, and the joined rows back to where its part was
    assert sorted(moves, key=str) == [((torch.device("cpu"),), {})] * 2 + [((torch.device("cuda", 1),), {})] * 2
    assert sorted(set(made)) == [("empty", torch.device("cuda", 1)), ("zeros", torch.device("cuda", 1))]


def test_the_global_loss_and_the_divergence_vote_span_the_processes(monkeypatch, tmp_path):
    group = FakeGroup(2)
    group.install(monkeypatch)
    losses = [torch.tensor([1.0, 2.0, 6.0]), torch.tensor([4.0])]  # global mean 13 / 4

    def rank_work(rank):
        run = TrainingRun(RunOptions(device="cpu", show_progress_bar=True), config={}, distributed=True,
                          max_loss=100.0)
        assert (run.rank, run.world) == (rank, 2) and run.show_progress_bar == (rank == 0)
        loss = run.global_mean(losses[rank].sum(), len(losses[rank]))
        # DDP averages the gradients: world * share / all counted, so the mean of the two is the global mean
        assert loss.item() == pytest.approx(2 * losses[rank].sum().item() / 4)
        value = run.global_value(loss)
        assert run.share(["a", "b", "c"]).indices == range(rank, 3, 2)
        results = {0: [1.0, 3.0], 1: [2.0]}[rank]  # of items 0, 2 and of item 1
        assert torch.equal(run.gather(torch.tensor(results), 3), torch.tensor([1.0, 2.0, 3.0]))
        run.check_loss(torch.tensor(50.0))
        try:
            run.check_loss(torch.tensor(float("nan") if rank == 1 else 3.0))
        except TrainingDivergedError as exc:
            return value, str(exc)
        return value, None

    for value, error in group.run(rank_work):
        assert value == pytest.approx(13 / 4)
        assert error is not None and error.endswith("; no checkpoint was kept (lower the learning rate or use fp32)")


def test_seed_process_gives_each_process_its_own_stream():
    run = TrainingRun(RunOptions(device="cpu"), config={})
    torch.manual_seed(5)
    run.seed_process(11)  # one process: its stream stays as seeded
    assert torch.initial_seed() == 5
    run.world, run.rank = 2, 1
    run.seed_process(11)
    assert torch.initial_seed() == (11 * 1_000_003 + 1) * 1_000_003 + 3


def test_wrap_hands_its_options_to_ddp(monkeypatch):
    made = []
    monkeypatch.setattr(torch.nn.parallel, "DistributedDataParallel",
                        lambda module, **kw: made.append(kw) or ("ddp", module))
    run = TrainingRun(RunOptions(device="cpu"), config={})
    module = torch.nn.Linear(1, 1)
    assert run.wrap(module) is module and not made
    run.world = 2
    assert run.wrap(module) == ("ddp", module)
    assert made == [{"find_unused_parameters": False, "broadcast_buffers": True}]
    run.wrap(module, find_unused_parameters=True, broadcast_buffers=False)
    assert made[-1] == {"find_unused_parameters": True, "broadcast_buffers": False}


# ---- pieces ---------------------------------------------------------------------------------
def test_optimisers_take_their_settings():
    weight = torch.nn.Parameter(torch.ones(2))
    for name, kind in (("adam", torch.optim.Adam), ("adamw", torch.optim.AdamW), ("sgd", torch.optim.SGD)):
        optimizer = build_optimizer([weight], name, lr=0.5, weight_decay=0.25)
        assert type(optimizer) is kind and optimizer.param_groups[0]["params"][0] is weight
        assert optimizer.param_groups[0]["lr"] == 0.5 and optimizer.param_groups[0]["weight_decay"] == 0.25
    sgd = build_optimizer([weight], "sgd", lr=0.5, momentum=0.5)
    assert sgd.param_groups[0]["momentum"] == 0.5
    defaults = build_optimizer([weight], "sgd", lr=0.1).param_groups[0]
    assert defaults["momentum"] == 0.9 and defaults["weight_decay"] == 0.0
    assert build_optimizer([weight], "adam", lr=0.1).param_groups[0]["weight_decay"] == 0.0
    assert build_optimizer([weight], "adamw", lr=0.1).param_groups[0]["weight_decay"] == 0.0
    with pytest.raises(ConfigError, match=r"^optimizer must be adam, adamw or sgd, got 'Adam'$"):
        build_optimizer([weight], "Adam", lr=0.1)


def test_schedules_by_hand():
    def rates(schedule_of, steps):
        optimizer = torch.optim.SGD([torch.nn.Parameter(torch.ones(1))], lr=2.0)
        schedule = schedule_of(optimizer)
        out = []
        for _ in range(steps):
            out.append(optimizer.param_groups[0]["lr"])
            optimizer.step()
            schedule.step()
        return out

    assert rates(lambda o: step_schedule(o, [3, 1], 0.5), 5) == [2.0, 1.0, 1.0, 0.5, 0.5]  # milestones unsorted
    assert rates(constant_schedule, 3) == [2.0, 2.0, 2.0]
    # warm-up 1/3, 2/3, 1, then cosine over 4 positions: 0.5 (1 + cos(pi k / 4))
    expected = [1 / 3, 2 / 3, 1, 1, 0.5 * (1 + math.cos(math.pi / 4)), 0.5, 0.5 * (1 + math.cos(3 * math.pi / 4)), 0]
    assert [WarmupCosineFactor(7, 3)(p) for p in range(8)] == pytest.approx(expected)
    assert WarmupCosineFactor(2, 2)(2) == pytest.approx(1.0)  # nothing left after the warm-up: no division by 0
    assert WarmupCosineFactor(2, 2)(3) == pytest.approx(0.0)


def test_derived_seeds_by_hand():
    assert derived_seed() == 0
    assert derived_seed(7) == 7
    assert derived_seed(2, 3) == 2 * 1_000_003 + 3
    assert derived_seed(2**62, 2**62) == (2**62 * 1_000_003 + 2**62) % (2**63 - 1)


def test_epoch_samplers_without_shuffling_and_their_defaults():
    assert list(EpochSampler(5, seed=0, shuffle=False)) == [0, 1, 2, 3, 4]
    assert list(EpochSampler(7, seed=0, shuffle=False, rank=1, world_size=3)) == [1, 4]
    assert len(EpochSampler(7, seed=0, world_size=3)) == 2
    plain = EpochSampler(6, seed=4)
    assert plain.epoch == 0 and sorted(plain) == list(range(6)) and list(plain) != list(range(6))
    generator = torch.Generator().manual_seed(derived_seed(4, 0))
    assert list(plain) == torch.randperm(6, generator=generator).tolist()
    batches = GlobalBatchSampler(5, 2, seed=0, shuffle=False)
    assert list(batches) == [[0, 1], [2, 3], [4]] and len(batches) == 3  # the last batch kept by default
    assert list(GlobalBatchSampler(5, 2, seed=0, shuffle=False, drop_last=True)) == [[0, 1], [2, 3]]
    assert list(GlobalBatchSampler(5, 1, seed=0, shuffle=False)) == [[0], [1], [2], [3], [4]]
    # a last batch of exactly as many samples as processes is shared (one each)
    shares = [list(GlobalBatchSampler(6, 4, seed=0, shuffle=False, rank=r, world_size=2)) for r in range(2)]
    assert shares == [[[0, 1], [4]], [[2, 3], [5]]]
    with pytest.raises(ConfigError, match=r"^batch_size must be >= 1, got 0$") as err:
        GlobalBatchSampler(5, 0, seed=0)
    assert err.value.keywords == ("batch_size",)


def test_batches_and_loaders_take_the_run_s_share(monkeypatch):
    run = TrainingRun(RunOptions(device="cpu"), config={})
    run.rank, run.world = 1, 2
    batches = run.batches(9, batch_size=4, seed=0, shuffle=False)
    assert list(batches) == [[2, 3], [6, 7]]  # a last batch of 1 < 2 processes is left out
    assert list(run.batches(8, batch_size=4, seed=0, shuffle=False, drop_last=True)) == [[2, 3], [6, 7]]
    shuffled = run.batches(8, batch_size=4, seed=3)
    order = EpochSampler(8, seed=3)
    order.set_epoch(2)
    run.set_epoch(shuffled, 2)
    expected = list(order)
    assert list(shuffled) == [expected[2:4], expected[6:8]]
    loader = run.loader(Items(9), batch_size=4, seed=3, num_workers=0)
    assert loader.pin_memory is False and loader.num_workers == 0
    run.set_epoch(loader, 2)
    order9 = EpochSampler(9, seed=3)
    order9.set_epoch(2)
    nine = list(order9)
    assert [batch[0][:, 0].long().tolist() for batch in loader] == [nine[2:4], nine[6:8]]
    assert list(run.loader(Items(9), batch_size=4, seed=3, shuffle=False, drop_last=True).batch_sampler) == \
        [[2, 3], [6, 7]]
    plain = torch.utils.data.DataLoader(Items(4), sampler=EpochSampler(4, seed=1))
    run.set_epoch(plain, 3)
    assert plain.sampler.epoch == 3
    assert run.datasets and all(isinstance(d, Items) for d in run.datasets)


def test_loader_workers_and_progress_bar(monkeypatch):
    run = TrainingRun(RunOptions(device="cpu", show_progress_bar=True), config={})
    assert run.loader(Items(4), batch_size=2, seed=0, num_workers=2).num_workers == 2
    bar = run.progress(7, desc="epoch")
    assert bar.total == 7 and not bar.disable and bar.desc.startswith("epoch")
    bar.close()
    quiet = TrainingRun(RunOptions(device="cpu", show_progress_bar=False), config={}).progress(3)
    assert quiet.disable
    quiet.close()
    logging.getLogger("usdrl").setLevel(logging.WARNING)
    try:
        assert not TrainingRun(RunOptions(device="cpu"), config={}).show_progress_bar
        logging.getLogger("usdrl").setLevel(logging.INFO)
        assert TrainingRun(RunOptions(device="cpu"), config={}).show_progress_bar
    finally:
        logging.getLogger("usdrl").setLevel(logging.NOTSET)


def test_run_options_are_checked():
    with pytest.raises(ConfigError, match=r"^save_every must be >= 1, got 0$") as err:
        RunOptions(save_every=0)
    assert err.value.keywords == ("save_every",)
    RunOptions(save_every=1)
    RunOptions(run_dir="x", resume=True)
    RunOptions(run_dir="x")
    with pytest.raises(ConfigError, match=r"^resume needs the run folder \(run_dir, --out\) to resume from$"):
        RunOptions(resume=True)
    with pytest.raises(ConfigError, match=r"^precision must be one of auto, fp32, bf16, fp16, got 'fp64'$"):
        RunOptions(precision="fp64")
    for precision in ("auto", "fp32", "bf16", "fp16", None):
        RunOptions(precision=precision)


def test_a_run_s_device_precision_and_facts(monkeypatch, tmp_path):
    run = TrainingRun(RunOptions(tmp_path), config={"lr": 1}, facts={"clips": 9}, default_device="cpu",
                      precision="bf16", max_loss=5.0, resumable_changes=["epochs"])
    assert run.device == torch.device("cpu") and run.precision == "bf16" and run.run_dir == tmp_path
    assert run.facts == {"clips": 9, "world_size": 1, "precision": "bf16"} and run.resumable_changes == ("epochs",)
    assert run.config == {"lr": 1} and run.max_loss == 5.0 and run.options.run_dir == tmp_path
    assert (run.epoch, run.step, run.rank, run.world) == (0, 0, 0, 1)
    assert not run.scaler.is_enabled() and run.stateful == {"scaler": run.scaler} and run.resumed_state is None
    assert TrainingRun(RunOptions(device="cpu", precision="fp32"), config={}, precision="bf16").precision == "fp32"
    assert TrainingRun(RunOptions(), config={}, default_device="cpu").facts == {"world_size": 1, "precision": "fp32"}
    assert TrainingRun(RunOptions(), config={}).run_dir is None
    with run.autocast():
        assert torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16
    with TrainingRun(RunOptions(device="cpu"), config={}).autocast():
        assert not torch.is_autocast_enabled("cpu")
    # auto is resolved for training on the run's device
    monkeypatch.setattr(engine, "machine_precision", lambda name, device, training: (
        type("P", (), {"name": f"{name}-{device}-{training}"})))
    assert TrainingRun(RunOptions(device="cpu", precision="auto"), config={}).precision == "auto-cpu-True"


def test_to_device_keeps_the_containers():
    run = TrainingRun(RunOptions(device="cpu"), config={})
    batch = {"a": [torch.ones(1), (torch.zeros(2), "name")], "b": 3}
    moved = run.to_device(batch)
    assert type(moved["a"]) is list and type(moved["a"][1]) is tuple and moved["a"][1][1] == "name"
    assert moved["b"] == 3 and torch.equal(moved["a"][0], torch.ones(1))
    module = torch.nn.Linear(1, 1)
    assert run.place(module) is module


def test_backward_step_clips_and_counts():
    run = TrainingRun(RunOptions(device="cpu"), config={})
    weight = torch.nn.Parameter(torch.tensor([3.0, 4.0]))
    optimizer = torch.optim.SGD([weight], lr=1.0)
    weight.grad = torch.full((2,), 100.0)  # stale: cleared before the backward pass
    norm = run.backward_step((weight * weight).sum() / 2, optimizer, parameters=[weight], grad_clip=1.0)
    assert norm == pytest.approx(5.0) and run.step == 1  # gradient (3, 4): norm 5, clipped to 1
    assert weight.detach().tolist() == pytest.approx([3 - 0.6, 4 - 0.8])
    assert run.backward_step((weight * weight).sum() / 2, optimizer) is None and run.step == 2
    assert weight.detach().tolist() == pytest.approx([0.0, 0.0], abs=1e-6)  # unclipped: the whole gradient


def test_advance_steps_quietly():
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.ones(1))], lr=1.0)
    schedule = step_schedule(optimizer, [1], 0.1)
    with pytest.warns(UserWarning, match="lr_scheduler"):
        schedule.step()  # before any optimiser step: PyTorch warns
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.ones(1))], lr=1.0)
    schedule = step_schedule(optimizer, [1], 0.1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        TrainingRun.advance(schedule)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.1)


def test_the_divergence_message_names_the_run_folder(tmp_path):
    run = TrainingRun(RunOptions(tmp_path, device="cpu"), config={}, max_loss=2.0)
    run.epoch, run.step = 3, 17
    run.check_loss(torch.tensor(2.0))  # at max_loss: still fine
    with pytest.raises(TrainingDivergedError) as err:
        run.check_loss(torch.tensor(2.5))
    assert str(err.value) == (f"loss 2.5 at epoch 3, step 17 is not finite or above max_loss=2; the last good "
                              f"checkpoint in {tmp_path} is kept (lower the learning rate or use fp32)")


def test_config_dict_and_resume_checks_are_flat():
    from dataclasses import dataclass

    @dataclass
    class Config:
        sizes: tuple = (1, 2)
        name: str = "x"

    assert config_dict(Config()) == {"sizes": [1, 2], "name": "x"}
    assert engine._flatten({"a": {"b": {"c": 1}, "d": 2}, "e": 3}) == {"a.b.c": 1, "a.d": 2, "e": 3}


def test_base_datasets_unwrap_subsets_and_concatenations():
    a, b = Items(3), Items(2)
    subset = torch.utils.data.Subset(a, [0, 1])
    concat = torch.utils.data.ConcatDataset([subset, b])
    assert engine._base_datasets(concat) == [concat, subset, a, b]
    assert engine._base_datasets(a) == [a]


# ---- a toy run: checkpoints, metrics, resume --------------------------------------------------
def toy_training(run_dir, epochs: int, *, stop_after: int | None = None, resume: bool = False,
                 allow_changed_config=False, lr=0.1, save_every=2):
    """Train a linear model on :class:`Items` for ``epochs`` epochs (stopping after ``stop_after``)."""
    torch.manual_seed(0)
    np.random.seed(0)
    random.seed(0)
    model = torch.nn.Linear(2, 1)
    options = RunOptions(run_dir, device="cpu", save_every=save_every, resume=resume,
                         allow_changed_config=allow_changed_config, show_progress_bar=False)
    run = TrainingRun(options, config={"lr": lr, "nested": {"epochs": epochs}}, facts={"clips": 9},
                      resumable_changes=("nested.epochs",))
    run.place(model)
    optimizer = build_optimizer(model.parameters(), "sgd", lr=lr, momentum=0.5)
    schedule = step_schedule(optimizer, [3], 0.5)
    dataset = Items(9, seed=1)
    loader = run.loader(dataset, batch_size=4, seed=7)
    history = run.resume(model=model, optimizer=optimizer, scheduler=schedule).get("history", [])
    with run:  # after resume(): the metric lines after the resumed step are dropped
        while run.epoch < epochs:
            run.set_epoch(loader, run.epoch)
            for x, y in loader:
                x, y = run.to_device((x, y))
                noise = float(dataset.generator.normal()) + random.random() + float(np.random.rand()) \
                    + float(torch.rand(()))
                loss = ((model(x).squeeze(1) - y) ** 2).mean() + 0 * noise
                run.backward_step(loss, optimizer)
                run.advance(schedule)
                history.append(round(loss.item(), 6) + noise)
                run.log({"loss": loss.item()})
            run.end_epoch(epochs, extra={"history": history}, note="toy")
            if stop_after is not None and run.epoch == stop_after:
                break
    return model, history, run


def test_a_toy_run_writes_its_checkpoints_and_metrics(tmp_path):
    model, history, run = toy_training(tmp_path / "a" / "run", 3)
    folder = tmp_path / "a" / "run"
    assert sorted(p.name for p in folder.glob("checkpoint_*.pt")) == ["checkpoint_0002.pt", "checkpoint_0003.pt"]
    state = load_checkpoint(folder / "checkpoint_0003.pt")
    assert set(state) == {"model", "optimizer", "scheduler", "scaler", "epoch", "step", "config", "run", "extra",
                          "usdrl_version", "rng", "data", "note"}
    assert (state["epoch"], state["step"], state["note"]) == (3, 9, "toy")
    assert state["config"] == {"lr": 0.1, "nested": {"epochs": 3}}
    assert state["run"] == {"clips": 9, "world_size": 1, "precision": "fp32"}
    assert state["extra"] == {"history": history} and state["usdrl_version"] == __version__
    assert set(state["rng"]) == {"torch", "cuda", "numpy", "python"}
    assert len(state["data"]) == 1 and state["data"][0]["bit_generator"] == "PCG64"
    assert state["scheduler"]["last_epoch"] == 9
    torch.testing.assert_close(state["model"]["weight"], model.weight.detach())
    records = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]
    assert [(r["epoch"], r["step"]) for r in records] == [(e, s) for e in range(3) for s in
                                                         range(3 * e + 1, 3 * e + 4)]
    assert all(set(r) == {"epoch", "step", "loss"} for r in records)
    assert (folder / "tensorboard").is_dir() and any((folder / "tensorboard").iterdir())
    assert run._writer is None  # closed on leaving the run
    assert toy_training(None, 1)[2].save_checkpoint() is None  # no folder: nothing written


def test_save_every_and_the_last_epoch(tmp_path):
    toy_training(tmp_path / "r", 5, save_every=2)
    assert sorted(p.name for p in (tmp_path / "r").glob("checkpoint_*.pt")) == [
        "checkpoint_0002.pt", "checkpoint_0004.pt", "checkpoint_0005.pt"]
    toy_training(tmp_path / "s", 2, save_every=1)
    assert sorted(p.name for p in (tmp_path / "s").glob("checkpoint_*.pt")) == [
        "checkpoint_0001.pt", "checkpoint_0002.pt"]


def test_a_stopped_toy_run_resumes_bit_for_bit(tmp_path, caplog):
    straight, history, _ = toy_training(tmp_path / "straight", 4)
    toy_training(tmp_path / "cut", 4, stop_after=3)  # stopped in epoch 4 of 4: checkpoint_0002 is the newest
    assert sorted(p.name for p in (tmp_path / "cut").glob("checkpoint_*.pt")) == ["checkpoint_0002.pt"]
    with (tmp_path / "cut" / "metrics.jsonl").open("a") as f:
        f.write('{"epoch": 9, "step": 99, "loss": 0}\n')
    with caplog.at_level(logging.INFO, logger="usdrl"):
        resumed, resumed_history, run = toy_training(tmp_path / "cut", 4, resume=True)
    assert f"resuming from {tmp_path / 'cut' / 'checkpoint_0002.pt'}" in caplog.text
    assert torch.equal(resumed.weight, straight.weight) and torch.equal(resumed.bias, straight.bias)
    assert resumed_history == history and (run.epoch, run.step) == (4, 12)
    assert (tmp_path / "cut" / "metrics.jsonl").read_text() == (tmp_path / "straight" / "metrics.jsonl").read_text()


def test_the_metrics_are_trimmed_to_the_resumed_step(tmp_path):
    folder = tmp_path / "run"
    toy_training(folder, 2, save_every=1)
    lines = (folder / "metrics.jsonl").read_text().splitlines()
    run = TrainingRun(RunOptions(folder, device="cpu", resume=True), config={"lr": 0.1, "nested": {"epochs": 2}},
                      facts={"clips": 9})
    run.step = 3  # as resume() sets it from checkpoint_0001 (three steps)
    with run:
        pass
    assert (folder / "metrics.jsonl").read_text() == "".join(f"{line}\n" for line in lines[:3])


def test_resume_refusals_and_allowed_changes(tmp_path, caplog):
    folder = tmp_path / "run"
    toy_training(folder, 2)
    with pytest.raises(ConfigError) as err:
        toy_training(folder, 2)
    assert str(err.value) == (f"{folder} already holds checkpoint_0002.pt: pass resume=True to continue it, "
                              "or choose another folder")
    assert err.value.keywords == ("resume",)
    with pytest.raises(ConfigError, match=rf"^nothing to resume: {tmp_path / 'empty'} has no checkpoint$"):
        toy_training(tmp_path / "empty", 2, resume=True)
    with pytest.raises(ConfigError) as err:
        toy_training(folder, 2, resume=True, lr=0.2)
    assert str(err.value) == (f"resuming {folder} with settings that change its trajectory: lr: 0.1 in the "
                              "checkpoint, 0.2 now. Resume with the run's settings, or pass "
                              "allow_changed_config=True to continue with the new ones")
    assert err.value.keywords == ("allow_changed_config",)
    with caplog.at_level(logging.WARNING, logger="usdrl"):
        toy_training(folder, 3, resume=True, lr=0.2, allow_changed_config=True)
    assert f"resuming {folder} with changed settings (allowed): lr: 0.1 in the checkpoint, 0.2 now" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="usdrl"):
        _, _, run = toy_training(folder, 4, resume=True, lr=0.2)  # nested.epochs may change
    assert "changed settings" not in caplog.text and run.epoch == 4


def test_a_changed_fact_is_refused_and_several_changes_are_listed(tmp_path):
    folder = tmp_path / "run"
    toy_training(folder, 1)
    run_options = RunOptions(folder, device="cpu", resume=True)
    with pytest.raises(ConfigError, match=r"with settings that change its trajectory: clips: 9 in the checkpoint, "
                                          r"10 now; lr: 0\.1 in the checkpoint, 0\.3 now\. "):
        TrainingRun(run_options, config={"lr": 0.3, "nested": {"epochs": 1}}, facts={"clips": 10})
    run = TrainingRun(run_options, config={"lr": 0.1, "nested": {"epochs": 1}}, facts={"clips": 9})
    assert run.resumed_state is not None and run.resumed_state["epoch"] == 1


def test_every_process_keeps_its_own_generators_in_a_checkpoint(monkeypatch, tmp_path):
    group = FakeGroup(2)
    group.install(monkeypatch)
    barrier = threading.Barrier(2)

    def train(rank, resume):
        run = TrainingRun(RunOptions(tmp_path, device="cpu", resume=resume), config={}, distributed=True)
        barrier.wait()  # every process has looked for a checkpoint before rank 0 writes one
        dataset = Items(8, seed=10 + rank)
        run.loader(dataset, batch_size=4, seed=0)
        run.resume()
        with run:
            if resume:
                return run.epoch, dataset.generator.integers(1000), run.rank
            dataset.generator.integers(1000)
            run.end_epoch(1)
            return dataset.generator.integers(1000)

    expected = group.run(lambda rank: train(rank, False))
    state = load_checkpoint(tmp_path / "checkpoint_0001.pt")
    assert len(state["process_rngs"]) == 2 and state["run"]["world_size"] == 2
    assert [len(p["data"]) for p in state["process_rngs"]] == [1, 1]
    resumed = group.run(lambda rank: train(rank, True))
    assert [r[1] for r in resumed] == expected and [r[0] for r in resumed] == [1, 1]
    assert [r[2] for r in resumed] == [0, 1]


# ---- where tensors land, and the CUDA-only paths, without a GPU ----------------------------------
def test_place_and_to_device_move_onto_the_run_s_device():
    from device_harness import SimulatedAccelerator

    accelerator = SimulatedAccelerator()
    run = TrainingRun(RunOptions(device="cpu"), config={})
    module = torch.nn.Linear(2, 1)
    batch = {"x": [torch.ones(3, 2)], "n": 3}
    with accelerator:
        assert run.place(module) is module
        moved = run.to_device(batch)
        assert all(accelerator.on_device(p) for p in module.parameters())
        assert accelerator.on_device(moved["x"][0]) and not accelerator.on_device(batch["x"][0])
        module(moved["x"][0])


def test_the_collectives_get_tensors_on_the_device_under_nccl(monkeypatch):
    from device_harness import SimulatedAccelerator

    accelerator = SimulatedAccelerator()
    group = FakeGroup(2, backend="nccl")
    group.install(monkeypatch)
    reduce = group.all_reduce

    def nccl_all_reduce(tensor):
        assert accelerator.on_device(tensor), "NCCL reduces tensors on the GPU only"
        reduce(tensor)

    monkeypatch.setattr(dist, "all_reduce", nccl_all_reduce)

    def rank_work(rank):
        run = TrainingRun(RunOptions(device="cpu"), config={}, distributed=True)
        with accelerator:
            loss = run.global_mean(torch.tensor([3.0, 1.0][rank]).to("cpu"), 1)
            run.check_loss(loss)
        return loss.item()

    assert group.run(rank_work) == [3.0, 1.0]  # world * share / 2 counted


def test_the_run_s_device_is_the_one_asked_for_else_the_default(monkeypatch):
    asked = []
    monkeypatch.setattr(engine, "resolve_device", lambda device: asked.append(device) or torch.device("cpu"))
    TrainingRun(RunOptions(device="cpu"), config={}, default_device="cuda:1")
    TrainingRun(RunOptions(), config={}, default_device="cuda:1")
    TrainingRun(RunOptions(), config={})
    assert asked == ["cpu", "cuda:1", "auto"]


def fp16_run(monkeypatch) -> TrainingRun:
    """A run whose precision resolved to fp16 (CUDA only): its loss scaler, exercised on the CPU."""
    monkeypatch.setattr(engine, "resolve_precision", lambda precision, device: "fp16")
    return TrainingRun(RunOptions(device="cpu"), config={})


def test_fp16_scales_the_loss_and_clips_the_unscaled_gradient(monkeypatch):
    assert not TrainingRun(RunOptions(device="cpu"), config={}).scaler.is_enabled()  # fp32: no scaler
    run = fp16_run(monkeypatch)
    assert run.scaler.is_enabled() and run.scaler.scale(torch.tensor(2.0)).item() == 2.0 * 2**16
    weight = torch.nn.Parameter(torch.tensor([3.0, 4.0]))
    optimizer = torch.optim.SGD([weight], lr=1.0)
    norm = run.backward_step((weight * weight).sum() / 2, optimizer, parameters=[weight], grad_clip=1.0)
    assert norm == pytest.approx(5.0)  # the true gradient's norm: unscaled before clipping
    assert weight.detach().tolist() == pytest.approx([2.4, 3.2])


def test_autocast_follows_the_run_s_precision():
    run = TrainingRun(RunOptions(device="cpu"), config={})
    for precision, dtype in (("bf16", torch.bfloat16), ("fp16", torch.float16)):
        run.precision = precision
        with run.autocast():
            assert torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == dtype


def test_loaders_pin_memory_for_cuda_and_pass_drop_last_on():
    run = TrainingRun(RunOptions(device="cpu"), config={})
    plain = run.loader(Items(4), batch_size=2, seed=0)
    assert plain.num_workers == 0 and plain.pin_memory is False
    run.rank, run.world = 1, 2
    # 10 items in batches of 4: a last batch of 2, one item for each of the 2 processes, unless dropped
    assert list(run.loader(Items(10), batch_size=4, seed=0, shuffle=False).batch_sampler) == [[2, 3], [6, 7], [9]]
    assert list(run.loader(Items(10), batch_size=4, seed=0, shuffle=False, drop_last=True).batch_sampler) == \
        [[2, 3], [6, 7]]
    assert list(run.batches(10, batch_size=4, seed=0, shuffle=False)) == [[2, 3], [6, 7], [9]]
    assert list(run.batches(10, batch_size=4, seed=0, shuffle=False, drop_last=True)) == [[2, 3], [6, 7]]
    run.device = torch.device("cuda")
    assert run.loader(Items(4), batch_size=2, seed=0).pin_memory is True


def test_cuda_generators_are_saved_and_restored_when_cuda_is_in_use(monkeypatch):
    restored = []
    monkeypatch.setattr(torch.cuda, "get_rng_state_all", lambda: ["gpu state"])
    monkeypatch.setattr(torch.cuda, "set_rng_state_all", restored.append)
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: False)
    assert _rng_state()["cuda"] == []  # CUDA never used: nothing to keep
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: True)
    state = _rng_state()
    assert state["cuda"] == ["gpu state"]
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    _set_rng_state(state)
    assert restored == []  # a checkpoint from a GPU resumed on a CPU machine
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    _set_rng_state({**state, "cuda": []})
    assert restored == []  # a checkpoint without GPU generators
    _set_rng_state(state)
    assert restored == [["gpu state"]]


# ---- texts, logs and small rules ----------------------------------------------------------------
def test_the_global_mean_of_one_item_is_the_item_and_means_are_taken_in_float32():
    run = TrainingRun(RunOptions(device="cpu"), config={})
    assert run.global_mean(torch.tensor(5.0), 1).item() == 5.0
    mean = run.global_mean(torch.tensor(100.0, dtype=torch.bfloat16), 3)  # a sum under bf16 autocast
    assert mean.dtype == torch.float32 and mean.item() == pytest.approx(100 / 3, rel=1e-6)  # bf16 has 33.25


def test_a_resumed_schedule_reports_its_rate():
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.ones(1))], lr=2.0)
    schedule = step_schedule(optimizer, [2], 0.5)
    engine._resume_schedule(schedule, {"last_epoch": 3})
    assert schedule.get_last_lr() == [1.0] and schedule.last_epoch == 3


def test_the_left_out_batch_warning(caplog):
    with caplog.at_level(logging.WARNING, logger="usdrl.engine"):
        GlobalBatchSampler(8, 4, seed=0, world_size=2)  # batches divide evenly: nothing to say
        GlobalBatchSampler(10, 4, seed=0, world_size=3)
    assert [r.getMessage() for r in caplog.records] == [
        "the last batch of each epoch (2 samples) is left out: it has fewer samples than the 3 processes"]


def test_unused_parameters_keep_no_gradient():
    run = TrainingRun(RunOptions(device="cpu"), config={})
    used, unused = torch.nn.Parameter(torch.ones(1)), torch.nn.Parameter(torch.ones(1))
    optimizer = torch.optim.SGD([used, unused], lr=0.5, weight_decay=0.5, momentum=0.9)
    unused.grad = torch.ones(1)  # left from an earlier step
    run.backward_step((2 * used).sum(), optimizer)
    assert unused.grad is None and unused.item() == 1.0  # no gradient: no decay, no momentum
    assert used.item() == pytest.approx(1 - 0.5 * (2 + 0.5))


def test_advance_passes_other_warnings_through():
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.ones(1))], lr=1.0)

    def factor(position):
        if position:
            warnings.warn("a factor's own warning", UserWarning, stacklevel=1)
        return 1.0

    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
    with pytest.warns(UserWarning, match="a factor's own warning"):
        TrainingRun.advance(schedule)


def test_the_exact_log_lines_of_saving_resuming_and_allowed_changes(tmp_path, caplog):
    folder = tmp_path / "run"
    with caplog.at_level(logging.INFO, logger="usdrl.engine"):
        toy_training(folder, 1)
    saved = [r.getMessage() for r in caplog.records if r.getMessage().startswith("saved")]
    assert saved == [f"saved {folder / 'checkpoint_0001.pt'}"]
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="usdrl.engine"):
        TrainingRun(RunOptions(folder, device="cpu", resume=True, allow_changed_config=True),
                    config={"lr": 0.3, "nested": {"epochs": 2}}, facts={"clips": 10})
    assert [r.getMessage() for r in caplog.records] == [
        f"resuming from {folder / 'checkpoint_0001.pt'}",
        f"resuming {folder} with changed settings (allowed): clips: 9 in the checkpoint, 10 now; lr: 0.1 in the "
        "checkpoint, 0.3 now; nested.epochs: 1 in the checkpoint, 2 now"]


def test_settings_on_one_side_only_and_older_checkpoints(tmp_path):
    from usdrl._checkpoint import save_checkpoint as write

    folder = tmp_path / "run"
    toy_training(folder, 1)
    # a setting the checkpoint does not know (added since) is not a change
    run = TrainingRun(RunOptions(folder, device="cpu", resume=True),
                      config={"lr": 0.1, "nested": {"epochs": 1}, "new": 1}, facts={"clips": 9})
    assert run.resumed_state["epoch"] == 1
    # a checkpoint without config, run facts or extra (written before they were kept)
    old = load_checkpoint(folder / "checkpoint_0001.pt")
    for key in ("config", "run", "extra"):
        del old[key]
    write(folder / "checkpoint_0002.pt", old)
    run = TrainingRun(RunOptions(folder, device="cpu", resume=True), config={"lr": 0.1})
    run.datasets.append(Items(9))
    assert run.resume() == {} and run.epoch == 1


def test_a_resume_with_another_number_of_random_datasets_is_refused(tmp_path):
    folder = tmp_path / "run"
    toy_training(folder, 1)  # one dataset with a generator
    run = TrainingRun(RunOptions(folder, device="cpu", resume=True), config={"lr": 0.1, "nested": {"epochs": 1}},
                      facts={"clips": 9})
    run.datasets += [Items(3), Items(4)]
    with pytest.raises(ValueError, match="zip"):
        run.resume()


def test_tensorboard_gets_every_metric_at_its_step(tmp_path):
    run = TrainingRun(RunOptions(tmp_path, device="cpu"), config={})
    scalars = []

    class Writer:
        def add_scalar(self, name, value, step):
            scalars.append((name, value, step))

        def close(self):
            scalars.append("closed")

    with run:
        run._writer.close()
        run._writer = Writer()
        run.step, run.epoch = 7, 2
        run.log({"loss": 1.5, "accuracy": 0.25})
    assert scalars == [("loss", 1.5, 7), ("accuracy", 0.25, 7), "closed"]
    assert json.loads((tmp_path / "metrics.jsonl").read_text()) == {"epoch": 2, "step": 7, "loss": 1.5,
                                                                     "accuracy": 0.25}
