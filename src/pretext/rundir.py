"""The run directory: the contract between commands, and the only module that knows its layout.

Pretraining creates it (config.json first, then checkpoints/last.pt, metrics.jsonl and
pretrain.json); every later command reads the pretrained encoder and settings from it and
merges its results into metrics.json. Other modules ask a `RunDir` for a path; none builds one.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from pretext.checkpoint import (
    load_checkpoint,
    load_state_checked,
    read_json,
    read_jsonl,
    write_json,
    write_jsonl,
    write_text_atomic,
)
from pretext.config import PretrainConfig, checked_settings, validate
from pretext.errors import PretextError
from pretext.models import build_encoder


@dataclass(frozen=True)
class RunDir:
    """Where each file of a run lives (a layout only: nothing is read or written here)."""

    root: Path

    def __init__(self, root: str | Path) -> None:
        object.__setattr__(self, "root", Path(root))

    config = property(lambda self: self.root / "config.json")
    metrics = property(lambda self: self.root / "metrics.json")
    history = property(lambda self: self.root / "metrics.jsonl")  # one row per epoch
    summary = property(lambda self: self.root / "pretrain.json")
    report = property(lambda self: self.root / "report.html")
    views_png = property(lambda self: self.root / "views.png")
    curves_png = property(lambda self: self.root / "curves.png")
    embeddings_png = property(lambda self: self.root / "embeddings.png")
    confusion_png = property(lambda self: self.root / "confusion.png")
    mistakes_png = property(lambda self: self.root / "mistakes.png")
    study_json = property(lambda self: self.root / "study.json")
    study_md = property(lambda self: self.root / "study.md")
    study_png = property(lambda self: self.root / "study.png")
    clusters_npz = property(lambda self: self.root / "clusters.npz")
    clusters_png = property(lambda self: self.root / "clusters.png")
    clusters_csv = property(lambda self: self.root / "clusters.csv")
    to_label_csv = property(lambda self: self.root / "to_label.csv")  # `pretext select`
    neighbours_png = property(lambda self: self.root / "neighbours.png")
    checkpoints = property(lambda self: self.root / "checkpoints")
    checkpoint = property(lambda self: self.root / "checkpoints" / "last.pt")  # pretraining
    clusters_checkpoint = property(lambda self: self.root / "checkpoints" / "clusters.pt")
    index = property(lambda self: self.root / "index")  # `pretext embed`'s default
    lock = property(lambda self: self.root / ".pretext.lock")  # held by the command writing

    def finetune_checkpoint(self, from_scratch: bool) -> Path:
        return self.checkpoints / ("scratch.pt" if from_scratch else "finetune.pt")

    def export_file(self, fmt: str) -> Path:
        """The exported encoder; its description is the same name with .json."""
        return self.root / ("encoder.onnx" if fmt == "onnx" else "encoder.torchscript.pt")

    def outputs(self) -> list[Path]:
        """Everything pretext's commands write here at their default names: --overwrite removes
        these (and nothing else), so nothing of an earlier run passes for the new one."""
        files = [getattr(self, f) for f in OUTPUT_NAMES]
        exports = [self.export_file(fmt) for fmt in ("torchscript", "onnx")]
        return files + exports + [path.with_suffix(".json") for path in exports]


def index_files(index_dir: str | Path) -> tuple[Path, Path]:
    """An embedding index (`pretext embed`; RUN_DIR/index by default): its embeddings.npz and
    the index.json that says which run and data it came from."""
    return Path(index_dir) / "embeddings.npz", Path(index_dir) / "index.json"


def search_strip(index_dir: str | Path, query: str) -> Path:
    """Where `pretext search` draws a query's neighbours by default."""
    return Path(index_dir) / f"search-{Path(query).stem}.png"


OUTPUT_NAMES = (
    "config",
    "metrics",
    "history",
    "summary",
    "report",
    "views_png",
    "curves_png",
    "embeddings_png",
    "confusion_png",
    "mistakes_png",
    "study_json",
    "study_md",
    "study_png",
    "clusters_npz",
    "clusters_png",
    "clusters_csv",
    "to_label_csv",
    "neighbours_png",
    "checkpoints",
    "index",
)


def is_run_dir(path: str | Path | None) -> bool:
    """A run directory is a folder with the config.json that pretraining writes first."""
    return path is not None and RunDir(path).config.is_file()


def has_checkpoint(path: str | Path | None) -> bool:
    return path is not None and RunDir(path).checkpoint.is_file()


def prepare(out: str | Path, resume: bool, overwrite: bool) -> RunDir:
    """The run directory pretraining writes to. An earlier run there is refused unless told to
    resume it (its checkpoint must exist) or to overwrite it (pretext's files go, others stay)."""
    run = RunDir(out)
    if resume:  # a run stopped before its first checkpoint starts again from its first step
        if not run.checkpoint.is_file() and not run.config.is_file():
            raise PretextError(f"--resume: no checkpoint at {run.checkpoint}")
        remove_stale_temporaries(run)
        return run
    if run.root.exists() and not run.root.is_dir():
        raise PretextError(f"--out {run.root} exists and is not a folder")
    if run.root.is_dir() and any(path != run.lock for path in run.root.iterdir()):
        if not overwrite:
            raise PretextError(
                f"--out {run.root} already holds files: pass --resume to continue or --overwrite"
            )
        for earlier in run.outputs():
            if earlier.is_dir() and not earlier.is_symlink():
                shutil.rmtree(earlier)
            elif earlier.exists() or earlier.is_symlink():
                earlier.unlink()
    run.root.mkdir(parents=True, exist_ok=True)
    return run


@contextlib.contextmanager
def writer_lock(run_dir: str | Path | None, create: bool = False) -> Iterator[None]:
    """Held by a command for as long as it writes into `run_dir`: a second writer is refused in
    one line naming the holder's process id. The lock is the OS's (flock), so a killed holder's
    lock is free again; the file goes when its holder is done. `create` makes the folder (for
    pretraining); otherwise a missing folder is left for the command to refuse. Under torchrun
    rank 0 holds it for all ranks."""
    run = RunDir(run_dir) if run_dir is not None else None
    if run is None or os.environ.get("RANK", "0") != "0" or not (create or run.root.is_dir()):
        yield
        return
    if run.root.exists() and not run.root.is_dir():
        raise PretextError(f"--out {run.root} exists and is not a folder")
    made = not run.root.exists()
    run.root.mkdir(parents=True, exist_ok=True)
    handle = take_lock(run)
    try:
        yield
    finally:
        run.lock.unlink(missing_ok=True)
        handle.close()
        if made and not any(run.root.iterdir()):  # a command refused before writing anything
            run.root.rmdir()


def take_lock(run: RunDir):
    """The open, locked lock file of `run`, with this process's id in it."""
    while True:
        handle = open(run.lock, "a+")  # noqa: SIM115 (held open while the command runs)
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            handle.close()
            raise PretextError(
                f"{run.root} is being written by another pretext process (pid {holder}); "
                "wait for it to finish, or give another --out"
            ) from None
        try:  # the file may have been removed by its last holder between open and flock
            same = os.fstat(handle.fileno()).st_ino == os.stat(run.lock).st_ino
        except FileNotFoundError:
            same = False
        if same:
            handle.seek(0)
            handle.truncate()
            handle.write(f"{os.getpid()}\n")
            handle.flush()
            return handle
        handle.close()


def remove_stale_temporaries(run: RunDir) -> None:
    """The temporary files of writes that a killed process never finished (see
    checkpoint.write_bytes_atomic): nothing reads them, and a resumed run leaves none behind."""
    for folder in (run.root, run.checkpoints, run.index):
        for path in folder.glob(".*.tmp-*") if folder.is_dir() else ():
            path.unlink(missing_ok=True)


def read_config(run_dir: str | Path) -> dict:
    """RUN_DIR/config.json as written; a folder without one is not a run (one clear error)."""
    if not is_run_dir(run_dir):
        raise PretextError(f"{run_dir} is not a run directory (it has no config.json)")
    return read_json(RunDir(run_dir).config)


def pretrain_config(run_dir: str | Path) -> PretrainConfig:
    """The pretraining settings a run recorded, read as data: each checked against the config's
    type and range (one line naming the field otherwise); names this version does not know are
    skipped. Nothing here imports code (see `encoder_of`)."""
    data = read_config(run_dir)
    where = str(RunDir(run_dir).config)
    data = data.get("pretrain", data) if isinstance(data, dict) else data
    cfg = PretrainConfig(**checked_settings(data, where, unknown_ok=True))
    try:
        validate(cfg)
    except PretextError as exc:
        raise PretextError(f"{where}: {exc}") from None
    return cfg


def encoder_of(cfg: PretrainConfig, named: str | None, where: str | Path) -> str:
    """The encoder a run was trained with, to build again. A user's own (module:callable) is
    code: it is imported only when the user names it again (`named`), never because a run
    directory says so."""
    if ":" in cfg.encoder and named != cfg.encoder:
        raise PretextError(
            f"{where} was trained with your own encoder {cfg.encoder!r}; a run directory never "
            f"runs code by itself: name it again with --encoder {cfg.encoder} to import it"
        )
    return cfg.encoder


def write_config(run: RunDir, cfg: PretrainConfig) -> None:
    write_text_atomic(run.config, json.dumps({"pretrain": asdict(cfg)}, indent=2) + "\n")


def read_metrics(run_dir: str | Path) -> dict:
    return read_json(RunDir(run_dir).metrics, default={})


def update_metrics(run_dir: str | Path, **entries) -> dict:
    """Merge entries into RUN_DIR/metrics.json (atomically) and return the whole record."""
    metrics = read_metrics(run_dir)
    metrics.update(entries)
    write_json(RunDir(run_dir).metrics, metrics)
    return metrics


def read_history(run_dir: str | Path) -> list[dict]:
    """The per-epoch rows of pretraining ([] before the first epoch ends)."""
    path = RunDir(run_dir).history
    return read_jsonl(path) if path.is_file() else []


def write_history(run: RunDir, rows: list[dict]) -> None:
    write_jsonl(run.history, rows)


def read_summary(run_dir: str | Path) -> dict:
    return read_json(RunDir(run_dir).summary, default={})


def write_summary(run: RunDir, summary: dict) -> None:
    write_json(run.summary, summary)


def load_encoder(
    run_dir: str | Path, device: torch.device | str = "cpu", named: str | None = None
) -> torch.nn.Module:
    """The pretrained encoder of a run directory, from checkpoints/last.pt (weights only);
    `named`: the user's own encoder, named again (see `encoder_of`)."""
    return load_encoder_and_input(run_dir, device, named)[0]


def load_encoder_and_input(
    run_dir: str | Path, device: torch.device | str = "cpu", named: str | None = None
) -> tuple[torch.nn.Module, tuple[int, int]]:
    """The pretrained encoder of a run directory, and the (channels, side) of the square images
    it was pretrained on (what an export traces), from one read of its checkpoint."""
    cfg = pretrain_config(run_dir)
    name = encoder_of(cfg, named, run_dir)
    state = load_checkpoint(RunDir(run_dir).checkpoint, device)
    channels, size = input_shape(state, cfg)
    encoder = build_encoder(name, channels, size, seed=0)  # weights replaced: no draw
    load_state_checked(encoder, state["encoder"], "encoder")
    return encoder.to(device), (channels, size)


def input_shape(state: dict, cfg: PretrainConfig) -> tuple[int, int]:
    """The (channels, side) a checkpoint records; checkpoints that predate the record give the
    first weight's second dimension as channels and the configured side (or 28)."""
    channels = state.get("in_channels") or state["encoder"][next(iter(state["encoder"]))].shape[1]
    return int(channels), int(state.get("image_size") or cfg.image_size or 28)
