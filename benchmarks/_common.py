"""Helpers shared by the benchmark scripts: the machine header, timers, the matmul peak, the run set-up."""

import argparse
import datetime
import logging
import statistics
import time

import torch

from usdrl.precision import machine_info

logger = logging.getLogger("benchmark")


def setup_logging() -> None:
    """Log to stdout as plain lines, starting with the date and the machine (CPU instruction sets, torch's
    kernels, threads, GPUs): every figure a benchmark prints belongs to that machine."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logger.info("%s UTC, torch %s", datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M"),
                torch.__version__)
    logger.info("%s", machine_info().summary())


def add_threads_argument(parser: argparse.ArgumentParser) -> None:
    """``--threads`` (default 1) for the scripts that train small models."""
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (default 1: a tiny model's operations are too small to share, and "
                             "OpenMP threads spin and stall when other processes use the cores)")


def start_run(args: argparse.Namespace) -> float:
    """Set the torch threads, log the script's figures and only the library's warnings; returns the start time."""
    torch.set_num_threads(args.threads)
    setup_logging()
    for name in ("usdrl", "usdrl.tasks", "usdrl.train"):
        logging.getLogger(name).setLevel(logging.WARNING)
    return time.perf_counter()


def best_time(fn, repeats: int = 5, warmup: int = 1) -> float:
    """The fastest of ``repeats`` timed calls of ``fn()``, in seconds (after ``warmup`` calls)."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


#: The clocks a timing can read: wall time, or the CPU time of this process (all its threads), which other
#: processes on a shared machine disturb far less (they take cores away, not this process's CPU seconds;
#: only caches and memory bandwidth stay shared). CPU time is only meaningful for work done on the CPU.
CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}


def interleaved_times(variants: dict, rounds: int = 3, warmup: int = 1,
                      clock: str = "wall") -> dict[str, list[float]]:
    """Seconds (on ``CLOCKS[clock]``) of each call of ``variants[name]()``: ``rounds`` rounds, each timing every
    variant once in turn (after ``warmup`` untimed calls each), so that a shared machine's load changes hit
    all alike."""
    clock = CLOCKS[clock]
    for fn in variants.values():
        for _ in range(warmup):
            fn()
    times = {name: [] for name in variants}
    for _ in range(rounds):
        for name, fn in variants.items():
            start = clock()
            fn()
            times[name].append(clock() - start)
    return times


def speedup(times: dict[str, list[float]], name: str, baseline: str) -> tuple[float, float]:
    """``baseline``'s time over ``name``'s (> 1: ``name`` is faster): the median over rounds of the per-round
    ratios, and the ratio of the best (least disturbed) rounds."""
    median = statistics.median(b / a for a, b in zip(times[name], times[baseline], strict=True))
    return median, min(times[baseline]) / min(times[name])


def _synced(result: torch.Tensor) -> torch.Tensor:
    if result.is_cuda:
        torch.cuda.synchronize()
    return result


def matmul_peak(dtype: torch.dtype = torch.float32, device: str = "cpu") -> float:
    """GFLOP/s of the fastest of a few large matrix products shaped like the model's (2 FLOP per MAC)."""
    best = 0.0
    for m, k, n in ((4096, 1024, 1024), (4096, 1024, 2048), (4096, 2048, 1024), (4096, 1024, 3072)):
        a = torch.randn(m, k, dtype=dtype, device=device)
        b = torch.randn(k, n, dtype=dtype, device=device)

        best = max(best, 2 * m * k * n / best_time(lambda a=a, b=b: _synced(torch.mm(a, b)), repeats=5) / 1e9)
    return best


def pretrain_within(minutes: float, model_config, data, num_frames, out, *, batch_size: int, lr: float,
                    trainer=None, **options):
    """Pretrain for about ``minutes``: one timed epoch, then as many epochs as fit (lr x0.1 at 80%).

    ``data (N, C, T, V, M)`` and ``num_frames (N,)`` as :class:`usdrl.train.pretrain.Pretrainer` (or
    ``trainer``, a subclass, with its own keyword ``options``) takes them; runs go to ``out/timing``
    and ``out/run``. Returns ``(encoder, epochs, seconds per epoch)``.
    """
    from usdrl.train.pretrain import PretrainConfig, Pretrainer

    def run(epochs: int, folder: str):
        config = PretrainConfig(epochs=epochs, batch_size=batch_size, lr=lr, lr_milestones=[int(epochs * 0.8)],
                                save_every=max(1, epochs // 4))
        return (trainer or Pretrainer)(model_config, config, data, num_frames, f"{out}/{folder}",
                                       show_progress_bar=False, **options).fit()

    start = time.perf_counter()
    run(1, "timing")
    epoch_seconds = time.perf_counter() - start
    epochs = max(1, int(minutes * 60 / epoch_seconds))
    return run(epochs, "run"), epochs, epoch_seconds
