"""Helpers shared by the dataset-reader tests: hand-built NTU-style text and file mutations."""

import os
import tempfile
from pathlib import Path

from hypothesis import strategies as st

from usdrl.errors import DataFormatError

#: The small real-format files the tests read (sources and licences in ``fixtures/SOURCES.md``).
FIXTURES = Path(__file__).resolve().parent / "fixtures"


def ntu_text(frames, *, newline="\r\n", num_joints=25):
    """The text of an NTU-style file.

    ``frames`` is a list of frames; a frame is a list of bodies ``(body_line, joint_lines)``.
    """
    lines = [str(len(frames))]
    for bodies in frames:
        lines.append(str(len(bodies)))
        for body_line, joint_lines in bodies:
            assert len(joint_lines) == num_joints
            lines += [body_line, str(num_joints), *joint_lines]
    return newline.join(lines) + newline


# Tokens that must not pass for numbers (or counts) in any reader.
BAD_TOKENS = ["abc", "1.2.3", "nan", "inf", "-inf", "1e999", "0x1F", "--1", "1,5", "+", "E5", "\u0661", "\u00e9",
              "7.2E+16", "-5", "99999999999999999999999", "1e5", "", "\t", "\x0b", "\x00", "\r"]


@st.composite
def mutated_bytes(draw, text: str) -> bytes:
    """``text`` after 1-3 random edits: truncation, line deletion / duplication / swap,
    a garbled token, a changed count, an inserted line or token, trailing garbage."""
    lines = text.split("\n")
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["truncate", "delete", "duplicate", "swap", "garble", "count", "insert_line",
                                     "insert_token", "append"]))
        i = draw(st.integers(0, max(len(lines) - 1, 0)))
        if kind == "truncate":
            joined = "\n".join(lines)
            lines = joined[: draw(st.integers(0, len(joined)))].split("\n")
        elif kind == "delete" and lines:
            del lines[i]
        elif kind == "duplicate" and lines:
            lines.insert(i, lines[i])
        elif kind == "swap" and lines:
            j = draw(st.integers(0, len(lines) - 1))
            lines[i], lines[j] = lines[j], lines[i]
        elif kind == "garble" and lines:
            tokens = lines[i].split(" ")
            k = draw(st.integers(0, max(len(tokens) - 1, 0)))
            tokens[k] = draw(st.sampled_from(BAD_TOKENS) | st.text(max_size=4))
            lines[i] = " ".join(tokens)
        elif kind == "count" and lines:
            counts = [k for k, line in enumerate(lines) if line.strip().isdigit()] or [0]
            k = draw(st.sampled_from(counts))
            value = int(lines[k].strip()) if lines[k].strip().isdigit() else 0
            lines[k] = str(value + draw(st.sampled_from([-3, -1, 1, 2, 10**6, -(10**6)])))
        elif kind == "insert_line":
            lines.insert(i, draw(st.sampled_from(BAD_TOKENS + ["0", "1", "25", "1 2"]) | st.text(max_size=8)))
        elif kind == "insert_token" and lines:
            lines[i] = lines[i] + " " + draw(st.sampled_from(BAD_TOKENS))
        elif kind == "append":
            lines.append(draw(st.sampled_from(BAD_TOKENS + ["0", "1 2 3"])))
    return "\n".join(lines).encode("utf-8")


def check_reader_on_bytes(reader, data: bytes, name: str):
    """Run ``reader`` on a file holding ``data``: it must return or raise DataFormatError only."""
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, name)
        with open(path, "wb") as f:
            f.write(data)
        try:
            return reader(path)
        except DataFormatError as err:
            assert name in str(err)
            return None


def prepare_synthetic(root: Path, source: str, count: int, *, seed: int = 0) -> tuple[list[Path], Path]:
    """Write ``count`` synthetic raw files for ``source`` (``ntu60``, ``pkummd1`` or ``pkummd2``) under
    ``root/raw`` and prepare them with ``usdrl prepare ... --benchmark xsub``; returns the raw files and
    the prepared folder ``root/prepared``."""
    from usdrl.cli import main
    from usdrl.data.synthetic_files import write_synthetic_ntu, write_synthetic_pkummd

    root = Path(root)
    if source == "ntu60":
        files = write_synthetic_ntu(root / "raw", count, seed=seed)
    else:
        files = write_synthetic_pkummd(root / "raw", count, phase=int(source[-1]), seed=seed)
    assert main(["prepare", source, str(root / "raw"), str(root / "prepared"), "--benchmark", "xsub",
                 "--workers", "1"]) == 0
    return files, root / "prepared"
