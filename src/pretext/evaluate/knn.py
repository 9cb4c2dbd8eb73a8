"""k-nearest-neighbour classification on frozen embeddings: cosine similarity, votes weighted
by exp(sim / t) as in instance discrimination (Wu et al., 2018). Queries go in chunks, so a
60,000 x 10,000 comparison never holds the full similarity matrix."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from pretext.matmul import product_transposed


def knn_predict(
    bank: torch.Tensor,
    bank_labels: torch.Tensor,
    queries: torch.Tensor,
    num_classes: int,
    k: int = 200,
    temperature: float = 0.1,
    chunk_size: int = 256,
) -> torch.Tensor:
    """Predicted class of each query from its k most similar bank items."""
    bank = F.normalize(bank.float(), dim=1)
    queries = F.normalize(queries.float(), dim=1)
    k = min(k, len(bank))
    predictions = []
    for start in range(0, len(queries), chunk_size):
        sims, idx = product_transposed(queries[start : start + chunk_size], bank).topk(k, dim=1)
        weights = (sims / temperature).exp()
        votes = torch.zeros(len(sims), num_classes, device=bank.device, dtype=weights.dtype)
        votes.scatter_add_(1, bank_labels[idx], weights)
        predictions.append(votes.argmax(1))
    return torch.cat(predictions)


def knn_accuracy(
    bank: torch.Tensor,
    bank_labels: torch.Tensor,
    queries: torch.Tensor,
    query_labels: torch.Tensor,
    k: int = 200,
    temperature: float = 0.1,
) -> float:
    num_classes = int(max(bank_labels.max(), query_labels.max())) + 1
    predicted = knn_predict(bank, bank_labels.to(bank.device), queries, num_classes, k, temperature)
    return (predicted.cpu() == query_labels.cpu()).float().mean().item()
