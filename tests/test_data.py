import gzip

import numpy as np
import pytest
import torch
from conftest import mnist_dir, needs_mnist, write_idx

from pretext import PretextError
from pretext.data import load_dataset, shard, stratified_subset
from pretext.data.idx import read_idx, read_idx_pair


def test_reads_gzip_and_raw_idx(tmp_path):
    array = np.arange(2 * 28 * 28).reshape(2, 28, 28) % 256
    gz = write_idx(tmp_path / "a.gz", array, 2051)
    raw = write_idx(tmp_path / "a", array, 2051, compress=False)
    for path in (gz, raw):
        out = read_idx(path, 2051)
        assert out.dtype == torch.uint8 and out.shape == (2, 28, 28)
        assert torch.equal(out, torch.from_numpy(array.astype(np.uint8)))


def test_wrong_magic_names_the_file(tmp_path):
    path = write_idx(tmp_path / "labels.gz", np.zeros(3), 2049)
    with pytest.raises(PretextError, match=r"labels\.gz has IDX magic 2049, expected 2051"):
        read_idx(path, 2051)


def test_truncated_gzip_and_truncated_body(tmp_path):
    path = write_idx(tmp_path / "img.gz", np.zeros((4, 28, 28)), 2051)
    cut = tmp_path / "cut.gz"
    cut.write_bytes(path.read_bytes()[:-20])
    with pytest.raises(PretextError, match="cut.gz is a truncated or corrupt gzip"):
        read_idx(cut, 2051)
    short = tmp_path / "short.gz"
    short.write_bytes(gzip.compress(gzip.decompress(path.read_bytes())[:-5]))
    with pytest.raises(PretextError, match="short.gz.*truncated"):
        read_idx(short, 2051)


def test_image_and_label_counts_must_agree(tmp_path):
    images = write_idx(tmp_path / "i.gz", np.zeros((5, 28, 28)), 2051)
    labels = write_idx(tmp_path / "l.gz", np.zeros(4), 2049)
    with pytest.raises(PretextError, match="5 images but .* 4 labels"):
        read_idx_pair(images, labels)


def test_named_set_from_data_dir_option_and_environment(tiny_data, monkeypatch):
    data = load_dataset("mnist", "train", data_dir=tiny_data)
    assert data.images.shape == (64, 1, 28, 28) and data.images.dtype == torch.uint8
    assert data.labels.dtype == torch.int64 and data.num_classes == 10
    monkeypatch.setenv("PRETEXT_DATA_DIR", str(tiny_data))
    assert len(load_dataset("mnist", "test")) == 32


def test_missing_data_says_where_it_looked(tmp_path, monkeypatch):
    monkeypatch.delenv("PRETEXT_DATA_DIR", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    with pytest.raises(PretextError, match=r"mnist not found \(looked in .*nowhere.*--data-dir"):
        load_dataset("mnist", data_dir=tmp_path / "nowhere")


def test_labels_out_of_range(tmp_path):
    folder = tmp_path / "mnist"
    folder.mkdir()
    write_idx(folder / "train-images-idx3-ubyte.gz", np.zeros((3, 28, 28)), 2051)
    write_idx(folder / "train-labels-idx1-ubyte.gz", np.array([1, 2, 12]), 2049)
    with pytest.raises(PretextError, match="label 12 is out of range"):
        load_dataset("mnist", data_dir=tmp_path)


@needs_mnist
def test_real_mnist_matches_its_readme():
    train = load_dataset("mnist", "train", mnist_dir())
    test = load_dataset("mnist", "test", mnist_dir())
    assert train.images.shape == (60000, 1, 28, 28) and len(test) == 10000
    assert train.labels[:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]
    assert test.labels[:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]


def test_digits_works_offline():
    train, test = load_dataset("digits"), load_dataset("digits", "test")
    assert train.images.shape[1:] == (1, 28, 28) and len(train) + len(test) == 1797
    assert train.num_classes == 10


def test_npz_and_folders(tmp_path):
    from PIL import Image

    images = np.random.default_rng(0).integers(0, 255, (6, 12, 12), dtype=np.uint8)
    np.savez(tmp_path / "set.npz", images=images, labels=np.arange(6) % 3)
    data = load_dataset(tmp_path / "set.npz")
    assert data.images.shape == (6, 1, 12, 12) and data.labels.tolist() == [0, 1, 2, 0, 1, 2]

    for cls in ("cat", "dog"):
        (tmp_path / "labelled" / cls).mkdir(parents=True)
        for i in range(2):
            Image.fromarray(images[i]).save(tmp_path / "labelled" / cls / f"{i}.png")
    (tmp_path / "labelled" / "dog" / "notes.txt").write_text("not an image")
    with pytest.warns(UserWarning, match="notes.txt"):
        labelled = load_dataset(tmp_path / "labelled")
    assert labelled.labels.tolist() == [0, 0, 1, 1]
    with pytest.raises(PretextError, match="notes.txt is not a readable image"):
        load_dataset(tmp_path / "labelled", skip_bad_files=False)

    (tmp_path / "flat").mkdir()
    Image.fromarray(images[0]).save(tmp_path / "flat" / "a.png")
    flat = load_dataset(tmp_path / "flat")
    assert flat.labels is None and flat.images.shape == (1, 1, 12, 12)


def test_empty_folder_and_unknown_name(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(PretextError, match="no readable images"):
        load_dataset(tmp_path / "empty")
    with pytest.raises(PretextError, match="unknown data set"):
        load_dataset("imagenet-9000")
    with pytest.raises(PretextError, match="no such file or folder"):
        load_dataset(tmp_path / "missing.npz")
    (tmp_path / "photo.png").write_bytes(b"not a data set")
    with pytest.raises(PretextError, match="neither a folder of images nor an .npz"):
        load_dataset(tmp_path / "photo.png")


@pytest.mark.parametrize("count", [10, 100, 605, 1000])
def test_stratified_subset_is_exact_balanced_and_seeded(count):
    labels = torch.arange(3000) % 10
    a = stratified_subset(labels, count, seed=1)
    assert len(a) == count and len(set(a.tolist())) == count
    per_class = torch.bincount(labels[a], minlength=10)
    assert per_class.max() - per_class.min() <= 1
    assert torch.equal(a, stratified_subset(labels, count, seed=1))
    assert not torch.equal(a, stratified_subset(labels, count, seed=2))


def test_stratified_subset_errors():
    labels = torch.arange(100) % 10
    with pytest.raises(PretextError):
        stratified_subset(labels, 5, 0)
    with pytest.raises(PretextError):
        stratified_subset(labels, 101, 0)


def test_shards_are_disjoint_and_cover_whole_batches():
    order = torch.randperm(100)
    parts = [shard(order, r, 2, 8) for r in range(2)]
    assert len(parts[0]) == len(parts[1]) == 48
    assert not set(parts[0].tolist()) & set(parts[1].tolist())
    assert set(parts[0].tolist()) | set(parts[1].tolist()) == set(order[:96].tolist())


def test_download_verifies_checksums_and_fills_the_cache(tmp_path, monkeypatch):
    import hashlib

    from conftest import make_idx_set

    import pretext.data.sources as sources

    mirror = make_idx_set(tmp_path / "mirror") / "mnist"
    files = {}
    for split, (images, labels) in sources.NAMED_SETS["mnist"].files.items():
        files[split] = tuple(
            sources.IdxFile(
                item.name,
                raw_md5=hashlib.md5(
                    gzip.decompress((mirror / f"{item.name}.gz").read_bytes())
                ).hexdigest(),
            )
            for item in (images, labels)
        )
    fake = sources.NamedSet(files=files, num_classes=10, mirrors=(mirror.as_uri() + "/",))
    monkeypatch.setitem(sources.NAMED_SETS, "mnist", fake)
    monkeypatch.delenv("PRETEXT_NO_DOWNLOAD")
    monkeypatch.delenv("PRETEXT_DATA_DIR", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    data = load_dataset("mnist")
    assert len(data) == 64
    assert (
        tmp_path / "home" / ".cache" / "pretext" / "mnist" / "t10k-labels-idx1-ubyte.gz"
    ).is_file()

    bad = {
        s: tuple(sources.IdxFile(i.name, raw_md5="0" * 32) for i in pair)
        for s, pair in files.items()
    }
    monkeypatch.setitem(sources.NAMED_SETS, "mnist", sources.NamedSet(bad, 10, fake.mirrors))
    monkeypatch.setenv("HOME", str(tmp_path / "home2"))
    with pytest.raises(PretextError, match="fails its checksum"):
        load_dataset("mnist")


def test_image_size_resizes_every_source(tmp_path, tiny_data):
    from PIL import Image

    mnist = load_dataset("mnist", "train", tiny_data, image_size=16)
    assert mnist.images.shape == (64, 1, 16, 16) and mnist.images.dtype == torch.uint8
    flat = np.full((3, 20, 20), 77, dtype=np.uint8)
    np.savez(tmp_path / "flat.npz", images=flat)
    assert load_dataset(tmp_path / "flat.npz", image_size=12).images.unique().tolist() == [77]
    folder = tmp_path / "mixed"
    folder.mkdir()
    for i, size in enumerate([(40, 30), (10, 10), (64, 64)]):
        Image.new("RGB", size, (200, 10, 10)).save(folder / f"{i}.png")
    images = load_dataset(folder, image_size=24).images
    assert images.shape == (3, 3, 24, 24) and images[:, 0].eq(200).all()
    # A wide image keeps its shape: scaled to the size, then the centre square (white) is kept.
    wide = np.zeros((20, 60), dtype=np.uint8)
    wide[:, 15:45] = 255
    (tmp_path / "wide").mkdir()
    Image.fromarray(wide).save(tmp_path / "wide" / "a.png")
    assert load_dataset(tmp_path / "wide", image_size=10).images.min() >= 250
    with pytest.raises(PretextError, match="--image-size"):
        load_dataset(folder, image_size=4)


def test_missing_test_split_is_found_without_decoding_images(tmp_path, monkeypatch):
    from pretext.data.peek import missing_test_split

    (tmp_path / "labelled" / "cat").mkdir(parents=True)
    (tmp_path / "labelled" / "cat" / "0.png").write_bytes(b"never decoded")
    assert "no test split" in missing_test_split(tmp_path / "labelled")
    (tmp_path / "labelled" / "test" / "cat").mkdir(parents=True)
    assert missing_test_split(tmp_path / "labelled") is None
    (tmp_path / "flat").mkdir()
    (tmp_path / "flat" / "0.png").write_bytes(b"unlabelled: nothing to evaluate")
    assert missing_test_split(tmp_path / "flat") is None
    images = np.zeros((4, 8, 8), dtype=np.uint8)
    np.savez(tmp_path / "plain.npz", images=images, labels=np.arange(4))
    assert "test_images" in missing_test_split(tmp_path / "plain.npz")
    np.savez(tmp_path / "split.npz", images=images, labels=np.arange(4), test_images=images)
    assert missing_test_split(tmp_path / "split.npz") is None
    assert missing_test_split("mnist") is None
    (tmp_path / "mnist" / "train" / "0").mkdir(parents=True)  # does not shadow the name
    monkeypatch.chdir(tmp_path)
    assert missing_test_split("mnist") is None


def test_known_unlabelled_reads_no_image(tmp_path, monkeypatch):
    from pretext.data.peek import known_unlabelled

    (tmp_path / "flat").mkdir()
    (tmp_path / "flat" / "0.png").write_bytes(b"never decoded")
    assert known_unlabelled(tmp_path / "flat")
    (tmp_path / "classes" / "train" / "cat").mkdir(parents=True)
    (tmp_path / "classes" / "train" / "cat" / "0.png").write_bytes(b"never decoded")
    assert not known_unlabelled(tmp_path / "classes")
    images = np.zeros((4, 8, 8), dtype=np.uint8)
    np.savez(tmp_path / "plain.npz", images=images)
    assert known_unlabelled(tmp_path / "plain.npz")
    np.savez(tmp_path / "labelled.npz", images=images, labels=np.arange(4))
    assert not known_unlabelled(tmp_path / "labelled.npz")
    (tmp_path / "broken.npz").write_bytes(b"not a zip")
    assert not known_unlabelled(tmp_path / "broken.npz")  # load_dataset says what is wrong
    assert not known_unlabelled("mnist")
    (tmp_path / "mnist").mkdir()  # a folder named like a data set does not shadow the name
    monkeypatch.chdir(tmp_path)
    assert not known_unlabelled("mnist")


def test_run_refuses_a_labelled_folder_without_test_split_before_pretraining(tmp_path, capsys):
    from PIL import Image

    from pretext.cli import main

    for cls in ("a", "b"):
        (tmp_path / "photos" / cls).mkdir(parents=True)
        Image.new("L", (28, 28), 200).save(tmp_path / "photos" / cls / "0.png")
    out = tmp_path / "run"
    assert main(["run", "--dataset", str(tmp_path / "photos"), "--out", str(out)]) == 2
    assert "no test split" in capsys.readouterr().err and not out.exists()
