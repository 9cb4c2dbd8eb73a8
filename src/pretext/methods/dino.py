"""DINO: self-distillation to an EMA teacher whose outputs are centred and sharpened
(Caron et al., 2021); two views, no multi-crop."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from pretext.losses import dino_loss
from pretext.methods.base import SSLMethod, one_batch
from pretext.methods.momentum import cosine_momentum, ema_update, frozen_copy
from pretext.models import ProjectionHead


class DINO(SSLMethod):
    def __init__(
        self,
        encoder: nn.Module,
        projection_hidden: int = 128,
        prototypes: int = 512,
        base_momentum: float = 0.99,
        center_momentum: float = 0.9,
        student_temperature: float = 0.1,
        teacher_temperature: float = 0.04,
    ) -> None:
        super().__init__(encoder, ProjectionHead(encoder.embed_dim, projection_hidden, prototypes))
        self.teacher_encoder = frozen_copy(encoder)
        self.teacher_head = frozen_copy(self.head)
        self.register_buffer("center", torch.zeros(1, prototypes))
        self.base_momentum, self.center_momentum = base_momentum, center_momentum
        self.student_temperature, self.teacher_temperature = (
            student_temperature,
            teacher_temperature,
        )

    def forward(self, views: torch.Tensor | Sequence[torch.Tensor]) -> torch.Tensor:
        x = one_batch(views)  # one batch for both networks
        s1, s2 = self.head(self.encoder(x)).chunk(2)
        with torch.no_grad():
            teacher = self.teacher_head(self.teacher_encoder(x))
        t1, t2 = teacher.chunk(2)
        center = self.center.clone()
        loss = (
            dino_loss(s1, t2, center, self.student_temperature, self.teacher_temperature)
            + dino_loss(s2, t1, center, self.student_temperature, self.teacher_temperature)
        ) / 2
        with torch.no_grad():
            self.center.mul_(self.center_momentum).add_(
                teacher.float().mean(0, keepdim=True), alpha=1 - self.center_momentum
            )
        return loss

    def after_step(self, progress: float) -> None:
        momentum = cosine_momentum(self.base_momentum, progress)
        ema_update(self.encoder, self.teacher_encoder, momentum)
        ema_update(self.head, self.teacher_head, momentum)
