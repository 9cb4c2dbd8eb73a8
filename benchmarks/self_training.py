"""Does self-training on the unlabelled images turn pretraining into a bigger few-label gain?

    python benchmarks/self_training.py --run runs/mnist --data-dir ../shared/data
        [--labels 100] [--seeds 3] [--epochs 10] [--threads N] [--limit-train N]

A validation experiment, never on the test set: the first 5/6 of the training images train, the
last 1/6 validates. For each seed both arms of the study fine-tune on the same stratified labelled
subset (the run's recipe: the pretrained encoder with its anchor, and the same architecture from
random weights), then each fine-tuned model goes on learning from every training image, labelled
or not, FixMatch-style (Sohn et al. 2020): its own prediction on the plain image, when at least
--threshold sure, is the target for a strongly augmented view (the `default` preset), beside a
labelled batch; Adam with cosine decay for --epochs passes over the images. The scratch arm's
self-training is the control: it says how much of a gain comes from the unlabelled images alone.
Prints one JSON object: per seed, each arm's validation accuracy before and after.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace

import torch
import validation as split
from throughput import environment

from pretext.augment import preset
from pretext.config import SelfTrainConfig, scratch_finetune
from pretext.data import stratified_subset
from pretext.evaluate.classify import accuracy, finetune
from pretext.evaluate.selftrain import self_train
from pretext.models import build_encoder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    split.add_options(parser)
    parser.add_argument("--labels", type=int, default=100)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--threshold", type=float, default=0.95)
    args = parser.parse_args()
    setup = split.load(args)
    device = torch.device("cpu")
    pre, encoder, ft = setup.pretrain, setup.encoder, setup.finetune
    train, validation = setup.train, setup.validation
    quiet = lambda *_: None  # noqa: E731
    eval_views = preset(ft.augment)
    rows = []
    for seed in range(args.seeds):
        subset = train.subset(stratified_subset(train.labels, args.labels, seed))
        cfg = replace(ft, seed=seed)
        # seeded as `pretext study` seeds its scratch encoders
        scratch = build_encoder(pre.encoder, train.images.shape[1], seed=10_000 + seed)
        arms = {
            "pretrained": finetune(encoder, subset, validation, cfg, device, quiet)["model"],
            "scratch": finetune(scratch, subset, validation, scratch_finetune(cfg), device, quiet)[
                "model"
            ],
        }
        row = {"seed": seed}
        st_cfg = SelfTrainConfig(
            epochs=args.epochs, lr=args.lr, threshold=args.threshold, seed=seed
        )
        for name, model in arms.items():
            trained = self_train(model, train.images, subset, st_cfg, device, quiet)
            row[name] = {
                "finetuned": accuracy(model, validation, eval_views, device),
                "self_trained": accuracy(trained["model"], validation, eval_views, device),
                "confident": round(trained["confident"], 4),
                "seconds": round(trained["seconds"], 1),
            }
        rows.append(row)
    mean = lambda arm, key: sum(r[arm][key] for r in rows) / len(rows)  # noqa: E731
    summary = {
        f"{arm}_{key}": mean(arm, key)
        for arm in ("pretrained", "scratch")
        for key in ("finetuned", "self_trained")
    }
    print(
        json.dumps(
            {
                "labels": args.labels,
                "train": len(train),
                "validation": len(validation),
                "epochs": args.epochs,
                "lr": args.lr,
                "threshold": args.threshold,
                **environment(),
                "seeds": rows,
                "mean": summary,
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
