import itertools
import logging
import warnings
from pathlib import Path

import numpy as np
import pytest
from data_helpers import FIXTURES, check_reader_on_bytes, mutated_bytes, ntu_text
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from usdrl.data import (
    ActionInstance,
    SkeletonSequence,
    is_training_sample,
    missing_samples,
    parse_ntu_name,
    read_ntu_skeleton,
    read_sample_list,
    read_uav_skeleton,
    split_ntu_samples,
    write_ntu_skeleton,
    write_pkummd_labels,
    write_pkummd_skeleton,
    write_pkummd_split,
    write_uav_skeleton,
)
from usdrl.data.ntu import DEFAULT_BODY_ID
from usdrl.errors import ConfigError, DataFormatError, InputError

NTU_FIXTURES = FIXTURES / "ntu"
LEAF_JOINTS = {3, 15, 19, 21, 22, 23, 24}  # zero orientation in the real files

# Two real IDs of S001C003P008R002A058 that are equal as float64.
ID_A, ID_B, ID_C = 72057594037944738, 72057594037944734, 72057594037944740


def joint_fields(frame, body, joint):
    """The 12 tokens of a hand-made joint line (strings, as they appear in the file)."""
    x = "-7.257856E-05" if (frame, body, joint) == (0, 0, 5) else f"{0.1 * joint + body:.7g}"
    orientation = ["0"] * 4 if joint in LEAF_JOINTS else ["0.5", "-0.25", f"{0.01 * joint:.7g}", "0.125"]
    return [x, f"{-0.01 * joint:.7g}", f"{3.5 + frame:.7g}", f"{100 + joint}", f"{200 + body}",
            f"{1000.5 + joint}", f"{500.25 + frame}", *orientation, "1" if joint == 3 else "2"]


def body(frame, index, body_id, lean="0.01119184 -0.256052"):
    lines = [" ".join(joint_fields(frame, index, j)) for j in range(25)]
    return f"{body_id} 0 1 {index % 5} 1 1 0 {lean} 2", lines


HAND_FRAMES = [
    [body(0, 0, ID_A), body(0, 1, ID_B, "0.2471961 -0.2383252")],
    [],
    [body(2, 0, ID_A), body(2, 1, ID_B), body(2, 2, ID_C)],
]
NAME = "S001C003P008R002A058.skeleton"


@pytest.fixture(params=["\r\n", "\n"], ids=["crlf", "lf"])
def hand_file(tmp_path, request):
    path = tmp_path / NAME
    path.write_bytes(ntu_text(HAND_FRAMES, newline=request.param).encode("ascii"))
    return path


def test_hand_built_file_values(hand_file):
    seq = read_ntu_skeleton(hand_file)
    assert isinstance(seq, SkeletonSequence)
    assert seq.data.shape == (3, 3, 25, 3) and seq.data.dtype == np.float32
    assert seq.num_frames == 3 and seq.num_joints == 25 and seq.num_bodies == 3
    assert seq.layout == "ntu25" and seq.name == NAME.removesuffix(".skeleton") and seq.source == hand_file
    assert seq.body_counts.tolist() == [2, 0, 3]
    # 17-digit IDs stay exact and distinct, although float64 would merge ID_A and ID_B.
    assert float(ID_A) == float(ID_B)
    assert seq.body_ids.dtype == np.uint64
    assert [int(i) for i in seq.body_ids[0, :2]] == [ID_A, ID_B]
    assert [int(i) for i in seq.body_ids[2]] == [ID_A, ID_B, ID_C]
    # Frame 1 has no body; frame 0 has no third body.
    assert not seq.data[:, 1].any() and not seq.data[:, 0, :, 2].any() and seq.body_ids[1].tolist() == [0, 0, 0]
    for frame, index, joint in [(0, 0, 5), (0, 1, 24), (2, 2, 0), (2, 1, 13)]:
        fields = joint_fields(frame, index, joint)
        expected = np.float32([float(v) for v in fields])
        np.testing.assert_array_equal(seq.data[:, frame, joint, index], expected[:3])
        np.testing.assert_array_equal(seq.joint_info[:, frame, joint, index], expected[3:])
    assert seq.data[0, 0, 5, 0] == np.float32(-7.257856e-05)
    assert not seq.joint_info[4:8, :, sorted(LEAF_JOINTS)].any()
    assert seq.joint_info[8, 0, 3, 0] == 1 and seq.joint_info[8, 0, 4, 0] == 2
    np.testing.assert_array_equal(seq.body_info[0, 1], np.float32([0, 1, 1, 1, 1, 0, 0.2471961, -0.2383252, 2]))
    assert seq.meta == {"setup": 1, "camera": 3, "performer": 8, "replication": 2, "action": 58, "label": 57}
    assert seq.label == 57


def test_crlf_and_lf_give_the_same_sequence(tmp_path):
    paths = []
    for newline in ("\r\n", "\n"):
        path = tmp_path / f"{len(paths)}.skeleton"
        path.write_text(ntu_text(HAND_FRAMES, newline=newline), newline="")
        paths.append(path)
    a, b = (read_ntu_skeleton(p) for p in paths)
    np.testing.assert_array_equal(a.data, b.data)
    np.testing.assert_array_equal(a.joint_info, b.joint_info)
    assert a.meta == {} and a.label is None  # not an NTU sample name


@pytest.mark.parametrize("text, frames, bodies", [("0\r\n", 0, 0), ("2\r\n0\r\n0\r\n", 2, 0), ("1\n0", 1, 0)])
def test_files_without_bodies(tmp_path, text, frames, bodies):
    path = tmp_path / "S001C001P001R001A001.skeleton"
    path.write_text(text, newline="")
    seq = read_ntu_skeleton(path)
    assert seq.data.shape == (3, frames, 25, bodies)
    assert seq.body_counts.tolist() == [0] * frames and seq.body_ids.shape == (frames, 0)


def test_trailing_blank_lines_are_accepted(tmp_path):
    path = tmp_path / NAME
    path.write_text(ntu_text(HAND_FRAMES) + "\r\n  \r\n", newline="")
    assert read_ntu_skeleton(path).num_frames == 3


def _hand_lines():
    return ntu_text(HAND_FRAMES).split("\r\n")[:-1]


def _edit(index, replacement):
    def edit(lines):
        lines[index] = replacement
        return lines
    return edit


def _first_token(index, token):
    def edit(lines):
        lines[index] = token + lines[index][lines[index].index(" "):]
        return lines
    return edit


# Line numbers (1-based) of the hand file: 1 frame count, 2 body count, 3 body line, 4 joint
# count, 5-29 joints of body 1, 30 body line, 31 joint count, 32-56 joints, 57 body count of
# frame 2, 58 of frame 3, 59 body line ...
ERRORS = {
    "truncated": (lambda lines: lines[:-1], "end of file", None),
    "frame count too high": (_edit(0, "4"), "end of file", None),
    "frame count too low": (_edit(0, "2"), "after the last", 58),
    "body count too high": (_edit(1, "3"), "body line", 57),
    "body count not integer": (_edit(1, "2.0"), "integer", 2),
    "negative count": (_edit(56, "-1"), ">= 0", 57),
    "joint count 24": (_edit(3, "24"), "24 joints", 4),
    "count line with two fields": (_edit(3, "25 1"), "one integer", 4),
    "short joint line": (lambda lines: [*lines[:6], lines[6].rsplit(" ", 1)[0], *lines[7:]], "12 fields", 7),
    "long joint line": (lambda lines: [*lines[:6], lines[6] + " 1", *lines[7:]], "12 fields", 7),
    "non-numeric joint value": (lambda lines: [*lines[:9], "a" + lines[9], *lines[10:]], "not a number", 10),
    "nan joint value": (_first_token(9, "nan"), "finite", 10),
    "huge joint value": (_first_token(9, "1e39"), "finite", 10),
    "fractional tracking state": (lambda lines: [*lines[:9], lines[9][:-1] + "1.5", *lines[10:]], "integer", 10),
    "short body line": (lambda lines: [*lines[:2], lines[2].rsplit(" ", 1)[0], *lines[3:]], "10 fields", 3),
    "float body ID": (lambda lines: [*lines[:2], "7.2E+16" + lines[2][17:], *lines[3:]], "integer", 3),
    "body ID above 64 bits": (lambda lines: [*lines[:2], "1" * 21 + lines[2][17:], *lines[3:]], "64 bits", 3),
    "body ID of exactly 2^64": (_first_token(2, "18446744073709551616"), "64 bits", 3),
    "float body field": (lambda lines: [*lines[:2], lines[2][:-1] + "2.0", *lines[3:]], "integer", 3),
    "blank line inside": (lambda lines: [*lines[:10], "", *lines[10:]], None, None),
    "extra joint line": (lambda lines: [*lines[:10], lines[10], *lines[10:]], None, None),
    "garbage at the end": (lambda lines: [*lines, "0"], "after the last", len(_hand_lines()) + 1),
}


@pytest.mark.parametrize("case", list(ERRORS))
def test_malformed_files_raise_format_errors(tmp_path, case):
    edit, message, line = ERRORS[case]
    path = tmp_path / NAME
    path.write_text("\r\n".join(edit(_hand_lines())) + "\r\n", newline="")
    with pytest.raises(DataFormatError, match=message) as info:
        read_ntu_skeleton(path)
    assert str(path) in str(info.value)
    if line is not None:
        assert f"line {line}:" in str(info.value)


@pytest.mark.parametrize("content, line", [(b"", 1), (b"\r\n \r\n", 1), (b"1\r\n1\r\n\xe9", 3), (b"1\r0\n", 1),
                                           (b"x\n", 1)])
def test_empty_binary_and_bad_first_lines(tmp_path, content, line):
    path = tmp_path / NAME
    path.write_bytes(content)
    with pytest.raises(DataFormatError, match=f"line {line}:"):
        read_ntu_skeleton(path)


def test_missing_file_is_an_os_error(tmp_path):
    with pytest.raises(OSError):
        read_ntu_skeleton(tmp_path / "nope.skeleton")


def _random_sequence(rng, frames=6, slots=3):
    data = rng.normal(size=(3, frames, 25, slots)).astype(np.float32)
    counts = rng.integers(0, slots + 1, size=frames)
    counts[0] = slots
    for t, c in enumerate(counts):
        data[:, t, :, c:] = 0
    return data, counts


@pytest.mark.parametrize("newline", ["\r\n", "\n"])
def test_writer_reader_round_trip_is_exact(tmp_path, newline):
    rng = np.random.default_rng(0)
    data, counts = _random_sequence(rng)
    ids = rng.integers(7 * 10**16, 8 * 10**16, size=(6, 3), dtype=np.uint64)
    body_info = np.zeros((6, 3, 9), np.float32)
    body_info[..., :6] = rng.integers(0, 5, size=(6, 3, 6))
    body_info[..., 6:8] = rng.uniform(-1, 1, size=(6, 3, 2))
    body_info[..., 8] = 2
    joint_info = rng.normal(size=(9, 6, 25, 3)).astype(np.float32) * 500
    joint_info[8] = rng.integers(0, 3, size=(6, 25, 3))
    for t, c in enumerate(counts):
        joint_info[:, t, :, c:] = 0
        body_info[t, c:] = 0
        ids[t, c:] = 0
    path = write_ntu_skeleton(tmp_path / "S017C001P040R002A060.skeleton", data, body_counts=counts, body_ids=ids,
                              body_info=body_info, joint_info=joint_info, newline=newline)
    raw = path.read_bytes()
    assert raw.count(b"\r\n") == (raw.count(b"\n") if newline == "\r\n" else 0)
    seq = read_ntu_skeleton(path)
    np.testing.assert_array_equal(seq.data, data)
    np.testing.assert_array_equal(seq.body_counts, counts)
    np.testing.assert_array_equal(seq.body_ids, ids)
    np.testing.assert_array_equal(seq.body_info, body_info)
    np.testing.assert_array_equal(seq.joint_info, joint_info)
    # Writing the sequence itself gives the same file.
    again = write_ntu_skeleton(tmp_path / "again.skeleton", seq, newline=newline)
    assert again.read_bytes() == raw


def test_writer_defaults(tmp_path):
    data = np.zeros((3, 4, 25, 2), np.float32)
    data[:, 0] = 1.5
    data[:, 2, :, 1] = -2.0  # slot 0 empty, slot 1 used: 2 bodies written
    seq = read_ntu_skeleton(write_ntu_skeleton(tmp_path / "x.skeleton", data))
    assert seq.body_counts.tolist() == [2, 0, 2, 0]
    np.testing.assert_array_equal(seq.data, data)
    assert int(seq.body_ids[0, 1]) == DEFAULT_BODY_ID + 1
    assert (seq.joint_info[8, [0, 2]] == 2).all() and (seq.body_info[[0, 2], :, 8] == 2).all()


def test_hand_file_survives_a_read_write_read_cycle(hand_file, tmp_path):
    first = read_ntu_skeleton(hand_file)
    second = read_ntu_skeleton(write_ntu_skeleton(tmp_path / "copy.skeleton", first))
    for key in ("data", "body_counts", "body_ids", "body_info", "joint_info"):
        np.testing.assert_array_equal(getattr(first, key), getattr(second, key))


def test_writer_rejects_what_the_file_cannot_hold(tmp_path):
    data = np.ones((3, 2, 25, 2), np.float32)
    with pytest.raises(InputError, match="past"):
        write_ntu_skeleton(tmp_path / "a.skeleton", data, body_counts=[2, 1])
    with pytest.raises(InputError):
        write_ntu_skeleton(tmp_path / "a.skeleton", np.ones((3, 2, 17, 1)))
    with pytest.raises(InputError):
        write_ntu_skeleton(tmp_path / "a.skeleton", data, body_counts=[3, 2])
    with pytest.raises(InputError, match="body_ids"):
        write_ntu_skeleton(tmp_path / "a.skeleton", data, body_ids=np.zeros((2, 3)))
    info = np.zeros((2, 2, 9))
    info[0, 0, 0] = 0.5  # clipped edges must be an integer
    with pytest.raises(InputError, match="integer"):
        write_ntu_skeleton(tmp_path / "a.skeleton", data, body_info=info)


def test_the_largest_64_bit_body_id_is_read_exactly(tmp_path):
    lines = _first_token(2, "18446744073709551615")(_hand_lines())   # 2^64 - 1
    path = tmp_path / NAME
    path.write_text("\r\n".join(lines) + "\r\n", newline="")
    ids = read_ntu_skeleton(path).body_ids
    assert int(ids[0, 0]) == 2**64 - 1 and int(ids[0, 1]) == ID_B


# ---------------------------------------------------------------- names, lists, splits


def test_parse_ntu_name():
    fields = parse_ntu_name("/data/nturgb+d_skeletons/S018C002P045R001A120.skeleton")
    assert (fields.setup, fields.camera, fields.performer, fields.replication, fields.action) == (18, 2, 45, 1, 120)
    assert fields.label == 119 and fields.name == "S018C002P045R001A120"
    for bad in ["S18C002P045R001A120", "S001C002P045R001A120.npy", "s001c002p045r001a120", "x"]:
        with pytest.raises(DataFormatError, match="not an NTU sample name"):
            parse_ntu_name(bad)


def test_missing_sample_lists_match_the_fixtures():
    ntu60, ntu120 = missing_samples("ntu60"), missing_samples("ntu120")
    assert len(ntu60) == 302 and len(ntu120) == 535 and ntu60 < ntu120
    assert all(parse_ntu_name(n).setup <= 17 for n in ntu60)
    assert ntu60 == set(read_sample_list(NTU_FIXTURES / "NTU_RGBD_samples_with_missing_skeletons.txt"))
    assert ntu120 == set(read_sample_list(NTU_FIXTURES / "NTU_RGBD120_samples_with_missing_skeletons.txt"))
    with pytest.raises(ConfigError):
        missing_samples("ntu90")


def test_sample_list_with_the_official_header(tmp_path):
    path = tmp_path / "list.txt"
    path.write_text('302 of the captured samples in the "NTU RGB+D" dataset have missing skeletons.\n'
                    "Please ignore them.\n\nS001C002P005R002A008\n  S001C002P006R001A008  \n")
    assert read_sample_list(path) == ["S001C002P005R002A008", "S001C002P006R001A008"]


# The rules of the spec, written out here independently of the library's constants.
SPEC_NTU60_TRAIN = {1, 2, 4, 5, 8, 9, 13, 14, 15, 16, 17, 18, 19, 25, 27, 28, 31, 34, 35, 38}
SPEC_NTU120_TRAIN = SPEC_NTU60_TRAIN | {45, 46, 47, 49, 50, 52, 53, 54, 55, 56, 57, 58, 59, 70, 74, 78, 80, 81, 82,
                                        83, 84, 85, 86, 89, 91, 92, 93, 94, 95, 97, 98, 100, 103}


def _names(setups, cameras, performers, replications, actions):
    return [f"S{s:03d}C{c:03d}P{p:03d}R{r:03d}A{a:03d}"
            for s, c, p, r, a in itertools.product(setups, cameras, performers, replications, actions)]


def test_ntu60_splits_on_the_full_name_grid():
    grid = _names(range(1, 18), range(1, 4), range(1, 41), (1, 2), range(1, 61))
    assert len(grid) == 244_800
    missing = [parse_ntu_name(n) for n in missing_samples("ntu60")]
    xsub = split_ntu_samples(grid, "ntu60-xsub")
    missing_train = sum(m.performer in SPEC_NTU60_TRAIN for m in missing)
    assert len(xsub["train"]) == 17 * 3 * 20 * 2 * 60 - missing_train
    assert len(xsub["test"]) == 17 * 3 * 20 * 2 * 60 - (302 - missing_train)
    xview = split_ntu_samples(grid, "ntu60-xview")
    missing_train = sum(m.camera in (2, 3) for m in missing)
    assert len(xview["train"]) == 17 * 2 * 40 * 2 * 60 - missing_train
    assert len(xview["test"]) == 17 * 1 * 40 * 2 * 60 - (302 - missing_train)
    assert all(parse_ntu_name(n).camera == 1 for n in xview["test"][:1000])


def test_ntu120_splits_on_a_name_grid():
    grid = _names(range(1, 33), range(1, 4), range(1, 107), (1,), (1, 61, 120))
    missing = [parse_ntu_name(n) for n in missing_samples("ntu120") & set(grid)]
    assert missing  # the grid holds some missing samples, which must be dropped
    xsub = split_ntu_samples(grid, "ntu120-xsub")
    missing_train = sum(m.performer in SPEC_NTU120_TRAIN for m in missing)
    assert len(xsub["train"]) == 32 * 3 * 53 * 3 - missing_train
    assert len(xsub["test"]) == 32 * 3 * 53 * 3 - (len(missing) - missing_train)
    assert {parse_ntu_name(n).performer for n in xsub["train"]} == SPEC_NTU120_TRAIN
    xset = split_ntu_samples(grid, "ntu120-xset")
    missing_train = sum(m.setup % 2 == 0 for m in missing)
    assert {parse_ntu_name(n).setup for n in xset["train"]} == set(range(2, 33, 2))
    assert len(xset["train"]) == 16 * 3 * 106 * 3 - missing_train
    assert len(xset["test"]) == 16 * 3 * 106 * 3 - (len(missing) - missing_train)
    kept = split_ntu_samples(grid, "ntu120-xset", drop_missing=False)
    assert len(kept["train"]) + len(kept["test"]) == len(grid)


def test_split_keeps_items_and_leaves_out_other_datasets(caplog):
    items = [Path("a/S001C001P001R001A001.skeleton"), "S018C002P002R001A001", "S001C002P005R002A008",
             "S002C002P003R001A002.skeleton"]
    with caplog.at_level(logging.INFO, logger="usdrl.data.ntu"):
        out = split_ntu_samples(items, "ntu60-xsub")
    assert out == {"train": [items[0]], "test": [items[3]]}
    assert "1 missing" in caplog.text and "1 non-ntu60" in caplog.text
    assert is_training_sample("S001C002P003R001A001", "ntu60-xview")
    assert not is_training_sample("S001C001P003R001A001", "ntu60-xview")
    assert is_training_sample("S032C001P106R001A001", "ntu120-xset")
    assert is_training_sample("S001C001P103R001A001", "ntu120-xsub")
    with pytest.raises(ConfigError):
        split_ntu_samples(items, "ntu60-xset")
    with pytest.raises(DataFormatError):
        split_ntu_samples(["readme.txt"], "ntu60-xsub")


# ---------------------------------------------------------------- fuzzing


@st.composite
def small_ntu_text(draw):
    frames = []
    for t in range(draw(st.integers(1, 3))):
        frames.append([body(t, b, ID_A + b) for b in range(draw(st.integers(0, 3)))])
    return ntu_text(frames, newline=draw(st.sampled_from(["\r\n", "\n"])))


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_mutated_files_raise_only_format_errors(data):
    text = data.draw(small_ntu_text())
    seq = check_reader_on_bytes(read_ntu_skeleton, data.draw(mutated_bytes(text)), NAME)
    if seq is not None:
        assert seq.data.shape[:3] == (3, seq.num_frames, 25) and seq.body_counts.shape == (seq.num_frames,)
        assert np.isfinite(seq.data).all()


# ---------------------------------------------------------------- the writer, pinned

def test_the_ntu_writer_writes_the_shortest_float32_forms(tmp_path):
    data = np.zeros((3, 1, 25, 1), np.float32)
    data[:, 0, 0, 0] = [0.1, -2.5, 3.0]  # float32 0.1 is 0.10000000149011612 as a float64
    text = write_ntu_skeleton(tmp_path / "a.skeleton", data, newline="\n").read_text()
    zero_joint = "0.0 0.0 0.0 0.0 0.0 0.0 0.0 0.0 0.0 0.0 0.0 2"
    expected = ["1", "1", "72057594037927936 0 0 0 0 0 0 0.0 0.0 2", "25",
                "0.1 -2.5 3.0 0.0 0.0 0.0 0.0 0.0 0.0 0.0 0.0 2", *[zero_joint] * 24]
    assert text == "\n".join(expected) + "\n"


@pytest.mark.parametrize("bad, shown", [(np.nan, "nan"), (np.inf, "inf"), (-np.inf, "-inf"), (1e39, "1e+39")])
def test_the_writers_refuse_values_their_readers_would_refuse(tmp_path, bad, shown):
    data = np.ones((3, 1, 25, 1))
    data[1, 0, 4, 0] = bad
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a clear error, and no numpy warning about the cast on the way
        for write, path, clip in [(write_ntu_skeleton, tmp_path / "a.skeleton", data),
                                  (write_uav_skeleton, tmp_path / "a.txt", data[:, :, :17])]:
            with pytest.raises(InputError) as info:
                write(path, clip)
            assert str(info.value) == f"values must be finite in float32, found {shown}"
            assert not path.exists()


def test_the_largest_float32_is_written_and_read_back(tmp_path):
    data = np.ones((3, 1, 25, 1), np.float32)
    data[0, 0, 0, 0] = np.finfo(np.float32).max
    data[2, 0, 1, 0] = -np.finfo(np.float32).max
    np.testing.assert_array_equal(read_ntu_skeleton(write_ntu_skeleton(tmp_path / "a.skeleton", data)).data, data)
    np.testing.assert_array_equal(read_uav_skeleton(write_uav_skeleton(tmp_path / "a.txt", data[:, :, :17])).data,
                                  data[:, :, :17])


@pytest.mark.parametrize("bad, shown", [(0.5, "0.5"), (1e30, "1e+30"), (2.0**63, "9.223372036854776e+18")])
def test_an_integer_body_field_must_be_a_64_bit_integer(tmp_path, bad, shown):
    data = np.ones((3, 1, 25, 1))
    info = np.zeros((1, 1, 9))
    info[0, 0, 8] = bad  # tracking state
    with pytest.raises(InputError) as err:
        write_ntu_skeleton(tmp_path / "a.skeleton", data, body_info=info)
    assert str(err.value) == f"column 8 must hold 64-bit integers, found {shown}"


def test_the_largest_64_bit_integer_field_is_written_exactly(tmp_path):
    data = np.ones((3, 1, 25, 1))
    info = np.zeros((1, 1, 9))
    info[0, 0, 0] = -(2.0**63)  # the smallest int64, exact in float64 (the largest, 2**63 - 1, is not)
    text = write_ntu_skeleton(tmp_path / "a.skeleton", data, body_info=info, newline="\n").read_text()
    assert text.splitlines()[2] == "72057594037927936 -9223372036854775808 0 0 0 0 0 0.0 0.0 0"


def test_a_file_without_bodies_writes_back_to_the_same_bytes(tmp_path):
    path = tmp_path / "S001C001P001R001A001.skeleton"
    path.write_bytes(b"2\r\n0\r\n0\r\n")
    seq = read_ntu_skeleton(path)
    assert seq.body_info.shape == (2, 0, 9) and seq.joint_info.shape == (9, 2, 25, 0)
    assert write_ntu_skeleton(tmp_path / "again.skeleton", seq).read_bytes() == b"2\r\n0\r\n0\r\n"


def test_uint8_body_counts_write_the_file_they_say(tmp_path):
    data = np.zeros((3, 2, 25, 3))
    data[:, 0, :, 1] = 1.0
    path = write_ntu_skeleton(tmp_path / "a.skeleton", data, body_counts=np.array([2, 1], np.uint8))
    assert read_ntu_skeleton(path).body_counts.tolist() == [2, 1]


def _sequence_with_a_listed_empty_body(tmp_path):
    # Frame 0 lists 2 bodies, the second with x = y = z = 0 everywhere: only the file's count keeps it.
    frames = [[body(0, 0, ID_A), (f"{ID_B} 0 1 1 1 1 0 0.5 0.5 2", [" ".join(["0"] * 3 + ["7"] * 8 + ["1"])] * 25)]]
    path = tmp_path / NAME
    path.write_text(ntu_text(frames), newline="")
    return read_ntu_skeleton(path)


def test_a_sequence_is_written_with_its_own_counts_ids_and_fields(tmp_path):
    seq = _sequence_with_a_listed_empty_body(tmp_path)
    assert seq.body_counts.tolist() == [2] and not seq.data[..., 1].any()
    again = read_ntu_skeleton(write_ntu_skeleton(tmp_path / "copy.skeleton", seq))
    assert again.body_counts.tolist() == [2]
    assert [int(i) for i in again.body_ids[0]] == [ID_A, ID_B]
    np.testing.assert_array_equal(again.body_info[0, 1], [0, 1, 1, 1, 1, 0, 0.5, 0.5, 2])
    np.testing.assert_array_equal(again.joint_info[:, 0, 4, 1], [7] * 8 + [1])


def test_keywords_override_the_sequence_arrays(tmp_path):
    seq = _sequence_with_a_listed_empty_body(tmp_path)
    ids = np.array([[11, 12]], np.uint64)
    info = np.zeros((1, 2, 9))
    info[..., 0] = [4, 8]
    joint_info = np.full((9, 1, 25, 2), 3.0)
    path = write_ntu_skeleton(tmp_path / "copy.skeleton", seq, body_counts=[1], body_ids=ids, body_info=info,
                              joint_info=joint_info)
    again = read_ntu_skeleton(path)
    assert again.body_counts.tolist() == [1] and again.body_ids.tolist() == [[11]]
    np.testing.assert_array_equal(again.body_info[0, 0], [4, 0, 0, 0, 0, 0, 0, 0, 0])
    assert (again.joint_info == 3).all()


@pytest.mark.parametrize("shape", [(2, 1, 25, 1), (4, 1, 25, 1), (3, 1, 17, 1), (3, 25, 1)])
def test_the_writer_names_the_data_shape_it_wants(tmp_path, shape):
    with pytest.raises(InputError) as info:
        write_ntu_skeleton(tmp_path / "a.skeleton", np.ones(shape))
    assert str(info.value) == f"data must be (3, T, 25, M), got {shape}"
    assert not (tmp_path / "a.skeleton").exists()


@pytest.mark.parametrize("key, value, message", [
    ("body_ids", np.zeros((2, 3)), "body_ids must have shape (2, 2), got (2, 3)"),
    ("body_info", np.zeros((2, 2, 10)), "body_info must have shape (2, 2, 9), got (2, 2, 10)"),
    ("joint_info", np.zeros((9, 2, 25, 1)), "joint_info must have shape (9, 2, 25, 2), got (9, 2, 25, 1)"),
])
def test_the_writer_names_the_per_body_array_of_the_wrong_shape(tmp_path, key, value, message):
    with pytest.raises(InputError) as info:
        write_ntu_skeleton(tmp_path / "a.skeleton", np.ones((3, 2, 25, 2)), **{key: value})
    assert str(info.value) == message


def test_integral_float_body_ids_are_written_as_integers(tmp_path):
    ids = np.array([[3.0], [2.0**60]])  # 2**60 is exact in float64
    text = write_ntu_skeleton(tmp_path / "a.skeleton", np.ones((3, 2, 25, 1)), body_ids=ids, newline="\n").read_text()
    body_lines = [line for line in text.splitlines() if len(line.split()) == 10]
    assert [line.split()[0] for line in body_lines] == ["3", "1152921504606846976"]


@pytest.mark.parametrize("ids, found", [([[5.0], [1.5]], "found 1.5"), ([[5], [-1]], "found -1"),
                                        ([[5.0], [2.0**64]], "found 1.8446744073709552e+19"),
                                        ([[5.0], [np.nan]], "found nan"), ([["5"], ["6"]], "got dtype <U1")])
def test_body_ids_outside_64_bits_or_fractional_are_refused(tmp_path, ids, found):
    with pytest.raises(InputError) as info:
        write_ntu_skeleton(tmp_path / "a.skeleton", np.ones((3, 2, 25, 1)), body_ids=np.array(ids))
    assert str(info.value) == f"body_ids must be integers in 0..2**64 - 1, {found}"


# ---------------------------------------------------------------- names, splits and lists, pinned


def test_an_unknown_benchmark_lists_the_known_ones():
    message = "unknown NTU benchmark 'ntu60-xset'; expected one of ntu60-xsub, ntu60-xview, ntu120-xsub, ntu120-xset"
    for call in (lambda: split_ntu_samples([], "ntu60-xset"), lambda: is_training_sample(NAME, "ntu60-xset")):
        with pytest.raises(ConfigError) as info:
            call()
        assert str(info.value) == message


def test_ntu60_xsub_trains_on_its_own_twenty_performers_only():
    # Performer 45 trains in NTU-120 cross-subject but is not one of the 20 NTU-60 training IDs.
    assert not is_training_sample("S001C001P045R001A001", "ntu60-xsub")
    assert is_training_sample("S001C001P045R001A001", "ntu120-xsub")
    assert [p for p in range(1, 107) if is_training_sample(f"S001C001P{p:03d}R001A001", "ntu60-xsub")] == sorted(
        SPEC_NTU60_TRAIN)


def test_a_file_name_outside_the_scheme_is_logged_at_debug(tmp_path, caplog):
    path = tmp_path / "take_1.skeleton"
    path.write_text("0\r\n", newline="")
    with caplog.at_level(logging.DEBUG, logger="usdrl.data.ntu"):
        seq = read_ntu_skeleton(path)
    assert seq.meta == {}
    assert [r.getMessage() for r in caplog.records] == ["take_1 does not follow the NTU naming scheme; no metadata"]


def test_the_split_logs_how_many_it_left_out(caplog):
    names = ["S001C001P001R001A001", "S018C001P001R001A001", "S001C002P005R002A008", "S019C001P001R001A001",
             "S001C002P006R001A008", "S001C001P003R001A001"]
    with caplog.at_level(logging.INFO, logger="usdrl.data.ntu"):
        out = split_ntu_samples(names, "ntu60-xsub")
    assert out == {"train": [names[0]], "test": [names[5]]}
    assert [r.getMessage() for r in caplog.records] == [
        "ntu60-xsub: 1 train, 1 test; left out 2 missing and 2 non-ntu60 samples"]


def test_a_sample_list_with_bytes_outside_utf8_still_gives_its_names(tmp_path):
    path = tmp_path / "list.txt"
    path.write_bytes(b"Liste der Proben \xe9\xff (Latin-1)\nS001C002P005R002A008\r\nS001C002P006R001A008\n")
    assert read_sample_list(path) == ["S001C002P005R002A008", "S001C002P006R001A008"]


@pytest.mark.parametrize("newline", ["\r", "\n\r", " ", ""])
def test_the_writers_take_only_the_line_ends_their_readers_take(tmp_path, newline):
    data = np.ones((3, 1, 25, 1))
    writes = {tmp_path / "a.skeleton": lambda path: write_ntu_skeleton(path, data, newline=newline),
              tmp_path / "a.txt": lambda path: write_uav_skeleton(path, data[:, :, :17], newline=newline),
              tmp_path / "0001-L.txt": lambda path: write_pkummd_skeleton(path, data, newline=newline),
              tmp_path / "labels.txt": lambda path: write_pkummd_labels(path, [ActionInstance(3, 0, 5, 1)],
                                                                        newline=newline),
              tmp_path / "split.txt": lambda path: write_pkummd_split(path, ["0001-L"], ["0002-L"], newline=newline)}
    for path, write in writes.items():
        with pytest.raises(InputError) as info:
            write(path)
        assert str(info.value) == f"newline must be '\\n' or '\\r\\n', got {newline!r}"
        assert not path.exists()


def test_a_write_that_fails_half_way_leaves_the_old_file(tmp_path, monkeypatch):
    data = np.ones((3, 2, 25, 1))
    writers = [(write_ntu_skeleton, tmp_path / "a.skeleton", data),
               (write_uav_skeleton, tmp_path / "a.txt", data[:, :, :17]),
               (write_pkummd_skeleton, tmp_path / "b.txt", data)]
    old = {path: write(path, clip).read_bytes() for write, path, clip in writers}
    real_write_bytes = Path.write_bytes

    def half_then_disk_full(self, content):
        real_write_bytes(self, content[: len(content) // 2])
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Path, "write_bytes", half_then_disk_full)
    for write, path, clip in writers:
        with pytest.raises(OSError, match="No space left"):
            write(path, 2 * clip)
    monkeypatch.undo()
    assert {path: path.read_bytes() for path in old} == old
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.skeleton", "a.txt", "b.txt"]  # no temporary file left
