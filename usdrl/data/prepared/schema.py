"""The prepared format: its name and version, file names, array sizes and labels, and the raw sources with
their benchmarks (what ``usdrl prepare`` accepts)."""

import glob
from pathlib import Path

FORMAT = "usdrl-prepared"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
NUM_PERSONS = 2
NUM_CHANNELS = 3
#: Label of frames after a sequence's end (and of padded window frames): ignore it in a loss.
IGNORE_LABEL = -1
CLIPS, UNTRIMMED = "clips", "untrimmed"

#: Benchmarks of each source.
BENCHMARKS = {
    "ntu60": ("xsub", "xview"),
    "ntu120": ("xsub", "xset"),
    "pkummd1": ("xsub", "xview"),
    "pkummd2": ("xsub", "xview"),
    "uav": ("csv1", "csv2"),
    "ntu2d": ("xsub", "xview", "xset"),
}
SOURCES = tuple(BENCHMARKS)

#: What ``RAW`` must be for each source (shown by ``usdrl prepare --help``).
RAW_LAYOUTS = {
    "ntu60": "a folder of NTU RGB+D SsssCcccPpppRrrrAaaa.skeleton files, searched recursively (e.g. the "
             "extracted nturgbd_skeletons_s001_to_s017 archive); the official missing samples are skipped and "
             "only setups S001-S017 are kept",
    "ntu120": "as ntu60, all setups (e.g. both skeleton archives extracted side by side)",
    "pkummd1": "a folder holding one sub-folder whose name contains 'skeleton' (e.g. PKU_Skeleton_Renew/) "
               "and one whose name contains 'label' (e.g. Train_Label_PKU_final/), both of <stem>.txt files, "
               "and, anywhere below, one split file named cross-subject*.txt / cross_subject*.txt (xsub) or "
               "cross-view*.txt / cross_view*.txt (xview), e.g. Split/cross-subject.txt",
    "pkummd2": "as pkummd1, with phase-2 stems AxxNyy-V (e.g. Skeleton_v2/, Label_PKUMMD_v2/, "
               "cross_subject_v2.txt)",
    "uav": "a folder of UAV-Human skeleton .txt files with their original P...A...R..._... names, searched "
           "recursively",
    "ntu2d": "the pyskl pickle ntu60_hrnet.pkl or ntu120_hrnet.pkl (a file); its split lists "
             "<benchmark>_train and <benchmark>_val are used",
}


def moved_aside(out: Path) -> list[Path]:
    """Copies of the dataset ``out`` that a killed ``overwrite`` left moved aside (``.OUT.old-*/OUT``), oldest
    name first: the writer puts the first back before its next run; the reader names it when ``out`` is gone."""
    pattern = glob.escape(f".{out.name}.")
    return [folder / out.name for folder in sorted(out.parent.glob(f"{pattern}old-*")) if (folder / out.name).exists()]

