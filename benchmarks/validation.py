"""What the validation benchmarks share: a run's encoder and recipe, and MNIST's training images
split into training (the first 5/6) and validation (the last 1/6), so that recipes are chosen
without the test set."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, replace

import torch

from pretext.config import FinetuneConfig, PretrainConfig, recipe
from pretext.data import ImageSet, load_dataset
from pretext.rundir import load_encoder, pretrain_config


def add_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--run", required=True, help="a pretrained run directory")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument(
        "--min-steps", type=int, default=None, help="fine-tuning's (default: recipe's)"
    )
    parser.add_argument("--limit-train", type=int, default=None)
    parser.add_argument("--threads", type=int, default=None)


@dataclass
class Setup:
    pretrain: PretrainConfig  # the run's settings
    encoder: torch.nn.Module  # its pretrained encoder
    finetune: FinetuneConfig  # its recipe's fine-tuning, with --min-steps if given
    train: ImageSet
    validation: ImageSet


def load(args: argparse.Namespace) -> Setup:
    if args.threads:
        torch.set_num_threads(args.threads)
    pre = pretrain_config(args.run)
    data = load_dataset(pre.dataset, "train", args.data_dir or pre.data_dir).first(args.limit_train)
    cut = len(data) - len(data) // 6
    finetune = recipe(pre.recipe).finetune
    if args.min_steps is not None:
        finetune = replace(finetune, min_steps=args.min_steps)
    return Setup(
        pretrain=pre,
        encoder=load_encoder(args.run, torch.device("cpu")),
        finetune=finetune,
        train=data.subset(torch.arange(cut)),
        validation=data.subset(torch.arange(cut, len(data))),
    )
