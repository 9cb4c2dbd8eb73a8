"""MoCo v2: a momentum encoder makes keys, a FIFO queue of past keys gives the negatives,
InfoNCE on an MLP projection (He et al., 2020; Chen et al., 2020)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from pretext.distributed import gather_with_grad
from pretext.losses import info_nce
from pretext.methods.base import SSLMethod, one_batch
from pretext.methods.memory import push_fifo
from pretext.methods.momentum import ema_update, frozen_copy
from pretext.models import ProjectionHead


class MoCo(SSLMethod):
    def __init__(
        self,
        encoder: nn.Module,
        temperature: float = 0.2,
        projection_hidden: int = 128,
        projection_dim: int = 64,
        queue_size: int = 4096,
        momentum: float = 0.99,
    ) -> None:
        head = ProjectionHead(encoder.embed_dim, projection_hidden, projection_dim)
        super().__init__(encoder, head)
        self.temperature = temperature
        self.momentum = momentum
        self.key_encoder = frozen_copy(encoder)
        self.key_head = frozen_copy(head)
        queue = F.normalize(torch.randn(projection_dim, queue_size), dim=0)
        self.register_buffer("queue", queue)
        self.register_buffer("queue_ptr", torch.zeros((), dtype=torch.long))

    def forward(self, views: torch.Tensor | Sequence[torch.Tensor]) -> torch.Tensor:
        x = one_batch(views)  # one batch for both networks
        q1, q2 = self.head(self.encoder(x)).chunk(2)
        with torch.no_grad():
            k1, k2 = self.key_head(self.key_encoder(x)).chunk(2)
        queue = self.queue.clone()
        loss = (
            info_nce(q1, k2, queue, self.temperature) + info_nce(q2, k1, queue, self.temperature)
        ) / 2
        self.enqueue(F.normalize(torch.cat([k1, k2]), dim=1))
        return loss

    @torch.no_grad()
    def enqueue(self, keys: torch.Tensor) -> None:
        """Replace the oldest keys with the newest (keys from every rank under torchrun)."""
        push_fifo(self.queue.T, self.queue_ptr, gather_with_grad(keys))

    def after_step(self, progress: float) -> None:
        ema_update(self.encoder, self.key_encoder, self.momentum)
        ema_update(self.head, self.key_head, self.momentum)
