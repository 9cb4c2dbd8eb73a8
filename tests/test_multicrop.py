"""Multi-crop views (two global crops and several smaller local ones) and DINO, which takes
them: the teacher sees the global crops, the student all of them."""

import json
from dataclasses import replace

import torch
import torch.nn.functional as F

from pretext.augment import Augmentation, MultiCrop, make_views, preset
from pretext.cli import main
from pretext.commands.report import augment_grid
from pretext.config import PretrainConfig
from pretext.losses import dino_loss
from pretext.methods import build_method
from pretext.models import build_encoder
from pretext.train import pretrain


def test_multicrop_views_come_in_two_sizes_and_repeat_with_the_seed():
    images = torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8)
    aug = preset("multicrop")
    views = make_views(images, aug, torch.Generator().manual_seed(0))
    assert isinstance(views, MultiCrop)
    assert views.global_views.shape == (2, 4, 3, 32, 32)
    assert views.local_views.shape == (6, 4, 3, 14, 14)  # 3/7 of the side
    again = make_views(images, aug, torch.Generator().manual_seed(0))
    assert torch.equal(views.local_views, again.local_views)
    assert not torch.allclose(views.local_views[0], views.local_views[1])
    assert isinstance(make_views(images, preset("byol"), torch.Generator()), torch.Tensor)


def test_a_whole_image_local_crop_is_the_image_resized():
    """With the area range at 100% and nothing else, each local crop is the whole image at
    the local side: bilinear resizing (no antialiasing) by hand."""
    images = torch.randint(0, 256, (3, 3, 21, 21), dtype=torch.uint8)
    aug = Augmentation(crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0), local_crops=2)
    aug = replace(aug, local_scale=(1.0, 1.0), local_side=9)
    views = make_views(images, aug, torch.Generator().manual_seed(1))
    expected = F.interpolate(images / 255.0, size=(9, 9), mode="bilinear", align_corners=False)
    assert torch.allclose(views.local_views[0], expected, atol=1e-5)
    assert torch.allclose(views.local_views[1], expected, atol=1e-5)
    assert torch.allclose(views.global_views[0], images / 255.0, atol=1e-5)


def test_dino_with_multicrop_averages_every_teacher_to_other_view_pair():
    torch.manual_seed(0)
    dino = build_method("dino", build_encoder("convnet", 1), projection_hidden=16)
    g = torch.randn(2, 4, 1, 16, 16)
    local = torch.randn(3, 4, 1, 8, 8)
    loss = dino(MultiCrop(g, local))
    with torch.no_grad():
        students = [*dino.head(dino.encoder(g.flatten(0, 1))).chunk(2)]
        students += dino.head(dino.encoder(local.flatten(0, 1))).chunk(3)
        teachers = dino.teacher_head(dino.teacher_encoder(g.flatten(0, 1))).chunk(2)
    zero = torch.zeros(1, students[0].shape[1])  # the centre before this first step
    pairs = [dino_loss(s, t, zero) for i, t in enumerate(teachers) for j, s in enumerate(students)]
    pairs = [p for k, p in enumerate(pairs) if k not in (0, len(students) + 1)]  # not j == i
    assert len(pairs) == 2 * 5 - 2
    assert torch.allclose(loss, torch.stack(pairs).mean(), atol=1e-5)
    two = dino(g)  # two views: each teaches the other
    assert torch.isfinite(two)


def test_dino_pretrains_on_multicrop_views_and_others_are_refused(tiny_data, tmp_path, capsys):
    out = tmp_path / "dino"
    cfg = PretrainConfig(data_dir=str(tiny_data), out=str(out), method="dino", encoder="convnet")
    cfg = replace(cfg, augment="multicrop", epochs=1, batch_size=16, threads=1, knn_monitor=0)
    summary = pretrain(cfg, log=lambda *_: None)
    assert summary["epochs"] == 1 and json.loads((out / "config.json").read_text())
    grid = augment_grid("mnist", str(tiny_data), tmp_path / "views.png", "multicrop", views=8)
    assert grid.is_file()
    common = [
        "pretrain",
        "--data-dir",
        str(tiny_data),
        "--augment",
        "multicrop",
        "--batch-size",
        "16",
    ]
    for extra, says in (
        (["--method", "simclr", "--encoder", "convnet"], "only dino takes"),
        (["--method", "dino"], "takes 28x28 only"),
    ):
        assert main([*common, *extra, "--out", str(tmp_path / "refused")]) == 2
        assert says in capsys.readouterr().err
        assert not (tmp_path / "refused").exists()
