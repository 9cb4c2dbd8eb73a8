import gzip
import os
import struct
import sys
from pathlib import Path

import numpy as np
import pytest
import torch


@pytest.fixture(autouse=True)
def _no_download(monkeypatch):
    """Tests never reach for the network."""
    monkeypatch.setenv("PRETEXT_NO_DOWNLOAD", "1")


def mnist_dir() -> str | None:
    """MNIST through the documented variable (CI sets it); tests that need it skip without it."""
    root = os.environ.get("PRETEXT_DATA_DIR")
    if root and (Path(root) / "mnist" / "train-images-idx3-ubyte.gz").is_file():
        return root
    return None


needs_mnist = pytest.mark.skipif(mnist_dir() is None, reason="PRETEXT_DATA_DIR holds no mnist/")


def write_idx(path: Path, array: np.ndarray, magic: int, compress: bool = True) -> Path:
    header = struct.pack(">I", magic) + b"".join(struct.pack(">I", d) for d in array.shape)
    data = header + array.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(data) if compress else data)
    return path


def make_idx_set(folder: Path, n_train: int = 64, n_test: int = 32, seed: int = 0) -> Path:
    """A tiny MNIST-shaped data set: class c draws a bright bar at row 2c (learnable)."""
    rng = np.random.default_rng(seed)
    target = folder / "mnist"
    target.mkdir(parents=True)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        labels = np.arange(n) % 10
        images = rng.integers(0, 30, size=(n, 28, 28))
        for i, c in enumerate(labels):
            images[i, 2 * c + 4 : 2 * c + 7, 4:24] = 255
        write_idx(target / f"{prefix}-images-idx3-ubyte.gz", images, 2051)
        write_idx(target / f"{prefix}-labels-idx1-ubyte.gz", labels, 2049)
    return folder


@pytest.fixture
def tiny_data(tmp_path) -> Path:
    return make_idx_set(tmp_path / "data")


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture
def pretrained_run(tiny_data, tmp_path) -> Path:
    """A run directory with a one-epoch pretrained encoder on the tiny data set."""
    from pretext.config import PretrainConfig
    from pretext.train import pretrain

    out = tmp_path / "run"
    pretrain(
        PretrainConfig(data_dir=str(tiny_data), out=str(out), epochs=1, batch_size=16, threads=1)
    )
    return out


def pretrain_cli(data: Path, out: Path, *extra: str, epochs: int = 3) -> list[str]:
    """`python -m pretext pretrain` on `data` into `out`, one thread, as a process runs it."""
    return [
        sys.executable,
        "-m",
        "pretext",
        "pretrain",
        "--data-dir",
        str(data),
        "--out",
        str(out),
        "--epochs",
        str(epochs),
        "--batch-size",
        "8",
        "--threads",
        "1",
        "--checkpoint-every",
        "5",
        *extra,
    ]
