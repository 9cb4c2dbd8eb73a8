"""The one type every source returns: uint8 images (N x C x H x W) and int64 labels or None.
Images stay uint8 until a batch is drawn, so a data set costs one byte per pixel in memory."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from pretext.errors import PretextError


@dataclass(frozen=True)
class ImageSet:
    """Images (uint8, N x C x H x W) with optional labels (int64, N); `files`, where the images
    came from files, each one's path; `classes`, where known, the name of each label;
    `on_disk`, images over a memory-mapped cache (pretext.data.cache); `class_count`, for a
    subset, the classes of the set it came from (a chosen subset may miss the last class, and
    a classifier trained on it must still answer every class)."""

    images: torch.Tensor
    labels: torch.Tensor | None
    name: str = ""
    files: tuple[str, ...] | None = None
    classes: tuple[str, ...] | None = None
    on_disk: bool = False  # images map a prepared cache's file: batches are read from disk
    class_count: int | None = None

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.dim() != 4:
            raise PretextError(f"{self.name}: images must be uint8 N x C x H x W")
        if len(self.images) == 0:
            raise PretextError(f"{self.name or 'data set'} is empty")
        if self.labels is not None:
            if len(self.labels) != len(self.images):
                raise PretextError(
                    f"{self.name}: {len(self.images)} images but {len(self.labels)} labels"
                )
            if int(self.labels.min()) < 0:
                raise PretextError(
                    f"{self.name}: labels must be >= 0, found {int(self.labels.min())}"
                )

    def __len__(self) -> int:
        return len(self.images)

    @property
    def num_classes(self) -> int:
        if self.labels is None:
            raise PretextError(f"{self.name} has no labels")
        return self.class_count or int(self.labels.max()) + 1

    def subset(self, indices: torch.Tensor) -> ImageSet:
        labels = None if self.labels is None else self.labels[indices]
        files = None if self.files is None else tuple(self.files[i] for i in indices.tolist())
        count = None if self.labels is None else self.num_classes
        chosen = self.images[indices]
        return replace(self, images=chosen, labels=labels, files=files, class_count=count)

    def class_name(self, label: int) -> str:
        """A label as people read it: its class name where known, else the number."""
        if label < 0:
            return "?"
        return self.classes[label] if self.classes and label < len(self.classes) else str(label)

    def first(self, n: int | None) -> ImageSet:
        """The first n items (all when n is None), as the `--limit-train` option asks."""
        if n is None or n >= len(self):
            return self
        if n < 1:
            raise PretextError(f"--limit-train must be >= 1, got {n}")
        labels = None if self.labels is None else self.labels[:n]
        files = None if self.files is None else self.files[:n]
        return replace(self, images=self.images[:n], labels=labels, files=files)  # a view


def to_nchw_uint8(images: np.ndarray, origin: Path) -> torch.Tensor:
    if images.ndim == 3:
        images = images[:, None]
    elif images.ndim == 4 and images.shape[-1] in (1, 3) and images.shape[1] not in (1, 3):
        images = images.transpose(0, 3, 1, 2)
    if images.ndim != 4:
        raise PretextError(
            f"{origin}: images must be N x H x W or N x C x H x W, got {images.shape}"
        )
    if images.dtype != np.uint8:
        if np.issubdtype(images.dtype, np.floating) and images.size and images.max() <= 1.0:
            images = images * 255.0
        images = np.clip(images, 0, 255).round().astype(np.uint8)
    return torch.from_numpy(np.ascontiguousarray(images))
