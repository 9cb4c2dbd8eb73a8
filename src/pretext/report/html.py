"""One self-contained report.html per run, read top to bottom: the verdict, the results named
and in percent, the study table, the pictures with captions, the settings of every phase.
Pictures are embedded as base64: the page opens in any browser without a network."""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path

from pretext import rundir
from pretext.checkpoint import write_text_atomic

PICTURES = [  # (the RunDir attribute, the caption)
    ("views_png", "Pretraining views: each row an image, then random views of it"),
    ("curves_png", "Pretraining loss and kNN monitor per epoch; fine-tuning beside it"),
    ("study_png", "Few-label study: test accuracy against labelled images, per method"),
    ("confusion_png", "Confusion matrix of the fine-tuned classifier on the test images"),
    ("mistakes_png", "The fine-tuned classifier's most confident mistakes"),
    ("embeddings_png", "Map of embeddings (2-D), coloured by class where there are labels"),
    ("neighbours_png", "Nearest neighbours in the embedding: each row a query, then its nearest"),
    ("clusters_png", "Clusters found without labels: each row a cluster's most confident images"),
]


def percent(value) -> str:
    return f"{100 * value:.2f}%"


def result_rows(metrics: dict) -> list[tuple[str, str]]:
    """(what, value) for each result the run holds, named as a person says it."""
    rows = []

    def add(name: str, section: str, key: str, shown=percent) -> None:
        value = metrics.get(section, {}).get(key)
        if value is not None:
            rows.append((name, shown(value)))

    add("Fine-tuned on all labels: test accuracy", "finetune", "test_accuracy")
    add("Same network from scratch: test accuracy", "finetune_scratch", "test_accuracy")
    add("Linear probe on frozen features: test accuracy", "linear_probe", "test_accuracy")
    knn = metrics.get("knn", {})
    add(f"kNN (k={knn.get('k')}) on frozen features: test accuracy", "knn", "test_accuracy")
    add("Retrieval: precision@1", "retrieval", "precision_at_1")
    add("Retrieval: precision@10", "retrieval", "precision_at_10")
    add("Retrieval: mAP@R", "retrieval", "map_at_r")
    rows += few_label_rows(metrics.get("few_labels"))
    rows += semi_rows(metrics)
    add("Clusters (no labels): test accuracy, matched to classes", "clustering", "test_accuracy")
    add("Clusters: normalised mutual information", "clustering", "test_nmi", "{:.3f}".format)
    add("Clusters: images in each", "clustering", "sizes", lambda v: ", ".join(map(str, v)))
    add("Pretraining: final loss", "pretrain", "final_loss", "{:.4f}".format)
    add("Pretraining: epochs", "pretrain", "epochs", str)
    add("Pretraining: seconds", "pretrain", "seconds", "{:.0f}".format)
    if metrics.get("seconds") is not None:
        rows.append(("Whole run: seconds", f"{metrics['seconds']:.0f}"))
    return rows


def few_label_rows(few: dict | None) -> list[tuple[str, str]]:
    if not few:
        return []
    n, seeds = few["labels"], few["seeds"]
    pretrained = f"{percent(few['pretrained'])} ± {100 * few['pretrained_std']:.2f}"
    scratch = f"{percent(few['scratch'])} ± {100 * few['scratch_std']:.2f}"
    rows = [
        (f"{n} labels, pretrained, fine-tuned (mean ± std, {seeds} seeds)", pretrained),
        (f"{n} labels, from scratch (same steps and views)", scratch),
    ]
    gain = f"{100 * few['gain']:+.2f} points"
    if few.get("gain_low") is not None:
        gain += f" (95% interval {100 * few['gain_low']:+.2f} to {100 * few['gain_high']:+.2f})"
    return [*rows, (f"{n} labels: gain from pretraining", gain)]


def semi_rows(metrics: dict) -> list[tuple[str, str]]:
    """The semi-supervised fine-tunes the run holds (`run --semi`, `finetune --semi`)."""
    rows = []
    for key, start in (("semi", "the pretrained encoder"), ("semi_scratch", "random weights")):
        found = metrics.get(key)
        if found:
            name = f"{found['labels']} labels, semi-supervised from {start}: test accuracy"
            rows.append((name, percent(found["test_accuracy"])))
    return rows


def verdict(metrics: dict) -> str:
    """The report's first line: what the few-label comparison says of the pretraining, in
    points against the same network trained from scratch on the same labels."""
    few = metrics.get("few_labels")
    if not few:
        if "finetune" not in metrics:
            return (
                "Pretraining only: nothing is scored (the data has no labels, or no evaluation "
                "ran yet); the pictures show what the encoder learnt."
            )
        return "No few-label comparison in this run (pretraining only, or no labels)."
    gain, low, high = (
        None if few.get(k) is None else 100 * few[k] for k in ("gain", "gain_low", "gain_high")
    )
    against = (
        f"at {few['labels']} labels: {100 * few['pretrained']:.2f}% fine-tuned from the "
        f"pretrained encoder, {100 * few['scratch']:.2f}% from scratch"
    )
    if low is None:
        return f"Pretraining {gain:+.2f} points {against}; one seed, so no interval."
    interval = f"95% interval {low:+.2f} to {high:+.2f}, {few['seeds']} seeds"
    if low > 0:
        return f"Pretraining gained {gain:+.2f} points {against} ({interval})."
    if high < 0:
        return f"Pretraining cost {-gain:.2f} points {against} ({interval})."
    return f"No measurable gain from pretraining {against}: {gain:+.2f} points ({interval})."


def table(rows: list[tuple[str, str]], head: tuple[str, str] | None = None) -> str:
    cells = "".join(
        f"<tr><td>{html.escape(str(a))}</td><td>{html.escape(str(b))}</td></tr>" for a, b in rows
    )
    top = f"<tr><th>{html.escape(head[0])}</th><th>{html.escape(head[1])}</th></tr>" if head else ""
    return f"<table>{top}{cells}</table>"


def settings_html(config: dict, metrics: dict) -> str:
    """One table per phase: what it was run with."""
    phases = [("Pretraining", config)]
    for title, section in (
        ("Fine-tuning", "finetune"),
        ("Linear probe", "linear_probe"),
        ("Few-label comparison", "few_labels"),
        ("Clustering", "clustering"),
    ):
        settings = metrics.get(section, {}).get("settings")
        if settings:
            phases.append((title, settings))
    parts = []
    for title, settings in phases:
        rows = [
            (k, json.dumps(v) if isinstance(v, list | dict) else v) for k, v in settings.items()
        ]
        parts.append(f"<details><summary>{title}</summary>{table(rows)}</details>")
    return "".join(parts)


def study_html(text: str) -> str:
    """study.md (markdown tables and notes) as HTML tables and paragraphs."""
    parts, rows = [], []
    for line in [*text.splitlines(), ""]:
        if line.startswith("|"):
            if not set(line) <= set("|-: "):  # the header's rule line is not a row
                rows.append([html.escape(c.strip()) for c in line.strip("|").split("|")])
            continue
        if rows:
            head = "".join(f"<th>{c}</th>" for c in rows[0])
            body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rows[1:])
            parts.append(f"<table><tr>{head}</tr>{body}</table>")
            rows = []
        if line.strip():
            parts.append(f"<p class='note'>{html.escape(line)}</p>")
    return "".join(parts)


def image_tag(path: Path, title: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode()
    return (
        f'<figure><img alt="{html.escape(title)}" src="data:image/png;base64,{data}">'
        f"<figcaption>{html.escape(title)}</figcaption></figure>"
    )


STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222;
       padding: 0 1em; }
.verdict { font-size: 1.25em; background: #eef4fb; border-left: 5px solid #2b6cb0;
           padding: 0.6em 1em; }
table { border-collapse: collapse; margin: 0.5em 0; }
td, th { border-bottom: 1px solid #ddd; padding: 3px 12px; text-align: left; }
td:last-child { font-variant-numeric: tabular-nums; }
figure { display: inline-block; margin: 0.8em; vertical-align: top; max-width: 520px; }
img { max-width: 520px; } figcaption { font-size: 0.9em; color: #555; }
.note { font-size: 0.9em; color: #555; } summary { cursor: pointer; font-weight: 600; }
"""


def write_report(run_dir: str | Path) -> Path:
    run = rundir.RunDir(run_dir)
    config = rundir.read_config(run_dir)
    config = config.get("pretrain", config)
    metrics = rundir.read_metrics(run_dir)
    results = result_rows(metrics)
    pictures = [(getattr(run, name), title) for name, title in PICTURES]
    figures = "".join(image_tag(path, title) for path, title in pictures if path.is_file())
    study = ""
    if run.study_md.is_file():
        study = f"<h2>Few-label study</h2>{study_html(run.study_md.read_text())}"
    heading = (
        f"{config.get('method', '')} on {Path(str(config.get('dataset', ''))).name}, "
        f"encoder {config.get('encoder', '')}"
    )
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>pretext report: {html.escape(run.root.name)}</title><style>{STYLE}</style></head><body>
<h1>pretext report: {html.escape(run.root.name)}</h1>
<p>{html.escape(heading)}</p>
<p class="verdict"><strong>{html.escape(verdict(metrics))}</strong></p>
<h2>Results</h2>{table(results) if results else "<p>No results yet.</p>"}
{study}
<h2>Pictures</h2>{figures or "<p>No pictures in this run directory.</p>"}
<h2>Settings</h2>{settings_html(config, metrics)}
</body></html>
"""
    write_text_atomic(run.report, page)
    return run.report
