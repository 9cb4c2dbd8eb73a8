"""One self-contained report.html per run: config, metrics, pictures (embedded as base64), and
the study table when present. Opens in any browser without a network."""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path

from pretext import rundir
from pretext.checkpoint import write_text_atomic

PICTURES = [  # (the RunDir attribute, the caption)
    ("views_png", "Augmentation: originals and random views"),
    ("curves_png", "Pretraining loss and kNN monitor"),
    ("study_png", "Few-label study"),
    ("confusion_png", "Confusion matrix of the fine-tuned classifier"),
    ("mistakes_png", "Most confident mistakes"),
    ("embeddings_png", "Map of test embeddings"),
    ("clusters_png", "Clusters found without labels (most confident members)"),
]


def image_tag(path: Path, title: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode()
    return (
        f'<figure><img alt="{html.escape(title)}" src="data:image/png;base64,{data}">'
        f"<figcaption>{html.escape(title)}</figcaption></figure>"
    )


def flatten(metrics: dict, prefix: str = "") -> list[tuple[str, str]]:
    rows = []
    for key, value in metrics.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            rows += flatten(value, f"{name}.")
        elif isinstance(value, list):
            shown = [round(v, 4) if isinstance(v, float) else v for v in value[-10:]]
            rows.append((name, json.dumps(shown)))
        elif isinstance(value, float):
            rows.append((name, f"{value:.4f}"))
        else:
            rows.append((name, str(value)))
    return rows


def verdict(metrics: dict) -> str:
    """The report's first line: what the few-label comparison says of the pretraining, in
    points against the same network trained from scratch on the same labels."""
    few = metrics.get("few_labels")
    if not few:
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


def write_report(run_dir: str | Path) -> Path:
    run = rundir.RunDir(run_dir)
    config = json.dumps(rundir.read_config(run_dir), indent=2)
    metrics = rundir.read_metrics(run_dir)
    table = "".join(
        f"<tr><td>{html.escape(k)}</td><td>{html.escape(v)}</td></tr>" for k, v in flatten(metrics)
    )
    pictures = [(getattr(run, name), title) for name, title in PICTURES]
    figures = "".join(image_tag(path, title) for path, title in pictures if path.is_file())
    study = ""
    if run.study_md.is_file():
        study = f"<h2>Few-label study</h2><pre>{html.escape(run.study_md.read_text())}</pre>"
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>pretext report: {html.escape(run.root.name)}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1000px; color: #222; }}
table {{ border-collapse: collapse; }} td {{ border-bottom: 1px solid #ddd; padding: 2px 12px; }}
figure {{ display: inline-block; margin: 1em; vertical-align: top; }}
img {{ max-width: 460px; }} pre {{ background: #f6f6f6; padding: 1em; overflow-x: auto; }}
</style></head><body>
<h1>pretext report: {html.escape(run.root.name)}</h1>
<p class="verdict"><strong>{html.escape(verdict(metrics))}</strong></p>
<h2>Metrics</h2><table>{table}</table>
{study}
<h2>Pictures</h2>{figures or "<p>No pictures in this run directory.</p>"}
<h2>Configuration</h2><pre>{html.escape(config)}</pre>
</body></html>
"""
    write_text_atomic(run.report, page)
    return run.report
