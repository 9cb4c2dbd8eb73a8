import json
from dataclasses import replace

import pytest
import torch

from pretext.checkpoint import load_checkpoint
from pretext.commands import run
from pretext.config import FinetuneConfig, LinearProbeConfig, PretrainConfig, RunConfig


def tiny_run_config(tiny_data, out, **pretrain) -> RunConfig:
    pre = PretrainConfig(
        dataset="mnist",
        data_dir=str(tiny_data),
        out=str(out),
        epochs=2,
        batch_size=16,
        lr=1e-3,
        threads=1,
        **pretrain,
    )
    return RunConfig(
        pretrain=pre,
        finetune=FinetuneConfig(epochs=2, batch_size=16, min_steps=8),
        linear=LinearProbeConfig(epochs=3),
        few_labels=20,
        few_label_seeds=2,
    )


def test_run_writes_the_run_directory_contract(tiny_data, tmp_path):
    out = tmp_path / "run"
    metrics = run(tiny_run_config(tiny_data, out))
    assert (out / "config.json").is_file()
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2] and all(r["loss"] > 0 for r in rows)
    assert all(0.0 <= r["knn"] <= 1.0 for r in rows)  # the online kNN monitor
    state = torch.load(out / "checkpoints" / "last.pt", weights_only=True)
    assert state["epoch"] == 2 and "encoder" in state and "optimizer" in state
    saved = json.loads((out / "metrics.json").read_text())
    assert saved == metrics
    assert saved["dataset"] == "mnist" and saved["recipe"] == "default"
    assert saved["pretrain"]["epochs"] == 2 and saved["pretrain"]["final_loss"] == rows[-1]["loss"]
    assert len(saved["finetune"]["train_accuracy"]) >= 2
    for value in (saved["finetune"]["test_accuracy"], saved["linear_probe"]["test_accuracy"]):
        assert 0.0 <= value <= 1.0
    assert set(saved["retrieval"]) == {"precision_at_1", "precision_at_10", "map_at_r"}
    assert 0.0 <= saved["knn"]["test_accuracy"] <= 1.0 and saved["knn"]["k"] == 200
    few = saved["few_labels"]
    assert few["labels"] == 20 and few["seeds"] == 2
    assert {"pretrained", "pretrained_std", "scratch", "scratch_std"} <= set(few)
    assert few["gain"] == pytest.approx(few["pretrained"] - few["scratch"])
    assert few["gain_low"] <= few["gain"] <= few["gain_high"]


def test_tiny_data_is_learnt(tiny_data, tmp_path):
    # Classes differ by a bright bar's position: fine-tuning must find it (chance is 10%).
    cfg = tiny_run_config(tiny_data, tmp_path / "run")
    views = dict(augment="none", few_augment="none")
    ft = FinetuneConfig(epochs=30, batch_size=16, min_steps=0, anchor=0.0, **views)
    cfg = replace(cfg, finetune=ft)
    metrics = run(cfg)
    assert metrics["finetune"]["test_accuracy"] >= 0.9


def test_seed_recipe_has_no_head_and_same_seed_same_losses(tiny_data, tmp_path):
    from pretext.config import recipe
    from pretext.train import pretrain

    base = recipe("seed").pretrain
    runs = []
    for name in ("a", "b"):
        cfg = replace(base, data_dir=str(tiny_data), out=str(tmp_path / name), epochs=2, threads=1)
        pretrain(cfg)
        runs.append((tmp_path / name / "metrics.jsonl").read_text())
        state = load_checkpoint(tmp_path / name / "checkpoints" / "last.pt")
        # No projection head: the loss sits on the encoder output, as in the original.
        assert all(k.startswith("encoder.") for k in state["method"])
    assert [json.loads(x)["loss"] for x in runs[0].splitlines()] == [
        json.loads(x)["loss"] for x in runs[1].splitlines()
    ]


def test_bf16_autocast_path_runs_on_cpu(tiny_data, tmp_path):
    from pretext.train import pretrain

    cfg = PretrainConfig(
        data_dir=str(tiny_data),
        out=str(tmp_path / "bf16"),
        epochs=1,
        batch_size=16,
        threads=1,
        bf16=True,
        knn_monitor=0,
    )
    summary = pretrain(cfg)
    assert 0 < summary["final_loss"] < 10


def test_run_reports_any_method_through_the_same_metrics(tiny_data, tmp_path):
    metrics = run(tiny_run_config(tiny_data, tmp_path / "byol", method="byol"))
    assert metrics["method"] == "byol"
    assert {"pretrain", "finetune", "linear_probe", "knn", "retrieval", "few_labels"} <= set(
        metrics
    )
    assert (tmp_path / "byol" / "report.html").is_file()


def test_image_size_holds_for_every_stage(tmp_path):
    # 32x32 images and the 28x28-only `cnn`: pretraining, fine-tuning, the probe, kNN,
    # retrieval and the few-label check all work only if each resizes as pretraining did.
    import numpy as np

    from pretext.commands import cluster_command, embed_command
    from pretext.config import ClusterConfig

    rng = np.random.default_rng(0)

    def images(n):
        x = rng.integers(0, 30, size=(n, 32, 32)).astype(np.uint8)
        for i in range(n):
            x[i, 3 * (i % 10) : 3 * (i % 10) + 3, 4:28] = 255
        return x

    np.savez(
        tmp_path / "big.npz",
        images=images(60),
        labels=np.arange(60) % 10,
        test_images=images(30),
        test_labels=np.arange(30) % 10,
    )
    cfg = tiny_run_config(None, tmp_path / "run", image_size=28)
    cfg = replace(cfg, pretrain=replace(cfg.pretrain, dataset=str(tmp_path / "big.npz")))
    metrics = run(cfg)
    assert 0.0 <= metrics["finetune"]["test_accuracy"] <= 1.0
    assert 0.0 <= metrics["few_labels"]["pretrained"] <= 1.0
    assert embed_command(tmp_path / "run").is_file()
    result = cluster_command(
        tmp_path / "run", ClusterConfig(neighbours=3, epochs=1, batch_size=16), log=lambda *_: None
    )
    assert result["images"] == 60 and "test_accuracy" in result
    from pretext.rundir import RunDir

    # --overwrite clears what pretext writes by that list: it must name everything written here
    assert {path.name for path in (tmp_path / "run").iterdir()} <= {
        path.name for path in RunDir(tmp_path / "run").outputs()
    }


def test_few_label_check_on_a_smaller_data_set_records_what_it_used(pretrained_run, tiny_data):
    from pretext.data import load_dataset
    from pretext.evaluate import few_label_comparison
    from pretext.models import build_encoder
    from pretext.rundir import load_encoder

    train, test = (load_dataset("mnist", split, str(tiny_data)) for split in ("train", "test"))
    few = few_label_comparison(
        load_encoder(pretrained_run),
        build_encoder("cnn", seed=1),
        train,
        test,
        labels=600,
        seeds=1,
        cfg=FinetuneConfig(epochs=1, batch_size=16, min_steps=0),
        device=torch.device("cpu"),
        log=lambda *_: None,
    )
    assert few["labels"] == 64  # all 64 training images, not the 600 asked for
