"""The decoded-once cache: prepare speed, and pretraining from it against the same images in
memory, with the process's anonymous memory sampled throughout.

    python benchmarks/cache.py [--images 50000] [--small 10000] [--side 96] [--steps 40]

Generates a flat folder of JPEGs (side x side, smooth random colour images), prepares it with
1 and 2 worker processes (seconds, files per second), then runs the real pretraining step
(`batch_feed` + `pretrain_step`, the loop's two calls) for --steps steps from the cache with
all images, from the cache limited to the first --small images (as --limit-train does), and
from the same images held in memory. RssAnon (anonymous resident memory, what a cache must not
grow) is sampled every 20 ms; its peak is reported per phase. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import tempfile
import threading
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from pretext.commands import prepare_command
from pretext.config import PretrainConfig
from pretext.data import epoch_order, load_dataset
from pretext.data.stream import batch_feed
from pretext.distributed import Context
from pretext.train import pretrain_step
from pretext.train.build import build


def rss_anon_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("RssAnon:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class PeakMemory:
    """The highest RssAnon seen while the block runs, sampled on a thread."""

    def __enter__(self):
        self.peak, self.done = rss_anon_mib(), threading.Event()
        self.thread = threading.Thread(target=self.sample, daemon=True)
        self.thread.start()
        return self

    def sample(self) -> None:
        while not self.done.wait(0.02):
            self.peak = max(self.peak, rss_anon_mib())

    def __exit__(self, *_):
        self.done.set()
        self.thread.join()
        self.peak = round(max(self.peak, rss_anon_mib()), 1)


def make_folder(folder: Path, count: int, side: int, seed: int = 0) -> float:
    """`count` JPEGs of smooth random colour images; returns the seconds it took."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    started = time.perf_counter()
    for i in range(count):
        small = Image.fromarray(rng.integers(0, 255, (6, 6, 3)).astype(np.uint8))
        small.resize((side, side), Image.BILINEAR).save(folder / f"{i:06d}.jpg", quality=90)
    return time.perf_counter() - started


def steps_per_second(cfg: PretrainConfig, data, steps: int) -> float:
    """Pretraining steps per second on `data`, the first 5 steps not timed."""
    p = build(cfg, Context(0, 1), torch.device("cpu"))
    p = replace(p, data=data, images=data.images)  # the source under test
    wanted = (steps + 5) * cfg.batch_size  # as many epochs' orders as the steps need
    order = torch.cat([epoch_order(len(data), cfg.seed, e) for e in range(-(-wanted // len(data)))])
    feed = batch_feed(p.images, order, cfg.batch_size, 0, steps + 5, p.device, data.on_disk)
    for i, batch in enumerate(feed):
        if i == 5:
            started = time.perf_counter()
        pretrain_step(p.model, p.optimizer, batch, p.aug, p.generator)
    return steps / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=50_000)
    parser.add_argument("--small", type=int, default=10_000)
    parser.add_argument("--side", type=int, default=96)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--encoder", default="convnet")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    work = Path(tempfile.mkdtemp(prefix="pretext-cache-bench-"))
    try:
        print(json.dumps(measure(args, work), indent=1))
    finally:
        shutil.rmtree(work, ignore_errors=True)


def measure(args, work: Path) -> dict:
    folder = work / "photos"
    machine = f"{platform.machine()}, {os.cpu_count()} cores"
    result = {"images": args.images, "side": args.side, "machine": machine}
    result["generate_seconds"] = round(make_folder(folder, args.images, args.side), 1)
    for workers in (1, 2):
        started = time.perf_counter()
        cache = work / f"cache-{workers}"
        prepare_command(folder, cache, args.side, workers=workers, log=lambda *_: None)
        seconds = time.perf_counter() - started
        result[f"prepare_{workers}_worker_seconds"] = round(seconds, 1)
        result[f"prepare_{workers}_worker_files_per_second"] = round(args.images / seconds)
    result["cache_mib"] = round(sum(f.stat().st_size for f in cache.iterdir()) / 2**20, 1)
    cfg = PretrainConfig(
        dataset=str(cache),
        out=str(work / "run"),
        encoder=args.encoder,
        augment="simclr",
        batch_size=args.batch_size,
        knn_monitor=0,
    )
    data = load_dataset(cache, "train")
    cases = {  # in this order: the copy in memory is made last
        "cache": lambda: data,
        f"cache_first_{args.small}": lambda: data.first(args.small),
        "memory": lambda: replace(data, images=data.images.clone(), on_disk=False),
    }
    for name, source in cases.items():
        with PeakMemory() as memory:
            rate = steps_per_second(cfg, source(), args.steps)
        result[f"{name}_steps_per_second"] = round(rate, 3)
        result[f"{name}_peak_rss_anon_mib"] = memory.peak
    ratio = result["cache_steps_per_second"] / result["memory_steps_per_second"]
    result["cache_vs_memory"] = round(ratio, 3)
    return result


if __name__ == "__main__":
    main()
