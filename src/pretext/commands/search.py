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
from pretext.config import resolve_device
from pretext.data import load_dataset
from pretext.data.folders import centre_square
from pretext.data.sources import portable
from pretext.errors import PretextError
from pretext.evaluate import extract_features
from pretext.report.plots import picture_path, retrieval_strip

STRIP_NEIGHBOURS = 20


def embed_command(
    run_dir: str | Path,
    split: str = "train",
    out: str | Path | None = None,
    dataset: str | None = None,
    data_dir: str | None = None,
    device: str = "auto",
    encoder: str | None = None,
) -> Path:
    """Embeddings of a split (the search database) -> INDEX_DIR/embeddings.npz + index.json
    (INDEX_DIR: `out`, default RUN_DIR/index)."""
    pre = rundir.pretrain_config(run_dir)
    dataset, data_dir = dataset or pre.dataset, data_dir or pre.data_dir
    index_dir = Path(out) if out is not None else rundir.RunDir(run_dir).index
    embeddings, meta = rundir.index_files(index_dir)
    dev = resolve_device(device)
    data = load_dataset(dataset, split, data_dir, image_size=pre.image_size)
    model = rundir.load_encoder(run_dir, dev, named=encoder)
    features = extract_features(model, data.images, preset(pre.augment), dev)
    labels = data.labels.numpy() if data.labels is not None else np.full(len(data), -1)
    index_dir.mkdir(parents=True, exist_ok=True)
    write_npz(
        embeddings,
        embeddings=features.cpu().numpy(),
        labels=labels,
        indices=np.arange(len(data)),
    )
    write_json(
        meta,
        {
            "run_dir": str(Path(run_dir).resolve()),
            "dataset": portable(dataset),
            "data_dir": portable(data_dir),
            "split": split,
        },
    )
    return embeddings


def read_index(index_dir: Path) -> tuple[dict, torch.Tensor, np.ndarray]:
    """An index's description, embeddings and labels (one clear error if it is not one)."""
    embeddings, meta_file = rundir.index_files(index_dir)
    try:
        meta = json.loads(meta_file.read_text())
        with np.load(embeddings) as archive:
            bank = torch.from_numpy(archive["embeddings"])
            bank_labels = archive["labels"]
        Path(meta["run_dir"])  # present, and a path
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise PretextError(f"{index_dir} is not an index made by 'pretext embed' ({exc})") from None
    return meta, bank, bank_labels


def search_command(
    index_dir: str | Path,
    query: str,
    k: int = 10,
    out: str | Path | None = None,
    device: str = "auto",
    encoder: str | None = None,
    log=print,
) -> list[dict]:
    """Nearest database images of a query (a test-set index or an image file), with a PNG strip."""
    if k < 1:
        raise PretextError(f"-k must be >= 1, got {k}")
    index_dir = Path(index_dir)
    if out is not None:
        out = picture_path(out)
    meta, bank, bank_labels = read_index(index_dir)
    pre = rundir.pretrain_config(meta["run_dir"])
    dev = resolve_device(device)
    size = pre.image_size
    database = load_dataset(meta["dataset"], meta["split"], meta["data_dir"], image_size=size)
    if query.isdigit():
        image, query_label = test_image(meta, int(query), size)
    else:
        image = read_query_image(Path(query), database.images.shape[1:])
        query_label = Path(query).name
    model = rundir.load_encoder(meta["run_dir"], dev, named=encoder)
    z = extract_features(model, image.unsqueeze(0), preset(pre.augment), dev).cpu()
    sims = F.normalize(bank.float(), dim=1) @ F.normalize(z, dim=1)[0]
    top = sims.topk(min(k, len(bank)))
    results = [
        {"rank": r + 1, "index": int(i), "label": int(bank_labels[i]), "similarity": float(s)}
        for r, (s, i) in enumerate(zip(top.values, top.indices, strict=True))
    ]
    for row in results:
        log(
            f"#{row['rank']:>2}  index {row['index']:>6}  label {row['label']}  "
            f"similarity {row['similarity']:.3f}"
        )
    strip = out if out is not None else rundir.search_strip(index_dir, query)
    shown = results[:STRIP_NEIGHBOURS]  # all k are printed; a picture of thousands is not read
    neighbours = database.images[top.indices[: len(shown)]]
    retrieval_strip(image, query_label, neighbours, [str(r["label"]) for r in shown], strip)
    more = f" (the nearest {len(shown)} of {len(results)})" if len(shown) < len(results) else ""
    log(f"wrote {strip}{more}")
    return results


def test_image(meta: dict, index: int, size: int | None) -> tuple[torch.Tensor, str]:
    """Image `index` of the indexed data set's test split, and its label ("?" if none)."""
    test = load_dataset(meta["dataset"], "test", meta["data_dir"], image_size=size)
    if index >= len(test):
        raise PretextError(f"--query {index}: the test set has {len(test)} images")
    label = str(int(test.labels[index])) if test.labels is not None else "?"
    return test.images[index], label


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
