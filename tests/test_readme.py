"""The README's examples run as written (on a small data set in place of MNIST)."""

import re
from pathlib import Path

from conftest import make_idx_set

from pretext.cli import main

README = Path(__file__).resolve().parents[1] / "README.md"


def python_blocks(section: str) -> list[str]:
    text = README.read_text()
    body = text.split(f"\n## {section}\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", body, re.S)


def test_the_readme_python_api_example_runs(tmp_path, monkeypatch, capsys):
    data = make_idx_set(tmp_path / "data", n_train=300, n_test=40)
    monkeypatch.chdir(tmp_path)
    (code,) = python_blocks("Python")
    assert '"../shared/data"' in code
    exec(compile(code.replace('"../shared/data"', repr(str(data))), "README.md", "exec"), {})
    printed = capsys.readouterr().out
    assert re.search(r"100 labels: \d+\.\d\d%", printed)
    assert re.search(r"linear probe: \d+\.\d\d%", printed)
    assert re.search(
        r"^1 mnist train #\d+ \d 0\.\d{3}$", printed, re.M
    )  # source, class, similarity
    assert (tmp_path / "runs" / "api" / "index" / "embeddings.npz").is_file()


def test_api_and_cli_give_the_same_finetune(pretrained_run, capsys):
    from pretext.commands import finetune_command
    from pretext.rundir import read_metrics

    assert main(["finetune", "--out", str(pretrained_run), "--labels", "20", "--epochs", "2"]) == 0
    by_cli = read_metrics(pretrained_run)["finetune"]
    by_api = finetune_command(pretrained_run, labels=20, changes={"epochs": 2}, log=lambda *_: None)
    assert by_api["test_accuracy"] == by_cli["test_accuracy"]
    assert by_api["train_accuracy"] == by_cli["train_accuracy"] and by_api["epochs"] == 2
    assert by_api["settings"] == by_cli["settings"] and by_api["settings"]["min_steps"] == 0
