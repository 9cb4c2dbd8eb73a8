"""A folder of images is one data set: one mode and one side for train and test alike, and a
file that is too large or not an image is a bad file, never a traceback."""

import struct
import zlib

import numpy as np
import pytest
import torch
from PIL import Image

from pretext import PretextError
from pretext.data import load_dataset


def png_declaring(path, width, height):
    """A tiny PNG whose header claims width x height pixels (a decompression bomb's shape)."""

    def chunk(kind, data):
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b""))
        + chunk(b"IEND", b"")
    )


def test_one_colour_image_makes_train_and_test_rgb(tmp_path):
    for split, first in (("train", "a"), ("test", "b")):
        (tmp_path / split / "x").mkdir(parents=True)
        Image.new("L", (8, 8), 100).save(tmp_path / split / "x" / f"{first}.png")
    Image.new("RGB", (8, 8), (250, 0, 0)).save(tmp_path / "train" / "x" / "z.png")
    train, test = load_dataset(tmp_path, "train"), load_dataset(tmp_path, "test")
    assert train.images.shape == (2, 3, 8, 8) and test.images.shape == (1, 3, 8, 8)
    assert train.images[0].eq(100).all() and train.images[1, 0].eq(250).all()


def test_mixed_sizes_without_image_size_are_refused_naming_two_files(tmp_path):
    Image.new("L", (8, 8)).save(tmp_path / "a.png")
    Image.new("L", (9, 8)).save(tmp_path / "b.png")
    with pytest.raises(PretextError, match=r"a.png is 8 x 8, .*b.png is 9 x 8; give --image-size"):
        load_dataset(tmp_path)
    assert load_dataset(tmp_path, image_size=8).images.shape == (2, 1, 8, 8)


def test_a_decompression_bomb_is_a_bad_file(tmp_path):
    Image.new("L", (8, 8)).save(tmp_path / "a.png")
    png_declaring(tmp_path / "bomb.png", 50_000, 50_000)
    assert (tmp_path / "bomb.png").stat().st_size < 200
    with pytest.warns(UserWarning, match="skipping .*bomb.png"):
        assert len(load_dataset(tmp_path)) == 1
    with pytest.raises(PretextError, match="bomb.png is not a readable image"):
        load_dataset(tmp_path, skip_bad_files=False)


@pytest.mark.parametrize(
    "arrays, message",
    [
        ({"images": np.zeros((2, 8, 8, 4), np.uint8)}, "C 1 or 3, got"),
        ({"images": np.full((2, 8, 8), -0.5)}, r"float images must be in \[0, 1\]"),
        ({"images": np.array([[[np.nan]]])}, "NaN or infinite"),
        ({"images": np.zeros((2, 8, 8), np.uint8), "labels": np.array([1.0, 2.0])}, "integers"),
        ({"images": np.zeros((2, 8, 8), np.uint8), "labels": np.array(["a", "b"])}, "integers"),
        ({"images": np.zeros((2, 8, 8), np.uint8), "labels": np.zeros((2, 1), int)}, "1-D"),
        ({"images": np.zeros((2, 8, 8), np.uint8), "labels": np.array([0, 10**6])}, "0..99999"),
        ({"images": np.zeros((2, 8, 8), np.uint8), "labels": np.array([1, 2])}, "from 0"),
    ],
)
def test_npz_values_are_checked(tmp_path, arrays, message):
    np.savez(tmp_path / "set.npz", **arrays)
    with pytest.raises(PretextError, match=message):
        load_dataset(tmp_path / "set.npz")


def test_npz_layouts_and_a_test_split_unlike_training(tmp_path):
    last = np.random.default_rng(0).integers(0, 256, (2, 8, 8, 3), dtype=np.uint8)
    np.savez(
        tmp_path / "a.npz",
        images=last,
        labels=np.array([0, 1]),
        test_images=last[:, :4],
        test_labels=np.array([0, 1]),
    )
    assert torch.equal(
        load_dataset(tmp_path / "a.npz").images, torch.from_numpy(last).permute(0, 3, 1, 2)
    )
    with pytest.raises(PretextError, match=r"test_images are \(3, 4, 8\).*\(3, 8, 8\)"):
        load_dataset(tmp_path / "a.npz", "test")
    np.savez(
        tmp_path / "b.npz",
        images=last / 255.0,
        labels=np.array([0, 1]),
        test_images=last,
        test_labels=np.array([0, 2]),
    )
    assert torch.equal(
        load_dataset(tmp_path / "b.npz").images[0, :, 0, 0], torch.from_numpy(last[0, 0, 0])
    )
    with pytest.raises(PretextError, match="test_labels reach 2, the training labels only 1"):
        load_dataset(tmp_path / "b.npz", "test")


def test_a_test_folder_takes_the_training_class_labels(tmp_path):
    # test/ lacks class "b": its "c" images must keep label 2, as in train/
    for split, classes in (("train", "abc"), ("test", "ac")):
        for c in classes:
            (tmp_path / split / c).mkdir(parents=True)
            Image.new("L", (8, 8), 40 * "abc".index(c)).save(tmp_path / split / c / "x.png")
    test = load_dataset(tmp_path, "test")
    assert test.labels.tolist() == [0, 2] and test.classes == ("a", "b", "c")
    assert test.files == (
        str(tmp_path / "test" / "a" / "x.png"),
        str(tmp_path / "test" / "c" / "x.png"),
    )
    (tmp_path / "test" / "d").mkdir()
    Image.new("L", (8, 8)).save(tmp_path / "test" / "d" / "x.png")
    with pytest.raises(PretextError, match="class folder 'd' is not among the training classes"):
        load_dataset(tmp_path, "test")
