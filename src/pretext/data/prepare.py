"""`pretext prepare`: a source decoded and resized once into a cache (pretext.data.cache).

A folder's files are decoded in worker processes, in order, and appended to a partial data
file; a journal beside it records how far the decoding got, so an interrupted prepare goes on
from there. A second prepare of a changed folder decodes only the files that are new or
modified (same path, size and mtime: the cached pixels are copied) and drops removed ones."""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import re
import secrets
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from pretext.checkpoint import write_json
from pretext.data.cache import FORMAT, cache_info, is_cache, mapped_pixels, split_rows
from pretext.data.colour_sets import COLOUR_SETS, prepared_splits
from pretext.data.folders import class_folders, folder_entries, folder_format, split_folder
from pretext.data.sources import NAMED_SETS, load_dataset
from pretext.data.stats import channel_stats
from pretext.errors import PretextError
from pretext.imagefile import IMAGE_SUFFIXES, decode_chw
from pretext.progress import step_bar

CACHE_FILE = re.compile(r"^\.?(train|test|unlabeled)[-.]")  # what a prepare writes but cache.json
JOURNAL_EVERY = 512  # files between journal updates (each one an fsync)


def folder_listing(folder: Path, named: list[str] | None) -> tuple[list[list], list[str]]:
    """[path, size, mtime_ns, label] of every file of a split's folder, and its classes."""
    entries, classes = folder_entries(folder, named)
    listing = []
    for file, label in entries:
        stat = file.stat()
        listing.append([str(file), stat.st_size, stat.st_mtime_ns, label])
    return listing, classes


def reusable_rows(root: Path, split: str, shape: tuple) -> tuple[dict, np.ndarray | None]:
    """The rows an earlier cache of this split holds for unchanged files: {(path, size,
    mtime): row} and its pixels; nothing when there is none of this shape."""
    if not is_cache(root):
        return {}, None
    info, rows = cache_info(root), split_rows(root, split)
    if rows is None or (info["channels"], info["image_size"], info["image_size"]) != shape:
        return {}, None
    keys = {tuple(row[:3]): i for i, row in enumerate(rows["files"])}
    return keys, mapped_pixels(root, rows, shape)


def journal_path(root: Path, split: str) -> Path:
    return root / f".{split}.journal.json"


def resume_point(root: Path, split: str, plan: str, row_bytes: int) -> tuple[str, int, list]:
    """(partial data file name, files done, kept entries) of an interrupted prepare with the
    same plan, its data file cut back to the kept rows; a fresh start otherwise."""
    journal = journal_path(root, split)
    if journal.is_file():
        try:
            state = json.loads(journal.read_text())
            part = root / state["part"]
            if state["plan"] == plan and part.is_file():
                with open(part, "r+b") as handle:
                    handle.truncate(len(state["kept"]) * row_bytes)
                return state["part"], state["done"], state["kept"]
        except (OSError, ValueError, KeyError):
            pass  # an unreadable journal: start the split again
    for stale in root.glob(f".{split}-*.part"):  # of a prepare with another plan
        stale.unlink()
    return f".{split}-{secrets.token_hex(4)}.part", 0, []


def ordered_pixels(listing, first, reuse, old, mode, size, pool) -> Iterator[tuple]:
    """(entry, pixels or None, note) for each entry from `first` on, in order: cached rows
    copied (note "cached"), the others decoded by `pool` (or here, without one; note: why a
    file could not be read)."""
    todo = [
        (path, mode, size)
        for path, nbytes, mtime, _ in listing[first:]
        if (path, nbytes, mtime) not in reuse
    ]
    decoded = pool.imap(decode_chw, todo, chunksize=16) if pool else map(decode_chw, todo)
    for i in range(first, len(listing)):
        key = tuple(listing[i][:3])
        if key in reuse:
            yield i, old[reuse[key]].tobytes(), "cached"
        else:
            yield i, *next(decoded)


def prepare_split(
    root: Path, split: str, listing: list, shape: tuple, mode: str, workers: int, skip_bad: bool
) -> tuple[dict, dict]:
    """Decode one split's files into a data file; returns its row table (<split>.json) and
    what was done: files decoded (unreadable ones included), copied from the cache, and the
    file an interrupted prepare was resumed at."""
    row_bytes = int(np.prod(shape))
    plan = hashlib.sha256(json.dumps([listing, shape, mode]).encode()).hexdigest()
    part, done, kept = resume_point(root, split, plan, row_bytes)
    reuse, old = reusable_rows(root, split, shape)
    context = multiprocessing.get_context("spawn")
    pool = context.Pool(workers) if workers > 1 and done < len(listing) else None
    bar = step_bar(range(done, len(listing)), f"prepare {split}")
    copied = 0
    try:
        with open(root / part, "ab") as out:
            for i, pixels, note in ordered_pixels(listing, done, reuse, old, mode, shape[-1], pool):
                if pixels is None:
                    skip_or_refuse(listing[i][0], note, skip_bad)
                else:
                    out.write(pixels)
                    kept.append(i)
                    copied += note == "cached"
                bar.update(1)
                if (i + 1) % JOURNAL_EVERY == 0:
                    write_journal(root, split, out, plan, part, i + 1, kept)
            out.flush()
            os.fsync(out.fileno())
    finally:
        bar.close()
        if pool is not None:
            pool.terminate()
    data = f"{split}-{part.split('-')[-1].removesuffix('.part')}.u8"
    os.replace(root / part, root / data)
    rows = {"data": data, "count": len(kept), "files": [listing[i] for i in kept]}
    return rows, {"decoded": len(listing) - done - copied, "cached": copied, "resumed_at": done}


def write_journal(root: Path, split: str, out, plan: str, part: str, done: int, kept) -> None:
    out.flush()
    os.fsync(out.fileno())
    write_json(journal_path(root, split), {"plan": plan, "part": part, "done": done, "kept": kept})


def skip_or_refuse(path: str, why: str, skip_bad: bool) -> None:
    if not skip_bad:
        raise PretextError(f"{path} is not a readable image{f' ({why})' if why else ''}")
    if Path(path).suffix.lower() in IMAGE_SUFFIXES or not Path(path).name.startswith("."):
        reason = f" ({why})" if why else ""
        warnings.warn(f"skipping {path}: not a readable image{reason}", stacklevel=2)


def commit_split(root: Path, split: str, rows: dict) -> None:
    """The split's row table replaces the old one (the switch is atomic), then the old data
    file and the journal go."""
    before = split_rows(root, split)
    write_json(root / f"{split}.json", rows)
    if before and before["data"] != rows["data"]:
        (root / before["data"]).unlink(missing_ok=True)
    journal_path(root, split).unlink(missing_ok=True)


def check_out_dir(root: Path, source: Path) -> None:
    if root.resolve() == source.resolve() or source.resolve() in root.resolve().parents:
        raise PretextError(f"--out {root} is inside the source folder {source}: put it elsewhere")
    if root.is_dir() and not is_cache(root):  # an interrupted first prepare left only its own
        if any(not CACHE_FILE.match(p.name) for p in root.iterdir()):
            raise PretextError(f"{root} exists and is not a pretext cache: give another --out")


def prepare_folder(source: Path, root: Path, size: int, workers: int, skip_bad: bool, log) -> dict:
    """Every split of an image folder into the cache at `root`; returns cache.json."""
    check_out_dir(root, source)
    root.mkdir(parents=True, exist_ok=True)
    mode = folder_format(source, size)
    shape = (1 if mode == "L" else 3, size, size)
    named = class_folders(split_folder(source, "train"))
    splits = ["train"] + (["test"] if (source / "test").is_dir() else [])
    mean, std, classes = None, None, None
    for split in splits:
        started = time.perf_counter()
        listing, classes_here = folder_listing(split_folder(source, split), named or None)
        classes = classes or classes_here
        rows, work = prepare_split(root, split, listing, shape, mode, workers, skip_bad)
        commit_split(root, split, rows)
        seconds = time.perf_counter() - started
        log(
            f"{split}: {rows['count']} images of {len(listing)} files in {seconds:.1f}s "
            f"({work['decoded']} decoded, {work['cached']} unchanged from the cache"
            + (f", resumed at file {work['resumed_at']})" if work["resumed_at"] else ")")
        )
        if split == "train":
            mean, std = channel_stats(mapped_pixels(root, rows, shape))
    return cache_record(source, size, shape, classes, splits, mean, std)


def cache_record(source, size, shape, classes, splits, mean, std) -> dict:
    return {
        "format": FORMAT,
        "source": str(source),
        "image_size": size,
        "channels": shape[0],
        "classes": list(classes) if classes else None,
        "labelled": bool(classes),
        "splits": splits,
        "mean": mean,
        "std": std,
    }


def splits_of(name_or_path: str | Path) -> tuple[str, ...]:
    """The splits a named set or an .npz has (what `pretext prepare` copies)."""
    key = str(name_or_path)
    if key in NAMED_SETS:
        return tuple(NAMED_SETS[key].files)
    if key in COLOUR_SETS:
        return prepared_splits(key)
    path = Path(key).expanduser()
    if path.suffix == ".npz" and path.is_file():
        try:
            with np.load(path) as archive:
                return ("train", "test") if "test_images" in archive.files else ("train",)
        except (OSError, ValueError):
            return ("train",)  # load_dataset says what is wrong with the file
    return ("train", "test")  # digits; anything else is refused by load_dataset


def prepare_loaded(name: str, root: Path, size: int | None, data_dir, log) -> dict:
    """A named set or an .npz, loaded (and resized) as every command loads it, into the cache
    at `root`; returns cache.json, with every split the source has."""
    root.mkdir(parents=True, exist_ok=True)
    splits, record = [], None
    for split in splits_of(name):  # a split that exists but cannot be read is an error
        data = load_dataset(name, split, data_dir, image_size=size)
        pixels = data.images.numpy()
        part = root / f".{split}-{secrets.token_hex(4)}.part"
        pixels.tofile(part)
        data_file = f"{split}-{part.name.split('-')[-1].removesuffix('.part')}.u8"
        os.replace(part, root / data_file)
        labels = [-1] * len(data) if data.labels is None else data.labels.tolist()
        files = [[f"{name} {split} #{i}", 0, 0, label] for i, label in enumerate(labels)]
        commit_split(root, split, {"data": data_file, "count": len(data), "files": files})
        log(f"{split}: {len(data)} images")
        splits.append(split)
        if split == "train":
            mean, std = channel_stats(pixels)
            shape = tuple(pixels.shape[1:])
            record = (data.classes, data.labels is not None)
    classes, labelled = record
    info = cache_record(name, shape[-1], shape, classes, splits, mean, std)
    return {**info, "labelled": labelled}
