"""The supervised tasks under torchrun: two gloo processes equal one process on the whole batch.

Each task (linear probe, finetuning, detection training with the smoothing loss) runs once in
one process and once in two processes started as torchrun starts them (``RANK``, ``WORLD_SIZE``,
``MASTER_ADDR``/``PORT`` in the environment; the engine joins the group itself). The batch size
is the global one: each process trains on its share of every batch (11 clips in batches of 4:
shares of 2 + 2, 2 + 2 and 1 + 1; the detection windows' frames, some ignored, counted over both
processes), DDP averages the gradients. The losses of every step and the final weights must
equal the one process's to float32 rounding; only rank 0 writes the run folder. A two-process
run with drop path (each process its own masks) resumed after its last checkpoint was lost ends
bit for bit where the uninterrupted run did, and ``torchrun -m usdrl.cli finetune`` reports and
saves once.
"""

import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from usdrl import USDRL, USDRLConfig
from usdrl.data.prepared import IGNORE_LABEL
from usdrl.data.synthetic import make_clips
from usdrl.engine import RunOptions
from usdrl.tasks.detection import train_detector
from usdrl.tasks.finetune import FinetuneConfig, finetune
from usdrl.tasks.recognition import ProbeConfig, linear_probe
from usdrl.train.augment import AugmentConfig
from usdrl.train.cross_format import FormatAlignment

#: drop path off: its random draws differ between one and two processes
MODEL = USDRLConfig.from_preset("tiny", layout="coco17", hidden_size=16, num_heads=1, num_layers=1, num_frames=8,
                                num_persons=1, drop_path=0.0, num_classes=3, num_frame_classes=4)
CLIPS, CLASSES, FRAME_CLASSES = 11, 3, 4
TOLERANCE = dict(rtol=2e-4, atol=2e-5)


def _data():
    """Train and test ``(clip, label)`` datasets and ``(clip, frame labels)`` windows, the same everywhere."""
    generator = torch.Generator().manual_seed(0)
    clips = torch.randn(CLIPS, *MODEL.input_shape, generator=generator)
    labels = torch.arange(CLIPS) % CLASSES
    clips += labels.view(-1, 1, 1, 1, 1).float()  # separable classes: the losses move
    test = torch.randn(5, *MODEL.input_shape, generator=generator)
    frame_labels = torch.randint(0, FRAME_CLASSES, (CLIPS, MODEL.num_frames), generator=generator)
    frame_labels[::3, -3:] = IGNORE_LABEL  # padded frames, ignored: the frame count differs between processes
    dataset = torch.utils.data.TensorDataset
    return (dataset(clips, labels), dataset(test, torch.arange(5) % CLASSES), dataset(clips, frame_labels))


def _model(**changes) -> USDRL:
    torch.manual_seed(0)
    return USDRL(MODEL.replace(**changes))


def _run_tasks(out_dir: str) -> dict:
    """The three tasks, each with its run folder under ``out_dir``; their losses and weights."""
    train, test, windows = _data()
    results = {}
    model = _model()
    probe = linear_probe(model, (train, test), num_classes=CLASSES, batch_size=4,
                         config=ProbeConfig(lr=0.5, epochs=3, batch_size=4, eval_every=1, standardize=True),
                         run=RunOptions(run_dir=os.path.join(out_dir, "probe"), device="cpu"))
    results["probe"] = {"history": probe.history, "weights": model.head.state_dict()}
    model = _model()
    tuned = finetune(model, (train, test), num_classes=CLASSES,
                     run=RunOptions(run_dir=os.path.join(out_dir, "tune"), device="cpu"),
                     config=FinetuneConfig(epochs=2, batch_size=4, lr=3e-3, warmup_epochs=1, eval_every=1,
                                           label_smoothing=0.1))
    results["tune"] = {"history": tuned.history, "weights": model.state_dict()}
    model = _model()
    losses = train_detector(model, windows, num_classes=FRAME_CLASSES, smoothing=0.15,
                            config=FinetuneConfig(epochs=2, batch_size=4, lr=3e-3, warmup_epochs=1),
                            run=RunOptions(run_dir=os.path.join(out_dir, "detect"), device="cpu"))
    results["detect"] = {"losses": losses, "weights": model.state_dict()}
    model = _model(causal=True, num_classes=0)  # no clip head, but a spatial stream the frame loss leaves out
    losses = train_detector(model, windows, num_classes=FRAME_CLASSES,
                            config=FinetuneConfig(epochs=1, batch_size=4, lr=3e-3, warmup_epochs=1),
                            run=RunOptions(run_dir=os.path.join(out_dir, "causal"), device="cpu"))
    results["causal"] = {"losses": losses, "weights": model.state_dict()}
    model = _model(layout="universal", in_channels=6, num_joints=30)
    unlabelled = make_clips(4, seed=7, num_frames=12, noise=0.0)
    alignment = FormatAlignment(unlabelled.data[..., :1], unlabelled.lengths, batch_size=2,  # one person
                                augment=AugmentConfig(output_frames=MODEL.num_frames, min_crop_length=8))
    universal = torch.utils.data.TensorDataset(torch.randn(CLIPS, *model.config.input_shape,
                                                           generator=torch.Generator().manual_seed(1)),
                                               windows.tensors[1])
    losses = train_detector(model, universal, num_classes=FRAME_CLASSES, alignment=alignment,
                            config=FinetuneConfig(epochs=1, batch_size=4, lr=3e-3, warmup_epochs=1),
                            run=RunOptions(run_dir=os.path.join(out_dir, "aligned"), device="cpu"))
    results["aligned"] = {"losses": losses, "weights": model.state_dict()}
    return results


def _worker(rank: int, world: int, port: int, out_dir: str) -> None:
    torch.set_num_threads(1)
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    try:
        results = _run_tasks(out_dir)
        torch.save(results, os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _steps(run_dir) -> list[dict]:
    lines = (run_dir / "metrics.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines]


@pytest.fixture(scope="module")
def two_processes(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ddp-tasks")
    mp.spawn(_worker, args=(2, _free_port(), str(folder)), nprocs=2, join=True)
    return folder, [torch.load(folder / f"rank{r}.pt", weights_only=True) for r in range(2)]


@pytest.fixture(scope="module")
def one_process(tmp_path_factory):
    assert "WORLD_SIZE" not in os.environ
    folder = tmp_path_factory.mktemp("one-process")
    return folder, _run_tasks(str(folder))


def _assert_same_weights(got: dict, expected: dict) -> None:
    assert got.keys() == expected.keys()
    for name, tensor in expected.items():
        torch.testing.assert_close(got[name], tensor, **TOLERANCE, msg=name)


@pytest.mark.parametrize("task", ["probe", "tune", "detect", "causal"])
def test_two_processes_follow_one_process(task, two_processes, one_process):
    ddp_dir, ranks = two_processes
    one_dir, one = one_process
    one_steps, ddp_steps = _steps(one_dir / task), _steps(ddp_dir / task)
    # rank 0 alone wrote the metrics: one line per step (or evaluation), as one process does
    assert [(s["epoch"], s["step"]) for s in ddp_steps] == [(s["epoch"], s["step"]) for s in one_steps]
    losses = [s["loss"] for s in one_steps if "loss" in s]
    np.testing.assert_allclose([s["loss"] for s in ddp_steps if "loss" in s], losses, **TOLERANCE)
    assert len(set(np.round(losses, 4))) > 1  # the loss moved: the comparison is not between constants
    for result in ranks:  # every process ends with the one process's weights and results
        _assert_same_weights(result[task]["weights"], one[task]["weights"])
        if task in ("detect", "causal"):
            np.testing.assert_allclose(result[task]["losses"], one[task]["losses"], **TOLERANCE)
        else:
            np.testing.assert_allclose(np.array(result[task]["history"]), np.array(one[task]["history"]), **TOLERANCE)
    checkpoint = torch.load(sorted((ddp_dir / task).glob("checkpoint_*.pt"))[-1], weights_only=True)
    assert checkpoint["run"]["world_size"] == 2 and len(checkpoint["process_rngs"]) == 2


def test_parameters_the_loss_does_not_reach_stay_as_they_were(two_processes):
    # finetuning trains the clip head; the frame head (weight decay 0.05 in AdamW) would shrink if DDP
    # had given it a zero gradient instead of none; alike the clip head and a causal model's spatial
    # stream in detection training
    _, ranks = two_processes
    initial = _model().state_dict()
    for result in ranks:
        assert torch.equal(result["tune"]["weights"]["frame_head.weight"], initial["frame_head.weight"])
        assert torch.equal(result["detect"]["weights"]["head.weight"], initial["head.weight"])
        causal = _model(causal=True, num_classes=0).state_dict()
        assert torch.equal(result["causal"]["weights"]["encoder.spatial_pos"], causal["encoder.spatial_pos"])


def test_cross_format_alignment_under_two_processes(two_processes, one_process):
    """Each process renders its own clips for the alignment term (seeded by its rank), so two processes are not
    one; DDP keeps their weights one, and rank 0 logs the term's mean over both."""
    ddp_dir, ranks = two_processes
    one_dir, _ = one_process
    _assert_same_weights(ranks[1]["aligned"]["weights"], ranks[0]["aligned"]["weights"])
    initial = _model(layout="universal", in_channels=6, num_joints=30).state_dict()
    assert any(not torch.equal(t, initial[name]) for name, t in ranks[0]["aligned"]["weights"].items())
    ddp_terms = [s["alignment"] for s in _steps(ddp_dir / "aligned")]
    one_terms = [s["alignment"] for s in _steps(one_dir / "aligned")]
    assert len(ddp_terms) == len(one_terms) == 3 and np.isfinite(ddp_terms).all()
    # at the first step the weights are one: rank 0 draws the one process's clips, rank 1 others
    assert ddp_terms[0] != pytest.approx(one_terms[0], rel=1e-3)


def test_half_the_batch_in_one_process_is_another_trajectory(one_process, tmp_path):
    # what each process would do if the batch size were per process: the tolerance above tells it apart
    _, one = one_process
    train, test, _ = _data()
    model = _model()
    finetune(model, (train, test), num_classes=CLASSES, run=RunOptions(device="cpu"),
             config=FinetuneConfig(epochs=2, batch_size=2, lr=3e-3, warmup_epochs=1, eval_every=1,
                                   label_smoothing=0.1))
    differs = [not torch.allclose(tensor, one["tune"]["weights"][name], **TOLERANCE)
               for name, tensor in model.state_dict().items()]
    assert any(differs)


def test_cli_finetune_under_torchrun_reports_and_saves_once(tmp_path):
    from usdrl.data import prepare_dataset
    from usdrl.data.synthetic_files import write_synthetic_ntu

    write_synthetic_ntu(tmp_path / "raw", 30, seed=0)
    prepare_dataset("ntu60", tmp_path / "raw", tmp_path / "prepared", benchmark="xsub", show_progress_bar=False)
    torch.manual_seed(0)
    USDRL(USDRLConfig.from_preset("tiny", hidden_size=16, num_heads=1, num_layers=1, num_frames=16,
                                  drop_path=0.0)).save_pretrained(tmp_path / "encoder")
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m",
               "usdrl.cli", "finetune", str(tmp_path / "encoder"), "--data", str(tmp_path / "prepared"),
               "--epochs", "1", "--batch-size", "4", "--device", "cpu", "--out", str(tmp_path / "run"), "--json"]
    env = {k: v for k, v in os.environ.items() if k not in ("WORLD_SIZE", "RANK", "LOCAL_RANK")}
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    reports = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert len(reports) == 1 and reports[0]["history"][0][0] == 1  # rank 0 alone reported
    assert USDRL.from_pretrained(tmp_path / "run").head is not None  # the finetuned model, saved by rank 0
    checkpoint = torch.load(tmp_path / "run" / "checkpoint_0001.pt", weights_only=True)
    assert checkpoint["run"]["world_size"] == 2 and len(checkpoint["process_rngs"]) == 2


def _resume_worker(rank: int, world: int, port: int, out_dir: str) -> None:
    """Finetune with drop path (each process draws its own masks) for 2 epochs; remove the last
    checkpoint, as a kill would; resume. Saves both final models."""
    torch.set_num_threads(1)
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    try:
        train, test, _ = _data()
        run_dir = os.path.join(out_dir, "run")
        config = FinetuneConfig(epochs=2, batch_size=4, lr=3e-3, warmup_epochs=1, eval_every=2)
        weights = []
        for resume in (False, True):
            model = _model(drop_path=0.3)
            finetune(model, (train, test), num_classes=CLASSES, config=config,
                     run=RunOptions(run_dir=run_dir, device="cpu", resume=resume))
            weights.append(model.state_dict())
            dist.barrier()
            if rank == 0 and not resume:
                for name in ("checkpoint_0002.pt", "checkpoint_0002.pt.sha256"):
                    os.remove(os.path.join(run_dir, name))
            dist.barrier()
        torch.save(weights, os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def test_a_resumed_two_process_run_continues_each_process_own_random_stream(tmp_path):
    mp.spawn(_resume_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    for rank in range(2):
        uninterrupted, resumed = torch.load(tmp_path / f"rank{rank}.pt", weights_only=True)
        for name, tensor in uninterrupted.items():
            torch.testing.assert_close(resumed[name], tensor, rtol=0, atol=0, msg=name)
