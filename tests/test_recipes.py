"""The published recipes in recipes/: each loads as --config does, names its source and what
that source reports, and builds its method with its head on a ResNet-18."""

import json
from pathlib import Path

import pytest

from pretext.config import pretrain_config_from_file
from pretext.errors import PretextError
from pretext.methods import build_method, method_options
from pretext.models import build_encoder

RECIPES = sorted((Path(__file__).parent.parent / "recipes").glob("*.json"))

# Values read off solo-learn's scripts/pretrain/cifar/*.yaml (optimizer, lr at batch 256,
# weight decay, temperature, projection sizes).
SOURCE = {
    "simclr": ("simclr", "lars", 0.4, 1e-4, 0.2, 2048, 256),
    "byol": ("byol", "lars", 1.0, 1e-5, None, 4096, 256),
    "mocov2plus": ("moco", "sgd", 0.3, 1e-4, 0.2, 2048, 256),
    "vicreg": ("vicreg", "lars", 0.3, 1e-4, None, 2048, 2048),
}


def test_there_is_a_recipe_per_method_and_data_set():
    names = {path.stem for path in RECIPES}
    assert names == {f"{ds}-{m}" for ds in ("cifar10", "stl10") for m in SOURCE}


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.stem)
def test_recipe_loads_with_its_sources_settings(path):
    cfg = pretrain_config_from_file(path)
    dataset, name = path.stem.split("-")
    method, optimizer, lr, decay, temperature, hidden, dim = SOURCE[name]
    assert (cfg.dataset, cfg.encoder, cfg.method) == (dataset, "resnet18", method)
    assert (cfg.optimizer, cfg.lr, cfg.weight_decay) == (optimizer, lr, decay)
    assert (cfg.temperature, cfg.projection_hidden, cfg.projection_dim) == (
        temperature,
        hidden,
        dim,
    )
    assert (cfg.epochs, cfg.batch_size, cfg.warmup_epochs) == (1000, 256, 10)
    about = json.loads(path.read_text())["about"]
    assert f"scripts/pretrain/cifar/{name}.yaml" in about["source"]
    assert about["reported"] and about["differs"]
    if dataset == "cifar10":
        assert "% online linear accuracy" in about["reported"]
    given = {"temperature": cfg.temperature, "projection_hidden": hidden, "projection_dim": dim}
    options = method_options(method, **given)  # every setting is one the method takes
    head = build_method(method, build_encoder("resnet18", 3, 32), **options).head
    widths = [m.out_features for m in head.modules() if hasattr(m, "out_features")]
    assert widths[0] == hidden and widths[-1] == dim


def test_a_recipe_with_an_unknown_section_is_refused(tmp_path):
    bad = json.loads(RECIPES[0].read_text()) | {"finetune": {}}
    (tmp_path / "bad.json").write_text(json.dumps(bad))
    with pytest.raises(PretextError, match="unknown sections finetune"):
        pretrain_config_from_file(tmp_path / "bad.json")


def test_heads_are_sized_to_a_resnet_unless_told():
    from pretext.config import PretrainConfig
    from pretext.methods import RESNET_HEADS
    from pretext.train.build import with_method_options

    for method, sizes in RESNET_HEADS.items():
        sized = with_method_options(PretrainConfig(method=method, encoder="resnet18"))
        assert {k: getattr(sized, k) for k in sizes} == sizes, method
    small = with_method_options(PretrainConfig(method="byol", encoder="cnn"))
    assert (small.projection_hidden, small.projection_dim) == (128, 64)  # BYOL's own defaults
    told = with_method_options(PretrainConfig(method="byol", encoder="resnet50", projection_dim=64))
    assert (told.projection_hidden, told.projection_dim) == (4096, 64)
