"""`pretext prepare`: decode a folder, an .npz or a named set once into a cache that every
command reads as `--dataset CACHE_DIR`, batch by batch from disk."""

from __future__ import annotations

from pathlib import Path

from pretext.checkpoint import write_json
from pretext.data.cache import is_cache
from pretext.data.prepare import prepare_folder, prepare_loaded
from pretext.errors import PretextError


def prepare_command(
    source: str | Path,
    out: str | Path,
    image_size: int | None = None,
    data_dir: str | Path | None = None,
    workers: int = 1,
    skip_bad_files: bool = True,
    log=print,
) -> dict:
    """Decode `source` into the cache `out`; returns its description (cache.json). A folder
    needs `image_size` (its files may differ in size); other sources keep theirs without it.
    An interrupted prepare continues where it stopped; on a changed folder only the new and
    modified files are decoded."""
    if workers < 1:
        raise PretextError(f"--workers must be >= 1, got {workers}")
    if image_size is not None and image_size < 8:
        raise PretextError(f"--image-size must be at least 8, got {image_size}")
    path, root = Path(str(source)).expanduser(), Path(out)
    if path.is_dir() and is_cache(path):
        raise PretextError(f"{path} is already a prepared cache: use it as --dataset {path}")
    if path.is_dir():
        if image_size is None:
            raise PretextError("a folder's images may differ in size: give --image-size S")
        info = prepare_folder(path, root, image_size, workers, skip_bad_files, log)
    else:
        info = prepare_loaded(str(source), root, image_size, data_dir, log)
    write_json(root / "cache.json", info)  # last: until it is written, the cache is not one
    size = sum(f.stat().st_size for f in root.iterdir() if f.is_file())
    log(f"cache {root}: {', '.join(info['splits'])}; {size / 2**20:.1f} MiB on disk")
    return info
