"""One handler per command: the parsed flags as a config, then one call of the command's
function in `pretext.commands`."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from pretext import commands, rundir
from pretext.cli.options import run_config
from pretext.commands.study import pretrain_then_study
from pretext.config import ClusterConfig, override, told_passes
from pretext.errors import PretextError


def cmd_prepare(args) -> None:
    commands.prepare_command(
        args.source,
        args.out,
        args.image_size,
        args.data_dir,
        args.workers,
        skip_bad_files=not args.refuse_bad_files,
    )


def cmd_pretrain(args) -> None:
    cfg = run_config(args).pretrain
    with rundir.writer_lock(cfg.out, create=True):
        commands.pretrain(cfg)


def cmd_run(args) -> None:
    passes = semi_epochs(args)
    cfg = run_config(args)
    if args.semi:
        cfg = replace(cfg, semi=told_passes(passes, seed=cfg.pretrain.seed))
    with rundir.writer_lock(cfg.pretrain.out, create=True):
        commands.run(cfg)


def cmd_finetune(args) -> None:
    changes = {
        "epochs": args.epochs,
        "lr": args.lr,
        "batch_size": args.batch_size,
        "min_steps": args.min_steps,
        "anchor": args.anchor,
        "seed": args.seed,
        "augment": args.augment,  # asked for: at every label count
        "few_augment": args.augment,
    }
    seed = 0 if args.seed is None else args.seed
    with rundir.writer_lock(args.out):
        run_finetune(args, changes, seed)


def run_finetune(args, changes: dict, seed: int) -> None:
    passes = semi_epochs(args)
    commands.finetune_command(
        args.out,
        args.dataset,
        args.data_dir,
        labels=args.labels,
        from_scratch=args.from_scratch,
        encoder=args.encoder,
        device=args.device or "auto",
        limit_train=args.limit_train,
        resume=args.resume,
        semi=told_passes(passes, seed=seed) if args.semi else None,
        recipe_name=args.recipe,
        changes=changes,
        select_labels=args.select_labels,
    )


def cmd_evaluate(args) -> None:
    with rundir.writer_lock(args.out):
        commands.evaluate_command(
            args.out,
            args.dataset,
            args.data_dir,
            device=args.device or "auto",
            encoder=args.encoder,
        )


def cmd_study(args) -> None:
    try:
        labels = tuple(int(x) for x in args.labels.split(","))
    except ValueError:
        raise PretextError(
            f"--labels must be comma-separated integers, got {args.labels!r}"
        ) from None
    if args.checkpoint and args.out and Path(args.checkpoint).resolve() != Path(args.out).resolve():
        raise PretextError(
            "give --checkpoint RUN_DIR (a pretrained run to study) or --out RUN_DIR (a run, or "
            "where to pretrain one first), not both; study.* go to --study-out (default: the "
            "run directory)"
        )
    study = dict(
        out=args.study_out,
        dataset=args.dataset,
        data_dir=args.data_dir,
        device=args.device or "auto",
        min_steps=args.min_steps,
        cluster=args.cluster,
        semi=args.semi,
        semi_epochs=semi_epochs(args),
        encoder=args.encoder,
        select_labels=args.select_labels,
    )
    run_dir = args.checkpoint or args.out
    if args.checkpoint is None and not rundir.has_checkpoint(run_dir):
        cfg = run_config(args)
        with rundir.writer_lock(cfg.pretrain.out, create=True):
            pretrain_then_study(cfg, labels, args.seeds, **study)
    else:
        with rundir.writer_lock(args.study_out or run_dir):
            commands.study_command(run_dir, labels, args.seeds, **study)


def cmd_cluster(args) -> None:
    cfg = override(
        ClusterConfig(),
        clusters=args.clusters,
        neighbours=args.neighbours,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        entropy_weight=args.entropy_weight,
        seed=args.seed,
    )
    with rundir.writer_lock(args.out):
        commands.cluster_command(
            args.out,
            cfg,
            args.dataset,
            args.data_dir,
            args.device or "auto",
            args.limit_train,
            encoder=args.encoder,
        )


def cmd_embed(args) -> None:
    with rundir.writer_lock(args.out):
        path = commands.embed_command(
            args.out,
            args.split,
            args.index_dir,
            args.dataset,
            args.data_dir,
            args.device or "auto",
            encoder=args.encoder,
        )
    print(f"wrote {path}")


def cmd_select(args) -> None:
    with rundir.writer_lock(args.out):
        path = commands.select_command(
            args.out,
            args.labels,
            args.seed,
            args.to,
            args.dataset,
            args.data_dir,
            args.device or "auto",
            encoder=args.encoder,
        )
    print(f"wrote {path}")


def cmd_search(args) -> None:
    commands.search_command(
        args.index_dir, args.query, args.k, args.png, args.device or "auto", encoder=args.encoder
    )


def cmd_export(args) -> None:
    with rundir.writer_lock(args.run_dir):
        path = commands.export_command(args.run_dir, args.format, args.file, args.encoder)
        print(f"wrote {path}")


def cmd_compare(args) -> None:
    commands.compare_command(args.run_dirs, args.out)


def cmd_report(args) -> None:
    with rundir.writer_lock(args.run_dir):
        print(f"wrote {commands.report_command(args.run_dir)}")


def cmd_augment(args) -> None:
    path = commands.augment_grid(
        args.dataset,
        args.data_dir,
        args.out,
        args.augment,
        seed=args.seed,
        image_size=args.image_size,
    )
    print(f"wrote {path}")


def semi_epochs(args) -> int | None:
    """--semi-epochs, which only --semi uses (refused without it, never ignored); None: the
    defaults by label count (`pretext.config.semi_passes`)."""
    if args.semi_epochs is not None and not args.semi:
        raise PretextError("--semi-epochs needs --semi")
    return args.semi_epochs
