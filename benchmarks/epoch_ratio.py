"""A default-recipe pretraining epoch against the model alone, in one process.

    python benchmarks/epoch_ratio.py --data-dir ../shared/data [--epochs 2] [--repeats 2]
        [--threads N] [--seconds S] [--dataset mnist]

Each repeat measures the `cnn` model step at the default batch size (throughput.py's `measure`:
images per second of forward + backward + Adam on a ready batch), then runs `pretrain` with the
default recipe for --epochs epochs. ratio = epoch seconds / (epoch images / model images per
second), where an epoch's images are two views of every image its steps drew; the epoch seconds
are the training loop's, as metrics.jsonl records them (the kNN monitor and the checkpoint
come after). Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import torch
from throughput import environment, measure

from pretext.allocator import keep_freed_memory
from pretext.checkpoint import read_jsonl
from pretext.config import PretrainConfig
from pretext.train import pretrain


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--dataset", default="mnist")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--seconds", type=float, default=5.0, help="model timing per repeat")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    keep_freed_memory()  # as pretrain() does
    images = torch.randint(
        0, 256, (60000, 1, 28, 28), dtype=torch.uint8, generator=torch.Generator().manual_seed(0)
    )
    repeats = []
    with tempfile.TemporaryDirectory() as tmp:
        cfg = PretrainConfig(
            dataset=args.dataset,
            data_dir=args.data_dir,
            out=str(Path(tmp) / "run"),
            epochs=args.epochs,
            device="cpu",
            overwrite=True,
        )
        for _ in range(args.repeats):
            timing = measure(
                cfg.encoder, cfg.batch_size, images, torch.device("cpu"), args.seconds, False
            )
            model = timing["model_images_per_s"]
            pretrain(cfg, log=lambda *_: None)
            rows = read_jsonl(Path(cfg.out) / "metrics.jsonl")
            steps = [
                end["step"] - start
                for start, end in zip([0] + [r["step"] for r in rows[:-1]], rows, strict=True)
            ]
            images_seen = [2 * cfg.batch_size * n for n in steps]  # two views per image
            seconds = [r["seconds"] for r in rows]
            repeats.append(
                {
                    "model_images_per_s": model,
                    "epoch_images": images_seen,
                    "epoch_seconds": seconds,
                    "ratio": [
                        round(t * model / n, 3) for t, n in zip(seconds, images_seen, strict=True)
                    ],
                }
            )
    print(
        json.dumps(
            {
                "dataset": args.dataset,
                "encoder": cfg.encoder,
                "batch_size": cfg.batch_size,
                **environment(),
                "repeats": repeats,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
