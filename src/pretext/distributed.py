"""Multi-process training through PyTorch's own engine (torch.distributed, launched by
torchrun). One process per device; rank 0 alone logs and writes files. With one process,
everything here is a no-op, so the single-device path is the same code."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Context:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def launched_by_torchrun() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def setup(device: torch.device) -> tuple[Context, torch.device]:
    """Join the process group torchrun described (gloo on CPU, nccl on GPU); pick this rank's
    GPU. Without torchrun: a single-process context and the device unchanged."""
    if not launched_by_torchrun() and not dist.is_initialized():
        return Context(), device
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return Context(dist.get_rank(), dist.get_world_size(), local_rank), device


def world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    """Concatenate x from all ranks in rank order; gradients flow back to every rank's part.

    The backward of torch.distributed.nn's all_gather sums the incoming gradients over ranks,
    so a loss computed identically on each rank from the gathered batch, with DDP's gradient
    averaging, gives exactly the gradients of one process holding the whole batch."""
    if world_size() == 1:
        return x
    # imported here: torch builds without distributed support lack the module
    from torch.distributed.nn.functional import all_gather

    return torch.cat(all_gather(x))


def gather_objects(obj) -> list:
    if world_size() == 1:
        return [obj]
    out = [None] * world_size()
    dist.all_gather_object(out, obj)
    return out


def barrier() -> None:
    if world_size() > 1:
        dist.barrier()


def shutdown() -> None:
    """Leave the process group cleanly (all ranks together) before the interpreter exits."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
