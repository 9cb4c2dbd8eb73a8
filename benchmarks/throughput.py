"""Pretraining throughput: the model alone vs the real training step vs making views alone.

    python benchmarks/throughput.py [--threads N] [--device cpu|cuda] [--bf16] [--channels-last]
        [--seconds S] [--configs ENCODER:BATCH[:SIDE],...]

A config without SIDE trains on MNIST-sized grayscale digits with the `default` views; with
SIDE (resnet18:256:32, resnet18:256:96) on colour images of that side with the `simclr` views.
Prints one JSON object. Images per second count both views (a batch of B gives 2B images).
overhead = full / model - 1 in seconds per step (= model img/s / full img/s - 1): how much slower
the real step is than the model alone.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time

import torch

from pretext.allocator import keep_freed_memory
from pretext.augment import make_views, preset
from pretext.config import PretrainConfig, resolve_device
from pretext.data import epoch_order
from pretext.data.stats import PUBLISHED
from pretext.methods import build_method
from pretext.models import build_encoder
from pretext.train import build_optimizer, pretrain_step
from pretext.train.build import with_method_options


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(step, device: torch.device, seconds: float, warmup: int = 5) -> float:
    """Steps per second of `step()`, after a warm-up, over at least `seconds`."""
    for _ in range(warmup):
        step()
    sync(device)
    count, started = 0, time.perf_counter()
    while True:
        for _ in range(5):
            step()
        count += 5
        sync(device)
        elapsed = time.perf_counter() - started
        if elapsed >= seconds:
            return count / elapsed


def interleaved(steps: dict, device: torch.device, seconds: float, rounds: int = 9) -> dict:
    """Median steps per second of each step function, measured in alternating short blocks so
    that a slow spell of a shared machine hits every function alike (ratios stay honest)."""
    block = seconds / rounds
    counts = {}
    for name, step in steps.items():  # warm up, and size each block to about `block` seconds
        counts[name] = max(3, round(block * timed(step, device, min(block, 0.5))))
    rates: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(rounds):
        for name, step in steps.items():
            started = time.perf_counter()
            for _ in range(counts[name]):
                step()
            sync(device)
            rates[name].append(counts[name] / (time.perf_counter() - started))
    return {name: statistics.median(values) for name, values in rates.items()}


def measure(
    encoder_name: str,
    batch: int,
    images: torch.Tensor,
    device: torch.device,
    seconds: float,
    bf16: bool,
    channels_last: bool = False,
) -> dict:
    """Images a second through the model alone, the full training step and the views alone,
    interleaved for `seconds`; the overhead is how much slower the full step is than the model."""
    colour = images.shape[1] == 3
    cfg = PretrainConfig(
        encoder=encoder_name, batch_size=batch, augment="simclr" if colour else "default"
    )
    cfg = with_method_options(cfg)
    aug = preset(cfg.augment, PUBLISHED["cifar10"] if colour else None)  # per channel
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16)
    layout = torch.channels_last if channels_last else torch.contiguous_format

    model_step = model_only_step(encoder_name, cfg, batch, images, device, layout, autocast)
    full_step, views_step = loop_steps(encoder_name, cfg, aug, batch, images, device, layout, bf16)
    per_step = interleaved(
        {"model": model_step, "full": full_step, "views": views_step}, device, seconds
    )
    rates = {name: 2 * batch * value for name, value in per_step.items()}
    return {
        "encoder": encoder_name,
        "batch_size": batch,
        "image": list(images.shape[1:]),
        "views": cfg.augment,
        "model_images_per_s": round(rates["model"]),
        "full_images_per_s": round(rates["full"]),
        "views_images_per_s": round(rates["views"]),
        "overhead": round(rates["model"] / rates["full"] - 1, 3),
    }


def model_only_step(encoder_name, cfg, batch, images, device, layout, autocast):
    """(a) model: encoder forward + backward + Adam on a ready float batch of 2B images."""
    torch.manual_seed(0)
    shape = (images.shape[1], images.shape[-1])
    encoder = build_encoder(encoder_name, *shape).to(device, memory_format=layout)
    optimizer = build_optimizer(cfg, encoder.parameters())  # the training loop's optimizer
    ready = torch.randn(2 * batch, *images.shape[1:], device=device).to(memory_format=layout)

    def model_step() -> None:
        with autocast:
            loss = encoder(ready).float().square().mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return model_step


def loop_steps(encoder_name, cfg, aug, batch, images, device, layout, bf16):
    """(b) full: the training loop's own step (batch from uint8 data, views, head, loss,
    update); (c) views: drawing the batch and making both views, nothing else."""
    torch.manual_seed(0)
    method = build_method(
        "simclr",
        build_encoder(encoder_name, images.shape[1], images.shape[-1]),
        temperature=cfg.temperature,
        projection_hidden=cfg.projection_hidden,
        projection_dim=cfg.projection_dim,
    ).to(device, memory_format=layout)
    optimizer = build_optimizer(cfg, method.parameters())
    generator = torch.Generator(device).manual_seed(0)
    order = epoch_order(len(images), 0, 0).to(device)
    position = {"i": 0}

    def next_batch() -> torch.Tensor:
        i = position["i"] % (len(images) // batch)
        position["i"] += 1
        return images.index_select(0, order[i * batch : (i + 1) * batch])

    def full_step() -> None:
        pretrain_step(method, optimizer, next_batch(), aug, generator, bf16)

    def views_step() -> None:
        make_views(next_batch(), aug, generator)

    return full_step, views_step


def test_images(side: int | None, device: torch.device) -> torch.Tensor:
    """uint8 data to draw batches from (the pixel values do not change the cost of any step):
    60,000 MNIST-sized digits, or 4,096 colour images of `side` pixels."""
    shape = (60000, 1, 28, 28) if side is None else (4096, 3, side, side)
    generator = torch.Generator().manual_seed(0)
    return torch.randint(0, 256, shape, dtype=torch.uint8, generator=generator).to(device)


def environment() -> dict:
    """What a figure depends on besides the code: threads, torch version, machine."""
    return {
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "machine": platform.machine(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--bf16", action="store_true", help="bf16 autocast for the forward pass")
    parser.add_argument("--channels-last", action="store_true", help="NHWC model and inputs")
    parser.add_argument("--seconds", type=float, default=9.0, help="timing per configuration")
    parser.add_argument("--configs", default="cnn:32,cnn:256,cnn:512,convnet:256")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    if device.type == "cpu":
        keep_freed_memory()  # as pretrain() does
    rows = []
    for item in args.configs.split(","):
        name, batch, *side = item.split(":")
        images = test_images(int(side[0]) if side else None, device)
        rows.append(
            measure(name, int(batch), images, device, args.seconds, args.bf16, args.channels_last)
        )
    print(
        json.dumps(
            {
                "device": str(device)
                if device.type == "cpu"
                else torch.cuda.get_device_name(device),
                "bf16": args.bf16,
                "channels_last": args.channels_last,
                **environment(),
                "results": rows,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
