"""The pretraining loop: epochs of steps over seeded batches, with callbacks for what happens
at the edges (a score per epoch, saving progress). It knows no method, data set, file or
evaluation."""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass, field

import torch

from pretext.augment import Augmentation, make_views
from pretext.data import epoch_order, shard
from pretext.data.stream import batch_feed
from pretext.errors import PretextError
from pretext.loop import descend, scheduled_lr, set_lr
from pretext.progress import step_bar
from pretext.train.build import Pretraining


@dataclass
class Progress:
    """Where a pretraining stands: steps done, one row per finished epoch, and the running loss
    sum and seconds of the epoch under way (what a mid-epoch checkpoint must carry)."""

    step: int = 0
    history: list[dict] = field(default_factory=list)
    loss_sum: float = 0.0
    seconds: float = 0.0


def pretrain_step(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    batch: torch.Tensor,
    aug: Augmentation,
    generator: torch.Generator,
    bf16: bool = False,
) -> torch.Tensor:
    """One step on a uint8 batch already on the device: two views, loss, update. Returns the
    detached loss without syncing with the host. `bf16` runs the forward pass under bfloat16
    autocast (losses compute in float32)."""
    views = make_views(batch, aug, generator)
    with torch.autocast(batch.device.type, dtype=torch.bfloat16, enabled=bf16):
        loss = model(views)
    descend(optimizer, loss)
    return loss.detach()


def fit(
    p: Pretraining,
    progress: Progress,
    log: Callable[[str], None],
    save: Callable[[Progress, bool], None],
    score: Callable[[], float] | None = None,
) -> Progress:
    """Train from `progress` to the last epoch. `save(progress, epoch_end)` runs at every
    --checkpoint-every step and after each epoch; `score()`, if given, is recorded per epoch
    as "knn" (a cheap signal of quality, not a result)."""
    p.method.train()
    for epoch in range(progress.step // p.steps_per_epoch, p.cfg.epochs):
        fit_epoch(p, epoch, progress, save, shown=score_text(progress.history))
        seconds = progress.seconds
        row = {
            "epoch": epoch + 1,
            "step": progress.step,
            "loss": progress.loss_sum / p.steps_per_epoch,
            "lr": p.optimizer.param_groups[0]["lr"],
            "seconds": round(seconds, 3),
        }
        if score is not None:
            row["knn"] = score()
        progress.history.append(row)
        progress.loss_sum, progress.seconds = 0.0, 0.0
        knn = f"  kNN {100 * row['knn']:.2f}%" if "knn" in row else ""
        log(f"epoch {epoch + 1}/{p.cfg.epochs}  loss {row['loss']:.4f}{knn}  ({seconds:.1f}s)")
        save(progress, True)
    return progress


def fit_epoch(p: Pretraining, epoch: int, progress: Progress, save, shown: dict) -> None:
    """The steps of one epoch from where `progress` stands; leaves its loss sum in `progress`.
    The loss stays on the device: the host reads it every --log-every steps only."""
    cfg, per_epoch = p.cfg, p.steps_per_epoch
    order = epoch_order(len(p.data), cfg.seed, epoch)
    mine = shard(order, p.ctx.rank, p.ctx.world_size, cfg.batch_size)
    loss_sum = torch.tensor(progress.loss_sum, device=p.device, dtype=torch.float64)
    first_bad = torch.tensor(-1, device=p.device)
    seconds_before, started = progress.seconds, time.perf_counter()
    warmup = int(cfg.warmup_epochs * per_epoch)
    first = progress.step - epoch * per_epoch
    bar = step_bar(range(first, per_epoch), f"epoch {epoch + 1}/{cfg.epochs}", p.ctx.is_main)
    feed = batch_feed(p.images, mine, cfg.batch_size, first, per_epoch, p.device, p.data.on_disk)
    with closing(feed):  # a cache's gatherer stops with the epoch, however it ends
        for i, batch in zip(bar, feed, strict=True):
            step = progress.step
            set_lr(p.optimizer, scheduled_lr(cfg.lr, step, p.total_steps, warmup, cfg.schedule))
            loss = pretrain_step(p.model, p.optimizer, batch, p.aug, p.generator, cfg.bf16)
            p.method.after_step((step + 1) / p.total_steps)
            loss_sum += loss
            first_bad = torch.where((first_bad < 0) & ~torch.isfinite(loss), step, first_bad)
            progress.step = step + 1
            if progress.step % cfg.log_every == 0 or i == per_epoch - 1:
                check_finite(first_bad)
                bar.set_postfix(loss=f"{loss.item():.4f}", **shown)
            if cfg.checkpoint_every and progress.step % cfg.checkpoint_every == 0:
                if i < per_epoch - 1:
                    check_finite(first_bad)
                    progress.loss_sum = loss_sum.item()
                    progress.seconds = seconds_before + time.perf_counter() - started
                    save(progress, False)
    bar.close()
    progress.loss_sum = loss_sum.item()
    progress.seconds = seconds_before + time.perf_counter() - started


def score_text(history: list[dict]) -> dict:
    """The progress bar's kNN field: the last epoch's score, if any."""
    return {"knn": f"{history[-1]['knn']:.3f}"} if history and "knn" in history[-1] else {}


class Diverged(PretextError):
    """The loss, or a weight, became NaN or infinite; `step` (1-based) is where it was seen."""

    def __init__(self, step: int) -> None:
        super().__init__(f"the loss or the weights became NaN or infinite at step {step}, stopped")
        self.step = step


def check_finite(first_bad: torch.Tensor) -> None:
    bad = int(first_bad)
    if bad >= 0:
        raise Diverged(bad + 1)
