"""The flags of pretraining and fine-tuning, declared once in tables with the config field each
one sets, and the mapping of parsed flags to a `RunConfig`."""

from __future__ import annotations

import argparse
from dataclasses import replace

from pretext import rundir
from pretext.augment import PRESETS
from pretext.config import (
    RECIPES,
    PretrainConfig,
    RunConfig,
    override,
    pretrain_config_from_file,
    recipe,
    told_epochs,
)
from pretext.errors import PretextError
from pretext.methods import METHODS
from pretext.models import ENCODER_NAMES

VIEWS = ", ".join(PRESETS)

# (PretrainConfig field, type, help): each becomes --field-name, default None (not given).
PRETRAIN_FLAGS = (
    ("recipe", str, "seed (the original write-up's SimCLR) or default"),
    ("method", str, f"self-supervised method: {', '.join(METHODS)} (default simclr)"),
    (
        "encoder",
        str,
        f"{', '.join(ENCODER_NAMES)} (default cnn), or your own as module:callable "
        "(an nn.Module class or factory; it may take in_channels and image_size)",
    ),
    ("augment", str, f"views for pretraining: {VIEWS} (default: default)"),
    (
        "image_size",
        int,
        "scale each image's shorter side to N, keep the centre square (default: as stored)",
    ),
    ("epochs", int, "default: the recipe's (40; seed 10)"),
    ("batch_size", int, "default: the recipe's (256; seed 32)"),
    ("lr", float, "default: the recipe's (2e-3; seed 1e-4)"),
    ("optimizer", str, "adam (default), sgd or lars"),
    ("weight_decay", float, "default: the recipe's (1e-5; seed 0)"),
    ("warmup_epochs", float, "linear warm-up (default: the recipe's, 1; seed 0)"),
    ("schedule", str, "cosine (default) or constant"),
    ("temperature", float, "the method's temperature, where it has one (default: the method's)"),
    ("projection_hidden", int, "hidden width of the projection head (default: the method's)"),
    ("projection_dim", int, "projection output size (default: the method's; simclr 0: no head)"),
    ("seed", int, "default 0"),
    ("checkpoint_every", int, "also checkpoint every N steps (default: at epoch ends only)"),
)
CHOICES = {  # the pretraining flags that take one of a fixed set of names
    "recipe": tuple(RECIPES),
    "method": tuple(METHODS),
    "augment": tuple(PRESETS),
    "optimizer": ("adam", "sgd", "lars"),
    "schedule": ("cosine", "constant"),
}
PRETRAIN_SWITCHES = (  # (PretrainConfig field, help)
    ("resume", "continue RUN_DIR's checkpoint with its own settings"),
    ("overwrite", "replace an existing run (what pretext wrote there goes; other files stay)"),
    ("bf16", "bfloat16 autocast (GPU)"),
    ("sync_batchnorm", "under torchrun: batch-norm statistics over all processes"),
)
# (flag of `pretext run`, FinetuneConfig field, type, help)
FINETUNE_FLAGS = (
    ("finetune_epochs", "epochs", int, "fine-tuning epochs (default: the recipe's, 10)"),
    ("finetune_lr", "lr", float, "fine-tuning learning rate (default: the recipe's)"),
    ("finetune_batch_size", "batch_size", int, "fine-tuning batch (default: the recipe's)"),
    (
        "finetune_anchor",
        "anchor",
        float,
        "A: after each step a pretrained encoder moves "
        "min(0.1, (A / labelled images)^2) of the way back to its pretrained weights (0: off; "
        "never for the scratch baseline; default: the recipe's, 30)",
    ),
    (
        "min_steps",
        "min_steps",
        int,
        "fine-tuning steps at least (small label sets get more epochs; default: the recipe's)",
    ),
)


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def add_data_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--dataset",
        help="mnist, fashion-mnist, digits, cifar10, cifar100, cifar100-coarse, stl10, a folder "
        "or an .npz (default: mnist, or the run's)",
    )
    p.add_argument(
        "--data-dir",
        help="folder holding <dataset>/ IDX files (default: $PRETEXT_DATA_DIR, ~/.cache/pretext)",
    )
    p.add_argument("--limit-train", type=int, help="use the first N training images (default: all)")
    p.add_argument("--device", help="auto (default: cuda if present), cpu, cuda or cuda:N")
    p.add_argument("--threads", type=int, help="CPU threads for torch (default: torch's)")


def add_pretrain_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", help="run directory (default runs/<dataset>)")
    p.add_argument(
        "--config",
        help="start from these settings: a run's config.json (to repeat it) or a JSON object "
        "of pretraining settings; options given override them (default: the recipe's)",
    )
    for name, kind, text in PRETRAIN_FLAGS:
        p.add_argument(flag(name), type=kind, choices=CHOICES.get(name), help=text)
    for name, text in PRETRAIN_SWITCHES:
        p.add_argument(flag(name), action="store_true", default=None, help=text)
    p.add_argument(
        "--refuse-bad-files",
        action="store_true",
        default=None,
        help="stop at an unreadable image in a folder instead of skipping it",
    )


def add_trusted_encoder(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--encoder",
        help="the run's own encoder (module:callable), named again: a run directory never "
        "imports code by itself (default: none; a built-in encoder needs none)",
    )


def add_finetune_options(p: argparse.ArgumentParser) -> None:
    for name, _, kind, text in FINETUNE_FLAGS:
        p.add_argument(flag(name), type=kind, help=text)
    p.add_argument(
        "--finetune-augment",
        choices=PRESETS,
        help="fine-tuning views at every label count (default: light, and the pretraining "
        "views under 1000 labels)",
    )
    p.add_argument(
        "--few-labels", type=int, help="label count of the few-label check (default 600)"
    )
    p.add_argument("--few-label-seeds", type=int, help="seeds of the few-label check (default 3)")


def starting_settings(args: argparse.Namespace) -> PretrainConfig | None:
    """The settings a pretraining starts from before its options: with --resume, the run's own
    (pretraining then refuses options that would change the training it continues); with
    --config, the file's; None for the recipe's."""
    config = getattr(args, "config", None)
    given = None
    if args.resume:
        if config:
            raise PretextError("--resume continues a run with its own settings: drop --config")
        out = args.out or f"runs/{args.dataset or 'mnist'}"
        given = rundir.pretrain_config(out) if rundir.is_run_dir(out) else None
    elif config:
        given = pretrain_config_from_file(config)
    if given is not None:  # settings from a file: its own encoder only when named again
        rundir.encoder_of(given, args.encoder, config or "the run")
    return given


def run_config(args: argparse.Namespace) -> RunConfig:
    given = starting_settings(args)
    base = recipe(args.recipe or (given.recipe if given else "default"))
    start = given or base.pretrain
    dataset = args.dataset or start.dataset
    pre = override(
        start,
        dataset=dataset,
        data_dir=args.data_dir,
        out=args.out or f"runs/{dataset}",
        limit_train=args.limit_train,
        device=args.device,
        threads=args.threads,
        skip_bad_files=None if args.refuse_bad_files is None else not args.refuse_bad_files,
        **{name: getattr(args, name) for name, *_ in PRETRAIN_FLAGS},
        **{name: getattr(args, name) for name, _ in PRETRAIN_SWITCHES},
    )
    changes = {field: getattr(args, name, None) for name, field, *_ in FINETUNE_FLAGS}
    changes = told_epochs(changes)
    views = getattr(args, "finetune_augment", None)
    changes.update(augment=views, few_augment=views)  # asked for: at every label count
    ft = override(base.finetune, **changes, seed=pre.seed)
    return override(
        replace(base, pretrain=pre, finetune=ft),
        few_labels=getattr(args, "few_labels", None),
        few_label_seeds=getattr(args, "few_label_seeds", None),
    )
