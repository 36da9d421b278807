"""Pretraining step time and peak memory of the `base` (reference-size) model, batch 32 x 4 views.

Usage: python benchmarks/train_speed.py [--batch-size 32] [--steps 2] [--preset base]

Each variant runs in a fresh process (so that its peak resident memory is its own): one
pretraining step is augmentation, the forward pass of all views, the MG-FD loss, the
backward pass and an Adam update. Variants:

* ``fp32, views separately``: one forward pass per view, as the reference implementation does;
* ``fp32``: all views in one pass (per-view batch-norm statistics, the same maths);
* ``bf16``: the same under bfloat16 autocast;
* ``bf16 + checkpointing``: and activation checkpointing.

Prints seconds per step (best of ``--steps``), the speed-up over the first variant, peak
resident memory (``ru_maxrss``) and its share of the fp32 peak.
"""

import argparse
import json
import logging
import resource
import subprocess
import sys
import time

import torch
from _common import setup_logging

logger = logging.getLogger("train_speed")

VARIANTS = {
    "fp32, views separately": {"precision": "fp32", "separate": True, "checkpointing": False},
    "fp32": {"precision": "fp32", "separate": False, "checkpointing": False},
    "bf16": {"precision": "bf16", "separate": False, "checkpointing": False},
    "bf16 + checkpointing": {"precision": "bf16", "separate": False, "checkpointing": True},
}


def measure(variant: dict, preset: str, batch_size: int, steps: int, device: str = "cpu") -> dict:
    """Time ``steps`` pretraining steps in this process; returns seconds per step and peak memory (GiB): the
    resident set size on the CPU, the largest allocation of this device's caching allocator on CUDA."""
    from usdrl import USDRL, USDRLConfig
    from usdrl.precision import resolve_precision
    from usdrl.train import AugmentConfig, MGFDLoss, make_views
    from usdrl.train.pretrain import PretrainingModel

    torch.manual_seed(0)
    model = PretrainingModel(USDRL(USDRLConfig.from_preset(preset))).to(device)
    model.model.set_grad_checkpointing(variant["checkpointing"])
    optimizer = torch.optim.Adam(model.parameters(), lr=5e-4, weight_decay=1e-5)
    criterion = MGFDLoss()
    clips = torch.randn(batch_size, 3, 300, 25, 2, device=device)
    lengths = torch.randint(64, 301, (batch_size,), device=device)
    generator = torch.Generator(device).manual_seed(0)
    precision = resolve_precision(variant["precision"], device, training=True)
    scaler = torch.amp.GradScaler(device, enabled=precision.name == "fp16")

    def step() -> float:
        views = make_views(clips, lengths, 4, generator, AugmentConfig())
        with precision.context():
            if variant["separate"]:
                parts = [model(v[None]) for v in views]
                embeddings = {k: torch.cat([p[k] for p in parts]) for k in parts[0]}
            else:
                embeddings = model(views)
        loss, _ = criterion({k: v.float() for k, v in embeddings.items()})
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        return loss.detach().item()

    times = []
    for _ in range(steps):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    if device.startswith("cuda"):
        peak = torch.cuda.max_memory_allocated(device) / 2**30
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    return {"seconds": min(times), "peak_gib": peak}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=2, help="timed steps per variant; the fastest counts")
    parser.add_argument("--preset", default="base")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        result = measure(VARIANTS[args.child], args.preset, args.batch_size, args.steps)
        sys.stdout.write(json.dumps(result) + "\n")
        return
    setup_logging()
    logger.info("%s config, batch %d x 4 views, %d threads, best of %d steps", args.preset, args.batch_size,
                torch.get_num_threads(), args.steps)
    results = {}
    for name in VARIANTS:
        command = [sys.executable, __file__, "--child", name, "--preset", args.preset, "--batch-size",
                   str(args.batch_size), "--steps", str(args.steps)]
        output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
        results[name] = json.loads(output.strip().splitlines()[-1])
        first, fp32 = next(iter(results.values())), results.get("fp32", results[name])
        logger.info("%-24s %6.2f s/step (%.2fx)   peak %5.2f GiB (%3.0f%% of fp32)", name,
                    results[name]["seconds"], first["seconds"] / results[name]["seconds"],
                    results[name]["peak_gib"], 100 * results[name]["peak_gib"] / fp32["peak_gib"])


if __name__ == "__main__":
    main()
