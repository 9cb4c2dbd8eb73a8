"""Per-channel input normalisation: found from the data, recorded in the run directory, and
used by the commands that read the run afterwards and by export."""

import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from pretext.augment import augment, normalise, preset, to_input, to_pixels, with_stats
from pretext.cli import main
from pretext.commands.export import export_command
from pretext.commands.prepare import prepare_command
from pretext.commands.search import embed_command
from pretext.config import PretrainConfig, input_stats, pretrain_config_from_file
from pretext.data.stats import MNIST_STATS, PUBLISHED, InputStats, channel_stats, training_stats
from pretext.errors import PretextError
from pretext.train import pretrain

MEAN, STD = (0.2, 0.5, 0.7), (0.1, 0.2, 0.3)


def colour_npz(path, n=48, seed=0):
    """Colour images whose channels have very different brightness, with labels."""
    rng = np.random.default_rng(seed)
    images = np.stack(
        [rng.integers(lo, hi, (n, 28, 28)) for lo, hi in ((0, 60), (80, 160), (150, 256))], 1
    ).astype(np.uint8)
    labels = rng.integers(0, 3, n)
    np.savez(path, images=images, labels=labels, test_images=images[:16], test_labels=labels[:16])
    return path, images


def test_per_channel_normalise_is_x_minus_mean_over_std_channel_by_channel():
    x = torch.rand(4, 3, 5, 5)
    aug = with_stats(preset("none"), InputStats(MEAN, STD))
    expected = torch.stack([(x[:, c] - MEAN[c]) / STD[c] for c in range(3)], 1)
    assert torch.allclose(normalise(x, aug), expected, atol=1e-6)
    assert torch.allclose(to_pixels(normalise(x, aug), aug), x, atol=1e-6)
    images = (x * 255).round().to(torch.uint8)
    assert torch.allclose(to_input(images, aug), normalise(images / 255.0, aug), atol=1e-6)


def test_random_views_normalise_each_channel_by_its_own_statistics():
    """The fused contrast + noise + clamp path per channel equals the one-value path applied
    to that channel with its own mean and std (the same draws: the generator is reseeded)."""
    x = torch.rand(6, 3, 12, 12)
    base = replace(preset("default"), erase_p=0.5)
    per_channel = with_stats(base, InputStats(MEAN, STD))
    out = augment(x, per_channel, torch.Generator().manual_seed(3))
    for c in range(3):
        one = replace(base, mean=MEAN[c], std=STD[c])
        ref = augment(x, one, torch.Generator().manual_seed(3))
        assert torch.allclose(out[:, c], ref[:, c], atol=1e-5)


def test_raw_pixel_presets_and_one_value_stats_keep_their_forms():
    assert preset("seed", InputStats(MEAN, STD)) == preset("seed")  # the write-up's raw pixels
    gray = preset("none", InputStats((0.3, 0.3, 0.3), (0.2, 0.2, 0.2)))
    assert (gray.mean, gray.std) == (0.3, 0.2)  # the one-value fast path
    assert preset("none").mean == MNIST_STATS.mean[0]


def test_stats_come_from_a_named_set_a_cache_or_the_images(tmp_path, tiny_data):
    assert (
        training_stats("cifar10", torch.zeros(2, 3, 4, 4, dtype=torch.uint8))
        == PUBLISHED["cifar10"]
    )
    images = torch.randint(0, 256, (10, 3, 6, 6), dtype=torch.uint8)
    stats = training_stats("my-folder", images)
    unit = images.double() / 255
    assert stats.mean == pytest.approx(unit.mean(dim=(0, 2, 3)).tolist(), abs=1e-6)
    assert stats.std == pytest.approx(unit.std(dim=(0, 2, 3), unbiased=False).tolist(), abs=1e-6)
    flat = torch.full((3, 1, 4, 4), 7, dtype=torch.uint8)
    assert training_stats("flat", flat).std == (1.0,)  # nothing to scale
    path, _ = colour_npz(tmp_path / "set.npz")
    cache = tmp_path / "cache"
    prepare_command(str(path), str(cache), log=lambda *_: None)
    recorded = json.loads((cache / "cache.json").read_text())
    got = training_stats(str(cache), torch.zeros(1, 3, 1, 1, dtype=torch.uint8))
    assert got == InputStats(tuple(recorded["mean"]), tuple(recorded["std"]))
    assert list(channel_stats(np.zeros((2, 1, 3, 3), np.uint8))[0]) == [0.0]
    # a cache of a named set is normalised as the set is, whatever part of it was prepared
    prepare_command("mnist", tmp_path / "digits", data_dir=tiny_data, log=lambda *_: None)
    assert training_stats(str(tmp_path / "digits"), torch.zeros(1, 1, 1, 1)) == MNIST_STATS


def test_a_colour_run_records_its_stats_and_every_later_command_uses_them(tmp_path):
    path, images = colour_npz(tmp_path / "set.npz")
    out = tmp_path / "run"
    cfg = PretrainConfig(dataset=str(path), out=str(out), augment="cifar", epochs=1)
    pretrain(replace(cfg, batch_size=16, threads=1, knn_monitor=0), log=lambda *_: None)
    recorded = json.loads((out / "config.json").read_text())["pretrain"]
    expected = channel_stats(images)
    assert recorded["mean"] == pytest.approx(expected[0]) and recorded["std"] == expected[1]
    assert min(recorded["mean"]) < 0.15 and max(recorded["mean"]) > 0.75  # per channel
    described = json.loads(export_command(out).with_suffix(".json").read_text())
    assert described["normalise"] == {"scale": 1.0, "mean": recorded["mean"], "std": expected[1]}
    first = np.load(embed_command(out))["embeddings"]
    # The same run told other statistics embeds otherwise: the command reads the record.
    recorded["mean"] = [0.5, 0.5, 0.5]
    (out / "config.json").write_text(json.dumps({"pretrain": recorded}))
    second = np.load(embed_command(out, out=tmp_path / "again"))["embeddings"]
    assert not np.allclose(first, second)
    assert input_stats(PretrainConfig()) == MNIST_STATS  # a run recorded before stats were


def test_stats_in_a_settings_file_are_taken_and_checked(tmp_path, capsys):
    given = tmp_path / "settings.json"
    given.write_text(json.dumps({"mean": [0.4, 0.4, 0.4], "std": [0.25, 0.25, 0.25]}))
    cfg = pretrain_config_from_file(given)
    assert cfg.mean == (0.4, 0.4, 0.4) and input_stats(cfg).std == (0.25, 0.25, 0.25)
    given.write_text(json.dumps({"mean": "bright"}))
    with pytest.raises(PretextError, match="mean must be a list of numbers"):
        pretrain_config_from_file(given)
    path, _ = colour_npz(tmp_path / "set.npz")
    for settings, says in (
        ({"mean": [0.5], "std": [0.2]}, "the images have 3 channels"),
        ({"mean": [0.5, 0.5, 0.5]}, "mean and std are given together"),
        ({"mean": [0.5, 0.5, 0.5], "std": [0.2, 0.0, 0.2]}, "std must be > 0"),
    ):
        given.write_text(json.dumps(settings))
        args = ["pretrain", "--dataset", str(path), "--config", str(given), "--epochs", "1"]
        assert main([*args, "--out", str(tmp_path / "refused"), "--batch-size", "16"]) == 2
        assert says in capsys.readouterr().err
        assert not (tmp_path / "refused").exists()
