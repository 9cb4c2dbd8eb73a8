"""Which semi-supervised fine-tuning settings, chosen without the test set?

    python benchmarks/semi.py --run runs/mnist --data-dir ../shared/data
        [--labels 10,100,600] [--seeds 1] [--first-seed 0] [--epochs PASSES]
        [--start clusters,encoder,revived,scratch] [--lr 3e-3] [--weight-decay 0]
        [--teacher-views 1] [--threshold 0.8] [--decay 0.95] [--labelled-batch 64] [--weak light]
        [--strong light-stroke] [--strong-set FIELD=VALUE ...] [--align] [--limit-train N]
        [--threads N] [--ceiling VIEWS]
        [--add-labels I,J,...]
        [--draw stratified|selected]

A validation experiment: the first 5/6 of the training images train (labelled subset and
unlabelled images alike), the last 1/6 validates. For each label count and each of `--seeds`
seeds from `--first-seed` the same stratified subset trains `pretext.evaluate.semi.semi_train`
from each starting point: the clusters found once without labels and named by the subset
(`clusters`), the pretrained encoder with a new head (`encoder`), the same with its dead
embedding units given fresh weights (`revived`, the `cnn` encoders only), random weights
(`scratch`, as the study seeds them). Prints one JSON object: each start's validation
accuracy, confident share, seconds, dead embedding units and five most frequent mistakes (true
and predicted class, count) before and after, and one line per result on stderr as it comes.
Without `--epochs` the passes depend on the label count as in `pretext.config.semi_passes`.

`--strong-set FIELD=VALUE` (repeatable) changes one field of the student's views
(`pretext.presets.Augmentation`), e.g. `--strong-set stroke_p=0.75`: a variant of `--strong`
without a preset of its own, named in the JSON by its changes.

`--add-labels` labels the training images of those indices too, in every draw: what one more
label of a given image changes.

With `--ceiling VIEWS` it fine-tunes the pretrained encoder on every training label through
each of the comma-separated views instead: what a view costs a student never taught wrong.
"""

from __future__ import annotations

import argparse
import ast
import copy
import json
import sys
import time
from dataclasses import fields, replace

import torch
import validation as split
from throughput import environment

from pretext.augment import preset
from pretext.config import ClusterConfig, FinetuneConfig, SemiConfig, input_stats
from pretext.data import stratified_subset
from pretext.evaluate.classify import extract_features, finetune, most_confused, predict
from pretext.evaluate.cluster import cluster_probabilities, match_clusters, train_clusters
from pretext.evaluate.selection import select_for_labelling
from pretext.evaluate.semi import cluster_start, semi_train
from pretext.models import Classifier, build_encoder, seeded_linear
from pretext.presets import PRESETS


def starting_model(start, setup, clusters, train_p, subset, idx, seed):
    """The classifier `start` names, for the labelled subset `idx` of seed `seed`."""
    classes = setup.train.num_classes
    if start == "clusters":
        return cluster_start(
            clusters, match_clusters(train_p[idx], subset.labels, classes), classes
        )
    if start == "encoder":
        return Classifier(setup.encoder, classes, seed=seed)
    if start == "revived":
        fresh = revived(setup.encoder, setup.train.images, input_stats(setup.pretrain), seed)
        return Classifier(fresh, classes, seed=seed)
    scratch = build_encoder(setup.pretrain.encoder, setup.train.images.shape[1], seed=10_000 + seed)
    return Classifier(scratch, classes, seed=seed)


def dead_units(encoder: torch.nn.Module, images: torch.Tensor, stats) -> torch.Tensor:
    """The embedding units that no image of `images` (normalised by `stats`) turns on, all at 0
    after the ReLU: units that pass no gradient and so stay off through a fine-tune."""
    features = extract_features(encoder, images, preset("none", stats), torch.device("cpu"))
    return (features.amax(0) <= 0).nonzero().flatten()


def revived(encoder: torch.nn.Module, images: torch.Tensor, stats, seed: int) -> torch.nn.Module:
    """A copy of the `cnn` encoder whose dead embedding units get fresh incoming weights (the
    last layer's default initialisation, drawn from `seed`), so that a fine-tune can use them;
    every other weight is the pretrained one."""
    if not isinstance(getattr(encoder, "fc", None), torch.nn.Linear):
        raise SystemExit("--start revived: only for the cnn encoders, whose embedding is `fc`")
    encoder = copy.deepcopy(encoder)
    dead = dead_units(encoder, images, stats)
    fresh = seeded_linear(encoder.fc.in_features, encoder.fc.out_features, 20_000 + seed)
    with torch.no_grad():
        encoder.fc.weight[dead] = fresh.weight[dead]
        encoder.fc.bias[dead] = fresh.bias[dead]
    return encoder


def ceiling(setup, views: list[str], epochs: int, stats, device) -> dict:
    """What the student's views cost a classifier that is never taught wrong: the pretrained
    encoder fine-tuned on every training image with its true label, through each of `views`,
    for `epochs` passes (batch 256, Adam 3e-3 cosine); validation accuracy of each."""
    found, data = {}, (setup.train, setup.validation)
    for name in views:
        cfg = FinetuneConfig(epochs=epochs, batch_size=256, augment=name, min_steps=0, anchor=0.0)
        out = finetune(setup.encoder, *data, cfg, device, quiet, stats=stats)
        found[name] = {"validation": round(out["test_accuracy"], 4), "seconds": out["seconds"]}
        print(json.dumps({name: found[name]}), file=sys.stderr, flush=True)  # progress
    return {"epochs": epochs, "views": found, **environment()}


def quiet(*_args) -> None:
    pass


def share_right(predicted: torch.Tensor, data) -> float:
    return round((predicted == data.labels).float().mean().item(), 4)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    split.add_options(parser)
    parser.add_argument("--labels", default="10,100,600")
    parser.add_argument("--seeds", type=int, default=1, help="how many label draws")
    parser.add_argument("--first-seed", type=int, default=0, help="the first draw's seed")
    parser.add_argument("--start", default="clusters,encoder,scratch")
    parser.add_argument(
        "--epochs", type=int, default=None, help="passes at every count (default: by count)"
    )
    parser.add_argument("--lr", type=float, default=SemiConfig.lr)
    parser.add_argument("--weight-decay", type=float, default=SemiConfig.weight_decay)
    parser.add_argument("--teacher-views", type=int, default=SemiConfig.teacher_views)
    parser.add_argument("--threshold", type=float, default=SemiConfig.threshold)
    parser.add_argument("--decay", type=float, default=SemiConfig.teacher_decay)
    parser.add_argument("--labelled-batch", type=int, default=SemiConfig.labelled_batch)
    parser.add_argument("--weak", default=SemiConfig.weak)
    parser.add_argument("--strong", default=SemiConfig.strong)
    parser.add_argument(
        "--strong-set",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="change one field of the student's views (repeatable)",
    )
    parser.add_argument("--align", action="store_true", help="distribution alignment")
    parser.add_argument(
        "--ceiling", default=None, help="VIEWS,...: fine-tune on every true label instead"
    )
    parser.add_argument("--add-labels", default="", help="I,J,...: training images also labelled")
    parser.add_argument(
        "--draw",
        choices=("stratified", "selected"),
        default="stratified",
        help="labels drawn per class at random, or chosen from the embedding without labels",
    )
    return parser.parse_args()


def semi_config(args: argparse.Namespace) -> SemiConfig:
    passes = {} if args.epochs is None else {"epochs": args.epochs, "few_epochs": args.epochs}
    return SemiConfig(
        **passes,
        lr=args.lr,
        threshold=args.threshold,
        teacher_decay=args.decay,
        labelled_batch=args.labelled_batch,
        weight_decay=args.weight_decay,
        teacher_views=args.teacher_views,
        weak=args.weak,
        strong=args.strong,
        align=args.align,
    )


def labelled_indices(
    labels: torch.Tensor, count: int, seed: int, extra: list[int], features=None
) -> torch.Tensor:
    """The draw of `count` labels of `seed`, with the images `extra` added: stratified, or
    chosen from the embedding `features` where given."""
    if features is None:
        drawn = stratified_subset(labels, count, seed)
    else:
        drawn = select_for_labelling(features, count, seed)
    return torch.unique(torch.cat([drawn, torch.tensor(extra, dtype=drawn.dtype)]))


def one_draw(setup, starts, clusters, train_p, draw, cfg, stats, device, features=None) -> dict:
    """Each start's semi-supervised training on the labels `draw` (count, seed, extra images):
    validation accuracy and most frequent mistakes before and after, confident share, seconds."""
    train, validation, plain = setup.train, setup.validation, preset("none", stats)
    count, seed, extra = draw
    idx = labelled_indices(train.labels, count, seed, extra, features)
    subset = train.subset(idx)
    row = {"labels": len(idx), "seed": seed, **({"added": extra} if extra else {})}
    for start in starts:
        model = starting_model(start, setup, clusters, train_p, subset, idx, seed)
        before = predict(model, validation, plain, device)
        out = semi_train(model, train.images, subset, replace(cfg, seed=seed), device, quiet, stats)
        trained = out["model"]
        both = (model, trained)
        after = predict(trained, validation, plain, device)
        row[start] = {
            "start": share_right(before, validation),
            "semi": share_right(after, validation),
            "confident": round(out["confident"], 4),
            "seconds": out["seconds"],
            "dead_units": [len(dead_units(m.encoder, train.images, stats)) for m in both],
            "start_confused": most_confused(before, validation.labels),
            "confused": most_confused(after, validation.labels),
        }
        log = {start: row[start], "labels": row["labels"], "seed": seed}
        print(json.dumps(log), file=sys.stderr, flush=True)  # progress
    return row


def student_variant(base: str, settings: list[str], ceiling_views: str | None = None) -> str:
    """The name of the views `base` with the `--strong-set` changes, entered in this process's
    preset table under it (e.g. `light-stroke[stroke_p=0.75]`); refused in one line where a
    field does not exist, a value is not a number or tuple, or `--ceiling` would ignore them."""
    if not settings:
        return base
    if ceiling_views:
        raise SystemExit("--strong-set: not with --ceiling, which names its own views")
    if base not in PRESETS:
        raise SystemExit(f"--strong: unknown views {base!r}")
    known, changes = {f.name for f in fields(PRESETS[base])}, {}
    for setting in settings:
        name, _, text = setting.partition("=")
        if name not in known:
            raise SystemExit(f"--strong-set: no field {name!r}; one of {', '.join(sorted(known))}")
        try:
            changes[name] = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            changes[name] = None
        if not isinstance(changes[name], (int, float, tuple)):
            raise SystemExit(f"--strong-set {name}: {text!r} is not a number or tuple")
    variant = f"{base}[{','.join(settings)}]"
    PRESETS[variant] = replace(PRESETS[base], **changes)
    return variant


def added_labels(option: str, train_size: int, ceiling_views: str | None) -> list[int]:
    """The image indices of `--add-labels`, refused in one line if they cannot act."""
    try:
        extra = [int(i) for i in option.split(",") if i.strip()]
    except ValueError:
        raise SystemExit("--add-labels: comma-separated image indices, e.g. 3538,12") from None
    if any(not 0 <= i < train_size for i in extra):
        raise SystemExit(f"--add-labels: indices must be in 0..{train_size - 1}")
    if extra and ceiling_views:
        raise SystemExit("--add-labels: not with --ceiling, which uses every training label")
    return extra


def main() -> None:
    args = parse_args()
    args.strong = student_variant(args.strong, args.strong_set, args.ceiling)
    setup = split.load(args)
    extra = added_labels(args.add_labels, len(setup.train), args.ceiling)
    device = torch.device("cpu")
    stats = input_stats(setup.pretrain)
    if args.ceiling:
        views = args.ceiling.split(",")
        print(json.dumps(ceiling(setup, views, args.epochs, stats, device), indent=1))
        return
    cfg, starts = semi_config(args), args.start.split(",")
    started, clusters, train_p = time.perf_counter(), None, None
    if "clusters" in starts:
        views = ClusterConfig(augment=setup.pretrain.augment)
        clusters = train_clusters(setup.encoder, setup.train.images, views, device, quiet, stats)
        train_p = cluster_probabilities(clusters, setup.train.images, device, stats)
    cluster_seconds = time.perf_counter() - started
    features = None
    if args.draw == "selected":
        plain = preset("none", stats)
        features = extract_features(setup.encoder, setup.train.images, plain, device)
    rows = [
        one_draw(
            setup, starts, clusters, train_p, (count, seed, extra), cfg, stats, device, features
        )
        for count in (int(n) for n in args.labels.split(","))
        for seed in range(args.first_seed, args.first_seed + args.seeds)
    ]
    names = (
        "epochs",
        "few_epochs",
        "lr",
        "weight_decay",
        "threshold",
        "teacher_decay",
        "labelled_batch",
    )
    report = {
        "train": len(setup.train),
        "validation": len(setup.validation),
        **{k: getattr(cfg, k) for k in (*names, "teacher_views", "align", "weak", "strong")},
        "draw": args.draw,
        "cluster_seconds": round(cluster_seconds, 1),
        **environment(),
        "rows": rows,
    }
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
