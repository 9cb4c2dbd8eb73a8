"""The recipes for random views: the `Augmentation` dataclass and the named presets (digits,
objects, photographs, multi-crop), each normalised by the data's statistics when a run uses it.
The views themselves are made by `pretext.augment`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from pretext.data.stats import InputStats
from pretext.errors import PretextError


@dataclass(frozen=True)
class Augmentation:
    """A recipe for random views. Zero strengths switch a step off."""

    pixel_scale: float = 1.0  # the seed recipe feeds 0-255 pixels, as the original did
    # The input normalisation, one value for all channels or one per channel. A preset holds
    # MNIST's; a run replaces it with its data's (`with_stats`), presets of raw pixels excepted.
    mean: float | tuple[float, ...] = 0.0
    std: float | tuple[float, ...] = 1.0
    keep_first_view: bool = False  # seed recipe: pair the untouched image with one view
    cutout_size: int = 0  # a square patch of mid-grey at a random position
    rotate90: bool = False  # a fixed quarter turn, as in the original
    degrees: float = 0.0  # random affine: rotation range (+-), translation fraction,
    translate: float = 0.0  # zoom range (a random resized crop for digits), shear (+-)
    scale: tuple[float, float] = (1.0, 1.0)
    shear: float = 0.0
    elastic: float = 0.0  # elastic distortion: largest displacement, as a fraction of the side
    elastic_points: int = 4  # control points per axis of the smooth displacement field
    hflip: float = 0.0  # probability of a left-right mirror (objects; never digits)
    contrast: float = 0.0  # multiply by U(1 - c, 1 + c)
    erase_p: float = 0.0  # random erasing: probability and area range
    erase_area: tuple[float, float] = (0.02, 0.15)
    noise_p: float = 0.0  # additive zero-mean noise: probability and standard deviation
    noise_std: float = 0.0
    # A random pen stroke drawn over a share of the images (`pretext.augment.strokes`): a line
    # segment of ink across the figure at a random angle, `stroke_length` of the side long
    # (range) and `stroke_width` pixels wide. For handwriting: a class does not change with one
    # added stroke (a bar across a seven's stem, a foot under a one).
    stroke_p: float = 0.0
    stroke_length: tuple[float, float] = (0.15, 0.35)
    stroke_width: float = 2.0
    # Photographs (pretext.colour): a random resized crop (area fraction, aspect ratio) with
    # the left-right mirror `hflip`, colour jitter (brightness, contrast, saturation, hue) on a
    # share of the images in a random order, grayscale, blur (from `blur_from` px up), solarise.
    crop_scale: tuple[float, float] | None = None
    crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)
    jitter: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0)
    jitter_p: float = 0.0
    gray_p: float = 0.0
    # Blur and solarise may be a pair: (first view, second view), as BYOL's asymmetric views.
    blur_p: float | tuple[float, float] = 0.0
    blur_sigma: tuple[float, float] = (0.1, 2.0)
    blur_from: int = 96
    solarize_p: float | tuple[float, float] = 0.0
    # Repaint a share of the images in two random colours (pretext.colour.random_duotone): for
    # data whose colours say nothing of the class, as the coloured digits of
    # benchmarks/colour_digits.py.
    duotone_p: float = 0.0
    # Multi-crop (Caron et al., 2020 and 2021): besides the two global crops (`crop_scale`),
    # `local_crops` crops of a smaller area (`local_scale`) at a smaller side (`local_side`; 0:
    # 3/7 of the image's, DINO's 96 of 224), blurred with probability `local_blur_p`, never
    # solarised. Views then come as `MultiCrop`; the methods that take them say so.
    local_crops: int = 0
    local_scale: tuple[float, float] = (0.05, 0.4)
    local_side: int = 0
    local_blur_p: float = 0.5


# SimCLR's views of photographs (Chen et al., 2020, appendix A); its CIFAR ones (the `cifar`
# preset) are these at colour strength 0.5 without blur. The input scale is every preset's, so
# that evaluation, which reads the encoder through other presets, feeds it alike.
SIMCLR = Augmentation(
    mean=0.1307,
    std=0.3081,
    crop_scale=(0.08, 1.0),
    hflip=0.5,
    jitter=(0.8, 0.8, 0.8, 0.2),
    jitter_p=0.8,
    gray_p=0.2,
    blur_p=0.5,
)

PRESETS: dict[str, Augmentation] = {
    "seed": Augmentation(pixel_scale=255.0, keep_first_view=True, cutout_size=9, rotate90=True),
    "default": Augmentation(
        mean=0.1307,
        std=0.3081,
        degrees=20,
        translate=0.12,
        scale=(0.75, 1.15),
        shear=15,
        elastic=0.1,
        contrast=0.4,
        erase_p=0.5,
        noise_p=0.5,
        noise_std=0.15,
    ),
    "light": Augmentation(
        mean=0.1307, std=0.3081, degrees=12, translate=0.1, scale=(0.9, 1.1), shear=8
    ),
    # For pictures of objects (Fashion-MNIST, a user's own photos): mirror images, zoomed crops,
    # small turns; no shear or elastic distortion, which change what a garment looks like.
    "objects": Augmentation(
        mean=0.1307,
        std=0.3081,
        degrees=10,
        translate=0.1,
        scale=(0.7, 1.1),
        hflip=0.5,
        contrast=0.4,
        erase_p=0.5,
        noise_p=0.5,
        noise_std=0.1,
    ),
    "simclr": SIMCLR,
    "cifar": replace(SIMCLR, jitter=(0.4, 0.4, 0.4, 0.1), blur_p=0.0),
    # BYOL's two views (Grill et al., 2020, table 6): weaker jitter, then blur always on the
    # first view and 1 in 10 on the second, solarisation only on the second (1 in 5).
    "byol": replace(SIMCLR, jitter=(0.4, 0.4, 0.2, 0.1), blur_p=(1.0, 0.1), solarize_p=(0.0, 0.2)),
    "none": Augmentation(mean=0.1307, std=0.3081),
    "seed-none": Augmentation(pixel_scale=255.0),
}
# DINO's views (Caron et al., 2021): two global crops of 40-100% of the area as BYOL's pair,
# and six local crops of 5-40% at 3/7 of the side (SwAV's six; DINO's code defaults to eight).
PRESETS["multicrop"] = replace(PRESETS["byol"], crop_scale=(0.4, 1.0), local_crops=6)
# The digit views for images whose colours are a nuisance: every view repainted in two random
# colours, so that no view shares its pair's colours, and without erasing or noise, which hide
# the shapes a pair must then be matched by (BENCHMARKS.md, "Coloured digits").
PRESETS["duotone"] = replace(PRESETS["default"], duotone_p=1.0, erase_p=0.0, noise_p=0.0)
# The semi-supervised student's views of handwriting: the mild ones, and on half the images one
# more pen stroke across the figure, whose class must not change (BENCHMARKS.md, "Semi-supervised
# settings").
PRESETS["light-stroke"] = replace(PRESETS["light"], stroke_p=0.5)


def with_stats(aug: Augmentation, stats: InputStats | None) -> Augmentation:
    """`aug` normalised by `stats`; the seed recipe's presets, which feed raw pixels as the
    write-up did, and `stats` None keep their own."""
    if stats is None or (aug.mean == 0.0 and aug.std == 1.0):
        return aug
    mean, std = stats.mean, stats.std
    if len(set(mean)) == 1 and len(set(std)) == 1:  # one value: the scalar fast path
        return replace(aug, mean=mean[0], std=std[0])
    return replace(aug, mean=tuple(mean), std=tuple(std))


def preset(name: str, stats: InputStats | None = None) -> Augmentation:
    """The views `name`, normalised by the data's `stats` (None: the preset's own, MNIST's;
    a run's are `pretext.config.input_stats(cfg)`)."""
    if name not in PRESETS:
        raise PretextError(f"unknown augmentation {name!r}: use one of {', '.join(PRESETS)}")
    return with_stats(PRESETS[name], stats)
