import logging
import re

import numpy as np
import pytest
from data_helpers import check_reader_on_bytes, mutated_bytes
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from usdrl.data import (
    ActionInstance,
    frame_labels,
    parse_pkummd_name,
    read_pkummd_labels,
    read_pkummd_skeleton,
    read_pkummd_split,
    write_pkummd_labels,
    write_pkummd_skeleton,
    write_pkummd_split,
)
from usdrl.errors import DataFormatError, InputError


def frame_values(t, with_second_person=True):
    """150 numbers of frame ``t``: value (m, v, c) = sign * (t + v / 100 + c / 1000), person 2 maybe zero."""
    values = []
    for m in range(2):
        for v in range(25):
            for c in range(3):
                values.append(0.0 if (m == 1 and not with_second_person) else (-1) ** m * (t + v / 100 + c / 1000))
    return values


def pku_text():
    """Three frames in the released style: %f, lines after the first start with a space; frame 2 has one person."""
    rows = [frame_values(0), frame_values(1, with_second_person=False), frame_values(2)]
    lines = [" ".join(f"{v:f}" for v in row) for row in rows]
    return lines[0] + "\n" + "".join(f" {line}\n" for line in lines[1:])


def test_hand_built_skeleton_file(tmp_path):
    path = tmp_path / "A10N08-L.txt"
    path.write_text(pku_text())
    seq = read_pkummd_skeleton(path)
    assert seq.data.shape == (3, 3, 25, 2) and seq.data.dtype == np.float32 and seq.layout == "ntu25"
    assert seq.meta == {"phase": 2, "script": 10, "subject": 8, "view": "L"} and seq.name == "A10N08-L"
    # Person-major, then joint-major, then xyz.
    assert seq.data[2, 0, 4, 0] == np.float32(0.042) and seq.data[0, 2, 24, 1] == np.float32(-2.24)
    assert not seq.data[:, 1, :, 1].any() and seq.data[:, 1, :, 0].any()
    np.testing.assert_array_equal(seq.data[:, 0, 3, 1], np.float32([-0.03, -0.031, -0.032]))


def test_crlf_and_trailing_blank_lines(tmp_path):
    path = tmp_path / "0002-M.txt"
    path.write_bytes(pku_text().replace("\n", "\r\n").encode() + b"\r\n\r\n")
    seq = read_pkummd_skeleton(path)
    assert seq.num_frames == 3 and seq.meta == {"phase": 1, "sequence": 2, "view": "M"}


@pytest.mark.parametrize("edit, line, message", [
    (lambda lines: [lines[0], lines[1].rsplit(" ", 1)[0], lines[2]], 2, "150 fields"),
    (lambda lines: [lines[0], lines[1] + " 0.0", lines[2]], 2, "150 fields"),
    (lambda lines: [lines[0], "", lines[2]], 2, "150 fields"),
    (lambda lines: [lines[0], lines[1].replace("1.010000", "1.01x", 1), lines[2]], 2, "not a number"),
    (lambda lines: [lines[0], lines[1], lines[2].replace("2.000000", "inf", 1)], 3, "finite"),
])
def test_malformed_skeleton_lines(tmp_path, edit, line, message):
    path = tmp_path / "0002-L.txt"
    path.write_text("\n".join(edit(pku_text().splitlines())) + "\n")
    with pytest.raises(DataFormatError, match=message) as info:
        read_pkummd_skeleton(path)
    assert f"0002-L.txt, line {line}:" in str(info.value)


def test_empty_skeleton_file(tmp_path):
    path = tmp_path / "0002-L.txt"
    path.write_text("\n")
    with pytest.raises(DataFormatError, match="empty"):
        read_pkummd_skeleton(path)


def test_skeleton_writer_round_trips(tmp_path):
    rng = np.random.default_rng(0)
    data = rng.uniform(-4, 4, size=(3, 20, 25, 2)).astype(np.float32)
    exact = read_pkummd_skeleton(write_pkummd_skeleton(tmp_path / "0005-R.txt", data, float_format="%.9g"))
    np.testing.assert_array_equal(exact.data, data)
    # The released %f format rounds to 6 decimals.
    rounded = read_pkummd_skeleton(write_pkummd_skeleton(tmp_path / "0005-R.txt", data))
    np.testing.assert_array_equal(rounded.data, np.round(data.astype(np.float64), 6).astype(np.float32))
    assert (tmp_path / "0005-R.txt").read_text().split("\n")[0].split()[0] == f"{data[0, 0, 0, 0]:f}"
    # One person: the second is written as zeros; a %f file read and written again is unchanged.
    single = read_pkummd_skeleton(write_pkummd_skeleton(tmp_path / "one.txt", rounded.data[..., :1]))
    np.testing.assert_array_equal(single.data[..., 0], rounded.data[..., 0])
    assert not single.data[..., 1].any()
    with pytest.raises(InputError, match=r"data must be \(3, T, 25, M\) with M <= 2, got \(3, 2, 25, 3\)"):
        write_pkummd_skeleton(tmp_path / "x.txt", np.zeros((3, 2, 25, 3)))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf, 1e39])   # 1e39 is beyond float32: inf when read
def test_skeleton_writer_refuses_what_its_reader_refuses(tmp_path, bad):
    data = np.ones((3, 2, 25, 1))
    data[1, 1, 4, 0] = bad
    with pytest.raises(InputError, match=rf"values must be finite in float32, found {re.escape(str(bad))}$"):
        write_pkummd_skeleton(tmp_path / "x.txt", data)
    assert not (tmp_path / "x.txt").exists()
    data[1, 1, 4, 0] = 3.4028235e38                                     # float32's largest writes and reads back
    read = read_pkummd_skeleton(write_pkummd_skeleton(tmp_path / "x.txt", data, float_format="%.9g"))
    assert read.data[1, 1, 4, 0] == np.finfo(np.float32).max


def test_parse_pkummd_name():
    assert parse_pkummd_name("Skeleton/0364-R.txt") == {"phase": 1, "sequence": 364, "view": "R"}
    for bad in ["364-R", "0364-X", "A1N08-L", "A10N08"]:
        with pytest.raises(DataFormatError):
            parse_pkummd_name(bad)


def test_label_file_separators_and_reversed_instances(tmp_path, caplog):
    path = tmp_path / "0002-L.txt"
    path.write_text("12,10,40,2\n3 , 50 , 45 , 1\n51 60 90 1\n")
    with caplog.at_level(logging.WARNING, logger="usdrl.data.pkummd"):
        instances = read_pkummd_labels(path)
    assert instances == [ActionInstance(12, 10, 40, 2), ActionInstance(3, 45, 50, 1), ActionInstance(51, 60, 90, 1)]
    assert "line 2" in caplog.text and "swapped" in caplog.text
    with pytest.raises(DataFormatError, match="line 2: start 50 is after end 45"):
        read_pkummd_labels(path, swap_reversed=False)


@pytest.mark.parametrize("line, message", [("0,1,2,1", "label"), ("1,2,3", "4 fields|found 3"),
                                           ("1,-2,3,1", "start"), ("1,2,x,1", "end"), ("1,2,3,1,5", "found 5"),
                                           ("1.0,2,3,1", "label")])
def test_malformed_label_lines(tmp_path, line, message):
    path = tmp_path / "0002-L.txt"
    path.write_text(f"1,1,2,1\n{line}\n")
    with pytest.raises(DataFormatError, match=message) as info:
        read_pkummd_labels(path)
    assert "line 2:" in str(info.value)


def test_label_writer_round_trip_and_frame_labels(tmp_path, caplog):
    instances = [ActionInstance(5, 2, 6, 1), ActionInstance(9, 5, 8, 2), ActionInstance(1, 9, 12, 2)]
    path = write_pkummd_labels(tmp_path / "0002-L.txt", instances)
    assert path.read_text() == "5,2,6,1\n9,5,8,2\n1,9,12,2\n"
    assert read_pkummd_labels(path) == instances
    with caplog.at_level(logging.WARNING, logger="usdrl.data.pkummd"):
        labels = frame_labels(instances, 10)
    assert labels.tolist() == [0, 0, 5, 5, 5, 9, 9, 9, 0, 1]  # [start, end); the later instance wins
    assert "clipped" in caplog.text
    assert frame_labels([], 3, background=-1).tolist() == [-1, -1, -1]
    assert read_pkummd_labels(write_pkummd_labels(tmp_path / "empty.txt", [])) == []


SPLIT_TEXT = "Training videos: \n0002-L, 0002-M, 0002-R, A01N02-L,\nValidation videos: \n0003-L, 0003-M,\n"


def test_split_file(tmp_path):
    path = tmp_path / "cross-subject.txt"
    path.write_text(SPLIT_TEXT)
    split = read_pkummd_split(path)
    assert split == {"train": ["0002-L", "0002-M", "0002-R", "A01N02-L"], "test": ["0003-L", "0003-M"]}
    again = read_pkummd_split(write_pkummd_split(tmp_path / "again.txt", split["train"], split["test"]))
    assert again == split
    assert read_pkummd_split(write_pkummd_split(tmp_path / "e.txt", [], ["0001-L"])) == {"train": [],
                                                                                      "test": ["0001-L"]}


@pytest.mark.parametrize("text, message", [
    ("Training videos:\n0002-L,\nValidation videos:\n", "4 lines"),
    (SPLIT_TEXT + "extra\n", "4 lines"),
    (SPLIT_TEXT.replace("0002-M", "0002 M"), "not a PKU-MMD video stem"),
    (SPLIT_TEXT.replace("0002-M, ", "0002-M,, "), "not a PKU-MMD video stem"),
    (SPLIT_TEXT.replace("0003-M", "0002-R"), "both"),
])
def test_malformed_split_files(tmp_path, text, message):
    path = tmp_path / "cross-view.txt"
    path.write_text(text)
    with pytest.raises(DataFormatError, match=message):
        read_pkummd_split(path)


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_mutated_skeleton_files_raise_only_format_errors(data):
    seq = check_reader_on_bytes(read_pkummd_skeleton, data.draw(mutated_bytes(pku_text())), "0002-L.txt")
    if seq is not None:
        assert seq.data.shape[::2] == (3, 25) and seq.data.shape[3] == 2


@settings(max_examples=50, deadline=None)
@given(data=st.data())
def test_mutated_label_and_split_files_raise_only_format_errors(data):
    labels = data.draw(mutated_bytes("12,10,40,2\n3,50,45,1\n"))
    for instance in check_reader_on_bytes(read_pkummd_labels, labels, "0002-L.txt") or []:
        assert instance.label >= 1 and 0 <= instance.start <= instance.end
    split = check_reader_on_bytes(read_pkummd_split, data.draw(mutated_bytes(SPLIT_TEXT)), "split.txt")
    if split is not None:
        assert not set(split["train"]) & set(split["test"])
