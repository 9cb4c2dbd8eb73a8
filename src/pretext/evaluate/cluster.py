"""Clustering without labels on top of a pretrained encoder (SCAN, Van Gansbeke et al. 2020).

Contrastive embeddings place an image near others of its kind, but spread each kind out (mAP@R
stays far below precision@1). SCAN turns the neighbourhoods into clusters: a softmax head on
the encoder learns to give an image and its mined neighbours the same cluster, and the entropy
of the mean assignment keeps every cluster in use. Labels, where they exist, only score it.
"""

from __future__ import annotations

import copy
import math
import time

import numpy as np
import torch
import torch.nn.functional as F
from scipy.optimize import linear_sum_assignment

from pretext.allocator import phase
from pretext.augment import make_view, preset
from pretext.config import ClusterConfig
from pretext.data.stats import InputStats
from pretext.evaluate.classify import extract_features
from pretext.loop import descend, run_epochs, steps_per_epoch
from pretext.matmul import product_transposed
from pretext.models import Classifier


@torch.inference_mode()
def nearest_neighbours(features: torch.Tensor, k: int, chunk_size: int = 256) -> torch.Tensor:
    """(N, k) indices of each row's k most cosine-similar other rows, computed in small chunks
    so that no N x N matrix is held, topk writing into buffers made once (fresh results per
    large chunk fragmented the heap that pretext.allocator keeps)."""
    if not 0 < k < len(features):
        raise ValueError(f"k must be in 1..{len(features) - 1}, got {k}")
    unit = F.normalize(features.float(), dim=1)
    indices = torch.empty(len(unit), k, dtype=torch.long, device=unit.device)
    values = torch.empty(min(chunk_size, len(unit)), k, device=unit.device)
    for start in range(0, len(unit), chunk_size):
        sims = product_transposed(unit[start : start + chunk_size], unit)
        rows = torch.arange(len(sims), device=sims.device)
        sims[rows, rows + start] = -math.inf  # an image is not its own neighbour
        torch.topk(sims, k, dim=1, out=(values[: len(sims)], indices[start : start + len(sims)]))
    return indices


def scan_loss(
    probs_anchor: torch.Tensor, probs_neighbour: torch.Tensor, entropy_weight: float
) -> torch.Tensor:
    """-mean log <p(x), p(n)> - w H(mean p): neighbours agree, confidently, and the batch's
    mean assignment stays spread over all clusters (the mean is over anchors and neighbours)."""
    agreement = (probs_anchor * probs_neighbour).sum(1)
    consistency = -torch.log(agreement.clamp_min(1e-8)).mean()
    mean = torch.cat([probs_anchor, probs_neighbour]).mean(0)
    entropy = -(mean * torch.log(mean.clamp_min(1e-8))).sum()
    return consistency - entropy_weight * entropy


@phase
def train_clusters(
    encoder: torch.nn.Module,
    images: torch.Tensor,
    cfg: ClusterConfig,
    device: torch.device,
    log=print,
    stats: InputStats | None = None,
) -> torch.nn.Module:
    """Encoder copy + Linear(embed, clusters), trained with the SCAN loss on uint8 `images`
    (normalised by `stats`, the run's); its argmax is the cluster. The caller's encoder stays
    as it was."""
    if cfg.clusters < 2:
        raise ValueError(f"clusters must be at least 2, got {cfg.clusters}")
    aug = preset(cfg.augment or "default", stats)
    images = images.to(device)
    started = time.perf_counter()
    neighbours = nearest_neighbours(
        extract_features(encoder, images, preset("none", stats), device), cfg.neighbours
    )
    log(
        f"mined {cfg.neighbours} neighbours of {len(images)} images "
        f"({time.perf_counter() - started:.1f}s)"
    )
    model = Classifier(copy.deepcopy(encoder), cfg.clusters, seed=cfg.seed).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    generator = torch.Generator(device).manual_seed(cfg.seed)
    batch = min(cfg.batch_size, len(images))
    total = torch.zeros((), device=device)

    def step(anchors: torch.Tensor, n: int) -> None:
        pick = torch.randint(cfg.neighbours, (len(anchors),), generator=generator, device=device)
        partners = neighbours[anchors, pick]
        # Anchors and neighbours in one forward pass: batch statistics see both.
        pair = images.index_select(0, torch.cat([anchors, partners]))
        probs = model(make_view(pair, aug, generator)).softmax(1)
        loss = scan_loss(*probs.chunk(2), cfg.entropy_weight)
        descend(optimizer, loss)
        total.add_(loss.detach())

    def end_epoch(epoch: int) -> None:
        mean = total.item() / steps_per_epoch(len(images), batch, drop_last=True)
        log(f"cluster epoch {epoch + 1}/{cfg.epochs}  loss {mean:.4f}")
        total.zero_()

    model.train()
    run_epochs(
        step,
        len(images),
        batch,
        cfg.epochs,
        cfg.seed,
        device,
        "cluster",
        end_epoch=end_epoch,
        drop_last=True,
    )
    model.eval()
    return model


@torch.inference_mode()
def cluster_probabilities(
    model: torch.nn.Module,
    images: torch.Tensor,
    device: torch.device,
    stats: InputStats | None = None,
) -> torch.Tensor:
    """(N, clusters) softmax of the clustering head for uint8 images, on the CPU."""
    return extract_features(model, images, preset("none", stats), device).softmax(1).cpu()


def assign_clusters(
    model: torch.nn.Module,
    images: torch.Tensor,
    device: torch.device,
    stats: InputStats | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Cluster index and confidence (the softmax maximum) of each uint8 image."""
    confidence, cluster = cluster_probabilities(model, images, device, stats).max(1)
    return cluster, confidence


def match_clusters(
    membership: torch.Tensor,
    labels: torch.Tensor,
    num_clusters: int,
    num_classes: int | None = None,
) -> torch.Tensor:
    """The class of each cluster that best agrees with `labels`: one-to-one (Hungarian) when
    there are as many clusters as classes, else each cluster's majority class.

    `membership` is each labelled image's cluster (N) or its cluster probabilities (N x
    clusters). Probabilities name clusters more reliably from a handful of labels: an image on
    the edge of a wrong cluster still votes for the right one (on validation, one label per
    class: 1 wrong naming in 30 draws against 5 with hard counts)."""
    num_classes = num_classes or int(labels.max()) + 1
    if membership.dim() == 1:
        membership = F.one_hot(membership, num_clusters)
    votes = membership.double().T @ F.one_hot(labels, num_classes).double()
    votes = votes.numpy()
    if num_clusters == num_classes:
        rows, cols = linear_sum_assignment(-votes)
        mapping = np.empty(num_clusters, dtype=np.int64)
        mapping[rows] = cols
        return torch.from_numpy(mapping)
    return torch.from_numpy(votes.argmax(1))


def named_accuracy(mapping: torch.Tensor, clusters: torch.Tensor, labels: torch.Tensor) -> float:
    """Fraction of images whose cluster's class (`mapping`, from match_clusters) is their label."""
    return (mapping[clusters] == labels).float().mean().item()


def cluster_accuracy(clusters: torch.Tensor, labels: torch.Tensor, num_clusters: int) -> float:
    """The usual score of unsupervised classification: clusters matched to the very labels
    they are scored on."""
    return named_accuracy(match_clusters(clusters, labels, num_clusters), clusters, labels)
