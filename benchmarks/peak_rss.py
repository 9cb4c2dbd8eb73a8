"""Run a command and print its wall time and peak resident memory as JSON.

python benchmarks/peak_rss.py -- pretext run --data-dir ../shared/data --out runs/mnist
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time


def main() -> None:
    command = sys.argv[sys.argv.index("--") + 1 :] if "--" in sys.argv else sys.argv[1:]
    started = time.perf_counter()
    code = subprocess.call(command)
    peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # KiB on Linux
    print(
        json.dumps(
            {
                "command": " ".join(command),
                "exit_code": code,
                "wall_seconds": round(time.perf_counter() - started, 1),
                "peak_rss_mib": round(peak_kib / 1024, 1),
            }
        )
    )
    sys.exit(code)


if __name__ == "__main__":
    main()
