"""Methods that regularise the embedding's statistics instead of using negatives:
Barlow Twins (Zbontar et al., 2021) and VICReg (Bardes et al., 2022)."""

from __future__ import annotations

import torch
from torch import nn

from pretext.distributed import gather_with_grad
from pretext.losses import barlow_twins_loss, vicreg_loss
from pretext.methods.base import SSLMethod
from pretext.models import ProjectionHead


class BarlowTwins(SSLMethod):
    def __init__(
        self,
        encoder: nn.Module,
        projection_hidden: int = 512,
        projection_dim: int = 256,
        lambd: float = 5e-3,
    ) -> None:
        head = ProjectionHead(encoder.embed_dim, projection_hidden, projection_dim)
        super().__init__(encoder, head)
        self.lambd = lambd

    def criterion(self, z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
        return barlow_twins_loss(gather_with_grad(z1), gather_with_grad(z2), self.lambd)


class VICReg(SSLMethod):
    def __init__(
        self,
        encoder: nn.Module,
        projection_hidden: int = 512,
        projection_dim: int = 256,
    ) -> None:
        head = ProjectionHead(encoder.embed_dim, projection_hidden, projection_dim)
        super().__init__(encoder, head)

    def criterion(self, z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
        return vicreg_loss(gather_with_grad(z1), gather_with_grad(z2))
