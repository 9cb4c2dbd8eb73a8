"""CIFAR-10, CIFAR-100 and STL-10 read from small files written in their binary formats, pixel
for pixel (STL-10 stores each channel column by column)."""

import json

import numpy as np
import pytest
import torch

from pretext import PretextError
from pretext.commands.prepare import prepare_command
from pretext.data import load_dataset
from pretext.data.colour_sets import pretraining_split

RNG = np.random.default_rng(0)


def cifar_file(path, images, *label_columns):
    """Records: the label bytes, then red, green and blue planes, row by row."""
    rows = [np.concatenate([[*labels], image.reshape(-1)]) for *labels, image in
            zip(*label_columns, images, strict=True)]  # fmt: skip
    path.parent.mkdir(parents=True, exist_ok=True)
    np.asarray(rows, dtype=np.uint8).tofile(path)


def test_cifar10_reads_every_batch_pixel_for_pixel(tmp_path):
    folder = tmp_path / "cifar-10-batches-bin"
    batches = [RNG.integers(0, 256, (3, 3, 32, 32), dtype=np.uint8) for _ in range(6)]
    labels = [RNG.integers(0, 10, 3) for _ in range(6)]
    for i in range(5):
        cifar_file(folder / f"data_batch_{i + 1}.bin", batches[i], labels[i])
    cifar_file(folder / "test_batch.bin", batches[5], labels[5])
    train = load_dataset("cifar10", "train", tmp_path)
    assert torch.equal(train.images, torch.from_numpy(np.concatenate(batches[:5])))
    assert train.labels.tolist() == np.concatenate(labels[:5]).tolist()
    test = load_dataset("cifar10", "test", tmp_path)
    assert test.images.shape == (3, 3, 32, 32) and torch.equal(
        test.images[1, 2], torch.from_numpy(batches[5][1, 2])
    )


def test_cifar100_fine_labels_and_coarse_ones(tmp_path):
    images = RNG.integers(0, 256, (4, 3, 32, 32), dtype=np.uint8)
    coarse, fine = np.array([0, 19, 3, 7]), np.array([99, 0, 42, 5])
    for split in ("train", "test"):
        cifar_file(tmp_path / "cifar-100-binary" / f"{split}.bin", images, coarse, fine)
    assert load_dataset("cifar100", "train", tmp_path).labels.tolist() == fine.tolist()
    assert load_dataset("cifar100-coarse", "test", tmp_path).labels.tolist() == coarse.tolist()
    assert torch.equal(load_dataset("cifar100", "train", tmp_path).images, torch.from_numpy(images))


def test_stl10_is_column_major_with_labels_from_one_and_an_unlabelled_split(tmp_path):
    folder = tmp_path / "stl10_binary"
    folder.mkdir()
    images = RNG.integers(0, 256, (2, 3, 96, 96), dtype=np.uint8)
    images.transpose(0, 1, 3, 2).tofile(folder / "train_X.bin")  # each channel column by column
    np.array([1, 10], dtype=np.uint8).tofile(folder / "train_y.bin")
    images[:1].transpose(0, 1, 3, 2).tofile(folder / "unlabeled_X.bin")
    train = load_dataset("stl10", "train", tmp_path)
    assert torch.equal(train.images, torch.from_numpy(images)) and train.labels.tolist() == [0, 9]
    unlabelled = load_dataset("stl10", "unlabeled", tmp_path)
    assert unlabelled.labels is None and torch.equal(unlabelled.images[0], train.images[0])
    # pretraining reads every image, labelled or not
    assert (
        pretraining_split("stl10") == "train+unlabeled" and pretraining_split("cifar10") == "train"
    )
    every = load_dataset("stl10", pretraining_split("stl10"), tmp_path)
    assert every.labels is None and len(every) == 3 and torch.equal(every.images[:2], train.images)
    # and so does it from a cache of the set, which holds the unlabelled images once
    np.array([2, 3], dtype=np.uint8).tofile(folder / "test_y.bin")
    images.transpose(0, 1, 3, 2).tofile(folder / "test_X.bin")
    prepare_command("stl10", tmp_path / "cache", data_dir=tmp_path, log=lambda *_: None)
    cache = str(tmp_path / "cache")
    info = json.loads((tmp_path / "cache" / "cache.json").read_text())
    assert sorted(info["splits"]) == ["test", "train", "train+unlabeled"]
    assert pretraining_split(cache) == "train+unlabeled"
    cached = load_dataset(cache, "train+unlabeled")
    assert cached.labels is None and torch.equal(cached.images, every.images)
    assert load_dataset(cache, "train").labels.tolist() == [0, 9]


def test_missing_or_corrupt_files_are_one_line(tmp_path):
    with pytest.raises(PretextError, match="no cifar-10-batches-bin/ folder .* unpack"):
        load_dataset("cifar10", "train", tmp_path / "none")
    (tmp_path / "cifar-100-binary").mkdir()
    (tmp_path / "cifar-100-binary" / "train.bin").write_bytes(b"\x00" * 100)
    with pytest.raises(PretextError, match="is not a CIFAR binary file"):
        load_dataset("cifar100", "train", tmp_path)
    with pytest.raises(PretextError, match="cannot read .*test.bin"):
        load_dataset("cifar100", "test", tmp_path)
    with pytest.raises(PretextError, match="has no 'unlabeled' split"):
        load_dataset("cifar10", "unlabeled", tmp_path)


def archive_of(tmp_path, files: dict[str, bytes], name="set.tar.gz"):
    """A .tar.gz of `files` (archive path -> bytes), its file:// URL and its MD5."""
    import hashlib
    import io
    import tarfile

    path = tmp_path / name
    with tarfile.open(path, "w:gz") as tar:
        for member, data in files.items():
            info = tarfile.TarInfo(member)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path.as_uri(), hashlib.md5(path.read_bytes()).hexdigest()


def test_a_missing_set_is_downloaded_checked_and_unpacked(tmp_path, monkeypatch):
    from dataclasses import replace

    from pretext.data import colour_sets

    images = RNG.integers(0, 256, (2, 3, 32, 32), dtype=np.uint8)
    cifar_file(tmp_path / "src" / "b.bin", images, np.array([4, 2]))
    record = (tmp_path / "src" / "b.bin").read_bytes()
    members = {f"cifar-10-batches-bin/data_batch_{i}.bin": record for i in range(1, 6)}
    url, md5 = archive_of(tmp_path, {**members, "cifar-10-batches-bin/test_batch.bin": record})
    spec = colour_sets.COLOUR_SETS["cifar10"]
    monkeypatch.setitem(colour_sets.COLOUR_SETS, "cifar10", replace(spec, url=url, md5=md5))
    monkeypatch.delenv("PRETEXT_NO_DOWNLOAD")
    monkeypatch.delenv("PRETEXT_DATA_DIR", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    train = load_dataset("cifar10", "train")
    assert torch.equal(train.images, torch.from_numpy(np.concatenate([images] * 5)))
    cache = tmp_path / "home" / ".cache" / "pretext"
    assert sorted(p.name for p in cache.iterdir()) == ["cifar-10-batches-bin"]  # no leftovers
    assert load_dataset("cifar10", "test").labels.tolist() == [4, 2]  # found, not fetched again

    monkeypatch.setitem(colour_sets.COLOUR_SETS, "cifar10", replace(spec, url=url, md5="0" * 32))
    monkeypatch.setenv("HOME", str(tmp_path / "home2"))
    with pytest.raises(PretextError, match="fails its checksum"):
        load_dataset("cifar10", "train")
    assert list((tmp_path / "home2" / ".cache" / "pretext").iterdir()) == []


def test_an_archive_reaching_outside_its_folder_is_refused(tmp_path, monkeypatch):
    from dataclasses import replace

    from pretext.data import colour_sets

    url, md5 = archive_of(tmp_path, {"cifar-100-binary/../../evil.txt": b"x"})
    spec = colour_sets.COLOUR_SETS["cifar100"]
    monkeypatch.setitem(colour_sets.COLOUR_SETS, "cifar100", replace(spec, url=url, md5=md5))
    monkeypatch.delenv("PRETEXT_NO_DOWNLOAD")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    with pytest.raises(PretextError, match="outside cifar-100-binary/: refused"):
        load_dataset("cifar100", "train", tmp_path / "none")
    assert not (tmp_path / "evil.txt").exists() and not (tmp_path / "home" / "evil.txt").exists()
    assert list((tmp_path / "home" / ".cache" / "pretext").iterdir()) == []


def test_no_network_says_it_could_not_be_downloaded(tmp_path, monkeypatch):
    from dataclasses import replace

    from pretext.data import colour_sets

    spec = colour_sets.COLOUR_SETS["stl10"]
    gone = (tmp_path / "missing.tar.gz").as_uri()
    monkeypatch.setitem(colour_sets.COLOUR_SETS, "stl10", replace(spec, url=gone))
    monkeypatch.delenv("PRETEXT_NO_DOWNLOAD")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    with pytest.raises(PretextError, match="it could not be downloaded; unpack"):
        load_dataset("stl10", "train", tmp_path / "none")
