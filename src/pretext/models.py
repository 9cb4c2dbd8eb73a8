"""Encoders (image -> embedding) and heads. Every encoder exposes `embed_dim`."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from pretext.errors import PretextError


class SmallCNN(nn.Module):
    """The original write-up's encoder: conv(1->10,k5)-relu-pool, conv(10->20,k5)-relu-pool,
    fc(320->100)-relu. 37,380 parameters for 1x28x28 input."""

    def __init__(self, in_channels: int = 1, embed_dim: int = 100, width: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 10 * width, kernel_size=5)
        self.conv2 = nn.Conv2d(10 * width, 20 * width, kernel_size=5)
        self.fc = nn.Linear(4 * 4 * 20 * width, embed_dim)
        self.embed_dim = embed_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        return F.relu(self.fc(x.flatten(1)))


class ConvNet(nn.Module):
    """A larger encoder with batch norm: four 3x3 conv blocks (32-64-128 channels), global
    average pooling, 128-d embedding. About 10x the compute of `cnn`; still CPU-friendly."""

    def __init__(self, in_channels: int = 1, embed_dim: int = 128) -> None:
        super().__init__()

        def block(cin: int, cout: int) -> nn.Sequential:
            return nn.Sequential(
                nn.Conv2d(cin, cout, 3, padding=1, bias=False),
                nn.BatchNorm2d(cout),
                nn.ReLU(inplace=True),
            )

        self.features = nn.Sequential(
            block(in_channels, 32),
            nn.MaxPool2d(2),  # 14x14
            block(32, 64),
            nn.MaxPool2d(2),  # 7x7
            block(64, 128),
            block(128, embed_dim),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        self.embed_dim = embed_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)


ENCODERS = {
    "cnn": lambda channels: SmallCNN(channels),
    "cnn-wide": lambda channels: SmallCNN(channels, width=2),
    "convnet": lambda channels: ConvNet(channels),
}


def build_encoder(name: str, in_channels: int = 1, image_size: int = 28) -> nn.Module:
    """An encoder by name; `cnn` and `cnn-wide` need 28x28 inputs (their fc layer is fixed)."""
    if name not in ENCODERS:
        raise PretextError(f"unknown encoder {name!r}: use one of {', '.join(ENCODERS)}")
    if name.startswith("cnn") and image_size != 28:
        raise PretextError(
            f"encoder {name!r} needs 28x28 images, got {image_size}x{image_size}; use convnet"
        )
    return ENCODERS[name](in_channels)


class ProjectionHead(nn.Module):
    """SimCLR's MLP head: the loss acts on its output; transfer uses the encoder below it."""

    def __init__(self, in_dim: int, hidden_dim: int, out_dim: int) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(in_dim, hidden_dim),
            nn.BatchNorm1d(hidden_dim),
            nn.ReLU(inplace=True),
            nn.Linear(hidden_dim, out_dim),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class Classifier(nn.Module):
    """Encoder + Linear(embed, classes), as the original's downstream model."""

    def __init__(self, encoder: nn.Module, num_classes: int) -> None:
        super().__init__()
        self.encoder = encoder
        self.linear = nn.Linear(encoder.embed_dim, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(self.encoder(x))


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
