"""Batches for the training step, in a given order. Images in memory are indexed where they
are (on the device); images over a cache's memory map are gathered on a background thread,
a few batches ahead of the step, and copied to the device from pinned memory, so that the
step waits on the disk only when the disk cannot keep up."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator

import numpy as np
import torch

AHEAD = 4  # batches gathered ahead of the step


def gather(images: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
    """images[indices], read in ascending row order (the disk's order), returned in the
    order asked for: the same batch as indexing in memory. NumPy copies the rows: a torch
    op on this thread would start a second OpenMP team that spins beside the step's."""
    ascending, where = indices.sort()
    rows = np.take(images.numpy(), ascending.numpy(), axis=0)
    return torch.from_numpy(rows[where.argsort().numpy()])


def batch_feed(
    images: torch.Tensor,
    order: torch.Tensor,
    batch_size: int,
    first: int,
    count: int,
    device: torch.device,
    from_disk: bool = False,
) -> Iterator[torch.Tensor]:
    """Batches first..count-1 of `order` (batch i: order[i*b:(i+1)*b]) as uint8 on `device`;
    `from_disk`: `images` map a cache's file (gathered on a background thread)."""
    if not from_disk:
        order = order.to(device)
        for i in range(first, count):
            yield images.index_select(0, order[i * batch_size : (i + 1) * batch_size])
        return
    yield from streamed(images, order.cpu(), batch_size, first, count, device)


def streamed(images, order, batch_size, first, count, device) -> Iterator[torch.Tensor]:
    """The background gatherer: at most AHEAD batches in flight, stopped with the consumer."""
    ready: queue.Queue = queue.Queue(maxsize=AHEAD)
    stop = threading.Event()
    pin = device.type == "cuda"

    def produce() -> None:
        try:
            for i in range(first, count):
                batch = gather(images, order[i * batch_size : (i + 1) * batch_size])
                item = batch.pin_memory() if pin else batch
                while not stop.is_set():
                    try:
                        ready.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
        except BaseException as exc:  # handed to the consumer, raised in the training loop
            ready.put(exc)

    worker = threading.Thread(target=produce, name="pretext-batches", daemon=True)
    worker.start()
    try:
        for _ in range(first, count):
            item = ready.get()
            if isinstance(item, BaseException):
                raise item
            yield item.to(device, non_blocking=pin)
    finally:
        stop.set()
        worker.join()
