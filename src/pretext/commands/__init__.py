"""The functions behind the CLI commands, one module per family. Each takes typed configs and
plain values, writes into a run directory, and returns what it wrote, so Python users call
exactly what the CLI calls."""

from pretext.commands.cluster import cluster_command
from pretext.commands.export import export_command
from pretext.commands.finetune import evaluate_command, finetune_command
from pretext.commands.pipeline import run
from pretext.commands.prepare import prepare_command
from pretext.commands.report import augment_grid, compare_command, report_command
from pretext.commands.search import embed_command, search_command
from pretext.commands.select import select_command
from pretext.commands.study import study_command
from pretext.train import pretrain

__all__ = [
    "augment_grid",
    "cluster_command",
    "prepare_command",
    "compare_command",
    "embed_command",
    "evaluate_command",
    "export_command",
    "finetune_command",
    "pretrain",
    "report_command",
    "run",
    "search_command",
    "select_command",
    "study_command",
]
