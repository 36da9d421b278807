"""The command line as a whole: every subcommand documented, exit codes scripts can rely on."""

import argparse
import subprocess
import sys

import pytest

from usdrl.cli import build_parser, main

EXPECTED = {"demo", "encode", "info", "convert", "download", "export-onnx", "prepare", "pretrain", "linear-probe",
            "knn", "finetune", "ensemble", "early-prediction", "detect", "segment", "eval-detection", "synth",
            "detect-keypoints"}


def subcommands() -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def test_every_command_exists_and_documents_every_option(capsys):
    commands = subcommands()
    assert set(commands) == EXPECTED
    for name, parser in commands.items():
        with pytest.raises(SystemExit) as exit_info:
            main([name, "--help"])
        assert exit_info.value.code == 0
        text = capsys.readouterr().out
        assert text.startswith(f"usage: usdrl {name}")
        for action in parser._actions:
            assert action.help, f"usdrl {name}: option {action.option_strings or action.dest} has no help"
            for option in action.option_strings:
                assert option in text


def test_usage_errors_exit_2(capsys):
    for argv in (["no-such-command"], ["encode"], ["demo", "--clips", "many"]):
        with pytest.raises(SystemExit) as exit_info:
            main(argv)
        assert exit_info.value.code == 2
    assert "invalid int value" in capsys.readouterr().err


def test_errors_are_one_line_without_debug_and_a_traceback_with_it(tmp_path):
    argv = ["encode", str(tmp_path / "missing-model"), "x.npy", "y.npy"]
    run = [sys.executable, "-m", "usdrl.cli"]
    quiet = subprocess.run(run + argv, capture_output=True, text=True, timeout=120)
    assert quiet.returncode == 1
    assert quiet.stderr.count("\n") == 1 and quiet.stderr.startswith("usdrl encode: error: ")
    loud = subprocess.run(run + ["--debug"] + argv, capture_output=True, text=True, timeout=120)
    assert loud.returncode == 1 and "Traceback" in loud.stderr and "WeightsNotFoundError" in loud.stderr


def test_info_lists_the_embedded_model(capsys):
    assert main(["info"]) == 0
    assert "usdrl-synthetic-small" in capsys.readouterr().out
