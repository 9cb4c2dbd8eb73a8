"""NNCLR: SimCLR whose positive is the nearest neighbour of a view among recent embeddings of
other images (Dwibedi et al., 2021). Augmentations only teach invariance to what they do;
a neighbour is another real image of (most likely) the same kind, so the pairs also cover the
variation between images, such as handwriting style."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from pretext.distributed import gather_with_grad
from pretext.losses import nt_xent
from pretext.methods.base import SSLMethod
from pretext.methods.memory import push_fifo
from pretext.models import ProjectionHead


def nearest_neighbours(z: torch.Tensor, support: torch.Tensor) -> torch.Tensor:
    """For each row of z, the most cosine-similar row of `support` (both L2-normalised)."""
    return support[(z @ support.T).argmax(dim=1)]


class NNCLR(SSLMethod):
    def __init__(
        self,
        encoder: nn.Module,
        temperature: float = 0.2,
        projection_hidden: int = 128,
        projection_dim: int = 64,
        support_size: int = 8192,
        start: float = 0.1,
    ) -> None:
        dim = projection_dim
        super().__init__(encoder, ProjectionHead(encoder.embed_dim, projection_hidden, dim))
        self.temperature = temperature
        self.start = start  # share of training that is plain SimCLR while the support set fills
        self.register_buffer("support", F.normalize(torch.randn(support_size, dim), dim=1))
        self.register_buffer("support_ptr", torch.zeros((), dtype=torch.long))
        self.register_buffer("progress", torch.zeros(()))  # saved, so a resumed run knows
        self.use_neighbours = False  # its mirror on the host: no device sync in forward()

    def criterion(self, z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
        z1, z2 = gather_with_grad(z1), gather_with_grad(z2)
        if not self.use_neighbours:
            loss = nt_xent(z1, z2, self.temperature)
        else:
            with torch.no_grad():
                support = self.support.to(z1.dtype)
                n1 = nearest_neighbours(F.normalize(z1.detach(), dim=1), support)
                n2 = nearest_neighbours(F.normalize(z2.detach(), dim=1), support)
            loss = (nt_xent(n1, z2, self.temperature) + nt_xent(z1, n2, self.temperature)) / 2
        self.remember(F.normalize(z1.detach().float(), dim=1))
        return loss

    def remember(self, z: torch.Tensor) -> None:
        """Replace the oldest embeddings of the support set with the newest."""
        push_fifo(self.support, self.support_ptr, z)

    def after_step(self, progress: float) -> None:
        self.progress.fill_(progress)
        self.use_neighbours = progress >= self.start

    def _load_from_state_dict(self, *args, **kwargs) -> None:
        super()._load_from_state_dict(*args, **kwargs)
        self.use_neighbours = float(self.progress) >= self.start  # once, when resuming
