"""`pretext run`, the main job: pretrain, fine-tune on all labels, evaluate (linear probe, kNN,
retrieval, the few-label comparison), the pictures and the report, in one run directory."""

from __future__ import annotations

import time
from dataclasses import replace

import torch

from pretext import distributed, rundir
from pretext.augment import preset
from pretext.commands.cluster import cluster_command
from pretext.commands.common import labelled_splits
from pretext.commands.finetune import (
    check_semi_request,
    draw_run_pictures,
    evaluate_command,
    finetune_command,
)
from pretext.commands.report import augment_grid, report_command
from pretext.config import ClusterConfig, RunConfig, check_finetune, input_stats, resolve_device
from pretext.data import load_dataset
from pretext.data.peek import known_unlabelled, missing_test_split
from pretext.errors import PretextError
from pretext.evaluate import extract_features
from pretext.train import pretrain


def run(cfg: RunConfig, log=print) -> dict:
    """The main job; returns metrics.json's record."""
    started = time.perf_counter()
    pre = cfg.pretrain
    refuse_before_pretraining(cfg)
    summary = pretrain(pre, log)
    if distributed.world_size() > 1 and torch.distributed.get_rank() != 0:
        return {}  # evaluation runs once, on rank 0
    out = rundir.RunDir(pre.out)
    rundir.update_metrics(
        out.root,
        dataset=pre.dataset,
        recipe=pre.recipe,
        method=pre.method,
        encoder=pre.encoder,
        pretrain=summary,
    )
    train = load_dataset(pre.dataset, "train", pre.data_dir, image_size=pre.image_size)
    if train.labels is None:
        log("the data set has no labels: nothing to score; drawing what the encoder learnt")
        described = describe_unlabelled(out, pre, train, started, log)
        if cfg.semi is not None:  # known_unlabelled could not tell before pretraining
            raise PretextError(f"--semi needs labels and {pre.dataset} has none; see {out.root}")
        return described
    splits = labelled_splits(pre.dataset, pre.data_dir, pre.limit_train, pre.image_size, train)
    ft = finetune_command(
        out.root,
        cfg=replace(cfg.finetune, seed=pre.seed),
        device=pre.device,
        limit_train=pre.limit_train,  # recorded: the splits are already cut
        resume=pre.resume and out.finetune_checkpoint(False).is_file(),
        splits=splits,
        encoder=pre.encoder,  # the caller's own settings: a user encoder named in them is trusted
        log=log,
    )
    metrics = evaluate_command(
        out.root, cfg=cfg, device=pre.device, splits=splits, encoder=pre.encoder, log=log
    )
    if cfg.semi is not None:
        semi_arms(out.root, cfg, splits, log)
    augment_grid(
        pre.dataset,
        pre.data_dir,
        out.views_png,
        pre.augment,
        seed=pre.seed,
        image_size=pre.image_size,
        data=train,
    )
    metrics = rundir.update_metrics(out.root, seconds=round(time.perf_counter() - started, 1))
    report_command(out.root)
    log(
        f"done in {metrics['seconds']:.0f}s: fine-tune {100 * ft['test_accuracy']:.2f}%, "
        f"linear probe {100 * metrics['linear_probe']['test_accuracy']:.2f}%; "
        f"see {out.report} (figures in {out.metrics})"
    )
    return metrics


def refuse_before_pretraining(cfg: RunConfig) -> None:
    """What would stop the evaluation, found before minutes of pretraining, not after them."""
    dataset = cfg.pretrain.dataset
    problem = missing_test_split(dataset)
    if problem:
        raise PretextError(f"{problem}; evaluation needs one (`pretext pretrain` does not)")
    if cfg.semi is not None and known_unlabelled(dataset):
        raise PretextError(f"--semi needs labels and {dataset} has none")
    check_finetune(cfg.finetune, "finetune-")
    check_semi_request(cfg.semi, cfg.few_labels, resume=False)


def semi_arms(run_dir, cfg: RunConfig, splits, log) -> None:
    """`pretext run --semi`: semi-supervised fine-tuning on the few-label check's count of
    labels (the run's seed), from the pretrained encoder and, as its control, from random
    weights -> metrics.json `semi`, `semi_scratch`. The full-label fine-tune's pictures stay."""
    pre = cfg.pretrain
    for from_scratch in (False, True):
        finetune_command(
            run_dir,
            cfg=replace(cfg.finetune, seed=pre.seed),
            labels=min(cfg.few_labels, len(splits[0])),
            from_scratch=from_scratch,
            device=pre.device,
            limit_train=pre.limit_train,
            semi=replace(cfg.semi, seed=pre.seed),
            splits=splits,
            encoder=pre.encoder,
            draw=False,
            log=log,
        )


def describe_unlabelled(out: rundir.RunDir, pre, train, started: float, log) -> dict:
    """An unlabelled run's pictures and report: the views, the embedding map and nearest
    neighbours of (up to 2,000) training images, and clusters found without labels."""
    dev = resolve_device(pre.device)
    encoder = rundir.load_encoder(out.root, dev, named=pre.encoder)
    shown = train.images[:2000]
    stats = input_stats(rundir.pretrain_config(out.root))  # settled when pretraining began
    features = extract_features(encoder, shown, preset(pre.augment, stats), dev)
    draw_run_pictures(out, features, None, pre.seed, shown)
    if len(train) > 2:  # clusters need neighbours to learn from
        neighbours = min(ClusterConfig.neighbours, len(train) - 1)
        cfg = ClusterConfig(neighbours=neighbours, seed=pre.seed)
        cluster_command(out.root, cfg, device=pre.device, encoder=pre.encoder, log=log, train=train)
    views = dict(seed=pre.seed, image_size=pre.image_size, data=train)
    augment_grid(pre.dataset, pre.data_dir, out.views_png, pre.augment, **views)
    metrics = rundir.update_metrics(out.root, seconds=round(time.perf_counter() - started, 1))
    log(f"see {report_command(out.root)}")
    return metrics
