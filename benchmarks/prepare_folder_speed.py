"""Own-data import speed: `usdrl prepare folder` on a folder of COCO-17 keypoint files, and keypoint conversion.

Usage: python benchmarks/prepare_folder_speed.py [--clips 10000] [--folder DIR]

Writes ``--clips`` COCO-17 2D clips as ``.npy`` files (30-60 frames, 1-3 persons, x, y in pixels and
a score; 10 class sub-folders), then logs:

* ``convert_keypoints`` rates (clips/s of ``(2, 64, V, C)`` arrays) for a few format pairs;
* ``prepare_folder`` (2D recipe, seeded split) on a quarter of the clips with 1 and 2 workers and
  on all of them with 2 workers, each in a fresh process: clips/s, and the writer's peak RSS
  over its RSS after imports, which should not grow with the number of clips.
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
from data_speed import folder_mb, prepared_count

from usdrl.keypoints import convert_keypoints, get_format

logger = logging.getLogger("prepare_folder_speed")

# Run in a fresh interpreter: RSS after imports, the timed prepare, then the writer's peak RSS (KiB).
_PROBE = """
import json, sys, time
from usdrl.data import prepare_folder
def status(key):
    return next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith(key + ":"))
baseline = status("VmRSS")
start = time.perf_counter()
prepare_folder(sys.argv[1], sys.argv[2], format="coco17", image_size=(1920, 1080), workers=int(sys.argv[3]),
               show_progress_bar=False)
print(json.dumps({"seconds": time.perf_counter() - start, "baseline": baseline, "writer": status("VmHWM")}))
"""


def write_clips(folder: Path, count: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    base = rng.uniform(0, 100, size=(17, 2))
    for k in range(count):
        frames, persons = int(rng.integers(30, 61)), int(rng.integers(1, 4))
        start = rng.uniform(200, 1500, size=(persons, 1, 1, 2))
        walk = np.cumsum(rng.normal(0, 2, size=(persons, frames, 1, 2)), axis=1)
        xy = base + start + walk + rng.normal(0, 1, size=(persons, frames, 17, 2))
        clip = np.concatenate([xy, rng.uniform(0.3, 1.0, size=(persons, frames, 17, 1))], axis=-1)
        target = folder / f"class{k % 10}"
        target.mkdir(parents=True, exist_ok=True)
        np.save(target / f"clip{k:05d}.npy", clip.astype(np.float32))


def subset(source: Path, folder: Path, count: int) -> Path:
    """Hard links to the first ``count`` clips (by name) of ``source``, same sub-folders."""
    files = sorted(source.rglob("*.npy"), key=lambda p: p.name)[:count]
    for path in files:
        (folder / path.parent.name).mkdir(parents=True, exist_ok=True)
        os.link(path, folder / path.parent.name / path.name)
    return folder


def probe(raw: Path, out: Path, workers: int) -> dict:
    result = subprocess.run([sys.executable, "-c", _PROBE, str(raw), str(out), str(workers)], capture_output=True,
                            text=True, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def conversion_rate(src: str, dst: str, repeats: int = 300) -> float:
    fmt = get_format(src)
    x = np.random.default_rng(0).normal(size=(2, 64, fmt.num_joints, fmt.dims + 1)).astype(np.float32)
    start = time.perf_counter()
    for _ in range(repeats):
        convert_keypoints(x, src=src, dst=dst)
    return repeats / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=10000)
    parser.add_argument("--folder", help="work folder (default: a temporary folder, deleted at the end)")
    args = parser.parse_args()
    setup_logging()
    for src, dst in (("coco17", "ntu25"), ("mediapipe33", "ntu25"), ("openpose25", "h36m17"), ("ntu25", "ntu25")):
        logger.info("convert_keypoints %-11s -> %-6s: %7.0f clips/s of (2, 64, V, C)", src, dst,
                    conversion_rate(src, dst))
    work = Path(args.folder or tempfile.mkdtemp(prefix="usdrl-prepare-folder-"))
    try:
        start = time.perf_counter()
        write_clips(work / "all", args.clips)
        logger.info("wrote %d clips (%.0f MB) in %.1f s", args.clips, folder_mb(work / "all"),
                    time.perf_counter() - start)
        quarter = subset(work / "all", work / "quarter", args.clips // 4)
        for raw, workers in ((quarter, 1), (quarter, 2), (work / "all", 2)):
            out = work / f"out_{raw.name}_{workers}"
            result = probe(raw, out, workers)
            count = prepared_count(out)
            logger.info("prepare folder, %5d clips, %d worker(s): %6.0f clips/s; output %6.1f MB; writer peak RSS "
                        "%6.1f MB (%+5.1f MB over %.1f MB after imports)", count, workers, count / result["seconds"],
                        folder_mb(out), result["writer"] / 1024, (result["writer"] - result["baseline"]) / 1024,
                        result["baseline"] / 1024)
            shutil.rmtree(out)
    finally:
        if not args.folder:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
