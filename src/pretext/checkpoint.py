"""Atomic file writes and safe checkpoint loading.

Every file is written to a temporary name in the same folder, flushed to disk and renamed, so a
crash leaves either the old file or the new one, never half of one. Checkpoints are loaded only
with `weights_only=True`: a file built to run code when unpickled is refused.
"""

from __future__ import annotations

import io
import json
import os
import pickle
from pathlib import Path

import numpy as np
import torch

from pretext.errors import PretextError


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """`data` as `path`, through a temporary file that is removed on every failure (a full disk,
    an interrupt); the error then names `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        if isinstance(exc, OSError) and exc.filename is None:
            raise OSError(exc.errno, f"cannot write {path}: {exc.strerror or exc}") from None
        raise
    try:
        dir_fd = os.open(path.parent, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def write_text_atomic(path: Path, text: str) -> None:
    write_bytes_atomic(path, text.encode())


def write_npz(path: Path, **arrays) -> None:
    """NumPy arrays as one .npz, written atomically (a reader never sees half a file)."""
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    write_bytes_atomic(path, buffer.getvalue())


def write_json(path: Path, obj) -> None:
    write_text_atomic(path, json.dumps(obj, indent=2) + "\n")


def write_jsonl(path: Path, rows: list[dict]) -> None:
    write_text_atomic(path, "".join(json.dumps(row) + "\n" for row in rows))


def read_json(path: Path, default=None):
    """A JSON file of a run; `default` when it does not exist (when one is given). A file that
    cannot be read or parsed is a PretextError naming it, never a traceback."""
    path = Path(path)
    if default is not None and not path.exists():
        return default
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise PretextError(f"cannot read {path}: {exc}") from None


def read_jsonl(path: Path) -> list[dict]:
    """One JSON object per line (metrics.jsonl); a corrupt file is a PretextError naming it."""
    try:
        return [json.loads(line) for line in Path(path).read_text().splitlines() if line]
    except (OSError, ValueError) as exc:
        raise PretextError(f"cannot read {path}: {exc}") from None


def save_checkpoint(path: Path, state: dict) -> None:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    write_bytes_atomic(path, buffer.getvalue())


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> dict:
    path = Path(path)
    if not path.is_file():
        raise PretextError(f"no checkpoint at {path}")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise PretextError(
            f"refused to load {path}: it is not a plain weights file ({first})"
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError) as exc:
        reason = str(exc).strip().split(". ")[0]  # torch appends a paragraph of advice
        raise PretextError(
            f"{path} is not a readable checkpoint (truncated or corrupt: {reason})"
        ) from None
    if not isinstance(state, dict) or "encoder" not in state:
        raise PretextError(f"{path} is not a pretext checkpoint (no 'encoder' entry)")
    return state


def first_non_finite(state, name: str = "") -> str | None:
    """The name of the first floating-point tensor in a nested dict / list that holds a NaN or
    an infinity (None when all are finite): checked before a checkpoint is written or used."""
    if isinstance(state, torch.Tensor):
        finite = not state.is_floating_point() or bool(torch.isfinite(state).all())
        return None if finite else name or "tensor"
    if not isinstance(state, dict | list | tuple):
        return None
    items = state.items() if isinstance(state, dict) else enumerate(state)
    for key, value in items:
        found = first_non_finite(value, f"{name}.{key}" if name else str(key))
        if found is not None:
            return found
    return None


def load_state_checked(module: torch.nn.Module, state: dict, what: str) -> None:
    """load_state_dict with a clear word about which entries differ."""
    own = module.state_dict()
    bad = first_non_finite(state)
    if bad is not None:
        raise PretextError(f"the checkpoint's {what} holds NaN or infinite values ({bad})")
    missing = sorted(set(own) - set(state))
    extra = sorted(set(state) - set(own))
    if missing or extra:
        raise PretextError(
            f"the checkpoint's {what} does not match: missing {missing[:3]}, unexpected {extra[:3]}"
        )
    for key, value in state.items():
        if own[key].shape != value.shape:
            raise PretextError(
                f"the checkpoint's {what} entry {key} has shape {tuple(value.shape)}, "
                f"this model needs {tuple(own[key].shape)}"
            )
    module.load_state_dict(state)


def check_same_training(
    saved: dict, now: dict, may_change: frozenset[str], anew: str = "with --overwrite"
) -> None:
    """--resume continues the training a checkpoint holds: refuse settings (`now`, against the
    checkpoint's `saved` ones) that would make it another one; `may_change` lists the harmless;
    `anew` says how to start over instead."""
    changed = [k for k, v in saved.items() if k in now and k not in may_change and now[k] != v]
    if changed:
        was = ", ".join(f"{key}={saved[key]!r}" for key in changed)
        asked = ", ".join(f"{key}={now[key]!r}" for key in changed)
        raise PretextError(
            f"--resume: this run was trained with {was}, not {asked}; leave those options out to "
            f"continue it as it was, or start anew {anew}"
        )
