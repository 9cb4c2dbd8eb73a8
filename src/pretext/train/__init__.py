"""Pretraining: build (data, model, optimizer), fit (the loop), record (the run directory).

Resuming is exact: the epoch order is a pure function of (seed, epoch), the augmentation draws
from a generator saved in the checkpoint, and every other random state is saved too.
"""

from __future__ import annotations

from dataclasses import replace

import torch

from pretext import distributed, rundir
from pretext.allocator import keep_freed_memory, phase
from pretext.checkpoint import first_non_finite, load_checkpoint, save_checkpoint
from pretext.config import PretrainConfig, input_stats, resolve_device, validate
from pretext.data.sources import portable
from pretext.errors import PretextError
from pretext.evaluate.monitor import knn_monitor
from pretext.train.build import Pretraining, build
from pretext.train.fit import Diverged, Progress, fit, pretrain_step
from pretext.train.optim import LARS, build_optimizer
from pretext.train.state import RESUMABLE_CHANGES, checkpoint_state, restore

__all__ = [
    "LARS",
    "RESUMABLE_CHANGES",
    "build",
    "build_optimizer",
    "pretrain",
    "pretrain_step",
]


@phase
def pretrain(cfg: PretrainConfig, log=print) -> dict:
    """Pretrain an encoder without labels; writes config, metrics and checkpoints to cfg.out.

    Under torchrun each process trains on its shard of every batch (DistributedDataParallel);
    rank 0 alone logs and writes. Returns the summary `metrics.json` records under "pretrain".
    """
    validate(cfg)
    # recorded as absolute paths: later commands may run from another directory
    cfg = replace(cfg, dataset=portable(cfg.dataset), data_dir=portable(cfg.data_dir))
    ctx, device = distributed.setup(resolve_device(cfg.device))
    if device.type == "cpu":
        keep_freed_memory()
    if not ctx.is_main:
        log = quiet
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    p = build(with_recorded_stats(cfg), ctx, device)  # before the run directory is touched
    run = rundir.prepare(cfg.out, cfg.resume, cfg.overwrite) if ctx.is_main else None
    distributed.barrier()
    progress = Progress()
    if cfg.resume and rundir.has_checkpoint(cfg.out):
        progress = restore(p, load_checkpoint(rundir.RunDir(cfg.out).checkpoint, device))
        epoch = progress.step // p.steps_per_epoch + 1
        log(f"resuming {cfg.out} at step {progress.step} (epoch {epoch})")
        if run is not None:  # the checkpoint's epochs are the log's, whenever it was killed
            rundir.write_history(run, progress.history)
    if run is not None:  # a resumed run's too: more --epochs, another --data-dir
        rundir.write_config(run, p.cfg)
    score = None
    if ctx.is_main:
        score = knn_monitor(
            p.method.encoder, p.images, p.data.labels, cfg.knn_monitor, cfg.seed, p.aug, device
        )
    try:
        fit(p, progress, log, save=recorder(p, run), score=score)
    except Diverged as exc:
        checkpoint = rundir.RunDir(cfg.out).checkpoint
        kept = (
            f"the last good checkpoint is kept in {checkpoint}"
            if checkpoint.is_file()
            else "no finite checkpoint was written"
        )
        raise PretextError(f"{exc}; {kept} (try a lower --lr or a higher --temperature)") from None
    return record(p, run, progress)


def with_recorded_stats(cfg: PretrainConfig) -> PretrainConfig:
    """On --resume, the normalisation the run started with (a run that predates its record:
    MNIST's, which every run used then)."""
    if not cfg.resume or cfg.mean is not None or not rundir.is_run_dir(cfg.out):
        return cfg
    stats = input_stats(rundir.pretrain_config(cfg.out))
    return replace(cfg, mean=stats.mean, std=stats.std)


def recorder(p: Pretraining, run: rundir.RunDir | None):
    """The loop's `save`: the checkpoint (all ranks share their random states), and after each
    epoch the per-epoch log, written by rank 0."""

    def save(progress: Progress, epoch_end: bool) -> None:
        # Every rank checks (they hold the same weights), so that all stop together; the last
        # finite checkpoint stays.
        if first_non_finite([p.method.state_dict(), p.optimizer.state_dict()]) is not None:
            raise Diverged(progress.step)
        state = checkpoint_state(p, progress)
        if run is None:
            return
        save_checkpoint(run.checkpoint, state)
        if epoch_end:
            rundir.write_history(run, progress.history)

    return save


def record(p: Pretraining, run: rundir.RunDir | None, progress: Progress) -> dict:
    """The summary of a finished pretraining, in pretrain.json (rank 0)."""
    summary = {
        "epochs": p.cfg.epochs,
        "final_loss": progress.history[-1]["loss"],
        "seconds": round(sum(row["seconds"] for row in progress.history), 3),
        "processes": p.ctx.world_size,
    }
    if run is not None:
        rundir.write_summary(run, summary)
    distributed.barrier()
    return summary


def quiet(*_args, **_kwargs) -> None:
    """The log of ranks other than 0."""
