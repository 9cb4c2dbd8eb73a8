"""What a data set holds, told without decoding an image: `pretext run` asks these before it
spends minutes pretraining, so that a run that cannot finish is refused at once."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pretext.data.cache import cache_info, is_cache
from pretext.data.colour_sets import COLOUR_SETS
from pretext.data.folders import class_folders
from pretext.data.sources import NAMED_SETS


def is_set_name(name_or_path: str | Path) -> bool:
    """Whether load_dataset reads this as a named data set (a name wins over a folder of the
    same name in the working directory)."""
    return str(name_or_path) in (*NAMED_SETS, *COLOUR_SETS, "digits")


def missing_test_split(name_or_path: str | Path) -> str | None:
    """Why a labelled folder or .npz cannot be evaluated (it has no test split), else None.
    Decodes no image: `pretext run` asks before it spends minutes pretraining."""
    if is_set_name(name_or_path):
        return None
    path = Path(str(name_or_path)).expanduser()
    if path.suffix == ".npz" and path.is_file():
        try:
            with np.load(path) as archive:
                keys = set(archive.files)
        except (OSError, ValueError):
            return None  # load_dataset says what is wrong with the file
        if "labels" in keys and "test_images" not in keys:
            return f"{path} has labels but no test split (arrays test_images, test_labels)"
    elif path.is_dir() and is_cache(path):
        info = cache_info(path)
        if info.get("labelled") and "test" not in info["splits"]:
            return f"{path}: a cache with labels but no test split (prepare one with test/)"
    elif path.is_dir() and not (path / "test").is_dir():
        if class_folders(path / "train" if (path / "train").is_dir() else path):
            return (
                f"{path} has class sub-folders but no test split: put held-out images in "
                f"{path / 'test'}/<class>/ (and the others in {path / 'train'}/<class>/)"
            )
    return None


def known_unlabelled(name_or_path: str | Path) -> bool:
    """Whether a folder, .npz or cache surely has no labels (a flat folder, an .npz without
    `labels`, a cache prepared without them). Decodes no image: `pretext run --semi` asks before
    it spends minutes pretraining. Named data sets and anything unreadable answer False."""
    if is_set_name(name_or_path):
        return False
    path = Path(str(name_or_path)).expanduser()
    if path.suffix == ".npz" and path.is_file():
        try:
            with np.load(path) as archive:
                return "labels" not in archive.files
        except (OSError, ValueError):
            return False  # load_dataset says what is wrong with the file
    if path.is_dir() and is_cache(path):
        return not cache_info(path).get("labelled")
    if path.is_dir():
        return not class_folders(path / "train" if (path / "train").is_dir() else path)
    return False
