"""Folders of image files: class sub-folders give labels, a flat folder is unlabelled, and
train/ and test/ sub-folders are the splits."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from pretext.data.imageset import ImageSet, to_nchw_uint8
from pretext.errors import PretextError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".pgm", ".ppm"}


def centre_square(img, size: int):
    """A PIL image scaled so that its shorter side is `size`, then cropped to the centre
    size x size square (the usual resize-then-centre-crop of image pipelines)."""
    width, height = img.size
    scale = size / min(width, height)
    w, h = max(size, round(width * scale)), max(size, round(height * scale))
    left, top = (w - size) // 2, (h - size) // 2
    return img.resize((w, h)).crop((left, top, left + size, top + size))


def class_folders(path: Path) -> list[str]:
    """The class sub-folders of an image folder, sorted (label i is the i-th); the split
    folders train/ and test/ are not classes."""
    return sorted(p.name for p in path.iterdir() if p.is_dir() and p.name not in ("train", "test"))


def load_folder(
    path: Path, split: str, skip_bad: bool = True, image_size: int | None = None
) -> ImageSet:
    """Class sub-folders give labels (sorted names); a flat folder of images is unlabelled.
    With image_size, each image's shorter side is scaled to it and the centre square kept (no
    stretching); without, every image is resized to the first one's size."""
    if (path / split).is_dir():
        path = path / split
    elif split != "train":
        raise PretextError(f"{path} has no '{split}' sub-folder")
    classes = class_folders(path)
    if classes:
        entries = [
            (f, i)
            for i, c in enumerate(classes)
            for f in sorted((path / c).iterdir())
            if f.is_file()
        ]
    else:
        entries = [(f, -1) for f in sorted(path.iterdir()) if f.is_file()]
    arrays, labels, size, mode = [], [], None, None
    for file, label in entries:
        try:
            with Image.open(file) as img:
                if mode is None:
                    mode = "L" if img.mode in ("1", "L", "LA", "I", "I;16", "F") else "RGB"
                    size = img.size
                img = img.convert(mode)
                arrays.append(
                    np.asarray(centre_square(img, image_size) if image_size else img.resize(size))
                )
            labels.append(label)
        except (UnidentifiedImageError, OSError, ValueError) as exc:
            if not skip_bad:
                raise PretextError(f"{file} is not a readable image ({exc})") from None
            if file.suffix.lower() in IMAGE_SUFFIXES or not file.name.startswith("."):
                warnings.warn(f"skipping {file}: not a readable image", stacklevel=2)
    if not arrays:
        raise PretextError(f"{path} holds no readable images")
    images = to_nchw_uint8(np.stack(arrays), path)
    label_tensor = torch.tensor(labels, dtype=torch.int64) if classes else None
    return ImageSet(images, label_tensor, path.name)
