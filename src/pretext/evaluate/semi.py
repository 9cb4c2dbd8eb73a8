"""Semi-supervised fine-tuning (FixMatch, Sohn et al. 2020): a classifier that learns from a few
labelled images and from all the unlabelled ones at once.

Each step a teacher, a quickly moving average of the classifier, labels a weak view of a batch
of unlabelled images; where it is sure enough, the classifier must say the same of another
(by default equally mild) view of those images, beside a labelled batch. It uses the
unlabelled images a second time, after pretraining, and helps a classifier from random
weights too: a comparison runs it on both arms (`semi`, `scratch-semi`), or it credits
pretraining with what any classifier gets from the unlabelled images.
"""

from __future__ import annotations

import copy
import time

import torch
import torch.nn.functional as F

from pretext.allocator import phase
from pretext.augment import make_view, preset
from pretext.config import SemiConfig, semi_passes
from pretext.data import ImageSet
from pretext.data.stats import InputStats
from pretext.loop import descend, run_epochs, scheduled_lr, set_lr, steps_per_epoch
from pretext.models import Classifier


def confident_targets(
    logits: torch.Tensor, threshold: float, scale: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Each row's predicted class, and 1.0 where its softmax probability is at least
    `threshold` (0.0 elsewhere: that image teaches nothing this step). `scale` (one factor per
    class) reweights the probabilities, renormalised, before both."""
    probabilities = F.softmax(logits.float(), 1)
    if scale is not None:
        probabilities = probabilities * scale
        probabilities = probabilities / probabilities.sum(1, keepdim=True)
    sure, target = probabilities.max(1)
    return target, (sure >= threshold).float()


class Alignment:
    """Distribution alignment (Berthelot et al., 2020): a running mean of the teacher's class
    probabilities, and the per-class factors that bring it to the labelled class shares."""

    def __init__(self, labels: torch.Tensor, num_classes: int, momentum: float = 0.999):
        counts = torch.bincount(labels, minlength=num_classes).float()
        self.target = counts / counts.sum()
        self.mean = torch.full_like(self.target, 1.0 / num_classes)
        self.momentum = momentum

    def scale(self, logits: torch.Tensor) -> torch.Tensor:
        """Fold this batch's mean probabilities in; the factors target / running mean."""
        batch_mean = F.softmax(logits.float(), 1).mean(0)
        self.mean.lerp_(batch_mean, 1.0 - self.momentum)
        return self.target / self.mean.clamp_min(1e-6)


def semi_loss(
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


def cluster_start(clusters: Classifier, mapping: torch.Tensor, num_classes: int) -> Classifier:
    """A classifier that answers with the clusters' names: the clustering network with its
    head's rows put in class order (`mapping[c]` is cluster c's class, one-to-one)."""
    if len(mapping) != num_classes or sorted(mapping.tolist()) != list(range(num_classes)):
        raise ValueError("starting from clusters needs one cluster per class")
    model = copy.deepcopy(clusters)
    order = torch.argsort(mapping)  # order[k]: the cluster named class k
    with torch.no_grad():
        model.linear.weight.copy_(clusters.linear.weight[order])
        model.linear.bias.copy_(clusters.linear.bias[order])
    return model


@torch.no_grad()
def teacher_answers(
    teacher: torch.nn.Module, batch: torch.Tensor, weak, views: int, generator: torch.Generator
) -> torch.Tensor:
    """The teacher's log-probabilities for `batch`, averaged (as probabilities) over `views`
    weak views of each image: fewer answers that one unlucky view made sure of."""
    if views == 1:
        return teacher(make_view(batch, weak, generator))
    stacked = torch.cat([make_view(batch, weak, generator) for _ in range(views)])
    probabilities = F.softmax(teacher(stacked).float(), 1).view(views, len(batch), -1)
    return probabilities.mean(0).clamp_min(1e-12).log()


@torch.no_grad()
def follow(teacher: torch.nn.Module, student: torch.nn.Module, decay: float) -> None:
    """teacher <- decay teacher + (1 - decay) student, weights and float buffers alike."""
    t = [v for v in teacher.state_dict().values() if v.is_floating_point()]
    s = [v for v in student.state_dict().values() if v.is_floating_point()]
    torch._foreach_lerp_(t, s, 1.0 - decay)


def check_semi_config(cfg: SemiConfig) -> None:
    """Refuse settings that cannot train: no pass, a threshold outside (0, 1], no teacher view."""
    if min(cfg.epochs, cfg.few_epochs) < 1:
        passes = min(cfg.epochs, cfg.few_epochs)
        raise ValueError(f"semi-supervised training needs at least 1 pass, got {passes}")
    if not 0.0 < cfg.threshold <= 1.0:
        raise ValueError(f"threshold must be in (0, 1], got {cfg.threshold}")
    if cfg.teacher_views < 1:
        raise ValueError(f"teacher views must be at least 1, got {cfg.teacher_views}")


@phase
def semi_train(
    model: torch.nn.Module,
    unlabelled: torch.Tensor,
    labelled: ImageSet,
    cfg: SemiConfig,
    device: torch.device,
    log=print,
    stats: InputStats | None = None,
) -> dict:
    """A copy of the classifier `model` trained on `labelled` and on the uint8 `unlabelled`
    images (views normalised by `stats`, the run's). Returns {"model" (the teacher, which is
    the better classifier), "confident" (the share of unlabelled images that passed the
    threshold, over all steps), "passes" (`semi_passes`), "steps", "seconds"}. The caller's
    model stays as it was."""
    check_semi_config(cfg)
    passes = semi_passes(cfg, len(labelled), labelled.num_classes)
    started = time.perf_counter()
    weak, strong = preset(cfg.weak, stats), preset(cfg.strong or "default", stats)
    student = copy.deepcopy(model).to(device).train()
    teacher = copy.deepcopy(student).eval().requires_grad_(False)
    optimizer = torch.optim.AdamW(student.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    generator = torch.Generator(device).manual_seed(cfg.seed)
    unlabelled = unlabelled.to(device)
    images, labels = labelled.images.to(device), labelled.labels.to(device)
    total = passes * steps_per_epoch(len(unlabelled), cfg.batch_size)
    confident = torch.zeros((), device=device, dtype=torch.float64)
    alignment = Alignment(labels, labelled.num_classes) if cfg.align else None

    def step(idx: torch.Tensor, n: int) -> None:
        batch = unlabelled.index_select(0, idx)
        with torch.no_grad():
            answers = teacher_answers(teacher, batch, weak, cfg.teacher_views, generator)
            scale = alignment.scale(answers) if alignment else None
            targets, keep = confident_targets(answers, cfg.threshold, scale)
        confident.add_(keep.sum())
        pick = torch.randint(
            0, len(images), (cfg.labelled_batch,), generator=generator, device=device
        )
        strong_view = make_view(batch, strong, generator)
        logits = student(torch.cat([strong_view, make_view(images[pick], weak, generator)]))
        loss = semi_loss(logits[: len(batch)], targets, keep, logits[len(batch) :], labels[pick])
        set_lr(optimizer, scheduled_lr(cfg.lr, n, total))
        descend(optimizer, loss)
        follow(teacher, student, cfg.teacher_decay)

    def end(epoch: int) -> None:
        log(f"semi epoch {epoch + 1}/{passes}")

    run_epochs(step, len(unlabelled), cfg.batch_size, passes, cfg.seed, device, "semi", 0, end)
    return {
        "model": teacher,
        "confident": confident.item() / (passes * len(unlabelled)),
        "passes": passes,
        "steps": total,
        "seconds": round(time.perf_counter() - started, 3),
    }
