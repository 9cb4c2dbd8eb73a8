"""The functions behind the CLI commands. Each takes typed configs and plain values, writes into
a run directory, and returns what it wrote, so Python users call exactly what the CLI calls."""

from __future__ import annotations

import json
import time
import warnings
from dataclasses import asdict, replace
from pathlib import Path

import torch

from pretext import distributed
from pretext.allocator import phase
from pretext.augment import make_views, preset, to_unit
from pretext.checkpoint import read_json, read_jsonl, write_json, write_npz, write_text_atomic
from pretext.config import (
    ClusterConfig,
    FinetuneConfig,
    RunConfig,
    SelfTrainConfig,
    check_finetune,
    is_run_dir,
    resolve_device,
    scratch_finetune,
)
from pretext.data import check_label_count, load_dataset, stratified_subset
from pretext.data.sources import missing_test_split, portable
from pretext.errors import PretextError
from pretext.evaluate import (
    accuracy,
    extract_features,
    few_label_comparison,
    finetune,
    linear_probe,
)
from pretext.evaluate.classify import finetune_views
from pretext.evaluate.knn import knn_accuracy
from pretext.evaluate.retrieval import retrieval_metrics
from pretext.models import build_encoder
from pretext.train import load_encoder, load_encoder_and_input, pretrain


def update_metrics(run_dir: Path, **entries) -> dict:
    """Merge entries into RUN_DIR/metrics.json (atomically) and return the whole record."""
    path = Path(run_dir) / "metrics.json"
    metrics = read_json(path, default={})
    metrics.update(entries)
    write_json(path, metrics)
    return metrics


def labelled_splits(
    dataset: str, data_dir: str | None, limit_train: int | None, image_size: int | None = None
):
    train = load_dataset(dataset, "train", data_dir, image_size=image_size).first(limit_train)
    test = load_dataset(dataset, "test", data_dir, image_size=image_size)
    if train.labels is None or test.labels is None:
        raise PretextError(f"{dataset} has no labels: fine-tuning and evaluation need them")
    return train, test


def encoder_for(
    run_dir: str | Path | None,
    encoder: str,
    from_scratch: bool,
    images: torch.Tensor,
    seed: int,
    device: torch.device,
) -> torch.nn.Module:
    """The encoder to fine-tune: the run's pretrained one, or a fresh one for `images`."""
    if from_scratch:
        return build_encoder(encoder, images.shape[1], images.shape[-1], seed=seed).to(device)
    require_pretrained_run(run_dir)
    return load_encoder(run_dir, device)


def require_pretrained_run(run_dir: str | Path | None) -> None:
    """Fine-tuning without --from-scratch needs a run directory of `pretext pretrain`."""
    if not is_run_dir(run_dir):
        problem = "no run directory" if run_dir is None else f"{run_dir} is not a run directory"
        raise PretextError(
            f"{problem}: give --out with the run directory of `pretext pretrain`, or "
            "--from-scratch to train from random weights"
        )


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
    image_size: int | None = None,
    self_train: SelfTrainConfig | None = None,
    log=print,
) -> dict:
    """Fine-tune a run's encoder (or a fresh one) on labels; test accuracy of the last epoch.

    With a run directory, progress is checkpointed per epoch and `resume` continues it, and the
    images are resized as the run's pretraining resized them (unless `image_size` says). With
    `self_train`, the fine-tuned classifier then learns from every training image, labelled or
    not (pretext.evaluate.selftrain; not checkpointed): "test_accuracy" is then the
    self-trained model's, and "finetuned_test_accuracy" the fine-tuned one's before it."""
    from pretext.config import load_pretrain_config

    cfg = cfg or FinetuneConfig()
    check_finetune(cfg)
    if self_train is not None and self_train.epochs < 1:  # before any fine-tuning is done
        raise PretextError(f"--self-train needs at least 1 pass, got {self_train.epochs}")
    if from_scratch:
        cfg = scratch_finetune(cfg)
    dev = resolve_device(device)
    if image_size is None and is_run_dir(run_dir):
        image_size = load_pretrain_config(Path(run_dir)).image_size
    every, test = labelled_splits(dataset, data_dir, limit_train, image_size)
    train = every
    if labels is not None:
        train = every.subset(stratified_subset(every.labels, labels, cfg.seed))
    model = encoder_for(run_dir, encoder, from_scratch, train.images, cfg.seed, dev)
    name = "scratch" if from_scratch else "finetune"
    saved = None if run_dir is None else Path(run_dir) / "checkpoints" / f"{name}.pt"
    result = finetune(model, train, test, cfg, dev, log, name, checkpoint=saved, resume=resume)
    classifier = result.pop("model")
    if self_train is not None:
        from pretext.evaluate.selftrain import self_train as learn_from_unlabelled

        log(
            f"fine-tuned test accuracy {100 * result['test_accuracy']:.2f}%; self-training on "
            f"all {len(every)} training images"
        )
        trained = learn_from_unlabelled(classifier, every.images, train, self_train, dev, log)
        classifier = trained.pop("model")
        result["finetuned_test_accuracy"] = result["test_accuracy"]
        views = preset(finetune_views(cfg, len(train)))  # for their normalisation only
        result["test_accuracy"] = accuracy(classifier, test, views, dev)
        result["self_training"] = {**asdict(self_train), **trained}
    if run_dir is not None and not from_scratch:
        from pretext.report.plots import confusion_matrix, worst_mistakes

        logits = extract_features(classifier, test.images, preset(cfg.augment), dev).cpu()
        confusion_matrix(logits.argmax(1), test.labels, Path(run_dir) / "confusion.png")
        worst_mistakes(test.images, test.labels, logits, Path(run_dir) / "mistakes.png")
    result["labels"] = len(train)
    result["from_scratch"] = from_scratch
    log(f"test accuracy {100 * result['test_accuracy']:.2f}%")
    if run_dir is not None:
        key = "finetune_scratch" if from_scratch else "finetune"
        update_metrics(Path(run_dir), **{key: result})
    return result


@phase
def evaluate_command(
    run_dir: str | Path,
    dataset: str | None = None,
    data_dir: str | None = None,
    cfg: RunConfig | None = None,
    device: str = "auto",
    log=print,
) -> dict:
    """Linear probe, kNN, retrieval metrics and the few-label comparison of a run's saved encoder
    -> metrics.json (and the pictures the report shows)."""
    from pretext.config import load_pretrain_config, recipe

    run_dir = Path(run_dir)
    pre = load_pretrain_config(run_dir)
    cfg = cfg or recipe(pre.recipe)
    dev = resolve_device(device)
    train, test = labelled_splits(
        dataset or pre.dataset, data_dir or pre.data_dir, pre.limit_train, pre.image_size
    )
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
    draw_run_pictures(run_dir, test_x[:2000], test.labels[:2000], pre.seed)
    channels, size = train.images.shape[1], train.images.shape[-1]
    scratch = build_encoder(pre.encoder, channels, size, seed=pre.seed + 1).to(dev)
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
    interval = (
        f" (95% interval {100 * few['gain_low']:+.2f} to {100 * few['gain_high']:+.2f}, "
        f"paired over {few['seeds']} seeds)"
        if few["gain_low"] is not None
        else ""
    )
    log(
        f"{few['labels']} labels: pretrained {100 * few['pretrained']:.2f}% "
        f"+- {100 * few['pretrained_std']:.2f}, from scratch {100 * few['scratch']:.2f}% "
        f"+- {100 * few['scratch_std']:.2f}; gain {100 * few['gain']:+.2f} points{interval}"
    )
    return update_metrics(run_dir, few_labels=few)


def draw_run_pictures(
    run_dir: Path, features: torch.Tensor, labels: torch.Tensor, seed: int
) -> None:
    from pretext.report.plots import embedding_map, training_curves

    history_file = run_dir / "metrics.jsonl"
    if history_file.is_file():
        training_curves(read_jsonl(history_file), run_dir / "curves.png")
    embedding_map(features, labels, run_dir / "embeddings.png", seed)


def run(cfg: RunConfig, log=print) -> dict:
    """The main job: pretrain, fine-tune on all labels, linear probe, few-label comparison."""
    started = time.perf_counter()
    pre = cfg.pretrain
    problem = missing_test_split(pre.dataset)
    if problem:  # found before pretraining, not after it
        raise PretextError(f"{problem}; evaluation needs one (`pretext pretrain` does not)")
    check_finetune(cfg.finetune, "finetune-")
    summary = pretrain(pre, log)
    if distributed.world_size() > 1 and torch.distributed.get_rank() != 0:
        return {}  # evaluation runs once, on rank 0
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
    augment_grid(
        pre.dataset,
        pre.data_dir,
        out / "views.png",
        pre.augment,
        seed=pre.seed,
        image_size=pre.image_size,
    )
    metrics = update_metrics(out, seconds=round(time.perf_counter() - started, 1))
    report_command(out)
    log(
        f"done in {metrics['seconds']:.0f}s: fine-tune {100 * ft['test_accuracy']:.2f}%, "
        f"linear probe {100 * metrics['linear_probe']['test_accuracy']:.2f}%; "
        f"see {out / 'report.html'} (figures in {out / 'metrics.json'})"
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
    image_size: int | None = None,
) -> Path:
    """A PNG grid: each row one image, its original then `views` random views (of the images
    resized to `image_size`, as pretraining with that option sees them)."""
    from pretext.report.plots import picture_path, pixels, plt, save

    out = picture_path(out)
    data = load_dataset(dataset, "train", data_dir, image_size=image_size)
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
            axes[r][c].imshow(pixels(column[r]), cmap="gray", vmin=0, vmax=1)
            axes[r][c].axis("off")
            if r == 0:
                axes[r][c].set_title("original" if c == 0 else f"view {c}", fontsize=8)
    fig.suptitle(f"{dataset}: augmentation '{augment}'", fontsize=9)
    return save(fig, out)


def check_study_request(
    labels: tuple[int, ...],
    seeds: int,
    self_train: int,
    train_labels: torch.Tensor | None = None,
    min_steps: int | None = None,
) -> None:
    """What a study's options can get wrong, found before any work: a label count that failed
    only when its turn came would waste the counts run before it (and `pretext study` without a
    run checks this before pretraining one)."""
    if not labels:
        raise PretextError("--labels needs at least one label count")
    if seeds < 1:
        raise PretextError(f"--seeds must be >= 1, got {seeds}")
    if self_train < 0:
        raise PretextError(f"--self-train must be >= 0 passes, got {self_train}")
    if min_steps is not None and min_steps < 0:
        raise PretextError(f"--min-steps must be >= 0, got {min_steps}")
    for count in labels if train_labels is not None else ():
        # counts above the data set's size mean all of it (the study takes them so)
        check_label_count(train_labels, min(count, len(train_labels)))


def study_command(
    run_dir: str | Path,
    labels: tuple[int, ...] = (10, 100, 600, 6000, 60000),
    seeds: int = 3,
    out: str | Path | None = None,
    dataset: str | None = None,
    data_dir: str | None = None,
    device: str = "auto",
    min_steps: int | None = None,
    cluster: bool = False,
    self_train: int = 0,
    log=print,
) -> list[dict]:
    """Few-label study of a run's encoder -> study.json, study.md, study.png in `out`. With
    `cluster`, also clusters found without labels and named by each labelled subset; with
    `self_train` passes, also both fine-tuned arms after self-training on all training images."""
    from pretext.config import load_pretrain_config, recipe
    from pretext.evaluate.study import (
        METHODS,
        SELF_TRAINED,
        StudyConfig,
        finetune_protocol,
        run_study,
        study_markdown,
    )
    from pretext.report.plots import study_plot

    run_dir = Path(run_dir)
    out = Path(out) if out is not None else run_dir
    pre = load_pretrain_config(run_dir)
    base = recipe(pre.recipe)
    ft = base.finetune if min_steps is None else replace(base.finetune, min_steps=min_steps)
    cfg = StudyConfig(
        labels=tuple(labels),
        seeds=seeds,
        finetune=ft,
        linear=base.linear,
        knn_k=base.knn_k,
        knn_temperature=base.knn_temperature,
        methods=METHODS + (("cluster",) if cluster else ()) + (SELF_TRAINED if self_train else ()),
        clustering=ClusterConfig(augment=pre.augment),
        self_training=SelfTrainConfig(epochs=self_train) if self_train else SelfTrainConfig(),
    )
    dev = resolve_device(device)
    train, test = labelled_splits(
        dataset or pre.dataset, data_dir or pre.data_dir, None, pre.image_size
    )
    check_study_request(labels, seeds, self_train, train.labels, min_steps)  # before any work
    # Counts beyond the data set mean all of it: one row for all, not one per count given.
    cfg = replace(cfg, labels=tuple(dict.fromkeys(min(n, len(train)) for n in cfg.labels)))
    encoder = load_encoder(run_dir, dev)

    def make_scratch(seed: int) -> torch.nn.Module:
        channels, size = train.images.shape[1], train.images.shape[-1]
        return build_encoder(pre.encoder, channels, size, seed=10_000 + seed).to(dev)

    def write_study(rows: list[dict]) -> str:
        """study.json, .md and .png from the rows so far: after every label count, so that an
        interrupted study keeps the counts it finished (study.md then says it is partial)."""
        finished = len({row["labels"] for row in rows})
        table = study_markdown(rows, finetune_protocol(ft))
        if finished < len(cfg.labels):
            table += (
                f"\nPartial: {finished} of {len(cfg.labels)} label counts done (the "
                "study was still running when this was written).\n"
            )
        write_json(out / "study.json", rows)
        study_plot(rows, out / "study.png")
        write_text_atomic(out / "study.md", table)
        return table

    rows = run_study(encoder, make_scratch, train, test, cfg, dev, log, done=write_study)
    log(study_markdown(rows, finetune_protocol(ft)))
    return rows


def cluster_command(
    run_dir: str | Path,
    cfg: ClusterConfig | None = None,
    dataset: str | None = None,
    data_dir: str | None = None,
    device: str = "auto",
    limit_train: int | None = None,
    log=print,
) -> dict:
    """Group a run's training images into clusters without labels (SCAN) -> clusters.npz (the
    cluster and confidence of every train and test image), clusters.png, checkpoints/clusters.pt
    and "clustering" in metrics.json. Where the data set has labels they only score the result:
    each cluster is matched to a class on the training labels, accuracy is measured on test.
    `limit_train` (default: the run's own) clusters the first N training images."""
    import dataclasses

    from sklearn.metrics import normalized_mutual_info_score

    from pretext.checkpoint import save_checkpoint
    from pretext.config import load_pretrain_config
    from pretext.evaluate.cluster import (
        assign_clusters,
        match_clusters,
        named_accuracy,
        train_clusters,
    )
    from pretext.report.plots import cluster_grid

    run_dir = Path(run_dir)
    pre = load_pretrain_config(run_dir)
    cfg = cfg or ClusterConfig()
    if cfg.augment is None:  # the views the encoder was pretrained with
        cfg = replace(cfg, augment=pre.augment)
    dataset, data_dir = dataset or pre.dataset, data_dir or pre.data_dir
    if cfg.clusters < 2 or cfg.epochs < 1 or cfg.neighbours < 1 or cfg.batch_size < 2:
        raise PretextError("--clusters, --batch-size need at least 2; --epochs, --neighbours 1")
    dev = resolve_device(device)
    train = load_dataset(dataset, "train", data_dir, image_size=pre.image_size).first(
        limit_train or pre.limit_train
    )
    if cfg.neighbours >= len(train):
        raise PretextError(f"--neighbours {cfg.neighbours}: the data has {len(train)} images")
    started = time.perf_counter()
    model = train_clusters(load_encoder(run_dir, dev), train.images, cfg, dev, log)
    seconds = round(time.perf_counter() - started, 3)
    train_c, train_conf = assign_clusters(model, train.images, dev)
    sizes = torch.bincount(train_c, minlength=cfg.clusters).tolist()
    result: dict = {
        "clusters": cfg.clusters,
        "images": len(train),
        "sizes": sizes,
        "empty_clusters": sum(size == 0 for size in sizes),
        "seconds": seconds,
    }
    arrays = {"train_clusters": train_c.numpy(), "train_confidence": train_conf.numpy()}
    names = None
    test = (  # labels only score the clusters: unlabelled data has nothing to score them by
        load_dataset(dataset, "test", data_dir, image_size=pre.image_size)
        if train.labels is not None
        else None
    )
    if test is not None and test.labels is not None:
        mapping = match_clusters(train_c, train.labels, cfg.clusters)
        test_c, test_conf = assign_clusters(model, test.images, dev)
        arrays |= {"test_clusters": test_c.numpy(), "test_confidence": test_conf.numpy()}
        arrays["cluster_class"] = mapping.numpy()
        result["test_accuracy"] = named_accuracy(mapping, test_c, test.labels)
        result["test_nmi"] = float(normalized_mutual_info_score(test.labels, test_c))
        names = [f"class {c}" for c in mapping.tolist()]
        log(
            f"clusters vs test labels: accuracy {100 * result['test_accuracy']:.2f}% "
            f"(clusters matched to classes on training labels), NMI {result['test_nmi']:.3f}"
        )
    write_npz(run_dir / "clusters.npz", **arrays)
    save_checkpoint(
        run_dir / "checkpoints" / "clusters.pt",
        {
            "encoder": model.encoder.state_dict(),
            "classifier": model.state_dict(),
            "config": dataclasses.asdict(cfg),
        },
    )
    cluster_grid(
        train.images, train_c, train_conf, cfg.clusters, run_dir / "clusters.png", names=names
    )
    log(f"cluster sizes {sizes}; wrote {run_dir / 'clusters.npz'} and clusters.png")
    update_metrics(run_dir, clustering=result)
    return result


def embed_command(
    run_dir: str | Path,
    split: str = "train",
    out: str | Path | None = None,
    dataset: str | None = None,
    data_dir: str | None = None,
    device: str = "auto",
) -> Path:
    """Embeddings of a split (the search database) -> INDEX_DIR/embeddings.npz + index.json."""
    import numpy as np

    from pretext.config import load_pretrain_config

    run_dir = Path(run_dir)
    pre = load_pretrain_config(run_dir)
    dataset, data_dir = dataset or pre.dataset, data_dir or pre.data_dir
    index_dir = Path(out) if out is not None else run_dir / "index"
    dev = resolve_device(device)
    data = load_dataset(dataset, split, data_dir, image_size=pre.image_size)
    features = extract_features(load_encoder(run_dir, dev), data.images, preset(pre.augment), dev)
    labels = data.labels.numpy() if data.labels is not None else np.full(len(data), -1)
    index_dir.mkdir(parents=True, exist_ok=True)
    write_npz(
        index_dir / "embeddings.npz",
        embeddings=features.cpu().numpy(),
        labels=labels,
        indices=np.arange(len(data)),
    )
    write_json(
        index_dir / "index.json",
        {
            "run_dir": str(run_dir.resolve()),
            "dataset": portable(dataset),
            "data_dir": portable(data_dir),
            "split": split,
        },
    )
    return index_dir / "embeddings.npz"


def search_command(
    index_dir: str | Path,
    query: str,
    k: int = 10,
    out: str | Path | None = None,
    device: str = "auto",
    log=print,
) -> list[dict]:
    """Nearest database images of a query (a test-set index or an image file), with a PNG strip."""
    if k < 1:
        raise PretextError(f"-k must be >= 1, got {k}")
    import numpy as np
    import torch.nn.functional as F

    from pretext.config import load_pretrain_config
    from pretext.report.plots import picture_path, retrieval_strip

    index_dir = Path(index_dir)
    if out is not None:
        out = picture_path(out)
    try:
        meta = json.loads((index_dir / "index.json").read_text())
        with np.load(index_dir / "embeddings.npz") as archive:
            bank = torch.from_numpy(archive["embeddings"])
            bank_labels = archive["labels"]
        source_run = Path(meta["run_dir"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise PretextError(f"{index_dir} is not an index made by 'pretext embed' ({exc})") from None
    pre = load_pretrain_config(source_run)
    aug = preset(pre.augment)
    dev = resolve_device(device)
    size = pre.image_size
    database = load_dataset(meta["dataset"], meta["split"], meta["data_dir"], image_size=size)
    if query.isdigit():
        test = load_dataset(meta["dataset"], "test", meta["data_dir"], image_size=size)
        if int(query) >= len(test):
            raise PretextError(f"--query {query}: the test set has {len(test)} images")
        image = test.images[int(query)]
        query_label = str(int(test.labels[int(query)])) if test.labels is not None else "?"
    else:
        image, query_label = (
            read_query_image(Path(query), database.images.shape[1:]),
            Path(query).name,
        )
    encoder = load_encoder(meta["run_dir"], dev)
    z = extract_features(encoder, image.unsqueeze(0), aug, dev).cpu()
    sims = F.normalize(bank.float(), dim=1) @ F.normalize(z, dim=1)[0]
    top = sims.topk(min(k, len(bank)))
    results = [
        {"rank": r + 1, "index": int(i), "label": int(bank_labels[i]), "similarity": float(s)}
        for r, (s, i) in enumerate(zip(top.values, top.indices, strict=True))
    ]
    for row in results:
        log(
            f"#{row['rank']:>2}  index {row['index']:>6}  label {row['label']}  "
            f"similarity {row['similarity']:.3f}"
        )
    strip = out if out is not None else index_dir / f"search-{Path(query).stem}.png"
    retrieval_strip(
        image, query_label, database.images[top.indices], [str(r["label"]) for r in results], strip
    )
    log(f"wrote {strip}")
    return results


def read_query_image(path: Path, shape: torch.Size) -> torch.Tensor:
    """An image file as uint8 C x H x W, converted and resized to match the database."""
    import numpy as np
    from PIL import Image, UnidentifiedImageError

    from pretext.data.sources import centre_square

    channels, height, width = shape
    try:
        with Image.open(path) as img:
            img = img.convert("L" if channels == 1 else "RGB")
            # A square target keeps the query's centre (as folders read with --image-size).
            fitted = centre_square(img, width) if width == height else img.resize((width, height))
            array = np.asarray(fitted)
    except (OSError, UnidentifiedImageError) as exc:
        raise PretextError(f"{path} is not a readable image ({exc})") from None
    tensor = torch.from_numpy(array.copy())
    return tensor.unsqueeze(0) if channels == 1 else tensor.permute(2, 0, 1)


def export_command(
    run_dir: str | Path, fmt: str = "torchscript", out: str | Path | None = None
) -> Path:
    """The encoder alone, usable without pretext: TorchScript (.pt) or ONNX (.onnx)."""
    from pretext.config import load_pretrain_config

    run_dir = Path(run_dir)
    pre = load_pretrain_config(run_dir)
    encoder, (channels, size) = load_encoder_and_input(run_dir, "cpu")
    encoder.eval()
    example = torch.zeros(2, channels, size, size)
    if fmt == "torchscript":
        path = Path(out) if out is not None else run_dir / "encoder.torchscript.pt"
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # still the portable format
            traced = torch.jit.trace(encoder, example)
        tmp = path.with_name(f".{path.name}.tmp")
        traced.save(str(tmp))
        tmp.replace(path)
    elif fmt == "onnx":
        path = Path(out) if out is not None else run_dir / "encoder.onnx"
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)  # TorchScript-based exporter
                torch.onnx.export(
                    encoder,
                    (example,),
                    str(path),
                    input_names=["images"],
                    output_names=["embeddings"],
                    dynamic_axes={"images": {0: "batch"}, "embeddings": {0: "batch"}},
                    dynamo=False,
                )
        except (ImportError, ModuleNotFoundError) as exc:
            raise PretextError(f"ONNX export needs the 'onnx' package ({exc})") from None
    else:
        raise PretextError(f"--format must be torchscript or onnx, got {fmt!r}")
    write_json(
        path.with_suffix(".json"),
        {
            "input": f"float N x {channels} x {size} x {size}",
            "normalise": normalisation(preset(pre.augment)),
            "embed_dim": int(encoder.embed_dim),
            "encoder": pre.encoder,
        },
    )
    return path


def normalisation(aug) -> dict:
    """How to turn 0-255 pixels into the encoder's input: (x / 255 * scale - mean) / std."""
    return {"scale": aug.pixel_scale, "mean": aug.mean, "std": aug.std}


def compare_command(run_dirs: list[str | Path], out: str | Path | None = None, log=print) -> str:
    """Several runs side by side (settings and results, read from their directories) as a
    markdown table: printed, and written to `out` if given."""
    from pretext.report.compare import run_row, runs_markdown

    if not run_dirs:
        raise PretextError("compare needs at least one run directory")
    table = runs_markdown([run_row(run_dir) for run_dir in run_dirs])
    if out is not None:
        write_text_atomic(Path(out), table)
    log(table)
    return table


def report_command(run_dir: str | Path) -> Path:
    from pretext.report import write_report

    return write_report(run_dir)
