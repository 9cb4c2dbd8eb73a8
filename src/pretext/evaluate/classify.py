"""Classification on top of an encoder: fine-tuning (all weights train) and the linear probe
(frozen encoder, a linear layer on its features). Accuracies are fractions; the reported test
accuracy is always the last epoch's, never the best epoch chosen on the test set."""

from __future__ import annotations

import copy
import math
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
from pretext.data import ImageSet, epoch_order
from pretext.models import Classifier, seeded_linear
from pretext.progress import step_bar


@torch.inference_mode()
def extract_features(
    encoder: torch.nn.Module,
    images: torch.Tensor,
    aug: Augmentation,
    device: torch.device,
    batch_size: int = 1024,
) -> torch.Tensor:
    """Embeddings of uint8 images in large no-grad batches (eval mode). On 2 CPU cores, 60,000
    MNIST images through the cnn took 0.55 s in batches of 1,024 against 0.59-0.68 s in batches
    of 4,096, and `pretext run` peaked 223 MiB lower (see BENCHMARKS.md)."""
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
    logits = extract_features(model, data.images, aug, device)
    return (logits.argmax(1).cpu() == data.labels).float().mean().item()


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
) -> dict:
    """Train encoder + Linear(embed, classes) end to end; train accuracy per epoch, then test.

    The encoder is copied, so the caller's stays as it was; the new linear layer is drawn from
    `cfg.seed`, so one seed gives one result whatever ran before. With `min_steps`, small label sets
    get more epochs so that every arm of a comparison takes the same number of steps. With
    `checkpoint`, the state is saved after every epoch and `resume` continues from it exactly.
    """
    model = Classifier(copy.deepcopy(encoder), train.num_classes, seed=cfg.seed).to(device)
    encoder_params = list(model.encoder.parameters())
    anchors = [p.detach().clone() for p in encoder_params] if cfg.anchor else []
    pull = anchor_pull(cfg.anchor, len(train))
    aug = preset(finetune_views(cfg, len(train)))
    optimizer = torch.optim.Adam(
        [
            {"params": encoder_params},
            {"params": model.linear.parameters()},
        ],
        lr=cfg.lr,
        weight_decay=cfg.weight_decay,
    )
    steps_per_epoch = math.ceil(len(train) / cfg.batch_size)
    epochs = max(cfg.epochs, math.ceil(cfg.min_steps / steps_per_epoch))
    total = epochs * steps_per_epoch
    generator = torch.Generator(device).manual_seed(cfg.seed)
    images, labels = train.images.to(device), train.labels.to(device)
    started, step, train_accuracy, seconds_before = time.perf_counter(), 0, [], 0.0
    settings = {**asdict(cfg), "labelled": len(train)}  # what a resumed fine-tune must share
    if resume and checkpoint is not None and checkpoint.is_file():
        state = load_checkpoint(checkpoint, device)
        check_same_training(state.get("settings", {}), settings, frozenset({"epochs"}))
        load_state_checked(model, state["classifier"], "classifier")
        optimizer.load_state_dict(state["optimizer"])
        generator.set_state(state["generator"])
        train_accuracy, seconds_before = state["train_accuracy"], state["seconds"]
        step = len(train_accuracy) * steps_per_epoch
        log(f"resuming {label} after epoch {len(train_accuracy)}")
    model.train()
    for epoch in range(len(train_accuracy), epochs):
        order = epoch_order(len(train), cfg.seed, epoch).to(device)
        correct = torch.zeros((), device=device, dtype=torch.int64)
        bar = step_bar(range(steps_per_epoch), f"{label} {epoch + 1}/{epochs}")
        for i in bar:
            idx = order[i * cfg.batch_size : (i + 1) * cfg.batch_size]
            decay = 1.0  # the schedule's factor at this step
            if cfg.schedule == "cosine":
                decay = 0.5 * (1 + math.cos(math.pi * step / total))
            lr = cfg.lr * decay
            encoder_group, linear_group = optimizer.param_groups
            encoder_group["lr"] = 0.0 if step < cfg.head_warmup else lr * cfg.encoder_lr_scale
            linear_group["lr"] = lr
            logits = model(make_view(images.index_select(0, idx), aug, generator))
            loss = F.cross_entropy(logits, labels[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if anchors:
                pull_toward(encoder_params, anchors, pull * decay)
            correct += (logits.argmax(1) == labels[idx]).sum()
            step += 1
        train_accuracy.append(correct.item() / len(train))
        if epochs <= 20 or epoch == epochs - 1:
            log(
                f"{label} epoch {epoch + 1}/{epochs}  "
                f"train accuracy {100 * train_accuracy[-1]:.2f}%"
            )
        if checkpoint is not None:
            save_checkpoint(
                checkpoint,
                {
                    "encoder": model.encoder.state_dict(),
                    "classifier": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "generator": generator.get_state(),
                    "train_accuracy": train_accuracy,
                    "seconds": seconds_before + time.perf_counter() - started,
                    "settings": settings,
                },
            )
    test_accuracy = accuracy(model, test, aug, device)
    return {
        "train_accuracy": train_accuracy,
        "test_accuracy": test_accuracy,
        "epochs": epochs,
        "steps": total,
        "seconds": round(seconds_before + time.perf_counter() - started, 3),
        "model": model,
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
    steps_per_epoch = math.ceil(len(train_x) / cfg.batch_size)
    total = cfg.epochs * steps_per_epoch
    step = 0
    for epoch in range(cfg.epochs):
        order = epoch_order(len(train_x), seed, epoch).to(device)
        for i in range(steps_per_epoch):
            idx = order[i * cfg.batch_size : (i + 1) * cfg.batch_size]
            for group in optimizer.param_groups:
                group["lr"] = cfg.lr * 0.5 * (1 + math.cos(math.pi * step / total))
            loss = F.cross_entropy(linear(train_x[idx]), train_y[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
    with torch.inference_mode():
        train_acc = (linear(train_x).argmax(1) == train_y).float().mean().item()
        test_acc = (linear(test_x).argmax(1) == test_y).float().mean().item()
    return {
        "train_accuracy": train_acc,
        "test_accuracy": test_acc,
        "seconds": round(time.perf_counter() - started, 3),
    }
