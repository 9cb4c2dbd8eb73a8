"""The argument parser of every command."""

from __future__ import annotations

import argparse

from pretext import __version__
from pretext.augment import PRESETS
from pretext.cli import handlers
from pretext.cli.options import (
    add_data_options,
    add_finetune_options,
    add_pretrain_options,
    add_trusted_encoder,
)
from pretext.commands.study import DEFAULT_LABELS
from pretext.config import RECIPES, SemiConfig


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pretext", description="Self-supervised pretraining of image encoders."
    )
    parser.add_argument("--version", action="version", version=f"pretext {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    add_prepare_command(sub)
    add_training_commands(sub)
    add_finetune_command(sub)
    add_evaluation_commands(sub)
    add_unlabelled_commands(sub)
    add_output_commands(sub)
    return parser


def add_training_commands(sub) -> None:
    """The parsers of pretrain and run."""
    p = sub.add_parser("pretrain", help="pretrain an encoder without labels")
    add_data_options(p)
    add_pretrain_options(p)
    p.set_defaults(func=handlers.cmd_pretrain)

    p = sub.add_parser(
        "run", help="pretrain, fine-tune on all labels, everything evaluate does, the report"
    )
    add_data_options(p)
    add_pretrain_options(p)
    add_finetune_options(p)
    p.add_argument(
        "--semi",
        action="store_true",
        help="also: semi-supervised fine-tuning with the --few-labels labels (the run's seed), "
        "from the pretrained encoder and from random weights (default off: two trainings on "
        "every training image, minutes on a CPU)",
    )
    add_semi_epochs(p)
    p.set_defaults(func=handlers.cmd_run)


def add_finetune_command(sub) -> None:
    """The parsers of finetune."""
    p = sub.add_parser("finetune", help="fine-tune a run's encoder (or a fresh one) on labels")
    add_data_options(p)
    p.add_argument(
        "--out", default=None, help="run directory with checkpoints/last.pt (default: none)"
    )
    p.add_argument(
        "--recipe", default=None, choices=RECIPES, help="default: the run's, else default"
    )
    p.add_argument(
        "--encoder",
        default=None,
        help="--from-scratch's encoder (default: the run's, or cnn; or module:callable)",
    )
    p.add_argument(
        "--labels", type=int, default=None, help="a stratified subset of N labels (default: all)"
    )
    p.add_argument(
        "--from-scratch", action="store_true", help="start from random weights (baseline)"
    )
    p.add_argument("--epochs", type=int, default=None, help="default: the recipe's (10)")
    p.add_argument("--batch-size", type=int, default=None, help="default: the recipe's (128)")
    p.add_argument("--lr", type=float, default=None, help="default: the recipe's (3e-3)")
    p.add_argument(
        "--min-steps",
        type=int,
        default=None,
        help="train at least this many steps (default: the recipe's, 1500, unless --epochs)",
    )
    p.add_argument(
        "--augment",
        default=None,
        choices=PRESETS,
        help="views at every label count (default: light, and the run's pretraining views "
        "under 1000 labels)",
    )
    p.add_argument(
        "--anchor",
        type=float,
        default=None,
        help="A: after each step the encoder moves min(0.1, (A / labelled images)^2) of the way "
        "back to its pretrained weights (0: off; the from-scratch baseline never uses it; "
        "default: the recipe's, 30)",
    )
    p.add_argument(
        "--resume", action="store_true", help="continue RUN_DIR's fine-tuning checkpoint"
    )
    p.add_argument("--seed", type=int, default=None, help="default 0")
    p.add_argument(
        "--semi",
        action="store_true",
        help="learn from all training images, labelled or not (FixMatch: a teacher's confident "
        "answers on a view are the targets of another view), starting from the encoder (from "
        "its clusters named by the --labels under two labels per class); run it with "
        "--from-scratch too before crediting "
        "pretraining (default off)",
    )
    add_semi_epochs(p)
    add_select_labels(p)
    p.set_defaults(func=handlers.cmd_finetune)


def add_evaluation_commands(sub) -> None:
    """The parsers of evaluate and study."""
    p = sub.add_parser(
        "evaluate", help="linear probe, kNN, retrieval and few-label comparison of a run"
    )
    add_data_options(p)
    p.add_argument("--out", required=True, help="run directory")
    add_trusted_encoder(p)
    p.set_defaults(func=handlers.cmd_evaluate)

    p = sub.add_parser("study", help="few-label study: linear, fine-tune, kNN vs from scratch")
    add_data_options(p)
    add_pretrain_options(p)
    p.add_argument(
        "--checkpoint",
        default=None,
        help="run directory of a pretrained encoder (default: pretrain into --out first)",
    )
    p.add_argument(
        "--labels",
        default=",".join(map(str, DEFAULT_LABELS)),
        help="label budgets, comma-separated (default %(default)s)",
    )
    p.add_argument(
        "--seeds", type=int, default=3, help="label-sampling seeds per budget (default 3)"
    )
    p.add_argument(
        "--study-out", default=None, help="folder for study.* (default: the run directory)"
    )
    p.add_argument(
        "--min-steps", type=int, default=None, help="fine-tuning steps at least (default 1500)"
    )
    p.add_argument(
        "--cluster",
        action="store_true",
        help="also: clusters found without labels (as 'pretext cluster'), named by the labels",
    )
    p.add_argument(
        "--semi",
        action="store_true",
        help="also: semi-supervised fine-tuning on all training images from the pretrained "
        "encoder (semi; from its named clusters under two labels per class) and from random "
        "weights (scratch-semi); default off",
    )
    add_semi_epochs(p)
    add_select_labels(p)
    p.set_defaults(func=handlers.cmd_study)


def add_prepare_command(sub) -> None:
    p = sub.add_parser("prepare", help="decode a data set once into a cache read from disk")
    p.add_argument("source", help="a folder of images, an .npz or a named data set")
    p.add_argument("--out", required=True, help="the cache folder (CACHE_DIR)")
    p.add_argument(
        "--image-size",
        type=int,
        default=None,
        help="each image's shorter side scaled to S, centre square kept (needed for a folder; "
        "default: as stored)",
    )
    p.add_argument("--data-dir", default=None, help="default: $PRETEXT_DATA_DIR, ~/.cache/pretext")
    p.add_argument("--workers", type=int, default=1, help="decoding processes (default 1)")
    p.add_argument(
        "--refuse-bad-files",
        action="store_true",
        help="stop at an unreadable image instead of skipping it",
    )
    p.set_defaults(func=handlers.cmd_prepare)


def add_unlabelled_commands(sub) -> None:
    """The parsers of cluster, embed, select and search."""
    p = sub.add_parser("cluster", help="group unlabelled images into clusters (SCAN)")
    add_data_options(p)
    p.add_argument("--out", required=True, help="run directory with a pretrained encoder")
    p.add_argument("--clusters", type=int, default=None, help="number of clusters (default 10)")
    p.add_argument("--neighbours", type=int, default=None, help="neighbours per image (default 20)")
    p.add_argument("--epochs", type=int, default=None, help="default 10")
    p.add_argument("--batch-size", type=int, default=None, help="default 256")
    p.add_argument("--lr", type=float, default=None, help="default 1e-3")
    p.add_argument("--entropy-weight", type=float, default=None, help="default 2.0")
    p.add_argument("--seed", type=int, default=None, help="default 0")
    add_trusted_encoder(p)
    p.set_defaults(func=handlers.cmd_cluster)

    p = sub.add_parser("embed", help="write embeddings of a split (a search index)")
    add_data_options(p)
    p.add_argument("--out", required=True, help="run directory")
    p.add_argument("--split", default="train", choices=("train", "test"), help="default train")
    p.add_argument("--index-dir", default=None, help="default RUN_DIR/index")
    add_trusted_encoder(p)
    p.set_defaults(func=handlers.cmd_embed)

    p = sub.add_parser("select", help="which images to label first, chosen without labels")
    add_data_options(p)
    p.add_argument("--out", required=True, help="run directory with a pretrained encoder")
    p.add_argument("--labels", type=int, required=True, help="how many images to label")
    p.add_argument("--seed", type=int, default=0, help="default 0")
    p.add_argument("--to", default=None, help="the CSV to write (default RUN_DIR/to_label.csv)")
    add_trusted_encoder(p)
    p.set_defaults(func=handlers.cmd_select)

    p = sub.add_parser("search", help="nearest neighbours of a query in an index")
    p.add_argument("--index-dir", required=True, help="an index written by pretext embed")
    p.add_argument(
        "--query",
        required=True,
        help="an image file, N (image N of the indexed split) or SPLIT:N (e.g. test:3)",
    )
    p.add_argument("-k", type=int, default=10, help="neighbours (default 10; strip shows 20)")
    p.add_argument(
        "--png", default=None, help="where to write the strip of neighbours (default: none)"
    )
    p.add_argument("--device", default=None, help="auto (default), cpu, cuda or cuda:N")
    add_trusted_encoder(p)
    p.set_defaults(func=handlers.cmd_search)


def add_output_commands(sub) -> None:
    """The parsers of export, compare, report and augment."""
    p = sub.add_parser("export", help="write the encoder alone (TorchScript or ONNX)")
    p.add_argument("run_dir", help="a run directory with a pretrained encoder")
    p.add_argument(
        "--format",
        default="torchscript",
        choices=("torchscript", "onnx"),
        help="default torchscript; onnx needs the [export] extra",
    )
    p.add_argument("--file", default=None, help="output file (default: RUN_DIR/encoder.<ext>)")
    add_trusted_encoder(p)
    p.set_defaults(func=handlers.cmd_export)

    p = sub.add_parser("compare", help="several runs' settings and results side by side")
    p.add_argument("run_dirs", nargs="+", help="run directories")
    p.add_argument(
        "--out", default=None, help="also write the table to this markdown file (default: none)"
    )
    p.set_defaults(func=handlers.cmd_compare)

    p = sub.add_parser("report", help="write RUN_DIR/report.html (self-contained)")
    p.add_argument("run_dir", help="a run directory")
    p.set_defaults(func=handlers.cmd_report)

    p = sub.add_parser("augment", help="write a PNG grid of original images and random views")
    p.add_argument("--dataset", default="mnist", help="as for pretrain (default mnist)")
    p.add_argument("--data-dir", default=None, help="default: $PRETEXT_DATA_DIR, ~/.cache/pretext")
    p.add_argument("--augment", default="default", choices=PRESETS, help="default: default")
    p.add_argument("--out", default="views.png", help="default views.png")
    p.add_argument("--seed", type=int, default=0, help="default 0")
    p.add_argument(
        "--image-size", type=int, default=None, help="resize images to N x N (default: as stored)"
    )
    p.set_defaults(func=handlers.cmd_augment)


def add_semi_epochs(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--semi-epochs",
        type=int,
        default=None,
        metavar="PASSES",
        help=f"passes of --semi over all training images, at every label count (default "
        f"{SemiConfig.epochs}; {SemiConfig.few_epochs} with fewer than "
        f"{SemiConfig.clusters_below} labels per class)",
    )


def add_select_labels(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--select-labels",
        action="store_true",
        help="choose the labelled images from the pretrained embedding (one per k-means "
        "cluster, covering every style it sees) instead of at random per class",
    )
