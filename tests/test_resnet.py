"""The ResNet backbones have torchvision's names and shapes: a hand-written list of
torchvision's resnet18 state_dict (less fc), and its published parameter counts."""

import pytest
import torch

from pretext.models import build_encoder, count_parameters

BN = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")


def torchvision_resnet18_keys() -> dict[str, tuple[int, ...]]:
    """torchvision.models.resnet18().state_dict()'s names and shapes, without fc."""
    keys = {"conv1.weight": (64, 3, 7, 7), **{f"bn1.{k}": (64,) for k in BN}}
    inputs = 64
    for stage, width in enumerate((64, 128, 256, 512), start=1):
        for block in (0, 1):
            prefix = f"layer{stage}.{block}"
            keys[f"{prefix}.conv1.weight"] = (width, inputs if block == 0 else width, 3, 3)
            keys[f"{prefix}.conv2.weight"] = (width, width, 3, 3)
            for bn in ("bn1", "bn2"):
                keys.update({f"{prefix}.{bn}.{k}": (width,) for k in BN})
            if block == 0 and stage > 1:
                keys[f"{prefix}.downsample.0.weight"] = (width, inputs, 1, 1)
                keys.update({f"{prefix}.downsample.1.{k}": (width,) for k in BN})
        inputs = width
    return {k: () if k.endswith("num_batches_tracked") else v for k, v in keys.items()}


def test_resnet18_state_dict_is_torchvisions_without_fc():
    model = build_encoder("resnet18", in_channels=3, image_size=96)
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert shapes == torchvision_resnet18_keys()
    assert len(shapes) + 2 == 122  # torchvision's resnet18 state_dict holds fc.weight, fc.bias too


@pytest.mark.parametrize(
    "name, with_fc, features",
    [("resnet18", 11_689_512, 512), ("resnet34", 21_797_672, 512), ("resnet50", 25_557_032, 2048)],
)
def test_parameter_counts_are_torchvisions(name, with_fc, features):
    model = build_encoder(name, in_channels=3, image_size=224)
    assert model.embed_dim == features
    assert count_parameters(model) + features * 1000 + 1000 == with_fc  # fc: features -> 1,000


def test_small_images_get_the_small_stem():
    small, large = build_encoder("resnet18", 3, 32), build_encoder("resnet18", 3, 96)
    assert small.conv1.weight.shape == (64, 3, 3, 3) and isinstance(
        small.maxpool, torch.nn.Identity
    )
    assert large.conv1.weight.shape == (64, 3, 7, 7)
    assert small(torch.rand(2, 3, 32, 32)).shape == (2, 512)
    assert build_encoder("resnet18", 1, 28)(torch.rand(2, 1, 28, 28)).shape == (2, 512)


def test_simclr_pretrains_a_resnet(tiny_data, tmp_path):
    from pretext.config import PretrainConfig
    from pretext.rundir import load_encoder
    from pretext.train import pretrain

    out = tmp_path / "run"
    cfg = PretrainConfig(
        data_dir=str(tiny_data),
        out=str(out),
        encoder="resnet18",
        epochs=1,
        batch_size=32,
        limit_train=32,
        threads=2,
        knn_monitor=0,
    )
    summary = pretrain(cfg, log=lambda *_: None)
    assert summary["epochs"] == 1 and summary["final_loss"] > 0
    assert load_encoder(out).embed_dim == 512


def test_run_on_a_folder_of_colour_photos_of_mixed_sizes(tmp_path):
    """pretext run --dataset FOLDER --encoder resnet18 --augment simclr --image-size 32."""
    import json

    import numpy as np
    from PIL import Image

    from pretext.cli import main

    rng = np.random.default_rng(0)
    for split, count in (("train", 24), ("test", 8)):
        for label, colour in enumerate([(200, 30, 30), (30, 200, 30)]):
            folder = tmp_path / "photos" / split / f"class{label}"
            folder.mkdir(parents=True)
            for i in range(count // 2):
                w, h = rng.integers(30, 60, 2)
                noise = rng.integers(-30, 30, (h, w, 3))
                pixels = (np.array(colour) + noise).clip(0, 255).astype(np.uint8)
                Image.fromarray(pixels).save(folder / f"{i}.png")
    out = tmp_path / "run"
    options = [
        "--dataset",
        str(tmp_path / "photos"),
        "--image-size",
        "32",
        "--encoder",
        "resnet18",
        "--augment",
        "simclr",
        "--epochs",
        "1",
        "--batch-size",
        "8",
        "--finetune-epochs",
        "1",
        "--out",
        str(out),
        "--threads",
        "2",
    ]
    assert main(["run", *options]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["encoder"] == "resnet18" and 0 <= metrics["linear_probe"]["test_accuracy"] <= 1
    assert (out / "report.html").is_file() and (out / "views.png").is_file()
