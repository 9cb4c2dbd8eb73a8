"""The kNN monitor of pretraining: each epoch, held-out training images are classified by
their nearest neighbours among other training images. A cheap signal, never a result."""

from __future__ import annotations

from collections.abc import Callable

import torch

from pretext.augment import Augmentation
from pretext.evaluate.classify import extract_features
from pretext.evaluate.knn import knn_accuracy


def monitor_split(labels: torch.Tensor | None, size: int, seed: int):
    """Fixed bank and query indices for the monitor (None without labels or with size 0)."""
    if labels is None or size <= 0:
        return None
    chosen = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed + 1))
    chosen = chosen[: min(size, len(labels))]
    cut = max(1, len(chosen) * 5 // 6)
    return chosen[:cut], chosen[cut:]


def knn_monitor(
    encoder: torch.nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor | None,
    size: int,
    seed: int,
    aug: Augmentation,
    device: torch.device,
) -> Callable[[], float] | None:
    """A function that scores `encoder` as it is now (None when there is nothing to score)."""
    split = monitor_split(labels, size, seed)
    if split is None:
        return None
    bank, queries = split

    def score() -> float:
        if len(queries) == 0:
            return float("nan")
        bank_x = extract_features(encoder, images[bank.to(images.device)], aug, device)
        query_x = extract_features(encoder, images[queries.to(images.device)], aug, device)
        return knn_accuracy(bank_x, labels[bank], query_x, labels[queries])

    return score
