"""What several commands share: the labelled splits of a data set, and the checks that a run
directory holds what a command needs."""

from __future__ import annotations

from pathlib import Path

from pretext import rundir
from pretext.config import PretrainConfig, input_stats
from pretext.data import ImageSet, load_dataset
from pretext.data.stats import InputStats, training_stats
from pretext.errors import PretextError


def labelled_splits(
    dataset: str,
    data_dir: str | None,
    limit_train: int | None,
    image_size: int | None = None,
    train: ImageSet | None = None,
) -> tuple[ImageSet, ImageSet]:
    """The training split (its first `limit_train` images) and the test split, both labelled;
    `train`, the training split already loaded."""
    if train is None:
        train = load_dataset(dataset, "train", data_dir, image_size=image_size)
    train = train.first(limit_train)
    test = load_dataset(dataset, "test", data_dir, image_size=image_size)
    if train.labels is None or test.labels is None:
        raise PretextError(f"{dataset} has no labels: fine-tuning and evaluation need them")
    return train, test


def views_stats(run: PretrainConfig | None, dataset: str, train: ImageSet) -> InputStats:
    """What views are normalised by: the run's record, or without a run (a baseline from
    random weights) the training images' own."""
    return input_stats(run) if run is not None else training_stats(dataset, train.images)


def require_pretrained_run(run_dir: str | Path | None) -> None:
    """Fine-tuning without --from-scratch needs a run directory of `pretext pretrain`."""
    if not rundir.is_run_dir(run_dir):
        problem = "no run directory" if run_dir is None else f"{run_dir} is not a run directory"
        raise PretextError(
            f"{problem}: give --out with the run directory of `pretext pretrain`, or "
            "--from-scratch to train from random weights"
        )
