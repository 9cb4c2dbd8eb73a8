"""Command-line interface: `pretext COMMAND [options]`. Parsing is in `parser`, the flag tables
in `options`, the calls of `pretext.commands` in `handlers`; here, the errors as one line and
an exit code."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import warnings
from pathlib import Path

import torch

from pretext import distributed
from pretext.allocator import keep_freed_memory
from pretext.cli.parser import build_parser
from pretext.errors import PretextError

_PACKAGE = str(Path(__file__).resolve().parent.parent)  # pretext's own files


def show_warnings_as_lines(plain_show):
    """A `warnings.showwarning` that writes pretext's own warnings as one line on stderr
    ("pretext: warning: ..."), and any other library's through `plain_show`."""

    def show(message, category, filename, lineno, file=None, line=None) -> None:
        if category is UserWarning and str(Path(filename).resolve()).startswith(_PACKAGE):
            print(f"pretext: warning: {message}", file=file or sys.stderr)
        else:
            plain_show(message, category, filename, lineno, file, line)

    return show


def main(argv: list[str] | None = None) -> int:
    """The command line as a function: the exit code (after --help or a usage error too)."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as stop:  # argparse has printed the help, or the usage and the error
        return int(stop.code or 0)
    keep_freed_memory()
    threads = getattr(args, "threads", None)  # every command takes it (pretrain keeps it too)
    if threads is not None and threads < 1:
        print(f"pretext: error: --threads must be >= 1, got {threads}", file=sys.stderr)
        return 2
    if threads:
        torch.set_num_threads(threads)
    in_main_thread = threading.current_thread() is threading.main_thread()
    before = signal.signal(signal.SIGTERM, terminate) if in_main_thread else None
    try:
        with warnings.catch_warnings():  # the caller's warning settings come back afterwards
            warnings.simplefilter("default")
            warnings.showwarning = show_warnings_as_lines(warnings.showwarning)
            return run_command(args)
    finally:
        if in_main_thread:
            signal.signal(signal.SIGTERM, before)


class Terminated(KeyboardInterrupt):
    """SIGTERM: stopped as an interrupt is, keeping what was finished."""


def terminate(_signum, _frame) -> None:
    raise Terminated


def run_command(args: argparse.Namespace) -> int:
    """The command, with its errors as one line and an exit code."""
    try:
        args.func(args)
        distributed.shutdown()  # under torchrun: leave the process group together
    except PretextError as exc:
        print(f"pretext: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # the machine's refusals: no space, no permission, a read-only disk
        print(f"pretext: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt as exc:
        how = "terminated" if isinstance(exc, Terminated) else "interrupted"
        print(
            f"pretext: {how}; what was finished is kept (pretraining and fine-tuning go "
            "on from their last checkpoint with --resume)",
            file=sys.stderr,
        )
        return 143 if isinstance(exc, Terminated) else 130
    return 0
