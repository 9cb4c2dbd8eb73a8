"""A FIFO memory of past embeddings, shared by MoCo (its queue of negatives) and NNCLR (its
support set of candidate neighbours)."""

from __future__ import annotations

import torch


@torch.no_grad()
def push_fifo(memory: torch.Tensor, pointer: torch.Tensor, rows: torch.Tensor) -> None:
    """Write `rows` over the oldest rows of `memory` (size x dim; a transposed view works) from
    `pointer` on, wrapping around, and move `pointer` past them. Extra rows beyond the
    memory's size are dropped. Index arithmetic on the device: no host sync."""
    size = memory.shape[0]
    rows = rows[:size]
    idx = (pointer + torch.arange(len(rows), device=rows.device)) % size
    memory[idx] = rows.to(memory.dtype)
    pointer.copy_((pointer + len(rows)) % size)
