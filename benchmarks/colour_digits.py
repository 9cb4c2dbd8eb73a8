"""What colour views buy where colour is a pure nuisance: MNIST digits with the strokes and the
background each painted in a random colour (class = digit). The same encoder, budget and seed
pretrain with each preset of views; kNN and linear-probe test accuracy of the frozen encoder
say how much of the digit it learnt rather than the colours. A randomly initialised encoder is
the floor; the same encoder's grayscale MNIST run (`--gray-run`) the ceiling.

    python benchmarks/colour_digits.py --data-dir ../shared/data [--presets default,simclr,duotone]
        [--epochs 40] [--limit-train N] [--gray-run RUN] [--runs runs/colour-digits] [--threads N]

Prints one JSON object (and one line per preset on stderr as it finishes).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
from methods import frozen_scores
from throughput import environment

from pretext.config import PretrainConfig, input_stats
from pretext.data import load_dataset
from pretext.data.stats import training_stats
from pretext.models import build_encoder
from pretext.rundir import load_encoder, pretrain_config, read_summary
from pretext.train import pretrain


def colour_digits(images: torch.Tensor, seed: int) -> np.ndarray:
    """uint8 N x 1 x H x W digits -> N x 3 x H x W: each image's background and strokes in two
    uniformly random colours, blended by the digit's ink (0 background, 255 full stroke)."""
    rng = np.random.default_rng(seed)
    n = len(images)
    background = rng.random((n, 3, 1, 1), dtype=np.float32)
    stroke = rng.random((n, 3, 1, 1), dtype=np.float32)
    ink = images.numpy().astype(np.float32) / 255.0
    return np.rint((background + ink * (stroke - background)) * 255).astype(np.uint8)


def write_colour_set(data_dir: str | None, limit: int | None, path: Path) -> Path:
    """The coloured training (first `limit`) and test images as an .npz pretext reads."""
    train = load_dataset("mnist", "train", data_dir).first(limit)
    test = load_dataset("mnist", "test", data_dir)
    np.savez(
        path,
        images=colour_digits(train.images, seed=1),
        labels=train.labels.numpy(),
        test_images=colour_digits(test.images, seed=2),
        test_labels=test.labels.numpy(),
    )
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--presets", default="default,simclr,duotone")
    parser.add_argument("--epochs", type=int, default=PretrainConfig.epochs)
    parser.add_argument("--limit-train", type=int, default=None)
    parser.add_argument("--encoder", default=PretrainConfig.encoder)
    parser.add_argument("--gray-run", default=None, help="the encoder's grayscale MNIST run")
    parser.add_argument("--runs", default="runs/colour-digits")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    runs = Path(args.runs)
    runs.mkdir(parents=True, exist_ok=True)
    path = write_colour_set(args.data_dir, args.limit_train, runs / "colour-digits.npz")
    train, test = load_dataset(str(path), "train"), load_dataset(str(path), "test")
    rows = []

    def record(row: dict) -> None:
        rows.append(row)
        print(json.dumps(row), file=sys.stderr, flush=True)

    stats = training_stats(str(path), train.images)
    random_encoder = build_encoder(args.encoder, 3, 28, seed=args.seed).to(device)
    record({"views": "random encoder", **frozen_scores(random_encoder, train, test, device, stats)})
    for name in args.presets.split(","):
        out = runs / name
        cfg = PretrainConfig(
            dataset=str(path),
            out=str(out),
            encoder=args.encoder,
            augment=name,
            epochs=args.epochs,
            seed=args.seed,
            knn_monitor=0,
            overwrite=True,
        )
        pretrain(cfg, log=lambda *_: None)
        scores = frozen_scores(
            load_encoder(out, device), train, test, device, input_stats(pretrain_config(out))
        )
        record({"views": name, **scores, "pretrain_seconds": read_summary(out)["seconds"]})
    if args.gray_run:
        gray = pretrain_config(args.gray_run)
        mnist = [load_dataset("mnist", s, args.data_dir) for s in ("train", "test")]
        encoder = load_encoder(args.gray_run, device)
        scores = frozen_scores(encoder, *mnist, device, input_stats(gray))
        record({"views": f"grayscale MNIST ({gray.augment})", **scores})
    print(
        json.dumps(
            {
                "benchmark": "colour_digits",
                "device": str(device),
                "environment": environment(),
                "train_images": len(train),
                "epochs": args.epochs,
                "encoder": args.encoder,
                "rows": rows,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
