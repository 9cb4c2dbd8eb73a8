"""The run directory's layout and checks, the shared schedule and epoch loop, and options a
method does not take."""

import math

import pytest
import torch

from pretext import PretextError, rundir
from pretext.cli import main
from pretext.loop import run_epochs, scheduled_lr, steps_per_epoch
from pretext.methods import build_method, method_options
from pretext.models import build_encoder


def test_scheduled_lr_warms_up_then_follows_the_cosine():
    assert scheduled_lr(1.0, 0, 10, warmup=2) == 0.5
    assert scheduled_lr(1.0, 1, 10, warmup=2) == 1.0
    assert scheduled_lr(1.0, 2, 10, warmup=2) == 1.0  # the cosine's start
    assert scheduled_lr(2.0, 6, 10, warmup=2) == pytest.approx(
        2.0 * 0.5 * (1 + math.cos(math.pi / 2))
    )
    assert scheduled_lr(3.0, 7, 10, shape="constant") == 3.0
    assert scheduled_lr(1.0, 5, 10) == pytest.approx(0.5)


def test_run_epochs_visits_every_item_once_per_epoch_and_counts_steps():
    seen, steps, ends = [], [], []

    def step(idx, n):
        seen.append(idx.tolist())
        steps.append(n)

    run_epochs(
        step, 10, 4, 3, seed=0, device=torch.device("cpu"), first_epoch=1, end_epoch=ends.append
    )
    assert steps == list(range(3, 9)) and ends == [1, 2]  # 3 steps an epoch, from epoch 1
    for epoch in range(2):
        assert sorted(sum(seen[3 * epoch : 3 * epoch + 3], [])) == list(range(10))
    assert steps_per_epoch(10, 4, drop_last=True) == 2


def test_outputs_and_layout_stay_inside_the_run(tmp_path):
    run = rundir.RunDir(tmp_path / "r")
    assert all(run.root in path.parents for path in run.outputs())
    assert run.checkpoint == tmp_path / "r" / "checkpoints" / "last.pt"
    assert run.finetune_checkpoint(True).name == "scratch.pt"


def test_prepare_refuses_an_earlier_run_and_overwrite_keeps_other_files(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(PretextError, match="already holds files"):
        rundir.prepare(tmp_path, resume=False, overwrite=False)
    rundir.prepare(tmp_path, resume=True, overwrite=False)  # a run before its first checkpoint
    with pytest.raises(PretextError, match="no checkpoint"):
        rundir.prepare(tmp_path / "nothing", resume=True, overwrite=False)
    rundir.prepare(tmp_path, resume=False, overwrite=True)
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]


def test_update_metrics_merges(tmp_path):
    rundir.update_metrics(tmp_path, a=1)
    assert rundir.update_metrics(tmp_path, b=2) == {"a": 1, "b": 2}


def test_method_options_are_the_methods_own_and_others_are_refused():
    assert method_options("byol") == {"projection_hidden": 128, "projection_dim": 64}
    assert method_options("simclr", temperature=0.5)["temperature"] == 0.5
    with pytest.raises(PretextError, match="--temperature does not apply to byol"):
        build_method("byol", build_encoder("cnn"), temperature=0.3)
    with pytest.raises(PretextError, match="needs a projection head"):
        method_options("vicreg", projection_dim=0)
    head = build_method("barlow", build_encoder("cnn"), projection_dim=32).head
    assert head(torch.randn(4, 100)).shape == (4, 32)  # acts: no hidden minimum of 256


@pytest.mark.parametrize(
    "options, message",
    [
        (["--method", "byol", "--temperature", "0.3"], "--temperature does not apply to byol"),
        (["--recipe", "seed", "--method", "byol"], "--recipe seed is the write-up's SimCLR"),
    ],
)
def test_cli_refuses_options_that_would_not_act(tiny_data, tmp_path, capsys, options, message):
    out = tmp_path / "run"
    args = ["pretrain", "--data-dir", str(tiny_data), "--out", str(out), *options]
    assert main(args) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()  # refused before the run directory is made


def test_epochs_given_are_the_epochs_trained(pretrained_run, tiny_data, capsys):
    import json

    common = ["finetune", "--out", str(pretrained_run), "--data-dir", str(tiny_data)]
    metrics = pretrained_run / "metrics.json"
    assert main([*common, "--labels", "20", "--epochs", "2"]) == 0  # the recipe's 1,500 steps
    assert json.loads(metrics.read_text())["finetune"]["epochs"] == 2  # do not apply
    assert main([*common, "--labels", "20", "--epochs", "1", "--min-steps", "6"]) == 0
    assert json.loads(metrics.read_text())["finetune"]["epochs"] == 6  # 1 step an epoch
    assert "finetune: 6 epochs, not 1, for at least 6 steps" in capsys.readouterr().out
