"""DINO: self-distillation to an EMA teacher whose outputs are centred and sharpened
(Caron et al., 2021); two views, or multi-crop views (`pretext.augment.MultiCrop`): the teacher
sees the two global crops, the student every crop."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from pretext.augment import MultiCrop
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

    def forward(self, views: torch.Tensor | Sequence[torch.Tensor] | MultiCrop) -> torch.Tensor:
        local = None
        if isinstance(views, MultiCrop):
            views, local = views.global_views, one_batch(views.local_views)
        x = one_batch(views)  # the global views: one batch for both networks
        students = self.head(self.encoder(x)).chunk(2)
        if local is not None:  # another size: its own pass through the student
            students += self.head(self.encoder(local)).chunk(len(local) // len(students[0]))
        with torch.no_grad():
            teacher = self.teacher_head(self.teacher_encoder(x))
        loss = self.distillation(students, teacher.chunk(2), self.center.clone())
        with torch.no_grad():
            self.center.mul_(self.center_momentum).add_(
                teacher.float().mean(0, keepdim=True), alpha=1 - self.center_momentum
            )
        return loss

    def distillation(self, students, teachers, center: torch.Tensor) -> torch.Tensor:
        """The mean DINO loss over every (teacher view, other student view) pair: each global
        view teaches the other global view and every local one."""
        temperatures = (self.student_temperature, self.teacher_temperature)
        pairs = [
            dino_loss(s, t, center, *temperatures)
            for i, t in enumerate(teachers)
            for j, s in enumerate(students)
            if j != i
        ]
        return torch.stack(pairs).mean()

    def after_step(self, progress: float) -> None:
        momentum = cosine_momentum(self.base_momentum, progress)
        ema_update(self.encoder, self.teacher_encoder, momentum)
        ema_update(self.head, self.teacher_head, momentum)
