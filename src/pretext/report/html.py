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
<h2>Metrics</h2><table>{table}</table>
{study}
<h2>Pictures</h2>{figures or "<p>No pictures in this run directory.</p>"}
<h2>Configuration</h2><pre>{html.escape(config)}</pre>
</body></html>
"""
    write_text_atomic(run.report, page)
    return run.report
