"""Global batch statistics under DDP: two gloo processes equal one process on the whole batch.

Each process encodes its half of a batch of views; the MG-FD loss gathers the projected
embeddings of both (with gradients) and the projectors' batch norms, with ``sync_batchnorm``,
normalise with the statistics of the whole batch. The loss and every parameter's gradient
(after DDP's averaging) must equal those of a single process on the whole batch. Computed
in float64 so that the comparison measures the maths, not rounding.
"""

import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from usdrl import USDRL, USDRLConfig
from usdrl.data.synthetic import make_clips
from usdrl.train.losses import LossConfig, MGFDLoss
from usdrl.train.pretrain import PretrainConfig, Pretrainer, PretrainingModel
from usdrl.train.projectors import ViewBatchNorm1d

BATCH, VIEWS = 8, 4
#: drop path off: its random draws would differ between one and two processes
MODEL = USDRLConfig.from_preset("tiny", hidden_size=16, num_heads=1, num_frames=8, drop_path=0.0)
LOSS = LossConfig(xcorr_weight=1e-3)  # every term, the cross-correlation included


def _setup() -> tuple[PretrainingModel, torch.Tensor]:
    """The same pretraining model and views ``(K, N, C, T, V, M)`` in every process."""
    torch.manual_seed(0)
    module = PretrainingModel(USDRL(MODEL), sync_batchnorm=True).double().train()
    views = torch.randn(VIEWS, BATCH, *MODEL.input_shape, dtype=torch.float64)
    return module, views


def _worker(rank: int, world: int, init_file: str, out_dir: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        module, views = _setup()
        share = BATCH // world
        local = views[:, rank * share:(rank + 1) * share]
        network = torch.nn.parallel.DistributedDataParallel(module)
        loss, _ = MGFDLoss(LOSS, global_batch=True)(network(local))
        loss.backward()
        result = {"loss": loss.detach(), "grads": {name: p.grad for name, p in module.named_parameters()},
                  "running_var": module.projectors.temporal[1].running_var.clone()}
        module.projectors.set_sync_batchnorm(False)
        with torch.no_grad():  # what main computed: the loss of this process's slice alone
            result["local_loss"], _ = MGFDLoss(LOSS)(module(local))
        torch.save(result, os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def two_processes(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ddp")
    mp.spawn(_worker, args=(2, str(folder / "init"), str(folder)), nprocs=2, join=True)
    return [torch.load(folder / f"rank{r}.pt", weights_only=True) for r in range(2)]


@pytest.fixture(scope="module")
def one_process():
    module, views = _setup()
    loss, _ = MGFDLoss(LOSS)(module(views))
    loss.backward()
    return {"loss": loss.detach(), "grads": {name: p.grad for name, p in module.named_parameters()},
            "running_var": module.projectors.temporal[1].running_var.clone()}


def test_two_processes_see_the_global_batch(two_processes, one_process):
    for result in two_processes:
        assert abs(float(result["loss"] - one_process["loss"])) <= 1e-5
        assert result["grads"].keys() == one_process["grads"].keys()
        for name, grad in one_process["grads"].items():
            torch.testing.assert_close(result["grads"][name], grad, rtol=1e-5, atol=1e-5, msg=name)
        # the running statistics follow the global batch too
        torch.testing.assert_close(result["running_var"], one_process["running_var"], rtol=1e-5, atol=1e-5)
    # a process's own slice gives another loss, far outside the tolerance above: the comparison can tell them apart
    assert all(abs(float(r["local_loss"] - one_process["loss"])) > 10 * 1e-5 for r in two_processes)


def test_one_process_is_unchanged_by_the_distributed_options():
    module, views = _setup()
    plain = PretrainingModel(USDRL(MODEL)).double().train()
    plain.load_state_dict(module.state_dict())
    global_loss, _ = MGFDLoss(LOSS, global_batch=True)(module(views))
    local_loss, _ = MGFDLoss(LOSS)(plain(views))
    torch.testing.assert_close(global_loss, local_loss, rtol=0, atol=0)


@pytest.mark.parametrize("sync", [False, True])
def test_the_trainer_uses_the_global_batch_loss_and_the_asked_batch_norm(sync, tmp_path):
    clips = make_clips(8, seed=0)
    trainer = Pretrainer(MODEL, PretrainConfig(batch_size=4, sync_batchnorm=sync), clips.data, clips.lengths,
                         tmp_path / "run", show_progress_bar=False)
    assert trainer.criterion.global_batch
    norms = [m for m in trainer.module.modules() if isinstance(m, ViewBatchNorm1d)]
    assert len(norms) == 6 and all(m.sync_stats == sync for m in norms)
