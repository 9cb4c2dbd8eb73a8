import base64
import json
import re
import warnings

import pytest
import torch

from pretext.cli import main
from pretext.commands import (
    embed_command,
    export_command,
    report_command,
    search_command,
    study_command,
)
from pretext.rundir import RunDir, load_encoder


def test_study_writes_rows_table_and_plot(pretrained_run):
    rows = study_command(pretrained_run, labels=(10, 20), seeds=2, min_steps=4)
    assert len(rows) == 8
    assert {r["method"] for r in rows} == {"linear", "finetune", "knn", "scratch"}
    for row in rows:
        assert set(row) == {"labels", "method", "mean", "std", "seeds", "values", "seconds"}
        assert len(row["seconds"]) == 2 and min(row["seconds"]) >= 0
        assert row["seeds"] == 2 and 0.0 <= row["mean"] <= 1.0 and row["std"] >= 0.0
        assert len(row["values"]) == 2 and row["mean"] == pytest.approx(sum(row["values"]) / 2)
    assert json.loads((pretrained_run / "study.json").read_text()) == rows
    table = (pretrained_run / "study.md").read_text()
    assert table.startswith("| labels | linear | finetune | knn | scratch |")
    # The footnote says how both arms fine-tuned (the default recipe's protocol).
    assert "`default` views under 1000 labels, `light` from 1000 up" in table
    assert "or 4 steps, whichever is more" in table and "the scratch one is not" in table
    assert "| labels | linear − scratch | finetune − scratch | knn − scratch |" in table
    assert (pretrained_run / "study.png").read_bytes()[:4] == b"\x89PNG"


def test_an_interrupted_study_keeps_the_label_counts_it_finished(pretrained_run):
    def stop_at_the_second_count(message):
        if message.startswith("20 labels"):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        study_command(
            pretrained_run, labels=(10, 20), seeds=1, min_steps=2, log=stop_at_the_second_count
        )
    rows = json.loads((pretrained_run / "study.json").read_text())
    assert {row["labels"] for row in rows} == {10} and len(rows) == 4
    assert "Partial: 1 of 2 label counts done" in (pretrained_run / "study.md").read_text()
    assert (pretrained_run / "study.png").is_file()
    study_command(pretrained_run, labels=(10, 20), seeds=1, min_steps=2, log=lambda *_: None)
    assert "Partial" not in (pretrained_run / "study.md").read_text()  # a finished one is whole


def test_paired_gain_against_a_hand_computed_interval():
    from pretext.evaluate.study import paired_gain

    # differences 0.02, 0.01, 0.04: mean 0.02333, sample std 0.015275, t(0.975, 2 dof) 4.302653
    gain = paired_gain([0.90, 0.92, 0.94], [0.88, 0.91, 0.90])
    half = 4.302653 * (7e-4 / 3) ** 0.5 / 3**0.5
    assert gain["mean"] == pytest.approx(0.07 / 3)
    assert gain["low"] == pytest.approx(0.07 / 3 - half, abs=1e-6)
    assert gain["high"] == pytest.approx(0.07 / 3 + half, abs=1e-6)
    assert gain["seeds"] == 3
    one = paired_gain([0.9], [0.8])  # one seed: a difference, no interval
    assert one["mean"] == pytest.approx(0.1) and one["low"] is None and one["high"] is None
    with pytest.raises(ValueError):
        paired_gain([0.9, 0.8], [0.7])


def test_gain_table_pairs_each_method_with_scratch_by_seed():
    from pretext.evaluate.study import gain_table

    def row(method, values):
        return {"labels": 10, "method": method, "values": values}

    rows = [row("finetune", [0.5, 0.7]), row("scratch", [0.4, 0.7]), row("knn", [0.45, 0.6])]
    lines = gain_table(rows)
    assert lines[0] == "| labels | finetune − scratch | knn − scratch |"
    # finetune: differences 0.1, 0.0 -> +5.00 points; t(0.975, 1) = 12.706 x 0.0707 / 1.414
    assert lines[2].startswith("| 10 | +5.00 [-58.53, +68.53] | -2.50 [")


def test_one_seed_study_claims_no_interval():
    from pretext.evaluate.study import study_markdown

    def row(method, value):
        return {"labels": 10, "method": method, "mean": value, "std": 0.0, "seeds": 1,
                "values": [value]}  # fmt: skip

    table = study_markdown([row("finetune", 0.5), row("scratch", 0.4)])
    assert "over one label-sampling seed (no spread)" in table
    assert "one seed: no interval" in table and "| 10 | +10.00 |" in table
    assert "95% interval" not in table and "interval that contains 0" not in table


def test_semi_arm_is_compared_with_its_own_control():
    from pretext.evaluate.study import gain_table

    def row(method, values):
        return {"labels": 10, "method": method, "values": values}

    rows = [
        row("finetune", [0.5, 0.7]),
        row("scratch", [0.4, 0.7]),
        row("semi", [0.6, 0.8]),
        row("scratch-semi", [0.6, 0.6]),
    ]
    lines = gain_table(rows)
    assert lines[0] == "| labels | finetune − scratch | semi − scratch-semi |"
    # semi against scratch-semi: differences 0.0, 0.2 -> +10.00 points
    assert lines[2].startswith("| 10 | +5.00 [-58.53, +68.53] | +10.00 [")


def test_study_runs_both_semi_arms_and_times_each(pretrained_run):
    # 10 labels (one per class) start the semi arm from the clusters; 20 from the encoder
    rows = study_command(
        pretrained_run, labels=(10, 20), seeds=2, min_steps=2, semi=True, semi_epochs=1
    )
    methods = {(r["labels"], r["method"]): r for r in rows}
    names = {"linear", "finetune", "knn", "scratch", "semi", "scratch-semi"}
    assert set(methods) == {(n, m) for n in (10, 20) for m in names}
    assert all(0.0 <= r["mean"] <= 1.0 for r in rows)
    assert all(len(r["seconds"]) == 2 and min(r["seconds"]) >= 0 for r in rows)
    trained = ("finetune", "scratch", "semi", "scratch-semi")
    assert all(min(methods[20, m]["seconds"]) > 0 for m in trained)
    # the clusters the semi arm starts from are trained once for the whole study, and counted
    # where they started it
    assert methods[10, "semi"]["shared_seconds"] > 0
    assert "shared_seconds" not in methods[20, "semi"]
    assert "shared_seconds" not in methods[10, "scratch-semi"]
    saved = json.loads((pretrained_run / "study.json").read_text())
    assert [r["seconds"] for r in saved] == [r["seconds"] for r in rows]
    table = (pretrained_run / "study.md").read_text()
    assert table.startswith("| labels | linear | finetune | knn | semi | scratch | scratch-semi |")
    assert "semi − scratch-semi" in table and "scratch-semi is the same from random" in table
    assert "Seconds per seed" in table


def test_report_embeds_its_images(pretrained_run):
    from pretext.commands.finetune import draw_run_pictures

    images = torch.randint(0, 256, (40, 1, 28, 28), dtype=torch.uint8)
    pictures = (torch.randn(40, 5), torch.arange(40) % 10, 0, images)
    draw_run_pictures(RunDir(pretrained_run), *pictures)
    metrics = {"finetune": {"test_accuracy": 0.5, "train_accuracy": [0.2, 0.4]}}
    (pretrained_run / "metrics.json").write_text(json.dumps(metrics))
    page = report_command(pretrained_run).read_text()
    images = re.findall(r'src="data:image/png;base64,([^"]+)"', page)
    assert len(images) == 3  # curves, embedding map, neighbours
    assert all(base64.b64decode(data)[:4] == b"\x89PNG" for data in images)
    assert "<td>Fine-tuned on all labels: test accuracy</td><td>50.00%</td>" in page
    assert "Nearest neighbours in the embedding" in page  # each picture has its caption
    assert "<summary>Pretraining</summary>" in page and "<td>batch_size</td><td>16</td>" in page
    assert "http://" not in page and "https://" not in page  # nothing to fetch


def test_report_shows_the_study_as_a_table(pretrained_run):
    (pretrained_run / "metrics.json").write_text("{}")
    (pretrained_run / "study.md").write_text(
        "| labels | finetune | scratch |\n|---:|---:|---:|\n| 10 | 80.00 ± 1.00 | 70.00 ± 2.00 |"
        "\n\nTest accuracy (%), mean ± std.\n"
    )
    page = report_command(pretrained_run).read_text()
    assert "<tr><th>labels</th><th>finetune</th><th>scratch</th></tr>" in page
    assert "<tr><td>10</td><td>80.00 ± 1.00</td><td>70.00 ± 2.00</td></tr>" in page
    assert "<p class='note'>Test accuracy (%), mean ± std.</p>" in page


def test_embed_and_search(pretrained_run, tmp_path, capsys):
    path = embed_command(pretrained_run)
    import numpy as np

    with np.load(path) as archive:
        assert archive["embeddings"].shape == (64, 100) and archive["indices"].tolist() == list(
            range(64)
        )
        assert archive["sources"][3] == "mnist train #3"
    results = search_command(pretrained_run / "index", "3", k=5, out=tmp_path / "strip.png")
    assert [r["rank"] for r in results] == [1, 2, 3, 4, 5]
    sims = [r["similarity"] for r in results]
    assert sims == sorted(sims, reverse=True)
    # "3" is image 3 of the indexed split itself: its own nearest neighbour
    assert results[0]["source"] == "mnist train #3" and sims[0] == pytest.approx(1.0, abs=1e-5)
    assert results[0]["class"] == str(results[0]["label"])  # MNIST's classes are the digits
    assert "query mnist train #3" in capsys.readouterr().out
    from_test = search_command(pretrained_run / "index", "test:3", k=2, out=tmp_path / "t.png")
    assert [r["rank"] for r in from_test] == [1, 2]
    assert "query mnist test #3" in capsys.readouterr().out
    assert (tmp_path / "strip.png").read_bytes()[:4] == b"\x89PNG"
    from PIL import Image

    Image.fromarray(np.full((40, 40), 200, dtype=np.uint8)).save(tmp_path / "mine.png")
    by_file = search_command(
        pretrained_run / "index", str(tmp_path / "mine.png"), k=3, out=tmp_path / "strip2.png"
    )
    assert len(by_file) == 3 and (tmp_path / "strip2.png").is_file()
    many = search_command(pretrained_run / "index", "3", k=60, out=tmp_path / "many.png")
    assert len(many) == 60  # all printed and returned; the strip shows the nearest 20
    assert "(the nearest 20 of 60)" in capsys.readouterr().out
    with Image.open(tmp_path / "many.png") as strip:
        assert strip.width <= 1.2 * 21 * 100 + 1
    assert main(["search", "--index-dir", str(tmp_path / "none"), "--query", "1"]) == 2
    assert "not an index" in capsys.readouterr().err
    index = str(pretrained_run / "index")
    assert main(["search", "--index-dir", index, "--query", "test:999"]) == 2
    assert "the test split has 32 images" in capsys.readouterr().err
    assert main(["search", "--index-dir", index, "--query", "nope.png"]) == 2
    assert "no such image file" in capsys.readouterr().err


def test_torchscript_export_matches_the_encoder(pretrained_run):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a user sees no TracerWarning from our own layers
        path = export_command(pretrained_run, "torchscript")
    exported = torch.jit.load(str(path))
    encoder = load_encoder(pretrained_run).eval()
    x = torch.randn(7, 1, 28, 28)
    with torch.no_grad():
        assert torch.allclose(exported(x), encoder(x), atol=1e-5)


def test_onnx_export_matches_the_encoder(pretrained_run):
    ort = pytest.importorskip("onnxruntime", reason="onnxruntime is not installed")
    pytest.importorskip("onnx", reason="onnx is not installed")
    path = export_command(pretrained_run, "onnx")
    session = ort.InferenceSession(str(path))
    x = torch.randn(3, 1, 28, 28)
    (out,) = session.run(None, {"images": x.numpy()})
    with torch.no_grad():
        expected = load_encoder(pretrained_run).eval()(x)
    assert torch.allclose(torch.from_numpy(out), expected, atol=1e-5)


def test_onnx_export_without_onnx_names_the_extra(pretrained_run, monkeypatch, capsys):
    import sys

    monkeypatch.setitem(sys.modules, "onnx", None)  # as if it were not installed
    assert main(["export", str(pretrained_run), "--format", "onnx"]) == 2
    err = capsys.readouterr().err
    assert (
        err == "pretext: error: ONNX export needs the 'onnx' package: pip install "
        "'pretext[export]'\n"
    )
    assert not (pretrained_run / "encoder.onnx").exists()


def test_compare_puts_runs_side_by_side(pretrained_run, tmp_path, capsys):
    evaluated = tmp_path / "evaluated"
    evaluated.mkdir()
    settings = {"dataset": "mnist", "method": "byol", "encoder": "cnn", "augment": "default"}
    (evaluated / "config.json").write_text(
        json.dumps({"pretrain": {**settings, "epochs": 40, "batch_size": 256}})
    )
    metrics = {
        "pretrain": {"seconds": 188.34},
        "finetune": {"test_accuracy": 0.9944},
        "linear_probe": {"test_accuracy": 0.99012},
        "knn": {"test_accuracy": 0.9831},
        "retrieval": {"precision_at_1": 0.988, "map_at_r": 0.6096},
        "few_labels": {"labels": 600, "pretrained": 0.9796, "scratch": 0.9781, "gain": 0.0015},
    }
    (evaluated / "metrics.json").write_text(json.dumps(metrics))
    out = tmp_path / "runs.md"
    assert main(["compare", str(evaluated), str(pretrained_run), "--out", str(out)]) == 0
    table = out.read_text()
    assert table == capsys.readouterr().out.rstrip("\n") + "\n"
    header, rule, first, second = table.splitlines()
    assert "few (600 labels): gain" in header and rule.count("---") == 16
    assert first == (
        f"| {evaluated} | mnist | byol | cnn | default | 40 | 256 | 188.3 | 99.44 | 99.01 | 98.31 "
        "| 98.80 | 60.96 | 97.96 | 97.81 | +0.15 |"
    )
    # pretrained only: its seconds from pretrain.json, no results yet
    assert second.startswith(f"| {pretrained_run} | mnist | simclr | cnn | default | 1 | 16 | ")
    cells = second.strip("|").split("|")
    assert float(cells[7]) >= 0 and [c.strip() for c in cells[8:]] == ["–"] * 8
    assert main(["compare", str(tmp_path / "nothing")]) == 2
    assert "is not a run directory" in capsys.readouterr().err


def test_label_counts_beyond_the_data_are_one_row_for_all_of_it(pretrained_run):
    # 64 training images: 100 and 500 both mean all 64, studied once
    rows = study_command(pretrained_run, labels=(20, 100, 500), seeds=1, min_steps=1, log=print)
    assert sorted(row["labels"] for row in rows) == [20] * 4 + [64] * 4  # 4 methods each
    assert "Partial" not in (pretrained_run / "study.md").read_text()


def test_the_report_opens_with_its_verdict():
    from pretext.report.html import verdict

    few = {"labels": 600, "seeds": 3, "pretrained": 0.9814, "scratch": 0.9781, "gain": 0.0033}
    gained = verdict({"few_labels": {**few, "gain_low": 0.001, "gain_high": 0.006}})
    assert gained.startswith("Pretraining gained +0.33 points at 600 labels: 98.14% fine-tuned")
    assert "(95% interval +0.10 to +0.60, 3 seeds)" in gained
    unclear = verdict({"few_labels": {**few, "gain_low": -0.0045, "gain_high": 0.0111}})
    assert unclear.startswith("No measurable gain from pretraining at 600 labels")
    assert "+0.33 points (95% interval -0.45 to +1.11, 3 seeds)" in unclear
    one = verdict({"few_labels": {**few, "seeds": 1, "gain_low": None, "gain_high": None}})
    assert one.endswith("one seed, so no interval.")
    assert verdict({}).startswith("Pretraining only: nothing is scored")
    assert verdict({"finetune": {}}).startswith("No few-label comparison")
