"""torch DistributedDataParallel through torchrun: the standard launcher sets the environment.

``torchrun --nproc_per_node N -m ciml train ...`` runs N processes; each reads RANK,
WORLD_SIZE and LOCAL_RANK, joins the process group (NCCL on GPUs, gloo on CPUs), and trains on
its own slots of every global batch. Rank 0 validates, checkpoints and writes the bundle.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1


def join(device: torch.device) -> World:
    """Join the process group torchrun describes (a single process when not under torchrun)."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size <= 1:
        return World()
    world = World(int(os.environ["RANK"]), size, int(os.environ.get("LOCAL_RANK", "0")))
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return world


def device_for(world: World, device: torch.device) -> torch.device:
    """Each process on a GPU takes the GPU of its local rank."""
    return torch.device("cuda", world.local_rank) if device.type == "cuda" and world.distributed else device


def _collective_device(world: World) -> torch.device:
    """Where a collective's tensors must live: NCCL only moves GPU tensors (this process's GPU)."""
    return torch.device("cuda", world.local_rank) if dist.get_backend() == "nccl" else torch.device("cpu")


def broadcast_flag(world: World, flag: bool) -> bool:
    """Rank 0's decision (e.g. to stop early), shared with every rank."""
    if not world.distributed:
        return flag
    value = torch.tensor([int(flag)], device=_collective_device(world))
    dist.broadcast(value, src=0)
    return bool(value.item())


def all_reduce_sum(world: World, tensor: torch.Tensor) -> torch.Tensor:
    """The sum of ``tensor`` over every process (``tensor`` itself in a single process).

    Every process must call it at the same point with a tensor of the same shape and dtype
    (PASSION's per-step relative preference and per-epoch statistics). The input is left
    unchanged; the result has its device and dtype.

    Args:
        world: this process's place in the process group.
        tensor: any shape, any device.
    """
    if not world.distributed:
        return tensor
    total = tensor.detach().to(_collective_device(world), copy=True)
    dist.all_reduce(total, op=dist.ReduceOp.SUM)
    return total.to(tensor.device)


def barrier(world: World) -> None:
    if world.distributed:
        dist.barrier()


def leave(world: World) -> None:
    if world.distributed and dist.is_initialized():
        dist.destroy_process_group()


class FeaturesForward(torch.nn.Module):
    """Makes ``forward_features`` the forward DDP wraps (DDP only hooks ``forward``)."""

    def __init__(self, network: torch.nn.Module):
        super().__init__()
        self.network = network

    def forward(self, images: torch.Tensor, present: torch.Tensor | None = None):
        return self.network.forward_features(images, present)
