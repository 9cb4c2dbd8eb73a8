"""The functions behind the CLI commands. Each takes typed configs and plain values, writes into
a run directory, and returns what it wrote, so Python users call exactly what the CLI calls."""

from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path

import torch

from pretext.augment import make_views, preset, to_unit
from pretext.checkpoint import write_json
from pretext.config import FinetuneConfig, RunConfig, resolve_device
from pretext.data import load_dataset, stratified_subset
from pretext.errors import PretextError
from pretext.evaluate import extract_features, few_label_comparison, finetune, linear_probe
from pretext.evaluate.knn import knn_accuracy
from pretext.evaluate.retrieval import retrieval_metrics
from pretext.models import build_encoder
from pretext.train import load_encoder, pretrain


def update_metrics(run_dir: Path, **entries) -> dict:
    """Merge entries into RUN_DIR/metrics.json (atomically) and return the whole record."""
    path = Path(run_dir) / "metrics.json"
    metrics = json.loads(path.read_text()) if path.is_file() else {}
    metrics.update(entries)
    write_json(path, metrics)
    return metrics


def labelled_splits(dataset: str, data_dir: str | None, limit_train: int | None):
    train = load_dataset(dataset, "train", data_dir).first(limit_train)
    test = load_dataset(dataset, "test", data_dir)
    if train.labels is None or test.labels is None:
        raise PretextError(f"{dataset} has no labels: fine-tuning and evaluation need them")
    return train, test


def encoder_for(
    run_dir: str | Path | None,
    encoder: str,
    from_scratch: bool,
    channels: int,
    seed: int,
    device: torch.device,
) -> torch.nn.Module:
    if from_scratch:
        torch.manual_seed(seed)
        return build_encoder(encoder, channels).to(device)
    if run_dir is None:
        raise PretextError("give --out RUN_DIR with a pretrained encoder, or --from-scratch")
    return load_encoder(run_dir, device)


def finetune_command(
    run_dir: str | Path | None,
    dataset: str = "mnist",
    data_dir: str | None = None,
    cfg: FinetuneConfig | None = None,
    labels: int | None = None,
    from_scratch: bool = False,
    encoder: str = "cnn",
    device: str = "auto",
    limit_train: int | None = None,
    resume: bool = False,
    log=print,
) -> dict:
    """Fine-tune a run's encoder (or a fresh one) on labels; test accuracy of the last epoch.

    With a run directory, progress is checkpointed per epoch and `resume` continues it."""
    cfg = cfg or FinetuneConfig()
    dev = resolve_device(device)
    train, test = labelled_splits(dataset, data_dir, limit_train)
    if labels is not None:
        train = train.subset(stratified_subset(train.labels, labels, cfg.seed))
    model = encoder_for(run_dir, encoder, from_scratch, train.images.shape[1], cfg.seed, dev)
    name = "scratch" if from_scratch else "finetune"
    saved = None if run_dir is None else Path(run_dir) / "checkpoints" / f"{name}.pt"
    result = finetune(model, train, test, cfg, dev, log, name, checkpoint=saved, resume=resume)
    result.pop("model")
    result["labels"] = len(train)
    result["from_scratch"] = from_scratch
    log(f"test accuracy {100 * result['test_accuracy']:.2f}%")
    if run_dir is not None:
        key = "finetune_scratch" if from_scratch else "finetune"
        update_metrics(Path(run_dir), **{key: result})
    return result


def evaluate_command(
    run_dir: str | Path,
    dataset: str | None = None,
    data_dir: str | None = None,
    cfg: RunConfig | None = None,
    device: str = "auto",
    log=print,
) -> dict:
    """Linear probe and the few-label comparison for a run's saved encoder -> metrics.json."""
    from pretext.config import load_pretrain_config, recipe

    run_dir = Path(run_dir)
    pre = load_pretrain_config(run_dir)
    cfg = cfg or recipe(pre.recipe)
    dev = resolve_device(device)
    train, test = labelled_splits(dataset or pre.dataset, data_dir or pre.data_dir, pre.limit_train)
    encoder = load_encoder(run_dir, dev)
    eval_aug = preset(cfg.finetune.augment)
    train_x = extract_features(encoder, train.images, eval_aug, dev)
    test_x = extract_features(encoder, test.images, eval_aug, dev)
    probe = linear_probe(train_x, train.labels, test_x, test.labels, cfg.linear, seed=pre.seed)
    log(f"linear probe test accuracy {100 * probe['test_accuracy']:.2f}%")
    knn = {
        "k": cfg.knn_k,
        "temperature": cfg.knn_temperature,
        "test_accuracy": knn_accuracy(
            train_x, train.labels, test_x, test.labels, cfg.knn_k, cfg.knn_temperature
        ),
    }
    log(f"kNN (k={cfg.knn_k}) test accuracy {100 * knn['test_accuracy']:.2f}%")
    retrieval = retrieval_metrics(train_x, train.labels, test_x, test.labels)
    log(
        f"retrieval: precision@1 {100 * retrieval['precision_at_1']:.2f}%, "
        f"mAP@R {100 * retrieval['map_at_r']:.2f}%"
    )
    update_metrics(run_dir, linear_probe=probe, knn=knn, retrieval=retrieval)
    torch.manual_seed(pre.seed + 1)
    scratch = build_encoder(pre.encoder, train.images.shape[1]).to(dev)
    few = few_label_comparison(
        encoder,
        scratch,
        train,
        test,
        min(cfg.few_labels, len(train)),
        cfg.few_label_seeds,
        cfg.finetune,
        dev,
        log,
    )
    log(
        f"{few['labels']} labels: pretrained {100 * few['pretrained']:.2f}% "
        f"+- {100 * few['pretrained_std']:.2f}, from scratch {100 * few['scratch']:.2f}% "
        f"+- {100 * few['scratch_std']:.2f}"
    )
    return update_metrics(run_dir, few_labels=few)


def run(cfg: RunConfig, log=print) -> dict:
    """The main job: pretrain, fine-tune on all labels, linear probe, few-label comparison."""
    started = time.perf_counter()
    pre = cfg.pretrain
    summary = pretrain(pre, log)
    out = Path(pre.out)
    update_metrics(
        out,
        dataset=pre.dataset,
        recipe=pre.recipe,
        method=pre.method,
        encoder=pre.encoder,
        pretrain=summary,
    )
    train = load_dataset(pre.dataset, "train", pre.data_dir)
    if train.labels is None:
        log("the data set has no labels: pretraining done, nothing to evaluate")
        return update_metrics(out)
    ft = finetune_command(
        out,
        pre.dataset,
        pre.data_dir,
        replace(cfg.finetune, seed=pre.seed),
        device=pre.device,
        limit_train=pre.limit_train,
        resume=pre.resume,
        log=log,
    )
    metrics = evaluate_command(out, cfg=cfg, device=pre.device, log=log)
    metrics = update_metrics(out, seconds=round(time.perf_counter() - started, 1))
    log(
        f"done in {metrics['seconds']:.0f}s: fine-tune {100 * ft['test_accuracy']:.2f}%, "
        f"linear probe {100 * metrics['linear_probe']['test_accuracy']:.2f}%; "
        f"see {out / 'metrics.json'}"
    )
    return metrics


def augment_grid(
    dataset: str = "mnist",
    data_dir: str | None = None,
    out: str | Path = "views.png",
    augment: str = "default",
    images: int = 8,
    views: int = 6,
    seed: int = 0,
) -> Path:
    """A PNG grid: each row one image, its original then `views` random views."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data = load_dataset(dataset, "train", data_dir)
    aug = preset(augment)
    batch = data.images[: min(images, len(data))]
    gen = torch.Generator().manual_seed(seed)
    columns = [to_unit(batch)]
    for _ in range((views + 1) // 2):
        for view in make_views(batch, aug, gen):
            columns.append(((view * aug.std + aug.mean) / aug.pixel_scale).clamp(0, 1))
    columns = [columns[0], *columns[2 if aug.keep_first_view else 1 :][:views]]
    fig, axes = plt.subplots(
        len(batch), len(columns), figsize=(1.1 * len(columns), 1.1 * len(batch)), squeeze=False
    )
    for r in range(len(batch)):
        for c, column in enumerate(columns):
            img = column[r].permute(1, 2, 0).squeeze(-1).numpy()
            axes[r][c].imshow(img, cmap="gray", vmin=0, vmax=1)
            axes[r][c].axis("off")
            if r == 0:
                axes[r][c].set_title("original" if c == 0 else f"view {c}", fontsize=8)
    fig.suptitle(f"{dataset}: augmentation '{augment}'", fontsize=9)
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out
