"""`pretext embed` and `pretext search`: a split's embeddings as a search index, and the
nearest indexed images of a query."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, UnidentifiedImageError

from pretext import rundir
from pretext.augment import preset
from pretext.checkpoint import write_json, write_npz
from pretext.config import input_stats, resolve_device
from pretext.data import ImageSet, load_dataset
from pretext.data.sources import portable
from pretext.errors import PretextError
from pretext.evaluate import extract_features
from pretext.imagefile import centre_square
from pretext.report.plots import picture_path, retrieval_strip

STRIP_NEIGHBOURS = 20


def image_source(data: ImageSet, dataset: str, split: str, index: int) -> str:
    """Where image `index` came from, as a person finds it again: its file, or the data set,
    split and position."""
    return data.files[index] if data.files else f"{portable(dataset)} {split} #{index}"


def image_sources(data: ImageSet, dataset: str, split: str) -> list[str]:
    return [image_source(data, dataset, split, i) for i in range(len(data))]


def embed_command(
    run_dir: str | Path,
    split: str = "train",
    out: str | Path | None = None,
    dataset: str | None = None,
    data_dir: str | None = None,
    device: str = "auto",
    encoder: str | None = None,
) -> Path:
    """Embeddings of a split (the search database) -> INDEX_DIR/embeddings.npz (embeddings,
    labels, each image's source) + index.json (INDEX_DIR: `out`, default RUN_DIR/index)."""
    pre = rundir.pretrain_config(run_dir)
    dataset, data_dir = dataset or pre.dataset, data_dir or pre.data_dir
    index_dir = Path(out) if out is not None else rundir.RunDir(run_dir).index
    embeddings, meta = rundir.index_files(index_dir)
    dev = resolve_device(device)
    data = load_dataset(dataset, split, data_dir, image_size=pre.image_size)
    model = rundir.load_encoder(run_dir, dev, named=encoder)
    features = extract_features(model, data.images, preset(pre.augment, input_stats(pre)), dev)
    labels = data.labels.numpy() if data.labels is not None else np.full(len(data), -1)
    index_dir.mkdir(parents=True, exist_ok=True)
    write_npz(
        embeddings,
        embeddings=features.cpu().numpy(),
        labels=labels,
        indices=np.arange(len(data)),
        sources=np.array(image_sources(data, dataset, split), dtype=str),
    )
    write_json(
        meta,
        {
            "run_dir": str(Path(run_dir).resolve()),
            "dataset": portable(dataset),
            "data_dir": portable(data_dir),
            "split": split,
            "classes": list(data.classes) if data.classes else None,
        },
    )
    return embeddings


def read_index(index_dir: Path) -> tuple[dict, torch.Tensor, np.ndarray, list[str]]:
    """An index's description, embeddings, labels and sources (one clear error if it is not
    one)."""
    embeddings, meta_file = rundir.index_files(index_dir)
    try:
        meta = json.loads(meta_file.read_text())
        with np.load(embeddings, allow_pickle=False) as archive:
            bank = torch.from_numpy(archive["embeddings"])
            bank_labels = archive["labels"]
            sources = archive["sources"].tolist()
        Path(meta["run_dir"])  # present, and a path
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise PretextError(f"{index_dir} is not an index made by 'pretext embed' ({exc})") from None
    return meta, bank, bank_labels, sources


def search_command(
    index_dir: str | Path,
    query: str,
    k: int = 10,
    out: str | Path | None = None,
    device: str = "auto",
    encoder: str | None = None,
    log=print,
) -> list[dict]:
    """Nearest indexed images of a query: an image file, N (image N of the indexed split) or
    SPLIT:N (image N of the data set's split, e.g. test:3). Prints each neighbour's source,
    class and similarity, and draws the nearest 20 as a PNG strip."""
    if k < 1:
        raise PretextError(f"-k must be >= 1, got {k}")
    index_dir = Path(index_dir)
    if out is not None:
        out = picture_path(out)
    meta, bank, bank_labels, sources = read_index(index_dir)
    pre = rundir.pretrain_config(meta["run_dir"])
    dev = resolve_device(device)
    size = pre.image_size
    database = load_dataset(meta["dataset"], meta["split"], meta["data_dir"], image_size=size)
    image, query_name = query_image(query, meta, database, size)
    model = rundir.load_encoder(meta["run_dir"], dev, named=encoder)
    aug = preset(pre.augment, input_stats(pre))
    z = extract_features(model, image.unsqueeze(0), aug, dev).cpu()
    sims = F.normalize(bank.float(), dim=1) @ F.normalize(z, dim=1)[0]
    top = sims.topk(min(k, len(bank)))
    results = [
        {
            "rank": r + 1,
            "index": int(i),
            "source": sources[i],
            "label": int(bank_labels[i]),
            "class": database.class_name(int(bank_labels[i])),
            "similarity": float(s),
        }
        for r, (s, i) in enumerate(zip(top.values, top.indices, strict=True))
    ]
    log(f"query {query_name}")
    for row in results:
        log(f"#{row['rank']:>2}  {row['similarity']:.3f}  {row['class']:<10}  {row['source']}")
    strip = out if out is not None else rundir.search_strip(index_dir, query)
    shown = results[:STRIP_NEIGHBOURS]  # all k are printed; a picture of thousands is not read
    neighbours = database.images[top.indices[: len(shown)]]
    retrieval_strip(image, query_name, neighbours, [r["class"] for r in shown], strip)
    more = f" (the nearest {len(shown)} of {len(results)})" if len(shown) < len(results) else ""
    log(f"wrote {strip}{more}")
    return results


def query_image(
    query: str, meta: dict, database: ImageSet, size: int | None
) -> tuple[torch.Tensor, str]:
    """The query as uint8 C x H x W and how it is named: an image file, N (of the indexed
    split) or SPLIT:N."""
    split, _, number = query.rpartition(":")
    if number.isdigit() and (split == "" or split.isalpha()):
        data = database
        if split and split != meta["split"]:
            data = load_dataset(meta["dataset"], split, meta["data_dir"], image_size=size)
        index, split = int(number), split or meta["split"]
        if index >= len(data):
            raise PretextError(f"--query {query}: the {split} split has {len(data)} images")
        label = -1 if data.labels is None else int(data.labels[index])
        source = image_source(data, meta["dataset"], split, index)
        return data.images[index], f"{source} ({data.class_name(label)})"
    path = Path(query)
    if not path.is_file():
        raise PretextError(f"--query {query}: no such image file (or give N, or SPLIT:N)")
    return read_query_image(path, database.images.shape[1:]), path.name


def read_query_image(path: Path, shape: torch.Size) -> torch.Tensor:
    """An image file as uint8 C x H x W, converted and resized to match the database."""
    channels, height, width = shape
    try:
        with Image.open(path) as img:
            img = img.convert("L" if channels == 1 else "RGB")
            # A square target keeps the query's centre (as folders read with --image-size).
            fitted = centre_square(img, width) if width == height else img.resize((width, height))
            array = np.asarray(fitted)
    except (OSError, UnidentifiedImageError) as exc:
        raise PretextError(f"{path} is not a readable image ({exc})") from None
    tensor = torch.from_numpy(array.copy())
    return tensor.unsqueeze(0) if channels == 1 else tensor.permute(2, 0, 1)
