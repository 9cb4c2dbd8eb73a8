"""The cnn's convolution gradients on CPU: ATen's backward against the weight gradient computed
as a convolution (`pretext.models.Conv2dFastGrad`), per layer and for the whole training step,
in alternating rounds in one process (medians, milliseconds).

    python benchmarks/conv_grad.py [--batch 512] [--rounds 9] [--threads N]

Layers: `conv1` (1 or 3 input channels, 28x28, no input gradient: it is the network's first
layer) and `conv2` (10 -> 20 channels, 12x12, with the input gradient). `step`: the cnn's
forward, backward and Adam step on a ready batch with `conv1` as a plain nn.Conv2d or as a
Conv2dFastGrad (`conv2` is always the latter). `cnn_conv1` says which the cnn builds on this
machine for 1 and 3 input channels (`pretext.models.first_conv_grad_by_conv`).
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import time

import torch
import torch.nn.functional as F
from throughput import environment  # benchmarks/ is on sys.path when run as a script

from pretext.models import Conv2dFastGrad, SmallCNN, first_conv_grad_by_conv


def milliseconds(work, repeats: int) -> float:
    """Mean milliseconds of `work()` over `repeats` calls, after two warm-up calls."""
    work(), work()
    started = time.perf_counter()
    for _ in range(repeats):
        work()
    return 1000 * (time.perf_counter() - started) / repeats


def layer_work(batch: int, cin: int, cout: int, side: int, input_grad: bool) -> dict:
    """Both ways of one layer's backward (its gradients from a given output gradient)."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(batch, cin, side, side, generator=g)
    weight = torch.randn(cout, cin, 5, 5, generator=g)
    grad = torch.randn(batch, cout, side - 4, side - 4, generator=g)
    mask = [input_grad, True, True]

    def aten():
        torch.ops.aten.convolution_backward(
            grad, x, weight, [cout], [1, 1], [0, 0], [1, 1], False, [0, 0], 1, mask
        )

    def by_conv():
        if input_grad:
            F.conv_transpose2d(grad, weight)
        F.conv2d(x.transpose(0, 1), grad.transpose(0, 1))
        grad.sum((0, 2, 3))

    return {"aten": aten, "by_conv": by_conv}


def step_work(batch: int) -> dict:
    """The cnn's training step with conv1 plain and as Conv2dFastGrad, the same weights."""
    x = torch.randn(batch, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    reference, work = SmallCNN(), {}
    for name, kind in (("aten", torch.nn.Conv2d), ("by_conv", Conv2dFastGrad)):
        model = copy.deepcopy(reference)
        model.conv1 = kind(1, 10, kernel_size=5)
        model.conv1.load_state_dict(reference.conv1.state_dict())
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)

        def step(model=model, optimizer=optimizer):
            optimizer.zero_grad(set_to_none=True)
            model(x).square().mean().backward()
            optimizer.step()

        work[name] = step
    return work


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=512, help="images per step (2 x 256 views)")
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--repeats", type=int, default=10, help="calls per round")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    cases = {
        "conv1": layer_work(args.batch, 1, 10, 28, input_grad=False),
        "conv1_rgb": layer_work(args.batch, 3, 10, 28, input_grad=False),
        "conv2": layer_work(args.batch, 10, 20, 12, input_grad=True),
        "step": step_work(args.batch),
    }
    times = {case: {way: [] for way in ways} for case, ways in cases.items()}
    for _ in range(args.rounds):
        for case, ways in cases.items():
            for way, work in ways.items():
                times[case][way].append(milliseconds(work, args.repeats))
    medians = {
        case: {way: round(statistics.median(t), 2) for way, t in ways.items()}
        for case, ways in times.items()
    }
    for figures in medians.values():
        figures["by_conv_speedup"] = round(figures["aten"] / figures["by_conv"], 2)
    print(
        json.dumps(
            {
                "batch": args.batch,
                "rounds": args.rounds,
                "cpu_capability": torch.backends.cpu.get_cpu_capability(),
                "cnn_conv1": {
                    channels: "by_conv" if first_conv_grad_by_conv(channels) else "aten"
                    for channels in (1, 3)
                },
                "ms": medians,
                **environment(),
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
