"""Folders of image files: class sub-folders give labels, a flat folder is unlabelled, and
train/ and test/ sub-folders are the splits."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch

from pretext.data.imageset import ImageSet, to_nchw_uint8
from pretext.errors import PretextError
from pretext.imagefile import BAD_IMAGE, GRAY_MODES, IMAGE_SUFFIXES, decode, header


def class_folders(path: Path) -> list[str]:
    """The class sub-folders of an image folder, sorted (label i is the i-th); the split
    folders train/ and test/ are not classes."""
    return sorted(p.name for p in path.iterdir() if p.is_dir() and p.name not in ("train", "test"))


def split_folder(path: Path, split: str) -> Path:
    """The folder of `split`: `path/split` when there is one; a folder without splits is its
    own training split only."""
    if (path / split).is_dir():
        return path / split
    if split != "train":
        raise PretextError(f"{path} has no '{split}' sub-folder")
    return path


def folder_entries(
    path: Path, named: list[str] | None = None
) -> tuple[list[tuple[Path, int]], list[str]]:
    """(file, label) of every file of a split's folder (label -1 when it has no classes).
    `named`: the training split's classes, which give the labels (a test folder without one
    of them keeps the others' labels; a class training lacks is refused)."""
    classes = class_folders(path)
    if named and classes:
        unknown = sorted(set(classes) - set(named))
        if unknown:
            raise PretextError(
                f"{path}: class folder {unknown[0]!r} is not among the training classes "
                f"({', '.join(named)})"
            )
        labels = {c: named.index(c) for c in classes}
        entries = [
            (f, labels[c]) for c in classes for f in sorted((path / c).iterdir()) if f.is_file()
        ]
        return entries, list(named)
    if classes:
        entries = [
            (f, i)
            for i, c in enumerate(classes)
            for f in sorted((path / c).iterdir())
            if f.is_file()
        ]
    else:
        entries = [(f, -1) for f in sorted(path.iterdir()) if f.is_file()]
    return entries, classes


def folder_format(root: Path, image_size: int | None) -> str:
    """The one mode of a folder data set, train and test alike: "RGB" if any image is in
    colour, else "L". Without `image_size`, every image must have the same size: two that
    differ are named (nothing is stretched to another file's size)."""
    readable = []
    for split in ("train", "test"):
        folder = root / split if (root / split).is_dir() else root if split == "train" else None
        for file, _ in folder_entries(folder)[0] if folder is not None else ():
            try:
                readable.append((file, *header(file)))
            except BAD_IMAGE:
                continue  # said when its split is read
    colour = any(mode not in GRAY_MODES for _, mode, _ in readable)
    if image_size is None and readable:
        first, _, size = readable[0]
        for file, _, other in readable:
            if other != size:
                raise PretextError(
                    f"images of different sizes: {first} is {size[0]} x {size[1]}, {file} is "
                    f"{other[0]} x {other[1]}; give --image-size N to scale each image's shorter "
                    "side to N and keep its centre square"
                )
    return "RGB" if colour else "L"


def load_folder(
    path: Path, split: str, skip_bad: bool = True, image_size: int | None = None
) -> ImageSet:
    """Class sub-folders give labels (sorted names); a flat folder of images is unlabelled.
    Channels and side are one decision for the whole set (`folder_format`). With image_size,
    each image's shorter side is scaled to it and the centre square kept (no stretching)."""
    folder = split_folder(path, split)
    mode = folder_format(path, image_size)
    training = split_folder(path, "train")
    named = class_folders(training) if folder != training else None
    entries, classes = folder_entries(folder, named)
    arrays, labels, files = [], [], []
    for file, label in entries:
        try:
            arrays.append(decode(file, mode, image_size))
            labels.append(label)
            files.append(str(file))
        except BAD_IMAGE as exc:
            if not skip_bad:
                raise PretextError(f"{file} is not a readable image ({exc})") from None
            if file.suffix.lower() in IMAGE_SUFFIXES or not file.name.startswith("."):
                why = f" ({exc})" if isinstance(exc, ValueError) else ""  # a size: say which
                warnings.warn(f"skipping {file}: not a readable image{why}", stacklevel=2)
    if not arrays:
        raise PretextError(f"{folder} holds no readable images")
    images = to_nchw_uint8(np.stack(arrays), folder)
    label_tensor = torch.tensor(labels, dtype=torch.int64) if classes else None
    names = tuple(classes) if classes else None
    return ImageSet(images, label_tensor, folder.name, files=tuple(files), classes=names)
