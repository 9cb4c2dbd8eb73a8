"""A user's own encoder, named 'module:callable', goes wherever a built-in one goes: the name is
what the run directory records, so every later command rebuilds the same architecture."""

import json
import sys

import pytest
import torch

from pretext.cli import main
from pretext.commands import export_command
from pretext.config import PretrainConfig
from pretext.errors import PretextError
from pretext.models import build_encoder
from pretext.rundir import RunDir, load_encoder, load_encoder_and_input
from pretext.train import pretrain

SOURCE = '''
import torch
from torch import nn


class PooledNet(nn.Module):
    """Any input size, no `embed_dim` attribute: pretext measures the embedding."""

    def __init__(self, in_channels, image_size):
        super().__init__()
        self.image_size = image_size
        self.conv = nn.Conv2d(in_channels, 8, 3, padding=1)
        self.fc = nn.Linear(8, 12)

    def forward(self, x):
        return self.fc(torch.relu(self.conv(x)).mean((2, 3)))


def flat(in_channels):
    return nn.Sequential(nn.Flatten(), nn.Linear(in_channels * 28 * 28, 6))


def not_a_module():
    return 3


def feature_maps():
    return nn.Conv2d(1, 4, 3)
'''


@pytest.fixture
def own_encoders(tmp_path, monkeypatch):
    """`my_encoders.py` in a folder on Python's path (PYTHONPATH=. where a user keeps it)."""
    (tmp_path / "my_encoders.py").write_text(SOURCE)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "my_encoders"
    sys.modules.pop("my_encoders", None)


def test_built_with_what_it_takes_and_its_embedding_measured(own_encoders):
    pooled = build_encoder("my_encoders:PooledNet", in_channels=3, image_size=40)
    assert pooled.image_size == 40 and pooled.embed_dim == 12
    assert pooled(torch.zeros(2, 3, 40, 40)).shape == (2, 12)
    assert build_encoder("my_encoders:flat", 1).embed_dim == 6  # takes in_channels only
    again = build_encoder("my_encoders:PooledNet", 1, 28, seed=5)
    same = build_encoder("my_encoders:PooledNet", 1, 28, seed=5)
    pairs = zip(again.parameters(), same.parameters(), strict=True)
    assert all(torch.equal(a, b) for a, b in pairs)
    assert again.training  # measuring the embedding left the mode as it was


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("my_encoders:Missing", "cannot load encoder 'my_encoders:Missing'"),
        ("no_such_module_anywhere:Net", "holds no_such_module_anywhere to PYTHONPATH"),
        ("my_encoders:not_a_module", "gave a int, not an nn.Module"),
        ("my_encoders:feature_maps", "to (N, D) embeddings; it gave (2, 4, 26, 26)"),
        (":Net", "write your own encoder as 'module:callable'"),
        ("resnet", "or your own as 'module:callable'"),
    ],
)
def test_bad_names_are_clear_errors(own_encoders, name, message):
    with pytest.raises(PretextError) as caught:
        build_encoder(name)
    assert message in str(caught.value)


def test_pretrain_finetune_baseline_and_export(own_encoders, tiny_data, tmp_path, capsys):
    out = tmp_path / "run"
    name = "my_encoders:PooledNet"
    pretrain(
        PretrainConfig(
            data_dir=str(tiny_data), out=str(out), encoder=name, epochs=1, batch_size=16, threads=1
        ),
        log=lambda *_: None,
    )
    assert json.loads((out / "config.json").read_text())["pretrain"]["encoder"] == name
    encoder = load_encoder(out, named=name)
    saved = torch.load(out / "checkpoints" / "last.pt", weights_only=True)["encoder"]
    assert all(torch.equal(saved[k], v) for k, v in encoder.state_dict().items())
    assert load_encoder_and_input(out, named=name)[1] == (1, 28) and encoder.embed_dim == 12

    common = ["--data-dir", str(tiny_data), "--threads", "1", "--out", str(out), "--epochs", "1"]
    named = [*common, "--encoder", name]
    assert main(["finetune", *named, "--labels", "20", "--min-steps", "0"]) == 0
    assert main(["finetune", *named, "--from-scratch"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert 0 <= metrics["finetune"]["test_accuracy"] <= 1
    assert metrics["finetune_scratch"]["from_scratch"]

    exported = export_command(out, encoder=name)
    described = json.loads(exported.with_suffix(".json").read_text())
    assert described["input"] == "float N x 1 x 28 x 28" and described["embed_dim"] == 12
    images = torch.rand(3, 1, 28, 28)
    with torch.no_grad():
        assert torch.allclose(torch.jit.load(str(exported))(images), encoder.eval()(images))
    assert {path.name for path in out.iterdir()} <= {
        path.name for path in RunDir(out).outputs()
    }  # what --overwrite clears


def test_a_bad_name_on_the_command_line_is_one_line(own_encoders, tiny_data, tmp_path, capsys):
    out = tmp_path / "run"
    options = ["--data-dir", str(tiny_data), "--out", str(out), "--batch-size", "16"]
    assert main(["pretrain", *options, "--encoder", "my_encoders:Nope"]) != 0
    err = capsys.readouterr().err.strip()
    assert "cannot load encoder 'my_encoders:Nope'" in err and "Traceback" not in err
    assert len(err.splitlines()) == 1
    assert not out.exists()  # refused before the run directory was made


def test_export_describes_the_runs_own_image_size(own_encoders, tiny_data, tmp_path):
    out = tmp_path / "run32"
    cfg = PretrainConfig(
        data_dir=str(tiny_data),
        out=str(out),
        encoder="my_encoders:PooledNet",
        image_size=32,
        epochs=1,
        batch_size=16,
        threads=1,
    )
    pretrain(cfg, log=lambda *_: None)
    encoder, shape = load_encoder_and_input(out, named="my_encoders:PooledNet")
    assert shape == (1, 32) and encoder.image_size == 32
    exported = export_command(out, encoder="my_encoders:PooledNet")
    assert json.loads(exported.with_suffix(".json").read_text())["input"] == "float N x 1 x 32 x 32"


def test_a_run_directory_that_names_code_runs_none_of_it(pretrained_run, tmp_path, capsys):
    """config.json's encoder is data: `os:abort` or a module shipped inside the run folder is
    imported only when the user names it again on the command line."""
    (pretrained_run / "evil.py").write_text(
        f"import pathlib\npathlib.Path({str(tmp_path / 'ran')!r}).touch()\ndef net(): pass\n"
    )
    config = pretrained_run / "config.json"
    for code in ("os:abort", "code:interact", "evil:net"):
        data = json.loads(config.read_text())
        data["pretrain"]["encoder"] = code
        config.write_text(json.dumps(data))
        for command in (
            ["export", str(pretrained_run)],
            ["evaluate", "--out", str(pretrained_run)],
            ["embed", "--out", str(pretrained_run)],
        ):
            assert main(command) == 2
            err = capsys.readouterr().err
            assert f"your own encoder '{code}'" in err and f"--encoder {code}" in err
    assert not (tmp_path / "ran").exists()


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("image_size", "28", "image_size must be int or null, got '28'"),
        ("encoder", None, "encoder must be str, got None"),
        ("epochs", [3], "epochs must be int, got [3]"),
        ("batch_size", 0, "--batch-size must be >= 2"),
    ],
)
def test_run_settings_of_the_wrong_type_are_one_line(pretrained_run, capsys, field, value, message):
    config = pretrained_run / "config.json"
    data = json.loads(config.read_text())
    data["pretrain"][field] = value
    config.write_text(json.dumps(data))
    for command in (
        ["export", str(pretrained_run)],
        ["evaluate", "--out", str(pretrained_run)],
        ["pretrain", "--out", str(pretrained_run), "--resume"],
    ):
        assert main(command) == 2
        err = capsys.readouterr().err
        assert message in err and "config.json" in err and "Traceback" not in err
