"""The command line as a newcomer meets it: logging options anywhere, errors naming the option to change,
and a whole workflow from synthetic raw files with no Python."""

import argparse
import logging
import pickle

import pytest
import torch

from usdrl import USDRL, USDRLConfig
from usdrl.cli import build_parser, command_line_message, main
from usdrl.errors import ConfigError, InputError
from usdrl.hub import NTU25_MODEL


def subcommands() -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def required_arguments(parser: argparse.ArgumentParser) -> list[str]:
    """A minimal argv for ``parser``: every positional and required option, with a valid value."""
    argv = []
    for action in parser._actions:
        if action.option_strings and not action.required:
            continue
        value = str(action.choices[0] if isinstance(action.choices, list) else next(iter(action.choices))) \
            if action.choices else "1"
        values = [value] * (1 if action.nargs in (None, "+") else 0)
        argv += ([action.option_strings[0]] if action.option_strings else []) + values
    return argv


@pytest.mark.parametrize("name", sorted(subcommands()))
def test_every_subcommand_takes_the_logging_options_after_its_name(name):
    parser = build_parser()
    argv = [name, *required_arguments(subcommands()[name])]
    quiet = parser.parse_args(argv)
    assert (quiet.verbose, quiet.debug) == (False, False)
    after = parser.parse_args(argv + ["-v", "--debug"])
    assert (after.verbose, after.debug) == (True, True)
    before = parser.parse_args(["--verbose", "--debug", *argv])
    assert (before.verbose, before.debug) == (True, True)  # the subcommand's defaults do not undo them


def test_the_logging_option_after_the_subcommand_sets_the_level(monkeypatch):
    levels = []
    monkeypatch.setattr(logging, "basicConfig", lambda **kwargs: levels.append(kwargs["level"]))
    assert main(["info", "-v"]) == 0
    assert main(["info", "--debug"]) == 0
    assert levels == [logging.INFO, logging.DEBUG]


def test_keywords_become_the_subcommand_options():
    pretrain, detect = subcommands()["pretrain"], subcommands()["detect"]
    error = InputError("200 clips are fewer than one batch of 256: use a batch_size of at most 200",
                       keywords=("batch_size",))
    assert str(error).endswith("use a batch_size of at most 200")  # Python callers read the keyword
    assert command_line_message(error, pretrain).endswith("use a --batch-size of at most 200")
    assert command_line_message(ConfigError("x exists; pass overwrite=True to replace it", keywords=("overwrite",)),
                                subcommands()["prepare"]) == "x exists; pass --overwrite to replace it"
    # other names and undeclared keywords stay; the subcommand's own aliases win
    text = "max_batch_size and config.batch_size and batch_size( stay; window_stride and epochs"
    error = ConfigError(text, keywords=("batch_size", "window_stride", "epochs"))
    assert command_line_message(error, detect) == \
        "max_batch_size and config.batch_size and batch_size( stay; --stride and --train-epochs"
    assert command_line_message(ConfigError("no lr here", keywords=("lr",)), subcommands()["knn"]) == "no lr here"
    assert command_line_message(ConfigError("train one with linear_probe", keywords=("linear_probe",)),
                                subcommands()["ensemble"]) == "train one with usdrl linear-probe"


@pytest.fixture(scope="module")
def workflow(tmp_path_factory):
    """``usdrl synth ntu`` -> ``usdrl prepare ntu60`` -> ``usdrl pretrain`` (tiny), all through ``main``."""
    root = tmp_path_factory.mktemp("workflow")
    assert main(["synth", "ntu", str(root / "raw"), "--clips", "40", "--seed", "1"]) == 0
    assert main(["prepare", "ntu60", str(root / "raw"), str(root / "prepared"), "--benchmark", "xsub",
                 "--workers", "1"]) == 0
    assert main(["pretrain", "--data", str(root / "prepared"), "--out", str(root / "run"), "--preset", "tiny",
                 "--epochs", "1", "--batch-size", "8"]) == 0
    return root


def test_the_cli_workflow_runs_from_synthetic_raw_files(workflow, capsys):
    capsys.readouterr()
    model = str(workflow / "run" / "model")
    assert main(["knn", model, "--data", str(workflow / "prepared"), "--json"]) == 0
    assert '"accuracy"' in capsys.readouterr().out
    assert main(["linear-probe", model, "--data", str(workflow / "prepared"), "--epochs", "2",
                 "--out", str(workflow / "probed")]) == 0
    assert main(["ensemble", str(workflow / "probed"), "--data", str(workflow / "prepared")]) == 0
    assert capsys.readouterr().out.splitlines()[-1].startswith("ensemble ")


def test_cli_errors_name_the_option_to_change(workflow, tmp_path, capsys):
    prepared = workflow / "prepared"
    clips = len(__import__("json").loads((prepared / "train" / "names.json").read_text()))
    capsys.readouterr()
    assert main(["pretrain", "--data", str(prepared), "--out", str(tmp_path / "run"), "--preset", "tiny"]) == 1
    assert capsys.readouterr().err == (f"usdrl pretrain: error: {clips} clips are fewer than one batch of 256: "
                                       f"use a --batch-size of at most {clips}\n")
    assert main(["pretrain", "--data", str(prepared), "--out", str(workflow / "run"), "--preset", "tiny",
                 "--epochs", "1", "--batch-size", "8"]) == 1
    assert "pass --resume to continue it" in capsys.readouterr().err
    torch.manual_seed(0)
    USDRL(USDRLConfig.from_preset("tiny")).save_pretrained(tmp_path / "headless")
    assert main(["ensemble", str(tmp_path / "headless"), "--data", str(prepared)]) == 1
    assert "train one with usdrl linear-probe or usdrl finetune" in capsys.readouterr().err
    assert main(["prepare", "ntu60", str(workflow / "raw"), str(prepared), "--benchmark", "xsub"]) == 1
    assert "pass --overwrite to replace it" in capsys.readouterr().err


def test_detect_errors_name_the_option_and_the_python_error_its_keyword(tmp_path, capsys):
    assert main(["synth", "pkummd1", str(tmp_path / "raw"), "--sequences", "3"]) == 0
    assert main(["prepare", "pkummd1", str(tmp_path / "raw"), str(tmp_path / "prepared"), "--benchmark", "xsub",
                 "--workers", "1"]) == 0
    capsys.readouterr()
    argv = ["detect", NTU25_MODEL, "--data", str(tmp_path / "prepared"), "--out", str(tmp_path / "out"),
            "--stride", "999", "--train-epochs", "1"]
    assert main(argv) == 1
    assert "error: --stride must be in 1..num_frames=64" in capsys.readouterr().err
    from usdrl.data.prepared import SkeletonDataset

    with pytest.raises(ConfigError, match="window_stride must be in"):
        SkeletonDataset(tmp_path / "prepared", "train_untrimmed", sampling="windows", window_stride=999)


@pytest.mark.parametrize("fmt, count, source, benchmark", [
    ("uav", ["--clips", "30"], "uav", "csv1"),
    ("ntu2d", ["--clips", "30"], "ntu2d", "xsub"),
    ("pkummd2", ["--sequences", "3"], "pkummd2", "xview"),
])
def test_synth_writes_each_raw_format_that_prepare_reads(tmp_path, capsys, fmt, count, source, benchmark):
    out = tmp_path / ("raw.pkl" if fmt == "ntu2d" else "raw")
    assert main(["synth", fmt, str(out), *count, "--seed", "3"]) == 0
    assert f"usdrl prepare {source} {out}" in capsys.readouterr().out
    if fmt == "ntu2d":
        with open(out, "rb") as f:
            assert len(pickle.load(f)["annotations"]) <= 30
    assert main(["prepare", source, str(out), str(tmp_path / "prepared"), "--benchmark", benchmark,
                 "--workers", "1"]) == 0
    assert f"wrote {tmp_path / 'prepared'} ({source} {benchmark}" in capsys.readouterr().out


def test_synth_refuses_the_wrong_count(tmp_path, capsys):
    assert main(["synth", "ntu", str(tmp_path), "--sequences", "3"]) == 1
    assert "ntu holds clips: give --clips N (and not --sequences)" in capsys.readouterr().err
    assert main(["synth", "pkummd1", str(tmp_path)]) == 1
    assert "give --sequences N" in capsys.readouterr().err
    assert main(["synth", "uav", str(tmp_path), "--clips", "0"]) == 1
    assert "--clips/--sequences must be >= 1, got 0" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("argv, expected", [
    (["knn", NTU25_MODEL, "-k", "0"], "-k must be in 1.."),
    (["linear-probe", NTU25_MODEL, "--epochs", "0"], "--epochs must be >= 1, got 0"),
    (["finetune", NTU25_MODEL, "--fraction", "0"], "--fraction must be in (0, 1], got 0.0"),
    (["early-prediction", NTU25_MODEL, "--ratio", "1.5"], "--ratio must be in (0, 1]"),
])
def test_option_errors_name_the_option(workflow, capsys, argv, expected):
    assert main([*argv, "--data", str(workflow / "prepared")]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"usdrl {argv[0]}: error: {expected}") and err.count("\n") == 1, err


def test_encode_refuses_a_batch_size_below_one(workflow, tmp_path, capsys):
    argv = ["encode", NTU25_MODEL, str(workflow / "prepared"), str(tmp_path / "x.npy"), "--split", "test"]
    assert main([*argv, "--batch-size", "0"]) == 1
    assert capsys.readouterr().err == "usdrl encode: error: --batch-size must be >= 1, got 0\n"
