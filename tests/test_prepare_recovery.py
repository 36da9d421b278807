"""`usdrl prepare` killed with SIGKILL: a rerun repairs and cleans what the killed run left,
and never touches the folders of a run that is still going."""

import json
import signal
import subprocess
import sys
import time

import pytest

from usdrl import DataFormatError
from usdrl.cli import main
from usdrl.data.prepared import read_manifest
from usdrl.data.synthetic_files import write_synthetic_ntu

KILLED_PREPARE = """
import os, signal, sys, time
from pathlib import Path
from usdrl.cli import main
from usdrl.data import prepared

where, out = sys.argv[1], Path(sys.argv[2])
file_task = prepared.pool._SkeletonFileTask.run
calls = []
if where == "swap":  # after the old dataset was moved aside, before the new one is moved in
    rename = os.rename

    def rename_then_die(source, target):
        if Path(source).name.startswith(f".{out.name}.tmp-"):
            os.kill(os.getpid(), signal.SIGKILL)
        rename(source, target)
    os.rename = rename_then_die
elif where == "write":  # while parsing the fifth file
    def parse_then_die(self):
        calls.append(self.path)
        if len(calls) == 5:
            os.kill(os.getpid(), signal.SIGKILL)
        return file_task(self)
    prepared.pool._SkeletonFileTask.run = parse_then_die
elif where == "pause":  # at the first file, until the file `go` appears beside OUT
    def pause(self):
        if not calls:
            calls.append(self.path)
            (out.parent / "paused").touch()
            while not (out.parent / "go").exists():
                time.sleep(0.05)
        return file_task(self)
    prepared.pool._SkeletonFileTask.run = pause
sys.exit(main(["prepare", "ntu60", sys.argv[3], str(out), "--workers", "1", *sys.argv[4:]]))
"""


def start_prepare(where, raw, out, *options):
    return subprocess.Popen([sys.executable, "-c", KILLED_PREPARE, where, str(out), str(raw), *options],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def killed_prepare(where, raw, out, *options):
    process = start_prepare(where, raw, out, *options)
    _, stderr = process.communicate(timeout=300)
    assert process.returncode == -signal.SIGKILL, stderr[-3000:]


def hidden(out):
    """The hidden siblings of ``out``, by kind: ``{"tmp": [...], "old": [...]}``."""
    kinds = {"tmp": [], "old": [], "lock": []}
    for path in out.parent.glob(f".{out.name}.*"):
        kinds[path.name[len(out.name) + 2:].split("-")[0]].append(path)
    return kinds


@pytest.fixture(scope="module")
def raw(tmp_path_factory):
    raw = tmp_path_factory.mktemp("raw")
    write_synthetic_ntu(raw, 20, seed=1)
    return raw


def test_a_rerun_repairs_an_overwrite_killed_between_its_renames_and_cleans_up(raw, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["prepare", "ntu60", str(raw), str(out), "--benchmark", "xview", "--workers", "1"]) == 0
    before = {path.relative_to(out): path.read_bytes() for path in out.rglob("*") if path.is_file()}

    killed_prepare("write", raw, out, "--benchmark", "xsub", "--overwrite")
    partial = hidden(out)["tmp"]
    assert out.is_dir() and len(partial) == 1 and not (partial[0] / "manifest.json").exists()
    killed_prepare("swap", raw, out, "--benchmark", "xsub", "--overwrite")
    left = hidden(out)
    assert not partial[0].exists()  # deleted by the next run
    assert not out.exists()  # the old dataset moved aside, the complete new one not yet in place
    assert len(left["tmp"]) == 1 and len(left["old"]) == 1 and len(left["lock"]) == 1
    assert read_manifest(left["tmp"][0])["benchmark"] == "xsub"
    assert read_manifest(left["old"][0] / "out")["benchmark"] == "xview"
    # reading the dataset meanwhile says where the previous one is and how to get it back
    with pytest.raises(DataFormatError, match=rf"{out} does not exist: a killed `usdrl prepare --overwrite` left "
                                              rf"the previous dataset at {left['old'][0] / 'out'}; run the same"):
        read_manifest(out)

    # A rerun puts the old dataset back (the killed run never finished), so it exists again ...
    assert main(["prepare", "ntu60", str(raw), str(out), "--benchmark", "xsub", "--workers", "1"]) == 1
    assert "exists; pass --overwrite to replace it" in capsys.readouterr().err
    assert {path.relative_to(out): path.read_bytes() for path in out.rglob("*") if path.is_file()} == before
    assert hidden(out) == {"tmp": [], "old": [], "lock": []}
    # ... and with --overwrite replaces it.
    assert main(["prepare", "ntu60", str(raw), str(out), "--benchmark", "xsub", "--workers", "1", "--overwrite"]) == 0
    assert read_manifest(out)["benchmark"] == "xsub"
    assert hidden(out) == {"tmp": [], "old": [], "lock": []}


def test_a_second_prepare_leaves_a_running_one_alone(raw, tmp_path, capsys):
    out = tmp_path / "out"
    running = start_prepare("pause", raw, out, "--benchmark", "xsub")
    try:
        while not (tmp_path / "paused").exists():
            assert running.poll() is None, running.communicate()[1][-3000:]
            time.sleep(0.05)
        assert len(hidden(out)["tmp"]) == 1
        assert main(["prepare", "ntu60", str(raw), str(out), "--benchmark", "xview", "--workers", "1"]) == 1
        assert f"another prepare is writing {out}" in capsys.readouterr().err
        assert len(hidden(out)["tmp"]) == 1  # its folder is still there
    finally:
        (tmp_path / "go").touch()
        _, stderr = running.communicate(timeout=300)
    assert running.returncode == 0, stderr[-3000:]
    assert json.loads((out / "manifest.json").read_text())["benchmark"] == "xsub"
    assert hidden(out) == {"tmp": [], "old": [], "lock": []}
