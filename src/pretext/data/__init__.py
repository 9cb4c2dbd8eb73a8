"""Data sources and sampling. `load_dataset` is the entry point."""

from pretext.data.sampling import check_label_count, epoch_order, shard, stratified_subset
from pretext.data.sources import DATA_DIR_ENV, ImageSet, load_dataset

__all__ = [
    "DATA_DIR_ENV",
    "ImageSet",
    "check_label_count",
    "epoch_order",
    "load_dataset",
    "shard",
    "stratified_subset",
]
