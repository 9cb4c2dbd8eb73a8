"""Matplotlib figures written as PNG files (Agg backend, no display needed)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from matplotlib.backend_bases import FigureCanvasBase  # noqa: E402
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


def training_curves(history: list[dict], path: Path) -> Path:
    """Pretraining loss per epoch, and the online kNN monitor when it ran."""
    epochs = [row["epoch"] for row in history]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(epochs, [row["loss"] for row in history], "o-", color="tab:blue", label="loss")
    ax.set_xlabel("epoch")
    ax.set_ylabel("pretraining loss", color="tab:blue")
    if any("knn" in row for row in history):
        twin = ax.twinx()
        twin.plot(
            epochs,
            [100 * row.get("knn", float("nan")) for row in history],
            "s-",
            color="tab:orange",
        )
        twin.set_ylabel("kNN monitor accuracy (%)", color="tab:orange")
    ax.set_title("pretraining")
    return save(fig, path)


def study_plot(rows: list[dict], path: Path) -> Path:
    """Accuracy against label count (log x), one line per method, std error bars."""
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
            linestyle="--" if method == "scratch" else "-",
        )
    ax.set_xscale("log")
    ax.set_xlabel("labelled training images")
    ax.set_ylabel("test accuracy (%)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    ax.set_title("few-label study")
    return save(fig, path)


def confusion_matrix(predicted: torch.Tensor, labels: torch.Tensor, path: Path) -> Path:
    classes = int(max(predicted.max(), labels.max())) + 1
    matrix = torch.zeros(classes, classes, dtype=torch.int64)
    matrix.index_put_((labels, predicted), torch.ones_like(labels), accumulate=True)
    fig, ax = plt.subplots(figsize=(5, 4.5))
    ax.imshow(np.log1p(matrix.numpy()), cmap="Blues")
    for i in range(classes):
        for j in range(classes):
            ax.text(j, i, int(matrix[i, j]), ha="center", va="center", fontsize=7)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_xticks(range(classes))
    ax.set_yticks(range(classes))
    ax.set_title("confusion matrix (test)")
    return save(fig, path)


def worst_mistakes(
    images: torch.Tensor, labels: torch.Tensor, logits: torch.Tensor, path: Path, count: int = 16
) -> Path:
    """The wrong test predictions made with the highest confidence."""
    probs = logits.softmax(1)
    confidence, predicted = probs.max(1)
    wrong = torch.nonzero(predicted != labels).flatten()
    order = wrong[confidence[wrong].argsort(descending=True)][:count]
    cols = 8
    rows = max(1, (len(order) + cols - 1) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(1.3 * cols, 1.5 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, i in zip(axes.flat, order.tolist(), strict=False):
        ax.imshow(pixels(images[i]), cmap="gray")
        ax.set_title(f"{int(labels[i])}→{int(predicted[i])} {confidence[i]:.2f}", fontsize=7)
    fig.suptitle("most confident mistakes (true→predicted, confidence)", fontsize=9)
    return save(fig, path)


def embedding_map(features: torch.Tensor, labels: torch.Tensor, path: Path, seed: int = 0) -> Path:
    """2-D map of embeddings coloured by class: UMAP if installed, else t-SNE."""
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
    fig, ax = plt.subplots(figsize=(5.5, 5))
    points = ax.scatter(xy[:, 0], xy[:, 1], c=labels.numpy(), cmap="tab10", s=3)
    ax.legend(*points.legend_elements(), fontsize=7, loc="best", markerscale=0.8)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(f"{name} of {len(x)} test embeddings")
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
