"""Every self-supervised method with the same encoder, epochs and augmentation on a data set:
kNN and linear-probe test accuracy of the frozen encoder, seconds per pretraining epoch, and a
randomly initialised encoder as the floor every method must clear.

    python benchmarks/methods.py --data-dir ../shared/data [--epochs 10] [--encoder cnn]

Prints one JSON object (each method's row also on stderr as it comes); run directories go to
--runs (default runs/methods).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
from throughput import environment  # benchmarks/ is on sys.path when run as a script

from pretext.augment import preset
from pretext.config import LinearProbeConfig, PretrainConfig
from pretext.data import load_dataset
from pretext.evaluate import extract_features, linear_probe
from pretext.evaluate.knn import knn_accuracy
from pretext.methods import available_methods
from pretext.models import build_encoder
from pretext.rundir import load_encoder
from pretext.train import pretrain


def frozen_scores(encoder, train, test, device, stats=None) -> dict:
    """kNN and linear-probe test accuracy of the frozen `encoder` (inputs normalised by
    `stats`, a run's; None: MNIST's)."""
    aug = preset("none", stats)
    train_x = extract_features(encoder, train.images, aug, device)
    test_x = extract_features(encoder, test.images, aug, device)
    probe = linear_probe(train_x, train.labels, test_x, test.labels, LinearProbeConfig())
    return {
        "knn": knn_accuracy(train_x, train.labels, test_x, test.labels),
        "linear": probe["test_accuracy"],
    }


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="mnist")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--encoder", default="cnn")
    parser.add_argument("--methods", default=",".join(available_methods()))
    parser.add_argument("--runs", default="runs/methods")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument(
        "--temperature",
        type=float,
        default=None,
        help="for the methods that have one (default: the recipe's 0.2)",
    )
    return parser.parse_args()


def method_row(method: str, args: argparse.Namespace, train, test, device) -> dict:
    """Pretrain `method` as the options say, then score its frozen encoder; with its final
    loss, seconds per epoch and wall time."""
    out = Path(args.runs) / f"{method}-{args.encoder}"
    cfg = PretrainConfig(
        dataset=args.dataset,
        data_dir=args.data_dir,
        out=str(out),
        method=method,
        encoder=args.encoder,
        epochs=args.epochs,
        overwrite=True,
        knn_monitor=0,
        **({"temperature": args.temperature} if args.temperature else {}),
    )
    started = time.perf_counter()
    summary = pretrain(cfg, log=lambda *_: None)
    return {
        "method": method,
        **frozen_scores(load_encoder(out, device), train, test, device),
        "final_loss": summary["final_loss"],
        "seconds_per_epoch": round(summary["seconds"] / args.epochs, 2),
        "wall_seconds": round(time.perf_counter() - started, 1),
    }


def main() -> None:
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    train = load_dataset(args.dataset, "train", args.data_dir)
    test = load_dataset(args.dataset, "test", args.data_dir)
    torch.manual_seed(0)
    random_init = frozen_scores(build_encoder(args.encoder).to(device), train, test, device)
    rows = [{"method": "random-init", **random_init}]
    for method in args.methods.split(","):
        rows.append(method_row(method, args, train, test, device))
        print(json.dumps(rows[-1]), file=sys.stderr, flush=True)  # progress
    report = {
        "dataset": args.dataset,
        "encoder": args.encoder,
        "epochs": args.epochs,
        "device": str(device),
        **environment(),
        "results": rows,
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
