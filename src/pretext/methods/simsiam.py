"""SimSiam: a predictor on one branch, stop-gradient on the other; no negatives, no momentum
encoder (Chen & He, 2021)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from pretext.losses import negative_cosine
from pretext.methods.base import SSLMethod, one_batch
from pretext.models import ProjectionHead


class SimSiam(SSLMethod):
    def __init__(
        self,
        encoder: nn.Module,
        projection_hidden: int = 128,
        projection_dim: int = 64,
    ) -> None:
        dim = projection_dim
        super().__init__(encoder, ProjectionHead(encoder.embed_dim, projection_hidden, dim))
        self.predictor = ProjectionHead(dim, max(dim // 2, 16), dim)

    def forward(self, views: torch.Tensor | Sequence[torch.Tensor]) -> torch.Tensor:
        z = self.head(self.encoder(one_batch(views)))
        p1, p2 = self.predictor(z).chunk(2)
        z1, z2 = z.chunk(2)
        return (negative_cosine(p1, z2) + negative_cosine(p2, z1)) / 2
