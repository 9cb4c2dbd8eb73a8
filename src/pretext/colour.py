"""Colour operations on a batch of float images (N x C x H x W in [0, 1]) with one factor per
image (a tensor of shape N), so a batch's views draw their colours in one pass on its device.

Each op follows the definition of torchvision's `transforms.v2.functional` op of the same name
(grayscale weights 0.2989 / 0.587 / 0.114, blending clamped to [0, 1], hue through HSV);
one-channel images are left as they are by the ops that need colour.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

GRAY_WEIGHTS = (0.2989, 0.587, 0.114)


def per_image(factor: torch.Tensor | float, x: torch.Tensor) -> torch.Tensor:
    """`factor` (a number or N values) shaped to broadcast over N x C x H x W."""
    factor = torch.as_tensor(factor, dtype=x.dtype, device=x.device)
    return factor.reshape(-1, 1, 1, 1) if factor.dim() else factor


def blend(x: torch.Tensor, other: torch.Tensor, factor: torch.Tensor | float) -> torch.Tensor:
    """factor * x + (1 - factor) * other, clamped to [0, 1]."""
    f = per_image(factor, x)
    return (f * x + (1 - f) * other).clamp(0, 1)


def rgb_to_grayscale(x: torch.Tensor, channels: int = 3) -> torch.Tensor:
    """The luma of RGB images, repeated over `channels` (1 or 3); one-channel images as given."""
    if x.shape[-3] == 1:
        return x if channels == 1 else x.expand(*x.shape[:-3], channels, *x.shape[-2:])
    r, g, b = x.unbind(-3)
    gray = (GRAY_WEIGHTS[0] * r + GRAY_WEIGHTS[1] * g + GRAY_WEIGHTS[2] * b).unsqueeze(-3)
    return gray.expand(*x.shape[:-3], channels, *x.shape[-2:])


def adjust_brightness(x: torch.Tensor, factor: torch.Tensor | float) -> torch.Tensor:
    return blend(x, torch.zeros_like(x), factor)


def adjust_contrast(x: torch.Tensor, factor: torch.Tensor | float) -> torch.Tensor:
    """Blend with each image's mean luma."""
    mean = rgb_to_grayscale(x, 1).mean(dim=(-3, -2, -1), keepdim=True)
    return blend(x, mean, factor)


def adjust_saturation(x: torch.Tensor, factor: torch.Tensor | float) -> torch.Tensor:
    """Blend with the image's own grayscale (one-channel images as given)."""
    if x.shape[-3] == 1:
        return x
    return blend(x, rgb_to_grayscale(x, 3), factor)


def solarize(x: torch.Tensor, threshold: torch.Tensor | float) -> torch.Tensor:
    """1 - x where x >= threshold."""
    return torch.where(x >= per_image(threshold, x), 1 - x, x)


def rgb_to_hsv(x: torch.Tensor) -> torch.Tensor:
    """Hue in [0, 1), saturation and value of RGB images (N x 3 x H x W)."""
    r, g, b = x.unbind(-3)
    high, low = x.amax(-3), x.amin(-3)
    spread = high - low
    flat = spread == 0
    s = spread / torch.where(flat, torch.ones_like(high), high)
    divisor = torch.where(flat, torch.ones_like(spread), spread)
    rc, gc, bc = ((high.unsqueeze(-3) - x) / divisor.unsqueeze(-3)).unbind(-3)
    is_r = high == r
    is_g = (high == g) & ~is_r
    is_b = ~is_r & ~is_g
    h = (bc - gc) * is_r + (2.0 + rc - bc) * is_g + (4.0 + gc - rc) * is_b
    h = (h / 6.0 + 1.0).fmod(1.0)
    return torch.stack((h, s, high), dim=-3)


def hsv_to_rgb(x: torch.Tensor) -> torch.Tensor:
    """RGB images from hue, saturation and value (the inverse of `rgb_to_hsv`)."""
    h, s, v = x.unbind(-3)
    h6 = h * 6
    sector = torch.floor(h6)
    f = h6 - sector
    sector = sector.long().remainder(6)
    p = (v * (1 - s)).clamp(0, 1)
    q = (v * (1 - s * f)).clamp(0, 1)
    t = (v * (1 - s * (1 - f))).clamp(0, 1)
    candidates = torch.stack((v, p, q, t), dim=-3)  # N x 4 x H x W
    # for each sector, which candidate is r, g and b
    table = torch.tensor(
        [[0, 2, 1, 1, 3, 0], [3, 0, 0, 2, 1, 1], [1, 1, 3, 0, 0, 2]], device=x.device
    )
    pick = table[:, sector].movedim(0, -3)  # N x 3 x H x W
    return candidates.gather(-3, pick)


def adjust_hue(x: torch.Tensor, shift: torch.Tensor | float) -> torch.Tensor:
    """Rotate each image's hue by `shift` of a full turn, in [-0.5, 0.5]."""
    if x.shape[-3] == 1:
        return x
    hsv = rgb_to_hsv(x)
    shift = per_image(shift, x)
    h = (hsv[:, :1] + shift).remainder(1.0)
    return torch.where(shift == 0, x, hsv_to_rgb(torch.cat([h, hsv[:, 1:]], dim=1)))


def blur_kernel_size(side: int) -> int:
    """SimCLR's blur kernel: a tenth of the image's side, odd, at least 3."""
    size = max(3, side // 10)
    return size if size % 2 else size + 1


def gaussian_blur(
    x: torch.Tensor, sigma: torch.Tensor | float, kernel_size: int | None = None
) -> torch.Tensor:
    """Each image blurred with its own sigma: a separable Gaussian of `kernel_size` taps (by
    default from the image's side), reflect-padded, as a grouped convolution over the batch."""
    n, c, height, width = x.shape
    k = kernel_size or blur_kernel_size(min(height, width))
    sigma = torch.as_tensor(sigma, dtype=x.dtype, device=x.device).reshape(-1).expand(n)
    offsets = torch.linspace(-(k - 1) / 2, (k - 1) / 2, k, dtype=x.dtype, device=x.device)
    weights = torch.exp(-0.5 * (offsets / sigma[:, None]) ** 2)
    weights = (weights / weights.sum(1, keepdim=True)).repeat_interleave(c, dim=0)  # N*C x k
    flat = F.pad(x.reshape(1, n * c, height, width), (k // 2,) * 4, mode="reflect")
    flat = F.conv2d(flat, weights[:, None, None, :], groups=n * c)
    flat = F.conv2d(flat, weights[:, None, :, None], groups=n * c)
    return flat.reshape(n, c, height, width)


def random_resized_crop(
    n: int, scale: tuple[float, float], ratio: tuple[float, float], gen: torch.Generator
) -> torch.Tensor:
    """(n, 4): width and height (fractions of the side) and centre (in [-1, 1]) of a crop per
    image, drawn as torchvision's RandomResizedCrop draws them on a square image: an area
    fraction in `scale` and a log-uniform aspect ratio in `ratio`, the first of ten draws that
    fits, else the whole image."""
    device, tries = gen.device, 10
    area = torch.empty(n, tries, device=device).uniform_(*scale, generator=gen)
    log_ratio = torch.empty(n, tries, device=device).uniform_(
        math.log(ratio[0]), math.log(ratio[1]), generator=gen
    )
    w, h = torch.sqrt(area * log_ratio.exp()), torch.sqrt(area / log_ratio.exp())
    fits = (w <= 1) & (h <= 1)
    first = torch.where(fits.any(1), fits.float().argmax(1), -1)
    pick = first.clamp(min=0).unsqueeze(1)
    w = torch.where(first >= 0, w.gather(1, pick)[:, 0], torch.ones(n, device=device))
    h = torch.where(first >= 0, h.gather(1, pick)[:, 0], torch.ones(n, device=device))
    cx = (torch.rand(n, generator=gen, device=device) * 2 - 1) * (1 - w)
    cy = (torch.rand(n, generator=gen, device=device) * 2 - 1) * (1 - h)
    return torch.stack([w, h, cx, cy], dim=1)


def crop_and_flip(
    x: torch.Tensor, crops: torch.Tensor, flip: torch.Tensor, side: int | None = None
) -> torch.Tensor:
    """Each image's crop (from `random_resized_crop`) resized to `side` x `side` (None: the
    image's own size; bilinear), and mirrored left-right where `flip`."""
    n = x.shape[0]
    w, h, cx, cy = crops.to(x.dtype).unbind(1)
    sign = 1 - 2 * flip.to(x.dtype)
    zero = torch.zeros_like(w)
    theta = torch.stack([w * sign, zero, cx, zero, h, cy], dim=1).view(n, 2, 3)
    size = list(x.shape) if side is None else [n, x.shape[1], side, side]
    grid = F.affine_grid(theta, size, align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def colour_jitter(
    x: torch.Tensor, strengths: tuple[float, float, float, float], p: float, gen: torch.Generator
) -> torch.Tensor:
    """torchvision's ColorJitter(brightness, contrast, saturation, hue) on a share `p` of the
    images: factors drawn per image, the four ops applied in a random order per image. At each
    of the four stages an op runs on the images whose turn it is only, so every image passes
    through each op once."""
    n, device = x.shape[0], x.device
    b, c, s, hue = strengths
    apply = torch.rand(n, generator=gen, device=device) < p

    ranges = [(max(0.0, 1 - b), 1 + b), (max(0.0, 1 - c), 1 + c), (max(0.0, 1 - s), 1 + s)]
    factors = [
        torch.empty(n, device=device).uniform_(low, high, generator=gen)
        for low, high in [*ranges, (-hue, hue)]
    ]
    ops = (adjust_brightness, adjust_contrast, adjust_saturation, adjust_hue)
    order = torch.rand(n, 4, generator=gen, device=device).argsort(1)  # op at each stage
    x = x.clone()
    for stage in range(4):
        for op_index, (op, f) in enumerate(zip(ops, factors, strict=True)):
            turn = torch.nonzero(apply & (order[:, stage] == op_index)).flatten()
            x.index_copy_(0, turn, op(x.index_select(0, turn), f.index_select(0, turn)))
    return x


def duotone(x: torch.Tensor, dark: torch.Tensor, light: torch.Tensor) -> torch.Tensor:
    """Each image's luma stretched to its own full range, then painted from the colour `dark`
    (at its darkest pixel) to `light` (at its brightest), N x 3 each: the same shapes in two
    new colours. A flat image becomes `dark`."""
    gray = rgb_to_grayscale(x, 1)
    low = gray.amin(dim=(-2, -1), keepdim=True)
    span = gray.amax(dim=(-2, -1), keepdim=True) - low
    level = (gray - low) / span.clamp_min(1e-6)
    dark, light = dark.view(-1, 3, 1, 1), light.view(-1, 3, 1, 1)
    return torch.addcmul(dark, level, light - dark)


def random_duotone(x: torch.Tensor, p: float, gen: torch.Generator) -> torch.Tensor:
    """`duotone` with two uniformly random colours per image, on a share `p` of the images:
    whatever colours an image came in, its views share none of them (a view cannot be matched
    to its pair by colour, only by shape)."""
    n, device = x.shape[0], x.device
    colours = torch.rand(n, 6, generator=gen, device=device).to(x.dtype)
    chosen = (torch.rand(n, generator=gen, device=device) < p).view(n, 1, 1, 1)
    return torch.where(chosen, duotone(x, colours[:, :3], colours[:, 3:]), x)


def colour_views(x: torch.Tensor, aug, gen: torch.Generator) -> torch.Tensor:
    """The colour steps of a preset, each on its share of the images: random duotone, jitter,
    grayscale, blur, solarisation (SimCLR's and BYOL's order after the duotone); blur and
    solarisation may differ between the two views (BYOL's asymmetric views)."""
    n, device = x.shape[0], x.device
    if aug.duotone_p and x.shape[1] == 3:
        x = random_duotone(x, aug.duotone_p, gen)
    if aug.jitter_p and any(aug.jitter):
        x = colour_jitter(x, aug.jitter, aug.jitter_p, gen)
    if aug.gray_p and x.shape[1] == 3:
        chosen = (torch.rand(n, generator=gen, device=device) < aug.gray_p).view(n, 1, 1, 1)
        x = torch.where(chosen, rgb_to_grayscale(x, 3), x)
    if aug.blur_p and min(x.shape[-2:]) >= aug.blur_from:
        sigma = torch.empty(n, device=device).uniform_(*aug.blur_sigma, generator=gen)
        chosen = torch.rand(n, generator=gen, device=device) < row_shares(aug.blur_p, x)
        x = torch.where(chosen.view(n, 1, 1, 1), gaussian_blur(x, sigma), x)
    if aug.solarize_p:
        chosen = torch.rand(n, generator=gen, device=device) < row_shares(aug.solarize_p, x)
        x = torch.where(chosen.view(n, 1, 1, 1), solarize(x, 0.5), x)
    return x


def row_shares(p: float | tuple[float, float], x: torch.Tensor) -> float | torch.Tensor:
    """Each row's probability of a step: `p`, or for a pair (first view, second view) the
    first for the batch's first half and the second for the rest (the two views of a pair
    are the two halves of one batch; a single batch gets half of each)."""
    if not isinstance(p, tuple):
        return p
    first = len(x) // 2
    shares = torch.full((len(x),), p[1], device=x.device)
    shares[:first] = p[0]
    return shares
