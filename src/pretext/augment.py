"""Batched augmentations: every random parameter is drawn per image, for a whole batch at once,
from an explicit `torch.Generator` on the batch's device. No Python loop over images.

Views are made in [0, 1] pixel space and normalised last, so one preset works for any source.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from pretext.errors import PretextError


@dataclass(frozen=True)
class Augmentation:
    """A recipe for random views. Zero strengths switch a step off."""

    pixel_scale: float = 1.0  # the seed recipe feeds 0-255 pixels, as the original did
    mean: float = 0.0
    std: float = 1.0
    keep_first_view: bool = False  # seed recipe: pair the untouched image with one view
    cutout_size: int = 0  # a square patch of mid-grey at a random position
    rotate90: bool = False  # a fixed quarter turn, as in the original
    degrees: float = 0.0  # random affine: rotation range (+-), translation fraction,
    translate: float = 0.0  # zoom range (a random resized crop for digits), shear (+-)
    scale: tuple[float, float] = (1.0, 1.0)
    shear: float = 0.0
    contrast: float = 0.0  # multiply by U(1 - c, 1 + c)
    erase_p: float = 0.0  # random erasing: probability and area range
    erase_area: tuple[float, float] = (0.02, 0.15)
    noise_p: float = 0.0  # additive zero-mean noise: probability and standard deviation
    noise_std: float = 0.0


PRESETS: dict[str, Augmentation] = {
    "seed": Augmentation(pixel_scale=255.0, keep_first_view=True, cutout_size=9, rotate90=True),
    "default": Augmentation(
        mean=0.1307,
        std=0.3081,
        degrees=20,
        translate=0.12,
        scale=(0.75, 1.15),
        shear=15,
        contrast=0.4,
        erase_p=0.5,
        noise_p=0.5,
        noise_std=0.15,
    ),
    "light": Augmentation(
        mean=0.1307, std=0.3081, degrees=12, translate=0.1, scale=(0.9, 1.1), shear=8
    ),
    "none": Augmentation(mean=0.1307, std=0.3081),
    "seed-none": Augmentation(pixel_scale=255.0),
}


def preset(name: str) -> Augmentation:
    if name not in PRESETS:
        raise PretextError(f"unknown augmentation {name!r}: use one of {', '.join(PRESETS)}")
    return PRESETS[name]


def uniform(
    n: int, low: float, high: float, gen: torch.Generator, device: torch.device
) -> torch.Tensor:
    return low + (high - low) * torch.rand(n, generator=gen, device=device)


def to_unit(images: torch.Tensor) -> torch.Tensor:
    """uint8 0-255 -> float 0-1."""
    return images.float().div_(255.0)


def normalise(x: torch.Tensor, aug: Augmentation) -> torch.Tensor:
    """[0, 1] pixels -> the network's input scale."""
    gain, shift = aug.pixel_scale / aug.std, -aug.mean / aug.std
    if gain == 1.0 and shift == 0.0:
        return x
    return x.mul(gain).add_(shift)


def to_input(images: torch.Tensor, aug: Augmentation) -> torch.Tensor:
    """uint8 batch -> network input without randomness (evaluation)."""
    return normalise(to_unit(images), aug)


def cutout(x: torch.Tensor, size: int, fill: float, gen: torch.Generator) -> torch.Tensor:
    """A size x size square of `fill` at a random top-left in 0..H-size, per image."""
    n, _, h, w = x.shape
    top = torch.randint(0, h - size + 1, (n, 1), generator=gen, device=x.device)
    left = torch.randint(0, w - size + 1, (n, 1), generator=gen, device=x.device)
    rows = torch.arange(h, device=x.device)
    cols = torch.arange(w, device=x.device)
    in_rows = (rows >= top) & (rows < top + size)
    in_cols = (cols >= left) & (cols < left + size)
    mask = (in_rows[:, :, None] & in_cols[:, None, :]).unsqueeze(1)
    return x.masked_fill(mask, fill)


def random_affine(
    x: torch.Tensor,
    gen: torch.Generator,
    degrees: float,
    translate: float,
    scale: tuple[float, float],
    shear: float,
) -> torch.Tensor:
    """Rotation, shear, zoom and shift in one grid_sample; outside pixels become 0 (background)."""
    n, device = x.shape[0], x.device
    angle = uniform(n, -degrees, degrees, gen, device) * (math.pi / 180)
    shear_x = uniform(n, -shear, shear, gen, device) * (math.pi / 180)
    zoom = uniform(n, scale[0], scale[1], gen, device)
    shift = uniform(2 * n, -translate, translate, gen, device).view(n, 2) * 2
    cos, sin, tan = torch.cos(angle), torch.sin(angle), torch.tan(shear_x)
    # The matrix maps output to input coordinates: dividing by zoom enlarges the content.
    a, b = cos / zoom, (cos * tan - sin) / zoom
    c, d = sin / zoom, (sin * tan + cos) / zoom
    # The sampling grid, as F.affine_grid(align_corners=False) would make it, but by broadcasting:
    # affine_grid's batched matrix product is the slowest part on CPU.
    h, w = x.shape[-2:]
    xs = ((torch.arange(w, device=device, dtype=x.dtype) * 2 + 1) / w - 1).view(1, 1, w)
    ys = ((torch.arange(h, device=device, dtype=x.dtype) * 2 + 1) / h - 1).view(1, h, 1)
    grid_x = a.view(n, 1, 1) * xs + b.view(n, 1, 1) * ys + shift[:, 0].view(n, 1, 1)
    grid_y = c.view(n, 1, 1) * xs + d.view(n, 1, 1) * ys + shift[:, 1].view(n, 1, 1)
    grid = torch.stack([grid_x, grid_y], dim=-1)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def random_erasing(
    x: torch.Tensor, gen: torch.Generator, p: float, area: tuple[float, float]
) -> torch.Tensor:
    """With probability p per image, zero a rectangle covering `area` of it (random aspect)."""
    n, _, h, w = x.shape
    device = x.device
    frac = uniform(n, area[0], area[1], gen, device)
    aspect = torch.exp(uniform(n, math.log(0.3), math.log(3.3), gen, device))
    eh = (torch.sqrt(frac * aspect) * h).clamp(1, h)
    ew = (torch.sqrt(frac / aspect) * w).clamp(1, w)
    top = torch.rand(n, generator=gen, device=device) * (h - eh)
    left = torch.rand(n, generator=gen, device=device) * (w - ew)
    apply = (torch.rand(n, generator=gen, device=device) < p).to(x.dtype)
    rows = torch.arange(h, device=device, dtype=x.dtype).view(1, h)
    cols = torch.arange(w, device=device, dtype=x.dtype).view(1, w)
    in_rows = ((rows >= top[:, None]) & (rows < (top + eh)[:, None])).to(x.dtype) * apply[:, None]
    in_cols = ((cols >= left[:, None]) & (cols < (left + ew)[:, None])).to(x.dtype)
    # keep = 1 - rows x cols, built by one broadcast product: two passes over the batch.
    erased = in_rows.view(n, 1, h, 1) * in_cols.view(n, 1, 1, w)
    return x.addcmul(x, erased, value=-1.0)


def random_contrast(x: torch.Tensor, gen: torch.Generator, strength: float) -> torch.Tensor:
    factor = uniform(x.shape[0], 1 - strength, 1 + strength, gen, x.device).view(-1, 1, 1, 1)
    return (x * factor).clamp_(0, 1)


def random_noise(x: torch.Tensor, gen: torch.Generator, p: float, std: float) -> torch.Tensor:
    """Zero-mean uniform noise with standard deviation `std` on round(p * N) random images.

    Uniform rather than Gaussian, and drawn only for the chosen images (a count fixed in
    advance, so no host sync on GPU): drawing random numbers is the dearest step on CPU."""
    count = round(p * x.shape[0])
    if count == 0:
        return x
    chosen = torch.randperm(x.shape[0], generator=gen, device=x.device)[:count]
    noise = torch.rand((count, *x.shape[1:]), generator=gen, device=x.device, dtype=x.dtype)
    noise = noise.mul_(2 * std * math.sqrt(3.0)).sub_(std * math.sqrt(3.0))
    return x.index_add(0, chosen, noise).clamp_(0, 1)


def augment(x: torch.Tensor, aug: Augmentation, gen: torch.Generator) -> torch.Tensor:
    """One random view of a float [0, 1] batch, still in [0, 1]."""
    if aug.degrees or aug.translate or aug.shear or aug.scale != (1.0, 1.0):
        x = random_affine(x, gen, aug.degrees, aug.translate, aug.scale, aug.shear)
    if aug.contrast:
        x = random_contrast(x, gen, aug.contrast)
    if aug.cutout_size:
        x = cutout(x, aug.cutout_size, 0.5, gen)
    if aug.rotate90:
        x = torch.rot90(x, 1, [-2, -1])
    if aug.erase_p:
        x = random_erasing(x, gen, aug.erase_p, aug.erase_area)
    if aug.noise_p:
        x = random_noise(x, gen, aug.noise_p, aug.noise_std)
    return x


def make_views(
    images: torch.Tensor, aug: Augmentation, gen: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Two normalised views of a uint8 batch, ready for the encoder.

    Both views are made in one pass over a doubled batch (independent parameters per row):
    half the kernel launches of two passes, which matters on GPU and for small batches."""
    x = to_unit(images)
    if aug.keep_first_view:
        return normalise(x, aug), normalise(augment(x, aug, gen), aug)
    both = normalise(augment(torch.cat([x, x]), aug, gen), aug)
    return both[: len(x)], both[len(x) :]


def make_view(images: torch.Tensor, aug: Augmentation, gen: torch.Generator) -> torch.Tensor:
    """One normalised random view of a uint8 batch (supervised training)."""
    return normalise(augment(to_unit(images), aug, gen), aug)
