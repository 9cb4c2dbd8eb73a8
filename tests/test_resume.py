import json
import os
import signal
import subprocess
import time
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from conftest import make_idx_set, pretrain_cli

from pretext import PretextError
from pretext.checkpoint import load_checkpoint, write_json
from pretext.config import PretrainConfig
from pretext.rundir import load_encoder
from pretext.train import pretrain


def assert_same_tensors(a, b, path="state"):
    if isinstance(a, torch.Tensor):
        assert torch.equal(a, b), f"{path} differs"
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), f"{path} keys differ"
        for key in a:
            assert_same_tensors(a[key], b[key], f"{path}.{key}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_same_tensors(x, y, f"{path}[{i}]")
    else:
        assert a == b, f"{path} differs"


def losses(out: Path) -> list[float]:
    return [json.loads(line)["loss"] for line in (out / "metrics.jsonl").read_text().splitlines()]


def test_sigkill_mid_epoch_then_resume_is_bit_identical(tmp_path):
    data = make_idx_set(tmp_path / "data", n_train=800)
    env = {**os.environ, "PRETEXT_NO_DOWNLOAD": "1"}
    straight = tmp_path / "straight"
    subprocess.run(pretrain_cli(data, straight), check=True, env=env, capture_output=True)

    killed = tmp_path / "killed"
    proc = subprocess.Popen(
        pretrain_cli(data, killed), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    checkpoint = killed / "checkpoints" / "last.pt"
    deadline = time.time() + 120
    while not checkpoint.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    interrupted_at = load_checkpoint(checkpoint)["step"]
    assert interrupted_at < 300, "the run finished before it could be killed"

    subprocess.run(pretrain_cli(data, killed, "--resume"), check=True, env=env, capture_output=True)
    a, b = load_checkpoint(straight / "checkpoints" / "last.pt"), load_checkpoint(checkpoint)
    assert a["step"] == b["step"] == 300
    for key in ("encoder", "method", "optimizer", "rng"):
        assert_same_tensors(a[key], b[key], key)
    assert losses(straight) == losses(killed)


def test_same_seed_same_losses_run_to_run(tiny_data, tmp_path):
    cfg = PretrainConfig(data_dir=str(tiny_data), epochs=3, batch_size=16, threads=1)
    pretrain(replace(cfg, out=str(tmp_path / "a")))
    pretrain(replace(cfg, out=str(tmp_path / "b")))
    pretrain(replace(cfg, out=str(tmp_path / "c"), seed=1))
    assert losses(tmp_path / "a") == losses(tmp_path / "b")
    assert losses(tmp_path / "a") != losses(tmp_path / "c")


def test_atomic_write_keeps_the_old_file_on_a_crash(tmp_path, monkeypatch):
    path = tmp_path / "metrics.json"
    write_json(path, {"good": 1})

    def crash(*_):
        raise OSError("disk died")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError):
        write_json(path, {"good": 2})
    assert json.loads(path.read_text()) == {"good": 1}


class Evil:
    def __reduce__(self):
        return (os.system, (f"touch {Path(os.environ['EVIL_MARK'])}",))


def test_checkpoint_that_runs_code_is_refused(tmp_path, monkeypatch):
    mark = tmp_path / "pwned"
    monkeypatch.setenv("EVIL_MARK", str(mark))
    path = tmp_path / "evil.pt"
    torch.save({"encoder": {}, "payload": Evil()}, path)
    with pytest.raises(PretextError, match="refused to load"):
        load_checkpoint(path)
    assert not mark.exists()


def test_checkpoint_of_another_encoder_names_the_difference(tiny_data, tmp_path):
    out = tmp_path / "run"
    pretrain(
        PretrainConfig(data_dir=str(tiny_data), out=str(out), epochs=1, batch_size=16, threads=1)
    )
    config = json.loads((out / "config.json").read_text())
    config["pretrain"]["encoder"] = "cnn-wide"
    (out / "config.json").write_text(json.dumps(config))
    with pytest.raises(PretextError, match="conv1.weight has shape"):
        load_encoder(out)


def test_truncated_checkpoint_is_a_clear_error(tmp_path):
    path = tmp_path / "last.pt"
    buffer = tmp_path / "full.pt"
    torch.save({"encoder": {"w": torch.zeros(100)}}, buffer)
    path.write_bytes(buffer.read_bytes()[:50])
    with pytest.raises(PretextError, match="not a readable checkpoint"):
        load_checkpoint(path)


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tiny_data, tmp_path, monkeypatch):
    import pretext.methods.simclr as simclr

    real, calls = simclr.nt_xent, {"n": 0}

    def poisoned(z1, z2, t):
        calls["n"] += 1
        loss = real(z1, z2, t)
        return loss * float("nan") if calls["n"] == 11 else loss

    monkeypatch.setattr(simclr, "nt_xent", poisoned)
    out = tmp_path / "run"
    cfg = PretrainConfig(data_dir=str(tiny_data), out=str(out), epochs=3, batch_size=16, threads=1)
    with pytest.raises(PretextError, match="NaN or infinite at step 11"):
        pretrain(cfg)
    state = load_checkpoint(out / "checkpoints" / "last.pt")
    assert state["step"] == 8 and all(torch.isfinite(v).all() for v in state["encoder"].values())


def test_resume_needs_no_options_but_refuses_ones_that_change_the_training(
    tiny_data, tmp_path, capsys
):
    from pretext.cli import main

    out = tmp_path / "run"
    where = ["--data-dir", str(tiny_data), "--out", str(out), "--threads", "1"]
    started = ["--epochs", "1", "--batch-size", "8", "--lr", "0.001", "--augment", "light"]
    assert main(["pretrain", *where, *started]) == 0
    # Only --resume and more epochs: the run's own batch size, lr and views, not the recipe's
    # (its batch of 256 would not even fit these 64 images).
    assert main(["pretrain", *where, "--resume", "--epochs", "2"]) == 0
    config = json.loads((out / "config.json").read_text())["pretrain"]
    assert (config["epochs"], config["batch_size"], config["lr"]) == (2, 8, 0.001)
    assert config["augment"] == "light"
    assert load_checkpoint(out / "checkpoints" / "last.pt")["step"] == 2 * 64 // 8
    assert len(losses(out)) == 2
    capsys.readouterr()

    before = (out / "checkpoints" / "last.pt").read_bytes()
    assert main(["pretrain", *where, "--resume", "--epochs", "3", "--batch-size", "16"]) != 0
    err = capsys.readouterr().err.strip()
    assert "this run was trained with batch_size=8, not batch_size=16" in err
    assert len(err.splitlines()) == 1
    assert (out / "checkpoints" / "last.pt").read_bytes() == before  # nothing touched


def test_resume_without_checkpoint_is_an_error(tiny_data, tmp_path):
    cfg = PretrainConfig(
        data_dir=str(tiny_data), out=str(tmp_path / "none"), batch_size=16, resume=True
    )
    with pytest.raises(PretextError, match="no checkpoint"):
        pretrain(cfg)


def test_finetune_resume_matches_an_uninterrupted_run(tiny_data, tmp_path):
    from pretext.commands import finetune_command
    from pretext.config import FinetuneConfig

    cfg = FinetuneConfig(epochs=3, batch_size=16, min_steps=0)
    common = dict(data_dir=str(tiny_data), cfg=cfg, from_scratch=True)
    for name in ("straight", "stopped"):
        (tmp_path / name).mkdir()
    finetune_command(tmp_path / "straight", **common)

    def stop_in_epoch_two(message):
        if "epoch 2/" in message:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        finetune_command(tmp_path / "stopped", **common, log=stop_in_epoch_two)
    checkpoint = tmp_path / "stopped" / "checkpoints" / "scratch.pt"
    assert len(load_checkpoint(checkpoint)["train_accuracy"]) == 1
    finetune_command(tmp_path / "stopped", **common, resume=True)
    a = load_checkpoint(tmp_path / "straight" / "checkpoints" / "scratch.pt")
    b = load_checkpoint(checkpoint)
    for key in ("classifier", "optimizer", "generator", "train_accuracy"):
        assert_same_tensors(a[key], b[key], key)
    metrics = [
        json.loads((tmp_path / n / "metrics.json").read_text()) for n in ("straight", "stopped")
    ]
    assert (
        metrics[0]["finetune_scratch"]["test_accuracy"]
        == metrics[1]["finetune_scratch"]["test_accuracy"]
    )
    # Resuming with other labels or settings would mix two fine-tunes: refused, nothing touched.
    before = checkpoint.read_bytes()
    with pytest.raises(PretextError, match="trained with labelled=64, data=.*not labelled=20"):
        finetune_command(tmp_path / "stopped", **common, labels=20, resume=True)
    with pytest.raises(PretextError, match="'limit_train': None.*'limit_train': 48"):
        finetune_command(tmp_path / "stopped", **common, limit_train=48, resume=True)
    with pytest.raises(PretextError, match="done 3 epochs, more than the 2 asked"):
        finetune_command(
            tmp_path / "straight",
            **dict(common, cfg=FinetuneConfig(epochs=2, batch_size=16, min_steps=0)),
            resume=True,
        )
    (tmp_path / "fresh").mkdir()
    with pytest.raises(PretextError, match="no fine-tuning checkpoint"):
        finetune_command(tmp_path / "fresh", **common, resume=True)
    other = dict(common, cfg=FinetuneConfig(epochs=3, batch_size=16, lr=0.01, min_steps=0))
    with pytest.raises(PretextError, match="lr=0.003, not lr=0.01"):
        finetune_command(tmp_path / "stopped", **other, resume=True)
    assert checkpoint.read_bytes() == before


def test_finetune_takes_its_defaults_from_the_run_and_resumes_from_its_checkpoint(
    pretrained_run, monkeypatch, capsys
):
    from pretext.cli import main

    # No --data-dir: the run's own (the tiny set), not MNIST from the environment.
    monkeypatch.delenv("PRETEXT_DATA_DIR", raising=False)
    run = ["finetune", "--out", str(pretrained_run), "--threads", "1", "--from-scratch"]
    started = ["--labels", "20", "--batch-size", "16", "--lr", "0.002", "--min-steps", "0"]
    assert main([*run, *started, "--epochs", "1"]) == 0
    first = json.loads((pretrained_run / "metrics.json").read_text())["finetune_scratch"]
    assert first["labels"] == 20 and len(first["train_accuracy"]) == 1
    # --resume with more epochs only: the checkpoint's labels, batch size and lr go on.
    assert main([*run, "--resume", "--epochs", "2"]) == 0
    assert "resuming scratch after epoch 1" in capsys.readouterr().out
    resumed = json.loads((pretrained_run / "metrics.json").read_text())["finetune_scratch"]
    assert resumed["labels"] == 20 and len(resumed["train_accuracy"]) == 2
    assert resumed["train_accuracy"][0] == first["train_accuracy"][0]
    settings = load_checkpoint(pretrained_run / "checkpoints" / "scratch.pt")["settings"]
    assert (settings["batch_size"], settings["lr"], settings["epochs"]) == (16, 0.002, 2)


def test_pretrain_resume_refuses_fewer_epochs_and_restarts_a_run_without_checkpoint(
    tiny_data, tmp_path
):
    out = tmp_path / "run"
    cfg = PretrainConfig(data_dir=str(tiny_data), out=str(out), epochs=2, batch_size=16, threads=1)
    pretrain(cfg)
    config = (out / "config.json").read_text()
    with pytest.raises(PretextError, match="--epochs 1: this run has finished 2 epochs"):
        pretrain(replace(cfg, epochs=1, resume=True))
    assert (out / "config.json").read_text() == config  # nothing rewritten
    (out / "checkpoints" / "last.pt").unlink()  # killed before its first checkpoint
    (out / "metrics.jsonl").unlink()
    assert pretrain(replace(cfg, resume=True))["epochs"] == 2
    assert losses(out) == [
        row["loss"] for row in load_checkpoint(out / "checkpoints" / "last.pt")["history"]
    ]
