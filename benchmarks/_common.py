"""Helpers shared by the benchmark scripts: the machine's matmul peak and a timer."""

import time

import torch


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
