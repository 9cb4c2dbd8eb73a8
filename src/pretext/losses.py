"""Loss functions: pure functions of tensors, no state."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float = 0.5) -> torch.Tensor:
    """NT-Xent (SimCLR) averaged over all 2N anchors.

    Row i of z1 and row i of z2 are two views of one image (the positive pair); every other of
    the 2N - 2 views is a negative. Computed as a cross-entropy over cosine similarities with
    the self-similarity masked out, which is the logsumexp form and stays finite at small t.
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    n = z1.shape[0]
    if n < 2 or z2.shape[0] != n:
        raise ValueError(f"nt_xent needs two batches of equal size >= 2, got {n} and {z2.shape[0]}")
    z = F.normalize(torch.cat([z1, z2]).float(), dim=1)
    logits = (z @ z.T) / temperature
    self_mask = torch.eye(2 * n, dtype=torch.bool, device=z.device)
    logits = logits.masked_fill(self_mask, float("-inf"))
    targets = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)]).to(z.device)
    return F.cross_entropy(logits, targets)
