import csv
import json
import math
from dataclasses import replace

import numpy as np
import pytest
import torch

from pretext.checkpoint import load_checkpoint
from pretext.cli import main
from pretext.commands import cluster_command
from pretext.config import ClusterConfig, PretrainConfig, SemiConfig
from pretext.errors import PretextError
from pretext.evaluate.cluster import (
    cluster_accuracy,
    match_clusters,
    nearest_neighbours,
    scan_loss,
    train_clusters,
)
from pretext.rundir import load_encoder
from pretext.train import pretrain


def test_scan_loss_hand_computed():
    anchor = torch.tensor([[1.0, 0.0], [0.5, 0.5]])
    neighbour = torch.tensor([[1.0, 0.0], [0.5, 0.5]])
    # agreements 1 and 0.5; mean assignment over the four rows (0.75, 0.25)
    consistency = -(math.log(1.0) + math.log(0.5)) / 2
    entropy = -(0.75 * math.log(0.75) + 0.25 * math.log(0.25))
    loss = scan_loss(anchor, neighbour, entropy_weight=2.0)
    assert loss.item() == pytest.approx(consistency - 2.0 * entropy, abs=1e-6)


def test_scan_loss_prefers_agreeing_neighbours_and_used_clusters():
    one_hot = torch.eye(4)
    assert scan_loss(one_hot, one_hot, 1.0) < scan_loss(one_hot, one_hot.roll(1, 0), 1.0)
    collapsed = torch.zeros(4, 4)
    collapsed[:, 0] = 1
    assert scan_loss(one_hot, one_hot, 1.0) < scan_loss(collapsed, collapsed, 1.0)


@pytest.mark.parametrize("chunk", [3, 4096])
def test_nearest_neighbours_match_brute_force(chunk):
    features = torch.randn(50, 8, generator=torch.Generator().manual_seed(1))
    got = nearest_neighbours(features, 5, chunk_size=chunk)
    unit = torch.nn.functional.normalize(features, dim=1)
    sims = unit @ unit.T
    sims.fill_diagonal_(-2.0)
    expected = sims.topk(5, dim=1).indices
    assert torch.equal(got, expected)
    assert not (got == torch.arange(50)[:, None]).any()  # never itself
    with pytest.raises(ValueError):
        nearest_neighbours(features, 50)


def test_match_clusters_one_to_one_and_majority():
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    clusters = torch.tensor([2, 2, 0, 0, 1, 1])  # a relabelling: perfect after matching
    assert match_clusters(clusters, labels, 3).tolist() == [1, 2, 0]
    assert cluster_accuracy(clusters, labels, 3) == 1.0
    one_wrong = torch.tensor([2, 2, 0, 1, 1, 1])
    assert cluster_accuracy(one_wrong, labels, 3) == pytest.approx(5 / 6)
    # Probabilities break what hard counts leave to chance: a class-1 image just inside cluster 0.
    probs = torch.tensor([[0.95, 0.05], [0.55, 0.45]])
    two = torch.tensor([0, 1])
    hard = (probs.argmax(1)[:, None] == torch.arange(2)).float()
    assert (hard.T @ torch.eye(2)[two]).tolist() == [[1.0, 1.0], [0.0, 0.0]]  # a tie
    assert match_clusters(probs, two, 2).tolist() == [0, 1]
    # More clusters than classes: each cluster takes its majority class.
    over = torch.tensor([0, 1, 2, 2, 3, 3])
    assert match_clusters(over, labels, 4).tolist() == [0, 0, 1, 2]


def test_train_clusters_lowers_the_loss_and_is_seeded(pretrained_run, tiny_data):
    from pretext.data import load_dataset

    images = load_dataset("mnist", "train", str(tiny_data)).images
    encoder = load_encoder(pretrained_run)
    before = {k: v.clone() for k, v in encoder.state_dict().items()}
    cfg = ClusterConfig(clusters=10, neighbours=5, epochs=6, batch_size=16, augment="none")
    losses = []
    model = train_clusters(encoder, images, cfg, torch.device("cpu"), log=losses.append)
    values = [float(line.split()[-1]) for line in losses if line.startswith("cluster epoch")]
    # Uniform assignments give ln 10 - 2 ln 10 = -2.3; the floor, confident agreeing neighbours
    # and all ten clusters used, is -2 ln 10 = -4.6.
    assert len(values) == 6 and values[-1] < values[0] - 0.5
    again = train_clusters(encoder, images, cfg, torch.device("cpu"), log=lambda *_: None)
    for name, value in model.state_dict().items():
        assert torch.equal(value, again.state_dict()[name]), name
    for name, value in encoder.state_dict().items():  # the caller's encoder is untouched
        assert torch.equal(value, before[name]), name


def test_cluster_command_writes_assignments_picture_and_metrics(pretrained_run):
    result = cluster_command(
        pretrained_run, ClusterConfig(neighbours=5, epochs=1, batch_size=16), log=lambda *_: None
    )
    assert result["images"] == 64 and sum(result["sizes"]) == 64 and len(result["sizes"]) == 10
    assert 0.0 <= result["test_accuracy"] <= 1.0 and 0.0 <= result["test_nmi"] <= 1.0
    with np.load(pretrained_run / "clusters.npz") as saved:
        assert saved["train_clusters"].shape == (64,) and saved["test_clusters"].shape == (32,)
        assert saved["cluster_class"].shape == (10,)
        assert ((saved["train_confidence"] > 0) & (saved["train_confidence"] <= 1)).all()
    assert json.loads((pretrained_run / "metrics.json").read_text())["clustering"] == result
    assert (pretrained_run / "clusters.png").read_bytes()[:4] == b"\x89PNG"
    with open(pretrained_run / "clusters.csv", newline="") as table:
        rows = list(csv.DictReader(table))
    assert len(rows) == 64 + 32 and rows[0]["source"] == "mnist train #0"
    assert rows[64]["split"] == "test" and rows[64]["source"] == "mnist test #0"
    with np.load(pretrained_run / "clusters.npz") as saved:
        assert [int(r["cluster"]) for r in rows[:64]] == saved["train_clusters"].tolist()
        named = saved["cluster_class"][saved["train_clusters"][0]]
    assert rows[0]["cluster_class"] == str(named)  # MNIST's class names are its digits
    state = load_checkpoint(pretrained_run / "checkpoints" / "clusters.pt")  # weights only
    assert state["config"]["clusters"] == 10 and "linear.weight" in state["classifier"]
    assert state["encoder"].keys() == load_encoder(pretrained_run).state_dict().keys()


def test_cluster_cli_rejects_impossible_options(pretrained_run, capsys):
    assert main(["cluster", "--out", str(pretrained_run), "--neighbours", "64"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("pretext: error: --neighbours 64") and "Traceback" not in err
    assert main(["cluster", "--out", str(pretrained_run), "--clusters", "1"]) == 2
    assert not (pretrained_run / "clusters.npz").exists()


def test_study_names_clusters_with_each_labelled_subset(pretrained_run):
    from pretext.commands import study_command

    rows = study_command(pretrained_run, labels=(10, 20), seeds=2, min_steps=4, cluster=True)
    cluster_rows = [r for r in rows if r["method"] == "cluster"]
    assert [r["labels"] for r in cluster_rows] == [10, 20]
    assert all(0.0 <= r["mean"] <= 1.0 and r["seeds"] == 2 for r in cluster_rows)
    table = (pretrained_run / "study.md").read_text()
    assert table.startswith("| labels | linear | finetune | knn | cluster | scratch |")
    assert "cluster = clusters found once without labels" in table


def test_cluster_command_on_unlabelled_images(tmp_path):
    # A user's own images without labels: clusters and pictures, no scores.
    rng = np.random.default_rng(0)
    images = rng.integers(0, 40, size=(48, 28, 28)).astype(np.uint8)
    for i in range(48):
        images[i, 4 * (i % 3) + 4 : 4 * (i % 3) + 8, 4:24] = 255
    np.savez(tmp_path / "own.npz", images=images)
    out = tmp_path / "run"
    pretrain(
        PretrainConfig(
            dataset=str(tmp_path / "own.npz"), out=str(out), epochs=1, batch_size=16, threads=1
        )
    )
    result = cluster_command(
        out, ClusterConfig(clusters=3, neighbours=4, epochs=1, batch_size=16), log=lambda *_: None
    )
    assert result["images"] == 48 and len(result["sizes"]) == 3
    assert "test_accuracy" not in result
    with np.load(out / "clusters.npz") as saved:
        assert set(saved.files) == {"train_clusters", "train_confidence"}
    assert (out / "clusters.png").is_file()


def test_a_flat_folder_of_photos_is_found_by_file(tmp_path, capsys):
    """An unlabelled folder: clusters.csv, to_label.csv and the search index name each image's
    file, and a query by position works without a test split."""
    from PIL import Image

    from pretext.commands import embed_command, search_command, select_command

    rng = np.random.default_rng(0)
    folder = tmp_path / "photos"
    folder.mkdir()
    for i in range(24):
        pixels = rng.integers(0, 255, size=(28, 28, 3)).astype(np.uint8)
        Image.fromarray(pixels).save(folder / f"shot,{i:02d}.png")  # a comma: quoted in the CSV
    out = tmp_path / "run"
    pretrain(PretrainConfig(dataset=str(folder), out=str(out), epochs=1, batch_size=8, threads=1))
    cluster_command(
        out, ClusterConfig(clusters=2, neighbours=3, epochs=1, batch_size=8), log=lambda *_: None
    )
    with open(out / "clusters.csv", newline="") as table:
        rows = list(csv.DictReader(table))
    assert [r["source"] for r in rows] == [str(folder / f"shot,{i:02d}.png") for i in range(24)]
    assert {r["label"] for r in rows} == {""} and {r["split"] for r in rows} == {"train"}
    select_command(out, 5)  # the images to label: by file, no class yet
    with open(out / "to_label.csv", newline="") as table:
        chosen = list(csv.DictReader(table))
    assert len(chosen) == 5 and {r["class"] for r in chosen} == {""}
    assert all(r["source"] == str(folder / f"shot,{int(r['index']):02d}.png") for r in chosen)
    embed_command(out)
    results = search_command(out / "index", "5", k=3, out=tmp_path / "s.png")
    assert results[0]["source"] == str(folder / "shot,05.png") and results[0]["class"] == "?"
    printed = capsys.readouterr().out
    assert f"query {folder / 'shot,05.png'}" in printed and str(folder / "shot,05.png") in printed


def test_an_unlabelled_run_writes_its_report(tmp_path):
    """`pretext run` on a flat folder: no scores, but the report with the views, the embedding
    map, the nearest neighbours and the clusters (with the clusters' CSV)."""
    from PIL import Image

    from pretext.commands import run
    from pretext.config import LinearProbeConfig, RunConfig

    rng = np.random.default_rng(1)
    folder = tmp_path / "photos"
    folder.mkdir()
    for i in range(16):
        Image.fromarray(rng.integers(0, 255, (28, 28, 3)).astype(np.uint8)).save(
            folder / f"{i}.png"
        )
    pre = PretrainConfig(
        dataset=str(folder), out=str(tmp_path / "run"), epochs=1, batch_size=8, threads=1
    )
    metrics = run(RunConfig(pretrain=pre, linear=LinearProbeConfig(epochs=1)), log=lambda *_: None)
    assert "finetune" not in metrics and metrics["clustering"]["images"] == 16
    page = (tmp_path / "run" / "report.html").read_text()
    assert "Pretraining only: nothing is scored" in page
    for caption in (
        "Pretraining views",
        "Map of embeddings",
        "Nearest neighbours",
        "Clusters found",
    ):
        assert caption in page
    assert (tmp_path / "run" / "clusters.csv").read_text().count("\n") == 17
    # --semi cannot act without labels: refused before pretraining, the earlier run untouched
    last = tmp_path / "run" / "checkpoints" / "last.pt"
    written = last.stat().st_mtime_ns
    again = replace(pre, overwrite=True)
    with pytest.raises(PretextError, match="--semi needs labels"):
        cfg = RunConfig(pretrain=again, linear=LinearProbeConfig(epochs=1), semi=SemiConfig())
        run(cfg, log=lambda *_: None)
    assert (tmp_path / "run" / "report.html").is_file()
    assert last.stat().st_mtime_ns == written
