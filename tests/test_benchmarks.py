import json
import subprocess
import sys
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


def test_throughput_benchmark_runs_and_prints_json():
    result = subprocess.run(
        [
            sys.executable,
            str(BENCHMARKS / "throughput.py"),
            "--seconds",
            "0.05",
            "--threads",
            "1",
            "--configs",
            "cnn:8",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    report = json.loads(result.stdout)
    (row,) = report["results"]
    assert row["encoder"] == "cnn" and row["batch_size"] == 8
    for key in ("model_images_per_s", "full_images_per_s", "views_images_per_s"):
        assert row[key] > 0
    expected = row["model_images_per_s"] / row["full_images_per_s"] - 1
    assert abs(row["overhead"] - expected) < 0.01
