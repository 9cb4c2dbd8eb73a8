"""Classification on top of an encoder: fine-tuning (all weights train) and the linear probe
(frozen encoder, a linear layer on its features). Accuracies are fractions; the reported test
accuracy is always the last epoch's, never the best epoch chosen on the test set."""

from __future__ import annotations

import copy
import time
from dataclasses import asdict
from pathlib import Path

import torch
import torch.nn.functional as F

from pretext.allocator import phase
from pretext.augment import Augmentation, make_view, preset, to_input
from pretext.checkpoint import (
    check_same_training,
    load_checkpoint,
    load_state_checked,
    save_checkpoint,
)
from pretext.config import FinetuneConfig, LinearProbeConfig
from pretext.data import ImageSet
from pretext.data.stats import InputStats
from pretext.errors import PretextError
from pretext.loop import cosine_factor, descend, run_epochs, scheduled_lr, set_lr, steps_per_epoch
from pretext.models import Classifier, seeded_linear


@torch.inference_mode()
def extract_features(
    encoder: torch.nn.Module,
    images: torch.Tensor,
    aug: Augmentation,
    device: torch.device,
    batch_size: int = 1024,
) -> torch.Tensor:
    """Embeddings of uint8 images in large no-grad batches (eval mode); larger batches were no
    faster on CPU and raised the peak memory."""
    was_training = encoder.training
    encoder.eval()
    parts = [
        encoder(to_input(images[i : i + batch_size].to(device), aug)).float()
        for i in range(0, len(images), batch_size)
    ]
    encoder.train(was_training)
    return torch.cat(parts)


@torch.inference_mode()
def accuracy(
    model: torch.nn.Module, data: ImageSet, aug: Augmentation, device: torch.device
) -> float:
    return (predict(model, data, aug, device) == data.labels).float().mean().item()


@torch.inference_mode()
def predict(
    model: torch.nn.Module, data: ImageSet, aug: Augmentation, device: torch.device
) -> torch.Tensor:
    """The class `model` gives each image of `data` (on the CPU)."""
    return extract_features(model, data.images, aug, device).argmax(1).cpu()


def most_confused(predicted: torch.Tensor, labels: torch.Tensor, top: int = 5) -> list[dict]:
    """The `top` most frequent mistakes, most frequent first: {"true", "predicted", "count"}
    for each (true class, predicted class) pair with at least one image."""
    wrong = predicted != labels
    pairs, counts = torch.unique(
        torch.stack([labels[wrong], predicted[wrong]], 1), dim=0, return_counts=True
    )
    order = sorted(range(len(counts)), key=lambda i: (-int(counts[i]), pairs[i].tolist()))
    return [
        {"true": int(pairs[i, 0]), "predicted": int(pairs[i, 1]), "count": int(counts[i])}
        for i in order[:top]
    ]


def anchor_pull(anchor: float, labelled: int) -> float:
    """The per-step pull toward the starting weights, (anchor / n)^2 and at most 0.1 (see
    FinetuneConfig.anchor)."""
    return min(0.1, (anchor / labelled) ** 2)


def finetune_views(cfg: FinetuneConfig, labelled: int) -> str:
    """The augmentation preset fine-tuning uses for a set of `labelled` images."""
    if cfg.few_augment is not None and labelled < cfg.few_below:
        return cfg.few_augment
    return cfg.augment


@torch.no_grad()
def pull_toward(params: list[torch.Tensor], anchors: list[torch.Tensor], fraction: float) -> None:
    """w <- w + fraction (w0 - w) for each weight: the decoupled form of an L2 penalty toward
    the starting weights (L2-SP, Li et al. 2018), independent of Adam's per-weight scaling."""
    torch._foreach_lerp_(params, anchors, fraction)


@phase
def finetune(
    encoder: torch.nn.Module,
    train: ImageSet,
    test: ImageSet,
    cfg: FinetuneConfig,
    device: torch.device,
    log=print,
    label: str = "finetune",
    checkpoint: Path | None = None,
    resume: bool = False,
    data: dict | None = None,
    stats: InputStats | None = None,
) -> dict:
    """Train a copy of the encoder + Linear(embed, classes), drawn from `cfg.seed`, end to end;
    train accuracy per epoch, then test. With `min_steps`, small label sets get more epochs, so
    every arm of a comparison takes the same steps. With `checkpoint`, the state is saved every
    epoch and `resume` continues it exactly; `data` (what defines the labelled images) is saved
    with it and must match on resume. `stats`: the run's input normalisation (None: MNIST's)."""
    model = Classifier(copy.deepcopy(encoder), train.num_classes, seed=cfg.seed).to(device)
    aug = preset(finetune_views(cfg, len(train)), stats)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    per_epoch = steps_per_epoch(len(train), cfg.batch_size)
    epochs = finetune_epochs(cfg, per_epoch, label, log)
    total = epochs * per_epoch
    generator = torch.Generator(device).manual_seed(cfg.seed)
    # built before a resume loads its weights: the pull is toward the starting encoder's
    step, correct = finetune_step(model, optimizer, train, aug, cfg, total, generator, device)
    started, train_accuracy, seconds_before = time.perf_counter(), [], 0.0
    # what a resumed fine-tune must share
    settings = {**asdict(cfg), "labelled": len(train), **({"data": data} if data else {})}
    if resume and checkpoint is not None and checkpoint.is_file():
        state = resumed_state(checkpoint, settings, epochs, model, optimizer, generator, device)
        train_accuracy, seconds_before = state["train_accuracy"], state["seconds"]
        log(f"resuming {label} after epoch {len(train_accuracy)}")

    def end_epoch(epoch: int) -> None:
        train_accuracy.append(correct.item() / len(train))
        correct.zero_()
        if epochs <= 20 or epoch == epochs - 1:
            shown = f"train accuracy {100 * train_accuracy[-1]:.2f}%"
            log(f"{label} epoch {epoch + 1}/{epochs}  {shown}")
        if checkpoint is not None:
            seconds = seconds_before + time.perf_counter() - started
            state = {"generator": generator.get_state(), "train_accuracy": train_accuracy}
            save_checkpoint(checkpoint, finetune_state(model, optimizer, settings, seconds, state))

    model.train()
    schedule = (len(train), cfg.batch_size, epochs, cfg.seed, device, label)
    run_epochs(step, *schedule, first_epoch=len(train_accuracy), end_epoch=end_epoch)
    return {
        "train_accuracy": train_accuracy,
        "test_accuracy": accuracy(model, test, aug, device),
        "epochs": epochs,
        "steps": total,
        "seconds": round(seconds_before + time.perf_counter() - started, 3),
        "model": model,
    }


def finetune_step(model, optimizer, train: ImageSet, aug, cfg: FinetuneConfig, total, gen, device):
    """The fine-tuning step `step(idx, n)` on the labelled images `idx`, step `n` of `total`:
    cosine decay, cross-entropy on a view, the pull toward the encoder as it is now. Returns it
    with the count of right answers it adds to (for the epoch's train accuracy)."""
    encoder_params = list(model.encoder.parameters())
    anchors = [p.detach().clone() for p in encoder_params] if cfg.anchor else []
    pull = anchor_pull(cfg.anchor, len(train))
    images, labels = train.images.to(device), train.labels.to(device)
    correct = torch.zeros((), device=device, dtype=torch.int64)

    def step(idx: torch.Tensor, n: int) -> None:
        decay = cosine_factor(n, total) if cfg.schedule == "cosine" else 1.0
        set_lr(optimizer, cfg.lr * decay)
        logits = model(make_view(images.index_select(0, idx), aug, gen))
        descend(optimizer, F.cross_entropy(logits, labels[idx]))
        if anchors:
            pull_toward(encoder_params, anchors, pull * decay)
        correct.add_((logits.argmax(1) == labels[idx]).sum())

    return step, correct


def finetune_epochs(cfg: FinetuneConfig, per_epoch: int, label: str, log) -> int:
    """`cfg.epochs`, or more where a small label set needs them to reach `cfg.min_steps` (said
    in one line before training)."""
    epochs = max(cfg.epochs, -(-cfg.min_steps // per_epoch))
    if epochs > cfg.epochs:
        log(f"{label}: {epochs} epochs, not {cfg.epochs}, for at least {cfg.min_steps} steps")
    return epochs


def resumed_state(
    checkpoint: Path, settings: dict, epochs: int, model, optimizer, generator, device
) -> dict:
    """A fine-tuning checkpoint taken back into `model`, `optimizer` and `generator`, after
    checking it was trained with the same `settings` and has not done more than `epochs`."""
    state = load_checkpoint(checkpoint, device)
    if len(state["train_accuracy"]) > epochs:
        raise PretextError(
            f"--resume: this fine-tune has done {len(state['train_accuracy'])} epochs, more "
            f"than the {epochs} asked"
        )
    check_same_training(
        state.get("settings", {}), settings, frozenset({"epochs"}), anew="without --resume"
    )
    load_state_checked(model, state["classifier"], "classifier")
    optimizer.load_state_dict(state["optimizer"])
    generator.set_state(state["generator"])
    return state


def finetune_state(model, optimizer, settings: dict, seconds: float, extra: dict) -> dict:
    """A fine-tuning checkpoint: weights, optimizer, the settings a resume must share."""
    return {
        "encoder": model.encoder.state_dict(),
        "classifier": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "seconds": seconds,
        "settings": settings,
        **extra,
    }


def linear_probe(
    train_x: torch.Tensor,
    train_y: torch.Tensor,
    test_x: torch.Tensor,
    test_y: torch.Tensor,
    cfg: LinearProbeConfig,
    seed: int = 0,
) -> dict:
    """A linear classifier on frozen features (standardised with training statistics)."""
    started = time.perf_counter()
    device = train_x.device
    train_y, test_y = train_y.to(device), test_y.to(device)
    num_classes = int(train_y.max()) + 1
    mean, std = train_x.mean(0), train_x.std(0) + 1e-6
    train_x, test_x = (train_x - mean) / std, (test_x - mean) / std
    linear = seeded_linear(train_x.shape[1], num_classes, seed).to(device)
    optimizer = torch.optim.Adam(linear.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    total = cfg.epochs * steps_per_epoch(len(train_x), cfg.batch_size)

    def step(idx: torch.Tensor, n: int) -> None:
        set_lr(optimizer, scheduled_lr(cfg.lr, n, total))
        descend(optimizer, F.cross_entropy(linear(train_x[idx]), train_y[idx]))

    run_epochs(step, len(train_x), cfg.batch_size, cfg.epochs, seed, device)
    with torch.inference_mode():
        train_acc = (linear(train_x).argmax(1) == train_y).float().mean().item()
        test_acc = (linear(test_x).argmax(1) == test_y).float().mean().item()
    return {
        "train_accuracy": train_acc,
        "test_accuracy": test_acc,
        "seconds": round(time.perf_counter() - started, 3),
    }
