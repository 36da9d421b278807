"""Mutation testing of the core modules with mutmut: plant small bugs one at a time, see which the tests catch.

Usage (from the repository root, with the ``dev`` extra installed)::

    python tools/mutation.py                      # every core module, in the order of --list
    python tools/mutation.py usdrl/train/losses.py usdrl/tasks/retrieval.py
    python tools/mutation.py --list               # the modules and their test selections

Each module is mutated in a scratch copy of the repository (``usdrl/``, ``tests/``,
``pyproject.toml``), so the working tree is never touched, and only its fast test selection
runs against each mutant (mutmut runs, per mutant, the tests of that selection that reach
the mutated function). Survivors that are listed in ``tools/mutation_equivalent.txt``, each
with the reason it cannot change behaviour, count as equivalent. The run prints one table
row per module (the table of ``docs/testing.md``) and the surviving mutants; ``--keep DIR``
keeps the scratch copies so that ``mutmut show NAME`` can be run in ``DIR/<module>``.

It is slow (minutes per module) and is not part of CI.
"""

import argparse
import datetime
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EQUIVALENT_FILE = ROOT / "tools" / "mutation_equivalent.txt"

#: Core module -> the test files that exercise it (the fast selection run against its mutants).
MODULES = {
    "usdrl/tasks/retrieval.py": ["tests/test_retrieval.py"],
    "usdrl/train/losses.py": ["tests/test_train_losses.py"],
    "usdrl/encoder.py": ["tests/test_model.py", "tests/test_convert.py", "tests/test_precision.py",
                         "tests/test_encoder_pinned.py", "tests/test_device_harness.py"],
    "usdrl/data/preprocess.py": ["tests/test_preprocess.py", "tests/test_preprocess_pinned.py",
                                 "tests/test_view_alignment.py"],
    "usdrl/train/augment.py": ["tests/test_train_augment.py", "tests/test_augment_pinned.py"],
    "usdrl/model.py": ["tests/test_model.py", "tests/test_model_pinned.py", "tests/test_model_mutants.py",
                       "tests/test_hub.py", "tests/test_hardening_model.py",
                       "tests/test_precision.py", "tests/test_export.py", "tests/test_push.py"],
    "usdrl/tasks/metrics.py": ["tests/test_task_metrics.py", "tests/test_task_metrics_pinned.py",
                               "tests/test_detection_eval.py",
                               "tests/test_detection.py", "tests/test_pkummd_official_map.py"],
    "usdrl/data/ntu.py": ["tests/test_data_ntu.py"],
    "usdrl/data/kinect_text.py": ["tests/test_data_ntu.py", "tests/test_data_uav.py",
                                  "tests/test_hardening_readers.py", "tests/test_kinect_text_pinned.py"],
    # test_engine_resume.py (every CLI training command, interrupted and resumed: ~20 s) is left out: it reaches
    # most of TrainingRun, so each of several hundred mutants would pay for it; test_engine_pinned.py runs the
    # same checkpoint, metrics and resume paths in-process in a few seconds.
    "usdrl/engine.py": ["tests/test_engine.py", "tests/test_engine_pinned.py"],
    "usdrl/keypoints/formats.py": ["tests/test_keypoints.py"],
    "usdrl/keypoints/convert.py": ["tests/test_keypoints.py", "tests/test_universal.py"],
    "usdrl/universal.py": ["tests/test_universal.py", "tests/test_universal_pinned.py",
                           "tests/test_universal_detection.py"],
    "usdrl/data/prepared/views.py": ["tests/test_universal_prepared.py"],
    "usdrl/train/universal_views.py": ["tests/test_universal_pretrain.py"],
    "usdrl/train/cross_format.py": ["tests/test_cross_format.py", "tests/test_cross_format_pinned.py",
                                    "tests/test_format_alignment.py"],
}
STATUSES = ("killed", "survived", "no tests", "timeout", "suspicious", "segfault", "skipped")


def read_equivalent(path: Path = EQUIVALENT_FILE) -> dict[str, str]:
    """``{mutant name: reason}`` from lines ``name  # reason`` (blank lines and ``#`` lines skipped)."""
    out = {}
    if not path.exists():
        return out
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, _, reason = line.partition("#")
        if not reason.strip():
            raise SystemExit(f"{path}:{number}: an equivalent mutant needs a reason after '#': {line!r}")
        out[name.strip()] = reason.strip()
    return out


def scratch_copy(module: str, tests: list[str], where: Path) -> Path:
    """A copy of the package and tests with a mutmut configuration for ``module``."""
    work = where / module.replace("/", "_").removesuffix(".py")
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    shutil.copytree(ROOT / "usdrl", work / "usdrl", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT / "tests", work / "tests", ignore=shutil.ignore_patterns("__pycache__", ".hypothesis"))
    shutil.copy(ROOT / "pyproject.toml", work / "pyproject.toml")
    (work / "setup.cfg").write_text(
        "[mutmut]\n"
        "source_paths=usdrl\n"
        f"only_mutate={module}\n"
        "pytest_add_cli_args_test_selection=\n" + "".join(f"    {t}\n" for t in tests)
        + "pytest_add_cli_args=\n    -p\n    no:cacheprovider\n    -q\n", encoding="utf-8")
    return work


def run_module(module: str, tests: list[str], where: Path, jobs: int) -> dict[str, str]:
    """Run mutmut on one module; ``{mutant name: status}``."""
    work = scratch_copy(module, tests, where)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # the mutants, not another checkout
    env.setdefault("OMP_NUM_THREADS", "1")
    command = [sys.executable, "-m", "mutmut", "run", "--max-children", str(jobs)]
    print(f"== {module}: {' '.join(tests)}", flush=True)
    with open(work / "mutmut.log", "w", encoding="utf-8") as log:
        subprocess.run(command, cwd=work, env=env, stdout=log, stderr=subprocess.STDOUT, check=True)
    listing = subprocess.run([sys.executable, "-m", "mutmut", "results", "--all", "true"], cwd=work, env=env,
                             capture_output=True, text=True, check=True).stdout
    statuses = dict(re.findall(r"^\s*(\S+__mutmut_\d+): (.+?)\s*$", listing, flags=re.M))
    if not statuses:
        raise SystemExit(f"{module}: mutmut reported no mutants; see {work / 'mutmut.log'}")
    return statuses


def summarise(module: str, statuses: dict[str, str], equivalent: dict[str, str]) -> dict:
    killed = sum(s == "killed" for s in statuses.values())
    alive = sorted(name for name, s in statuses.items() if s != "killed")
    explained = [name for name in alive if name in equivalent]
    survivors = [name for name in alive if name not in equivalent]
    stale = sorted(name for name in equivalent if statuses.get(name) == "killed")
    total = len(statuses)
    score = (killed + len(explained)) / total
    return {"module": module, "mutants": total, "killed": killed, "survived": len(survivors),
            "equivalent": len(explained), "score": score, "survivors": survivors, "stale": stale,
            "other": {s: sum(v == s for v in statuses.values()) for s in STATUSES[2:]}}


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} CPUs, Python {platform.python_version()}"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("modules", nargs="*", help="modules to mutate (default: every core module)")
    parser.add_argument("--list", action="store_true", help="print the modules and their test selections")
    parser.add_argument("--jobs", type=int, default=1, help="mutants tested in parallel (default: 1)")
    parser.add_argument("--keep", type=Path, help="keep the scratch copies in this folder")
    args = parser.parse_args(argv)
    if args.list:
        for module, tests in MODULES.items():
            print(f"{module}: {' '.join(tests)}")
        return 0
    unknown = [m for m in args.modules if m not in MODULES]
    if unknown:
        parser.error(f"not a core module: {', '.join(unknown)} (see --list)")
    equivalent = read_equivalent()
    where = args.keep or Path(tempfile.mkdtemp(prefix="usdrl-mutation-"))
    rows = []
    try:
        for module in args.modules or list(MODULES):
            start = datetime.datetime.now(datetime.timezone.utc)
            row = summarise(module, run_module(module, MODULES[module], where, args.jobs), equivalent)
            row["minutes"] = (datetime.datetime.now(datetime.timezone.utc) - start).total_seconds() / 60
            rows.append(row)
            for name in row["survivors"]:
                print(f"   survived: {name}")
            for name in row["stale"]:
                print(f"   listed as equivalent but now killed (remove it): {name}")
    finally:
        if args.keep is None:
            shutil.rmtree(where, ignore_errors=True)
    date = datetime.date.today().isoformat()
    print(f"\n{date}, {machine()}\n")
    print("| module | mutants | killed | survived | equivalent | score | minutes |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| `{r['module']}` | {r['mutants']} | {r['killed']} | {r['survived']} | {r['equivalent']} "
              f"| {100 * r['score']:.0f}% | {r['minutes']:.0f} |")
    return 0 if all(not r["survivors"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
