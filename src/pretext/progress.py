"""The progress bar every training loop shows: transient, on stderr, throttled."""

from __future__ import annotations

import sys

from tqdm import tqdm


def step_bar(steps: range, desc: str, show: bool = True) -> tqdm:
    """A bar over one epoch's steps. It redraws at most twice a second, disappears when done
    (the loop prints its own epoch line), and hides itself when stderr is not a terminal or
    `show` is false (other ranks of a multi-process run)."""
    return tqdm(
        steps,
        desc=desc,
        leave=False,
        file=sys.stderr,
        disable=None if show else True,
        mininterval=0.5,
    )
