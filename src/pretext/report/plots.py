"""Matplotlib figures written as PNG files (Agg backend, no display needed)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from matplotlib.backend_bases import FigureCanvasBase  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402
from sklearn.manifold import TSNE  # noqa: E402

from pretext.errors import PretextError  # noqa: E402


def picture_path(path: str | Path) -> Path:
    """`path` as a figure file, checked before any work: its suffix must name a format
    matplotlib writes (png, pdf, svg, jpg, ...)."""
    path = Path(path)
    formats = FigureCanvasBase.get_supported_filetypes()
    if path.suffix[1:].lower() not in formats:
        raise PretextError(
            f"{path}: cannot write a picture as {path.suffix or 'a file without a suffix'}; "
            f"use one of .{', .'.join(sorted(formats))}"
        )
    return path


def save(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def pixels(image: torch.Tensor) -> np.ndarray:
    """A C x H x W image as imshow takes it: H x W for one channel, H x W x C for colour."""
    return image.permute(1, 2, 0).squeeze(-1).numpy()


def class_name(names: list[str] | None, label: int) -> str:
    """A label as the pictures show it: its class name where known, else the number."""
    return names[label] if names and label < len(names) else str(label)


def views_grid(columns: list[torch.Tensor], path: Path, title: str) -> Path:
    """Images in [0, 1] as a grid: column c holds `columns[c]`, the first the originals."""
    rows = len(columns[0])
    fig, axes = plt.subplots(
        rows, len(columns), figsize=(1.1 * len(columns), 1.1 * rows), squeeze=False
    )
    for r in range(rows):
        for c, column in enumerate(columns):
            axes[r][c].imshow(pixels(column[r]), cmap="gray", vmin=0, vmax=1)
            axes[r][c].axis("off")
            if r == 0:
                axes[r][c].set_title("original" if c == 0 else f"view {c}", fontsize=8)
    fig.suptitle(title, fontsize=9)
    return save(fig, path)


def training_curves(history: list[dict], path: Path, finetune: dict | None = None) -> Path:
    """Pretraining loss per epoch with the online kNN monitor when it ran; beside it, where
    the run was fine-tuned, the fine-tuning's training accuracy per epoch and its test
    accuracy."""
    panels = 2 if finetune and finetune.get("train_accuracy") else 1
    fig, axes = plt.subplots(1, panels, figsize=(5.5 * panels, 3.6), squeeze=False)
    ax = axes[0][0]
    epochs = [row["epoch"] for row in history]
    lines = ax.plot(epochs, [row["loss"] for row in history], "o-", color="tab:blue")
    lines[0].set_label("pretraining loss")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    if any("knn" in row for row in history):
        twin = ax.twinx()
        knn = [100 * row.get("knn", float("nan")) for row in history]
        lines += twin.plot(epochs, knn, "s-", color="tab:orange", label="kNN monitor accuracy")
        twin.set_ylabel("accuracy (%)")
    ax.legend(lines, [line.get_label() for line in lines], fontsize=8, loc="center right")
    ax.set_title("pretraining")
    if panels == 2:
        finetune_curve(axes[0][1], finetune)
    for panel in axes[0]:
        panel.xaxis.set_major_locator(MaxNLocator(integer=True))
    return save(fig, path)


def finetune_curve(ax, finetune: dict) -> None:
    """Fine-tuning's training accuracy per epoch, and its test accuracy as a marked line."""
    accuracy = [100 * a for a in finetune["train_accuracy"]]
    ax.plot(range(1, len(accuracy) + 1), accuracy, "o-", color="tab:green", label="train")
    if finetune.get("test_accuracy") is not None:
        test = 100 * finetune["test_accuracy"]
        ax.axhline(test, color="tab:red", linestyle="--", label=f"test (last epoch) {test:.2f}%")
        low, high = min(*accuracy, test), max(*accuracy, test)
        ax.set_ylim(low - 0.08 * (high - low + 0.1), high + 0.08 * (high - low + 0.1))
    ax.set_xlabel("epoch")
    ax.set_ylabel("accuracy (%)")
    ax.legend(fontsize=8, loc="lower right")
    ax.set_title(f"fine-tuning on {finetune.get('labels', 'all')} labels")


def study_plot(rows: list[dict], path: Path) -> Path:
    """Accuracy against label count (log x), one line per method, std error bars; the arms
    from random weights (scratch, scratch-semi) dashed."""
    fig, ax = plt.subplots(figsize=(6, 4))
    for method in dict.fromkeys(row["method"] for row in rows):
        mine = sorted((r for r in rows if r["method"] == method), key=lambda r: r["labels"])
        ax.errorbar(
            [r["labels"] for r in mine],
            [100 * r["mean"] for r in mine],
            yerr=[100 * r["std"] for r in mine],
            marker="o",
            capsize=3,
            label=method,
            linestyle="--" if method.startswith("scratch") else "-",
        )
    ax.set_xscale("log")
    ax.set_xlabel("labelled training images")
    ax.set_ylabel("test accuracy (%)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    ax.set_title("few-label study")
    return save(fig, path)


def confusion_matrix(
    predicted: torch.Tensor, labels: torch.Tensor, path: Path, names: list[str] | None = None
) -> Path:
    """Test images by true and predicted class; counts in white on dark cells, black on light
    ones; classes by name where known."""
    classes = int(max(predicted.max(), labels.max())) + 1
    matrix = torch.zeros(classes, classes, dtype=torch.int64)
    matrix.index_put_((labels, predicted), torch.ones_like(labels), accumulate=True)
    shade = np.log1p(matrix.numpy())
    side = min(12.0, 2.5 + 0.38 * classes)
    fig, ax = plt.subplots(figsize=(side + 0.5, side))
    ax.imshow(shade, cmap="Blues", vmin=0, vmax=max(shade.max(), 1e-9))
    if classes <= 30:  # beyond that the numbers are not legible at any size
        for i in range(classes):
            for j in range(classes):
                dark = shade[i, j] > 0.55 * shade.max()
                colour = "white" if dark else "black"
                ax.text(j, i, int(matrix[i, j]), ha="center", va="center", fontsize=7, color=colour)
    ticks = [class_name(names, c) for c in range(classes)]
    ax.set_xticks(range(classes), ticks, rotation=90 if max(map(len, ticks)) > 2 else 0)
    ax.set_yticks(range(classes), ticks)
    ax.tick_params(labelsize=7 if classes > 12 else 8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title("confusion matrix (test images)")
    return save(fig, path)


def worst_mistakes(
    images: torch.Tensor,
    labels: torch.Tensor,
    logits: torch.Tensor,
    path: Path,
    count: int = 16,
    names: list[str] | None = None,
) -> Path:
    """The wrong test predictions made with the highest confidence, each titled with its true
    and predicted class and the confidence."""
    probs = logits.softmax(1)
    confidence, predicted = probs.max(1)
    wrong = torch.nonzero(predicted != labels).flatten()
    order = wrong[confidence[wrong].argsort(descending=True)][:count]
    cols = 8
    rows = max(1, (len(order) + cols - 1) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(1.5 * cols, 2.0 * rows + 0.4), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")

    for ax, i in zip(axes.flat, order.tolist(), strict=False):
        ax.imshow(pixels(images[i]), cmap="gray")
        true, said = class_name(names, int(labels[i])), class_name(names, int(predicted[i]))
        title = f"true {true}\nsaid {said} {confidence[i]:.2f}"
        ax.set_title(title, fontsize=7)
    if not len(order):
        axes[0][0].text(0, 0.5, "no mistakes on the test images", fontsize=9)
    fig.suptitle("most confident mistakes (true class, predicted class, confidence)", fontsize=9)
    return save(fig, path)


def embedding_map(
    features: torch.Tensor,
    labels: torch.Tensor | None,
    path: Path,
    seed: int = 0,
    names: list[str] | None = None,
) -> Path:
    """2-D map of embeddings coloured by class (by name where known; one colour without
    labels): UMAP if installed, else t-SNE."""
    x = features.cpu().numpy()
    try:
        import umap  # type: ignore[import-not-found]

        xy = umap.UMAP(random_state=seed).fit_transform(x)
        name = "UMAP"
    except ImportError:
        # Perplexity must stay below the number of points: small test sets get a smaller one.
        perplexity = max(1.0, min(30.0, (len(x) - 1) / 3))
        xy = TSNE(
            n_components=2, init="pca", random_state=seed, perplexity=perplexity
        ).fit_transform(x)
        name = "t-SNE"
    fig, ax = plt.subplots(figsize=(6.5, 5))
    if labels is None:
        ax.scatter(xy[:, 0], xy[:, 1], s=3, color="tab:blue")
    else:
        classes = int(labels.max()) + 1
        cmap = "tab10" if classes <= 10 else "tab20" if classes <= 20 else "turbo"
        points = ax.scatter(xy[:, 0], xy[:, 1], c=labels.numpy(), cmap=cmap, s=3)
        if classes <= 20:
            shown = [class_name(names, c) for c in range(classes)]
            handles = [
                Line2D([], [], marker="o", linestyle="", color=points.cmap(points.norm(c)))
                for c in range(classes)
            ]
            ax.legend(handles, shown, fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5))
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(f"{name} of {len(x)} embeddings")
    return save(fig, path)


def retrieval_strip(
    query: torch.Tensor,
    query_label: str,
    neighbours: torch.Tensor,
    neighbour_labels: list[str],
    path: Path,
) -> Path:
    """The query image, then its nearest neighbours, each labelled."""
    images = [query, *neighbours]
    titles = [f"query\n{query_label}", *[f"#{i + 1}\n{t}" for i, t in enumerate(neighbour_labels)]]
    fig, axes = plt.subplots(1, len(images), figsize=(1.2 * len(images), 1.6), squeeze=False)
    for ax, img, title in zip(axes[0], images, titles, strict=True):
        ax.imshow(pixels(img), cmap="gray")
        ax.set_title(title, fontsize=7)
        ax.axis("off")
    return save(fig, path)


def cluster_grid(
    images: torch.Tensor,
    clusters: torch.Tensor,
    confidence: torch.Tensor,
    num_clusters: int,
    path: Path,
    per_cluster: int = 10,
    names: list[str] | None = None,
) -> Path:
    """One row per cluster (empty ones too): its most confident images, left to right."""
    fig, axes = plt.subplots(
        num_clusters, per_cluster, figsize=(0.9 * per_cluster, 0.95 * num_clusters), squeeze=False
    )
    for ax in axes.flat:
        ax.axis("off")
    for c in range(num_clusters):
        members = torch.nonzero(clusters == c).flatten()
        best = members[confidence[members].argsort(descending=True)][:per_cluster]
        for ax, i in zip(axes[c], best.tolist(), strict=False):
            ax.imshow(pixels(images[i]), cmap="gray")
        title = f"cluster {c}: {len(members)}" + (f" ({names[c]})" if names else "")
        axes[c][0].set_title(title, fontsize=7, loc="left")
    return save(fig, path)


def neighbour_grid(
    images: torch.Tensor, features: torch.Tensor, path: Path, queries: int = 8, shown: int = 8
) -> Path:
    """Rows of a query image (first column, framed) and its nearest other images by cosine
    similarity of `features`: what the encoder calls alike, with or without labels."""
    unit = torch.nn.functional.normalize(features.float(), dim=1)
    picks = torch.linspace(0, len(images) - 1, min(queries, len(images))).round().long()
    sims = unit[picks] @ unit.T
    sims[torch.arange(len(picks)), picks] = -2.0  # never an image's own neighbour
    nearest = sims.topk(min(shown, len(images) - 1), dim=1).indices
    cols = 1 + nearest.shape[1]
    fig, axes = plt.subplots(
        len(picks), cols, figsize=(1.0 * cols, 1.05 * len(picks)), squeeze=False
    )
    for row, (query, others) in enumerate(zip(picks.tolist(), nearest.tolist(), strict=True)):
        for col, i in enumerate([query, *others]):
            ax = axes[row][col]
            ax.imshow(pixels(images[i]), cmap="gray")
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_visible(col == 0)
                spine.set_color("tab:red")
                spine.set_linewidth(2)
    axes[0][0].set_title("query", fontsize=7)
    axes[0][1].set_title("nearest →", fontsize=7, loc="left")
    return save(fig, path)
