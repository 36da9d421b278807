"""Collectives with gradients, so that a loss or a batch norm under DDP sees the global batch.

Both functions are the identity in a single process (no process group, or a world of one).
Their backward passes **sum** the gradients of every process: when every process computes the
same global loss, each then holds ``world_size`` times its share of the gradient, and
DistributedDataParallel's averaging over the processes brings it back to exactly the gradient
of one process training on the whole batch.
"""

import torch
import torch.distributed as dist


def world_size() -> int:
    """Processes in the default group (1 without one)."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


class _AllReduceSum(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        total = x.clone(memory_format=torch.contiguous_format)
        dist.all_reduce(total)
        return total

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        total = grad.clone(memory_format=torch.contiguous_format)
        dist.all_reduce(total)
        return total


class _GatherBatch(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, dim: int) -> torch.Tensor:
        ctx.dim, ctx.rank, ctx.size = dim, dist.get_rank(), x.shape[dim]
        parts = [torch.empty_like(x, memory_format=torch.contiguous_format) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, x.contiguous())
        return torch.cat(parts, dim=dim)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        total = grad.clone(memory_format=torch.contiguous_format)
        dist.all_reduce(total)
        return total.narrow(ctx.dim, ctx.rank * ctx.size, ctx.size), None


def all_reduce_sum(x: torch.Tensor) -> torch.Tensor:
    """The sum of ``x`` over all processes (every process gets it); gradients are summed back."""
    return _AllReduceSum.apply(x) if world_size() > 1 else x


def gather_batch(x: torch.Tensor, dim: int = 0) -> torch.Tensor:
    """Every process's ``x`` concatenated along ``dim`` in rank order; backward returns each process the
    (summed) gradient of its own slice. Every process must pass the same shape."""
    return _GatherBatch.apply(x, dim) if world_size() > 1 else x
