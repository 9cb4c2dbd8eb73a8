"""Helpers for methods with a slowly moving copy of the network (MoCo, BYOL, DINO)."""

from __future__ import annotations

import copy
import math

import torch
from torch import nn


def frozen_copy(module: nn.Module) -> nn.Module:
    target = copy.deepcopy(module)
    for p in target.parameters():
        p.requires_grad_(False)
    return target


@torch.no_grad()
def ema_update(online: nn.Module, target: nn.Module, momentum: float) -> None:
    """target <- momentum * target + (1 - momentum) * online, for weights and buffers."""
    for o, t in zip(online.parameters(), target.parameters(), strict=True):
        t.mul_(momentum).add_(o.detach(), alpha=1 - momentum)
    for o, t in zip(online.buffers(), target.buffers(), strict=True):
        t.copy_(o)


def cosine_momentum(base: float, progress: float) -> float:
    """BYOL's schedule: from `base` at the start to 1 at the end of training."""
    return 1 - (1 - base) * (math.cos(math.pi * progress) + 1) / 2
