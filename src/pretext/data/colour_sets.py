"""CIFAR-10, CIFAR-100 and STL-10 from their binary distributions (never the python-pickle
versions: unpickling runs code). Each is found under a data directory as its archive unpacks
(or downloaded into the cache with its published checksum, where a network exists):

- `cifar-10-batches-bin/data_batch_{1..5}.bin`, `test_batch.bin`: records of 1 label byte and
  3,072 pixel bytes (1,024 red, then green, then blue, row by row, 32 x 32);
- `cifar-100-binary/train.bin`, `test.bin`: records of a coarse and a fine label byte, then the
  pixels as CIFAR-10's; the fine labels are the labels (`cifar100-coarse` gives the 20 coarse);
- `stl10_binary/{train,test}_X.bin` with `{train,test}_y.bin` (labels 1-10, made 0-9), and
  `unlabeled_X.bin`, the 100,000 unlabelled images (split `unlabeled`; pretraining reads
  `train+unlabeled`, all 105,000 images without labels); each image is 3 x 96 x 96, every
  channel stored column by column.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from pretext.data.cache import cache_info, is_cache
from pretext.data.download import fetch_archive
from pretext.data.imageset import ImageSet
from pretext.errors import PretextError


@dataclass(frozen=True)
class ColourSet:
    folder: str  # as the archive unpacks
    splits: dict[str, tuple[str, ...]]  # split -> its image files
    side: int
    url: str  # where a user gets the archive
    md5: str  # the archive's, as its authors publish it
    pretrain_split: str = "train"  # what pretraining reads


COLOUR_SETS = {
    "cifar10": ColourSet(
        "cifar-10-batches-bin",
        {"train": tuple(f"data_batch_{i}.bin" for i in range(1, 6)), "test": ("test_batch.bin",)},
        32,
        "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz",
        "c32a1d4ab5d03f1284b67883e8d87530",
    ),
    "cifar100": ColourSet(
        "cifar-100-binary",
        {"train": ("train.bin",), "test": ("test.bin",)},
        32,
        "https://www.cs.toronto.edu/~kriz/cifar-100-binary.tar.gz",
        "03b5dce01913d631647c71ecec9e9cb8",
    ),
    "stl10": ColourSet(
        "stl10_binary",
        {
            "train": ("train_X.bin",),
            "test": ("test_X.bin",),
            "unlabeled": ("unlabeled_X.bin",),
            "train+unlabeled": ("train_X.bin", "unlabeled_X.bin"),
        },
        96,
        "https://ai.stanford.edu/~acoates/stl10/stl10_binary.tar.gz",
        "91f7769df0f17e558f3565bffb0c7dfb",
        pretrain_split="train+unlabeled",  # the 5,000 labelled and the 100,000 unlabelled
    ),
}
COLOUR_SETS["cifar100-coarse"] = COLOUR_SETS["cifar100"]


def pretraining_split(name_or_path: str | Path) -> str:
    """The split pretraining reads: `train`, or where a set has more images without labels
    (STL-10), those too (in a cache prepared from the set as well)."""
    name, splits = str(name_or_path), None
    if is_cache(name):
        info = cache_info(name)
        name, splits = str(info.get("source")), info.get("splits", [])
    spec = COLOUR_SETS.get(name)
    if spec is None or (splits is not None and spec.pretrain_split not in splits):
        return "train"
    return spec.pretrain_split


def prepared_splits(name: str) -> tuple[str, ...]:
    """The splits `pretext prepare` copies from a colour set: a split that the one pretraining
    reads holds already (STL-10's unlabelled images, in `train+unlabeled`) is not copied again."""
    spec = COLOUR_SETS[name]
    within = (
        set(spec.pretrain_split.split("+")) - {"train"} if "+" in spec.pretrain_split else set()
    )
    return tuple(split for split in spec.splits if split not in within)


# The file of class names each archive holds, one name per line, in label order.
CLASS_NAME_FILES = {
    "cifar10": "batches.meta.txt",
    "cifar100": "fine_label_names.txt",
    "cifar100-coarse": "coarse_label_names.txt",
    "stl10": "class_names.txt",
}


def class_names(folder: Path, name: str) -> tuple[str, ...] | None:
    """The archive's class names, or None where its names file is missing or unreadable."""
    try:
        lines = (folder / CLASS_NAME_FILES[name]).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        return None
    return tuple(line.strip() for line in lines if line.strip()) or None


def find_folder(name: str, roots: list[Path], download_to: Path | None = None) -> Path:
    """The set's unpacked folder under the first root that has it; else, with `download_to`,
    the archive fetched and unpacked there (checksum checked)."""
    spec = COLOUR_SETS[name]
    for root in roots:
        if (root / spec.folder).is_dir():
            return root / spec.folder
    if download_to is not None and fetch_archive(spec.url, spec.md5, download_to, spec.folder):
        return download_to / spec.folder
    where = ", ".join(str(r) for r in roots) or "nowhere (no --data-dir)"
    tried = "; it could not be downloaded" if download_to is not None else ""
    raise PretextError(
        f"{name}: no {spec.folder}/ folder in {where}{tried}; unpack {spec.url} into one of "
        "them (or pass --data-dir)"
    )


def read_bytes(path: Path) -> np.ndarray:
    try:
        return np.fromfile(path, dtype=np.uint8)
    except OSError as exc:
        raise PretextError(f"cannot read {path}: {exc.strerror or exc}") from None


def cifar_records(path: Path, label_bytes: int) -> tuple[np.ndarray, np.ndarray]:
    """(images N x 3 x 32 x 32, labels N x label_bytes) of a CIFAR binary file."""
    raw = read_bytes(path)
    record = label_bytes + 3 * 32 * 32
    if raw.size == 0 or raw.size % record:
        raise PretextError(
            f"{path} is not a CIFAR binary file ({raw.size} bytes, records of {record})"
        )
    rows = raw.reshape(-1, record)
    return rows[:, label_bytes:].reshape(-1, 3, 32, 32), rows[:, :label_bytes]


def stl_images(path: Path) -> np.ndarray:
    raw = read_bytes(path)
    if raw.size == 0 or raw.size % (3 * 96 * 96):
        raise PretextError(f"{path} is not an STL-10 image file ({raw.size} bytes)")
    return raw.reshape(-1, 3, 96, 96).transpose(0, 1, 3, 2)  # columns first on disk


def load_colour_set(
    name: str, split: str, roots: list[Path], download_to: Path | None = None
) -> ImageSet:
    """A named colour set's split as uint8 N x 3 x H x W images and int64 labels (None for
    STL-10's unlabelled split); with `download_to`, fetched there when no root has it."""
    spec = COLOUR_SETS[name]
    if split not in spec.splits:
        raise PretextError(f"{name} has no '{split}' split (it has {', '.join(spec.splits)})")
    folder = find_folder(name, roots, download_to)
    if name == "stl10":
        images = np.concatenate([stl_images(folder / f) for f in spec.splits[split]])
        labels = None
        if "unlabeled" not in split:
            labels = read_bytes(folder / f"{split}_y.bin").astype(np.int64) - 1
            if len(labels) != len(images) or labels.min() < 0 or labels.max() > 9:
                raise PretextError(
                    f"{folder / f'{split}_y.bin'}: labels must be 1-10, one per image"
                )
    else:
        label_bytes = 2 if name.startswith("cifar100") else 1
        parts = [cifar_records(folder / f, label_bytes) for f in spec.splits[split]]
        images = np.concatenate([p[0] for p in parts])
        column = 0 if name == "cifar100-coarse" else label_bytes - 1  # coarse first, then fine
        labels = np.concatenate([p[1][:, column] for p in parts]).astype(np.int64)
    label_tensor = None if labels is None else torch.from_numpy(labels)
    images = torch.from_numpy(np.ascontiguousarray(images))
    return ImageSet(images, label_tensor, name, classes=class_names(folder, name))
