"""`pretext cluster`: a run's training images grouped into clusters without labels (SCAN);
labels, where the data set has them, only score the result."""

from __future__ import annotations

import csv
import dataclasses
import io
import time
from pathlib import Path

import torch
from sklearn.metrics import normalized_mutual_info_score

from pretext import rundir
from pretext.checkpoint import save_checkpoint, write_npz, write_text_atomic
from pretext.commands.search import image_sources
from pretext.config import ClusterConfig, input_stats, resolve_device
from pretext.data import ImageSet, load_dataset
from pretext.errors import PretextError
from pretext.evaluate.cluster import assign_clusters, match_clusters, named_accuracy, train_clusters
from pretext.report.plots import cluster_grid


def check_cluster_config(cfg: ClusterConfig) -> None:
    if cfg.clusters < 2 or cfg.epochs < 1 or cfg.neighbours < 1 or cfg.batch_size < 2:
        raise PretextError("--clusters, --batch-size need at least 2; --epochs, --neighbours 1")


def cluster_command(
    run_dir: str | Path,
    cfg: ClusterConfig | None = None,
    dataset: str | None = None,
    data_dir: str | None = None,
    device: str = "auto",
    limit_train: int | None = None,
    encoder: str | None = None,
    log=print,
    train: ImageSet | None = None,
) -> dict:
    """Group a run's training images into clusters -> clusters.npz (the cluster and confidence
    of every train and test image), clusters.png, checkpoints/clusters.pt and "clustering" in
    metrics.json. Each cluster is matched to a class on the training labels, where there are
    any, and accuracy is measured on test. `limit_train` (default: the run's own) clusters the
    first N training images; `train`: the training split, already loaded."""
    run = rundir.RunDir(run_dir)
    pre = rundir.pretrain_config(run_dir)
    cfg = cfg or ClusterConfig()
    if cfg.augment is None:  # the views the encoder was pretrained with
        cfg = dataclasses.replace(cfg, augment=pre.augment)
    dataset, data_dir = dataset or pre.dataset, data_dir or pre.data_dir
    check_cluster_config(cfg)
    dev = resolve_device(device)
    if train is None:
        train = load_dataset(dataset, "train", data_dir, image_size=pre.image_size)
    train = train.first(limit_train or pre.limit_train)
    if cfg.neighbours >= len(train):
        raise PretextError(f"--neighbours {cfg.neighbours}: the data has {len(train)} images")
    started = time.perf_counter()
    pretrained = rundir.load_encoder(run_dir, dev, named=encoder)
    stats = input_stats(pre)
    model = train_clusters(pretrained, train.images, cfg, dev, log, stats)
    seconds = round(time.perf_counter() - started, 3)
    train_c, train_conf = assign_clusters(model, train.images, dev, stats)
    sizes = torch.bincount(train_c, minlength=cfg.clusters).tolist()
    result: dict = {
        "clusters": cfg.clusters,
        "images": len(train),
        "sizes": sizes,
        "empty_clusters": sum(size == 0 for size in sizes),
        "seconds": seconds,
        "settings": dataclasses.asdict(cfg),
    }
    arrays = {"train_clusters": train_c.numpy(), "train_confidence": train_conf.numpy()}
    names, test = None, None
    if train.labels is not None:  # unlabelled data has nothing to score the clusters by
        test = load_dataset(dataset, "test", data_dir, image_size=pre.image_size)
        if test.labels is not None:
            scored = (result, arrays, log)
            names = score_clusters(model, train_c, train, test, cfg, dev, stats, *scored)
    write_clusters(run, model, cfg, dataset, (train, test), arrays, names)
    wrote = f"{run.clusters_csv}, {run.clusters_npz.name} and {run.clusters_png.name}"
    log(f"cluster sizes {sizes}; wrote {wrote}")
    rundir.update_metrics(run_dir, clustering=result)
    return result


def write_clusters(run: rundir.RunDir, model, cfg, dataset, splits, arrays, names) -> None:
    """clusters.npz, the per-image table, checkpoints/clusters.pt and clusters.png; `splits`:
    (train, test or None), `arrays`: each split's clusters and confidences."""
    train, test = splits
    write_npz(run.clusters_npz, **arrays)
    write_cluster_table(run.clusters_csv, dataset, train, test, arrays, names)
    state = {"encoder": model.encoder.state_dict(), "classifier": model.state_dict()}
    save_checkpoint(run.clusters_checkpoint, {**state, "config": dataclasses.asdict(cfg)})
    clusters, confidence = (
        torch.from_numpy(arrays[k]) for k in ("train_clusters", "train_confidence")
    )
    cluster_grid(train.images, clusters, confidence, cfg.clusters, run.clusters_png, names=names)


def score_clusters(
    model, train_c, train: ImageSet, test: ImageSet, cfg, device, stats, result, arrays, log
) -> list[str]:
    """Name each cluster after a class (on the training labels), score the test images' clusters
    by those names; fills `result` and `arrays`, returns the clusters' names."""
    mapping = match_clusters(train_c, train.labels, cfg.clusters)
    test_c, test_conf = assign_clusters(model, test.images, device, stats)
    arrays |= {"test_clusters": test_c.numpy(), "test_confidence": test_conf.numpy()}
    arrays["cluster_class"] = mapping.numpy()
    result["test_accuracy"] = named_accuracy(mapping, test_c, test.labels)
    result["test_nmi"] = float(normalized_mutual_info_score(test.labels, test_c))
    log(
        f"clusters vs test labels: accuracy {100 * result['test_accuracy']:.2f}% "
        f"(clusters matched to classes on training labels), NMI {result['test_nmi']:.3f}"
    )
    return [train.class_name(c) for c in mapping.tolist()]


def write_cluster_table(path: Path, dataset: str, train, test, arrays: dict, names) -> None:
    """clusters.csv: one row per image (source, split, cluster, confidence, the class its
    cluster was matched to, the image's own label), training images first."""
    table = io.StringIO()
    rows = csv.writer(table, lineterminator="\n")
    rows.writerow(["source", "split", "cluster", "confidence", "cluster_class", "label"])
    for split, data in (("train", train), ("test", test)):
        if f"{split}_clusters" not in arrays:
            continue
        clusters, confidence = arrays[f"{split}_clusters"], arrays[f"{split}_confidence"]
        for i, source in enumerate(image_sources(data, dataset, split)):
            c = int(clusters[i])
            label = "" if data.labels is None else data.class_name(int(data.labels[i]))
            named = names[c] if names else ""
            rows.writerow([source, split, c, f"{confidence[i]:.4f}", named, label])
    write_text_atomic(path, table.getvalue())
