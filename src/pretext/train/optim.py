"""The pretraining optimizers: Adam, SGD with momentum, and LARS."""

from __future__ import annotations

import torch

from pretext.config import PretrainConfig


class LARS(torch.optim.Optimizer):
    """SGD with momentum and layer-wise trust ratios (You et al., 2017); biases and norms skip
    the adaptation and the weight decay, as in SimCLR."""

    def __init__(
        self,
        params,
        lr: float,
        momentum: float = 0.9,
        weight_decay: float = 0.0,
        trust: float = 0.001,
    ) -> None:
        super().__init__(
            params, dict(lr=lr, momentum=momentum, weight_decay=weight_decay, trust=trust)
        )

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                grad = p.grad
                if p.ndim > 1:
                    grad = grad.add(p, alpha=group["weight_decay"])
                    w_norm, g_norm = torch.linalg.norm(p), torch.linalg.norm(grad)
                    ratio = torch.where(
                        (w_norm > 0) & (g_norm > 0),
                        group["trust"] * w_norm / g_norm,
                        torch.ones_like(w_norm),
                    )
                    grad = grad * ratio
                buf = self.state[p].setdefault("momentum", torch.zeros_like(p))
                buf.mul_(group["momentum"]).add_(grad)
                p.add_(buf, alpha=-group["lr"])


def build_optimizer(cfg: PretrainConfig, params) -> torch.optim.Optimizer:
    if cfg.optimizer == "adam":
        # The fused kernel updates all tensors in one pass (CPU and CUDA): faster for small
        # models, where per-tensor launches dominate the optimizer step.
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay, fused=True)
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=0.9, weight_decay=cfg.weight_decay)
    return LARS(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
