"""Data-parallel training over several processes with ``torch.distributed``.

Launch with ``torchrun --nproc_per_node N -m pyro_cvae train ...``: each rank reads its shard of
every epoch's shuffled order, gradients are averaged across ranks after each backward pass (one
flattened all-reduce), and only rank 0 writes checkpoints, metrics and pictures.

Why not ``DistributedDataParallel``: DDP synchronises gradients through hooks armed by the
wrapped module's ``forward``; a Pyro objective calls ``model.model``/``model.guide`` instead, so
the all-reduce is done explicitly here, with the same effect (parameters broadcast from rank 0
at the start, gradients averaged before every optimizer step, identical updates on every rank).
"""

from __future__ import annotations

import atexit
import os

import torch
import torch.distributed as dist

__all__ = ["DataParallel"]


def _leave_group() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


class DataParallel:
    """The rank, world size and collectives of one training process."""

    def __init__(self, rank: int, world_size: int):
        self.rank, self.world_size = rank, world_size

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_env(cls, device: torch.device) -> DataParallel | None:
        """Join the process group that ``torchrun`` describes in the environment, if any."""
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world <= 1 or not dist.is_available():
            return None
        if not dist.is_initialized():
            backend = "nccl" if device.type == "cuda" else "gloo"
            dist.init_process_group(backend=backend)
            # leave the group in order at exit: a process that exits with the group alive can
            # abort in the backend's threads ("terminate called without an active exception")
            atexit.register(_leave_group)
        return cls(dist.get_rank(), dist.get_world_size())

    def shard(self) -> tuple[int, int]:
        """(rank, world size), the argument of :meth:`pyro_cvae.data.Dataset.batches`."""
        return self.rank, self.world_size

    @torch.no_grad()
    def broadcast_parameters(self, module: torch.nn.Module) -> None:
        """Make every rank start from rank 0's parameters and buffers."""
        for t in list(module.parameters()) + list(module.buffers()):
            dist.broadcast(t.data, src=0)

    @torch.no_grad()
    def average_gradients(self, params: list[torch.Tensor], finite: bool) -> bool:
        """Average gradients over ranks in one all-reduce; returns whether all ranks were finite.

        Every rank takes part even when its own loss was not finite, so no rank waits forever;
        the agreed flag makes all of them skip or stop together.
        """
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
        flat = torch.cat([g.reshape(-1) for g in grads] + [grads[0].new_tensor([float(finite)])])
        if not finite:
            flat[:-1] = 0.0
        dist.all_reduce(flat)
        all_finite = bool(flat[-1].item() == self.world_size) and bool(torch.isfinite(flat).all())
        flat[:-1] /= self.world_size
        offset = 0
        for p, g in zip(params, grads):
            n = g.numel()
            if p.grad is None:
                p.grad = g
            p.grad.copy_(flat[offset : offset + n].view_as(g))
            offset += n
        return all_finite

    def all_sum(self, values: list[float]) -> list[float]:
        t = torch.tensor(values, dtype=torch.float64)
        dist.all_reduce(t)
        return t.tolist()

    def gather(self, obj) -> list:
        out = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out

    def barrier(self) -> None:
        dist.barrier()
