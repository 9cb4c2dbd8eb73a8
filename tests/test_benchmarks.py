import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


def run_benchmark(script: str, *options: str) -> dict:
    """A benchmark script run as a user runs it; its printed JSON."""
    result = subprocess.run(
        [sys.executable, str(BENCHMARKS / script), *options],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(result.stdout)


def test_throughput_benchmark_runs_and_prints_json():
    report = run_benchmark(
        "throughput.py", "--seconds", "0.05", "--threads", "1", "--configs", "cnn:8,resnet18:2:32"
    )
    digits, photos = report["results"]
    assert digits["encoder"] == "cnn" and digits["batch_size"] == 8
    assert (digits["image"], digits["views"]) == ([1, 28, 28], "default")
    assert (photos["encoder"], photos["image"], photos["views"]) == (
        "resnet18",
        [3, 32, 32],
        "simclr",
    )
    for row in (digits, photos):
        for key in ("model_images_per_s", "full_images_per_s", "views_images_per_s"):
            assert row[key] > 0
    # rates are rounded to whole images/s: only the digits' rates are large enough to check by
    expected = digits["model_images_per_s"] / digits["full_images_per_s"] - 1
    assert abs(digits["overhead"] - expected) < 0.01


def test_step_parts_benchmark_runs_and_prints_json():
    report = run_benchmark(
        "step_parts.py", "--batch", "8", "--rounds", "1", "--steps", "1", "--threads", "1"
    )
    assert report["batch_size"] == 8 and report["threads"] == 1
    assert all(value > 0 for value in report["ms_per_step"].values())
    parts = report["ms_per_step"]
    assert abs(report["overhead"] - (parts["full"] / parts["model"] - 1)) < 0.01
    alone = parts["head_and_loss_alone"] + parts["views_alone"]
    assert abs(report["floor"] - alone / parts["model"]) < 0.01
    flops = report["flops"]
    # batch 8 = 16 views; head 100 -> 128 -> 64: forward 2 x 16 x (100 x 128 + 128 x 64), the
    # backward twice that (the embedding's gradient too); NT-Xent 2 x 16^2 x 3 x 64
    assert flops["head"] == 3 * 2 * 16 * (100 * 128 + 128 * 64)
    assert flops["nt_xent"] == 2 * 16**2 * 3 * 64
    assert flops["encoder"] > 10 * flops["head"]


def test_epoch_ratio_benchmark_runs_and_prints_json():
    report = run_benchmark(
        "epoch_ratio.py",
        "--dataset", "digits",
        "--epochs", "1",
        "--repeats", "1",
        "--seconds", "0.05",
        "--threads", "1",
    )  # fmt: skip
    (repeat,) = report["repeats"]
    assert report["batch_size"] == 256 and repeat["model_images_per_s"] > 0
    keys = ("epoch_images", "epoch_seconds", "ratio")
    (images,), (seconds,), (ratio,) = (repeat[key] for key in keys)
    assert images > 0 and images % (2 * 256) == 0
    expected = seconds / (images / repeat["model_images_per_s"])
    assert abs(ratio - expected) < 0.01 * expected


def test_semi_benchmark_runs_and_prints_json(pretrained_run):
    report = run_benchmark(
        "semi.py",
        "--run", str(pretrained_run),
        "--labels", "20", "--seeds", "1", "--epochs", "1", "--threads", "1",
    )  # fmt: skip
    assert report["train"] + report["validation"] == 64 and report["validation"] == 10
    (row,) = report["rows"]
    assert row["labels"] == 20 and report["cluster_seconds"] > 0
    for start in ("clusters", "encoder", "scratch"):
        for key in ("start", "semi", "confident"):
            assert 0 <= row[start][key] <= 1
        assert row[start]["seconds"] > 0
        assert all(0 <= n <= 100 for n in row[start]["dead_units"])  # before, after; of 100
        wrong = round((1 - row[start]["semi"]) * 10)  # of the 10 validation images
        assert sum(m["count"] for m in row[start]["confused"]) <= wrong
        assert (wrong == 0) == (row[start]["confused"] == [])
        assert all(m["true"] != m["predicted"] for m in row[start]["confused"])


def test_semi_benchmark_adds_the_named_images_to_each_draw(pretrained_run):
    sys.path.insert(0, str(BENCHMARKS))
    try:
        from semi import labelled_indices
    finally:
        sys.path.remove(str(BENCHMARKS))
    import torch

    from pretext.data import stratified_subset

    labels = torch.arange(40) % 4
    drawn = stratified_subset(labels, 8, 3)
    outside = next(i for i in range(40) if i not in drawn.tolist())
    grown = labelled_indices(labels, 8, 3, [outside, drawn[0].item()])
    assert grown.tolist() == sorted(drawn.tolist() + [outside])  # once each, in order
    report = run_benchmark(
        "semi.py",
        "--run", str(pretrained_run), "--start", "encoder", "--add-labels", "0",
        "--labels", "20", "--seeds", "1", "--first-seed", "2", "--epochs", "1", "--threads", "1",
    )  # fmt: skip
    (row,) = report["rows"]
    assert row["seed"] == 2 and row["added"] == [0] and row["labels"] in (20, 21)


def test_semi_benchmark_refuses_an_image_outside_the_training_part(pretrained_run):
    result = subprocess.run(
        [sys.executable, str(BENCHMARKS / "semi.py"), "--run", str(pretrained_run),
         "--add-labels", "100000", "--labels", "20", "--epochs", "1", "--threads", "1"],
        capture_output=True,
        text=True,
    )  # fmt: skip
    assert result.returncode != 0 and "--add-labels: indices must be in 0.." in result.stderr
    assert "Traceback" not in result.stderr


def test_semi_benchmark_changes_fields_of_the_student_views(pretrained_run):
    sys.path.insert(0, str(BENCHMARKS))
    try:
        from semi import student_variant
    finally:
        sys.path.remove(str(BENCHMARKS))
    from pretext.presets import PRESETS

    name = student_variant("light-stroke", ["stroke_p=0.75", "scale=(0.85, 1.15)"])
    try:
        assert name == "light-stroke[stroke_p=0.75,scale=(0.85, 1.15)]"
        views, base = PRESETS[name], PRESETS["light-stroke"]
        assert (views.stroke_p, views.scale) == (0.75, (0.85, 1.15))
        assert (views.degrees, views.shear, base.stroke_p) == (base.degrees, base.shear, 0.5)
    finally:
        del PRESETS[name]
    assert student_variant("light", []) == "light"
    report = run_benchmark(
        "semi.py",
        "--run", str(pretrained_run), "--start", "encoder", "--strong-set", "stroke_p=1.0",
        "--labels", "20", "--seeds", "1", "--epochs", "1", "--threads", "1",
    )  # fmt: skip
    assert report["strong"] == "light-stroke[stroke_p=1.0]" and len(report["rows"]) == 1


def test_semi_benchmark_refuses_a_change_that_cannot_act(pretrained_run):
    for change, message in (
        (["--strong-set", "stroke=1"], "--strong-set: no field 'stroke'"),
        (["--strong-set", "stroke_p=high"], "--strong-set stroke_p: 'high' is not a number"),
        (["--strong-set", "stroke_p=1", "--ceiling", "light"], "not with --ceiling"),
    ):
        result = subprocess.run(
            [sys.executable, str(BENCHMARKS / "semi.py"), "--run", str(pretrained_run), *change],
            capture_output=True,
            text=True,
        )
        assert result.returncode != 0 and message in result.stderr
        assert "Traceback" not in result.stderr


def test_semi_benchmark_ceiling_fine_tunes_through_each_view(pretrained_run):
    report = run_benchmark(
        "semi.py",
        "--run", str(pretrained_run),
        "--ceiling", "light,none", "--epochs", "1", "--threads", "1",
    )  # fmt: skip
    assert report["epochs"] == 1 and list(report["views"]) == ["light", "none"]
    for found in report["views"].values():
        assert 0 <= found["validation"] <= 1 and found["seconds"] > 0
        assert round(found["validation"] * 10, 6) == round(found["validation"] * 10)  # of 10


def test_few_label_validation_benchmark_runs_and_prints_json(pretrained_run):
    report = run_benchmark(
        "few_label_validation.py",
        "--run", str(pretrained_run),
        "--labels", "20", "--seeds", "2", "--min-steps", "2", "--threads", "1",
    )  # fmt: skip
    assert report["train"] == 54 and report["validation"] == 10 and report["seeds"] == 2
    assert 0 <= report["dead_units"] <= 100  # of the cnn's 100
    (row,) = report["results"]
    assert row["labels"] == 20
    for method in ("linear", "finetune", "knn", "scratch"):
        assert len(row[method]["values"]) == 2 and 0 <= row[method]["mean"] <= 1
    pairs = zip(row["finetune"]["values"], row["scratch"]["values"], strict=True)
    differences = [a - b for a, b in pairs]
    assert abs(row["gain"]["mean"] - sum(differences) / 2) < 1e-9
    assert row["gain"]["low"] <= row["gain"]["mean"] <= row["gain"]["high"]


def test_methods_benchmark_pretrains_each_method_and_scores_it(tmp_path):
    report = run_benchmark(
        "methods.py",
        "--dataset", "digits", "--epochs", "1", "--methods", "simclr,byol",
        "--runs", str(tmp_path), "--threads", "1",
    )  # fmt: skip
    assert report["dataset"] == "digits" and report["epochs"] == 1
    names = [row["method"] for row in report["results"]]
    assert names == ["random-init", "simclr", "byol"]
    assert all(0 <= row[k] <= 1 for row in report["results"] for k in ("knn", "linear"))
    for row in report["results"][1:]:
        assert math.isfinite(row["final_loss"]) and row["wall_seconds"] > 0
        assert (tmp_path / f"{row['method']}-cnn").is_dir()  # each run kept where asked


def test_cache_benchmark_runs_and_prints_json():
    report = run_benchmark(
        "cache.py", "--images", "40", "--small", "20", "--side", "32", "--steps", "2",
        "--batch-size", "8", "--threads", "1",
    )  # fmt: skip
    assert report["images"] == 40 and report["cache_mib"] > 0
    for key in ("cache", "cache_first_20", "memory"):
        assert report[f"{key}_steps_per_second"] > 0 and report[f"{key}_peak_rss_anon_mib"] > 0
    ratio = report["cache_steps_per_second"] / report["memory_steps_per_second"]
    assert abs(report["cache_vs_memory"] - ratio) < 0.01


def test_colour_digits_paints_each_digit_in_two_colours_and_scores_each_preset(tmp_path):
    sys.path.insert(0, str(BENCHMARKS))
    try:
        from colour_digits import colour_digits
    finally:
        sys.path.remove(str(BENCHMARKS))
    import numpy as np
    import torch

    ink = torch.tensor([[[[0, 255], [255, 0]]], [[[0, 0], [0, 255]]]], dtype=torch.uint8)
    painted = colour_digits(ink, seed=0).astype(int)
    assert painted.shape == (2, 3, 2, 2)
    for image, strokes in zip(painted, ink[:, 0].numpy() == 255, strict=True):
        background, stroke = image[:, ~strokes], image[:, strokes]
        assert (background == background[:, :1]).all() and (stroke == stroke[:, :1]).all()
    assert not np.array_equal(painted[0, :, 0, 0], painted[1, :, 0, 0])  # per-image colours

    report = run_benchmark(
        "colour_digits.py", "--runs", str(tmp_path), "--limit-train", "300",
        "--epochs", "1", "--presets", "duotone", "--threads", "1",
    )  # fmt: skip
    assert report["train_images"] == 300 and report["epochs"] == 1
    floor, duotone = report["rows"]
    assert (floor["views"], duotone["views"]) == ("random encoder", "duotone")
    for row in (floor, duotone):
        assert 0 <= row["knn"] <= 1 and 0 <= row["linear"] <= 1
    assert duotone["pretrain_seconds"] > 0
    run = json.loads((tmp_path / "duotone" / "config.json").read_text())["pretrain"]
    assert run["augment"] == "duotone" and len(run["mean"]) == 3  # colour, per channel


def test_label_propagation_follows_a_chain_that_the_nearest_label_does_not():
    sys.path.insert(0, str(BENCHMARKS))
    try:
        from propagate import neighbour_graph, propagate
    finally:
        sys.path.remove(str(BENCHMARKS))
    import torch

    # two arcs of the unit circle, one degree apart within an arc, 20 degrees between them;
    # one label at the far end of each: 0 degrees (class 0) and 100 degrees (class 1)
    angles = torch.cat([torch.arange(0.0, 81.0), torch.arange(100.0, 181.0)])
    classes = (angles >= 100).long()
    z = torch.stack([torch.cos(torch.deg2rad(angles)), torch.sin(torch.deg2rad(angles))], 1)
    labelled = torch.tensor([0, 81])
    graph = neighbour_graph(z, k=2, chunk=50)  # chunks of 50 rows build the same graph
    assert torch.equal(graph.to_dense(), neighbour_graph(z, k=2).to_dense())
    assert torch.equal(graph.to_dense(), graph.to_dense().T)
    found = propagate(graph, labelled, classes[labelled], 2, iterations=400)
    assert torch.equal(found, classes)
    nearest = classes[labelled][(z @ z[labelled].T).argmax(1)]
    assert (nearest != classes).sum() == 30  # 51 to 80 degrees lie nearer the other label


def test_propagation_benchmark_runs_and_prints_json(pretrained_run):
    report = run_benchmark(
        "propagate.py",
        "--run", str(pretrained_run), "--labels", "20", "--seeds", "2", "--threads", "1",
    )  # fmt: skip
    assert report["train"] + report["validation"] == 64 and report["validation"] == 10
    assert [row["seed"] for row in report["rows"]] == [0, 1]
    for row in report["rows"]:
        for name in ("propagation", "nearest_labelled"):
            wrong = round((1 - row[name]["validation"]) * 10)
            assert sum(m["count"] for m in row[name]["confused"]) <= wrong


def test_semi_benchmark_revives_only_the_dead_embedding_units():
    sys.path.insert(0, str(BENCHMARKS))
    try:
        from semi import dead_units, revived
    finally:
        sys.path.remove(str(BENCHMARKS))
    import torch

    from pretext.data.stats import InputStats
    from pretext.models import SmallCNN, seeded

    encoder = seeded(0, SmallCNN)
    with torch.no_grad():
        encoder.fc.bias[[3, 7]] = -1e4  # no image can turn these two on
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (64, 1, 28, 28), dtype=torch.uint8, generator=generator)
    stats = InputStats(mean=(0.5,), std=(0.25,))
    features = encoder((images.float() / 255 - 0.5) / 0.25).detach()
    dead = dead_units(encoder, images, stats)
    assert dead.tolist() == (features.amax(0) <= 0).nonzero().flatten().tolist()
    assert {3, 7} <= set(dead.tolist()) and len(dead) < 100
    fresh = revived(encoder, images, stats, seed=1)
    changed = (fresh.fc.weight != encoder.fc.weight).any(1) | (fresh.fc.bias != encoder.fc.bias)
    assert changed.nonzero().flatten().tolist() == dead.tolist()
    assert fresh.fc.bias[3] > -10 and encoder.fc.bias[3] == -1e4  # the caller's stays as it was
    assert torch.equal(fresh.conv1.weight, encoder.conv1.weight)
    assert torch.equal(revived(encoder, images, stats, seed=1).fc.weight, fresh.fc.weight)
    with pytest.raises(SystemExit, match="only for the cnn encoders"):
        revived(torch.nn.Flatten(), images, stats, seed=1)  # no `fc` embedding layer
