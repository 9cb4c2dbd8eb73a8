"""pretext prepare: a folder decoded once into a cache that reads back as the folder does,
continues after an interruption, decodes only what changed, and trains exactly as memory."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from pretext.cli import main
from pretext.commands import prepare_command
from pretext.config import PretrainConfig
from pretext.data import load_dataset
from pretext.data import prepare as prepare_module
from pretext.train import pretrain

QUIET = lambda *_: None  # noqa: E731


def photo_folder(root, per_class=6, seed=0):
    """train/ and test/ with two classes of colour photos of mixed sizes, and one corrupt file."""
    rng = np.random.default_rng(seed)
    for split in ("train", "test"):
        for c in ("cat", "dog"):
            (root / split / c).mkdir(parents=True)
            for i in range(per_class):
                w, h = 30 + 3 * i, 40 - 2 * i
                pixels = rng.integers(0, 255, (h, w, 3)).astype(np.uint8)
                Image.fromarray(pixels).save(root / split / c / f"{i}.png")
    (root / "train" / "dog" / "broken.png").write_bytes(b"not a png")
    return root


def same_as_direct(cache, folder, size, split="train"):
    direct = load_dataset(folder, split, image_size=size)
    cached = load_dataset(cache, split)
    assert cached.on_disk and not direct.on_disk
    assert torch.equal(cached.images, direct.images)  # pixel for pixel
    assert torch.equal(cached.labels, direct.labels)
    assert cached.files == direct.files and cached.classes == direct.classes == ("cat", "dog")


def test_prepare_reads_back_as_a_direct_decode(tmp_path, recwarn):
    folder = photo_folder(tmp_path / "photos")
    lines = []
    info = prepare_command(folder, tmp_path / "cache", image_size=24, log=lines.append)
    assert info["splits"] == ["train", "test"] and info["channels"] == 3
    assert any("skipping" in str(w.message) and "broken.png" in str(w.message) for w in recwarn)
    assert lines[0].startswith("train: 12 images of 13 files")
    same_as_direct(tmp_path / "cache", folder, 24)
    same_as_direct(tmp_path / "cache", folder, 24, "test")
    train = load_dataset(folder, "train", image_size=24).images.double() / 255
    assert info["mean"] == pytest.approx(train.mean(dim=(0, 2, 3)).tolist(), abs=1e-5)
    assert info["std"] == pytest.approx(train.std(dim=(0, 2, 3), unbiased=False).tolist(), abs=1e-5)
    with pytest.raises(Exception, match="needs a cache prepared at that size"):
        load_dataset(tmp_path / "cache", "train", image_size=32)


def test_a_second_prepare_decodes_only_what_changed(tmp_path):
    folder = photo_folder(tmp_path / "photos")
    prepare_command(folder, tmp_path / "cache", image_size=24, log=QUIET)
    (folder / "train" / "cat" / "0.png").unlink()
    Image.new("RGB", (50, 30), (200, 10, 10)).save(folder / "train" / "cat" / "new.png")
    Image.new("RGB", (33, 33), (0, 90, 0)).save(folder / "train" / "dog" / "3.png")  # modified
    lines = []
    prepare_command(folder, tmp_path / "cache", image_size=24, log=lines.append)
    # new.png, the modified 3.png and the corrupt file are decoded; 10 rows are copied
    assert "(3 decoded, 10 unchanged from the cache)" in lines[0]
    same_as_direct(tmp_path / "cache", folder, 24)
    assert len(list((tmp_path / "cache").glob("train-*.u8"))) == 1  # the old data file is gone


def test_an_interrupted_prepare_goes_on_where_it_stopped(tmp_path, monkeypatch):
    folder = photo_folder(tmp_path / "photos", per_class=10)
    real, calls = prepare_module.decode_chw, []

    def dies_after_eight(task):
        calls.append(task)
        if len(calls) > 8:
            raise KeyboardInterrupt
        return real(task)

    monkeypatch.setattr(prepare_module, "JOURNAL_EVERY", 4)
    monkeypatch.setattr(prepare_module, "decode_chw", dies_after_eight)
    with pytest.raises(KeyboardInterrupt):
        prepare_command(folder, tmp_path / "cache", image_size=16, log=QUIET)
    assert not (tmp_path / "cache" / "cache.json").exists()  # not a cache until complete
    monkeypatch.setattr(prepare_module, "decode_chw", real)
    lines = []
    prepare_command(folder, tmp_path / "cache", image_size=16, log=lines.append)
    assert "resumed at file 8" in lines[0] and "(13 decoded" in lines[0]
    same_as_direct(tmp_path / "cache", folder, 16)
    assert not list((tmp_path / "cache").glob(".*"))  # no journal or partial file left


def test_two_workers_write_the_same_cache(tmp_path):
    folder = photo_folder(tmp_path / "photos")
    prepare_command(folder, tmp_path / "one", image_size=20, log=QUIET)
    prepare_command(folder, tmp_path / "two", image_size=20, workers=2, log=QUIET)
    one, two = (load_dataset(tmp_path / name, "train") for name in ("one", "two"))
    assert torch.equal(one.images, two.images) and one.files == two.files


def pretrain_on(dataset, out, log=QUIET, **extra):
    cfg = PretrainConfig(
        dataset=str(dataset), out=str(out), encoder="convnet", epochs=2, batch_size=4,
        image_size=24, threads=1, augment="simclr", checkpoint_every=2, **extra,
    )  # fmt: skip
    pretrain(cfg, log=log)
    return [json.loads(line)["loss"] for line in (out / "metrics.jsonl").read_text().splitlines()]


def test_training_from_the_cache_is_training_from_memory(tmp_path):
    folder = photo_folder(tmp_path / "photos")
    prepare_command(folder, tmp_path / "cache", image_size=24, log=QUIET)
    from_memory = pretrain_on(folder, tmp_path / "memory")
    from_cache = pretrain_on(tmp_path / "cache", tmp_path / "cached")
    assert from_cache == from_memory  # the same batches, the same views, the same steps

    def stop_at_epoch_end(message):  # after the step-2 checkpoint, before the epoch's own
        if message.startswith("epoch 1/"):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        pretrain_on(tmp_path / "cache", tmp_path / "resumed", log=stop_at_epoch_end)
    checkpoint = tmp_path / "resumed" / "checkpoints" / "last.pt"
    assert torch.load(checkpoint, weights_only=True)["step"] == 2  # stopped mid-epoch
    assert pretrain_on(tmp_path / "cache", tmp_path / "resumed", resume=True) == from_cache
    state = torch.load(checkpoint, weights_only=True)
    straight = torch.load(tmp_path / "cached" / "checkpoints" / "last.pt", weights_only=True)
    assert all(torch.equal(state["encoder"][k], straight["encoder"][k]) for k in state["encoder"])


def test_prepare_refuses_what_it_cannot_do(tmp_path, capsys):
    folder = photo_folder(tmp_path / "photos")
    assert main(["prepare", str(folder), "--out", str(tmp_path / "c")]) == 2
    assert "give --image-size S" in capsys.readouterr().err
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    assert (
        main(["prepare", str(folder), "--out", str(tmp_path / "mine"), "--image-size", "16"]) == 2
    )
    assert "is not a pretext cache" in capsys.readouterr().err
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"
