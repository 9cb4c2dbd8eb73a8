"""Seeded index sampling: per-epoch order, per-rank shards, stratified label subsets."""

from __future__ import annotations

import torch

from pretext.errors import PretextError


def epoch_order(n: int, seed: int, epoch: int) -> torch.Tensor:
    """The shuffled order of epoch `epoch`: a pure function of (seed, epoch), so resume is exact."""
    generator = torch.Generator().manual_seed(seed * 100_003 + epoch)
    return torch.randperm(n, generator=generator)


def shard(order: torch.Tensor, rank: int, world_size: int, batch_size: int) -> torch.Tensor:
    """This rank's disjoint share of an epoch's order, a whole number of batches per rank."""
    usable = (len(order) // (batch_size * world_size)) * batch_size * world_size
    return order[:usable].view(-1, world_size, batch_size)[:, rank].reshape(-1)


def check_label_count(labels: torch.Tensor, count: int) -> None:
    """A labelled subset needs one image per class at least, and no more than there are."""
    classes = int(labels.max()) + 1
    if count < classes:
        raise PretextError(f"--labels {count} is fewer than the {classes} classes")
    if count > len(labels):
        raise PretextError(f"--labels {count} is more than the {len(labels)} labelled images")


def stratified_subset(labels: torch.Tensor, count: int, seed: int) -> torch.Tensor:
    """Exactly `count` indices, as even across classes as possible, reproducible by seed."""
    check_label_count(labels, count)
    classes = int(labels.max()) + 1
    generator = torch.Generator().manual_seed(seed)
    per_class = [torch.nonzero(labels == c).flatten() for c in range(classes)]
    per_class = [idx[torch.randperm(len(idx), generator=generator)] for idx in per_class]
    quota = [count // classes] * classes
    for c in torch.randperm(classes, generator=generator)[: count % classes].tolist():
        quota[c] += 1
    # A class short of its quota hands the rest to the others, largest first.
    short = 0
    for c in range(classes):
        if quota[c] > len(per_class[c]):
            short += quota[c] - len(per_class[c])
            quota[c] = len(per_class[c])
    for c in sorted(range(classes), key=lambda c: -len(per_class[c])):
        extra = min(short, len(per_class[c]) - quota[c])
        quota[c] += extra
        short -= extra
    chosen = torch.cat([per_class[c][: quota[c]] for c in range(classes)])
    return chosen.sort().values
