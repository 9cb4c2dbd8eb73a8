"""Encoders (image -> embedding) and heads. Every encoder exposes `embed_dim`."""

from __future__ import annotations

import importlib
import inspect

import torch
import torch.nn.functional as F
from torch import nn

from pretext.errors import PretextError
from pretext.resnet import RESNETS, resnet


def building_a_graph() -> bool:
    """True while tracing, scripting, exporting to ONNX or compiling: the fast CPU layers below
    step aside then, so that exported and compiled models hold plain, portable operators."""
    return (
        torch.jit.is_tracing()
        or torch.jit.is_scripting()
        or torch.onnx.is_in_onnx_export()
        or torch.compiler.is_compiling()
    )


def _window_maxima(x: torch.Tensor):
    """The four corners of every 2x2 window, as strided views, and the pairwise maxima."""
    x00, x01 = x[..., 0::2, 0::2], x[..., 0::2, 1::2]
    x10, x11 = x[..., 1::2, 0::2], x[..., 1::2, 1::2]
    return x00, x01, x10, x11, torch.maximum(x00, x01), torch.maximum(x10, x11)


class _MaxPool2x2(torch.autograd.Function):
    """F.max_pool2d(x, 2) on even H, W, values and gradients alike: the gradient goes to the
    first maximum of a window in row-major order, as ATen's does. ATen's CPU kernel for NCHW
    walks one window at a time; four strided views are much faster."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        x00, x01, x10, x11, top, bottom = _window_maxima(x)
        ctx.save_for_backward(x00 >= x01, x10 >= x11, top >= bottom)
        return torch.maximum(top, bottom)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        left_top, left_bottom, top_wins = ctx.saved_tensors
        top = grad * top_wins  # the gradient of windows won by their top row, else 0
        bottom = grad - top
        # Each corner's gradient is written straight into its strided place in the result
        # (a (n, c, h, 2, w, 2) view of it): no interleaving copies.
        n, c, h, w = grad.shape
        out = grad.new_empty(n, c, h, 2, w, 2)
        torch.mul(top, left_top, out=out[:, :, :, 0, :, 0])
        torch.sub(top, out[:, :, :, 0, :, 0], out=out[:, :, :, 0, :, 1])
        torch.mul(bottom, left_bottom, out=out[:, :, :, 1, :, 0])
        torch.sub(bottom, out[:, :, :, 1, :, 0], out=out[:, :, :, 1, :, 1])
        return out.view(n, c, 2 * h, 2 * w)


def max_pool2x2(x: torch.Tensor) -> torch.Tensor:
    """2x2 max pooling, stride 2: on CPU for even sizes from strided views (same values and
    gradients as F.max_pool2d, five times faster forward); F.max_pool2d elsewhere, and while
    tracing or exporting, so that exported models hold a plain MaxPool."""
    if (
        building_a_graph()  # first: while tracing, the size checks below would warn
        or x.device.type != "cpu"
        or x.dim() != 4
        or x.shape[-1] % 2
        or x.shape[-2] % 2
    ):
        return F.max_pool2d(x, 2)
    if torch.is_grad_enabled() and x.requires_grad:
        return _MaxPool2x2.apply(x)
    *_, top, bottom = _window_maxima(x)
    return torch.maximum(top, bottom)


class MaxPool2x2(nn.Module):
    """max_pool2x2 as a layer, for encoders built as nn.Sequential."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return max_pool2x2(x)


class _Conv2dGradByConv(torch.autograd.Function):
    """F.conv2d (stride 1, no groups or dilation) whose backward computes the weight gradient
    as a convolution too: of the inputs with the batch as channels, by the output gradients
    (sum over images and positions of input patch x output gradient), and the input gradient
    as a transposed convolution. ATen's CPU backward of the cnn's second convolution runs far
    slower than its forward; this one is faster. The same gradients up to float32 rounding."""

    @staticmethod
    def forward(ctx, x, weight, bias, padding):
        ctx.save_for_backward(x, weight)
        ctx.padding = padding
        return F.conv2d(x, weight, bias, padding=padding)

    @staticmethod
    def backward(ctx, grad):
        x, weight = ctx.saved_tensors
        grad_x = grad_weight = grad_bias = None
        if ctx.needs_input_grad[0]:
            grad_x = F.conv_transpose2d(grad, weight, padding=ctx.padding)
        if ctx.needs_input_grad[1]:
            by_channel = F.conv2d(x.transpose(0, 1), grad.transpose(0, 1), padding=ctx.padding)
            grad_weight = by_channel.transpose(0, 1)
        if ctx.needs_input_grad[2]:
            grad_bias = grad.sum((0, 2, 3))
        return grad_x, grad_weight, grad_bias, None


class Conv2dFastGrad(nn.Conv2d):
    """nn.Conv2d (same parameters and state dict) with a faster training step on CPU: see
    _Conv2dGradByConv. Plain F.conv2d on GPU, for other dtypes, under autocast, without
    gradients, while tracing, exporting or compiling, and for strides, dilations, groups or
    padding modes it does not cover."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if (
            x.device.type != "cpu"
            or x.dtype != torch.float32
            or not torch.is_grad_enabled()
            or torch.is_autocast_enabled("cpu")
            or not (x.requires_grad or self.weight.requires_grad)
            or self.stride != (1, 1)
            or self.dilation != (1, 1)
            or self.groups != 1
            or self.padding_mode != "zeros"
            or isinstance(self.padding, str)
            or building_a_graph()
        ):
            return super().forward(x)
        return _Conv2dGradByConv.apply(x, self.weight, self.bias, self.padding)


def first_conv_grad_by_conv(in_channels: int = 1) -> bool:
    """Whether the cnn's first convolution computes its weight gradient as a convolution too
    (Conv2dFastGrad), as its second does. Which is faster depends on the CPU's oneDNN kernels:
    on an AVX2 machine the convolution takes a third of ATen's time for one input channel
    and about as long for three; ATen's stays on AVX-512 CPUs and for colour input
    (benchmarks/conv_grad.py measures both on the machine at hand)."""
    return in_channels == 1 and torch.backends.cpu.get_cpu_capability() != "AVX512"


class SmallCNN(nn.Module):
    """The original write-up's encoder: conv(1->10,k5)-relu-pool, conv(10->20,k5)-relu-pool,
    fc(320->100)-relu. 37,380 parameters for 1x28x28 input.

    With `batch_norm`, each layer's output is batch-normalised before its ReLU (260 more
    parameters): no embedding unit stays dead and frozen features classify better, though the
    same network fine-tuned from random weights gains as much (BENCHMARKS.md)."""

    def __init__(
        self, in_channels: int = 1, embed_dim: int = 100, width: int = 1, batch_norm: bool = False
    ) -> None:
        super().__init__()
        first = Conv2dFastGrad if first_conv_grad_by_conv(in_channels) else nn.Conv2d
        self.conv1 = first(in_channels, 10 * width, kernel_size=5)
        self.conv2 = Conv2dFastGrad(10 * width, 20 * width, kernel_size=5)
        self.fc = nn.Linear(4 * 4 * 20 * width, embed_dim)
        # None registers no module: the plain cnn keeps its three layers and state_dict keys.
        self.norm1 = nn.BatchNorm2d(10 * width) if batch_norm else None
        self.norm2 = nn.BatchNorm2d(20 * width) if batch_norm else None
        self.norm3 = nn.BatchNorm1d(embed_dim) if batch_norm else None
        self.embed_dim = embed_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # relu(pool(x)) is pool(relu(x)) exactly, values and gradients (ReLU keeps the order of
        # positive values and sends every other to 0), on a quarter of the elements.
        x = F.relu(max_pool2x2(normalised(self.norm1, self.conv1(x))))
        x = F.relu(max_pool2x2(normalised(self.norm2, self.conv2(x))))
        return F.relu(normalised(self.norm3, self.fc(x.flatten(1))))


def normalised(norm: nn.Module | None, x: torch.Tensor) -> torch.Tensor:
    return x if norm is None else norm(x)


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
            MaxPool2x2(),  # 14x14
            block(32, 64),
            MaxPool2x2(),  # 7x7
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
    "cnn-bn": lambda channels: SmallCNN(channels, batch_norm=True),
    "cnn-wide": lambda channels: SmallCNN(channels, width=2),
    "convnet": lambda channels: ConvNet(channels),
}
ENCODER_NAMES = (*ENCODERS, *RESNETS)  # resnets take the image size too (for their stem)


def build_encoder(
    name: str, in_channels: int = 1, image_size: int = 28, seed: int | None = None
) -> nn.Module:
    """An encoder by name; `cnn`, `cnn-bn` and `cnn-wide` need 28x28 inputs (their fc layer is
    fixed).

    With `seed`, its random initialisation is the one `torch.manual_seed(seed)` would give, drawn
    without changing the caller's global random state (the from-scratch baselines: the same
    weights for a seed whatever ran before, and nothing else in the process disturbed)."""
    if seed is not None:
        return seeded(seed, lambda: build_encoder(name, in_channels, image_size))
    if ":" in name:
        return imported_encoder(name, in_channels, image_size)
    if name in RESNETS:
        return resnet(name, in_channels, image_size)
    if name not in ENCODERS:
        raise PretextError(
            f"unknown encoder {name!r}: use one of {', '.join(ENCODER_NAMES)}, or your own as "
            "'module:callable'"
        )
    if name.startswith("cnn") and image_size != 28:
        raise PretextError(
            f"encoder {name!r} needs 28x28 images, got {image_size}x{image_size}: use the convnet "
            "encoder, or resize the images to 28 (--image-size 28)"
        )
    return ENCODERS[name](in_channels)


def imported_encoder(spec: str, in_channels: int, image_size: int) -> nn.Module:
    """A user's own encoder, named 'package.module:callable' (a class, or a function that
    returns an nn.Module), called with whichever of `in_channels` and `image_size` it takes.

    The name is what the run directory records, so every command that rebuilds the encoder
    (resuming, evaluation, the from-scratch baselines) builds the same architecture from it,
    when the user names it again. The module is found on Python's path only (PYTHONPATH, an
    installed package), never implicitly in the current directory, which may be a run folder
    from elsewhere. Without an `embed_dim` attribute, the embedding's size is measured."""
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise PretextError(f"encoder {spec!r}: write your own encoder as 'module:callable'")
    try:
        factory = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as err:
        hint = (
            f" (add the folder that holds {module_name.split('.')[0]} to PYTHONPATH, e.g. "
            "PYTHONPATH=. pretext ...)"
            if isinstance(err, ModuleNotFoundError)
            else ""
        )
        raise PretextError(f"cannot load encoder {spec!r}: {err}{hint}") from None
    parameters = inspect.signature(factory).parameters
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())
    offered = {"in_channels": in_channels, "image_size": image_size}
    encoder = factory(**{k: v for k, v in offered.items() if takes_any or k in parameters})
    if not isinstance(encoder, nn.Module):
        raise PretextError(f"encoder {spec!r} gave a {type(encoder).__name__}, not an nn.Module")
    if not isinstance(getattr(encoder, "embed_dim", None), int):
        encoder.embed_dim = measured_embed_dim(encoder, spec, in_channels, image_size)
    return encoder


def measured_embed_dim(encoder: nn.Module, spec: str, in_channels: int, image_size: int) -> int:
    """The size of the (N, D) embedding `encoder` gives a blank batch of two images."""
    was_training = encoder.training
    encoder.eval()
    with torch.no_grad():
        out = encoder(torch.zeros(2, in_channels, image_size, image_size))
    encoder.train(was_training)
    if not isinstance(out, torch.Tensor) or out.dim() != 2:
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise PretextError(
            f"encoder {spec!r} must map (N, {in_channels}, {image_size}, {image_size}) images "
            f"to (N, D) embeddings; it gave {shape}"
        )
    return out.shape[1]


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

    def __init__(self, encoder: nn.Module, num_classes: int, seed: int | None = None) -> None:
        super().__init__()
        self.encoder = encoder
        if seed is None:
            self.linear = nn.Linear(encoder.embed_dim, num_classes)
        else:
            self.linear = seeded_linear(encoder.embed_dim, num_classes, seed)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(self.encoder(x))


def seeded(seed: int, build):
    """`build()` with the random draws `torch.manual_seed(seed)` would give it, the caller's
    global random state left as it was: a module built with a seed is the same whatever ran
    before it in the process, and disturbs nothing after it."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build()


def seeded_linear(in_features: int, out_features: int, seed: int) -> nn.Linear:
    """nn.Linear initialised from `seed` (see `seeded`): the new layer of a fine-tune or probe."""
    return seeded(seed, lambda: nn.Linear(in_features, out_features))


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
