import pytest
import torch

from pretext.augment import (
    PRESETS,
    Augmentation,
    augment,
    cutout,
    elastic_offsets,
    erased_area,
    ink_point,
    make_view,
    make_views,
    noise_draw,
    normalise,
    output_pixels,
    photometric,
    preset,
    random_affine,
    strokes,
    to_unit,
)


def batch(n=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 1, 28, 28), generator=g, dtype=torch.uint8)


def test_seed_preset_is_patch_then_quarter_turn_on_0_255():
    images = torch.zeros(256, 1, 28, 28, dtype=torch.uint8)
    first, second = make_views(images, preset("seed"), torch.Generator().manual_seed(0))
    assert torch.equal(first, images.float())  # the untouched image, as in the original
    # On a black image the view is exactly one 9x9 patch of 255/2, anywhere after the turn.
    grey = second == 127.5
    assert (grey.sum(dim=(1, 2, 3)) == 81).all()
    assert set(second.unique().tolist()) == {0.0, 127.5}


def test_cutout_positions_cover_0_to_19_independently_per_image():
    x = torch.zeros(4000, 1, 28, 28)
    out = cutout(x, 9, 0.5, torch.Generator().manual_seed(1))
    rows = (out[:, 0] > 0).any(dim=2).float().argmax(dim=1)
    cols = (out[:, 0] > 0).any(dim=1).float().argmax(dim=1)
    assert set(rows.tolist()) == set(range(20)) and set(cols.tolist()) == set(range(20))
    # Roughly uniform: every position is drawn about 4000/20 = 200 times.
    assert torch.bincount(rows, minlength=20).min() > 120
    assert abs(torch.corrcoef(torch.stack([rows.float(), cols.float()]))[0, 1]) < 0.1


def test_rotation_is_a_quarter_turn_of_the_original():
    images = batch(8)
    aug = PRESETS["seed"].__class__(rotate90=True)
    out = augment(to_unit(images), aug, torch.Generator().manual_seed(0))
    assert torch.equal(out, torch.rot90(to_unit(images), 1, [-2, -1]))


def test_default_views_differ_per_image_and_per_call_and_stay_in_range():
    images = batch(32)
    aug = preset("default")
    gen = torch.Generator().manual_seed(0)
    v1, v2 = make_views(images, aug, gen)
    v3, _ = make_views(images, aug, gen)
    assert v1.shape == v2.shape == (32, 1, 28, 28) and v1.dtype == torch.float32
    assert not torch.equal(v1, v2) and not torch.equal(v1, v3)
    low, high = (0 - aug.mean) / aug.std, (1 - aug.mean) / aug.std
    assert v1.min() >= low - 1e-5 and v1.max() <= high + 1e-5


def test_same_generator_state_gives_same_views():
    images = batch(16)
    a = make_views(images, preset("default"), torch.Generator().manual_seed(7))
    b = make_views(images, preset("default"), torch.Generator().manual_seed(7))
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=False))


def test_identity_affine_keeps_the_image():
    x = to_unit(batch(4))
    out = random_affine(x, torch.Generator().manual_seed(0), 0.0, 0.0, (1.0, 1.0), 0.0)
    assert torch.allclose(out, x, atol=1e-5)


def test_presets_share_one_input_scale():
    # Evaluation feeds a pretrained encoder through another preset's normalisation (fine-tuning
    # views, `none` for features): every preset but the original's 0-255 ones must agree.
    scales = {(a.pixel_scale, a.mean, a.std) for n, a in PRESETS.items() if a.pixel_scale == 1}
    assert scales == {(1.0, 0.1307, 0.3081)}


def test_mirror_flips_left_right_per_image():
    x = to_unit(batch(64))
    always = random_affine(x, torch.Generator().manual_seed(0), 0, 0, (1, 1), 0, hflip=1.0)
    assert torch.allclose(always, x.flip(-1), atol=1e-5)
    half = random_affine(x, torch.Generator().manual_seed(0), 0, 0, (1, 1), 0, hflip=0.5)
    flipped = (half - x.flip(-1)).abs().amax(dim=(1, 2, 3)) < 1e-5
    kept = (half - x).abs().amax(dim=(1, 2, 3)) < 1e-5
    assert (flipped | kept).all() and 16 < flipped.sum() < 48


def test_affine_moves_mass_but_keeps_it_roughly():
    x = torch.zeros(512, 1, 28, 28)
    x[:, :, 10:18, 10:18] = 1.0
    out = random_affine(x, torch.Generator().manual_seed(0), 20, 0.1, (0.9, 1.1), 10)
    ratio = out.sum(dim=(1, 2, 3)) / x.sum(dim=(1, 2, 3))
    assert 0.6 < ratio.mean() < 1.4
    centre = (out[:, 0] * torch.arange(28.0).view(1, 28, 1)).sum(dim=(1, 2)) / out.sum(
        dim=(1, 2, 3)
    )
    assert centre.std() > 0.5  # translations differ per image


def test_one_view_for_supervised_training():
    out = make_view(batch(4), preset("light"), torch.Generator().manual_seed(0))
    assert out.shape == (4, 1, 28, 28)


def test_affine_grid_by_broadcasting_equals_torch_affine_grid():
    import math

    import torch.nn.functional as F

    x = torch.rand(32, 1, 28, 28)
    out = random_affine(x, torch.Generator().manual_seed(5), 20, 0.12, (0.75, 1.15), 15)
    gen, n = torch.Generator().manual_seed(5), 32

    def draw(low, high, count=n):
        return low + (high - low) * torch.rand(count, generator=gen)

    angle, shear = draw(-20, 20) * math.pi / 180, draw(-15, 15) * math.pi / 180
    zoom, shift = draw(0.75, 1.15), draw(-0.12, 0.12, 2 * n).view(n, 2) * 2
    cos, sin, tan = angle.cos(), angle.sin(), shear.tan()
    theta = torch.stack(
        [
            torch.stack([cos, cos * tan - sin, shift[:, 0]], 1),
            torch.stack([sin, sin * tan + cos, shift[:, 1]], 1),
        ],
        1,
    )
    theta[:, :, :2] /= zoom.view(n, 1, 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    assert torch.allclose(out, F.grid_sample(x, grid, align_corners=False), atol=1e-5)


# The plain steps, one after the other: the reference for the fused `photometric`.
def plain_contrast(x, gen, strength):
    factor = 1 - strength + 2 * strength * torch.rand(x.shape[0], generator=gen)
    return (x * factor.view(-1, 1, 1, 1)).clamp(0, 1)


def plain_erasing(x, gen, p, area):
    n, _, h, w = x.shape
    return x * (1 - erased_area(n, h, w, gen, p, area))


def plain_noise(x, gen, p, std):
    chosen, noise, scale = noise_draw(x.shape[0], tuple(x.shape[1:]), p, std, gen)
    return x.index_add(0, chosen, (noise.float() - 127.5) * scale).clamp(0, 1)


def test_erasing_and_noise_statistics():
    ones = torch.ones(4000, 1, 28, 28)
    erase_only = Augmentation(erase_p=0.5, erase_area=(0.02, 0.15))
    erased = photometric(ones, erase_only, torch.Generator().manual_seed(0))
    share = (erased == 0).float().mean(dim=(1, 2, 3))
    assert 0.45 < (share > 0).float().mean() < 0.55  # p = 0.5 per image
    assert 0.02 < share[share > 0].mean() < 0.15  # erased area within the asked range
    half = torch.full((1000, 1, 28, 28), 0.5)
    noise_only = Augmentation(noise_p=0.5, noise_std=0.1)
    noisy = photometric(half, noise_only, torch.Generator().manual_seed(0))
    changed = (noisy != 0.5).flatten(1).any(1)
    assert changed.sum() == 500  # exactly p of the images
    assert abs((noisy[changed] - 0.5).std() - 0.1) < 0.005
    assert abs((noisy[changed] - 0.5).mean()) < 0.005


def test_photometric_equals_contrast_erasing_noise_then_normalise():
    """The fused pixel step is the plain steps one after the other (where no clamp binds)."""
    from dataclasses import replace

    x = 0.3 + 0.3 * torch.rand(64, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    aug = replace(preset("default"), noise_std=0.05)
    fused = photometric(x, aug, torch.Generator().manual_seed(3))
    gen = torch.Generator().manual_seed(3)
    plain = plain_contrast(x, gen, aug.contrast)
    plain = plain_erasing(plain, gen, aug.erase_p, aug.erase_area)
    plain = normalise(plain_noise(plain, gen, aug.noise_p, aug.noise_std), aug)
    assert torch.allclose(fused, plain, atol=1e-5)
    assert (fused == normalise(torch.zeros(1), aug)).any()  # some rectangles were erased


def test_views_are_one_stacked_tensor_that_unpacks_into_two():
    images = batch(8)
    views = make_views(images, preset("default"), torch.Generator().manual_seed(0))
    assert views.shape == (2, 8, 1, 28, 28)
    v1, v2 = views
    assert torch.equal(views.flatten(0, 1)[:8], v1) and torch.equal(views.flatten(0, 1)[8:], v2)


def elastic_field(n, strength, points, gen):
    """The displacement field the sampling grid's product adds: offsets @ upsampling basis."""
    basis = output_pixels(28, 28, points, torch.device("cpu"))[:, 3:]
    return (elastic_offsets(n, strength, points, gen) @ basis.T).view(n, 2, 28, 28)


def test_elastic_field_is_smooth_bounded_and_per_image():
    field = elastic_field(256, 0.1, 4, torch.Generator().manual_seed(0))
    assert field.shape == (256, 2, 28, 28)
    assert field.abs().max() <= 2 * 0.1 * 1.3  # bicubic overshoots the lattice a little at most
    step = (field[:, :, 1:] - field[:, :, :-1]).abs().max()
    assert step < 0.25 * (4 * 0.1)  # neighbours move together (white noise: up to the range)
    assert field[0].sub(field[1]).abs().mean() > 0.01  # each image gets its own field
    x = to_unit(batch(4))
    out = random_affine(x, torch.Generator().manual_seed(0), 0, 0, (1, 1), 0, elastic=0.1)
    assert not torch.allclose(out, x, atol=1e-3)  # elastic alone moves pixels


def test_elastic_field_is_the_bicubic_upsampling_of_random_lattice_offsets():
    import torch.nn.functional as F

    field = elastic_field(8, 0.1, 4, torch.Generator().manual_seed(2))
    coarse = elastic_offsets(8, 0.1, 4, torch.Generator().manual_seed(2)).view(8, 2, 4, 4)
    upsampled = F.interpolate(coarse, size=(28, 28), mode="bicubic", align_corners=True)
    assert torch.allclose(field, upsampled, atol=1e-6)
    assert coarse.abs().max() <= 0.2  # +-2 x strength in grid units (the side spans 2)


@pytest.mark.parametrize(
    "changes", [{}, {"contrast": 0.0}, {"contrast": 0.0, "erase_p": 0.0}, {"noise_p": 0.0}]
)
def test_photometric_leaves_the_callers_batch_alone(changes):
    """It works in place once it has a tensor of its own, never on its input."""
    from dataclasses import replace

    x = torch.rand(32, 1, 28, 28)
    before = x.clone()
    out = photometric(x, replace(preset("default"), **changes), torch.Generator().manual_seed(0))
    assert torch.equal(x, before) and out.data_ptr() != x.data_ptr()


def reference_stroke(image, middle, angle, half, width):
    """One image's stroke the slow way: ink by the distance from each pixel centre to the
    nearest of 2,001 points spaced along the segment."""
    along = torch.tensor([torch.cos(angle), torch.sin(angle)])
    points = middle + torch.linspace(-1, 1, 2001)[:, None] * half * along  # (2001, 2): x, y
    h, w = image.shape[-2:]
    ys, xs = torch.meshgrid(torch.arange(h) + 0.5, torch.arange(w) + 0.5, indexing="ij")
    pixels = torch.stack([xs, ys], -1).view(-1, 1, 2)
    distance = (pixels - points).norm(dim=-1).min(1).values.view(h, w)
    ink = (width / 2 + 0.5 - distance).clamp(0, 1)
    return image + (1 - image) * ink


def test_stroke_is_a_segment_of_ink_drawn_as_the_slow_reference_draws_it():
    aug = Augmentation(stroke_p=1.0, stroke_length=(0.2, 0.45), stroke_width=2.0)
    x = torch.rand(6, 1, 28, 28) * 0.5
    drawn = strokes(x, aug, torch.Generator().manual_seed(3))
    g = torch.Generator().manual_seed(3)  # the same draws, in the same order
    middle = ink_point(x, g)
    angle = torch.pi * torch.rand(6, generator=g)
    half = (0.2 + 0.25 * torch.rand(6, generator=g)) * 14
    for i in range(6):
        expected = reference_stroke(x[i, 0], middle[i], angle[i], half[i], 2.0)
        assert torch.allclose(drawn[i, 0], expected, atol=5e-3)
        assert (drawn[i] > x[i] + 0.4).sum() >= 2 * half[i]  # a line, not a dot


def test_strokes_cross_the_figure():
    """The stroke's middle is drawn on an inked pixel, with the ink's weight."""
    x = torch.zeros(500, 1, 28, 28)
    x[:, 0, 3, 5] = 1.0  # one bright pixel, and a faint one a third as heavy
    x[:, 0, 20, 9] = 1.0 / 3
    at = ink_point(x, torch.Generator().manual_seed(0))
    bright = ((at - torch.tensor([5.5, 3.5])).abs() <= 0.5).all(1)
    faint = ((at - torch.tensor([9.5, 20.5])).abs() <= 0.5).all(1)
    assert (bright | faint).all()
    assert 0.68 < bright.float().mean() < 0.82  # 3 : 1
    blank = ink_point(torch.zeros(2000, 1, 28, 28), torch.Generator().manual_seed(0))
    assert blank.min() >= 0 and blank.max() <= 28 and blank.std(0).min() > 7  # anywhere


def test_strokes_reach_a_share_of_the_images_and_keep_the_range():
    x = torch.zeros(2000, 1, 28, 28)
    aug = Augmentation(stroke_p=0.3)
    drawn = strokes(x, aug, torch.Generator().manual_seed(0))
    inked = (drawn > 0).flatten(1).any(1).float().mean()
    assert 0.26 < inked < 0.34
    assert drawn.min() >= 0 and drawn.max() <= 1
    same = strokes(x, aug, torch.Generator().manual_seed(0))
    assert torch.equal(drawn, same)
