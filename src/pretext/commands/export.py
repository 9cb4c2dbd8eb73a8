"""`pretext export`: the encoder alone, usable without pretext (TorchScript or ONNX), with a
JSON file that says what input it takes."""

from __future__ import annotations

import importlib
import warnings
from pathlib import Path

import torch

from pretext import rundir
from pretext.augment import Augmentation, preset
from pretext.checkpoint import write_json
from pretext.config import input_stats
from pretext.errors import PretextError

FORMATS = ("torchscript", "onnx")


def export_command(
    run_dir: str | Path,
    fmt: str = "torchscript",
    out: str | Path | None = None,
    encoder: str | None = None,
) -> Path:
    """Write the run's encoder as `fmt` to `out` (default RUN_DIR/encoder.torchscript.pt or
    RUN_DIR/encoder.onnx), and its description beside it (.json). `encoder` names the user's
    own encoder again (`rundir.encoder_of`)."""
    if fmt not in FORMATS:
        raise PretextError(f"--format must be torchscript or onnx, got {fmt!r}")
    pre = rundir.pretrain_config(run_dir)
    model, (channels, size) = rundir.load_encoder_and_input(run_dir, "cpu", named=encoder)
    model.eval()
    example = torch.zeros(2, channels, size, size)
    path = Path(out) if out is not None else rundir.RunDir(run_dir).export_file(fmt)
    if fmt == "torchscript":
        write_torchscript(model, example, path)
    else:
        write_onnx(model, example, path)
    write_json(
        path.with_suffix(".json"),
        {
            "input": f"float N x {channels} x {size} x {size}",
            "normalise": normalisation(preset(pre.augment, input_stats(pre))),
            "embed_dim": int(model.embed_dim),
            "encoder": pre.encoder,
        },
    )
    return path


def write_torchscript(encoder: torch.nn.Module, example: torch.Tensor, path: Path) -> None:
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # still the portable format
        traced = torch.jit.trace(encoder, example)
    tmp = path.with_name(f".{path.name}.tmp")
    traced.save(str(tmp))
    tmp.replace(path)


def write_onnx(encoder: torch.nn.Module, example: torch.Tensor, path: Path) -> None:
    try:  # asked for first: without it torch's exporter fails with a traceback of its own
        importlib.import_module("onnx")
    except ImportError:
        raise PretextError(
            "ONNX export needs the 'onnx' package: pip install 'pretext[export]'"
        ) from None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # TorchScript-based exporter
        torch.onnx.export(
            encoder,
            (example,),
            str(path),
            input_names=["images"],
            output_names=["embeddings"],
            dynamic_axes={"images": {0: "batch"}, "embeddings": {0: "batch"}},
            dynamo=False,
        )


def normalisation(aug: Augmentation) -> dict:
    """How to turn 0-255 pixels into the encoder's input: (x / 255 * scale - mean) / std, with
    one mean and std per channel."""
    channels = lambda v: list(v) if isinstance(v, tuple) else [v]  # noqa: E731
    return {"scale": aug.pixel_scale, "mean": channels(aug.mean), "std": channels(aug.std)}
