"""Two CPU processes (gloo) must compute what one process computes on the whole batch."""

import json
import os
import subprocess
import sys

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from pretext.checkpoint import load_checkpoint
from pretext.methods import build_method
from pretext.models import build_encoder

BATCH = 6  # per process


def views(total: int):
    g = torch.Generator().manual_seed(3)
    return torch.randn(total, 1, 28, 28, generator=g), torch.randn(total, 1, 28, 28, generator=g)


def fresh_method():
    torch.manual_seed(0)
    return build_method("simclr", build_encoder("cnn"), temperature=0.5, projection_dim=0)


def worker(rank: int, world: int, init_file: str, results: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    v1, v2 = views(BATCH * world)
    model = torch.nn.parallel.DistributedDataParallel(fresh_method())
    part = slice(rank * BATCH, (rank + 1) * BATCH)
    loss = model([v1[part], v2[part]])
    loss.backward()
    grads = {k: p.grad for k, p in model.module.encoder.named_parameters()}
    torch.save({"loss": loss.detach(), "grads": grads}, f"{results}/rank{rank}.pt")
    dist.barrier()
    dist.destroy_process_group()
    # Skip C++ teardown: gloo's threads can abort a process at interpreter exit ("terminate
    # called without an active exception") after all the work is done and saved.
    os._exit(0)


def test_two_processes_match_one_process_on_the_whole_batch(tmp_path):
    world = 2
    mp.spawn(worker, args=(world, str(tmp_path / "init"), str(tmp_path)), nprocs=world)
    single = fresh_method()
    v1, v2 = views(BATCH * world)
    loss = single([v1, v2])
    loss.backward()
    for rank in range(world):
        got = torch.load(tmp_path / f"rank{rank}.pt", weights_only=True)
        assert torch.allclose(got["loss"], loss.detach(), atol=1e-5)
        for name, param in single.encoder.named_parameters():
            assert torch.allclose(got["grads"][name], param.grad, atol=1e-5), name


def test_torchrun_pretrain_writes_one_checkpoint_and_one_metrics_file(tiny_data, tmp_path):
    out = tmp_path / "run"
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        "-m",
        "pretext",
        "pretrain",
        "--data-dir",
        str(tiny_data),
        "--out",
        str(out),
        "--epochs",
        "2",
        "--batch-size",
        "8",
        "--threads",
        "1",
    ]
    env = {**os.environ, "PRETEXT_NO_DOWNLOAD": "1", "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.count("epoch 2/2") == 1  # only rank 0 logs
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["last.pt"]
    rows = (out / "metrics.jsonl").read_text().splitlines()
    assert len(rows) == 2
    state = load_checkpoint(out / "checkpoints" / "last.pt")
    assert state["step"] == 2 * (64 // 16) and len(state["rng"]["augment"]) == 2
    assert json.loads((out / "pretrain.json").read_text())["processes"] == 2
    resumed = subprocess.run(
        [*command, "--resume"], capture_output=True, text=True, env=env, timeout=300
    )
    assert resumed.returncode == 0, resumed.stderr[-2000:]


def test_single_process_gather_is_identity():
    from pretext.distributed import gather_with_grad

    x = torch.randn(3, 2)
    assert gather_with_grad(x) is x


def test_torchrun_reads_its_shards_from_a_cache_as_from_memory(tiny_data, tmp_path):
    from pretext.commands import prepare_command

    prepare_command("mnist", tmp_path / "prepared", data_dir=tiny_data, log=lambda *_: None)
    env = {**os.environ, "PRETEXT_NO_DOWNLOAD": "1", "OMP_NUM_THREADS": "1"}
    losses = []
    for name, source in (
        ("memory", ["--data-dir", str(tiny_data)]),
        ("cache", ["--dataset", str(tmp_path / "prepared")]),
    ):
        command = [
            sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
            "-m", "pretext", "pretrain", *source, "--out", str(tmp_path / name), "--epochs", "2",
            "--batch-size", "8", "--threads", "1",
        ]  # fmt: skip
        result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
        said = [line for line in result.stderr.splitlines() if line.startswith("pretext:")]
        assert result.returncode == 0, said or result.stderr[-2000:]
        rows = (tmp_path / name / "metrics.jsonl").read_text().splitlines()
        losses.append([json.loads(row)["loss"] for row in rows])
    assert losses[0] == losses[1] and len(losses[0]) == 2
