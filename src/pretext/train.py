"""The pretraining loop. It knows data, views, a method, an optimizer and a run directory, and
nothing specific to any method or data set.

Resuming is exact: the epoch order is a pure function of (seed, epoch), the augmentation draws
from a generator saved in the checkpoint, and every other RNG state is saved too.
"""

from __future__ import annotations

import json
import math
import random
import shutil
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import torch

from pretext import distributed
from pretext.allocator import keep_freed_memory, phase
from pretext.augment import Augmentation, make_views, preset
from pretext.checkpoint import (
    check_same_training,
    load_checkpoint,
    load_state_checked,
    save_checkpoint,
    write_json,
    write_jsonl,
    write_text_atomic,
)
from pretext.config import PretrainConfig, load_pretrain_config, resolve_device, validate
from pretext.data import epoch_order, load_dataset, shard
from pretext.data.sources import portable
from pretext.errors import PretextError
from pretext.evaluate.classify import extract_features
from pretext.evaluate.knn import knn_accuracy
from pretext.methods import SSLMethod, build_method
from pretext.models import build_encoder
from pretext.progress import step_bar

CHECKPOINT = Path("checkpoints") / "last.pt"


# What pretext's commands write into a run directory (at their default names). --overwrite
# removes these, so that nothing of the earlier run (a study, clusters, a fine-tuning checkpoint
# that --resume would take up, pictures the report would show) passes for the new one; other
# files in the folder stay.
RUN_OUTPUTS = (
    "config.json",
    "metrics.json",
    "metrics.jsonl",
    "pretrain.json",
    "report.html",
    "views.png",
    "curves.png",
    "embeddings.png",
    "confusion.png",
    "mistakes.png",
    "study.json",
    "study.md",
    "study.png",
    "clusters.npz",
    "clusters.png",
    "encoder.torchscript.pt",
    "encoder.torchscript.json",
    "encoder.onnx",
    "encoder.json",
    "checkpoints",
    "index",
)


def prepare_run_dir(out: Path, resume: bool, overwrite: bool) -> None:
    """Refuse to write over an earlier run unless told to resume or overwrite."""
    if resume:
        if not (out / CHECKPOINT).is_file():
            raise PretextError(f"--resume: no checkpoint at {out / CHECKPOINT}")
        return
    if out.exists() and not out.is_dir():
        raise PretextError(f"--out {out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()):
        if not overwrite:
            raise PretextError(
                f"--out {out} already holds files: pass --resume to continue or --overwrite"
            )
        for name in RUN_OUTPUTS:
            earlier = out / name
            if earlier.is_dir() and not earlier.is_symlink():
                shutil.rmtree(earlier)
            elif earlier.exists() or earlier.is_symlink():
                earlier.unlink()
    out.mkdir(parents=True, exist_ok=True)


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


def learning_rate(cfg: PretrainConfig, step: int, total: int, steps_per_epoch: int) -> float:
    warmup = int(cfg.warmup_epochs * steps_per_epoch)
    if step < warmup:
        return cfg.lr * (step + 1) / warmup
    if cfg.schedule == "constant":
        return cfg.lr
    progress = (step - warmup) / max(1, total - warmup)
    return cfg.lr * 0.5 * (1 + math.cos(math.pi * progress))


class LARS(torch.optim.Optimizer):
    """SGD with momentum and layer-wise trust ratios (You et al., 2017); biases and norms skip
    the adaptation and the weight decay, as in SimCLR."""

    def __init__(
        self,
        params,
        lr: float,
        momentum: float = 0.9,
        weight_decay: float = 0.0,
        trust: float = 0.001,
    ) -> None:
        super().__init__(
            params, dict(lr=lr, momentum=momentum, weight_decay=weight_decay, trust=trust)
        )

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                grad = p.grad
                if p.ndim > 1:
                    grad = grad.add(p, alpha=group["weight_decay"])
                    w_norm, g_norm = torch.linalg.norm(p), torch.linalg.norm(grad)
                    ratio = torch.where(
                        (w_norm > 0) & (g_norm > 0),
                        group["trust"] * w_norm / g_norm,
                        torch.ones_like(w_norm),
                    )
                    grad = grad * ratio
                buf = self.state[p].setdefault("momentum", torch.zeros_like(p))
                buf.mul_(group["momentum"]).add_(grad)
                p.add_(buf, alpha=-group["lr"])


def build_optimizer(cfg: PretrainConfig, params) -> torch.optim.Optimizer:
    if cfg.optimizer == "adam":
        # The fused kernel updates all tensors in one pass (CPU and CUDA): measurably faster
        # for small models, where per-tensor launches dominate the optimizer step.
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay, fused=True)
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=0.9, weight_decay=cfg.weight_decay)
    return LARS(params, lr=cfg.lr, weight_decay=cfg.weight_decay)


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


def pretrain_step(
    method: SSLMethod | torch.nn.Module,
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
        loss = method(views)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss.detach()


@phase
def pretrain(cfg: PretrainConfig, log=print) -> dict:
    """Pretrain an encoder without labels; writes config, metrics and checkpoints to cfg.out.

    Under torchrun each process trains on its shard of every batch (DistributedDataParallel);
    rank 0 alone logs and writes. Returns the summary `metrics.json` records under "pretrain".
    """
    validate(cfg)
    # recorded as absolute paths: later commands may run from another directory
    cfg = replace(cfg, dataset=portable(cfg.dataset), data_dir=portable(cfg.data_dir))
    out = Path(cfg.out)
    ctx, device = distributed.setup(resolve_device(cfg.device))
    if device.type == "cpu":
        keep_freed_memory()
    if not ctx.is_main:
        log = quiet
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    data = load_dataset(
        cfg.dataset, "train", cfg.data_dir, cfg.skip_bad_files, cfg.image_size
    ).first(cfg.limit_train)
    global_batch = cfg.batch_size * ctx.world_size
    if global_batch > len(data):
        raise PretextError(
            f"--batch-size {cfg.batch_size} x {ctx.world_size} processes is larger than the "
            f"data set ({len(data)} images)"
        )
    torch.manual_seed(cfg.seed)
    random.seed(cfg.seed)
    np.random.seed(cfg.seed)
    # Built before the run directory is touched: a wrong encoder, method or augmentation name
    # leaves nothing behind.
    encoder = build_encoder(cfg.encoder, data.images.shape[1], data.images.shape[-1])
    method = build_method(
        cfg.method,
        encoder,
        temperature=cfg.temperature,
        projection_hidden=cfg.projection_hidden,
        projection_dim=cfg.projection_dim,
    ).to(device)
    aug = preset(cfg.augment)
    if ctx.is_main:
        prepare_run_dir(out, cfg.resume, cfg.overwrite)
    distributed.barrier()

    if cfg.sync_batchnorm and ctx.world_size > 1:
        method = torch.nn.SyncBatchNorm.convert_sync_batchnorm(method)
    model = method
    if ctx.world_size > 1:
        ids = [device.index] if device.type == "cuda" else None
        model = torch.nn.parallel.DistributedDataParallel(method, device_ids=ids)
    optimizer = build_optimizer(cfg, method.parameters())
    aug_gen = torch.Generator(device).manual_seed(cfg.seed + 7919 * ctx.rank)
    images = data.images.to(device)

    steps_per_epoch = len(data) // global_batch
    total_steps = steps_per_epoch * cfg.epochs
    step, history, partial = 0, [], {"loss_sum": 0.0, "seconds": 0.0}
    if cfg.resume:
        state = load_checkpoint(out / CHECKPOINT, device)
        saved = state.get("config", {})
        saved = {**saved, "dataset": portable(saved.get("dataset"))}  # older runs: as given
        check_same_training(saved, asdict(cfg), RESUMABLE_CHANGES)
        load_state_checked(method, state["method"], f"{cfg.method} model")
        optimizer.load_state_dict(state["optimizer"])
        if len(state["rng"]["augment"]) != ctx.world_size:
            raise PretextError(
                f"--resume: the checkpoint was written by {len(state['rng']['augment'])} "
                f"processes, this run has {ctx.world_size}"
            )
        restore_rng(state["rng"], aug_gen, ctx.rank)
        step, history, partial = state["step"], state["history"], state["partial"]
        log(f"resuming {out} at step {step} (epoch {step // steps_per_epoch + 1})")
    if ctx.is_main:  # a resumed run's too: more --epochs, another --data-dir
        write_text_atomic(
            out / "config.json", json.dumps({"pretrain": asdict(cfg)}, indent=2) + "\n"
        )

    def checkpoint(loss_sum: float, seconds: float) -> None:
        states = rng_state(aug_gen, distributed.gather_objects(aug_gen.get_state()))
        if not ctx.is_main:
            return
        save_checkpoint(
            out / CHECKPOINT,
            {
                "encoder": method.encoder.state_dict(),  # what transfer uses
                "method": method.state_dict(),  # encoder, heads, targets, queues: for resuming
                "optimizer": optimizer.state_dict(),
                "rng": states,
                "epoch": step // steps_per_epoch,
                # what rebuilding the encoder needs (a user's own may take both)
                "in_channels": data.images.shape[1],
                "image_size": data.images.shape[-1],
                "step": step,
                "history": history,
                "partial": {"loss_sum": loss_sum, "seconds": seconds},
                "config": asdict(cfg),
            },
        )

    monitor = monitor_split(data.labels, cfg.knn_monitor, cfg.seed) if ctx.is_main else None
    last_knn = {"knn": f"{history[-1]['knn']:.3f}"} if history and "knn" in history[-1] else {}
    method.train()
    for epoch in range(step // steps_per_epoch, cfg.epochs):
        order = epoch_order(len(data), cfg.seed, epoch)
        mine = shard(order, ctx.rank, ctx.world_size, cfg.batch_size).to(device)
        first = step - epoch * steps_per_epoch
        loss_sum = torch.tensor(partial["loss_sum"], device=device, dtype=torch.float64)
        seconds_before, started = partial["seconds"], time.perf_counter()
        first_bad = torch.tensor(-1, device=device)
        bar = step_bar(
            range(first, steps_per_epoch), f"epoch {epoch + 1}/{cfg.epochs}", ctx.is_main
        )
        for i in bar:
            for group in optimizer.param_groups:
                group["lr"] = learning_rate(cfg, step, total_steps, steps_per_epoch)
            batch = images.index_select(0, mine[i * cfg.batch_size : (i + 1) * cfg.batch_size])
            loss = pretrain_step(model, optimizer, batch, aug, aug_gen, cfg.bf16)
            method.after_step((step + 1) / total_steps)
            loss_sum += loss
            first_bad = torch.where((first_bad < 0) & ~torch.isfinite(loss), step, first_bad)
            step += 1
            if step % cfg.log_every == 0 or i == steps_per_epoch - 1:
                check_finite(first_bad, out)
                bar.set_postfix(loss=f"{loss.item():.4f}", **last_knn)
            if (
                cfg.checkpoint_every
                and step % cfg.checkpoint_every == 0
                and i < steps_per_epoch - 1
            ):
                check_finite(first_bad, out)
                checkpoint(loss_sum.item(), seconds_before + time.perf_counter() - started)
        bar.close()
        seconds = seconds_before + time.perf_counter() - started
        row = {
            "epoch": epoch + 1,
            "step": step,
            "loss": loss_sum.item() / steps_per_epoch,
            "lr": optimizer.param_groups[0]["lr"],
            "seconds": round(seconds, 3),
        }
        if monitor is not None:
            row["knn"] = monitor_knn(method.encoder, images, data.labels, monitor, aug, device)
            last_knn = {"knn": f"{row['knn']:.3f}"}
        history.append(row)
        partial = {"loss_sum": 0.0, "seconds": 0.0}
        knn_text = f"  kNN {100 * row['knn']:.2f}%" if "knn" in row else ""
        log(f"epoch {epoch + 1}/{cfg.epochs}  loss {row['loss']:.4f}{knn_text}  ({seconds:.1f}s)")
        checkpoint(0.0, 0.0)
        if ctx.is_main:
            write_jsonl(out / "metrics.jsonl", history)

    summary = {
        "epochs": cfg.epochs,
        "final_loss": history[-1]["loss"],
        "seconds": round(sum(row["seconds"] for row in history), 3),
        "processes": ctx.world_size,
    }
    if ctx.is_main:
        write_json(out / "pretrain.json", summary)
    distributed.barrier()
    return summary


def quiet(*_args, **_kwargs) -> None:
    """The log of ranks other than 0."""


def monitor_split(labels: torch.Tensor | None, size: int, seed: int):
    """Fixed bank and query indices for the online kNN monitor (None without labels)."""
    if labels is None or size <= 0:
        return None
    chosen = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed + 1))
    chosen = chosen[: min(size, len(labels))]
    cut = max(1, len(chosen) * 5 // 6)
    return chosen[:cut], chosen[cut:]


def monitor_knn(encoder, images, labels, split, aug, device) -> float:
    """kNN accuracy of held-out training images against a bank of others: a cheap signal of
    representation quality during pretraining (not a reported result)."""
    bank, queries = split
    if len(queries) == 0:
        return float("nan")
    bank_x = extract_features(encoder, images[bank.to(device)], aug, device)
    query_x = extract_features(encoder, images[queries.to(device)], aug, device)
    return knn_accuracy(bank_x, labels[bank], query_x, labels[queries])


def check_finite(first_bad: torch.Tensor, out: Path) -> None:
    bad = int(first_bad)
    if bad >= 0:
        raise PretextError(
            f"the loss became NaN or infinite at step {bad + 1}; stopped. The last good checkpoint "
            f"is kept in {out / CHECKPOINT} (try a lower --lr or a higher --temperature)"
        )


def load_encoder(run_dir: str | Path, device: torch.device | str = "cpu") -> torch.nn.Module:
    """The pretrained encoder of a run directory, from checkpoints/last.pt (weights only)."""
    return load_encoder_and_input(run_dir, device)[0]


def load_encoder_and_input(
    run_dir: str | Path, device: torch.device | str = "cpu"
) -> tuple[torch.nn.Module, tuple[int, int]]:
    """The pretrained encoder of a run directory, and the (channels, side) of the square images
    it was pretrained on (what an export traces), from one read of its checkpoint."""
    run_dir = Path(run_dir)
    cfg = load_pretrain_config(run_dir)
    state = load_checkpoint(run_dir / CHECKPOINT, device)
    channels, size = input_shape(state, cfg)
    encoder = build_encoder(cfg.encoder, channels, size, seed=0)  # weights replaced: no draw
    load_state_checked(encoder, state["encoder"], "encoder")
    return encoder.to(device), (channels, size)


def input_shape(state: dict, cfg: PretrainConfig) -> tuple[int, int]:
    """Checkpoints record their images' channels and side; older ones (before session 9) did
    not: the first weight's second dimension is the channels there, the side the configured one
    or 28."""
    channels = state.get("in_channels") or state["encoder"][next(iter(state["encoder"]))].shape[1]
    return int(channels), int(state.get("image_size") or cfg.image_size or 28)
