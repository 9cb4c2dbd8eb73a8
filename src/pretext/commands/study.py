"""`pretext study`: the few-label study of a run's encoder against the from-scratch baseline,
over several label counts and seeds -> study.json, study.md, study.png."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import torch

from pretext import rundir
from pretext.checkpoint import write_json, write_text_atomic
from pretext.commands.common import labelled_splits
from pretext.config import (
    ClusterConfig,
    RunConfig,
    input_stats,
    recipe,
    resolve_device,
    told_passes,
    with_run_views,
)
from pretext.data import check_label_count
from pretext.errors import PretextError
from pretext.evaluate.study import (
    METHODS,
    SEMI,
    StudyConfig,
    finetune_protocol,
    run_study,
    study_markdown,
)
from pretext.models import build_encoder
from pretext.report.plots import study_plot
from pretext.train import pretrain

DEFAULT_LABELS = (10, 100, 600, 6000, 60000)


def check_study_request(
    labels: tuple[int, ...],
    seeds: int,
    semi_epochs: int | None,
    train_labels: torch.Tensor | None = None,
    min_steps: int | None = None,
) -> None:
    """What a study's options can get wrong, found before any work: a label count that failed
    only when its turn came would waste the counts run before it."""
    if not labels:
        raise PretextError("--labels needs at least one label count")
    if seeds < 1:
        raise PretextError(f"--seeds must be >= 1, got {seeds}")
    if semi_epochs is not None and semi_epochs < 1:
        raise PretextError(f"--semi-epochs must be >= 1, got {semi_epochs}")
    if min_steps is not None and min_steps < 0:
        raise PretextError(f"--min-steps must be >= 0, got {min_steps}")
    for count in labels if train_labels is not None else ():
        # counts above the data set's size mean all of it (the study takes them so)
        check_label_count(train_labels, min(count, len(train_labels)))


def pretrain_then_study(run_cfg: RunConfig, labels: tuple[int, ...], seeds: int = 3, **study):
    """Pretrain `run_cfg`'s run first (the study's options and data checked before), then
    `study_command` on it with the `study` keywords."""
    pre = run_cfg.pretrain
    train, _ = labelled_splits(pre.dataset, pre.data_dir, None)
    check_study_request(
        labels,
        seeds,
        study.get("semi_epochs"),
        train.labels,
        study.get("min_steps"),
    )
    pretrain(pre)
    return study_command(pre.out, labels, seeds, **{**study, "encoder": pre.encoder})


def study_config(
    pre, labels, seeds, min_steps, cluster, semi, semi_epochs, select_labels=False
) -> StudyConfig:
    """The study's settings: the run's recipe, with the study's own options."""
    base = recipe(pre.recipe)
    ft = with_run_views(base.finetune, pre.augment)
    ft = ft if min_steps is None else replace(ft, min_steps=min_steps)
    return StudyConfig(
        labels=tuple(labels),
        seeds=seeds,
        finetune=ft,
        linear=base.linear,
        knn_k=base.knn_k,
        knn_temperature=base.knn_temperature,
        methods=METHODS + (("cluster",) if cluster else ()) + (SEMI if semi else ()),
        clustering=ClusterConfig(augment=pre.augment),
        semi=told_passes(semi_epochs),
        stats=input_stats(pre),
        select_labels=select_labels,
    )


def study_command(
    run_dir: str | Path,
    labels: tuple[int, ...] = DEFAULT_LABELS,
    seeds: int = 3,
    out: str | Path | None = None,
    dataset: str | None = None,
    data_dir: str | None = None,
    device: str = "auto",
    min_steps: int | None = None,
    cluster: bool = False,
    semi: bool = False,
    semi_epochs: int | None = None,
    encoder: str | None = None,
    select_labels: bool = False,
    log=print,
) -> list[dict]:
    """Few-label study of a run's encoder -> study.json, study.md, study.png in `out` (default:
    the run directory). With `cluster`, also clusters found without labels and named by each
    labelled subset; with `semi`, also semi-supervised fine-tuning for `semi_epochs` passes over
    all training images (None: `pretext.config.semi_passes`), from the pretrained encoder and
    from random weights. With
    `select_labels`, each seed's labelled images are chosen from the pretrained embedding
    (`pretext.evaluate.selection`) instead of drawn at random per class. Written after
    every label count: an interrupted study keeps the counts it finished (study.md then says
    it is partial). `encoder` names the user's own
    encoder again (`rundir.encoder_of`)."""
    pre = rundir.pretrain_config(run_dir)
    cfg = study_config(pre, labels, seeds, min_steps, cluster, semi, semi_epochs, select_labels)
    dev = resolve_device(device)
    train, test = labelled_splits(
        dataset or pre.dataset, data_dir or pre.data_dir, None, pre.image_size
    )
    check_study_request(labels, seeds, semi_epochs, train.labels, min_steps)  # before any work
    # Counts beyond the data set mean all of it: one row for all, not one per count given.
    cfg = replace(cfg, labels=tuple(dict.fromkeys(min(n, len(train)) for n in cfg.labels)))
    # one cluster per class: named one to one, and the start of the semi arm
    cfg = replace(cfg, clustering=replace(cfg.clustering, clusters=train.num_classes))
    name = rundir.encoder_of(pre, encoder, run_dir)
    encoder = rundir.load_encoder(run_dir, dev, named=name)
    files = rundir.RunDir(out if out is not None else run_dir)
    protocol = finetune_protocol(cfg.finetune)

    def make_scratch(seed: int) -> torch.nn.Module:
        channels, size = train.images.shape[1], train.images.shape[-1]
        return build_encoder(name, channels, size, seed=10_000 + seed).to(dev)

    def write_study(rows: list[dict]) -> None:
        finished = len({row["labels"] for row in rows})
        table = study_markdown(rows, protocol)
        if finished < len(cfg.labels):
            table += (
                f"\nPartial: {finished} of {len(cfg.labels)} label counts done (the "
                "study was still running when this was written).\n"
            )
        write_json(files.study_json, rows)
        study_plot(rows, files.study_png)
        write_text_atomic(files.study_md, table)

    rows = run_study(encoder, make_scratch, train, test, cfg, dev, log, done=write_study)
    log(study_markdown(rows, protocol))
    return rows
