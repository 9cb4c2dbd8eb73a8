"""What every training loop shares: the learning-rate schedule, the optimizer step, and the
epoch loop of the downstream trainers (fine-tuning, linear probe, semi-supervised fine-tuning,
clustering).

An epoch visits the items in `epoch_order(size, seed, epoch)`, a pure function of its
arguments, so a loop that resumes at an epoch sees the batches it would have seen.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from pretext.data import epoch_order
from pretext.progress import step_bar


def cosine_factor(step: int, total: int) -> float:
    """The cosine decay from 1 at step 0 to 0 at step `total`."""
    return 0.5 * (1 + math.cos(math.pi * step / total))


def scheduled_lr(
    base: float, step: int, total: int, warmup: int = 0, shape: str = "cosine"
) -> float:
    """The learning rate at `step` of `total`: a linear warm-up over `warmup` steps, then
    constant or cosine-decayed to 0 over the steps after the warm-up."""
    if step < warmup:
        return base * (step + 1) / warmup
    if shape == "constant":
        return base
    return base * cosine_factor(step - warmup, max(1, total - warmup))


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr


def descend(optimizer: torch.optim.Optimizer, loss: torch.Tensor) -> None:
    """One optimizer step on `loss` (gradients cleared first, to None)."""
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


def steps_per_epoch(size: int, batch_size: int, drop_last: bool = False) -> int:
    return size // batch_size if drop_last else math.ceil(size / batch_size)


def run_epochs(
    step: Callable[[torch.Tensor, int], None],
    size: int,
    batch_size: int,
    epochs: int,
    seed: int,
    device: torch.device,
    label: str | None = None,
    first_epoch: int = 0,
    end_epoch: Callable[[int], None] | None = None,
    drop_last: bool = False,
) -> None:
    """Epochs `first_epoch`..`epochs - 1` over `size` items in batches: `step(indices, n)` for
    each batch, n counting steps from the first epoch; `end_epoch(epoch)` after each epoch.
    With a `label`, a progress bar shows the epoch's steps."""
    per_epoch = steps_per_epoch(size, batch_size, drop_last)
    count = first_epoch * per_epoch
    for epoch in range(first_epoch, epochs):
        order = epoch_order(size, seed, epoch).to(device)
        batches = range(per_epoch)
        if label is not None:
            batches = step_bar(batches, f"{label} {epoch + 1}/{epochs}")
        for i in batches:
            step(order[i * batch_size : (i + 1) * batch_size], count)
            count += 1
        if end_epoch is not None:
            end_epoch(epoch)
