"""Typed, frozen configurations and the named recipes that fill them.

A recipe is a set of defaults; any option given explicitly overrides it. `config.json` in a run
directory is `asdict` of these, so a run can be read back and repeated.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import get_args, get_type_hints

import torch

from pretext.data.stats import MNIST_STATS, InputStats
from pretext.errors import PretextError


@dataclass(frozen=True)
class PretrainConfig:
    dataset: str = "mnist"
    data_dir: str | None = None
    out: str = "runs/mnist"
    recipe: str = "default"
    method: str = "simclr"
    encoder: str = "cnn"
    augment: str = "default"
    epochs: int = 40
    batch_size: int = 256
    optimizer: str = "adam"  # adam | sgd | lars
    lr: float = 2e-3
    weight_decay: float = 1e-5
    warmup_epochs: float = 1.0
    schedule: str = "cosine"  # cosine | constant
    # The method's own options: None takes the method's default (pretext.methods declares
    # them); one the method does not take is refused. projection_dim 0: SimCLR without a head.
    temperature: float | None = None
    projection_hidden: int | None = None
    projection_dim: int | None = None
    seed: int = 0
    limit_train: int | None = None
    image_size: int | None = None  # resize every image to this square size (None: as stored)
    # Per-channel input normalisation of [0, 1] pixels; None: the data's (pretext.data.stats),
    # settled when pretraining starts and recorded in config.json for every later command.
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    device: str = "auto"
    threads: int | None = None
    bf16: bool = False  # bfloat16 autocast for the forward pass (for GPUs that have it)
    checkpoint_every: int = 0  # also checkpoint every N steps (0: at epoch ends only)
    log_every: int = 50  # steps between progress-bar updates (one host sync each)
    sync_batchnorm: bool = False  # with several processes: batch statistics over all ranks
    knn_monitor: int = 6000  # labelled images for the per-epoch kNN monitor (0: off)
    resume: bool = False
    overwrite: bool = False
    skip_bad_files: bool = True


@dataclass(frozen=True)
class FinetuneConfig:
    """Fine-tuning settings; the defaults are the default recipe's (chosen on a validation
    split carved from the training set)."""

    epochs: int = 10
    batch_size: int = 128
    lr: float = 3e-3
    weight_decay: float = 0.0
    schedule: str = "cosine"
    augment: str = "light"
    # Few-label runs get at least this many steps (the same for every arm); 0: `epochs` only.
    min_steps: int = 1500
    # Label sets smaller than `few_below` train with the `few_augment` views instead (None: the
    # pretraining run's own views): strong views lift a few-label classifier, from scratch most
    # of all, but cost accuracy where labels are many and the steps few.
    few_augment: str | None = None
    few_below: int = 1000
    # Every step the encoder's weights move min(0.1, (anchor / labelled images)^2) of the way
    # back to the weights they started from (x the lr schedule's factor): L2-SP, decoupled
    # from Adam. It keeps what pretraining learned where a handful of labels would pull it
    # away, and vanishes as labels grow. Baselines from random weights never use it (see
    # `scratch_finetune`).
    anchor: float = 30.0
    seed: int = 0


def told_epochs(changes: dict) -> dict:
    """Fine-tuning changes as asked: epochs given without a minimum of steps are the epochs
    trained (the recipe's minimum adds steps only when not told otherwise)."""
    if changes.get("epochs") is not None and changes.get("min_steps") is None:
        return {**changes, "min_steps": 0}
    return changes


def with_run_views(cfg: FinetuneConfig, pretrain_augment: str | None) -> FinetuneConfig:
    """`cfg` with its few-label views settled: the pretraining run's own unless asked."""
    if cfg.few_augment is not None:
        return cfg
    return replace(cfg, few_augment=pretrain_augment or "default")


@dataclass(frozen=True)
class SemiConfig:
    """Semi-supervised fine-tuning (FixMatch, Sohn et al. 2020): the classifier learns from the
    labelled images and from every training image, labelled or not. A quickly moving average of
    the classifier (the teacher) labels a `weak` view of each image; where it is at least
    `threshold` sure, that label is the target of a `strong` view of the same image. With
    fewer than `clusters_below` labels per class the pretrained arm starts from the clusters
    found without labels, which give the teacher good answers from the first step; with more,
    from the encoder and a new head, which the labels then teach better than the clusters'
    own mistakes would.
    Defaults chosen on MNIST's validation split (BENCHMARKS.md)."""

    epochs: int = 45  # passes over all training images
    # Passes with fewer than `clusters_below` labels per class, where the clusters cost time
    # first and the teacher answers well from the start: the two together cost about 45 passes.
    few_epochs: int = 30
    lr: float = 3e-3  # Adam, cosine decay to 0
    weight_decay: float = 0.0  # decoupled (AdamW), per unit of learning rate
    threshold: float = 0.8  # 0.8 beat 0.95 on validation
    batch_size: int = 256  # unlabelled images per step
    labelled_batch: int = 64  # labelled images per step, drawn at random
    weak: str = "light"  # the teacher's views
    teacher_views: int = 1  # weak views per image whose probabilities the teacher averages
    # The student's views of the same images: the fine-tuning's mild ones with a random pen
    # stroke across half of them, so that a style no label shows (a bar across a seven's
    # stem, a foot under a one) keeps its class. The pretraining's digit views (`default`)
    # cost the small classifier accuracy even when taught true labels.
    strong: str = "light-stroke"
    teacher_decay: float = 0.95  # per step: the teacher's weights move 5% toward the student's
    clusters_below: int = 2  # labels per class under which the pretrained arm starts from clusters
    # Distribution alignment (ReMixMatch): the teacher's answers scaled so that their running
    # mean matches the labelled images' class shares, before the threshold.
    align: bool = False
    seed: int = 0


def told_passes(passes: int | None, seed: int = 0) -> SemiConfig:
    """Semi-supervised settings with `passes` at every label count, as a user asked; None:
    the defaults, which depend on the label count (`semi_passes`)."""
    if passes is None:
        return SemiConfig(seed=seed)
    return SemiConfig(epochs=passes, few_epochs=passes, seed=seed)


def semi_passes(cfg: SemiConfig, labelled: int, num_classes: int) -> int:
    """Passes over all training images for `labelled` images of `num_classes` classes:
    `cfg.few_epochs` below `cfg.clusters_below` labels per class, `cfg.epochs` from there up.
    Every arm of one label count trains the same passes."""
    return cfg.few_epochs if labelled < cfg.clusters_below * num_classes else cfg.epochs


def starts_from_clusters(cfg: SemiConfig, labelled: int, num_classes: int) -> bool:
    """Whether the pretrained arm of `labelled` images of `num_classes` classes starts from the
    named clusters (fewer than `cfg.clusters_below` labels per class) or from a new head."""
    return labelled < cfg.clusters_below * num_classes


def scratch_finetune(cfg: FinetuneConfig) -> FinetuneConfig:
    """The fine-tuning of the from-scratch baseline: the same steps, augmentation and learning
    rate, without the pull toward the starting weights, which for random weights is only a
    handicap (measured on validation)."""
    return replace(cfg, anchor=0.0)


@dataclass(frozen=True)
class ClusterConfig:
    """Grouping unlabelled images with a pretrained encoder (SCAN, Van Gansbeke et al. 2020):
    each image and one of its nearest neighbours in the embedding must fall into the same
    cluster, while all clusters stay in use. Defaults chosen on MNIST's validation split."""

    clusters: int = 10
    neighbours: int = 20  # nearest neighbours mined per image in the pretrained embedding
    epochs: int = 10
    batch_size: int = 256
    lr: float = 1e-3
    entropy_weight: float = 2.0  # weight of the entropy of the mean assignment (keeps all used)
    augment: str | None = None  # views; None: the pretraining run's own preset
    seed: int = 0


@dataclass(frozen=True)
class LinearProbeConfig:
    # Chosen on a validation split (the last 10,000 training images), never on the test set.
    epochs: int = 100
    batch_size: int = 1024
    lr: float = 1e-2
    weight_decay: float = 1e-5


@dataclass(frozen=True)
class RunConfig:
    """Everything `pretext run` does: pretrain, fine-tune, linear probe, few-label check."""

    pretrain: PretrainConfig = field(default_factory=PretrainConfig)
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
    linear: LinearProbeConfig = field(default_factory=LinearProbeConfig)
    few_labels: int = 600
    few_label_seeds: int = 3
    # `pretext run --semi`: semi-supervised fine-tuning at `few_labels` (None: not run)
    semi: SemiConfig | None = None
    knn_k: int = 200
    knn_temperature: float = 0.1


RECIPES: dict[str, RunConfig] = {
    # The write-up's hyper-parameters: batch 32, t 0.5, Adam 1e-4, 10 + 10 epochs, no head,
    # 0-255 inputs, one untouched view paired with a cut-out-and-rotated one.
    "seed": RunConfig(
        pretrain=PretrainConfig(
            recipe="seed",
            augment="seed",
            epochs=10,
            batch_size=32,
            lr=1e-4,
            weight_decay=0.0,
            warmup_epochs=0.0,
            schedule="constant",
            temperature=0.5,
            projection_dim=0,  # SimCLR's loss on the encoder's output
        ),
        finetune=FinetuneConfig(
            epochs=10,
            batch_size=32,
            lr=1e-4,
            schedule="constant",
            augment="seed-none",
            min_steps=0,
            few_augment="seed-none",
            anchor=0.0,
        ),
        linear=LinearProbeConfig(),
    ),
    # Chosen on a validation split carved from the training set (BENCHMARKS.md).
    "default": RunConfig(),
}


def input_stats(cfg: PretrainConfig) -> InputStats:
    """What a run's views are normalised by: its recorded mean and std (runs that predate the
    record were normalised by MNIST's)."""
    if cfg.mean is None or cfg.std is None:
        return MNIST_STATS
    return InputStats(tuple(cfg.mean), tuple(cfg.std))


def recipe(name: str) -> RunConfig:
    if name not in RECIPES:
        raise PretextError(f"unknown recipe {name!r}: use one of {', '.join(RECIPES)}")
    return RECIPES[name]


def override(config, **changes):
    """`replace` that ignores None values (options the user did not give)."""
    known = {f.name for f in fields(config)}
    given = {k: v for k, v in changes.items() if v is not None and k in known}
    return replace(config, **given)


def validate(cfg: PretrainConfig) -> None:
    """The pretraining options a user can get wrong, each refused in one line."""
    if cfg.recipe == "seed" and cfg.method != "simclr":
        raise PretextError(
            f"--recipe seed is the write-up's SimCLR; --method {cfg.method} needs --recipe default"
        )
    if cfg.temperature is not None and cfg.temperature <= 0:
        raise PretextError(f"--temperature must be > 0, got {cfg.temperature}")
    if cfg.batch_size < 2:
        raise PretextError(
            f"--batch-size must be >= 2 for contrastive learning, got {cfg.batch_size}"
        )
    if cfg.epochs < 1:
        raise PretextError(f"--epochs must be >= 1, got {cfg.epochs}")
    if cfg.lr <= 0:
        raise PretextError(f"--lr must be > 0, got {cfg.lr}")
    if cfg.optimizer not in ("adam", "sgd", "lars"):
        raise PretextError(f"--optimizer must be adam, sgd or lars, got {cfg.optimizer!r}")
    if cfg.schedule not in ("cosine", "constant"):
        raise PretextError(f"--schedule must be cosine or constant, got {cfg.schedule!r}")
    if cfg.threads is not None and cfg.threads < 0:
        raise PretextError(f"--threads must be >= 1, got {cfg.threads}")
    if cfg.image_size is not None and cfg.image_size < 8:
        raise PretextError(f"--image-size must be at least 8, got {cfg.image_size}")
    if cfg.limit_train is not None and cfg.limit_train < 1:
        raise PretextError(f"--limit-train must be >= 1, got {cfg.limit_train}")
    for name in ("projection_hidden", "projection_dim", "checkpoint_every", "knn_monitor"):
        if (getattr(cfg, name) or 0) < 0:
            raise PretextError(f"--{name.replace('_', '-')} must be >= 0, got {getattr(cfg, name)}")
    if not cfg.encoder or not cfg.dataset:
        raise PretextError("--encoder and --dataset must not be empty")
    if (cfg.mean is None) != (cfg.std is None):
        raise PretextError("mean and std are given together (one value per channel each)")
    if cfg.mean is not None:
        InputStats(tuple(cfg.mean), tuple(cfg.std))  # one line if they do not fit


def check_finetune(cfg: FinetuneConfig, prefix: str = "") -> None:
    """Fine-tuning options a user can get wrong; `prefix` is "finetune-" for the options of
    `pretext run`, which names them so."""
    if cfg.epochs < 1:
        raise PretextError(f"--{prefix}epochs must be >= 1, got {cfg.epochs}")
    if cfg.lr <= 0:
        raise PretextError(f"--{prefix}lr must be > 0, got {cfg.lr}")
    if cfg.batch_size < 1:
        raise PretextError(f"--{prefix}batch-size must be >= 1, got {cfg.batch_size}")
    if cfg.min_steps < 0:
        raise PretextError(f"--min-steps must be >= 0, got {cfg.min_steps}")


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise PretextError("--device cuda was asked for but no CUDA device is available")
    if name not in ("cpu", "cuda") and not name.startswith("cuda:"):
        raise PretextError(f"--device must be auto, cpu or cuda, got {name!r}")
    return torch.device(name)


# A settings file describes a run to make; where it goes and whether it resumes are this run's.
NOT_FROM_A_FILE = ("out", "resume", "overwrite")


def pretrain_config_from_file(path: str | Path) -> PretrainConfig:
    """The pretraining settings in a JSON file: a run's config.json or a recipe (its "pretrain"
    object, beside a recipe's "about"), or a file of settings alone, checked for unknown names
    and wrong types. Its `out`, `resume` and
    `overwrite` are not taken: the file says what to train, the command where."""
    try:
        data = json.loads(Path(path).read_text())
    except OSError as exc:
        raise PretextError(f"--config {path}: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise PretextError(f"--config {path} is not JSON ({exc})") from None
    if isinstance(data, dict) and isinstance(data.get("pretrain"), dict):
        extra = sorted(set(data) - {"pretrain", "about"})  # "about": a recipe's description
        if extra:
            raise PretextError(f"--config {path}: unknown sections {', '.join(extra)}")
        data = data["pretrain"]
    settings = checked_settings(data, f"--config {path}", unknown_ok=False)
    return replace(
        PretrainConfig(), **{k: v for k, v in settings.items() if k not in NOT_FROM_A_FILE}
    )


PER_CHANNEL = ("mean", "std")  # lists of numbers in JSON, a tuple in the config


def per_channel(value, where: str) -> tuple[float, ...]:
    """A JSON list of numbers as one float per channel."""
    numbers = isinstance(value, list | tuple) and value
    if not numbers or any(isinstance(v, bool) or not isinstance(v, int | float) for v in value):
        raise PretextError(f"{where} must be a list of numbers (one per channel), got {value!r}")
    return tuple(float(v) for v in value)


def checked_settings(data, where: str, unknown_ok: bool) -> dict:
    """`data` as PretrainConfig fields, each of the field's type (one line naming the first
    that is not); names it does not know are refused, or skipped with `unknown_ok` (a run
    directory of another version)."""
    if not isinstance(data, dict):
        raise PretextError(f"{where}: expected a JSON object of settings")
    types = get_type_hints(PretrainConfig)
    unknown = sorted(set(data) - set(types))
    if unknown and not unknown_ok:
        raise PretextError(f"{where}: unknown settings {', '.join(unknown)}")
    known = {name: value for name, value in data.items() if name in types}
    for name, value in known.items():
        if name in PER_CHANNEL and value is not None:
            known[name] = per_channel(value, f"{where}: {name}")
            continue
        allowed = get_args(types[name]) or (types[name],)
        if float in allowed:
            allowed = (*allowed, int)  # 1 for 1.0
        if isinstance(value, bool) and bool not in allowed or not isinstance(value, allowed):
            wanted = " or ".join("null" if t is type(None) else t.__name__ for t in allowed)
            raise PretextError(f"{where}: {name} must be {wanted}, got {value!r}")
    return known
