"""Which images to label: a budget of labels spread over what the pretrained embedding sees.

A random draw of a few labels per class can miss a way of writing a class entirely (a barred
seven, a one with a foot), and semi-supervised training then teaches that whole style as the
class it lies nearest. Choosing the images to label from the embedding instead (as in
unsupervised selective labelling, Wang et al. 2022) covers its every region: spherical k-means
with one cluster per label, and in each cluster the image nearest its centre. It needs no label,
so it is what a user can run before labelling anything.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from pretext.data import check_label_count, stratified_subset


def plus_plus_centres(unit: torch.Tensor, k: int, generator: torch.Generator) -> torch.Tensor:
    """k rows of `unit` as starting centres (k-means++): each next one drawn with probability
    growing with the square of its cosine distance to the nearest centre so far."""
    first = torch.randint(len(unit), (1,), generator=generator, device=unit.device)
    chosen = [first]
    distance = (1 - unit @ unit[first].T).clamp(min=0).flatten()
    for _ in range(k - 1):
        weights = distance.square() + 1e-12
        row = torch.multinomial(weights, 1, generator=generator)
        chosen.append(row)
        distance = torch.minimum(distance, (1 - unit @ unit[row].T).clamp(min=0).flatten())
    return unit[torch.cat(chosen)]


def spherical_kmeans(
    unit: torch.Tensor, k: int, generator: torch.Generator, iterations: int = 50
) -> tuple[torch.Tensor, torch.Tensor]:
    """(centres, assignment) of k-means on unit-length rows by cosine similarity; a centre
    left without members stays where it was."""
    centres = plus_plus_centres(unit, k, generator)
    for _ in range(iterations):
        assignment = (unit @ centres.T).argmax(1)
        sums = torch.zeros_like(centres).index_add_(0, assignment, unit)
        members = torch.bincount(assignment, minlength=k)[:, None]
        moved = torch.where(members > 0, F.normalize(sums, dim=1), centres)
        if torch.equal(moved, centres):
            break
        centres = moved
    return centres, (unit @ centres.T).argmax(1)


def select_for_labelling(
    features: torch.Tensor, count: int, seed: int, restarts: int = 5, iterations: int = 50
) -> torch.Tensor:
    """The sorted indices of `count` rows of `features` to label: k-means with `count` clusters
    (the best of `restarts` seeded starts by mean similarity to the centres), then in each
    cluster the row nearest its centre; should a cluster end empty, the rows farthest from their
    centres make up the count. No labels are read."""
    if not 0 < count <= len(features):
        raise ValueError(f"count must be in 1..{len(features)}, got {count}")
    unit = F.normalize(features.float(), dim=1)
    generator = torch.Generator(device=unit.device).manual_seed(seed)
    best, best_score = None, -2.0
    for _ in range(restarts):
        centres, assignment = spherical_kmeans(unit, count, generator, iterations)
        score = (unit * centres[assignment]).sum(1).mean().item()
        if score > best_score:
            best, best_score = (centres, assignment), score
    centres, assignment = best
    similarity = unit @ centres.T
    own = torch.arange(count, device=unit.device)[None, :] == assignment[:, None]
    chosen = similarity.masked_fill(~own, -3.0).argmax(0)[own.any(0)]
    if len(chosen) < count:
        fit = similarity.gather(1, assignment[:, None]).flatten()
        fit[chosen] = 3.0  # already chosen
        chosen = torch.cat([chosen, fit.argsort()[: count - len(chosen)]])
    return chosen.sort().values.cpu()


def labelled_subset(
    labels: torch.Tensor, count: int, seed: int, features: torch.Tensor | None = None
) -> torch.Tensor:
    """The sorted indices of the `count` images given labels: chosen from the embedding
    `features` where given (`select_for_labelling`), else drawn at random, even across classes.
    `labels` are read only to check the count and, for the random draw, to stratify."""
    check_label_count(labels, count)
    if features is None:
        return stratified_subset(labels, count, seed)
    return select_for_labelling(features, count, seed)
