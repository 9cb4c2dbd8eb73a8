"""The few-label comparison on a validation split, for choosing a recipe without the test set.

    python benchmarks/few_label_validation.py --run runs/mnist --data-dir ../shared/data
        [--labels 100,600] [--seeds 3] [--threads N] [--limit-train N]

The first 5/6 of the training images train, the last 1/6 validates (on MNIST: images 0-49,999 and
50,000-59,999). For each label count and seed, the same stratified labelled subset goes to every
method of `pretext study` (linear probe and kNN on the frozen encoder, fine-tuning it, and the same
architecture fine-tuned from random weights), with the run's recipe. Prints one JSON object: the
embedding units no training image turns on ("dead_units"), and per label count each method's
validation accuracy per seed and its mean, and the paired gain of fine-tuning over scratch with
its 95% interval.
"""

from __future__ import annotations

import argparse
import json

import torch
import validation
from throughput import environment

from pretext.augment import preset
from pretext.config import input_stats
from pretext.evaluate.classify import extract_features
from pretext.evaluate.study import StudyConfig, paired_gain, run_study
from pretext.models import build_encoder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    validation.add_options(parser)
    parser.add_argument("--labels", default="100,600", help="comma-separated label counts")
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args()
    setup = validation.load(args)
    pre, train = setup.pretrain, setup.train
    channels, size = train.images.shape[1], train.images.shape[-1]

    def make_scratch(seed: int) -> torch.nn.Module:  # seeded as `pretext study` seeds its own
        return build_encoder(pre.encoder, channels, size, seed=10_000 + seed)

    study = StudyConfig(
        labels=tuple(int(n) for n in args.labels.split(",")),
        seeds=args.seeds,
        finetune=setup.finetune,
        stats=input_stats(pre),
    )
    # embedding units that no training image turns on (after a ReLU: never positive)
    features = extract_features(
        setup.encoder,
        train.images,
        preset(setup.finetune.augment, study.stats),
        torch.device("cpu"),
    )
    dead_units = int((features.amax(0) <= 0).sum())
    quiet = lambda *_: None  # noqa: E731
    rows = run_study(
        setup.encoder, make_scratch, train, setup.validation, study, torch.device("cpu"), quiet
    )
    results = []
    for count in dict.fromkeys(row["labels"] for row in rows):
        methods = {row["method"]: row for row in rows if row["labels"] == count}
        results.append(
            {
                "labels": count,
                **{
                    name: {"mean": row["mean"], "values": row["values"]}
                    for name, row in methods.items()
                },
                "gain": paired_gain(methods["finetune"]["values"], methods["scratch"]["values"]),
            }
        )
    print(
        json.dumps(
            {
                "run": str(args.run),
                "encoder": pre.encoder,
                "pretrain_epochs": pre.epochs,
                "dead_units": dead_units,
                "train": len(train),
                "validation": len(setup.validation),
                "seeds": args.seeds,
                **environment(),
                "results": results,
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
