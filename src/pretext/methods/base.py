"""The method interface: a method owns the encoder and whatever sits on top of it, takes the
views of a batch and returns the loss. The training loop knows nothing else about it."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


class SSLMethod(nn.Module):
    """Encoder + projection head; `forward(views)` returns the scalar loss.

    All views go through the encoder in one concatenated batch, so batch statistics see every
    view. Subclasses implement `criterion(*embeddings)` and may override `after_step` for
    momentum updates or schedules that depend on training progress (0 -> 1).
    """

    def __init__(self, encoder: nn.Module, head: nn.Module) -> None:
        super().__init__()
        self.encoder = encoder
        self.head = head

    def forward(self, views: torch.Tensor | Sequence[torch.Tensor]) -> torch.Tensor:
        z = self.head(self.encoder(one_batch(views)))
        return self.criterion(*z.chunk(len(views)))

    def criterion(self, *embeddings: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def after_step(self, progress: float) -> None:
        """Called after each optimizer step; progress runs from 0 to 1 over training."""


def one_batch(views: torch.Tensor | Sequence[torch.Tensor]) -> torch.Tensor:
    """All views as one batch: a (V, N, ...) tensor from `make_views` flattens without a copy;
    a sequence of (N, ...) tensors is concatenated."""
    if isinstance(views, torch.Tensor):
        return views.flatten(0, 1)
    return torch.cat(list(views))
