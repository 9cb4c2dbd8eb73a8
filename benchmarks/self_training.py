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
import copy
import json
import math
import time
from dataclasses import replace

import torch
import torch.nn.functional as F
from throughput import environment

from pretext.augment import make_view, preset, to_input
from pretext.config import load_pretrain_config, recipe, scratch_finetune
from pretext.data import ImageSet, epoch_order, load_dataset, stratified_subset
from pretext.evaluate.classify import accuracy, finetune
from pretext.models import build_encoder
from pretext.train import load_encoder


def self_train(
    model: torch.nn.Module,
    unlabelled: torch.Tensor,
    labelled: ImageSet,
    epochs: int,
    lr: float,
    threshold: float,
    seed: int,
    batch_size: int = 256,
    labelled_batch: int = 64,
) -> tuple[torch.nn.Module, float]:
    """A copy of `model` trained on its own confident predictions; returns it and the fraction
    of unlabelled images whose prediction passed the threshold (over all steps)."""
    plain, strong = preset("none"), preset("default")
    model = copy.deepcopy(model).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    generator = torch.Generator().manual_seed(seed)
    steps_per_epoch = math.ceil(len(unlabelled) / batch_size)
    total, step, confident = epochs * steps_per_epoch, 0, 0.0
    for epoch in range(epochs):
        order = epoch_order(len(unlabelled), seed, epoch)
        for i in range(steps_per_epoch):
            images = unlabelled.index_select(0, order[i * batch_size : (i + 1) * batch_size])
            with torch.no_grad():
                sure, target = F.softmax(model(to_input(images, plain)), 1).max(1)
                keep = (sure >= threshold).float()
            confident += float(keep.sum())
            pick = torch.randint(0, len(labelled), (labelled_batch,), generator=generator)
            views = make_view(torch.cat([images, labelled.images[pick]]), strong, generator)
            logits = model(views)
            own = F.cross_entropy(logits[: len(images)], target, reduction="none")
            loss = (own * keep).mean() + F.cross_entropy(
                logits[len(images) :], labelled.labels[pick]
            )
            for group in optimizer.param_groups:
                group["lr"] = lr * 0.5 * (1 + math.cos(math.pi * step / total))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
    return model, confident / (epochs * len(unlabelled))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True, help="a pretrained run directory")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--labels", type=int, default=100)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--threshold", type=float, default=0.95)
    parser.add_argument(
        "--min-steps", type=int, default=None, help="fine-tuning's (default: recipe's)"
    )
    parser.add_argument("--limit-train", type=int, default=None)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device("cpu")
    pre = load_pretrain_config(args.run)
    data = load_dataset(pre.dataset, "train", args.data_dir or pre.data_dir).first(args.limit_train)
    cut = len(data) - len(data) // 6
    train, validation = data.subset(torch.arange(cut)), data.subset(torch.arange(cut, len(data)))
    encoder = load_encoder(args.run, device)
    ft = recipe(pre.recipe).finetune
    if args.min_steps is not None:
        ft = replace(ft, min_steps=args.min_steps)
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
        for name, model in arms.items():
            started = time.perf_counter()
            trained, confident = self_train(
                model, train.images, subset, args.epochs, args.lr, args.threshold, seed
            )
            row[name] = {
                "finetuned": accuracy(model, validation, eval_views, device),
                "self_trained": accuracy(trained, validation, eval_views, device),
                "confident": round(confident, 4),
                "seconds": round(time.perf_counter() - started, 1),
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
