"""Where images come from: named data sets (IDX files), folders of images, .npz files, digits.

Every source returns an `ImageSet` of uint8 images (N x C x H x W) and int64 labels or None;
images stay uint8 until a batch is drawn, so a data set costs one byte per pixel in memory.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import urllib.request
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from sklearn.datasets import load_digits

from pretext.data.cache import is_cache, load_cache
from pretext.data.colour_sets import COLOUR_SETS, load_colour_set
from pretext.data.folders import load_folder
from pretext.data.idx import read_idx_pair
from pretext.data.imageset import ImageSet
from pretext.errors import PretextError

DATA_DIR_ENV = "PRETEXT_DATA_DIR"
NO_DOWNLOAD_ENV = "PRETEXT_NO_DOWNLOAD"
CACHE_DIR = Path("~/.cache/pretext")


@dataclass(frozen=True)
class IdxFile:
    name: str
    raw_md5: str | None = None  # of the decompressed file
    gz_md5: str | None = None  # of the published .gz


@dataclass(frozen=True)
class NamedSet:
    """An IDX data set with its known files, class count and download mirrors."""

    files: dict[str, tuple[IdxFile, IdxFile]]  # split -> (images, labels)
    num_classes: int
    mirrors: tuple[str, ...]
    system_dirs: tuple[str, ...] = ()
    classes: tuple[str, ...] | None = None  # the name of each label


NAMED_SETS = {
    "mnist": NamedSet(
        files={
            "train": (
                IdxFile("train-images-idx3-ubyte", raw_md5="6bbc9ace898e44ae57da46a324031adb"),
                IdxFile("train-labels-idx1-ubyte", raw_md5="a25bea736e30d166cdddb491f175f624"),
            ),
            "test": (
                IdxFile("t10k-images-idx3-ubyte", raw_md5="2646ac647ad5339dbf082846283269ea"),
                IdxFile("t10k-labels-idx1-ubyte", raw_md5="27ae3e4e09519cfbb04c329615203637"),
            ),
        },
        num_classes=10,
        mirrors=(
            "https://ossci-datasets.s3.amazonaws.com/mnist/",
            "https://storage.googleapis.com/cvdf-datasets/mnist/",
        ),
        classes=tuple("0123456789"),
    ),
    "fashion-mnist": NamedSet(
        files={
            "train": (
                IdxFile(
                    "train-images-idx3-ubyte",
                    raw_md5="f4a8712d7a061bf5bd6d2ca38dc4d50a",
                    gz_md5="8d4fb7e6c68d591d4c3dfef9ec88bf0d",
                ),
                IdxFile(
                    "train-labels-idx1-ubyte",
                    raw_md5="9018921c3c673c538a1fc5bad174d6f9",
                    gz_md5="25c81989df183df01b3e8a0aad5dffbe",
                ),
            ),
            "test": (
                IdxFile(
                    "t10k-images-idx3-ubyte",
                    raw_md5="8181f5470baa50b63fa0f6fddb340f0a",
                    gz_md5="bef4ecab320f06d8554ea6380940ec79",
                ),
                IdxFile(
                    "t10k-labels-idx1-ubyte",
                    raw_md5="15d484375f8d13e6eb1aabb0c3f46965",
                    gz_md5="bb300cfdad3c16e7a12a480ee83cd310",
                ),
            ),
        },
        num_classes=10,
        mirrors=("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
        system_dirs=("/usr/share/datasets/fashion-mnist",),
        classes=tuple(
            "T-shirt/top,Trouser,Pullover,Dress,Coat,Sandal,Shirt,Sneaker,Bag,Ankle boot".split(",")
        ),
    ),
}
# Every name load_dataset reads as a named data set; a name wins over a folder of that name.
SET_NAMES = (*NAMED_SETS, *COLOUR_SETS, "digits")


def data_roots(data_dir: str | Path | None) -> list[Path]:
    """Data directories searched, in order: the option, the environment, the cache."""
    roots = []
    if data_dir is not None:
        roots.append(Path(data_dir).expanduser())
    if os.environ.get(DATA_DIR_ENV):
        roots.append(Path(os.environ[DATA_DIR_ENV]).expanduser())
    return [*roots, CACHE_DIR.expanduser()]


def candidate_dirs(name: str, data_dir: str | Path | None) -> list[Path]:
    """Folders searched for a named set, in order: option, environment, cache, system."""
    dirs = [root / name for root in data_roots(data_dir)]
    dirs += [Path(d) for d in NAMED_SETS[name].system_dirs]
    return dirs


def find_file(folder: Path, stem: str) -> Path | None:
    for candidate in (folder / f"{stem}.gz", folder / stem):
        if candidate.is_file():
            return candidate
    return None


def download(name: str, target: Path) -> bool:
    """Fetch every file of a named set into target, verifying checksums; False without network."""
    spec = NAMED_SETS[name]
    wanted = [f for pair in spec.files.values() for f in pair]
    target.mkdir(parents=True, exist_ok=True)
    for item in wanted:
        if find_file(target, item.name):
            continue
        for mirror in spec.mirrors:
            try:
                with urllib.request.urlopen(f"{mirror}{item.name}.gz", timeout=20) as response:
                    blob = response.read()
            except OSError:
                continue
            if not checksum_ok(item, blob):
                raise PretextError(f"downloaded {item.name}.gz from {mirror} fails its checksum")
            tmp = target / f".{item.name}.gz.part"
            tmp.write_bytes(blob)
            tmp.replace(target / f"{item.name}.gz")
            break
        else:
            return False
    return True


def checksum_ok(item: IdxFile, blob: bytes) -> bool:
    if item.gz_md5 and hashlib.md5(blob).hexdigest() == item.gz_md5:
        return True
    if item.raw_md5:
        return hashlib.md5(gzip.decompress(blob)).hexdigest() == item.raw_md5
    return False


def load_named(name: str, split: str, data_dir: str | Path | None) -> ImageSet:
    spec = NAMED_SETS[name]
    if split not in spec.files:
        raise PretextError(f"split must be one of {sorted(spec.files)}, got {split!r}")
    images_file, labels_file = spec.files[split]
    searched = candidate_dirs(name, data_dir)
    for folder in searched:
        images_path = find_file(folder, images_file.name)
        labels_path = find_file(folder, labels_file.name)
        if images_path and labels_path:
            images, labels = read_idx_pair(images_path, labels_path)
            if int(labels.max()) >= spec.num_classes:
                raise PretextError(
                    f"{labels_path}: label {int(labels.max())} is out of range for "
                    f"{spec.num_classes} classes"
                )
            return ImageSet(images, labels, name, classes=spec.classes)
    cache = CACHE_DIR.expanduser() / name
    if not os.environ.get(NO_DOWNLOAD_ENV) and download(name, cache):
        return load_named(name, split, cache.parent)
    where = ", ".join(str(d) for d in searched)
    raise PretextError(
        f"{name} not found (looked in {where}) and it could not be downloaded: put "
        f"{images_file.name}.gz and the other IDX files in <dir>/{name}/ and pass --data-dir <dir> "
        f"or set {DATA_DIR_ENV}=<dir>"
    )


def load_digits_set(split: str) -> ImageSet:
    """scikit-learn's bundled 8x8 digits, resized to 28x28: works anywhere, offline."""
    digits = load_digits()
    small = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0
    images = torch.nn.functional.interpolate(
        small, size=(28, 28), mode="bilinear", align_corners=False
    )
    images = (images.clamp(0, 1) * 255).round().to(torch.uint8)
    labels = torch.tensor(digits.target, dtype=torch.int64)
    order = torch.randperm(len(images), generator=torch.Generator().manual_seed(0))
    cut = int(0.8 * len(images))
    splits = {"train": order[:cut], "test": order[cut:]}
    if split not in splits:
        raise PretextError(f"split must be 'train' or 'test', got {split!r}")
    keep = splits[split]
    return ImageSet(images[keep], labels[keep], "digits", classes=tuple("0123456789"))


MAX_CLASSES = 100_000  # labels beyond this are a mistake, not a data set


def load_npz(path: Path, split: str) -> ImageSet:
    """An .npz with `images` (and `labels`); its test split in `test_images` / `test_labels`.
    Images are N x H x W, N x H x W x C or N x C x H x W with C 1 or 3, uint8 (0-255) or float
    in [0, 1]; labels 1-D integers from 0. The test split must match the training split's
    image shape and classes. Anything else is one clear error."""
    prefix = "" if split == "train" else f"{split}_"
    try:
        with np.load(path, allow_pickle=False) as archive:
            if f"{prefix}images" not in archive:
                raise PretextError(f"{path} has no '{prefix}images' array (has {sorted(archive)})")
            images = npz_images(np.asarray(archive[f"{prefix}images"]), f"{path}: {prefix}images")
            labels = archive[f"{prefix}labels"] if f"{prefix}labels" in archive else None
            labels = None if labels is None else npz_labels(labels, len(images), path, prefix)
            if split != "train":
                check_like_training(archive, images, labels, path, prefix)
    except (OSError, ValueError) as exc:
        raise PretextError(f"{path} is not a readable .npz file ({exc})") from None
    return ImageSet(images, labels, path.name)


def npz_images(images: np.ndarray, where: str) -> torch.Tensor:
    """An .npz's images as uint8 N x C x H x W, or a PretextError saying what is wrong."""
    if images.dtype.kind not in "uif":
        raise PretextError(f"{where} must hold numbers, not {images.dtype}")
    if images.ndim == 3:
        images = images[:, None]
    elif images.ndim == 4 and images.shape[1] not in (1, 3) and images.shape[-1] in (1, 3):
        images = images.transpose(0, 3, 1, 2)
    if images.ndim != 4 or images.shape[1] not in (1, 3):
        raise PretextError(
            f"{where} must be N x H x W, N x H x W x C or N x C x H x W with C 1 or 3, "
            f"got {images.shape}"
        )
    if images.dtype.kind == "f":
        if not np.isfinite(images).all():
            raise PretextError(f"{where} holds NaN or infinite values")
        if images.size and (images.min() < 0 or images.max() > 1):
            raise PretextError(
                f"{where}: float images must be in [0, 1], found {images.min():g} to "
                f"{images.max():g} (or give uint8 0-255)"
            )
        images = np.round(images * 255.0)
    elif images.size and (images.min() < 0 or images.max() > 255):
        raise PretextError(f"{where}: integer images must be in 0-255")
    return torch.from_numpy(np.ascontiguousarray(images.astype(np.uint8)))


def npz_labels(labels: np.ndarray, count: int, path: Path, prefix: str) -> torch.Tensor:
    """An .npz's labels as int64, checked: 1-D integers, one per image, from 0 to MAX_CLASSES."""
    where = f"{path}: {prefix}labels"
    if labels.ndim != 1 or labels.dtype.kind not in "iu":
        raise PretextError(
            f"{where} must be a 1-D array of integers, got {labels.dtype} of shape {labels.shape}"
        )
    if len(labels) != count:
        raise PretextError(f"{where}: {len(labels)} labels for {count} images")
    if len(labels) and (labels.min() < 0 or labels.max() >= MAX_CLASSES):
        raise PretextError(
            f"{where} must be in 0..{MAX_CLASSES - 1}, found {labels.min()} to {labels.max()}"
        )
    if not prefix and len(labels) and labels.min() > 0:
        raise PretextError(
            f"{where} must number the classes from 0 (the smallest is {labels.min()})"
        )
    return torch.from_numpy(labels.astype(np.int64))


def npz_member_header(archive, name: str) -> tuple[tuple[int, ...], np.dtype]:
    """The shape and dtype of an .npz member, read from its header alone."""
    with archive.zip.open(f"{name}.npy") as member:
        major, _ = np.lib.format.read_magic(member)
        read = (
            np.lib.format.read_array_header_1_0
            if major == 1
            else np.lib.format.read_array_header_2_0
        )
        shape, _, dtype = read(member)
    return shape, dtype


def check_like_training(archive, images, labels, path: Path, prefix: str) -> None:
    """A test split must have the training images' channels and side, and only its classes."""
    shape, dtype = npz_member_header(archive, "images")  # not the training images themselves
    train = npz_images(np.zeros((1, *shape[1:]), dtype), f"{path}: images")
    if images.shape[1:] != train.shape[1:]:
        raise PretextError(
            f"{path}: {prefix}images are {tuple(images.shape[1:])} (C x H x W), the training "
            f"images {tuple(train.shape[1:])}"
        )
    if labels is not None and "labels" in archive:
        classes = int(np.max(archive["labels"])) + 1
        if len(labels) and int(labels.max()) >= classes:
            raise PretextError(
                f"{path}: {prefix}labels reach {int(labels.max())}, the training labels only "
                f"{classes - 1}"
            )


def portable(name_or_path: str | None) -> str | None:
    """A data set's name as it is; a path (a folder, an .npz, a data directory) made absolute,
    so that what a run directory records means the same from any working directory."""
    if name_or_path is None or name_or_path in SET_NAMES:
        return name_or_path
    path = Path(name_or_path).expanduser()
    return str(path.resolve()) if path.exists() else name_or_path


def load_dataset(
    name_or_path: str | Path,
    split: str = "train",
    data_dir: str | Path | None = None,
    skip_bad_files: bool = True,
    image_size: int | None = None,
) -> ImageSet:
    """Load `mnist`, `fashion-mnist`, `cifar10`, `cifar100` (`cifar100-coarse`), `stl10`
    (splits train, test, unlabeled), `digits`, a folder of images or an .npz file; with
    `image_size`, every image is resized to image_size x image_size (a folder's when read)."""
    if image_size is not None and image_size < 8:
        raise PretextError(f"--image-size must be at least 8, got {image_size}")
    key = str(name_or_path)
    path = Path(key).expanduser()
    if key in NAMED_SETS:
        data = load_named(key, split, data_dir)
    elif key in COLOUR_SETS:
        fetch_into = None if os.environ.get(NO_DOWNLOAD_ENV) else CACHE_DIR.expanduser()
        data = load_colour_set(key, split, data_roots(data_dir), fetch_into)
    elif key == "digits":
        data = load_digits_set(split)
    elif path.suffix == ".npz" and path.is_file():
        data = load_npz(path, split)
    elif path.is_dir() and is_cache(path):  # prepared once: read from disk batch by batch
        return load_cache(path, split, image_size)
    elif path.is_dir():  # resized while read: each image keeps its shape (centre square)
        return load_folder(path, split, skip_bad_files, image_size)
    elif path.exists():
        raise PretextError(f"{key} is neither a folder of images nor an .npz file")
    elif path.suffix == ".npz" or len(path.parts) > 1:  # meant as a path, not a name
        raise PretextError(f"{key}: no such file or folder")
    else:
        known = ", ".join(SET_NAMES)
        raise PretextError(
            f"unknown data set {key!r}: use one of {known}, a folder of images, or an .npz file"
        )
    return resized(data, image_size) if image_size else data


def resized(data: ImageSet, size: int) -> ImageSet:
    """The same images at size x size (bilinear with antialiasing, rounded back to uint8)."""
    if data.images.shape[-2:] == (size, size):
        return data
    parts = [  # in chunks: a float copy of a whole large set would not fit
        torch.nn.functional.interpolate(
            chunk.float(), size=(size, size), mode="bilinear", antialias=True
        )
        .round_()
        .clamp_(0, 255)
        .to(torch.uint8)
        for chunk in data.images.split(4096)
    ]
    return replace(data, images=torch.cat(parts))
