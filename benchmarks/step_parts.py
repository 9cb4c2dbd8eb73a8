"""Where the pretraining step's overhead goes: the model step against the real step and three
partial ones, in alternating rounds in one process (medians, milliseconds per step).

    python benchmarks/step_parts.py [--batch 256] [--rounds 15] [--threads N]

model: encoder forward + backward + Adam on a ready float batch (as throughput.py);
fixed_views: the real step (head, NT-Xent, update) on one view tensor made once;
cycled_views: the same on 8 view tensors made in advance, in turn (does content matter?);
views_then_fixed: making views, then the fixed-view step (the views' cost inside a step);
full: the real step; views_alone: making views and nothing else;
head_and_loss_alone: projection head + NT-Xent + the head's Adam step on a ready embedding;
sampling_alone: the views' bilinear grid_sample alone, on a ready grid.

`floor` is the overhead the step would have if the head, the loss and the views cost inside it
only what they cost alone; `flops` counts the work per step (the encoder's and the head's with
torch's FlopCounterMode, NT-Xent's three (2B x 2B x D) products by their formula: the counter does
not see its hand-written backward).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
import torch.nn.functional as F
from throughput import environment  # benchmarks/ is on sys.path when run as a script
from torch import Tensor, nn
from torch.utils.flop_counter import FlopCounterMode

from pretext.allocator import keep_freed_memory
from pretext.augment import make_views, preset
from pretext.config import PretrainConfig
from pretext.data import epoch_order
from pretext.methods import build_method
from pretext.models import build_encoder
from pretext.train import build_optimizer, pretrain_step
from pretext.train.build import with_method_options


def batches(batch: int):
    """An endless cycle of random uint8 digit batches in one epoch's order."""
    images = torch.randint(
        0, 256, (60000, 1, 28, 28), dtype=torch.uint8, generator=torch.Generator().manual_seed(0)
    )
    order = epoch_order(len(images), 0, 0)
    while True:
        for i in range(len(images) // batch):
            yield images.index_select(0, order[i * batch : (i + 1) * batch])


def update(loss: torch.Tensor, opt: torch.optim.Optimizer) -> None:
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()


def step_variants(cfg: PretrainConfig, batch: int) -> tuple[dict, nn.Module, nn.Module, Tensor]:
    """The steps compared, by name (see the module's docstring), with the plain encoder and the
    SimCLR method they train."""
    aug, stream = preset(cfg.augment), batches(batch)
    torch.manual_seed(0)
    encoder = build_encoder(cfg.encoder)
    encoder_optimizer = build_optimizer(cfg, encoder.parameters())
    ready = torch.randn(2 * batch, 1, 28, 28)
    method = build_method(
        "simclr",
        build_encoder(cfg.encoder),
        temperature=cfg.temperature,
        projection_hidden=cfg.projection_hidden,
        projection_dim=cfg.projection_dim,
    )
    optimizer = build_optimizer(cfg, method.parameters())
    generator = torch.Generator().manual_seed(0)
    made = [make_views(next(stream), aug, generator) for _ in range(8)]
    turn = {"j": 0}

    def cycled_views() -> None:
        turn["j"] = (turn["j"] + 1) % len(made)
        update(method(made[turn["j"]]), optimizer)

    def views_then_fixed() -> None:
        make_views(next(stream), aug, generator)
        update(method(made[0]), optimizer)

    embedding = method.encoder(ready).detach()
    head_optimizer = build_optimizer(cfg, method.head.parameters())
    pixels = torch.rand(2 * batch, 1, 28, 28)
    grid = torch.rand(2 * batch, 28, 28, 2) * 2 - 1
    steps = {
        "model": lambda: update(encoder(ready).square().mean(), encoder_optimizer),
        "fixed_views": lambda: update(method(made[0]), optimizer),
        "cycled_views": cycled_views,
        "views_then_fixed": views_then_fixed,
        "full": lambda: pretrain_step(method, optimizer, next(stream), aug, generator),
        "views_alone": lambda: make_views(next(stream), aug, generator),
        "head_and_loss_alone": lambda: update(
            method.criterion(*method.head(embedding).chunk(2)), head_optimizer
        ),
        "sampling_alone": lambda: F.grid_sample(
            pixels, grid, mode="bilinear", padding_mode="zeros", align_corners=False
        ),
    }
    return steps, encoder, method, ready


def median_ms(steps: dict, rounds: int, per_block: int) -> dict[str, float]:
    """Each step's median milliseconds over `rounds` alternating blocks of `per_block` steps,
    after ten warm-up steps of each."""
    for step in steps.values():
        for _ in range(10):
            step()
    ms: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(rounds):
        for name, step in steps.items():
            started = time.perf_counter()
            for _ in range(per_block):
                step()
            ms[name].append(1e3 * (time.perf_counter() - started) / per_block)
    return {name: round(statistics.median(values), 3) for name, values in ms.items()}


def shares(medians: dict[str, float]) -> dict[str, float]:
    """The overheads, as fractions of the model step's time."""
    model_ms = medians["model"]
    views_in_step = medians["views_then_fixed"] - medians["fixed_views"]
    return {
        "head_and_loss_share": round(medians["fixed_views"] / model_ms - 1, 3),
        "views_in_step_share": round(views_in_step / model_ms, 3),
        "overhead": round(medians["full"] / model_ms - 1, 3),
        "floor": round((medians["head_and_loss_alone"] + medians["views_alone"]) / model_ms, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--steps", type=int, default=40, help="steps per block")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    keep_freed_memory()
    cfg = with_method_options(PretrainConfig(batch_size=args.batch))
    steps, encoder, method, ready = step_variants(cfg, args.batch)
    medians = median_ms(steps, args.rounds, args.steps)
    report = {
        "batch_size": args.batch,
        **environment(),
        "ms_per_step": medians,
        **shares(medians),
        "flops": step_flops(encoder, method, ready, cfg.projection_dim),
    }
    print(json.dumps(report, indent=2))


def step_flops(
    encoder: torch.nn.Module, method: torch.nn.Module, ready: torch.Tensor, dim: int
) -> dict:
    """Floating-point operations of one step's forward + backward: the encoder's, the
    projection head's and NT-Xent's, and the last two as shares of the encoder's."""
    with FlopCounterMode(display=False) as counter:
        encoder(ready).square().mean().backward()
    encoder_flops = counter.get_total_flops()
    embedding = encoder(ready).detach().requires_grad_()
    with FlopCounterMode(display=False) as counter:
        method.head(embedding).square().mean().backward()
    head_flops = counter.get_total_flops()
    # z z^T forward, E [z, D^-1 z] backward: (2B)^2 x 3D multiply-adds
    loss_flops = 2 * len(ready) ** 2 * 3 * dim
    return {
        "encoder": encoder_flops,
        "head": head_flops,
        "nt_xent": loss_flops,
        "head_share": round(head_flops / encoder_flops, 4),
        "nt_xent_share": round(loss_flops / encoder_flops, 4),
    }


if __name__ == "__main__":
    main()
