"""The GPU check: CUDA tests and speed per precision, prepared to run in a few minutes when a GPU is lent.

Usage: python benchmarks/gpu_check.py                  # on a CUDA machine; sized for <= 8 minutes on one GPU
       python benchmarks/gpu_check.py --device cpu --preset tiny --batch-size 4   # a dry run of the script

Parts (``--parts``, all by default), each under its own time guard:

* ``tests``: the CUDA tests of the suite (``pytest -k "cuda or gpu"``) and the model/streaming tests
  that take a device, on this GPU;
* ``encode``: ``encode`` of the ``--preset`` model (``base`` is the reference size) in fp32, TF32,
  bf16, fp16 and ``auto``, interleaved rounds, clips/s, speed-up over fp32 and embedding cosine to fp32;
* ``pretrain``: one pretraining step (batch x 4 views, ``benchmarks/train_speed.py``'s step) per
  precision (fp32, TF32, bf16, fp16), all views in one pass and each view separately, with the peak
  memory of CUDA's allocator;
* ``tasks``: a tiny finetuning and a tiny detector training on CUDA (synthetic clips), their time and
  final loss / accuracy;
* ``augment``: the batched augmentations against the per-sample baseline
  (``benchmarks/augment_speed.py --device cuda``; target >= 10x).

Without CUDA it stops at once with exit status 2, unless ``--device cpu`` asks for the dry run.
"""

import argparse
import logging
import subprocess
import sys
import time
from pathlib import Path

import torch
from _common import interleaved_times, setup_logging, speedup
from train_speed import measure

from usdrl import USDRL, ConfigError, USDRLConfig

logger = logging.getLogger("gpu_check")
HERE = Path(__file__).resolve().parent
PARTS = ("tests", "encode", "pretrain", "tasks", "augment")


def run_tests(args) -> None:
    """The suite's CUDA tests, then the device-taking model tests, in a child pytest."""
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-k", "cuda or gpu or device",
               str(HERE.parent / "tests")]
    result = subprocess.run(command, capture_output=True, text=True, timeout=args.part_timeout, cwd=HERE.parent)
    logger.info("tests (pytest -k %r): exit %d; %s", command[7], result.returncode,
                (result.stdout.strip().splitlines() or ["no output"])[-1])


def run_encode(args) -> None:
    """clips/s per precision, speed-up over fp32 (median of interleaved rounds), cosine to fp32."""
    torch.manual_seed(0)
    model = USDRL(USDRLConfig.from_preset(args.preset)).to(args.device).eval()
    clips = torch.randn(args.batch_size * 2, *model.config.input_shape, device=args.device)

    def encode(dtype):
        return lambda: model.encode(clips, batch_size=args.batch_size, dtype=dtype, show_progress_bar=False)

    names = ("fp32", "tf32", "bf16", "fp16", "auto")
    times = interleaved_times({name: encode(name) for name in names}, args.rounds)
    fp32 = model.encode(clips, batch_size=args.batch_size, show_progress_bar=False)
    logger.info("encode, %s config, batch %d, %d rounds:", args.preset, args.batch_size, args.rounds)
    for name in names:
        cosine = torch.nn.functional.cosine_similarity(encode(name)(), fp32, dim=1)
        logger.info("  %-5s %8.1f clips/s  %.2fx fp32 (median of rounds; %.2fx best rounds)  cosine to fp32 min %.5f",
                    name, len(clips) / min(times[name]), *speedup(times, name, "fp32"), float(cosine.min()))


def run_pretrain(args) -> None:
    """One pretraining step per precision, views in one pass and separately, with peak memory."""
    logger.info("pretraining step, %s config, batch %d x 4 views, best of 2 steps:", args.preset, args.batch_size)
    baseline = None
    for precision in ("fp32", "tf32", "bf16", "fp16"):
        for separate in (True, False):
            if args.device.startswith("cuda"):
                torch.cuda.reset_peak_memory_stats(args.device)
            variant = {"precision": precision, "separate": separate, "checkpointing": False}
            try:
                result = measure(variant, args.preset, args.batch_size, steps=2, device=args.device)
            except ConfigError as exc:  # fp16 training on a CPU (dry run)
                logger.info("  %-4s skipped: %s", precision, exc)
                break
            baseline = baseline or result["seconds"]
            logger.info("  %-4s %-16s %7.3f s/step (%.2fx fp32 separately)  peak %.2f GiB", precision,
                        "views separately" if separate else "views in one pass", result["seconds"],
                        baseline / result["seconds"], result["peak_gib"])


def run_tasks(args) -> None:
    """A tiny finetuning and a tiny detector training on the device, from synthetic clips."""
    import numpy as np

    from usdrl.data.synthetic import make_clips
    from usdrl.tasks.detection import train_detector
    from usdrl.tasks.finetune import FinetuneConfig, finetune

    config = USDRLConfig.from_preset("tiny")
    drawn = make_clips(64, seed=0, num_frames=config.num_frames)
    clips = torch.from_numpy(np.ascontiguousarray(drawn.data[:, :, : config.num_frames]))
    labels = torch.from_numpy(drawn.labels)
    dataset = torch.utils.data.TensorDataset(clips, labels)
    settings = FinetuneConfig(epochs=2, batch_size=16, warmup_epochs=0, eval_every=2)
    model = USDRL(config).to(args.device)
    start = time.perf_counter()
    result = finetune(model, (dataset, dataset), num_classes=int(labels.max()) + 1, config=settings)
    logger.info("finetune (tiny, 64 clips, 2 epochs) on %s: %.1f s, training-set top-1 %.1f%%", args.device,
                time.perf_counter() - start, result.last_top1)
    windows = torch.utils.data.TensorDataset(clips, labels[:, None].expand(-1, config.num_frames).contiguous())
    model = USDRL(config).to(args.device)
    start = time.perf_counter()
    losses = train_detector(model, windows, num_classes=int(labels.max()) + 1, config=settings)
    logger.info("detector (tiny, 64 windows, 2 epochs) on %s: %.1f s, losses %s", args.device,
                time.perf_counter() - start, [round(loss, 3) for loss in losses])


def run_augment(args) -> None:
    command = [sys.executable, str(HERE / "augment_speed.py"), "--device", args.device]
    result = subprocess.run(command, capture_output=True, text=True, timeout=args.part_timeout)
    lines = result.stdout.strip().splitlines()
    logger.info("augment_speed.py --device %s: exit %d\n%s", args.device, result.returncode,
                "\n".join("  " + line for line in lines) or result.stderr[-2000:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--preset", default="base", help="model size for encode and pretrain (default: base)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS))
    parser.add_argument("--part-timeout", type=int, default=150, help="seconds allowed per child process")
    args = parser.parse_args()
    setup_logging()
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        logger.error("no CUDA device here (torch %s); this check is for a GPU machine. A dry run of the script "
                     "on the CPU: --device cpu --preset tiny --batch-size 4", torch.__version__)
        sys.exit(2)
    runners = {"tests": run_tests, "encode": run_encode, "pretrain": run_pretrain, "tasks": run_tasks,
               "augment": run_augment}
    failed = []
    for part in args.parts:
        start = time.perf_counter()
        try:
            runners[part](args)
        except Exception as exc:  # report and go on: one broken part must not hide the others' figures
            logger.exception("%s failed: %s", part, exc)
            failed.append(part)
        logger.info("[%s: %.0f s]", part, time.perf_counter() - start)
    if failed:
        logger.error("failed parts: %s", ", ".join(failed))
        sys.exit(1)


if __name__ == "__main__":
    main()
