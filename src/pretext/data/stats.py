"""What a data set's views are normalised by: per-channel mean and standard deviation of its
[0, 1] training pixels. A named set has its published values; any other set (a folder, an
.npz file, a prepared cache) has the values of its own training images."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pretext.data.cache import cache_info, is_cache
from pretext.errors import PretextError


@dataclass(frozen=True)
class InputStats:
    """Per-channel mean and standard deviation of [0, 1] pixels."""

    mean: tuple[float, ...]
    std: tuple[float, ...]

    def __post_init__(self) -> None:
        if len(self.mean) != len(self.std) or not self.mean:
            raise PretextError(
                f"mean and std need one value per channel each, got {len(self.mean)} and "
                f"{len(self.std)}"
            )
        if min(self.std) <= 0:
            raise PretextError(f"std must be > 0 in every channel, got {list(self.std)}")


MNIST_STATS = InputStats((0.1307,), (0.3081,))  # the presets' own, and runs that predate a record

# The values the data sets' users publish (over the training images).
PUBLISHED = {
    "mnist": MNIST_STATS,
    "fashion-mnist": InputStats((0.2860,), (0.3530,)),
    "cifar10": InputStats((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": InputStats((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
    "stl10": InputStats((0.4467, 0.4398, 0.4066), (0.2603, 0.2566, 0.2713)),
}
PUBLISHED["cifar100-coarse"] = PUBLISHED["cifar100"]


def channel_stats(pixels: np.ndarray) -> tuple[list[float], list[float]]:
    """Per-channel mean and std of uint8 N x C x H x W pixels in [0, 1], a chunk at a time
    (sums of the bytes and their squares, exact in integers; a memory map is read once)."""
    channels = pixels.shape[1]
    total = np.zeros(channels, dtype=np.uint64)
    squares = np.zeros(channels, dtype=np.uint64)
    for start in range(0, len(pixels), 1024):
        chunk = np.asarray(pixels[start : start + 1024])
        total += chunk.sum(axis=(0, 2, 3), dtype=np.uint64)
        wide = chunk.astype(np.uint32)
        squares += np.einsum("nchw,nchw->c", wide, wide, dtype=np.uint64)
    count = max(1, len(pixels) * pixels.shape[2] * pixels.shape[3])
    mean = total / count / 255.0
    std = np.sqrt(np.maximum(squares / count / 255.0**2 - np.square(mean), 0.0))
    return [round(float(m), 6) for m in mean], [round(float(s), 6) for s in std]


def training_stats(name: str, images) -> InputStats:
    """The normalisation of the data set `name` whose training images are `images` (uint8
    N x C x H x W): its published values (a cache prepared from a named set: the set's), a
    prepared cache's record (cache.json), or computed. A channel that never varies gets std 1
    (it has nothing to scale)."""
    recorded = cache_info(name) if is_cache(name) else None
    named = recorded.get("source") if recorded else name
    if named in PUBLISHED and len(PUBLISHED[named].mean) == images.shape[1]:
        return PUBLISHED[named]
    if recorded and recorded.get("mean") and recorded.get("std"):
        mean, std = recorded["mean"], recorded["std"]
    else:
        mean, std = channel_stats(np.asarray(images))
    return InputStats(tuple(mean), tuple(s if s > 0 else 1.0 for s in std))
