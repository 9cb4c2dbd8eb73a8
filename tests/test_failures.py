"""Failures at the edges: SIGTERM, a write that fails, non-finite weights, a log that lags the
checkpoint."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from conftest import make_idx_set, pretrain_cli

from pretext import PretextError
from pretext.checkpoint import first_non_finite, load_checkpoint, save_checkpoint, write_json
from pretext.config import PretrainConfig
from pretext.rundir import load_encoder
from pretext.train import pretrain

ENV = {**os.environ, "PRETEXT_NO_DOWNLOAD": "1"}


def long_pretraining(tmp_path) -> tuple[list[str], subprocess.Popen]:
    """`pretext pretrain` of 50 epochs as a process, once its first checkpoint is written."""
    data = make_idx_set(tmp_path / "data", n_train=800)
    out = tmp_path / "run"
    command = pretrain_cli(data, out, epochs=50)
    proc = subprocess.Popen(
        command, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    deadline = time.time() + 120
    while not (out / "checkpoints" / "last.pt").exists() and time.time() < deadline:
        time.sleep(0.01)
    return command, proc


def test_sigterm_stops_like_an_interrupt_with_a_message(tmp_path):
    _, proc = long_pretraining(tmp_path)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143
    assert "pretext: terminated; what was finished is kept" in err and "Traceback" not in err
    assert load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")["step"] > 0


def test_a_failed_write_leaves_no_temporary_file_and_names_the_file(tmp_path, monkeypatch):
    path = tmp_path / "metrics.json"
    real_fsync = os.fsync

    def full_disk(fd):
        if os.fstat(fd).st_size:  # the data file, not the folder
            raise OSError(28, "No space left on device")
        return real_fsync(fd)

    monkeypatch.setattr(os, "fsync", full_disk)
    with pytest.raises(OSError, match=f"cannot write {path}: No space left"):
        write_json(path, {"a": 1})
    assert list(tmp_path.iterdir()) == []


def test_first_non_finite_names_the_tensor():
    state = {"model": {"w": torch.ones(2), "n": torch.tensor([3])}, "opt": [torch.zeros(1)]}
    assert first_non_finite(state) is None
    state["opt"].append(torch.tensor([1.0, float("inf")]))
    assert first_non_finite(state) == "opt.1"


def test_weights_that_diverge_keep_the_last_finite_checkpoint(tiny_data, tmp_path):
    out = tmp_path / "run"
    cfg = PretrainConfig(
        data_dir=str(tiny_data),
        out=str(out),
        epochs=3,
        batch_size=16,
        threads=1,
        encoder="cnn-bn",
        optimizer="sgd",
        lr=1e6,
    )
    with pytest.raises(PretextError, match="NaN or infinite at step") as caught:
        pretrain(cfg)
    checkpoint = out / "checkpoints" / "last.pt"
    if checkpoint.exists():  # whatever was kept is finite, and the message says it was kept
        assert first_non_finite(load_checkpoint(checkpoint)) is None
        assert "the last good checkpoint is kept" in str(caught.value)
    else:
        assert "no finite checkpoint was written" in str(caught.value)


def test_adam_at_an_absurd_rate_stops_instead_of_finishing(tiny_data, tmp_path):
    cfg = PretrainConfig(
        data_dir=str(tiny_data), out=str(tmp_path / "run"), epochs=2, batch_size=16, lr=1e6
    )
    with pytest.raises(PretextError, match="NaN or infinite at step"):
        pretrain(cfg)


def test_a_non_finite_encoder_is_refused_by_every_loader(pretrained_run):
    path = pretrained_run / "checkpoints" / "last.pt"
    state = load_checkpoint(path)
    name = next(iter(state["encoder"]))
    state["encoder"][name] = torch.full_like(state["encoder"][name], float("nan"))
    save_checkpoint(path, state)
    with pytest.raises(PretextError, match=f"NaN or infinite values \\({name}\\)"):
        load_encoder(pretrained_run)


def test_resume_rewrites_a_log_that_lags_the_checkpoint(tiny_data, tmp_path):
    out = tmp_path / "run"
    cfg = PretrainConfig(data_dir=str(tiny_data), out=str(out), epochs=2, batch_size=16, threads=1)
    pretrain(cfg)
    history = out / "metrics.jsonl"
    rows = history.read_text().splitlines()
    history.write_text(rows[0] + "\n")  # killed after the checkpoint, before the log
    pretrain(PretrainConfig(**{**cfg.__dict__, "epochs": 3, "resume": True}))
    assert [json.loads(r)["epoch"] for r in history.read_text().splitlines()] == [1, 2, 3]


def test_a_second_writer_is_refused_and_a_dead_writers_lock_is_taken_over(tmp_path):
    command, first = long_pretraining(tmp_path)
    second = subprocess.run([*command, "--resume"], env=ENV, capture_output=True, text=True)
    first.send_signal(signal.SIGKILL)
    first.communicate()
    assert second.returncode == 2
    assert f"being written by another pretext process (pid {first.pid})" in second.stderr
    out = tmp_path / "run"
    report = [sys.executable, "-m", "pretext", "report", str(out)]  # another writer, quick
    again = subprocess.run(report, env=ENV, capture_output=True, text=True)
    assert again.returncode == 0, again.stderr  # the killed writer's lock is free
    assert not (out / ".pretext.lock").exists()


def test_a_resume_removes_what_a_killed_write_left(tiny_data, tmp_path):
    out = tmp_path / "run"
    cfg = PretrainConfig(data_dir=str(tiny_data), out=str(out), epochs=1, batch_size=16, threads=1)
    pretrain(cfg)
    left = out / "checkpoints" / ".last.pt.tmp-12345"
    left.write_bytes(b"half a checkpoint")
    pretrain(PretrainConfig(**{**cfg.__dict__, "epochs": 2, "resume": True}))
    assert not left.exists()
