"""Pretraining runs that survive their own files being damaged: verified checkpoints with
fallback, a torn metrics line, changed settings on resume, a full disk, and real SIGKILLs."""

import errno
import hashlib
import io
import json
import logging
import re
import shutil
import signal
import struct
import subprocess
import sys
import zipfile

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from test_train_pretrain import metrics
from test_train_pretrain import run as pretrain_run

from usdrl._checkpoint import CheckpointWriteError, load_checkpoint
from usdrl.cli import main
from usdrl.data.synthetic import make_clips
from usdrl.errors import CheckpointError, ConfigError, DataFormatError


@pytest.fixture(scope="module")
def clips():
    synthetic = make_clips(24, seed=0)
    return synthetic.data, synthetic.lengths


def run(clips, run_dir, **options):
    """A pretraining run as in test_train_pretrain (2 epochs, a checkpoint each); returns the encoder."""
    return pretrain_run(clips, run_dir, **options)[1]


@pytest.fixture(scope="module")
def straight(clips, tmp_path_factory):
    """An uninterrupted 3-epoch run: ``(run folder, trained encoder)``."""
    run_dir = tmp_path_factory.mktemp("straight") / "run"
    return run_dir, run(clips, run_dir, epochs=3)


@pytest.fixture(scope="module")
def two_epochs(clips, tmp_path_factory):
    """A 2-epoch run (checkpoints 1 and 2) to copy and damage."""
    run_dir = tmp_path_factory.mktemp("two") / "run"
    run(clips, run_dir)
    return run_dir


@pytest.fixture
def copy(two_epochs, tmp_path):
    return shutil.copytree(two_epochs, tmp_path / "run")


def assert_same_run(run_dir, model, straight):
    """The same losses and bitwise the same weights as the uninterrupted run."""
    assert [m["loss"] for m in metrics(run_dir)] == [m["loss"] for m in metrics(straight[0])]
    for (name, a), b in zip(straight[1].state_dict().items(), model.state_dict().values(), strict=True):
        assert torch.equal(a, b), name


# ---- verified checkpoints ---------------------------------------------------------------

def test_each_checkpoint_has_its_sha256_beside_it_in_sha256sum_format(two_epochs):
    for name in ("checkpoint_0001.pt", "checkpoint_0002.pt"):
        digest = hashlib.sha256((two_epochs / name).read_bytes()).hexdigest()
        assert (two_epochs / f"{name}.sha256").read_text() == f"{digest}  {name}\n"
    if shutil.which("sha256sum"):
        subprocess.run(["sha256sum", "--check", "--quiet", "checkpoint_0001.pt.sha256", "checkpoint_0002.pt.sha256"],
                       cwd=two_epochs, check=True)


def flip_a_weight_byte(data: bytes) -> bytes:
    """Flip one bit in the middle of the largest tensor's bytes (stored uncompressed), so that it still unpickles."""
    archive = zipfile.ZipFile(io.BytesIO(data))
    entry = max((info for info in archive.infolist() if "/data/" in info.filename), key=lambda info: info.file_size)
    name_length, extra_length = struct.unpack("<HH", data[entry.header_offset + 26: entry.header_offset + 30])
    start = entry.header_offset + 30 + name_length + extra_length
    flipped = bytearray(data)
    flipped[start + entry.file_size // 2] ^= 0x10
    return bytes(flipped)


def tensors(state):
    """Every tensor of a checkpoint state, in order."""
    if isinstance(state, torch.Tensor):
        return [state]
    values = state.values() if isinstance(state, dict) else state if isinstance(state, list | tuple) else []
    return [tensor for value in values for tensor in tensors(value)]


DAMAGE = {
    "truncated": lambda data: data[: len(data) // 2],
    "empty": lambda data: b"",
    "garbage": lambda data: np.random.default_rng(0).bytes(len(data)),
    "bit-flipped": flip_a_weight_byte,
}


@pytest.mark.parametrize("damage", DAMAGE)
def test_a_damaged_latest_checkpoint_falls_back_to_the_newest_intact_one(damage, clips, two_epochs, copy, straight,
                                                                         caplog):
    latest = copy / "checkpoint_0002.pt"
    latest.write_bytes(DAMAGE[damage](latest.read_bytes()))
    if damage == "bit-flipped":  # unpickled unverified, the damage would go unnoticed
        intact = torch.load(two_epochs / latest.name, weights_only=True)
        flipped = torch.load(latest, weights_only=True)
        pairs = list(zip(tensors(intact), tensors(flipped), strict=True))
        assert flipped["epoch"] == 2 and sum(not torch.equal(a, b) for a, b in pairs) == 1
    with caplog.at_level(logging.WARNING, logger="usdrl"):
        model = run(clips, copy, epochs=3, resume=True)
    assert "checkpoint_0002.pt" in caplog.text and "resuming from checkpoint_0001.pt" in caplog.text
    assert_same_run(copy, model, straight)
    load_checkpoint(latest)  # rewritten by the resumed run, and verified


def test_no_intact_checkpoint_is_one_clear_error(clips, copy):
    (copy / "checkpoint_0001.pt").write_bytes(b"")
    (copy / "checkpoint_0002.pt.sha256").write_text("0" * 64 + "  checkpoint_0002.pt\n")
    with pytest.raises(CheckpointError, match=r"no intact checkpoint in .*checkpoint_0002.pt is damaged: its "
                                              r"SHA-256 is [0-9a-f]{16}\.\.\., checkpoint_0002.pt.sha256 says "
                                              r"0000000000000000.*checkpoint_0001.pt is damaged"):
        run(clips, copy, epochs=3, resume=True)


def test_a_malformed_checksum_file_is_named(copy):
    (copy / "checkpoint_0002.pt.sha256").write_text("not a checksum\n")
    with pytest.raises(CheckpointError, match=r"checkpoint_0002.pt.sha256: expected '<64 hex digits>  "
                                              r"checkpoint_0002.pt', got \['not', 'a'\]"):
        load_checkpoint(copy / "checkpoint_0002.pt")


def test_a_checkpoint_from_before_checksums_loads_with_a_warning(copy, caplog):
    (copy / "checkpoint_0002.pt.sha256").unlink()
    with caplog.at_level(logging.WARNING, logger="usdrl"):
        assert load_checkpoint(copy / "checkpoint_0002.pt")["epoch"] == 2
    assert "no checksum file checkpoint_0002.pt.sha256: loading it unverified" in caplog.text


# ---- the metrics log -------------------------------------------------------------------

def test_a_torn_last_metrics_line_is_dropped_on_resume(clips, copy, straight, caplog):
    with open(copy / "metrics.jsonl", "a") as f:
        f.write('{"epoch": 2, "step": 7, "lr": 0.0005, "lo')  # what a kill mid-write leaves
    with caplog.at_level(logging.WARNING, logger="usdrl"):
        model = run(clips, copy, epochs=3, resume=True)
    assert "metrics.jsonl, line 7: dropping a torn last line" in caplog.text
    assert_same_run(copy, model, straight)


def test_a_damaged_metrics_line_in_the_middle_is_an_error_naming_it(clips, copy):
    lines = (copy / "metrics.jsonl").read_text().splitlines()
    lines[2] = lines[2][:20]
    (copy / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    with pytest.raises(DataFormatError, match=r"metrics.jsonl, line 3: not valid JSON .*only the last line"):
        run(clips, copy, epochs=3, resume=True)
    lines[2] = "[1, 2]"
    (copy / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    with pytest.raises(DataFormatError, match=r"metrics.jsonl, line 3: expected a JSON object with an integer 'step'"):
        run(clips, copy, epochs=3, resume=True)


# ---- settings that change the trajectory -----------------------------------------------

def test_a_resume_with_changed_settings_is_refused_with_the_differences(clips, copy):
    with pytest.raises(ConfigError, match=r"lr: 0.0005 in the checkpoint, 0.001 now; seed: 0 in the checkpoint, "
                                          r"3 now\. .*allow_changed_config=True to continue"):
        run(clips, copy, epochs=3, resume=True, lr=1e-3, seed=3)
    with pytest.raises(ConfigError, match=r"augment.shear_range: 1.0 in the checkpoint, 0.3 now"):
        run(clips, copy, epochs=3, resume=True, augment={"shear_range": 0.3})
    with pytest.raises(ConfigError, match=r"num_clips: 24 in the checkpoint, 16 now"):
        run((clips[0][:16], clips[1][:16]), copy, epochs=3, resume=True)
    assert [m["step"] for m in metrics(copy)] == list(range(1, 7))  # nothing was touched


def test_changed_settings_are_accepted_with_the_flag_and_a_warning(clips, copy, caplog):
    with caplog.at_level(logging.WARNING, logger="usdrl"):
        run(clips, copy, epochs=3, resume=True, allow_changed_config=True, lr=1e-3, max_loss=1e5)
    assert "with changed settings (allowed): lr: 0.0005 in the checkpoint, 0.001 now" in caplog.text
    assert "max_loss" not in caplog.text  # the guard does not change the trajectory
    assert [m["lr"] for m in metrics(copy)] == [5e-4] * 6 + [1e-3] * 3


# ---- a full disk -----------------------------------------------------------------------

def test_a_full_disk_names_the_file_the_space_needed_and_keeps_the_earlier_checkpoints(clips, copy, monkeypatch):
    from usdrl import _checkpoint

    write = _checkpoint._Digest.write

    def disk_full_after_4_kib(self, data):
        if self.file is not None and self.size + len(data) > 4096:
            raise OSError(errno.ENOSPC, "No space left on device")
        return write(self, data)

    monkeypatch.setattr(_checkpoint._Digest, "write", disk_full_after_4_kib)
    before = {p.name: p.read_bytes() for p in copy.iterdir() if p.is_file()}
    with pytest.raises(CheckpointWriteError) as error:
        run(clips, copy, epochs=3, resume=True)
    message = str(error.value)
    assert error.value.errno == errno.ENOSPC and isinstance(error.value, OSError)
    assert f"no space left to write {copy / 'checkpoint_0003.pt'}" in message
    assert "the earlier checkpoints are untouched (newest: checkpoint_0002.pt)" in message
    after = {p.name: p.read_bytes() for p in copy.iterdir() if p.is_file() and p.name != "metrics.jsonl"}
    assert after == {name: data for name, data in before.items() if name != "metrics.jsonl"}  # no partial file
    # With space again, the same resume writes the checkpoint: it has the size the message gave.
    monkeypatch.undo()
    run(clips, copy, epochs=3, resume=True)
    size = (copy / "checkpoint_0003.pt").stat().st_size
    assert f"it needs {size / 2**20:.1f} MiB ({size:,} bytes)" in message


# ---- real SIGKILLs of `usdrl pretrain` -----------------------------------------------------

KILLED_RUN = """
import json, os, signal, sys
import torch
torch.set_num_threads(int(sys.argv[1]))
from usdrl.cli import main


def die():
    os.kill(os.getpid(), signal.SIGKILL)


where = sys.argv[2]
if where == "checkpoint":  # half of checkpoint_0002.pt written
    save = torch.save

    def half_save(state, file):
        if state["epoch"] == 2:
            save(state, file)
            file.file.truncate(file.file.tell() // 2)
            file.flush()
            die()
        save(state, file)
    torch.save = half_save
elif where == "metrics":  # in epoch 1, after checkpoint_0001 (step 3): half of the metrics line of step 5 written
    from usdrl.engine import TrainingRun
    log = TrainingRun.log

    def torn_log(self, record):
        if self.step == 5:
            line = json.dumps({"epoch": self.epoch, "step": self.step, **record}) + "\\n"
            with open(self.run_dir / "metrics.jsonl", "a") as f:
                f.write(line[: len(line) // 2])
            die()
        log(self, record)
    TrainingRun.log = torn_log
sys.exit(main(sys.argv[3:]))
"""


@pytest.fixture(scope="module")
def cli_run(tmp_path_factory):
    """The arguments of a 3-epoch `usdrl pretrain` on a small prepared dataset, and that run's folder."""
    from usdrl.data.synthetic_files import write_synthetic_ntu

    root = tmp_path_factory.mktemp("cli")
    write_synthetic_ntu(root / "raw", 30, seed=0)
    assert main(["prepare", "ntu60", str(root / "raw"), str(root / "prepared"), "--benchmark", "xsub",
                 "--workers", "1"]) == 0
    (root / "settings.json").write_text(json.dumps({"model": {"hidden_size": 32, "num_heads": 1}}))

    def args(run_dir):
        return ["pretrain", "--data", str(root / "prepared"), "--out", str(run_dir), "--config",
                str(root / "settings.json"), "--preset", "tiny", "--batch-size", "4", "--save-every", "1",
                "--epochs", "3"]

    assert main(args(root / "straight")) == 0
    return args, root / "straight"


@pytest.mark.parametrize("where", ["checkpoint", "metrics"])
def test_a_sigkilled_pretrain_resumes_to_bitwise_identical_weights(where, cli_run, tmp_path):
    args, straight = cli_run
    run_dir = tmp_path / "run"
    killed = subprocess.run([sys.executable, "-c", KILLED_RUN, str(torch.get_num_threads()), where, *args(run_dir)],
                            capture_output=True, text=True, timeout=300)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    left = sorted(p.name for p in run_dir.iterdir())
    assert {"checkpoint": any(re.fullmatch(r"\.checkpoint_0002\.pt\..*\.tmp", name) for name in left)
            and "checkpoint_0002.pt" not in left,
            "metrics": "checkpoint_0002.pt" not in left
            and not (run_dir / "metrics.jsonl").read_text().endswith("\n")}[where], left
    assert main([*args(run_dir), "--resume"]) == 0
    assert not [p for p in run_dir.iterdir() if p.name.endswith(".tmp")]
    assert (run_dir / "metrics.jsonl").read_text() == (straight / "metrics.jsonl").read_text()
    expected = load_file(straight / "model" / "model.safetensors")
    got = load_file(run_dir / "model" / "model.safetensors")
    assert expected.keys() == got.keys()
    for name, tensor in expected.items():
        assert torch.equal(tensor, got[name]), name


def test_the_cli_refuses_a_changed_lr_on_resume_unless_allowed(cli_run, tmp_path, capsys):
    args, straight = cli_run
    run_dir = shutil.copytree(straight, tmp_path / "run")
    assert main([*args(run_dir), "--epochs", "4", "--resume", "--lr", "0.001"]) == 1
    error = capsys.readouterr().err
    assert "lr: 0.0005 in the checkpoint, 0.001 now" in error and "pass --allow-changed-config to continue" in error
    assert main([*args(run_dir), "--epochs", "4", "--resume", "--lr", "0.001", "--allow-changed-config"]) == 0
    assert [m["lr"] for m in metrics(run_dir)][-1] == 0.001


def test_nan_in_the_stored_clips_is_named_not_blamed_on_the_learning_rate(clips, tmp_path):
    data, num_frames = clips
    damaged = tmp_path / "data.npy"
    np.save(damaged, data)
    stored = np.load(damaged, mmap_mode="r+")
    stored[5, 0, 3, 2, 0] = np.nan
    stored.flush()
    with pytest.raises(DataFormatError, match=r"data\.npy: samples \[5\] hold NaN or infinite values"):
        run((np.load(damaged, mmap_mode="r"), num_frames), tmp_path / "run", epochs=1)
