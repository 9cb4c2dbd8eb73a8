"""`pretext select`: which images to label first, chosen from a run's embedding without any
label (`pretext.evaluate.selection`), as a list a person works through."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from pretext import rundir
from pretext.augment import preset
from pretext.checkpoint import write_text_atomic
from pretext.commands.search import image_source
from pretext.config import input_stats, resolve_device
from pretext.data import load_dataset
from pretext.errors import PretextError
from pretext.evaluate import extract_features
from pretext.evaluate.selection import select_for_labelling


def select_command(
    run_dir: str | Path,
    labels: int,
    seed: int = 0,
    out: str | Path | None = None,
    dataset: str | None = None,
    data_dir: str | None = None,
    device: str = "auto",
    encoder: str | None = None,
) -> Path:
    """The `labels` training images to label, one per k-means cluster of the run's embedding
    so that every style it sees has one -> a CSV (`out`, default RUN_DIR/to_label.csv) of
    index and source, with the class where the data set already has labels (to check the
    choice against). The same `seed` chooses the same images `--select-labels` trains on."""
    pre = rundir.pretrain_config(run_dir)
    dataset, data_dir = dataset or pre.dataset, data_dir or pre.data_dir
    data = load_dataset(dataset, "train", data_dir, image_size=pre.image_size)
    if not 0 < labels <= len(data):
        raise PretextError(
            f"--labels must be in 1..{len(data)} (the training images), got {labels}"
        )
    dev = resolve_device(device)
    model = rundir.load_encoder(run_dir, dev, named=encoder)
    features = extract_features(model, data.images, preset("none", input_stats(pre)), dev)
    chosen = select_for_labelling(features, labels, seed).tolist()
    table = io.StringIO()
    rows = csv.writer(table, lineterminator="\n")
    rows.writerow(["index", "source", "class"])
    for i in chosen:
        known = "" if data.labels is None else data.class_name(int(data.labels[i]))
        rows.writerow([i, image_source(data, dataset, "train", i), known])
    path = Path(out) if out is not None else rundir.RunDir(run_dir).to_label_csv
    write_text_atomic(path, table.getvalue())
    return path
