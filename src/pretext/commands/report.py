"""`pretext report`, `pretext compare` and `pretext augment`: what a person looks at."""

from __future__ import annotations

from pathlib import Path

import torch

from pretext.augment import MultiCrop, make_views, preset, to_pixels, to_unit
from pretext.checkpoint import write_text_atomic
from pretext.data import ImageSet, load_dataset
from pretext.errors import PretextError
from pretext.report import write_report
from pretext.report.compare import run_row, runs_markdown
from pretext.report.plots import picture_path, views_grid


def report_command(run_dir: str | Path) -> Path:
    """A self-contained RUN_DIR/report.html."""
    return write_report(run_dir)


def compare_command(run_dirs: list[str | Path], out: str | Path | None = None, log=print) -> str:
    """Several runs side by side (settings and results, read from their directories) as a
    markdown table: printed, and written to `out` if given."""
    if not run_dirs:
        raise PretextError("compare needs at least one run directory")
    table = runs_markdown([run_row(run_dir) for run_dir in run_dirs])
    if out is not None:
        write_text_atomic(Path(out), table)
    log(table)
    return table


def augment_grid(
    dataset: str = "mnist",
    data_dir: str | None = None,
    out: str | Path = "views.png",
    augment: str = "default",
    images: int = 8,
    views: int = 6,
    seed: int = 0,
    image_size: int | None = None,
    data: ImageSet | None = None,
) -> Path:
    """A PNG grid: each row one image, its original then `views` random views (of the images
    resized to `image_size`, as pretraining with that option sees them). `data`: the training
    split, already loaded."""
    out = picture_path(out)
    if data is None:
        data = load_dataset(dataset, "train", data_dir, image_size=image_size)
    aug = preset(augment)
    batch = data.images[: min(images, len(data))]
    gen = torch.Generator().manual_seed(seed)
    columns = [to_unit(batch)]
    for _ in range((views + 1) // 2):
        for view in same_size(make_views(batch, aug, gen), batch.shape[-1]):
            columns.append(to_pixels(view, aug))
    columns = [columns[0], *columns[2 if aug.keep_first_view else 1 :][:views]]
    return views_grid(columns, out, f"{dataset}: augmentation '{augment}'")


def same_size(views, side: int) -> list[torch.Tensor]:
    """A batch's views as pictures of one size: multi-crop's local crops enlarged (nearest)."""
    if not isinstance(views, MultiCrop):
        return list(views)
    enlarge = lambda v: torch.nn.functional.interpolate(v, size=(side, side))  # noqa: E731
    return [*views.global_views, *map(enlarge, views.local_views)]
