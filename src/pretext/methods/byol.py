"""BYOL: an online network with a predictor learns to predict an EMA target network's
projection of the other view; no negatives (Grill et al., 2020)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from pretext.losses import byol_loss
from pretext.methods.base import SSLMethod, one_batch
from pretext.methods.momentum import cosine_momentum, ema_update, frozen_copy
from pretext.models import ProjectionHead


class BYOL(SSLMethod):
    def __init__(
        self,
        encoder: nn.Module,
        projection_hidden: int = 128,
        projection_dim: int = 64,
        base_momentum: float = 0.99,
    ) -> None:
        dim = projection_dim
        super().__init__(encoder, ProjectionHead(encoder.embed_dim, projection_hidden, dim))
        self.predictor = ProjectionHead(dim, projection_hidden, dim)
        self.target_encoder = frozen_copy(encoder)
        self.target_head = frozen_copy(self.head)
        self.base_momentum = base_momentum
        self.momentum = base_momentum

    def forward(self, views: torch.Tensor | Sequence[torch.Tensor]) -> torch.Tensor:
        x = one_batch(views)  # one batch for both networks
        p1, p2 = self.predictor(self.head(self.encoder(x))).chunk(2)
        with torch.no_grad():
            z1, z2 = self.target_head(self.target_encoder(x)).chunk(2)
        return (byol_loss(p1, z2) + byol_loss(p2, z1)) / 2

    def after_step(self, progress: float) -> None:
        self.momentum = cosine_momentum(self.base_momentum, progress)
        ema_update(self.encoder, self.target_encoder, self.momentum)
        ema_update(self.head, self.target_head, self.momentum)
