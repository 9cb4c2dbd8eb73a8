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
