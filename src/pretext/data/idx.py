"""Reader for the IDX format of MNIST and Fashion-MNIST (gzip-compressed or raw)."""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import numpy as np
import torch

from pretext.errors import PretextError

IMAGES_MAGIC = 2051  # unsigned bytes, 3 dimensions
LABELS_MAGIC = 2049  # unsigned bytes, 1 dimension


def read_bytes(path: Path) -> bytes:
    """Whole file content, decompressed when it is gzip; a damaged file names itself."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise PretextError(f"cannot read {path}: {exc.strerror or exc}") from None
    if raw[:2] != b"\x1f\x8b":
        return raw
    try:
        return gzip.decompress(raw)
    except (EOFError, OSError, zlib.error) as exc:
        raise PretextError(f"{path} is a truncated or corrupt gzip file ({exc})") from None


def read_idx(path: str | Path, magic: int) -> torch.Tensor:
    """Parse one IDX file of unsigned bytes, checking its magic number and its size."""
    path = Path(path)
    data = read_bytes(path)
    if len(data) < 4:
        raise PretextError(f"{path} is too short to be an IDX file ({len(data)} bytes)")
    found = int.from_bytes(data[:4], "big")
    if found != magic:
        raise PretextError(f"{path} has IDX magic {found}, expected {magic}")
    ndim = data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise PretextError(f"{path} is truncated inside its IDX header")
    dims = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    expected = header + int(np.prod(dims))
    if len(data) != expected:
        raise PretextError(
            f"{path} holds {len(data)} bytes but its header {dims} needs {expected}: "
            "the file is truncated or corrupt"
        )
    array = np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims)
    return torch.from_numpy(array.copy())


def read_idx_pair(
    images_path: str | Path, labels_path: str | Path
) -> tuple[torch.Tensor, torch.Tensor]:
    """Images as uint8 N x 1 x H x W and labels as int64 N, checked to agree in count."""
    images = read_idx(images_path, IMAGES_MAGIC)
    labels = read_idx(labels_path, LABELS_MAGIC)
    if images.shape[0] != labels.shape[0]:
        raise PretextError(
            f"{images_path} holds {images.shape[0]} images but {labels_path} holds "
            f"{labels.shape[0]} labels"
        )
    return images.unsqueeze(1), labels.long()
