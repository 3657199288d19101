"""torch.distributed set-up for `torchrun`: world size, rank, the process group and gathering results."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def init(device_name: str) -> Dist:
    """torchrun sets WORLD_SIZE/RANK/LOCAL_RANK; a plain run is world size 1 and starts nothing."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    cuda = torch.cuda.is_available() and device_name in ("auto", "cuda")
    dist.init_process_group("nccl" if cuda else "gloo")
    return Dist(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def close(d: Dist) -> None:
    if d.world > 1 and dist.is_initialized():
        dist.destroy_process_group()


def sum_over_ranks(d: Dist, values: list[float]) -> list[float]:
    if d.world <= 1:
        return values
    totals = torch.tensor(values, dtype=torch.float64)
    dist.all_reduce(totals)
    return totals.tolist()


def gather(d: Dist, obj: Any) -> list[Any]:
    """Every rank's `obj`, in rank order (only `obj` itself when not distributed)."""
    if d.world <= 1:
        return [obj]
    gathered: list[Any] = [None] * d.world
    dist.all_gather_object(gathered, obj)
    return gathered


def barrier(d: Dist) -> None:
    if d.world > 1:
        dist.barrier()
