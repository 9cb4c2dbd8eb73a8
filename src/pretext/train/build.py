"""Building a pretraining: its data, method, optimizer and views, before any file is written
(a wrong encoder, method or augmentation name leaves nothing behind)."""

from __future__ import annotations

import random
from dataclasses import dataclass, replace

import numpy as np
import torch

from pretext.augment import Augmentation, preset
from pretext.config import PretrainConfig, input_stats
from pretext.data import ImageSet, load_dataset
from pretext.data.colour_sets import pretraining_split
from pretext.data.stats import training_stats
from pretext.distributed import Context
from pretext.errors import PretextError
from pretext.methods import (
    METHODS,
    USER_OPTIONS,
    SSLMethod,
    build_method,
    head_defaults,
    method_options,
)
from pretext.models import build_encoder
from pretext.train.optim import build_optimizer


@dataclass(frozen=True)
class Pretraining:
    """What the loop trains: `method` (what checkpoints hold) stepped through `model` (the
    method, or its DistributedDataParallel wrapper), with views drawn from `generator`."""

    cfg: PretrainConfig  # as given, with the method's own options filled in
    data: ImageSet
    images: torch.Tensor  # data.images on the device (a cache's stay on disk)
    method: SSLMethod
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    aug: Augmentation
    generator: torch.Generator
    ctx: Context
    device: torch.device

    @property
    def steps_per_epoch(self) -> int:
        return len(self.data) // (self.cfg.batch_size * self.ctx.world_size)

    @property
    def total_steps(self) -> int:
        return self.steps_per_epoch * self.cfg.epochs


def training_data(cfg: PretrainConfig, ctx: Context) -> ImageSet:
    split = pretraining_split(cfg.dataset)
    data = load_dataset(cfg.dataset, split, cfg.data_dir, cfg.skip_bad_files, cfg.image_size)
    data = data.first(cfg.limit_train)
    if cfg.batch_size * ctx.world_size > len(data):
        raise PretextError(
            f"--batch-size {cfg.batch_size} x {ctx.world_size} processes is larger than the "
            f"data set ({len(data)} images)"
        )
    return data


def with_method_options(cfg: PretrainConfig) -> PretrainConfig:
    """`cfg` with the options its method takes filled in from the method's defaults, its head
    sized to a ResNet backbone where it has one (and options it does not take refused), so
    config.json records what was trained."""
    given = {key: getattr(cfg, key) for key in USER_OPTIONS}
    sized = head_defaults(cfg.method, cfg.encoder) if cfg.method in METHODS else {}
    given |= {key: value for key, value in sized.items() if given[key] is None}
    return replace(cfg, **method_options(cfg.method, **given))


def with_data_stats(cfg: PretrainConfig, data: ImageSet) -> PretrainConfig:
    """`cfg` with the normalisation its views use settled: as given, or the data's (a named
    set's published values, a prepared cache's record, or computed from the images)."""
    if cfg.mean is None:
        stats = training_stats(cfg.dataset, data.images)
        cfg = replace(cfg, mean=stats.mean, std=stats.std)
    channels = data.images.shape[1]
    if len(cfg.mean) != channels:
        raise PretextError(
            f"mean and std have {len(cfg.mean)} values; the images have {channels} channels"
        )
    return cfg


MULTI_CROP_METHODS = ("dino",)  # the methods whose forward takes a MultiCrop


def check_views(cfg: PretrainConfig, aug: Augmentation) -> None:
    """Multi-crop views need a method that takes views of two sizes and an encoder that takes
    any size; said in one line before anything is written."""
    if not aug.local_crops:
        return
    if cfg.method not in MULTI_CROP_METHODS:
        raise PretextError(
            f"--augment {cfg.augment} makes multi-crop views, which only "
            f"{', '.join(MULTI_CROP_METHODS)} takes; use --method dino or two-view augmentation"
        )
    if cfg.encoder.startswith("cnn"):
        raise PretextError(
            f"--augment {cfg.augment}: its local crops are smaller than the images, and encoder "
            f"{cfg.encoder!r} takes 28x28 only; use convnet or a resnet"
        )


def build(cfg: PretrainConfig, ctx: Context, device: torch.device) -> Pretraining:
    """Data, seeded model and optimizer of a pretraining (`ctx`: this process's rank)."""
    cfg = with_method_options(cfg)
    data = training_data(cfg, ctx)
    cfg = with_data_stats(cfg, data)
    torch.manual_seed(cfg.seed)
    random.seed(cfg.seed)
    np.random.seed(cfg.seed)
    encoder = build_encoder(cfg.encoder, data.images.shape[1], data.images.shape[-1])
    options = {key: getattr(cfg, key) for key in USER_OPTIONS}
    method = build_method(cfg.method, encoder, **options).to(device)
    aug = preset(cfg.augment, input_stats(cfg))
    check_views(cfg, aug)
    if cfg.sync_batchnorm and ctx.world_size > 1:
        method = torch.nn.SyncBatchNorm.convert_sync_batchnorm(method)
    model = method
    if ctx.world_size > 1:
        ids = [device.index] if device.type == "cuda" else None
        model = torch.nn.parallel.DistributedDataParallel(method, device_ids=ids)
    return Pretraining(
        cfg=cfg,
        data=data,
        images=data.images if data.on_disk else data.images.to(device),  # a cache streams
        method=method,
        model=model,
        optimizer=build_optimizer(cfg, method.parameters()),
        aug=aug,
        generator=torch.Generator(device).manual_seed(cfg.seed + 7919 * ctx.rank),
        ctx=ctx,
        device=device,
    )
