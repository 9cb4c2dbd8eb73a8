"""Does a pretrained embedding carry a few labels to every style of its images?

    python benchmarks/propagate.py --run runs/mnist --data-dir ../shared/data
        [--labels 100] [--seeds 1] [--first-seed 0] [--neighbours 10] [--alpha 0.99]
        [--iterations 40] [--limit-train N] [--threads N]

A check of the embedding alone, in seconds, before any fine-tuning: label propagation (Zhou et
al., 2004) over the cosine k-nearest-neighbour graph of the embeddings of all training images
(the validation part, the last 1/6, as unlabelled nodes), from the stratified draw of `--labels`
labels of each seed in the training part, as the semi-supervised benchmark draws them. Where
the propagated labels keep a mistake, no label of the draw reaches those images through the
embedding's neighbourhoods. Prints one JSON object: for each draw the validation accuracy and
five most frequent mistakes (true and predicted class, count) of propagation and, beside it,
of each image's nearest labelled image.
"""

from __future__ import annotations

import argparse
import json
import time

import torch
import torch.nn.functional as F
import validation as split
from throughput import environment

from pretext.augment import preset
from pretext.config import input_stats
from pretext.data import stratified_subset
from pretext.evaluate.classify import extract_features, most_confused


def neighbour_graph(z: torch.Tensor, k: int, power: float = 3.0, chunk: int = 4096):
    """The symmetric sparse graph linking each unit-length row of `z` to its `k` most similar
    other rows, weighted by the cosine similarity (negative ones as 0) to the power `power`."""
    n, neighbours, weights = len(z), [], []
    for start in range(0, n, chunk):
        similarity = z[start : start + chunk] @ z.T
        rows = torch.arange(similarity.shape[0])
        similarity[rows, rows + start] = -2.0  # never its own neighbour
        value, index = similarity.topk(k, dim=1)
        neighbours.append(index)
        weights.append(value.clamp(min=0) ** power)
    rows = torch.arange(n).repeat_interleave(k)
    edges = torch.stack([rows, torch.cat(neighbours).flatten()])
    graph = torch.sparse_coo_tensor(edges, torch.cat(weights).flatten(), (n, n))
    return (graph + graph.t()).coalesce()


def propagate(graph, labelled: torch.Tensor, labels: torch.Tensor, classes: int,
              alpha: float = 0.99, iterations: int = 40) -> torch.Tensor:  # fmt: skip
    """Each node's class after label propagation: F <- alpha S F + (1 - alpha) Y with S the
    graph normalised by its degrees (D^-1/2 W D^-1/2) and Y the one-hot labels of `labelled`."""
    n = graph.shape[0]
    scale = torch.sparse.sum(graph, 1).to_dense().clamp(min=1e-12).rsqrt()[:, None]
    seeds = torch.zeros(n, classes)
    seeds[labelled, labels] = 1.0
    scores = seeds.clone()
    for _ in range(iterations):
        scores = alpha * scale * torch.sparse.mm(graph, scale * scores) + (1 - alpha) * seeds
    return scores.argmax(1)


def one_draw(z, setup, graph, count: int, seed: int, args) -> dict:
    """Propagation and nearest labelled image from the draw of `count` labels of `seed`."""
    train, validation = setup.train, setup.validation
    drawn = stratified_subset(train.labels, count, seed)
    found = propagate(graph, drawn, train.labels[drawn], train.num_classes, args.alpha,
                      args.iterations)[len(train):]  # fmt: skip
    nearest = train.labels[drawn][(z[len(train) :] @ z[drawn].T).argmax(1)]
    row = {"labels": count, "seed": seed}
    for name, predicted in (("propagation", found), ("nearest_labelled", nearest)):
        row[name] = {
            "validation": round((predicted == validation.labels).float().mean().item(), 4),
            "confused": most_confused(predicted, validation.labels),
        }
    return row


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    split.add_options(parser)
    parser.add_argument("--labels", default="100", help="label counts, comma-separated")
    parser.add_argument("--seeds", type=int, default=1, help="how many label draws")
    parser.add_argument("--first-seed", type=int, default=0, help="the first draw's seed")
    parser.add_argument("--neighbours", type=int, default=10, help="k of the graph")
    parser.add_argument("--alpha", type=float, default=0.99)
    parser.add_argument("--iterations", type=int, default=40)
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    setup = split.load(args)
    started = time.perf_counter()
    images = torch.cat([setup.train.images, setup.validation.images])
    aug = preset("none", input_stats(setup.pretrain))
    z = F.normalize(extract_features(setup.encoder, images, aug, torch.device("cpu")), dim=1)
    graph = neighbour_graph(z, min(args.neighbours, len(z) - 1))
    rows = [
        one_draw(z, setup, graph, count, seed, args)
        for count in (int(n) for n in args.labels.split(","))
        for seed in range(args.first_seed, args.first_seed + args.seeds)
    ]
    report = {
        "train": len(setup.train),
        "validation": len(setup.validation),
        "neighbours": args.neighbours,
        "alpha": args.alpha,
        "iterations": args.iterations,
        "seconds": round(time.perf_counter() - started, 1),
        **environment(),
        "rows": rows,
    }
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
