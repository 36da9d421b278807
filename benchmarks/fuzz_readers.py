"""Fuzz the readers of untrusted files with mutated inputs and count what comes out.

Usage: python benchmarks/fuzz_readers.py [--seconds 10] [--seed 0] [--only ntu,uav,...]

Targets: the NTU ``.skeleton``, UAV-Human ``.txt``, PKU-MMD skeleton and label readers, pyskl
pickles (``load_pyskl`` then ``annotation_to_clip`` on each annotation), ``config.json``
(``USDRLConfig.from_json_file``), ``model.safetensors`` (``load_weights_file``), whole model
folders (``USDRL.from_pretrained``) and reference ``.pth.tar`` checkpoints
(``load_reference_checkpoint``). Each target starts from a valid file written by the library
and applies 1-3 random mutations per input: byte flips, truncation, deleted or duplicated
ranges, a count turned huge, a line repeated thousands of times, a line of thousands of
numbers, a bad token (``1_0``, ``nan``, ``0x1F``...), and for JSON a field set to a value of
the wrong type.

Printed per target: inputs tried, outcomes by exception type (``ok`` when the reader
returned), raw exceptions (anything outside the ``usdrl.errors`` family: must be 0, each one
printed), the peak Python/numpy allocation per input byte (``tracemalloc``: max and median
over the inputs of at least 4 KiB, with the input size at the max) and the largest peak of
any input in MiB with that input's size. Inputs are cut to 8 MiB. torch's own allocations
are not traced, so the model targets show numpy/Python only. Exit status 1 if any raw exception.
"""

import argparse
import collections
import io
import json
import logging
import os
import pickle
import sys
import tempfile
import time
import traceback
import tracemalloc
from pathlib import Path

import numpy as np
import torch

from usdrl import USDRL, USDRLConfig
from usdrl.convert import load_reference_checkpoint
from usdrl.data import (
    annotation_to_clip,
    load_pyskl,
    read_ntu_skeleton,
    read_pkummd_labels,
    read_pkummd_skeleton,
    read_uav_skeleton,
    write_ntu_skeleton,
    write_pkummd_labels,
    write_pkummd_skeleton,
    write_uav_skeleton,
)
from usdrl.data.pkummd import ActionInstance
from usdrl.data.synthetic import SyntheticActions
from usdrl.data.synthetic_files import write_synthetic_ntu2d
from usdrl.errors import USDRLError
from usdrl.hub import load_weights_file

#: Inputs smaller than this count for the absolute peak only: a fixed cost dominates their ratio.
MIN_RATIO_BYTES = 4096
#: Mutated inputs are cut to this size (a line repeated thousands of times can reach 100 MB).
MAX_INPUT_BYTES = 8 << 20
BAD_TOKENS = [b"1_0", b"0.2_15", b"nan", b"inf", b"-inf", b"1e999", b"0x1F", b"--1", b"+", b"E5", b"1.2.3",
              b"\xd9\xa1", b"99999999999999999999999", b"\x00", b"\t", b"\r"]
BAD_JSON_VALUES = ["false", "true", "null", "0", "-1", "1e308", "1.5", "99", "\"x\"", "\"false\"", "[]", "[1, 2]",
                   "{}", "Infinity", "NaN", "1000000000", "\"ntu25\""]


# --------------------------------------------------------------------------------------
# Mutations
# --------------------------------------------------------------------------------------


def mutate_bytes(data: bytes, rng: np.random.Generator, text: bool) -> bytes:
    """``data`` after 1-3 random edits (text edits only when ``text``)."""
    kinds = ["flip", "truncate", "delete", "duplicate"]
    if text:
        kinds += ["token", "huge_count", "repeat_line", "long_line"]
    for _ in range(int(rng.integers(1, 4))):
        kind = kinds[int(rng.integers(len(kinds)))]
        size = len(data)
        at = int(rng.integers(size + 1))
        if kind == "flip" and size:
            pos = int(rng.integers(size))
            byte = rng.choice([ord(c) for c in "0123456789.-+ e_\n"] + [int(rng.integers(256))])
            data = data[:pos] + bytes([byte]) + data[pos + 1:]
        elif kind == "truncate":
            data = data[:at]
        elif kind == "delete":
            data = data[:at] + data[at + int(rng.integers(1, 200)):]
        elif kind == "duplicate":
            chunk = data[at:at + int(rng.integers(1, 400))]
            where = int(rng.integers(size + 1))
            data = data[:where] + chunk * int(rng.integers(1, 20)) + data[where:]
        else:
            lines = data.split(b"\n")
            i = int(rng.integers(len(lines)))
            if kind == "token":
                tokens = lines[i].split(b" ")
                tokens[int(rng.integers(len(tokens)))] = BAD_TOKENS[int(rng.integers(len(BAD_TOKENS)))]
                lines[i] = b" ".join(tokens)
            elif kind == "huge_count":
                counts = [k for k, line in enumerate(lines) if line.strip().isdigit()] or [i]
                k = counts[int(rng.integers(len(counts)))]
                lines[k] = str(10 ** int(rng.integers(1, 19))).encode()
            elif kind == "repeat_line":
                lines[i:i + 1] = [lines[i]] * int(rng.integers(2, 5000))
            else:  # long_line
                lines.insert(i, b" ".join([b"0.5"] * int(rng.integers(13, 20000))))
            data = b"\n".join(lines)
    return data


def mutate_json(data: bytes, rng: np.random.Generator) -> bytes:
    """A config.json with a field set to a value of another type (or bytes flipped)."""
    if rng.random() < 0.3:
        return mutate_bytes(data, rng, text=False)
    text = data.decode()
    config = json.loads(text)
    for _ in range(int(rng.integers(1, 3))):
        key = sorted(config)[int(rng.integers(len(config)))]
        config[key] = f"@{key}@"
    out = json.dumps(config)
    for key in config:
        out = out.replace(f'"@{key}@"', BAD_JSON_VALUES[int(rng.integers(len(BAD_JSON_VALUES)))])
    return out.encode()


# --------------------------------------------------------------------------------------
# Targets: (file name, valid seed bytes, mutation, reader)
# --------------------------------------------------------------------------------------


def _file_bytes(write, name: str, folder: Path) -> bytes:
    path = folder / name
    write(path)
    return path.read_bytes()


def _read_pyskl(path: Path) -> None:
    for ann in load_pyskl(path)["annotations"]:
        annotation_to_clip(ann)


def _reference_checkpoint(folder: Path) -> bytes:
    tests = Path(__file__).resolve().parent.parent / "tests"
    sys.path.insert(0, str(tests))  # the literal reference modules live with the tests
    from reference_impl import LiteralDownstream, LiteralDSTE

    torch.manual_seed(0)
    backbone = LiteralDSTE(150, 48, 16, 1, 16, 50)
    state = LiteralDownstream(backbone, 16, 4).state_dict()
    buffer = io.BytesIO()
    torch.save({"epoch": 1, "state_dict": state}, buffer)
    return buffer.getvalue()


def build_targets(folder: Path) -> dict:
    rng = np.random.default_rng(0)
    ntu = rng.normal(size=(3, 12, 25, 2)).astype(np.float32)
    uav = rng.normal(size=(3, 12, 17, 2)).astype(np.float32)
    model_dir = folder / "model"
    USDRL(USDRLConfig.from_preset("tiny", hidden_size=32, num_frames=16, num_classes=3)).save_pretrained(model_dir)
    config, weights = (model_dir / "config.json").read_bytes(), (model_dir / "model.safetensors").read_bytes()

    def folder_with(name):
        def read(path):
            target = path.parent / "m"
            target.mkdir(exist_ok=True)
            (target / "config.json").write_bytes(config if name != "config.json" else path.read_bytes())
            (target / "model.safetensors").write_bytes(weights if name != "model.safetensors" else path.read_bytes())
            USDRL.from_pretrained(target)
        return read

    text = lambda data, r: mutate_bytes(data, r, text=True)  # noqa: E731
    binary = lambda data, r: mutate_bytes(data, r, text=False)  # noqa: E731
    return {
        "ntu": ("S001C001P001R001A001.skeleton",
                _file_bytes(lambda p: write_ntu_skeleton(p, ntu), "seed.skeleton", folder), text, read_ntu_skeleton),
        "uav": ("P070S01G10B00H10UC102000LC092000A031R0_09131758.txt",
                _file_bytes(lambda p: write_uav_skeleton(p, uav), "seed.txt", folder), text, read_uav_skeleton),
        "pkummd": ("0002-L.txt", _file_bytes(lambda p: write_pkummd_skeleton(p, ntu), "seed.txt", folder), text,
                   read_pkummd_skeleton),
        "pkummd-labels": ("0002-L.txt", _file_bytes(
            lambda p: write_pkummd_labels(p, [ActionInstance(3, 10, 40, 1), ActionInstance(7, 50, 90, 2)]),
            "labels.txt", folder), text, read_pkummd_labels),
        "pyskl": ("ntu60_hrnet.pkl", _file_bytes(
            lambda p: write_synthetic_ntu2d(p, 3, seed=1, generator=SyntheticActions(num_frames_range=(8, 12))),
            "seed.pkl", folder), binary, _read_pyskl),
        "config.json": ("config.json", config, mutate_json, folder_with("config.json")),
        "safetensors": ("model.safetensors", weights, binary, load_weights_file),
        "model-folder": ("model.safetensors", weights, binary, folder_with("model.safetensors")),
        "convert": ("ref.pth.tar", _reference_checkpoint(folder), binary, load_reference_checkpoint),
    }


# --------------------------------------------------------------------------------------
# The loop
# --------------------------------------------------------------------------------------


def fuzz(name: str, target, seconds: float, seed: int, folder: Path) -> dict:
    file_name, seed_bytes, mutate, reader = target
    rng = np.random.default_rng(seed)
    outcomes: collections.Counter = collections.Counter()
    raw = []
    ratios = []
    worst, largest = (0.0, 0), (0, 0)
    path = folder / name / file_name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(seed_bytes)
    reader(path)  # warm up: first-call imports are not the input's doing
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        data = mutate(seed_bytes, rng)[:MAX_INPUT_BYTES]
        path.write_bytes(data)
        tracemalloc.start()
        try:
            reader(path)
            outcomes["ok"] += 1
        except USDRLError as exc:
            outcomes[type(exc).__name__] += 1
        except Exception as exc:  # noqa: BLE001 - a raw exception is what the fuzzer looks for
            outcomes[f"raw {type(exc).__name__}"] += 1
            raw.append((data, traceback.format_exc()))
        finally:
            peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
        largest = max(largest, (peak, len(data)))
        if len(data) >= MIN_RATIO_BYTES:
            ratio = peak / len(data)
            ratios.append(ratio)
            worst = max(worst, (ratio, len(data)))
    for data, trace in raw[:3]:
        print(f"--- raw exception in {name} on {len(data)} bytes:\n{trace}")
    return {"inputs": sum(outcomes.values()), "outcomes": dict(outcomes.most_common()), "raw": len(raw),
            "peak_per_byte_max": round(worst[0], 1), "input_bytes_at_max": worst[1],
            "peak_per_byte_median": round(float(np.median(ratios)), 1) if ratios else None,
            "peak_mib_max": round(largest[0] / 2**20, 2), "input_bytes_at_peak": largest[1]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="per target (default 10)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--only", help="comma-separated targets (default: all)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)  # the readers' warnings on mutated files are expected
    torch.set_num_threads(1)
    total_raw = 0
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        targets = build_targets(folder)
        for name in (args.only.split(",") if args.only else targets):
            result = fuzz(name, targets[name], args.seconds, args.seed, folder)
            total_raw += result["raw"]
            print(json.dumps({"target": name, **result}), flush=True)
    print(f"raw exceptions in all: {total_raw} (pid {os.getpid()}, python {sys.version.split()[0]}, "
          f"torch {torch.__version__}, pickle protocol {pickle.DEFAULT_PROTOCOL})")
    return 1 if total_raw else 0


if __name__ == "__main__":
    sys.exit(main())
