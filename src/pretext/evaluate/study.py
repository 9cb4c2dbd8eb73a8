"""The few-label study: for each label budget and seed, the same stratified subset trains a
linear probe, a fine-tuned copy and a kNN classifier on the pretrained encoder, and the same
architecture from scratch (same steps, same augmentation). Test accuracy of the last epoch.
Optionally (`cluster`), clusters found once without labels are named by the labelled subset;
and (`semi`, `scratch-semi`) semi-supervised fine-tuning on all training images starts from the
pretrained encoder (from its named clusters where they exist) and from random weights, the
second being the control that says what the unlabelled images give without pretraining.
With `select_labels`, each seed's labelled subset is chosen from the pretrained embedding
(`pretext.evaluate.selection`) instead of drawn per class; every arm still shares it.
Every row records each seed's seconds."""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, replace
from functools import partial

import torch
from scipy.stats import t as student_t  # a dependency of scikit-learn

from pretext.augment import preset
from pretext.config import (
    ClusterConfig,
    FinetuneConfig,
    LinearProbeConfig,
    SemiConfig,
    scratch_finetune,
    starts_from_clusters,
)
from pretext.data import ImageSet
from pretext.data.stats import InputStats
from pretext.evaluate.classify import accuracy, extract_features, finetune, linear_probe
from pretext.evaluate.cluster import (
    assign_clusters,
    cluster_probabilities,
    match_clusters,
    named_accuracy,
    train_clusters,
)
from pretext.evaluate.knn import knn_accuracy
from pretext.evaluate.selection import labelled_subset
from pretext.evaluate.semi import cluster_start, semi_train
from pretext.models import Classifier

METHODS = ("linear", "finetune", "knn", "scratch")
SEMI = ("semi", "scratch-semi")  # optional: semi-supervised, from pretraining and from scratch
COLUMNS = ("linear", "finetune", "knn", "cluster", "semi", "scratch", "scratch-semi")
BASELINES = ("scratch", "scratch-semi")  # the arms without pretraining: never methods to rate
CONTROL = {"semi": "scratch-semi"}  # a method's baseline, where not plain scratch


@dataclass(frozen=True)
class StudyConfig:
    labels: tuple[int, ...] = (10, 100, 600, 6000, 60000)
    seeds: int = 3
    finetune: FinetuneConfig = FinetuneConfig()
    linear: LinearProbeConfig = LinearProbeConfig()
    knn_k: int = 200
    knn_temperature: float = 0.1
    methods: tuple[str, ...] = METHODS
    clustering: ClusterConfig = ClusterConfig()  # for the optional "cluster" method
    semi: SemiConfig = SemiConfig()  # for the optional SEMI methods
    stats: InputStats | None = None  # the run's input normalisation (None: MNIST's)
    select_labels: bool = False  # labelled subsets chosen from the embedding, not at random


def run_study(
    encoder: torch.nn.Module,
    make_scratch,
    train: ImageSet,
    test: ImageSet,
    cfg: StudyConfig,
    device: torch.device,
    log=print,
    done=None,
) -> list[dict]:
    """Rows {labels, method, mean, std, seeds, values, seconds}; `make_scratch(seed)` builds a
    fresh encoder. `values` holds each seed's accuracy: seed s of every method used the same
    labels; `seconds` each seed's training time. `done(rows)`, if given, is called with the
    rows so far after each label count (a long study can then keep what it has finished)."""
    shared = shared_parts(encoder, train, test, cfg, device)
    rows = []
    for count in cfg.labels:
        count = min(count, len(train))
        scores: dict[str, list[float]] = {m: [] for m in cfg.methods}
        seconds: dict[str, list[float]] = {m: [] for m in cfg.methods}
        for seed in range(cfg.seeds):
            idx = labelled_subset(train.labels, count, seed, shared.get("select_x"))
            arms = {"finetune": lambda: encoder, "scratch": partial(make_scratch, seed)}
            for method, value, took in timed(
                seed_scores(arms, train, test, idx, seed, cfg, shared, device)
            ):
                scores[method].append(value)
                seconds[method].append(took)
            log(
                f"{count} labels, seed {seed}: "
                + ", ".join(f"{m} {100 * v[-1]:.2f}%" for m, v in scores.items())
            )
        once = dict(shared["once"])
        if not semi_from_clusters(cfg, train.num_classes, count):
            once.pop("semi", None)  # this count's semi arm did not start from the clusters
        rows += [
            summary_row(count, method, values, seconds[method], once.get(method))
            for method, values in scores.items()
        ]
        if done is not None:
            done(rows)
    return rows


def timed(scores):
    """(method, accuracy, seconds) for each (method, accuracy) of the generator `scores`: the
    seconds from the previous answer to this one (an arm's work between two yields)."""
    started = time.perf_counter()
    for method, value in scores:
        now = time.perf_counter()
        yield method, value, round(now - started, 3)
        started = time.perf_counter()


def shared_parts(encoder, train: ImageSet, test: ImageSet, cfg: StudyConfig, device) -> dict:
    """What every label count reuses: frozen features (linear, kNN) and the clusters trained
    once without labels ("cluster", and "semi"'s start). "once": seconds of that shared work,
    by the method that needs it."""
    aug = preset(cfg.finetune.augment, cfg.stats)
    parts: dict = {"aug": aug, "once": {}}
    if {"linear", "knn"} & set(cfg.methods):
        parts["train_x"] = extract_features(encoder, train.images, aug, device)
        parts["test_x"] = extract_features(encoder, test.images, aug, device)
    if cfg.select_labels:  # the images' own embedding, without augmentation
        plain = preset("none", cfg.stats)
        parts["select_x"] = extract_features(encoder, train.images, plain, device)
    if "cluster" in cfg.methods or semi_from_clusters(cfg, train.num_classes):
        started = time.perf_counter()
        clusters = train_clusters(encoder, train.images, cfg.clustering, device, quiet, cfg.stats)
        parts["clusters"] = clusters
        parts["train_p"] = cluster_probabilities(clusters, train.images, device, cfg.stats)
        if "cluster" in cfg.methods:  # only that method scores the clusters themselves
            parts["test_c"] = assign_clusters(clusters, test.images, device, cfg.stats)[0]
        took = round(time.perf_counter() - started, 3)
        parts["once"] = {m: took for m in ("cluster", "semi") if m in cfg.methods}
    return parts


def semi_from_clusters(cfg: StudyConfig, num_classes: int, labelled: int | None = None) -> bool:
    """Whether the `semi` arm starts from the named clusters (one cluster per class): for
    `labelled` images, or (None) for any of the study's label counts."""
    counts = cfg.labels if labelled is None else (labelled,)
    return (
        "semi" in cfg.methods
        and cfg.clustering.clusters == num_classes
        and any(starts_from_clusters(cfg.semi, n, num_classes) for n in counts)
    )


def seed_scores(arms: dict, train, test, idx, seed: int, cfg: StudyConfig, shared: dict, device):
    """(method, test accuracy) of every method of the study on the labelled subset `idx`."""
    subset, methods = train.subset(idx), set(cfg.methods)
    if "linear" in methods:
        x = shared["train_x"][idx.to(device)]
        probe = linear_probe(x, subset.labels, shared["test_x"], test.labels, cfg.linear, seed)
        yield "linear", probe["test_accuracy"]
    if "knn" in methods:
        x = shared["train_x"][idx.to(device)]
        knn = knn_accuracy(
            x, subset.labels, shared["test_x"], test.labels, cfg.knn_k, cfg.knn_temperature
        )
        yield "knn", knn
    mapping = None
    if "clusters" in shared:
        k = cfg.clustering.clusters
        mapping = match_clusters(shared["train_p"][idx], subset.labels, k, train.num_classes)
    if "cluster" in methods:
        yield "cluster", named_accuracy(mapping, shared["test_c"], test.labels)
    ft_cfg = replace(cfg.finetune, seed=seed)
    arm_settings = {"finetune": ft_cfg, "scratch": scratch_finetune(ft_cfg)}
    for arm, start in arms.items():
        if arm in methods:
            ft = arm_settings[arm]
            result = finetune(start(), subset, test, ft, device, quiet, arm, stats=cfg.stats)
            yield arm, result["test_accuracy"]
    semi_arms = {"semi": arms["finetune"], "scratch-semi": arms["scratch"]}
    for arm, start in semi_arms.items():
        if arm not in methods:
            continue
        if arm == "semi" and semi_from_clusters(cfg, train.num_classes, len(idx)):
            model = cluster_start(shared["clusters"], mapping, train.num_classes)
        else:
            model = Classifier(start(), train.num_classes, seed=seed)
        semi = replace(cfg.semi, seed=seed)
        out = semi_train(model, train.images, subset, semi, device, quiet, cfg.stats)
        yield arm, accuracy(out["model"], test, shared["aug"], device)


def summary_row(
    count: int, method: str, values: list[float], seconds: list[float], once: float | None = None
) -> dict:
    row = {
        "labels": count,
        "method": method,
        "mean": statistics.fmean(values),
        "std": statistics.stdev(values) if len(values) > 1 else 0.0,
        "seeds": len(values),
        "values": values,  # per label-sampling seed, in seed order
        "seconds": seconds,  # each seed's training time
    }
    if once is not None:  # work done once for the whole study (the clusters), not per seed
        row["shared_seconds"] = once
    return row


def quiet(*_args) -> None:
    """The log of the study's inner trainings (the study logs one line per seed)."""


def paired_gain(pretrained: list[float], scratch: list[float], confidence: float = 0.95) -> dict:
    """How much a pretrained method beats scratch, paired by seed (each seed's two arms saw the
    same labelled images, so the label draw's luck cancels): the mean difference and its
    Student-t interval. With 3 seeds the interval is wide; that is the point of showing it."""
    if len(pretrained) != len(scratch) or not pretrained:
        raise ValueError("paired_gain needs the same non-zero number of values on both sides")
    differences = [a - b for a, b in zip(pretrained, scratch, strict=True)]
    mean = statistics.fmean(differences)
    if len(differences) < 2:
        return {"mean": mean, "low": None, "high": None, "seeds": 1}
    half = student_t.ppf(0.5 + confidence / 2, len(differences) - 1) * statistics.stdev(differences)
    half /= len(differences) ** 0.5
    return {"mean": mean, "low": mean - half, "high": mean + half, "seeds": len(differences)}


def gain_table(rows: list[dict]) -> list[str]:
    """Markdown lines: each pretrained method's paired gain over its control (scratch, or
    scratch-semi for semi), in points."""
    lookup = {(r["labels"], r["method"]): r for r in rows if "values" in r}
    methods = [
        m
        for m in COLUMNS
        if m not in BASELINES
        and any(k[1] == m for k in lookup)
        and any(k[1] == CONTROL.get(m, "scratch") for k in lookup)
    ]
    counts = sorted({count for count, _ in lookup})
    if not methods or not counts:
        return []
    lines = [
        "| labels | " + " | ".join(f"{m} − {CONTROL.get(m, 'scratch')}" for m in methods) + " |",
        "|---:|" + "---:|" * len(methods),
    ]
    for count in counts:
        cells = []
        for method in methods:
            row = lookup.get((count, method))
            control = lookup.get((count, CONTROL.get(method, "scratch")))
            if row is None or control is None:
                cells.append("")
                continue
            gain = paired_gain(row["values"], control["values"])
            cell = f"{100 * gain['mean']:+.2f}"
            if gain["low"] is not None:
                cell += f" [{100 * gain['low']:+.2f}, {100 * gain['high']:+.2f}]"
            cells.append(cell)
        lines.append(f"| {count} | " + " | ".join(cells) + " |")
    return lines


def seconds_table(rows: list[dict], columns: list[str]) -> list[str]:
    """Markdown lines: each method's mean training seconds per seed, and the work it shares
    across the whole study (the clusters), where rows record them."""
    timed_rows = {(r["labels"], r["method"]): r for r in rows if r.get("seconds")}
    if not timed_rows:
        return []
    lines = ["", "Seconds per seed (mean):", ""]
    lines += ["| labels | " + " | ".join(columns) + " |", "|---:|" + "---:|" * len(columns)]
    for count in sorted({count for count, _ in timed_rows}):
        cells = [
            f"{statistics.fmean(timed_rows[count, m]['seconds']):.1f}"
            if (count, m) in timed_rows
            else ""
            for m in columns
        ]
        lines.append(f"| {count} | " + " | ".join(cells) + " |")
    shared = {r["method"]: r["shared_seconds"] for r in rows if "shared_seconds" in r}
    if shared:
        users = ", ".join(shared)
        took = next(iter(shared.values()))  # the one clustering every user shares
        lines += ["", f"Done once for the whole study: the clusters, {took:.1f} s ({users})."]
    return lines


def finetune_protocol(cfg: FinetuneConfig) -> str:
    """One sentence on how both arms fine-tune, for the table's footnote."""
    steps = f"{cfg.epochs} epochs"
    if cfg.min_steps:
        steps += f" or {cfg.min_steps} steps, whichever is more"
    views = f"`{cfg.augment}` views"
    if cfg.few_augment is not None and cfg.few_augment != cfg.augment:
        views = f"`{cfg.few_augment}` views under {cfg.few_below} labels"
        views += f", `{cfg.augment}` from {cfg.few_below} up"
    text = f"Fine-tuning: {steps}, Adam {cfg.lr:g}, {views}, for both arms"
    if cfg.anchor:
        text += (
            f"; the pretrained encoder is pulled back toward its pretrained weights after each "
            f"step by min(0.1, ({cfg.anchor:g} / labels)^2), the scratch one is not"
        )
    return text + "."


def study_markdown(rows: list[dict], protocol: str = "") -> str:
    counts = sorted({r["labels"] for r in rows})
    lookup = {(r["labels"], r["method"]): r for r in rows}
    present = {r["method"] for r in rows}
    columns = [m for m in COLUMNS if m in METHODS or m in present]
    lines = ["| labels | " + " | ".join(columns) + " |", "|---:|" + "---:|" * len(columns)]
    for count in counts:
        cells = []
        for method in columns:
            row = lookup.get((count, method))
            cells.append("" if row is None else f"{100 * row['mean']:.2f} ± {100 * row['std']:.2f}")
        lines.append(f"| {count} | " + " | ".join(cells) + " |")
    seeds = rows[0]["seeds"] if rows else 0
    over = "one label-sampling seed (no spread)" if seeds == 1 else f"{seeds} label-sampling seeds"
    lines.append("")
    lines.append(
        f"Test accuracy (%), mean ± std over {over}; "
        "scratch = same architecture from random weights, same steps and augmentation."
    )
    if present & set(SEMI):
        lines.append(
            "semi = semi-supervised fine-tuning on all training images (FixMatch: a teacher's "
            "confident answers on one view are the targets of another view; the labels stay "
            "those of the subset), from the pretrained encoder (from its named clusters under "
            "two labels per class); scratch-semi is the same from random weights, the control "
            "that shows what the unlabelled images give without pretraining."
        )
    if "cluster" in present:
        lines.append(
            "cluster = clusters found once without labels (SCAN on the pretrained encoder), each "
            "named after a class by one-to-one matching on the labelled images' cluster "
            "probabilities."
        )
    if protocol:
        lines.append(protocol)
    lines += seconds_table(rows, columns)
    gains = gain_table(rows)
    if gains and seeds == 1:
        lines += [
            "",
            "Gain over scratch (points), one seed: no interval (use 2 or more seeds).",
            "",
        ]
        lines += gains
    elif gains:
        lines += ["", "Gain over scratch (points), paired by seed, with its 95% interval:", ""]
        lines += gains
        lines += [
            "",
            "An interval that contains 0 means these seeds cannot tell the two arms apart.",
        ]
    return "\n".join(lines) + "\n"


def few_label_comparison(
    encoder: torch.nn.Module,
    scratch: torch.nn.Module,
    train: ImageSet,
    test: ImageSet,
    labels: int,
    seeds: int,
    cfg: FinetuneConfig,
    device: torch.device,
    log=print,
    stats: InputStats | None = None,
) -> dict:
    """Fine-tuning from the pretrained encoder against the same architecture from scratch
    (`scratch` is copied, never trained in place), as `metrics.json` records it."""
    study = StudyConfig(
        labels=(labels,),
        seeds=seeds,
        finetune=cfg,
        methods=("finetune", "scratch"),
        stats=stats,
    )
    rows = {
        r["method"]: r
        for r in run_study(encoder, lambda _: scratch, train, test, study, device, log)
    }
    gain = paired_gain(rows["finetune"]["values"], rows["scratch"]["values"])
    return {
        "labels": min(labels, len(train)),  # a smaller data set: all of its labels
        "seeds": seeds,
        "pretrained": rows["finetune"]["mean"],
        "pretrained_std": rows["finetune"]["std"],
        "scratch": rows["scratch"]["mean"],
        "scratch_std": rows["scratch"]["std"],
        "gain": gain["mean"],  # paired by seed; low / high: its 95% Student-t interval
        "gain_low": gain["low"],
        "gain_high": gain["high"],
    }
