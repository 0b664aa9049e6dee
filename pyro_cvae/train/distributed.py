"""Data-parallel training over several processes with ``torch.distributed``.

Launch with ``torchrun --nproc_per_node N -m pyro_cvae train ...``: each rank reads its shard of
every epoch's shuffled order, and only rank 0 writes checkpoints, metrics and pictures. The
gradients are averaged by ``torch.nn.parallel.DistributedDataParallel`` around an
:class:`~pyro_cvae.infer.svi.ObjectiveModule` (the objective as a module whose ``forward``
returns the loss), which also starts every rank from rank 0's parameters. This class holds the
rank, the world size and the few collectives the training loop needs besides.
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
