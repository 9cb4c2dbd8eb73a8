import json
import os
import subprocess
import sys

import pytest

from pretext.cli import main


def run_cli(*args: str, home: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "PRETEXT_DATA_DIR"}
    env.update(PRETEXT_NO_DOWNLOAD="1", HOME=home)  # nothing to find but what the test gives
    return subprocess.run(
        [sys.executable, "-m", "pretext", *args], capture_output=True, text=True, env=env
    )


def test_missing_data_is_one_line_no_traceback(tmp_path):
    result = run_cli(
        "pretrain",
        "--data-dir",
        str(tmp_path / "none"),
        "--out",
        str(tmp_path / "r"),
        home=str(tmp_path),
    )
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().startswith("pretext: error: mnist not found")
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize(
    "options, message",
    [
        (["--temperature", "0"], "--temperature must be > 0"),
        (["--batch-size", "1"], "--batch-size must be >= 2"),
        (["--batch-size", "1000"], "larger than the data set"),
        (["--encoder", "nope"], "unknown encoder"),
        (["--recipe", "nope"], "argument --recipe: invalid choice: 'nope'"),
        (["--dataset", "nope"], "unknown data set"),
        (["--augment", "nope"], "argument --augment: invalid choice: 'nope'"),
        (["--method", "nope"], "argument --method: invalid choice: 'nope'"),
        (["--threads", "-1"], "--threads must be >= 1"),
    ],
)
def test_impossible_options(tiny_data, tmp_path, capsys, options, message):
    code = main(
        [
            "pretrain",
            "--data-dir",
            str(tiny_data),
            "--out",
            str(tmp_path / "r"),
            "--epochs",
            "1",
            "--batch-size",
            "16",
            *options,
        ]
    )
    assert code != 0
    assert message in capsys.readouterr().err
    assert not (tmp_path / "r").exists()  # refused before the run directory was made


@pytest.mark.parametrize(
    "command, message",
    [
        (["run", "--finetune-epochs", "0"], "--finetune-epochs must be >= 1"),
        (["run", "--finetune-lr", "-1"], "--finetune-lr must be > 0"),
        (["run", "--semi", "--semi-epochs", "0"], "--semi-epochs must be >= 1"),
        (["run", "--semi-epochs", "2"], "--semi-epochs needs --semi"),
        (["finetune", "--from-scratch", "--epochs", "0"], "--epochs must be >= 1"),
        (["finetune", "--from-scratch", "--min-steps", "-1"], "--min-steps must be >= 0"),
        (["study", "--min-steps", "-1"], "--min-steps must be >= 0"),
    ],
)
def test_impossible_finetuning_options_come_first(tiny_data, tmp_path, capsys, command, message):
    out = tmp_path / "r"
    common = ["--data-dir", str(tiny_data), "--out", str(out), "--epochs", "1"]
    assert main([command[0], *common, *command[1:]]) != 0  # the command's options come last
    assert message in capsys.readouterr().err
    assert not out.exists()  # nothing pretrained, nothing written


def test_pretrain_then_finetune_and_scratch_through_the_cli(tiny_data, tmp_path, capsys):
    out = tmp_path / "run"
    common = ["--data-dir", str(tiny_data), "--threads", "1"]
    assert (
        main(["pretrain", *common, "--out", str(out), "--epochs", "1", "--batch-size", "16"]) == 0
    )
    assert "epoch 1/1  loss" in capsys.readouterr().out
    assert (
        main(
            [
                "finetune",
                *common,
                "--out",
                str(out),
                "--epochs",
                "2",
                "--labels",
                "20",
                "--min-steps",
                "0",
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert "train accuracy" in printed and "test accuracy" in printed
    assert main(["finetune", *common, "--from-scratch", "--out", str(out), "--epochs", "1"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["finetune"]["labels"] == 20 and metrics["finetune_scratch"]["from_scratch"]
    assert "semi" not in metrics["finetune"]
    # one label per class: the semi-supervised training starts from the named clusters
    again = ["finetune", *common, "--out", str(out), "--labels", "10", "--semi"]
    assert main([*again, "--semi-epochs", "1"]) == 0
    printed = capsys.readouterr().out
    assert "clustering" in printed and "semi epoch 1/1" in printed
    recorded = json.loads((out / "metrics.json").read_text())
    tuned = recorded["semi"]
    assert tuned["semi"]["passes"] == tuned["semi"]["few_epochs"] == tuned["semi"]["epochs"] == 1
    assert 0 <= tuned["semi"]["confident"] <= 1
    assert tuned["labels"] == 10 and 0 <= tuned["test_accuracy"] <= 1
    assert recorded["finetune"] == metrics["finetune"]  # the plain fine-tune's record stays
    assert main([*again, "--semi-epochs", "0"]) != 0
    assert "--semi-epochs must be >= 1" in capsys.readouterr().err
    assert main(["finetune", *common, "--out", str(out), "--semi"]) != 0
    assert "--semi needs --labels N" in capsys.readouterr().err
    assert main(["finetune", *common, "--out", str(out), "--semi-epochs", "2"]) != 0
    assert "--semi-epochs needs --semi" in capsys.readouterr().err
    assert json.loads((out / "metrics.json").read_text())["semi"] == tuned  # kept


def test_existing_run_is_not_overwritten(tiny_data, tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "precious.txt").write_text("keep me")
    code = main(
        [
            "pretrain",
            "--data-dir",
            str(tiny_data),
            "--out",
            str(out),
            "--epochs",
            "1",
            "--batch-size",
            "16",
        ]
    )
    assert code != 0 and "already holds files" in capsys.readouterr().err
    assert (out / "precious.txt").read_text() == "keep me"


def test_overwrite_leaves_nothing_of_the_earlier_run(pretrained_run, capsys):
    # The earlier run's study, fine-tuning checkpoint (which --resume would take up) and results
    # must not pass for the new run's; files that are not pretext's stay.
    run = pretrained_run
    data = json.loads((run / "config.json").read_text())["pretrain"]["data_dir"]
    common = ["--data-dir", data, "--out", str(run), "--threads", "1", "--epochs", "1"]
    assert main(["finetune", *common, "--labels", "20", "--min-steps", "0"]) == 0
    (run / "study.md").write_text("an earlier study")
    (run / "notes.txt").write_text("mine")
    assert (run / "checkpoints" / "finetune.pt").is_file()
    assert main(["pretrain", *common, "--batch-size", "16", "--overwrite"]) == 0
    assert not (run / "checkpoints" / "finetune.pt").exists() and not (run / "study.md").exists()
    assert not (run / "metrics.json").exists()  # the earlier fine-tune's results are gone
    assert (run / "notes.txt").read_text() == "mine" and (run / "checkpoints" / "last.pt").is_file()


def test_a_skipped_file_is_one_warning_line(tmp_path, capsys):
    import numpy as np
    from PIL import Image

    folder = tmp_path / "photos"
    folder.mkdir()
    for i in range(32):
        Image.fromarray(np.full((28, 28), 8 * i, dtype=np.uint8)).save(folder / f"{i}.png")
    (folder / "broken.jpg").write_bytes(b"not an image")
    out = tmp_path / "run"
    options = ["--dataset", str(folder), "--out", str(out), "--epochs", "1", "--batch-size", "16"]
    assert main(["pretrain", *options, "--threads", "1"]) == 0
    err = capsys.readouterr().err
    assert "pretext: warning: skipping " in err and "broken.jpg: not a readable image\n" in err
    assert "UserWarning" not in err and "load_folder" not in err  # no source line after it


def test_a_run_works_from_any_directory(tiny_data, tmp_path, monkeypatch, capsys):
    # Relative --data-dir and --dataset paths are recorded as absolute ones: the run's later
    # commands find the data from elsewhere (here, from inside the run directory).
    monkeypatch.delenv("PRETEXT_DATA_DIR", raising=False)
    monkeypatch.chdir(tmp_path)
    common = ["--epochs", "1", "--batch-size", "16", "--threads", "1"]
    assert main(["pretrain", "--data-dir", "data", "--out", "run", *common]) == 0
    assert json.loads((tmp_path / "run" / "config.json").read_text())["pretrain"][
        "data_dir"
    ] == str(tiny_data)
    monkeypatch.chdir(tmp_path / "run")
    assert main(["finetune", "--out", ".", "--labels", "20", "--min-steps", "0", *common]) == 0
    assert main(["embed", "--out", "."]) == 0
    monkeypatch.chdir(tmp_path / "run" / "index")
    assert main(["search", "--index-dir", ".", "--query", "0", "-k", "2"]) == 0
    assert "# 1  1.000  0           mnist train #0" in capsys.readouterr().out


def test_a_runs_config_json_repeats_it(tiny_data, tmp_path, capsys):
    first, again = tmp_path / "first", tmp_path / "again"
    options = ["--epochs", "2", "--batch-size", "16", "--lr", "0.001", "--augment", "light"]
    common = ["--data-dir", str(tiny_data), "--threads", "1"]
    assert main(["pretrain", *common, "--out", str(first), *options, "--seed", "3"]) == 0
    assert main(["pretrain", "--config", str(first / "config.json"), "--out", str(again)]) == 0
    settings = [json.loads((run / "config.json").read_text())["pretrain"] for run in (first, again)]
    assert {**settings[0], "out": None} == {**settings[1], "out": None}
    losses = [(run / "metrics.jsonl").read_text() for run in (first, again)]
    assert [json.loads(line)["loss"] for line in losses[0].splitlines()] == [
        json.loads(line)["loss"] for line in losses[1].splitlines()
    ]
    capsys.readouterr()
    (tmp_path / "typo.json").write_text(json.dumps({"epochs": 2, "lrr": 0.1}))
    assert (
        main(["pretrain", "--config", str(tmp_path / "typo.json"), "--out", str(tmp_path / "x")])
        != 0
    )
    assert "unknown settings lrr" in capsys.readouterr().err and not (tmp_path / "x").exists()
    (tmp_path / "wrong.json").write_text(json.dumps({"epochs": "ten"}))
    assert (
        main(["pretrain", "--config", str(tmp_path / "wrong.json"), "--out", str(tmp_path / "x")])
        != 0
    )
    assert "epochs must be int, got 'ten'" in capsys.readouterr().err
    resume = ["pretrain", "--config", str(first / "config.json"), "--out", str(first), "--resume"]
    assert main(resume) != 0 and "drop --config" in capsys.readouterr().err


def test_augment_writes_a_png(tiny_data, tmp_path):
    out = tmp_path / "views.png"
    assert main(["augment", "--data-dir", str(tiny_data), "--out", str(out)]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    resized = tmp_path / "views-14.png"  # as pretraining with --image-size 14 sees them
    command = ["augment", "--data-dir", str(tiny_data), "--image-size", "14", "--out", str(resized)]
    assert main(command) == 0 and resized.read_bytes()[:4] == b"\x89PNG"


def test_picture_outputs_refuse_a_format_they_cannot_write(tiny_data, tmp_path, capsys):
    out = tmp_path / "views.txt"
    assert main(["augment", "--data-dir", str(tiny_data), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("pretext: error:") and ".txt" in err and ".png" in err
    assert len(err.strip().splitlines()) == 1 and not out.exists()


def test_the_machine_refusing_a_write_is_one_line(tiny_data, tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    out = blocker / "views.png"  # a folder would have to be made inside a file
    assert main(["augment", "--data-dir", str(tiny_data), "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("pretext: error:") and "a-file" in err
    assert len(err.strip().splitlines()) == 1
    assert blocker.read_text() == "not a folder"


def test_commands_on_a_directory_that_is_not_a_run(tmp_path, capsys):
    missing = tmp_path / "no-run"
    finetune = ["finetune", "--out", str(missing)]
    for command in (["report", str(missing)], ["evaluate", "--out", str(missing)], finetune):
        assert main(command) != 0
        assert "is not a run directory" in capsys.readouterr().err
    assert main(["finetune"]) != 0 and "--from-scratch" in capsys.readouterr().err
    assert not missing.exists()  # nothing made in passing (report used to write an empty page)


def test_corrupt_run_files_are_one_line_errors(pretrained_run, capsys):
    config = (pretrained_run / "config.json").read_text()
    (pretrained_run / "metrics.json").write_text('{"pretrain": {"epochs"')
    assert main(["report", str(pretrained_run)]) != 0
    err = capsys.readouterr().err
    assert err.startswith("pretext: error: cannot read") and "metrics.json" in err
    assert len(err.strip().splitlines()) == 1
    assert (pretrained_run / "metrics.json").read_text() == '{"pretrain": {"epochs"'  # untouched
    (pretrained_run / "metrics.json").unlink()
    (pretrained_run / "config.json").write_text(config[: len(config) // 2])
    assert main(["report", str(pretrained_run)]) != 0
    assert "config.json" in capsys.readouterr().err


def test_study_and_search_refuse_empty_requests(pretrained_run, capsys):
    assert main(["study", "--out", str(pretrained_run), "--seeds", "0"]) != 0
    assert "--seeds must be >= 1" in capsys.readouterr().err
    assert main(["search", "--index-dir", str(pretrained_run), "--query", "0", "-k", "0"]) != 0
    assert "-k must be >= 1" in capsys.readouterr().err


def test_study_label_counts_are_checked_before_any_work(pretrained_run, tmp_path, capsys):
    # A count the data cannot give fails at once: not after the other counts (or a pretraining)
    # have run and spent their time.
    common = ["--seeds", "1", "--min-steps", "1", "--threads", "1"]
    assert main(["study", "--out", str(pretrained_run), "--labels", "20,99,5", *common]) != 0
    printed = capsys.readouterr()
    assert "--labels 5 is fewer than the 10 classes" in printed.err
    assert "20 labels" not in printed.out  # the first count did not run (99: all 64 images)
    assert not (pretrained_run / "study.json").exists()
    fresh = tmp_path / "fresh"
    config = json.loads((pretrained_run / "config.json").read_text())["pretrain"]
    options = ["--data-dir", config["data_dir"], "--labels", "5", *common]
    assert main(["study", "--out", str(fresh), *options]) != 0
    assert "--labels 5 is fewer than the 10 classes" in capsys.readouterr().err
    assert not fresh.exists()  # nothing pretrained


def test_study_pretrains_into_out_when_it_holds_no_run(tiny_data, tmp_path, capsys):
    out = tmp_path / "fresh"
    common = ["--data-dir", str(tiny_data), "--threads", "1", "--labels", "20", "--seeds", "1"]
    options = [*common, "--epochs", "1", "--batch-size", "16", "--min-steps", "2"]
    assert main(["study", "--out", str(out), *options]) == 0
    assert (out / "checkpoints" / "last.pt").is_file() and (out / "study.md").is_file()
    assert "epoch 1/1" in capsys.readouterr().out
    from pretext.rundir import RunDir

    assert {path.name for path in out.iterdir()} <= {
        path.name for path in RunDir(out).outputs()
    }  # what --overwrite clears


def test_study_refuses_two_different_run_directories(pretrained_run, tmp_path, capsys):
    other = tmp_path / "elsewhere"
    assert main(["study", "--checkpoint", str(pretrained_run), "--out", str(other)]) != 0
    assert "not both" in capsys.readouterr().err and not other.exists()


def test_version(capsys):
    import pretext

    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"pretext {pretext.__version__}"


def every_option():
    """(command, argparse action) for every option of every command."""
    import argparse

    from pretext.cli.parser import build_parser

    commands = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    for name, parser in commands.choices.items():
        for action in parser._actions:
            if not isinstance(action, argparse._HelpAction):
                yield name, action


def test_help_shows_every_options_default_and_choices(capsys):
    import argparse

    for command, action in every_option():
        text = action.help or ""
        switch = isinstance(action, argparse._StoreTrueAction)
        if action.option_strings and not switch and not action.required:
            assert "default" in text, (command, action.option_strings)
        assert text, (command, action.dest)  # positionals and switches say what they are
    assert main(["finetune", "--help"]) == 0
    shown = capsys.readouterr().out
    assert "{seed,default}" in shown and "seed-none" in shown  # --recipe, --augment choices


def test_a_name_outside_the_choices_is_refused_by_the_parser(capsys):
    assert main(["pretrain", "--optimizer", "adagrad"]) == 2
    assert "invalid choice: 'adagrad'" in capsys.readouterr().err


def test_run_with_semi_adds_both_semi_arms_and_keeps_the_full_fine_tunes_pictures(
    tiny_data, tmp_path, monkeypatch
):
    import pretext.commands.finetune as finetune_module

    out = tmp_path / "run"
    options = ["--data-dir", str(tiny_data), "--out", str(out), "--threads", "1", "--epochs", "1"]
    options += ["--batch-size", "16", "--few-labels", "20", "--few-label-seeds", "2"]
    options += ["--finetune-epochs", "1", "--min-steps", "4", "--semi", "--semi-epochs", "1"]
    drawn, original = [], finetune_module.draw_classifier_pictures
    monkeypatch.setattr(
        finetune_module, "draw_classifier_pictures", lambda *a: drawn.append(1) or original(*a)
    )
    assert main(["run", *options]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    for key, scratch in (("semi", False), ("semi_scratch", True)):
        assert metrics[key]["labels"] == 20 and metrics[key]["from_scratch"] is scratch
        assert metrics[key]["semi"]["epochs"] == 1 and 0 <= metrics[key]["test_accuracy"] <= 1
    assert drawn == [1]  # the full-label fine-tune's confusion and mistakes only
    page = (out / "report.html").read_text()
    assert "20 labels, semi-supervised from the pretrained encoder: test accuracy" in page
    assert "20 labels, semi-supervised from random weights: test accuracy" in page
