"""Where the pretraining step's overhead goes: the model step against the real step and three
partial ones, in alternating rounds in one process (medians, milliseconds per step).

    python benchmarks/step_parts.py [--batch 256] [--rounds 15] [--threads N]

model: encoder forward + backward + Adam on a ready float batch (as throughput.py);
fixed_views: the real step (head, NT-Xent, update) on one view tensor made once;
cycled_views: the same on 8 view tensors made in advance, in turn (does content matter?);
views_then_fixed: making views, then the fixed-view step (the views' cost inside a step);
full: the real step; views_alone: making views and nothing else.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
from throughput import environment  # benchmarks/ is on sys.path when run as a script

from pretext.allocator import keep_freed_memory
from pretext.augment import make_views, preset
from pretext.config import PretrainConfig
from pretext.data import epoch_order
from pretext.methods import build_method
from pretext.models import build_encoder
from pretext.train import build_optimizer, pretrain_step


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
    batch, cfg = args.batch, PretrainConfig(batch_size=args.batch)
    aug = preset(cfg.augment)
    images = torch.randint(
        0, 256, (60000, 1, 28, 28), dtype=torch.uint8, generator=torch.Generator().manual_seed(0)
    )
    order = epoch_order(len(images), 0, 0)
    position = {"i": 0}

    def next_batch() -> torch.Tensor:
        i = position["i"] = (position["i"] + 1) % (len(images) // batch)
        return images.index_select(0, order[i * batch : (i + 1) * batch])

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
    made = [make_views(next_batch(), aug, generator) for _ in range(8)]
    turn = {"j": 0}

    def update(loss: torch.Tensor, opt: torch.optim.Optimizer) -> None:
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    def model() -> None:
        update(encoder(ready).square().mean(), encoder_optimizer)

    def fixed_views() -> None:
        update(method(made[0]), optimizer)

    def cycled_views() -> None:
        turn["j"] = (turn["j"] + 1) % len(made)
        update(method(made[turn["j"]]), optimizer)

    def views_then_fixed() -> None:
        make_views(next_batch(), aug, generator)
        fixed_views()

    def full() -> None:
        pretrain_step(method, optimizer, next_batch(), aug, generator)

    def views_alone() -> None:
        make_views(next_batch(), aug, generator)

    steps = {
        "model": model,
        "fixed_views": fixed_views,
        "cycled_views": cycled_views,
        "views_then_fixed": views_then_fixed,
        "full": full,
        "views_alone": views_alone,
    }
    for step in steps.values():  # warm-up
        for _ in range(10):
            step()
    ms: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(args.rounds):
        for name, step in steps.items():
            started = time.perf_counter()
            for _ in range(args.steps):
                step()
            ms[name].append(1e3 * (time.perf_counter() - started) / args.steps)
    medians = {name: round(statistics.median(values), 3) for name, values in ms.items()}
    model_ms = medians["model"]
    print(
        json.dumps(
            {
                "batch_size": batch,
                **environment(),
                "ms_per_step": medians,
                "head_and_loss_share": round(medians["fixed_views"] / model_ms - 1, 3),
                "views_in_step_share": round(
                    (medians["views_then_fixed"] - medians["fixed_views"]) / model_ms, 3
                ),
                "overhead": round(medians["full"] / model_ms - 1, 3),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
