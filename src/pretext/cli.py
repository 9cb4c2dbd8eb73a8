"""Command-line interface: argument parsing only; every command calls a function in
`pretext.commands` or `pretext.train` with a typed config."""

from __future__ import annotations

import argparse
import sys
import warnings
from dataclasses import fields, replace
from pathlib import Path

from pretext import __version__, distributed
from pretext.config import (
    FinetuneConfig,
    RunConfig,
    SelfTrainConfig,
    is_run_dir,
    override,
    pretrain_config_from_file,
    recipe,
)
from pretext.errors import PretextError


def add_data_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--dataset", default=None, help="mnist, fashion-mnist, digits, a folder or an .npz"
    )
    p.add_argument(
        "--data-dir",
        default=None,
        help="folder holding <dataset>/ IDX files (default: $PRETEXT_DATA_DIR, ~/.cache/pretext)",
    )
    p.add_argument("--limit-train", type=int, default=None, help="use the first N training images")
    p.add_argument("--device", default=None, help="auto, cpu or cuda")
    p.add_argument("--threads", type=int, default=None, help="CPU threads for torch")


def add_pretrain_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default=None, help="run directory (default runs/<dataset>)")
    p.add_argument(
        "--config",
        default=None,
        help="start from these settings: a run's config.json (to repeat it) or a JSON object "
        "of pretraining settings; options given override them",
    )
    p.add_argument(
        "--recipe", default=None, help="seed (the original write-up) or default (the default)"
    )
    p.add_argument(
        "--method",
        default=None,
        help="self-supervised method: simclr (default), moco, nnclr, byol, simsiam, barlow, "
        "vicreg, dino",
    )
    p.add_argument(
        "--encoder",
        default=None,
        help="cnn, cnn-bn, cnn-wide, convnet, or your own as module:callable (an nn.Module "
        "class or factory; it may take in_channels and image_size)",
    )
    p.add_argument(
        "--augment",
        default=None,
        help="views for pretraining: default (digits), objects, light, none, seed",
    )
    p.add_argument(
        "--image-size",
        type=int,
        default=None,
        help="resize every image to N x N (default: as stored; a folder: its first image's size)",
    )
    p.add_argument("--epochs", type=int, default=None, help="default: the recipe's (40; seed 10)")
    p.add_argument(
        "--batch-size", type=int, default=None, help="default: the recipe's (256; seed 32)"
    )
    p.add_argument("--lr", type=float, default=None, help="default: the recipe's (2e-3; seed 1e-4)")
    p.add_argument("--optimizer", default=None, help="adam, sgd or lars")
    p.add_argument("--weight-decay", type=float, default=None)
    p.add_argument("--warmup-epochs", type=float, default=None)
    p.add_argument("--schedule", default=None, help="cosine or constant")
    p.add_argument("--temperature", type=float, default=None)
    p.add_argument("--projection-dim", type=int, default=None, help="0: no projection head")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument(
        "--checkpoint-every", type=int, default=None, help="also checkpoint every N steps"
    )
    p.add_argument(
        "--resume", action="store_true", default=None, help="continue RUN_DIR's checkpoint"
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        default=None,
        help="replace an existing run (what pretext wrote there goes; other files stay)",
    )
    p.add_argument(
        "--refuse-bad-files",
        action="store_true",
        default=None,
        help="stop at an unreadable image in a folder instead of skipping it",
    )
    p.add_argument("--bf16", action="store_true", default=None, help="bfloat16 autocast (GPU)")
    p.add_argument(
        "--sync-batchnorm",
        action="store_true",
        default=None,
        help="under torchrun: batch-norm statistics over all processes",
    )


def add_finetune_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--finetune-epochs", type=int, default=None)
    p.add_argument("--finetune-lr", type=float, default=None)
    p.add_argument("--finetune-batch-size", type=int, default=None)
    p.add_argument(
        "--finetune-anchor",
        type=float,
        default=None,
        help="A: after each step a pretrained encoder moves min(0.1, (A / labelled images)^2) "
        "of the way back to its pretrained weights (0: off; never for the scratch baseline)",
    )
    p.add_argument(
        "--min-steps",
        type=int,
        default=None,
        help="fine-tuning steps at least (small label sets get more epochs)",
    )
    p.add_argument(
        "--few-labels", type=int, default=None, help="label count of the few-label check"
    )
    p.add_argument("--few-label-seeds", type=int, default=None)


def resumed_config(args: argparse.Namespace):
    """With --resume, the run's own saved settings (None otherwise, or when --out holds no run:
    pretraining then says there is nothing to resume)."""
    from pretext.config import load_pretrain_config

    if not args.resume:
        return None
    out = args.out or f"runs/{args.dataset or 'mnist'}"
    return load_pretrain_config(out) if is_run_dir(out) else None


def run_config(args: argparse.Namespace) -> RunConfig:
    # Resuming continues the run as it was started: its saved settings are the base, and the
    # options given on the command line override them (pretraining refuses any that would
    # change the training it continues; more --epochs are fine). --config starts a new run
    # from a file's settings the same way.
    given = resumed_config(args)
    if getattr(args, "config", None):
        if given is not None:
            raise PretextError("--resume continues a run with its own settings: drop --config")
        given = pretrain_config_from_file(args.config)  # a new run from a file's settings
    base = recipe(args.recipe or (given.recipe if given else "default"))
    start = given or base.pretrain
    dataset = args.dataset or start.dataset
    pre = override(
        start,
        dataset=dataset,
        data_dir=args.data_dir,
        out=args.out or f"runs/{dataset}",
        method=args.method,
        encoder=args.encoder,
        augment=args.augment,
        image_size=args.image_size,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        optimizer=args.optimizer,
        weight_decay=args.weight_decay,
        warmup_epochs=args.warmup_epochs,
        schedule=args.schedule,
        temperature=args.temperature,
        projection_dim=args.projection_dim,
        seed=args.seed,
        limit_train=args.limit_train,
        device=args.device,
        threads=args.threads,
        checkpoint_every=args.checkpoint_every,
        resume=args.resume,
        overwrite=args.overwrite,
        skip_bad_files=None if args.refuse_bad_files is None else not args.refuse_bad_files,
        sync_batchnorm=args.sync_batchnorm,
        bf16=args.bf16,
    )
    ft = override(
        base.finetune,
        epochs=getattr(args, "finetune_epochs", None),
        lr=getattr(args, "finetune_lr", None),
        batch_size=getattr(args, "finetune_batch_size", None),
        anchor=getattr(args, "finetune_anchor", None),
        min_steps=getattr(args, "min_steps", None),
        seed=pre.seed,
    )
    return override(
        replace(base, pretrain=pre, finetune=ft),
        few_labels=getattr(args, "few_labels", None),
        few_label_seeds=getattr(args, "few_label_seeds", None),
    )


def cmd_pretrain(args) -> None:
    from pretext.train import pretrain

    pretrain(run_config(args).pretrain)


def cmd_run(args) -> None:
    from pretext.commands import run

    run(run_config(args))


def cmd_finetune(args) -> None:
    from pretext.commands import finetune_command, require_pretrained_run
    from pretext.config import load_pretrain_config

    if not args.from_scratch:
        require_pretrained_run(args.out)
    # A run directory gives the defaults: its data set, recipe and (for the from-scratch
    # baseline of that run) its encoder; resuming, its fine-tuning checkpoint's own settings.
    run = load_pretrain_config(args.out) if is_run_dir(args.out) else None
    base = recipe(args.recipe or (run.recipe if run else "default")).finetune
    labels, saved = args.labels, resumed_finetune(args)
    if saved is not None:
        known = {f.name for f in fields(FinetuneConfig)}
        base = FinetuneConfig(**{k: v for k, v in saved.items() if k in known})
        labels = labels if labels is not None else saved.get("labelled")
    cfg: FinetuneConfig = override(
        base,
        epochs=args.finetune_epochs or args.epochs,
        lr=args.lr,
        batch_size=args.batch_size,
        min_steps=args.min_steps,
        anchor=args.anchor,
        seed=args.seed,
    )
    finetune_command(
        args.out,
        args.dataset or (run.dataset if run else "mnist"),
        args.data_dir or (run.data_dir if run else None),
        cfg,
        labels=labels,
        from_scratch=args.from_scratch,
        encoder=args.encoder or (run.encoder if run else "cnn"),
        device=args.device or "auto",
        limit_train=args.limit_train,
        resume=args.resume,
        self_train=SelfTrainConfig(epochs=args.self_train, seed=cfg.seed)
        if args.self_train
        else None,
    )


def resumed_finetune(args: argparse.Namespace) -> dict | None:
    """With --resume, the settings its fine-tuning checkpoint was trained with (and the number
    of labelled images, "labelled"); None without one, or for checkpoints that predate them."""
    from pretext.checkpoint import load_checkpoint

    if not args.resume or args.out is None:
        return None
    name = "scratch" if args.from_scratch else "finetune"
    path = Path(args.out) / "checkpoints" / f"{name}.pt"
    return load_checkpoint(path).get("settings") if path.is_file() else None


def cmd_compare(args) -> None:
    from pretext.commands import compare_command

    compare_command(args.run_dirs, args.out)


def cmd_evaluate(args) -> None:
    from pretext.commands import evaluate_command

    evaluate_command(args.out, args.dataset, args.data_dir, device=args.device or "auto")


def cmd_augment(args) -> None:
    from pretext.commands import augment_grid

    path = augment_grid(
        args.dataset or "mnist",
        args.data_dir,
        args.out,
        args.augment,
        seed=args.seed,
        image_size=args.image_size,
    )
    print(f"wrote {path}")


def cmd_study(args) -> None:
    from pretext.commands import check_study_request, labelled_splits, study_command

    try:
        labels = tuple(int(x) for x in args.labels.split(","))
    except ValueError:
        raise PretextError(
            f"--labels must be comma-separated integers, got {args.labels!r}"
        ) from None
    from pretext.train import CHECKPOINT, pretrain

    if args.checkpoint and args.out and Path(args.checkpoint).resolve() != Path(args.out).resolve():
        raise PretextError(
            "give --checkpoint RUN_DIR (a pretrained run to study) or --out RUN_DIR (a run, or "
            "where to pretrain one first), not both; study.* go to --study-out (default: the "
            "run directory)"
        )
    run_dir = args.checkpoint or args.out
    if args.checkpoint is None and (run_dir is None or not (Path(run_dir) / CHECKPOINT).is_file()):
        run_cfg = run_config(args)  # no pretrained run given: pretrain one first, into --out
        # The study's own options and data are checked first: not after minutes of pretraining.
        train, _ = labelled_splits(run_cfg.pretrain.dataset, run_cfg.pretrain.data_dir, None)
        check_study_request(labels, args.seeds, args.self_train, train.labels, args.min_steps)
        pretrain(run_cfg.pretrain)
        run_dir = run_cfg.pretrain.out
    study_command(
        run_dir,
        labels,
        args.seeds,
        args.study_out,
        args.dataset,
        args.data_dir,
        args.device or "auto",
        args.min_steps,
        args.cluster,
        args.self_train,
    )


def cmd_cluster(args) -> None:
    from pretext.commands import cluster_command
    from pretext.config import ClusterConfig

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
    cluster_command(
        args.out, cfg, args.dataset, args.data_dir, args.device or "auto", args.limit_train
    )


def cmd_embed(args) -> None:
    from pretext.commands import embed_command

    path = embed_command(
        args.out, args.split, args.index_dir, args.dataset, args.data_dir, args.device or "auto"
    )
    print(f"wrote {path}")


def cmd_search(args) -> None:
    from pretext.commands import search_command

    search_command(args.index_dir, args.query, args.k, args.png, args.device or "auto")


def cmd_export(args) -> None:
    from pretext.commands import export_command

    print(f"wrote {export_command(args.run_dir, args.format, args.file)}")


def cmd_report(args) -> None:
    from pretext.commands import report_command

    print(f"wrote {report_command(args.run_dir)}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pretext", description="Self-supervised pretraining of image encoders."
    )
    parser.add_argument("--version", action="version", version=f"pretext {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("pretrain", help="pretrain an encoder without labels")
    add_data_options(p)
    add_pretrain_options(p)
    p.set_defaults(func=cmd_pretrain)

    p = sub.add_parser(
        "run", help="pretrain, fine-tune on all labels, everything evaluate does, the report"
    )
    add_data_options(p)
    add_pretrain_options(p)
    add_finetune_options(p)
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("finetune", help="fine-tune a run's encoder (or a fresh one) on labels")
    add_data_options(p)
    p.add_argument("--out", default=None, help="run directory with checkpoints/last.pt")
    p.add_argument("--recipe", default=None, help="seed or default (default: the run's)")
    p.add_argument(
        "--encoder",
        default=None,
        help="--from-scratch's encoder (default: the run's, or cnn; or module:callable)",
    )
    p.add_argument("--labels", type=int, default=None, help="use a stratified subset of N labels")
    p.add_argument(
        "--from-scratch", action="store_true", help="start from random weights (baseline)"
    )
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--finetune-epochs", type=int, default=None)
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--lr", type=float, default=None)
    p.add_argument("--min-steps", type=int, default=None, help="train at least this many steps")
    p.add_argument(
        "--anchor",
        type=float,
        default=None,
        help="A: after each step the encoder moves min(0.1, (A / labelled images)^2) of the way "
        "back to its pretrained weights (0: off; ignored with --from-scratch)",
    )
    p.add_argument(
        "--resume", action="store_true", help="continue RUN_DIR's fine-tuning checkpoint"
    )
    p.add_argument("--seed", type=int, default=None)
    p.add_argument(
        "--self-train",
        type=int,
        default=0,
        metavar="PASSES",
        help="then learn from all training images, labelled or not, for PASSES passes "
        "(FixMatch: the model's confident predictions on plain images are targets for strong "
        "views); run it on the --from-scratch baseline too before crediting pretraining",
    )
    p.set_defaults(func=cmd_finetune)

    p = sub.add_parser(
        "evaluate", help="linear probe, kNN, retrieval and few-label comparison of a run"
    )
    add_data_options(p)
    p.add_argument("--out", required=True, help="run directory")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("study", help="few-label study: linear, fine-tune, kNN vs from scratch")
    add_data_options(p)
    add_pretrain_options(p)
    p.add_argument(
        "--checkpoint",
        default=None,
        help="run directory of a pretrained encoder (else pretrain into --out first)",
    )
    p.add_argument(
        "--labels", default="10,100,600,6000,60000", help="label budgets, comma-separated"
    )
    p.add_argument("--seeds", type=int, default=3, help="label-sampling seeds per budget")
    p.add_argument(
        "--study-out", default=None, help="folder for study.* (default: the run directory)"
    )
    p.add_argument("--min-steps", type=int, default=None, help="fine-tuning steps at least")
    p.add_argument(
        "--cluster",
        action="store_true",
        help="also: clusters found without labels (as 'pretext cluster'), named by the labels",
    )
    p.add_argument(
        "--self-train",
        type=int,
        default=0,
        metavar="PASSES",
        help="also: both fine-tuned arms after PASSES passes of self-training on all training "
        "images (finetune+self, and its control scratch+self)",
    )
    p.set_defaults(func=cmd_study)

    p = sub.add_parser("cluster", help="group unlabelled images into clusters (SCAN)")
    add_data_options(p)
    p.add_argument("--out", required=True, help="run directory with a pretrained encoder")
    p.add_argument("--clusters", type=int, default=None, help="number of clusters (default 10)")
    p.add_argument("--neighbours", type=int, default=None, help="neighbours per image (default 20)")
    p.add_argument("--epochs", type=int, default=None, help="default 10")
    p.add_argument("--batch-size", type=int, default=None, help="default 256")
    p.add_argument("--lr", type=float, default=None, help="default 1e-3")
    p.add_argument("--entropy-weight", type=float, default=None, help="default 2.0")
    p.add_argument("--seed", type=int, default=None)
    p.set_defaults(func=cmd_cluster)

    p = sub.add_parser("embed", help="write embeddings of a split (a search index)")
    add_data_options(p)
    p.add_argument("--out", required=True, help="run directory")
    p.add_argument("--split", default="train")
    p.add_argument("--index-dir", default=None, help="default RUN_DIR/index")
    p.set_defaults(func=cmd_embed)

    p = sub.add_parser("search", help="nearest neighbours of a query in an index")
    p.add_argument("--index-dir", required=True)
    p.add_argument("--query", required=True, help="a test-set index or an image file")
    p.add_argument("-k", type=int, default=10)
    p.add_argument("--png", default=None, help="where to write the strip of neighbours")
    p.add_argument("--device", default=None)
    p.set_defaults(func=cmd_search)

    p = sub.add_parser("export", help="write the encoder alone (TorchScript or ONNX)")
    p.add_argument("run_dir")
    p.add_argument("--format", default="torchscript", help="torchscript or onnx")
    p.add_argument("--file", default=None, help="output file")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("compare", help="several runs' settings and results side by side")
    p.add_argument("run_dirs", nargs="+")
    p.add_argument("--out", default=None, help="also write the table to this markdown file")
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser("report", help="write RUN_DIR/report.html (self-contained)")
    p.add_argument("run_dir")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("augment", help="write a PNG grid of original images and random views")
    p.add_argument("--dataset", default="mnist")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--augment", default="default", help="preset: default, seed, light")
    p.add_argument("--out", default="views.png")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--image-size", type=int, default=None, help="resize every image to N x N")
    p.set_defaults(func=cmd_augment)
    return parser


_PACKAGE = str(Path(__file__).resolve().parent)


def show_warnings_as_lines(plain_show):
    """A `warnings.showwarning` that writes pretext's own warnings as one line on stderr
    ("pretext: warning: ..."), and any other library's through `plain_show`."""

    def show(message, category, filename, lineno, file=None, line=None) -> None:
        if category is UserWarning and str(Path(filename).resolve()).startswith(_PACKAGE):
            print(f"pretext: warning: {message}", file=file or sys.stderr)
        else:
            plain_show(message, category, filename, lineno, file, line)

    return show


def main(argv: list[str] | None = None) -> int:
    from pretext.allocator import keep_freed_memory

    args = build_parser().parse_args(argv)
    keep_freed_memory()
    threads = getattr(args, "threads", None)  # every command takes it (pretrain keeps it too)
    if threads is not None and threads < 1:
        print(f"pretext: error: --threads must be >= 1, got {threads}", file=sys.stderr)
        return 2
    if threads:
        import torch

        torch.set_num_threads(threads)
    with warnings.catch_warnings():  # the caller's warning settings come back afterwards
        warnings.simplefilter("default")
        warnings.showwarning = show_warnings_as_lines(warnings.showwarning)
        return run_command(args)


def run_command(args: argparse.Namespace) -> int:
    """The command, with its errors as one line and an exit code."""
    try:
        args.func(args)
        distributed.shutdown()  # under torchrun: leave the process group together
    except PretextError as exc:
        print(f"pretext: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # the machine's refusals: no space, no permission, a read-only disk
        print(f"pretext: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(
            "pretext: interrupted; what was finished is kept (pretraining and fine-tuning go "
            "on from their last checkpoint with --resume)",
            file=sys.stderr,
        )
        return 130
    return 0
