"""Several runs side by side: what each was (data, method, encoder, epochs) and what it gave,
read from their run directories alone, as one markdown table."""

from __future__ import annotations

from pathlib import Path

from pretext import rundir

# (column, path into metrics.json, scale, format): accuracies are fractions, shown in percent
RESULTS = (
    ("pretrain s", ("pretrain", "seconds"), 1, "{:.1f}"),
    ("fine-tune", ("finetune", "test_accuracy"), 100, "{:.2f}"),
    ("linear", ("linear_probe", "test_accuracy"), 100, "{:.2f}"),
    ("kNN", ("knn", "test_accuracy"), 100, "{:.2f}"),
    ("P@1", ("retrieval", "precision_at_1"), 100, "{:.2f}"),
    ("mAP@R", ("retrieval", "map_at_r"), 100, "{:.2f}"),
    ("few: pretrained", ("few_labels", "pretrained"), 100, "{:.2f}"),
    ("few: scratch", ("few_labels", "scratch"), 100, "{:.2f}"),
    ("few: gain", ("few_labels", "gain"), 100, "{:+.2f}"),
)
SETTINGS = ("dataset", "method", "encoder", "augment", "epochs", "batch_size")


def lookup(record: dict, path: tuple[str, ...]):
    for key in path:
        if not isinstance(record, dict) or key not in record:
            return None
        record = record[key]
    return record


def run_row(run_dir: str | Path) -> dict:
    """One run's settings and results: {"run", the SETTINGS, the RESULTS' columns, "labels"};
    None where the run has no such figure (e.g. pretrained only, not yet evaluated)."""
    settings = rundir.read_config(run_dir).get("pretrain", {})
    metrics = rundir.read_metrics(run_dir)
    row = {"run": str(run_dir)}
    row.update({name: settings.get(name) for name in SETTINGS})
    for column, path, _, _ in RESULTS:
        row[column] = lookup(metrics, path)
    if row["pretrain s"] is None:  # `pretext pretrain` alone writes pretrain.json
        row["pretrain s"] = rundir.read_summary(run_dir).get("seconds")
    row["labels"] = lookup(metrics, ("few_labels", "labels"))
    return row


def shown(value, scale: float = 1, form: str = "{}") -> str:
    """A cell: "–" for a figure the run does not have."""
    return "–" if value is None else form.format(value * scale)


def runs_markdown(rows: list[dict]) -> str:
    """The rows as a markdown table, accuracies in percent, the gain in points ("few" is the
    few-label comparison, at the label count in its header when all runs share one)."""
    counts = {row["labels"] for row in rows if row["labels"] is not None}
    few = f" ({counts.pop()} labels)" if len(counts) == 1 else ""
    header = ["run", *SETTINGS, *(c.replace("few:", f"few{few}:") for c, *_ in RESULTS)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        cells = [row["run"], *(shown(row[name]) for name in SETTINGS)]
        cells += [shown(row[column], scale, form) for column, _, scale, form in RESULTS]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
