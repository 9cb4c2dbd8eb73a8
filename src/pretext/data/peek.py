"""What a data set holds, told without decoding an image: `pretext run` asks these before it
spends minutes pretraining, so that a run that cannot finish is refused at once."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pretext.data.cache import cache_info, is_cache
from pretext.data.folders import class_folders, split_folder
from pretext.data.sources import SET_NAMES


def npz_keys(path: Path) -> set[str] | None:
    """The array names of an .npz file, None where it cannot be read (load_dataset then says
    what is wrong with it)."""
    try:
        with np.load(path) as archive:
            return set(archive.files)
    except (OSError, ValueError):
        return None


def missing_test_split(name_or_path: str | Path) -> str | None:
    """Why a labelled folder, .npz or cache cannot be evaluated (it has no test split), else
    None."""
    if str(name_or_path) in SET_NAMES:
        return None
    path = Path(str(name_or_path)).expanduser()
    if path.suffix == ".npz" and path.is_file():
        keys = npz_keys(path) or set()
        if "labels" in keys and "test_images" not in keys:
            return f"{path} has labels but no test split (arrays test_images, test_labels)"
    elif path.is_dir() and is_cache(path):
        info = cache_info(path)
        if info.get("labelled") and "test" not in info["splits"]:
            return f"{path}: a cache with labels but no test split (prepare one with test/)"
    elif path.is_dir() and not (path / "test").is_dir():
        if class_folders(split_folder(path, "train")):
            return (
                f"{path} has class sub-folders but no test split: put held-out images in "
                f"{path / 'test'}/<class>/ (and the others in {path / 'train'}/<class>/)"
            )
    return None


def known_unlabelled(name_or_path: str | Path) -> bool:
    """Whether a folder, .npz or cache surely has no labels (a flat folder, an .npz without
    `labels`, a cache prepared without them). Named data sets and anything unreadable answer
    False."""
    if str(name_or_path) in SET_NAMES:
        return False
    path = Path(str(name_or_path)).expanduser()
    if path.suffix == ".npz" and path.is_file():
        keys = npz_keys(path)
        return keys is not None and "labels" not in keys
    if path.is_dir() and is_cache(path):
        return not cache_info(path).get("labelled")
    if path.is_dir():
        return not class_folders(split_folder(path, "train"))
    return False
