"""A prepared image cache (`pretext prepare`): images decoded and resized once, read back as
memory maps, so a data set larger than memory costs only the batches in flight.

CACHE_DIR/cache.json          what the cache holds: source, side, channels, classes, splits,
                              per-channel mean and std of the training images
CACHE_DIR/<split>.json        the split's rows: data file, count, and each row's source file
                              (path, size, mtime) and label
CACHE_DIR/<split>-<token>.u8  the pixels: count x C x S x S uint8, row-major, no header

A split's .json is replaced atomically after its data file is complete, and names that file:
a reader never sees a half-written split, and an interrupted prepare leaves the last complete
one in place."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import torch

from pretext.data.imageset import ImageSet
from pretext.errors import PretextError

FORMAT = 1  # cache.json's "format": a reader refuses other layouts


def is_cache(path: str | Path) -> bool:
    return (Path(path) / "cache.json").is_file()


def read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise PretextError(f"{path} is not readable ({exc}); run pretext prepare again") from None


def cache_info(root: str | Path) -> dict:
    """cache.json, checked to be a layout this version reads."""
    info = read_json(Path(root) / "cache.json")
    if info.get("format") != FORMAT:
        raise PretextError(
            f"{root}: cache format {info.get('format')!r}, this pretext reads format {FORMAT}; "
            "run pretext prepare again"
        )
    return info


def split_rows(root: Path, split: str) -> dict | None:
    """A split's row table (<split>.json), or None when the cache has no such split."""
    path = root / f"{split}.json"
    return read_json(path) if path.is_file() else None


def mapped_pixels(root: Path, rows: dict, shape: tuple[int, int, int]) -> np.ndarray:
    """The split's pixels as a read-only memory map, checked against its row count."""
    path = root / rows["data"]
    count = rows["count"]
    expected = count * int(np.prod(shape))
    size = path.stat().st_size if path.is_file() else -1
    if size != expected:
        raise PretextError(
            f"{path}: {size} bytes, expected {expected} ({count} images of {shape}); run "
            "pretext prepare again"
        )
    return np.memmap(path, dtype=np.uint8, mode="r", shape=(count, *shape))


def load_cache(root: str | Path, split: str, image_size: int | None = None) -> ImageSet:
    """A split of a prepared cache. Its images are a tensor over the memory map: rows are
    read from disk when a batch gathers them, and nothing else is held in memory."""
    root = Path(root)
    info = cache_info(root)
    side, channels = info["image_size"], info["channels"]
    if image_size is not None and image_size != side:
        raise PretextError(
            f"{root} holds {side} x {side} images; --image-size {image_size} needs a cache "
            f"prepared at that size (pretext prepare --image-size {image_size})"
        )
    rows = split_rows(root, split)
    if rows is None:
        raise PretextError(f"{root} has no '{split}' split (it has {', '.join(info['splits'])})")
    images = read_only_tensor(mapped_pixels(root, rows, (channels, side, side)))
    labels = None
    if info.get("labelled"):  # a split of images without labels (-1) has none
        labels = torch.tensor([row[3] for row in rows["files"]], dtype=torch.int64)
        labels = None if len(labels) and int(labels.min()) < 0 else labels
    files = tuple(row[0] for row in rows["files"])
    classes = tuple(info["classes"]) if info.get("classes") else None
    return ImageSet(images, labels, root.name, files=files, classes=classes, on_disk=True)


def read_only_tensor(pixels: np.ndarray) -> torch.Tensor:
    """A tensor over a read-only memory map without a copy (torch warns that writing to it
    would be undefined; nothing here writes to a data set's images)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return torch.from_numpy(pixels)
