"""Self-training on the unlabelled images after a few-label fine-tune (FixMatch, Sohn et al.
2020): the classifier labels the images it is sure of and learns to say the same of strongly
augmented views of them.

It is the other way to use unlabelled images, beside pretraining, and it helps a classifier
trained from scratch too: run it on both arms of a comparison, or it credits pretraining with
what the unlabelled images give any classifier."""

from __future__ import annotations

import copy
import time

import torch
import torch.nn.functional as F

from pretext.allocator import phase
from pretext.augment import make_view, preset, to_input
from pretext.config import SelfTrainConfig
from pretext.data import ImageSet
from pretext.loop import descend, run_epochs, scheduled_lr, set_lr, steps_per_epoch


def confident_targets(logits: torch.Tensor, threshold: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Each row's predicted class, and 1.0 where its softmax probability is at least
    `threshold` (0.0 elsewhere: that image teaches nothing this step)."""
    sure, target = F.softmax(logits.float(), 1).max(1)
    return target, (sure >= threshold).float()


def self_training_loss(
    unlabelled_logits: torch.Tensor,
    targets: torch.Tensor,
    keep: torch.Tensor,
    labelled_logits: torch.Tensor,
    labels: torch.Tensor,
) -> torch.Tensor:
    """Cross-entropy to the confident targets, averaged over all unlabelled rows (the unsure
    ones count as zero, so the weight of the unlabelled term grows with the confidence), plus
    the labelled batch's cross-entropy."""
    own = F.cross_entropy(unlabelled_logits, targets, reduction="none")
    return (own * keep).mean() + F.cross_entropy(labelled_logits, labels)


@phase
def self_train(
    model: torch.nn.Module,
    unlabelled: torch.Tensor,
    labelled: ImageSet,
    cfg: SelfTrainConfig,
    device: torch.device,
    log=print,
) -> dict:
    """A copy of the classifier `model` trained on its own confident predictions for the uint8
    `unlabelled` images and on `labelled`. Returns {"model", "confident", "seconds"}:
    "confident" is the share of unlabelled images that passed the threshold, over all steps.
    The caller's model stays as it was."""
    if not 0.0 < cfg.threshold <= 1.0:
        raise ValueError(f"threshold must be in (0, 1], got {cfg.threshold}")
    started = time.perf_counter()
    plain, strong = preset("none"), preset(cfg.augment)
    model = copy.deepcopy(model).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    generator = torch.Generator(device).manual_seed(cfg.seed)
    unlabelled = unlabelled.to(device)
    images, labels = labelled.images.to(device), labelled.labels.to(device)
    total = cfg.epochs * steps_per_epoch(len(unlabelled), cfg.batch_size)
    confident = torch.zeros((), device=device, dtype=torch.float64)

    def step(idx: torch.Tensor, n: int) -> None:
        batch = unlabelled.index_select(0, idx)
        model.eval()  # targets as the classifier would answer (batch norm's running stats)
        with torch.no_grad():
            targets, keep = confident_targets(model(to_input(batch, plain)), cfg.threshold)
        model.train()
        confident.add_(keep.sum())
        pick = torch.randint(
            0, len(images), (cfg.labelled_batch,), generator=generator, device=device
        )
        logits = model(make_view(torch.cat([batch, images[pick]]), strong, generator))
        loss = self_training_loss(
            logits[: len(batch)], targets, keep, logits[len(batch) :], labels[pick]
        )
        set_lr(optimizer, scheduled_lr(cfg.lr, n, total))
        descend(optimizer, loss)

    def end_epoch(epoch: int) -> None:
        log(f"self-train epoch {epoch + 1}/{cfg.epochs}")

    run_epochs(
        step,
        len(unlabelled),
        cfg.batch_size,
        cfg.epochs,
        cfg.seed,
        device,
        "self-train",
        end_epoch=end_epoch,
    )
    model.eval()
    return {
        "model": model,
        "confident": confident.item() / (cfg.epochs * len(unlabelled)),
        "seconds": round(time.perf_counter() - started, 3),
    }
