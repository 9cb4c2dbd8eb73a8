"""SimCLR: NT-Xent on a projection of two views (Chen et al., 2020)."""

from __future__ import annotations

import torch
from torch import nn

from pretext.distributed import gather_with_grad
from pretext.losses import nt_xent
from pretext.methods.base import SSLMethod
from pretext.models import ProjectionHead


class SimCLR(SSLMethod):
    def __init__(
        self,
        encoder: nn.Module,
        temperature: float = 0.2,
        projection_hidden: int = 128,
        projection_dim: int = 64,
    ) -> None:
        # projection_dim 0: the loss sits on the encoder's output, as in the original write-up.
        head = (
            ProjectionHead(encoder.embed_dim, projection_hidden, projection_dim)
            if projection_dim
            else nn.Identity()
        )
        super().__init__(encoder, head)
        self.temperature = temperature

    def criterion(self, z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
        # With several processes, every rank scores its anchors against all ranks' views.
        return nt_xent(gather_with_grad(z1), gather_with_grad(z2), self.temperature)
