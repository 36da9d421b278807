"""Data pipeline speed: NTU `.skeleton` parsing, `prepare`, random access to a prepared split, prepare's peak memory.

Usage: python benchmarks/data_speed.py [--files 300] [--large-factor 4] [--reads 20000] [--folder DIR]

Generates synthetic NTU `.skeleton` files of typical length (80-120 frames; one body, two
for interactions), then logs:

* parsing rate of `read_ntu_skeleton` (files/s, one process);
* `prepare_dataset("ntu60", ..., benchmark="xsub")` rate (files/s) with 1 and 2 workers;
* random-access read rate of the prepared train split through `SkeletonDataset` with
  resampling to 64 frames (clips/s, warm page cache);
* peak RSS of a fresh process running `prepare` (2 workers) on the dataset and on one
  `--large-factor` times bigger: the writer's and the largest worker's, and the writer's
  growth over its RSS after imports. It should not grow with the dataset size.
"""

import argparse
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _common import setup_logging

from usdrl.data import read_ntu_skeleton
from usdrl.data.prepared import SkeletonDataset, prepare_dataset
from usdrl.data.synthetic import SyntheticActions
from usdrl.data.synthetic_files import write_synthetic_ntu

logger = logging.getLogger("data_speed")

# Run in a fresh interpreter: RSS after imports, then prepare, then the peaks (KiB). The writer's peak is
# read from /proc (VmHWM): its ru_maxrss would include the RSS of the process that launched it (Linux keeps
# ru_maxrss across fork and exec). The workers are forked from it, so their ru_maxrss is their own.
_RSS_PROBE = """
import json, resource, sys
from usdrl.data.prepared import prepare_dataset
def status(key):
    return next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith(key + ":"))
baseline = status("VmRSS")
prepare_dataset("ntu60", sys.argv[1], sys.argv[2], benchmark="xsub", workers=2, show_progress_bar=False)
print(json.dumps({"baseline": baseline, "writer": status("VmHWM"),
                  "workers": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}))
"""


def subset(files: list[Path], folder: Path) -> Path:
    """A folder holding links to ``files``."""
    folder.mkdir()
    for path in files:
        os.link(path, folder / path.name)
    return folder


def prepared_count(out: Path) -> int:
    manifest = json.loads((out / "manifest.json").read_text())
    return sum(split["count"] for split in manifest["splits"].values())


def folder_mb(folder: Path) -> float:
    return sum(p.stat().st_blocks * 512 for p in folder.rglob("*") if p.is_file()) / 2**20


def parse_rate(files: list[Path]) -> float:
    start = time.perf_counter()
    for path in files:
        read_ntu_skeleton(path)
    return len(files) / (time.perf_counter() - start)


def prepare_rate(raw: Path, out: Path, workers: int) -> float:
    start = time.perf_counter()
    prepare_dataset("ntu60", raw, out, benchmark="xsub", workers=workers, overwrite=True, show_progress_bar=False)
    return prepared_count(out) / (time.perf_counter() - start)


def read_rate(out: Path, reads: int) -> float:
    dataset = SkeletonDataset(out, "train", sampling="resample", num_frames=64)
    order = np.random.default_rng(0).integers(0, len(dataset), reads)
    for i in order[:100]:  # warm-up
        dataset[i]
    start = time.perf_counter()
    for i in order:
        dataset[i]
    return reads / (time.perf_counter() - start)


def peak_rss(raw: Path, out: Path) -> dict:
    result = subprocess.run([sys.executable, "-c", _RSS_PROBE, str(raw), str(out)], capture_output=True, text=True,
                            check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=300, help="clips of the main dataset")
    parser.add_argument("--large-factor", type=int, default=4, help="size of the second dataset for the RSS test")
    parser.add_argument("--reads", type=int, default=20000, help="random reads timed")
    parser.add_argument("--folder", help="work folder (default: a temporary folder, deleted at the end)")
    args = parser.parse_args()
    setup_logging()
    logging.getLogger("usdrl").setLevel(logging.WARNING)

    work = Path(args.folder or tempfile.mkdtemp(prefix="usdrl-data-speed-"))
    try:
        start = time.perf_counter()
        generator = SyntheticActions(num_frames_range=(80, 120))
        large = write_synthetic_ntu(work / "raw_large", args.files * args.large_factor, seed=0, generator=generator)
        small = subset(large[: args.files], work / "raw_small")
        frames = [read_ntu_skeleton(p).num_frames for p in large[: args.files]]
        logger.info("generated %d .skeleton files (%d-%d frames, mean %.0f) in %.1f s; %d cpus", len(large),
                    min(frames), max(frames), np.mean(frames), time.perf_counter() - start, os.cpu_count())

        logger.info("parse  read_ntu_skeleton: %7.0f files/s (1 process)", parse_rate(large[: args.files]))
        out = work / "prepared"
        for workers in (1, 2):
            logger.info("prepare ntu60 xsub:      %7.0f files/s (%d worker%s)", prepare_rate(small, out, workers),
                        workers, "s" if workers > 1 else "")
        logger.info("read   SkeletonDataset:  %7.0f clips/s (random access, resample to 64 frames)",
                    read_rate(out, args.reads))
        for raw in (small, work / "raw_large"):
            target = work / f"rss_{raw.name}"
            rss = peak_rss(raw, target)
            logger.info("peak RSS, prepare of %5d files (output %6.1f MB): writer %6.1f MB (%+5.1f MB over %.1f MB "
                        "after imports), largest worker %6.1f MB", prepared_count(target), folder_mb(target),
                        rss["writer"] / 1024, (rss["writer"] - rss["baseline"]) / 1024, rss["baseline"] / 1024,
                        rss["workers"] / 1024)
    finally:
        if not args.folder:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
