"""Retrieval metrics with test images as queries and training images as the database:
precision@1, precision@10 and mAP@R (Musgrave et al., 2020), computed in query chunks."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from pretext.matmul import product_transposed


def retrieval_metrics(
    database: torch.Tensor,
    database_labels: torch.Tensor,
    queries: torch.Tensor,
    query_labels: torch.Tensor,
    chunk_size: int = 128,
) -> dict:
    """Cosine-similarity ranking. mAP@R: for a query whose class has R database items, the mean
    over the first R results of precision-at-i where result i is relevant, divided by R."""
    database = F.normalize(database.float(), dim=1)
    queries = F.normalize(queries.float(), dim=1)
    database_labels = database_labels.to(database.device)
    query_labels = query_labels.to(database.device)
    class_sizes = torch.bincount(database_labels, minlength=int(query_labels.max()) + 1)
    max_r = int(class_sizes.max())
    p1, p10, map_r = [], [], []
    for start in range(0, len(queries), chunk_size):
        q_labels = query_labels[start : start + chunk_size]
        sims = product_transposed(queries[start : start + chunk_size], database)
        idx = sims.topk(min(max(max_r, 10), len(database)), dim=1).indices
        relevant = (database_labels[idx] == q_labels[:, None]).float()
        p1.append(relevant[:, 0].clone())  # a view would keep the chunk's whole matrix alive
        p10.append(relevant[:, :10].sum(1) / 10)
        r = class_sizes[q_labels].clamp(min=1)
        ranks = torch.arange(1, relevant.shape[1] + 1, device=relevant.device)
        within = (ranks[None, :] <= r[:, None]).float()
        precision_at_i = (relevant * within).cumsum(1) / ranks
        map_r.append((precision_at_i * relevant * within).sum(1) / r)
    return {
        "precision_at_1": torch.cat(p1).mean().item(),
        "precision_at_10": torch.cat(p10).mean().item(),
        "map_at_r": torch.cat(map_r).mean().item(),
    }
