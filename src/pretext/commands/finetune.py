"""`pretext finetune` and `pretext evaluate`: a run's encoder on labelled images, fine-tuned
(or a fresh encoder, the from-scratch baseline) and frozen (linear probe, kNN, retrieval), with
the few-label comparison against the baseline."""

from __future__ import annotations

import hashlib
import time
from dataclasses import asdict, fields
from pathlib import Path

import torch

from pretext import rundir
from pretext.allocator import phase
from pretext.augment import preset
from pretext.checkpoint import load_checkpoint
from pretext.commands.common import labelled_splits, require_pretrained_run, views_stats
from pretext.config import (
    ClusterConfig,
    FinetuneConfig,
    RunConfig,
    SemiConfig,
    check_finetune,
    input_stats,
    override,
    recipe,
    resolve_device,
    scratch_finetune,
    starts_from_clusters,
    told_epochs,
    with_run_views,
)
from pretext.data import ImageSet
from pretext.data.sources import portable
from pretext.errors import PretextError
from pretext.evaluate import (
    accuracy,
    extract_features,
    few_label_comparison,
    finetune,
    linear_probe,
)
from pretext.evaluate.cluster import cluster_probabilities, match_clusters, train_clusters
from pretext.evaluate.knn import knn_accuracy
from pretext.evaluate.retrieval import retrieval_metrics
from pretext.evaluate.selection import labelled_subset
from pretext.evaluate.semi import cluster_start, semi_train
from pretext.models import Classifier, build_encoder
from pretext.report.plots import (
    confusion_matrix,
    embedding_map,
    neighbour_grid,
    training_curves,
    worst_mistakes,
)


def finetune_defaults(
    run_dir: str | Path | None,
    recipe_name: str | None = None,
    from_scratch: bool = False,
    resume: bool = False,
) -> tuple[FinetuneConfig, int | None]:
    """The fine-tuning settings a call on `run_dir` starts from, and its label count: with
    `resume`, those its fine-tuning checkpoint was trained with; otherwise the recipe's (by
    default the run's own recipe)."""
    run = rundir.pretrain_config(run_dir) if rundir.is_run_dir(run_dir) else None
    base = recipe(recipe_name or (run.recipe if run else "default")).finetune
    if not resume or run_dir is None:
        return base, None
    path = rundir.RunDir(run_dir).finetune_checkpoint(from_scratch)
    saved = load_checkpoint(path).get("settings") if path.is_file() else None
    if saved is None:  # no checkpoint, or one that predates its settings
        return base, None
    known = {f.name for f in fields(FinetuneConfig)}
    return FinetuneConfig(**{k: v for k, v in saved.items() if k in known}), saved.get("labelled")


@phase
def finetune_command(
    run_dir: str | Path | None,
    dataset: str | None = None,
    data_dir: str | None = None,
    cfg: FinetuneConfig | None = None,
    labels: int | None = None,
    from_scratch: bool = False,
    encoder: str | None = None,
    device: str = "auto",
    limit_train: int | None = None,
    resume: bool = False,
    image_size: int | None = None,
    semi: SemiConfig | None = None,
    recipe_name: str | None = None,
    changes: dict | None = None,
    splits: tuple[ImageSet, ImageSet] | None = None,
    draw: bool = True,
    select_labels: bool = False,
    log=print,
) -> dict:
    """Fine-tune a run's encoder (or a fresh one) on labels; test accuracy of the last epoch.

    A run directory gives the defaults: its data set, data dir, image size, encoder (for the
    from-scratch baseline) and recipe; `cfg` None starts from `finetune_defaults` and applies
    `changes` (FinetuneConfig fields). Progress is checkpointed per epoch, `resume` continues
    it. With `semi`, the classifier learns from every training image, labelled or not
    (semi-supervised, `pretext.evaluate.semi`), instead of the labelled ones alone; a
    pretrained encoder with few labels per class then starts from its clusters, named by the
    labels. `select_labels` chooses the `labels` images from the run's embedding instead of at
    random per class (`pretext.evaluate.selection`). `splits` (train, test) skips loading them
    again; `draw` False leaves the run's confusion and mistakes pictures as they are."""
    if not from_scratch:
        require_pretrained_run(run_dir)
    run = rundir.pretrain_config(run_dir) if rundir.is_run_dir(run_dir) else None
    if cfg is None:
        cfg, saved_labels = finetune_defaults(run_dir, recipe_name, from_scratch, resume)
        labels = labels if labels is not None else saved_labels
    cfg, semi = settled_configs(cfg, semi, changes, run, labels, from_scratch, resume)
    dev = resolve_device(device)
    dataset = dataset or (run.dataset if run else "mnist")
    every, test = splits or run_splits(run, dataset, data_dir, limit_train, image_size)
    named = None if from_scratch else encoder  # the run's own, to choose with
    subset = chosen_labels(run_dir, every, labels, cfg.seed, select_labels, dev, named)
    train = every if subset is None else every.subset(subset)
    data = labelled_data(dataset, limit_train, every, subset)
    model = starting_encoder(run_dir, encoder, from_scratch, train.images, cfg.seed, dev)
    stats = views_stats(run, dataset, every)
    if semi is None:
        result = plain_finetune(
            run_dir, model, (train, test), cfg, from_scratch, resume, data, dev, log, stats
        )
    else:
        clusters = None if from_scratch else class_clusters(run, every.num_classes)
        result = semi_finetune(model, every, train, test, semi, clusters, dev, log, stats)
    classifier, views = result.pop("model"), preset(cfg.augment, stats)
    if run_dir is not None and not from_scratch and draw:
        draw_classifier_pictures(rundir.RunDir(run_dir), classifier, test, views, dev)
    result.update(labels=len(train), from_scratch=from_scratch)
    log(f"test accuracy {100 * result['test_accuracy']:.2f}%")
    if run_dir is not None:
        rundir.update_metrics(run_dir, **{metrics_key(from_scratch, semi is not None): result})
    return result


def run_splits(run, dataset: str, data_dir, limit_train, image_size) -> tuple[ImageSet, ImageSet]:
    """The training and test images, with the run's data dir and image size where not given."""
    data_dir = data_dir or (run.data_dir if run else None)
    image_size = image_size or (run.image_size if run else None)
    return labelled_splits(dataset, data_dir, limit_train, image_size)


def class_clusters(run, num_classes: int) -> ClusterConfig:
    """One cluster per class, through the run's views: what a semi-supervised fine-tune of a
    pretrained encoder starts from under two labels per class."""
    return ClusterConfig(clusters=num_classes, augment=run.augment if run else None)


def chosen_labels(run_dir, every: ImageSet, labels, seed: int, select: bool, device, named=None):
    """The indices of the labelled subset (None: all): chosen from the run's pretrained
    embedding with `select` (the from-scratch baseline too, so that both train on the same
    images), else drawn at random per class; `named`: the user's own encoder, named again."""
    if labels is None:
        if select:
            raise PretextError("--select-labels chooses a subset: give --labels N too")
        return None
    if not select:
        return labelled_subset(every.labels, labels, seed)
    if not rundir.has_checkpoint(run_dir):
        raise PretextError(
            "--select-labels chooses from a pretrained embedding: give --out with the run "
            "directory of `pretext pretrain`"
        )
    encoder = rundir.load_encoder(run_dir, device, named=named)
    plain = preset("none", input_stats(rundir.pretrain_config(run_dir)))
    return labelled_subset(
        every.labels, labels, seed, extract_features(encoder, every.images, plain, device)
    )


def settled_configs(cfg, semi, changes, run, labels, from_scratch, resume):
    """The fine-tuning and semi-supervised settings as they will run: `changes` applied, the
    run's views where none were asked (fine-tuning), the from-scratch baseline's own, each
    checked."""
    cfg = override(cfg, **told_epochs(changes or {}))
    cfg = with_run_views(cfg, run.augment if run else None)
    check_finetune(cfg)
    check_semi_request(semi, labels, resume)
    return (scratch_finetune(cfg) if from_scratch else cfg), semi


def plain_finetune(run_dir, model, splits, cfg, from_scratch, resume, data, device, log, stats):
    """Fine-tuning on the labelled images alone (`splits`: train, test), checkpointed in the
    run directory each epoch (`resume` continues it); the result records its settings."""
    train, test = splits
    name = "scratch" if from_scratch else "finetune"
    saved = None if run_dir is None else rundir.RunDir(run_dir).finetune_checkpoint(from_scratch)
    if resume and (saved is None or not saved.is_file()):
        raise PretextError(f"--resume: no fine-tuning checkpoint at {saved} to continue")
    result = finetune(model, train, test, cfg, device, log, name, saved, resume, data, stats)
    return {**result, "settings": asdict(cfg)}


def metrics_key(from_scratch: bool, semi: bool) -> str:
    """Where metrics.json keeps a fine-tune: each kind its own record."""
    return ("semi" if semi else "finetune") + ("_scratch" if from_scratch else "")


def labelled_data(dataset: str, limit_train, every: ImageSet, subset) -> dict:
    """What defines a fine-tune's labelled images, as its checkpoint records it: the data set,
    --limit-train, the number of training images and a hash of the labelled subset."""
    chosen = "all" if subset is None else hashlib.sha256(subset.numpy().tobytes()).hexdigest()[:16]
    return {
        "dataset": portable(dataset),
        "limit_train": limit_train,
        "images": len(every),
        "subset": chosen,
    }


def starting_encoder(
    run_dir: str | Path | None,
    encoder: str | None,
    from_scratch: bool,
    images: torch.Tensor,
    seed: int,
    device: torch.device,
) -> torch.nn.Module:
    """The encoder to fine-tune: the run's pretrained one, or a fresh one for `images` (of
    the run's architecture where `encoder` is None, else `cnn`)."""
    run = rundir.pretrain_config(run_dir) if rundir.is_run_dir(run_dir) else None
    if encoder is None:
        encoder = rundir.encoder_of(run, None, run_dir) if run else "cnn"
    if from_scratch:
        return build_encoder(encoder, images.shape[1], images.shape[-1], seed=seed).to(device)
    return rundir.load_encoder(run_dir, device, named=encoder)


def check_semi_request(semi: SemiConfig | None, labels: int | None, resume: bool) -> None:
    """What `--semi` cannot be combined with, said before any work."""
    if semi is None:
        return
    if min(semi.epochs, semi.few_epochs) < 1:
        passes = min(semi.epochs, semi.few_epochs)
        raise PretextError(f"--semi-epochs must be >= 1, got {passes}")
    if labels is None:
        raise PretextError(
            "--semi needs --labels N: with every image labelled there is none to add"
        )
    if resume:
        raise PretextError("--semi does not resume (it keeps no checkpoint); run it again")


def semi_finetune(encoder, every, train, test, semi, clusters, device, log, stats) -> dict:
    """Semi-supervised fine-tuning of `encoder` on the labelled `train` and all of `every`;
    with `clusters` (ClusterConfig) and few labels per class (`starts_from_clusters`), from the
    encoder's clusters named by the labels; views normalised by `stats`."""
    started = time.perf_counter()
    named = clusters is not None and clusters.clusters == train.num_classes
    if named and starts_from_clusters(semi, len(train), train.num_classes):
        log(f"clustering {len(every)} training images without labels")
        found = train_clusters(encoder, every.images, clusters, device, log, stats)
        probs = cluster_probabilities(found, train.images, device, stats)
        classes = train.num_classes
        mapping = match_clusters(probs, train.labels, clusters.clusters, classes)
        start = cluster_start(found, mapping, classes)
    else:
        start = Classifier(encoder, train.num_classes, seed=semi.seed)
    log(f"semi-supervised on {len(train)} labelled and all {len(every)} training images")
    out = semi_train(start, every.images, train, semi, device, log, stats)
    return {
        "test_accuracy": accuracy(out["model"], test, preset("none", stats), device),
        "semi": {
            **asdict(semi),
            "confident": out["confident"],
            "passes": out["passes"],
            "steps": out["steps"],
        },
        "seconds": round(time.perf_counter() - started, 3),
        "model": out["model"],
    }


def draw_classifier_pictures(run: rundir.RunDir, classifier, test, aug, device) -> None:
    logits = extract_features(classifier, test.images, aug, device).cpu()
    names = list(test.classes) if test.classes else None
    confusion_matrix(logits.argmax(1), test.labels, run.confusion_png, names)
    worst_mistakes(test.images, test.labels, logits, run.mistakes_png, names=names)


@phase
def evaluate_command(
    run_dir: str | Path,
    dataset: str | None = None,
    data_dir: str | None = None,
    cfg: RunConfig | None = None,
    device: str = "auto",
    splits: tuple[ImageSet, ImageSet] | None = None,
    encoder: str | None = None,
    log=print,
) -> dict:
    """Linear probe, kNN, retrieval metrics and the few-label comparison of a run's saved encoder
    -> metrics.json (and the pictures the report shows). `splits` skips loading them again;
    `encoder` names the user's own encoder again (`rundir.encoder_of`)."""
    pre = rundir.pretrain_config(run_dir)
    cfg = cfg or recipe(pre.recipe)
    dev = resolve_device(device)
    if splits is None:
        splits = labelled_splits(
            dataset or pre.dataset, data_dir or pre.data_dir, pre.limit_train, pre.image_size
        )
    train, test = splits
    name = rundir.encoder_of(pre, encoder, run_dir)
    encoder = rundir.load_encoder(run_dir, dev, named=name)
    stats = input_stats(pre)
    eval_aug = preset(cfg.finetune.augment, stats)
    train_x = extract_features(encoder, train.images, eval_aug, dev)
    test_x = extract_features(encoder, test.images, eval_aug, dev)
    frozen = frozen_metrics(train_x, train.labels, test_x, test.labels, cfg, pre.seed, log)
    rundir.update_metrics(run_dir, **frozen)
    shown = slice(0, 2000)
    pictures = (test_x[shown], test.labels[shown], pre.seed, test.images[shown], train.classes)
    draw_run_pictures(rundir.RunDir(run_dir), *pictures)
    channels, size = train.images.shape[1], train.images.shape[-1]
    scratch = build_encoder(name, channels, size, seed=pre.seed + 1).to(dev)
    labels = min(cfg.few_labels, len(train))
    ft = with_run_views(cfg.finetune, pre.augment)
    few = few_label_comparison(
        encoder, scratch, train, test, labels, cfg.few_label_seeds, ft, dev, log, stats
    )
    log(few_label_line(few))
    few["settings"] = {"finetune": asdict(ft), "scratch": asdict(scratch_finetune(ft))}
    return rundir.update_metrics(run_dir, few_labels=few)


def frozen_metrics(train_x, train_y, test_x, test_y, cfg: RunConfig, seed: int, log) -> dict:
    """Linear probe, kNN and retrieval on frozen features, as metrics.json records them."""
    probe = linear_probe(train_x, train_y, test_x, test_y, cfg.linear, seed=seed)
    probe["settings"] = asdict(cfg.linear)
    log(f"linear probe test accuracy {100 * probe['test_accuracy']:.2f}%")
    knn = {
        "k": cfg.knn_k,
        "temperature": cfg.knn_temperature,
        "test_accuracy": knn_accuracy(
            train_x, train_y, test_x, test_y, cfg.knn_k, cfg.knn_temperature
        ),
    }
    log(f"kNN (k={cfg.knn_k}) test accuracy {100 * knn['test_accuracy']:.2f}%")
    retrieval = retrieval_metrics(train_x, train_y, test_x, test_y)
    log(
        f"retrieval: precision@1 {100 * retrieval['precision_at_1']:.2f}%, "
        f"mAP@R {100 * retrieval['map_at_r']:.2f}%"
    )
    return {"linear_probe": probe, "knn": knn, "retrieval": retrieval}


def few_label_line(few: dict) -> str:
    interval = (
        f" (95% interval {100 * few['gain_low']:+.2f} to {100 * few['gain_high']:+.2f}, "
        f"paired over {few['seeds']} seeds)"
        if few["gain_low"] is not None
        else ""
    )
    return (
        f"{few['labels']} labels: pretrained {100 * few['pretrained']:.2f}% "
        f"+- {100 * few['pretrained_std']:.2f}, from scratch {100 * few['scratch']:.2f}% "
        f"+- {100 * few['scratch_std']:.2f}; gain {100 * few['gain']:+.2f} points{interval}"
    )


def draw_run_pictures(
    run: rundir.RunDir,
    features: torch.Tensor,
    labels: torch.Tensor | None,
    seed: int,
    images: torch.Tensor,
    names: tuple[str, ...] | None = None,
) -> None:
    """The pictures of a run's encoder: its training curves (with the fine-tuning's, where
    it ran), the map of `features` (of `images`), coloured by `labels` where there are any,
    and the nearest neighbours of a few of the images."""
    history = rundir.read_history(run.root)
    if history:
        finetune = rundir.read_metrics(run.root).get("finetune")
        training_curves(history, run.curves_png, finetune)
    embedding_map(features, labels, run.embeddings_png, seed, list(names) if names else None)
    neighbour_grid(images, features, run.neighbours_png)
