"""What a pretraining checkpoint holds and how a resumed run takes it back: weights, optimizer,
every random state, and the progress, so that resuming is exact."""

from __future__ import annotations

import random
from dataclasses import asdict

import numpy as np
import torch

from pretext import distributed
from pretext.checkpoint import check_same_training, load_state_checked
from pretext.data.sources import portable
from pretext.errors import PretextError
from pretext.train.build import Pretraining
from pretext.train.fit import Progress

# Settings a resumed run may change: where things are, how it runs and logs, how long it goes.
# Any other change would make the continued training a different one from the one checkpointed.
RESUMABLE_CHANGES = frozenset(
    {
        "out",
        "data_dir",
        "epochs",
        "device",
        "threads",
        "checkpoint_every",
        "log_every",
        "knn_monitor",
        "resume",
        "overwrite",
    }
)


def rng_state(aug_gen: torch.Generator, augment_states: list[torch.Tensor] | None = None) -> dict:
    """Every random state a resumed run needs; `augment` holds one generator state per rank."""
    np_state = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "augment": augment_states or [aug_gen.get_state()],
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]],
        "python": list(random.getstate()),
    }


def restore_rng(state: dict, aug_gen: torch.Generator, rank: int = 0) -> None:
    torch.set_rng_state(state["torch"])
    aug_gen.set_state(state["augment"][rank])
    kind, keys, *rest = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), *rest))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))


def checkpoint_state(p: Pretraining, progress: Progress) -> dict | None:
    """The checkpoint of `progress` (None on ranks other than 0, which only share their
    generator states)."""
    states = rng_state(p.generator, distributed.gather_objects(p.generator.get_state()))
    if not p.ctx.is_main:
        return None
    return {
        "encoder": p.method.encoder.state_dict(),  # what transfer uses
        "method": p.method.state_dict(),  # encoder, heads, targets, queues: for resuming
        "optimizer": p.optimizer.state_dict(),
        "rng": states,
        "epoch": progress.step // p.steps_per_epoch,
        # what rebuilding the encoder needs (a user's own may take both)
        "in_channels": p.data.images.shape[1],
        "image_size": p.data.images.shape[-1],
        "step": progress.step,
        "history": progress.history,
        "partial": {"loss_sum": progress.loss_sum, "seconds": progress.seconds},
        "config": asdict(p.cfg),
    }


def restore(p: Pretraining, state: dict) -> Progress:
    """Take a checkpoint back into `p` after checking that it is the same training."""
    saved = state.get("config", {})
    saved = {**saved, "dataset": portable(saved.get("dataset"))}  # older runs: as given
    check_same_training(saved, asdict(p.cfg), RESUMABLE_CHANGES)
    done = len(state["history"])
    if p.cfg.epochs < done:
        raise PretextError(
            f"--resume --epochs {p.cfg.epochs}: this run has finished {done} epochs already"
        )
    load_state_checked(p.method, state["method"], f"{p.cfg.method} model")
    p.optimizer.load_state_dict(state["optimizer"])
    if len(state["rng"]["augment"]) != p.ctx.world_size:
        raise PretextError(
            f"--resume: the checkpoint was written by {len(state['rng']['augment'])} "
            f"processes, this run has {p.ctx.world_size}"
        )
    restore_rng(state["rng"], p.generator, p.ctx.rank)
    partial = state["partial"]
    return Progress(state["step"], state["history"], partial["loss_sum"], partial["seconds"])
