"""One image file: its header read without decoding, and its pixels decoded to a square side.
Imports no torch: prepare's worker processes decode with it and start fast."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".pgm", ".ppm"}
# Larger images are bad files, not a traceback (PIL refuses twice its own limit as a bomb).
MAX_PIXELS = 16384 * 16384
GRAY_MODES = ("1", "L", "LA", "I", "I;16", "F")
BAD_IMAGE = (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError)


def centre_square(img, size: int):
    """A PIL image scaled so that its shorter side is `size`, then cropped to the centre
    size x size square (the usual resize-then-centre-crop of image pipelines)."""
    width, height = img.size
    scale = size / min(width, height)
    w, h = max(size, round(width * scale)), max(size, round(height * scale))
    left, top = (w - size) // 2, (h - size) // 2
    return img.resize((w, h)).crop((left, top, left + size, top + size))


def header(file: Path) -> tuple[str, tuple[int, int]]:
    """An image file's mode and size, read without decoding it (bad files raise BAD_IMAGE)."""
    with Image.open(file) as img:
        check_size(img)
        return img.mode, img.size


def check_size(img) -> None:
    if img.width * img.height > MAX_PIXELS:
        raise ValueError(f"{img.width} x {img.height} pixels is over the limit of {MAX_PIXELS}")


def decode(file: Path, mode: str, size: int | None) -> np.ndarray:
    """The file's pixels in `mode` ("L" or "RGB"), centre-squared to `size` where given, as
    H x W (gray) or H x W x 3 uint8; bad files raise BAD_IMAGE."""
    with Image.open(file) as img:
        check_size(img)
        img = img.convert(mode)
        return np.asarray(centre_square(img, size) if size else img)


def decode_chw(task: tuple[str, str, int]) -> tuple[bytes | None, str]:
    """(path, mode, size) -> (C x S x S uint8 bytes, "") or (None, why it is unreadable): the
    unit of work of a prepare worker."""
    path, mode, size = task
    try:
        pixels = decode(Path(path), mode, size)
    except BAD_IMAGE as exc:
        return None, str(exc) if isinstance(exc, ValueError) else ""
    pixels = pixels[None] if pixels.ndim == 2 else pixels.transpose(2, 0, 1)
    return np.ascontiguousarray(pixels).tobytes(), ""
