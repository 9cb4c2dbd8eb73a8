"""Batched augmentations: every random parameter is drawn per image, for a whole batch at once,
from an explicit `torch.Generator` on the batch's device. No Python loop over images.

Views are made in [0, 1] pixel space and normalised last, so one preset works for any source;
the presets (`pretext.presets`) say which steps a view takes and how strongly.
"""

from __future__ import annotations

import functools
import math
from dataclasses import replace
from typing import NamedTuple

import torch
import torch.nn.functional as F

from pretext.colour import colour_views, crop_and_flip, random_resized_crop
from pretext.matmul import product_transposed

# The recipes live in pretext.presets; they are imported from here as well, beside the views.
from pretext.presets import PRESETS, Augmentation, preset, with_stats  # noqa: F401


def uniform(
    n: int, low: float, high: float, gen: torch.Generator, device: torch.device
) -> torch.Tensor:
    return low + (high - low) * torch.rand(n, generator=gen, device=device)


def to_unit(images: torch.Tensor) -> torch.Tensor:
    """uint8 0-255 -> float 0-1, in one pass."""
    return images * (1.0 / 255.0)


@functools.lru_cache(maxsize=32)
def channel_factors(
    aug: Augmentation, device: torch.device, dtype: torch.dtype
) -> tuple[torch.Tensor, torch.Tensor]:
    """(1, C, 1, 1) gain and shift of a per-channel normalisation: x * gain + shift; made once
    per device, not every step."""
    gain = [aug.pixel_scale / s for s in aug.std]
    shift = [-m / s for m, s in zip(aug.mean, aug.std, strict=True)]
    as_tensor = lambda v: torch.tensor(v, dtype=dtype).view(1, -1, 1, 1).to(device)  # noqa: E731
    return as_tensor(gain), as_tensor(shift)


def normalise(x: torch.Tensor, aug: Augmentation) -> torch.Tensor:
    """[0, 1] pixels -> the network's input scale."""
    if isinstance(aug.mean, tuple):
        gain, shift = channel_factors(aug, x.device, x.dtype)
        return torch.addcmul(shift, x, gain)
    gain, shift = aug.pixel_scale / aug.std, -aug.mean / aug.std
    if gain == 1.0 and shift == 0.0:
        return x
    return x.mul(gain).add_(shift)


def to_pixels(x: torch.Tensor, aug: Augmentation) -> torch.Tensor:
    """The network's input back to [0, 1] pixels (what a picture of the views shows)."""
    mean, std = aug.mean, aug.std
    if isinstance(mean, tuple):
        mean = torch.tensor(mean, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
        std = torch.tensor(std, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    return ((x * std + mean) / aug.pixel_scale).clamp(0, 1)


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


@functools.lru_cache(maxsize=8)
def output_pixels(h: int, w: int, points: int, device: torch.device) -> torch.Tensor:
    """(h*w, 3 + points^2), the right factor of the sampling grid's product, transposed (one
    row per output pixel, as `product_transposed` takes it): the x, y and 1 of every output
    pixel in grid units (align_corners=False), then, with an elastic lattice of `points` per
    side, the bicubic upsampling of each lattice point to h x w (a displacement field is
    offsets @ these columns' transpose). A constant per image size: made once, not every step."""
    xs = (torch.arange(w, device=device, dtype=torch.float32) * 2 + 1) / w - 1
    ys = (torch.arange(h, device=device, dtype=torch.float32) * 2 + 1) / h - 1
    rows = [xs.repeat(h), ys.repeat_interleave(w), torch.ones(h * w, device=device)]
    pixels = torch.stack(rows)
    if points:
        lattice = torch.eye(points * points, device=device).view(-1, 1, points, points)
        basis = F.interpolate(lattice, size=(h, w), mode="bicubic", align_corners=True)
        pixels = torch.cat([pixels, basis.view(-1, h * w)])
    return pixels.T.contiguous()


def elastic_offsets(n: int, strength: float, points: int, gen: torch.Generator) -> torch.Tensor:
    """(2n, points^2): uniform random displacements of the lattice points of a smooth field,
    rows x0, y0, x1, ...; at most `strength` x the side. Upsampled bicubically (see
    output_pixels) this is Simard et al.'s elastic distortion (the handwriting-like deformation
    behind MNIST's best results) without an h x w Gaussian filter per image."""
    coarse = torch.rand((2 * n, points * points), generator=gen, device=gen.device)
    return coarse.mul_(4 * strength).sub_(2 * strength)  # grid units span 2 per side


def random_affine(
    x: torch.Tensor,
    gen: torch.Generator,
    degrees: float,
    translate: float,
    scale: tuple[float, float],
    shear: float,
    elastic: float = 0.0,
    elastic_points: int = 4,
    hflip: float = 0.0,
) -> torch.Tensor:
    """Rotation, shear, zoom and shift (and an optional elastic distortion and left-right
    mirror, with probability `hflip`) in one grid_sample; outside pixels become 0."""
    n, device = x.shape[0], x.device
    angle = uniform(n, -degrees, degrees, gen, device) * (math.pi / 180)
    shear_x = uniform(n, -shear, shear, gen, device) * (math.pi / 180)
    zoom = uniform(n, scale[0], scale[1], gen, device)
    shift = uniform(2 * n, -translate, translate, gen, device).view(n, 2) * 2
    cos, sin, tan = torch.cos(angle), torch.sin(angle), torch.tan(shear_x)
    # The matrix maps output to input coordinates: dividing by zoom enlarges the content.
    a, b = cos / zoom, (cos * tan - sin) / zoom
    c, d = sin / zoom, (sin * tan + cos) / zoom
    if hflip:  # mirroring the output's x axis negates the coefficients of x
        mirror = 1 - 2 * (torch.rand(n, generator=gen, device=device) < hflip).to(a.dtype)
        a, c = a * mirror, c * mirror
    # The sampling grid, as F.affine_grid(align_corners=False) would make it, but as one
    # (2n x 3) @ (3 x hw) matrix product laid out (n, 2, h, w), which grid_sample reads through
    # a permuted view: 7x faster on CPU than affine_grid's batched product or broadcasting
    # (and through oneDNN half the time of `@`). An elastic field joins the same product: its
    # lattice offsets are more columns of the left factor, the upsampling basis more rows of
    # the right one.
    h, w = x.shape[-2:]
    theta = torch.stack([a, b, shift[:, 0], c, d, shift[:, 1]], dim=1).view(2 * n, 3)
    if elastic:
        theta = torch.cat([theta, elastic_offsets(n, elastic, elastic_points, gen)], dim=1)
    pixels = output_pixels(h, w, elastic_points if elastic else 0, torch.device(device))
    grid = product_transposed(theta.to(x.dtype), pixels.to(x.dtype)).view(n, 2, h, w)
    grid = grid.permute(0, 2, 3, 1)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def erased_area(
    n: int,
    h: int,
    w: int,
    gen: torch.Generator,
    p: float,
    area: tuple[float, float],
) -> torch.Tensor:
    """(n, 1, h, w): 1 inside a random rectangle covering `area` of the image (random aspect),
    drawn for a share p of the images, 0 elsewhere; x - x * this erases them.

    Built as the outer product of a row and a column indicator per image: one pass."""
    device = gen.device
    frac = uniform(n, area[0], area[1], gen, device)
    aspect = torch.exp(uniform(n, math.log(0.3), math.log(3.3), gen, device))
    eh = (torch.sqrt(frac * aspect) * h).clamp(1, h)
    ew = (torch.sqrt(frac / aspect) * w).clamp(1, w)
    top = torch.rand(n, generator=gen, device=device) * (h - eh)
    left = torch.rand(n, generator=gen, device=device) * (w - ew)
    apply = (torch.rand(n, generator=gen, device=device) < p).float()
    rows = torch.arange(h, device=device, dtype=torch.float32).view(1, h)
    cols = torch.arange(w, device=device, dtype=torch.float32).view(1, w)
    in_rows = ((rows >= top[:, None]) & (rows < (top + eh)[:, None])).float()
    in_cols = ((cols >= left[:, None]) & (cols < (left + ew)[:, None])).float()
    return (in_rows * apply[:, None]).view(n, 1, h, 1) * in_cols.view(n, 1, 1, w)


def ink_point(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """(n, 2): the x, y of one pixel centre per image, drawn with the weight of its ink (the
    channels' mean; a blank image: any pixel alike), jittered by up to half a pixel."""
    n, _, h, w = x.shape
    weight = x.mean(1).flatten(1).float()
    cumulative = torch.where(weight.sum(1, keepdim=True) > 0, weight, 1.0).cumsum(1)
    # Inverse-CDF sampling: cheaper than torch.multinomial on CPU (BENCHMARKS.md).
    draw = torch.rand((n, 1), generator=gen, device=x.device) * cumulative[:, -1:]
    pixel = torch.searchsorted(cumulative, draw).squeeze(1).clamp_(max=h * w - 1)
    at = torch.stack([pixel % w, pixel // w], 1).float() + 0.5
    return at + torch.rand((n, 2), generator=gen, device=x.device) - 0.5


def strokes(x: torch.Tensor, aug: Augmentation, gen: torch.Generator) -> torch.Tensor:
    """A line segment of ink (1.0) drawn over a share `aug.stroke_p` of the [0, 1] images,
    crossing the figure: its middle on an inked pixel (`ink_point`), at any angle,
    `aug.stroke_length` of the side long, `aug.stroke_width` pixels wide with a one-pixel soft
    edge. One pass: every pixel's distance to its image's segment, as a batch."""
    n, _, h, w = x.shape
    device, side = x.device, float(min(h, w))
    middle = ink_point(x, gen)
    angle = uniform(n, 0.0, math.pi, gen, device).view(n, 1, 1)
    half = uniform(n, *aug.stroke_length, gen, device).mul_(side / 2).view(n, 1, 1)
    drawn = torch.rand((n, 1, 1), generator=gen, device=device) < aug.stroke_p
    cos, sin = torch.cos(angle), torch.sin(angle)
    dx = torch.arange(w, device=device).add(0.5).view(1, 1, w) - middle[:, :1, None]  # (n, 1, w)
    dy = torch.arange(h, device=device).add(0.5).view(1, h, 1) - middle[:, 1:, None]  # (n, h, 1)
    # Each pixel in the segment's frame: how far past either end along it, how far across it.
    beyond = (dx * cos + dy * sin).abs_().sub_(half).clamp_(min=0)
    across = dx * sin - dy * cos
    ink = (aug.stroke_width / 2 + 0.5 - torch.hypot(beyond, across)).clamp_(0, 1).mul_(drawn)
    ink = ink.unsqueeze(1).to(x.dtype)
    return x + ink * (1 - x)


def noise_draw(
    n: int, shape: tuple[int, ...], p: float, std: float, gen: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Noise for round(p * n) random images (a count fixed in advance: no host sync on GPU):
    their indices, `shape` uniform random bytes each, and the `scale` that makes
    scale x (bytes - 127.5) zero-mean with standard deviation `std`.

    Uniform bytes, eight from every 64-bit random draw: drawing random numbers is the dearest
    step on CPU, and one float per pixel costs six times more. 256 levels are plenty for noise."""
    count = round(p * n)
    chosen = torch.randperm(n, generator=gen, device=gen.device)[:count]
    size = count * math.prod(shape)
    words = torch.empty((size + 7) // 8, dtype=torch.int64, device=gen.device)
    noise = words.random_(-(2**63), None, generator=gen).view(torch.uint8)[:size]
    return chosen, noise.view(count, *shape), std / math.sqrt((256**2 - 1) / 12)


def geometry(x: torch.Tensor, aug: Augmentation, gen: torch.Generator) -> torch.Tensor:
    """The spatial steps: a random resized crop (+ mirror), or random affine (+ elastic, +
    mirror); the seed recipe's patch and quarter turn."""
    if aug.crop_scale is not None:
        n = x.shape[0]
        crops = random_resized_crop(n, aug.crop_scale, aug.crop_ratio, gen)
        flip = torch.rand(n, generator=gen, device=x.device) < aug.hflip
        x = crop_and_flip(x, crops, flip)
    elif (
        aug.degrees
        or aug.translate
        or aug.shear
        or aug.elastic
        or aug.hflip
        or aug.scale != (1.0, 1.0)
    ):
        x = random_affine(
            x,
            gen,
            aug.degrees,
            aug.translate,
            aug.scale,
            aug.shear,
            aug.elastic,
            aug.elastic_points,
            aug.hflip,
        )
    if aug.cutout_size:
        x = cutout(x, aug.cutout_size, 0.5, gen)
    if aug.rotate90:
        x = torch.rot90(x, 1, [-2, -1])
    return x


def photometric(x: torch.Tensor, aug: Augmentation, gen: torch.Generator) -> torch.Tensor:
    """Contrast, erasing and noise on [0, 1] pixels, clamped to [0, 1] once, then normalised.

    The same as contrast, erasing and noise one after the other (up to where contrast and noise
    are clamped; tests/test_augment.py keeps the plain steps as the reference), in about four
    passes over the batch instead of a dozen: contrast is one per-image factor, erasing one
    in-place product; the noise's -1/2 offset and the normalisation are one affine step; the
    clamp moves past the normalisation."""
    n, _, h, w = x.shape
    factor = uniform(n, 1 - aug.contrast, 1 + aug.contrast, gen, x.device) if aug.contrast else None
    # The first step that changes pixels makes a new tensor (x may be the caller's); the others
    # work in place on it, so that no further batch-sized buffer is touched (fresh memory costs
    # cache misses in a step).
    owned = factor is not None
    if owned:
        x = x * factor.view(n, 1, 1, 1).to(x.dtype)
    if aug.erase_p:  # x (1 - E) as x - x E: a three-way broadcast product is twice as slow
        erased = erased_area(n, h, w, gen, aug.erase_p, aug.erase_area).to(x.dtype)
        x = x.addcmul_(x, erased, value=-1) if owned else torch.addcmul(x, x, erased, value=-1)
        owned = True
    offset = torch.zeros(n, device=x.device, dtype=x.dtype)
    if aug.noise_p and round(aug.noise_p * n):
        chosen, noise, scale = noise_draw(n, (x.shape[1], h, w), aug.noise_p, aug.noise_std, gen)
        add_noise = x.index_add_ if owned else x.index_add
        x = add_noise(0, chosen, noise.to(x.dtype), alpha=scale)
        owned = True
        offset[chosen] = -127.5 * scale
    # normalise(clamp(x + offset, 0, 1)) = clamp(gain * (x + offset) + shift, shift, gain + shift)
    if isinstance(aug.mean, tuple):  # a gain and shift per channel
        gain, shift = channel_factors(aug, x.device, x.dtype)
        shifts = torch.addcmul(shift, offset.view(n, 1, 1, 1), gain)
        x = x.mul_(gain).add_(shifts) if owned else torch.addcmul(shifts, x, gain)
    else:
        gain, shift = aug.pixel_scale / aug.std, -aug.mean / aug.std
        shifts = offset.mul_(gain).add_(shift).view(n, 1, 1, 1)
        x = torch.add(shifts, x, alpha=gain, out=x) if owned else torch.add(shifts, x, alpha=gain)
    if aug.contrast or aug.noise_p:  # the other steps cannot leave [0, 1]
        x = x.clamp_(shift, gain + shift)
    return x


def augment(x: torch.Tensor, aug: Augmentation, gen: torch.Generator) -> torch.Tensor:
    """One random view of a float [0, 1] batch, normalised for the network."""
    x = geometry(x, aug, gen)
    if aug.stroke_p:
        x = strokes(x, aug, gen)
    return photometric(colour_views(x, aug, gen), aug, gen)


class MultiCrop(NamedTuple):
    """Views of two sizes: the global crops (2, N, C, H, W) and the local ones (L, N, C, h, w)."""

    global_views: torch.Tensor
    local_views: torch.Tensor


def local_side(aug: Augmentation, side: int) -> int:
    return aug.local_side or max(8, round(side * 3 / 7))


def local_crops(images: torch.Tensor, aug: Augmentation, gen: torch.Generator) -> torch.Tensor:
    """`aug.local_crops` small crops of each uint8 image, (L, N, C, h, w), normalised: each a
    random resized crop over `local_scale` of the area at the local side, mirrored, then the
    preset's colours and photometric steps, all in one pass over the L x N crops."""
    count, (n, c) = aug.local_crops, images.shape[:2]
    side = local_side(aug, images.shape[-1])
    x = to_unit(images.repeat(count, 1, 1, 1))
    crops = random_resized_crop(len(x), aug.local_scale, aug.crop_ratio, gen)
    flip = torch.rand(len(x), generator=gen, device=x.device) < aug.hflip
    x = crop_and_flip(x, crops, flip, side)
    blur = aug.local_blur_p if images.shape[-1] >= aug.blur_from else 0.0  # as the globals'
    small = replace(aug, blur_p=blur, solarize_p=0.0, blur_from=0)
    return photometric(colour_views(x, small, gen), small, gen).view(count, n, c, side, side)


def make_views(
    images: torch.Tensor, aug: Augmentation, gen: torch.Generator
) -> torch.Tensor | MultiCrop:
    """Two normalised views of a uint8 batch of N, ready for the encoder: one (2, N, C, H, W)
    tensor (`v1, v2 = make_views(...)` unpacks it; `.flatten(0, 1)` is the 2N batch, no copy).

    Both views are made in one pass over a doubled batch (independent parameters per row):
    half the kernel launches of two passes, which matters on GPU and for small batches. With
    `local_crops`, a `MultiCrop` of these and the local crops."""
    if aug.keep_first_view:
        x = to_unit(images)
        return torch.stack([normalise(x, aug), augment(x, aug, gen)])
    both = augment(to_unit(torch.cat([images, images])), aug, gen).view(2, *images.shape)
    return MultiCrop(both, local_crops(images, aug, gen)) if aug.local_crops else both


def make_view(images: torch.Tensor, aug: Augmentation, gen: torch.Generator) -> torch.Tensor:
    """One normalised random view of a uint8 batch (supervised training)."""
    return augment(to_unit(images), aug, gen)
