"""The batched colour ops against straightforward per-image references of torchvision's
definitions (colorsys for the hue), each image with its own factor."""

import colorsys

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from pretext import colour

N = 5


@pytest.fixture
def images():
    x = torch.rand(N, 3, 12, 10, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    x[0] = x[0, :1]  # a gray image: no hue
    x[1, :, 0, 0] = torch.tensor([1.0, 1.0, 0.0])  # ties between the largest channels
    return x


def gray(image):
    r, g, b = image
    return 0.2989 * r + 0.587 * g + 0.114 * b


def test_grayscale_brightness_contrast_saturation_solarize(images):
    f = torch.tensor([0.0, 0.5, 1.0, 1.7, 3.0], dtype=torch.float64)
    for i, image in enumerate(images):
        y = gray(image)
        torch.testing.assert_close(colour.rgb_to_grayscale(images)[i], y.expand(3, -1, -1))
        expected = {
            "adjust_brightness": (f[i] * image).clamp(0, 1),
            "adjust_contrast": (f[i] * image + (1 - f[i]) * y.mean()).clamp(0, 1),
            "adjust_saturation": (f[i] * image + (1 - f[i]) * y).clamp(0, 1),
            "solarize": torch.where(image >= f[i] / 3, 1 - image, image),
        }
        for name, want in expected.items():
            factor = f / 3 if name == "solarize" else f
            got = getattr(colour, name)(images, factor)[i]
            torch.testing.assert_close(got, want, atol=1e-5, rtol=0, msg=name)


def test_hue_matches_colorsys_per_pixel(images):
    shifts = torch.tensor([-0.5, -0.2, 0.0, 0.3, 0.5], dtype=torch.float64)
    got = colour.adjust_hue(images, shifts)
    for i, image in enumerate(images):
        pixels = image.permute(1, 2, 0).reshape(-1, 3).tolist()
        want = []
        for r, g, b in pixels:
            h, s, v = colorsys.rgb_to_hsv(r, g, b)
            want.append(colorsys.hsv_to_rgb((h + float(shifts[i])) % 1.0, s, v))
        want = torch.tensor(want, dtype=torch.float64).reshape(12, 10, 3).permute(2, 0, 1)
        torch.testing.assert_close(got[i], want, atol=1e-4, rtol=0)
    torch.testing.assert_close(colour.hsv_to_rgb(colour.rgb_to_hsv(images)), images)


def test_gaussian_blur_per_image_sigma_matches_a_2d_reference(images):
    sigmas = torch.tensor([0.1, 0.5, 1.0, 1.5, 2.0], dtype=torch.float64)
    k = 5
    got = colour.gaussian_blur(images, sigmas, kernel_size=k)
    for i, image in enumerate(images):
        x = np.arange(k) - (k - 1) / 2
        g = np.exp(-0.5 * (x / float(sigmas[i])) ** 2)
        g /= g.sum()
        kernel = torch.tensor(np.outer(g, g)).expand(3, 1, k, k)
        padded = F.pad(image[None], (k // 2,) * 4, mode="reflect")
        want = F.conv2d(padded, kernel, groups=3)[0]
        torch.testing.assert_close(got[i], want, atol=1e-5, rtol=0)
    assert colour.blur_kernel_size(96) == 9 and colour.blur_kernel_size(32) == 3


def test_one_channel_images_keep_their_colour_free_ops():
    x = torch.rand(2, 1, 6, 6)
    assert torch.equal(colour.adjust_hue(x, 0.3), x)
    assert torch.equal(colour.adjust_saturation(x, 0.0), x)
    assert colour.rgb_to_grayscale(x, 3).shape == (2, 3, 6, 6)


def test_random_resized_crop_follows_torchvisions_ranges():
    gen = torch.Generator().manual_seed(0)
    crops = colour.random_resized_crop(2000, (0.08, 1.0), (3 / 4, 4 / 3), gen)
    w, h, cx, cy = crops.unbind(1)
    assert (w <= 1).all() and (h <= 1).all() and (w * h >= 0.08 - 1e-6).all()
    ratio = w / h
    assert (ratio >= 3 / 4 - 1e-5).all() and (ratio <= 4 / 3 + 1e-5).all()
    assert ((cx.abs() <= 1 - w + 1e-6) & (cy.abs() <= 1 - h + 1e-6)).all()  # inside the image
    again = colour.random_resized_crop(
        2000, (0.08, 1.0), (3 / 4, 4 / 3), torch.Generator().manual_seed(0)
    )
    assert torch.equal(crops, again)


def test_a_whole_crop_is_the_image_and_a_flip_mirrors_it():
    x = torch.rand(3, 3, 8, 8)
    whole = torch.tensor([[1.0, 1.0, 0.0, 0.0]]).expand(3, 4)
    flip = torch.tensor([False, True, False])
    out = colour.crop_and_flip(x, whole, flip)
    torch.testing.assert_close(out[0], x[0], atol=1e-6, rtol=0)
    torch.testing.assert_close(out[1], x[1].flip(-1), atol=1e-6, rtol=0)


def test_jitter_is_seeded_per_image_and_off_at_p_zero():
    x = torch.rand(6, 3, 8, 8)
    strengths = (0.8, 0.8, 0.8, 0.2)
    assert torch.equal(colour.colour_jitter(x, strengths, 0.0, torch.Generator().manual_seed(1)), x)
    a = colour.colour_jitter(x, strengths, 1.0, torch.Generator().manual_seed(1))
    b = colour.colour_jitter(x, strengths, 1.0, torch.Generator().manual_seed(1))
    assert torch.equal(a, b) and not torch.allclose(a, x) and a.min() >= 0 and a.max() <= 1


@pytest.mark.parametrize("name, side", [("simclr", 96), ("cifar", 32), ("byol", 96)])
def test_colour_presets_make_two_views_of_colour_batches(name, side):
    from pretext.augment import make_views, preset

    images = torch.randint(0, 256, (4, 3, side, side), dtype=torch.uint8)
    views = make_views(images, preset(name), torch.Generator().manual_seed(0))
    assert views.shape == (2, 4, 3, side, side) and torch.isfinite(views).all()
    assert not torch.allclose(views[0], views[1])


def test_asymmetric_views_blur_and_solarise_each_view_by_its_own_share():
    """A pair of probabilities gives the first view the first and the second view the second:
    here the first view is always blurred and never solarised, the second the other way."""
    from pretext.augment import Augmentation, make_views, preset

    images = torch.randint(0, 256, (5, 3, 96, 96), dtype=torch.uint8)
    aug = Augmentation(blur_p=(1.0, 0.0), blur_sigma=(1.0, 2.0), solarize_p=(0.0, 1.0))
    first, second = make_views(images, aug, torch.Generator().manual_seed(0))
    x = images * (1 / 255.0)  # as the views see pixels
    assert torch.allclose(second, torch.where(x >= 0.5, 1.0 - x, x))  # solarised, unblurred
    assert not torch.allclose(first, x) and not torch.allclose(first, second)
    change = (first - x).abs().mean(dim=(1, 2, 3))
    assert (change > 0.05).all()  # every image of the first view is blurred
    byol = preset("byol")
    assert (byol.blur_p, byol.solarize_p) == ((1.0, 0.1), (0.0, 0.2))
    assert byol.jitter == (0.4, 0.4, 0.2, 0.1) and byol.gray_p == 0.2


def test_duotone_paints_the_shape_in_two_given_colours():
    """A two-colour image (background, strokes) comes back as the same shape in the new
    colours: the darker old colour becomes `dark`, the lighter `light`, by hand."""
    ink = torch.zeros(2, 1, 4, 4)
    ink[:, :, 1:3, 1:3] = 1.0  # a square stroke
    old_bg, old_fg = torch.tensor([0.9, 0.8, 0.7]), torch.tensor([0.1, 0.2, 0.3])
    x = old_bg.view(1, 3, 1, 1) + ink * (old_fg - old_bg).view(1, 3, 1, 1)
    dark, light = torch.tensor([[1.0, 0.0, 0.0]] * 2), torch.tensor([[0.0, 0.0, 1.0]] * 2)
    out = colour.duotone(x, dark, light)
    # the strokes are the darker colour: they become `dark`, the background `light`
    expected = light.view(2, 3, 1, 1) + ink * (dark - light).view(2, 3, 1, 1)
    assert torch.allclose(out, expected, atol=1e-6)
    flat = colour.duotone(torch.full((1, 3, 2, 2), 0.4), dark[:1], light[:1])
    assert torch.allclose(flat, dark[:1].view(1, 3, 1, 1).expand(1, 3, 2, 2))


def test_random_duotone_gives_the_two_views_of_a_pair_unrelated_colours():
    from pretext.augment import make_views, preset

    x = torch.zeros(64, 3, 28, 28, dtype=torch.uint8)
    x[:, 0, 8:20, 8:20] = 255  # the same red square on black in every image
    first, second = make_views(
        x, replace_p(preset("duotone"), 1.0), torch.Generator().manual_seed(0)
    )
    corner = lambda v: v[:, :, 0, 0]  # noqa: E731  (the background, never erased or moved in)
    # the background colours of a view and its pair are uncorrelated across the batch
    a, b = corner(first).flatten(), corner(second).flatten()
    assert abs(torch.corrcoef(torch.stack([a, b]))[0, 1]) < 0.3
    assert corner(first).std(0).min() > 0.2  # and vary from image to image
    assert torch.equal(
        colour.random_duotone(x / 255.0, 0.0, torch.Generator().manual_seed(0)), x / 255.0
    )


def replace_p(aug, p):
    from dataclasses import replace

    return replace(
        aug,
        duotone_p=p,
        erase_p=0.0,
        noise_p=0.0,
        degrees=0.0,
        translate=0.0,
        scale=(1.0, 1.0),
        shear=0.0,
        elastic=0.0,
    )
