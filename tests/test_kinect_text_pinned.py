"""The Kinect body-frame text grammar (usdrl.data.kinect_text), pinned on hand-written files.

Every expected value here is written out by hand from the grammar of the spec
(shared/spec/data-formats.md 1.2: frame count; per frame a body count; per body a body line,
a joint count and that many joint lines), never computed by the module under test. The
error messages are compared whole: the file, the 1-based line and the words naming what was
expected and what came are the reader's contract with a user holding a broken file.
"""

import numpy as np
import pytest

from usdrl.data import read_ntu_skeleton
from usdrl.data.kinect_text import BodyFrameGrammar, check_body_counts, default_body_counts, parse_body_frames
from usdrl.errors import DataFormatError, InputError

#: A small grammar: 2 joints, body lines "ID int float", joint lines "float float int".
TINY = BodyFrameGrammar(num_joints=2, body_fields=(3, 3), body_int_fields=(0,), joint_fields=(3, 3),
                        joint_int_fields=(2,))
#: A loose one, as UAV-Human: 1 to 3 body-line fields, 2 to 4 joint-line fields.
LOOSE = BodyFrameGrammar(num_joints=2, body_fields=(1, 3), body_int_fields=(), joint_fields=(2, 4))

# One frame, one body (line 3), joint count on line 4, joints on lines 5-6.
VALID = ["1", "1", "7 0 0.5", "2", "0.1 0.2 2", "0.3 0.4 1"]


def _parse(tmp_path, lines, grammar=TINY):
    path = tmp_path / "tiny.skeleton"
    path.write_bytes("".join(f"{line}\r\n" for line in lines).encode("ascii"))
    return path, parse_body_frames(path, grammar)


def _error(tmp_path, lines, grammar=TINY):
    path = tmp_path / "tiny.skeleton"
    path.write_bytes("".join(f"{line}\r\n" for line in lines).encode("ascii"))
    with pytest.raises(DataFormatError) as info:
        parse_body_frames(path, grammar)
    return path, str(info.value)


def test_a_valid_tiny_file_is_read_field_by_field(tmp_path):
    _, frames = _parse(tmp_path, ["3", "1", "7 0 0.5", "2", "0.1 0.2 2", "0.3 0.4 1", "0", "2",
                                  "9 -1 -2.5", "2", "1 2 0", "3 4 0", "10 4 1e-05", "2", "5 6 7", "-8 -9 -10"])
    assert frames.body_counts.tolist() == [1, 0, 2] and frames.body_counts.dtype == np.int64
    assert frames.body_ids.tolist() == [7, 9, 10] and frames.body_ids.dtype == np.uint64
    # Integer body fields keep their sign: the grammar asks for an integer, not a count.
    np.testing.assert_array_equal(frames.body_values, [[0, 0.5], [-1, -2.5], [4, 1e-05]])
    np.testing.assert_array_equal(frames.joints, [[[0.1, 0.2, 2], [0.3, 0.4, 1]], [[1, 2, 0], [3, 4, 0]],
                                                  [[5, 6, 7], [-8, -9, -10]]])
    # Slots: frame 0 holds body 7 in slot 0, frame 1 none, frame 2 bodies 9 and 10.
    np.testing.assert_array_equal(frames.to_slots(frames.body_ids), [[7, 0], [0, 0], [9, 10]])


@pytest.mark.parametrize("lines, line, message", [
    ([], 1, "file is empty"),
    (["x"], 1, "the number of frames must be an integer, found 'x'"),
    (["1 2"], 1, "expected the number of frames (one integer), found 2 fields"),
    (["-1"], 1, "the number of frames must be >= 0, found -1"),
    (["2", "0"], 3, "unexpected end of file, expected the body count of frame 2"),
    (["1", "z"], 2, "the body count of frame 1 must be an integer, found 'z'"),
    (["1", "1"], 3, "unexpected end of file, expected the body line of body 1 of frame 1"),
    (["1", "1", "7 0"], 3, "the body line of body 1 of frame 1 must have 3 fields, found 2"),
    (["1", "1", "7.5 0 0.5"], 3, "the body ID of body 1 of frame 1 must be an integer, found '7.5'"),
    (["1", "1", "18446744073709551616 0 0.5"], 3,
     "the body ID of body 1 of frame 1 does not fit in 64 bits: 18446744073709551616"),
    (["1", "1", "7 0.5 0.5"], 3, "body field 2 of body 1 of frame 1 must be an integer, found '0.5'"),
    (["1", "1", "7 0 0.5"], 4, "unexpected end of file, expected the joint count of body 1 of frame 1"),
    (["1", "1", "7 0 0.5", "y"], 4, "the joint count of body 1 of frame 1 must be an integer, found 'y'"),
    (["1", "1", "7 0 0.5", "3"], 4, "body 1 of frame 1 has 3 joints, expected 2"),
    (VALID[:5], 6, "unexpected end of file, expected 2 joint lines of body 1 of frame 1"),
    (VALID[:4], 5, "unexpected end of file, expected 2 joint lines of body 1 of frame 1"),
    ([*VALID, "0"], 7, "unexpected content after the last of the 1 declared frames"),
    ([*VALID[:5], "0.3 0.4 1.5"], 6, "joint field 3 must be an integer, found 1.5"),
    ([*VALID[:5], "0.3 0.4"], 6, "a joint line must have 3 fields, found 2"),
    (["1", "1", "7 0 abc", *VALID[3:]], 3,
     "'abc' in a body line is not a number (a finite decimal such as 0.215 or -1e-05)"),
    (["1", "1", "7 0 1e39", *VALID[3:]], 3, "'1e39' in a body line is not a finite float32 value"),
])
def test_each_malformed_tiny_file_names_its_line_and_what_was_expected(tmp_path, lines, line, message):
    path, error = _error(tmp_path, lines)
    assert error == f"{path}, line {line}: {message}"


def test_the_second_body_line_is_named_by_its_own_line(tmp_path):
    # Lines: 1 frame count, 2-6 frame 1, 7 body count of frame 2, 8-11 its body 1, 12 the line of its body 2.
    lines = ["2", *VALID[1:], "2", "8 1 0.25", "2", "1 1 1", "1 1 1", "9 1 oops", "2", "1 1 1", "1 1 1"]
    path, error = _error(tmp_path, lines)
    assert lines[12 - 1] == "9 1 oops"
    assert error == (f"{path}, line 12: 'oops' in a body line is not a number "
                     "(a finite decimal such as 0.215 or -1e-05)")


def test_a_loose_grammar_states_its_field_range(tmp_path):
    path, error = _error(tmp_path, ["1", "1", "7 0 0 0", "2", "1 2", "3 4"], LOOSE)
    assert error == f"{path}, line 3: the body line of body 1 of frame 1 must have 1 to 3 fields, found 4"


def test_joint_lines_are_padded_to_the_longest_not_to_the_grammar_maximum(tmp_path):
    _, two = _parse(tmp_path, ["1", "1", "7", "2", "1 2", "3 4"], LOOSE)
    assert two.joints.shape == (1, 2, 2)  # 2-field lines stay 2 wide though the grammar allows 4
    assert two.body_values.shape == (1, 0)
    _, mixed = _parse(tmp_path, ["1", "1", "7 0.5", "2", "1 2", "3 4 5"], LOOSE)
    np.testing.assert_array_equal(mixed.joints, [[[1, 2, 0], [3, 4, 5]]])
    np.testing.assert_array_equal(mixed.body_values, [[0.5]])


def test_a_file_without_bodies_keeps_the_field_widths(tmp_path):
    _, frames = _parse(tmp_path, ["2", "0", "0"])
    assert frames.body_counts.tolist() == [0, 0] and frames.body_ids.shape == (0,)
    assert frames.body_values.shape == (0, 2) and frames.joints.shape == (0, 2, 3)
    path = tmp_path / "S001C001P001R001A001.skeleton"
    path.write_bytes(b"2\r\n0\r\n0\r\n")
    seq = read_ntu_skeleton(path)
    assert seq.data.shape == (3, 2, 25, 0) and seq.body_info.shape == (2, 0, 9)
    assert seq.joint_info.shape == (9, 2, 25, 0) and seq.body_ids.shape == (2, 0)


# ---------------------------------------------------------------- the body-slot bound

SPARE = 16384  # body slots a file may ask for beyond one per frame and one per stored body


def _one_crowded_frame(num_frames):
    body = ["5 0 0", "2", "0 0 0", "0 0 0"]
    return [str(num_frames), "2", *body, *body, *["0"] * (num_frames - 1)]


def test_the_body_slot_bound_is_inclusive(tmp_path):
    # T frames, one of them with 2 bodies: T x 2 slots for 2 bodies; allowed while 2T <= T + 2 + SPARE.
    limit = SPARE + 2
    _, frames = _parse(tmp_path, _one_crowded_frame(limit))
    assert frames.body_counts.shape == (limit,) and frames.to_slots(frames.body_ids).shape == (limit, 2)
    path, error = _error(tmp_path, _one_crowded_frame(limit + 1))
    assert error == (f"{path}, line 2: frame 1 lists 2 bodies, so the {limit + 1} frames need {limit + 1} x 2 body "
                     f"slots for the 2 bodies stored (at most frames + bodies + {SPARE} are allowed)")


# ---------------------------------------------------------------- NTU files (25 joints, 10 + 12 fields)


def _ntu_body_line(fields):
    joints = [" ".join(["0.5"] * 11 + ["2"])] * 25
    return ["1", "1", fields, "25", *joints]


def test_ntu_body_lines_must_have_exactly_ten_fields(tmp_path):
    path = tmp_path / "S001C001P001R001A001.skeleton"
    path.write_text("\r\n".join(_ntu_body_line("72057594037927936 0 1 1 1 1 0 0.5 0.5")) + "\r\n", newline="")
    with pytest.raises(DataFormatError) as info:
        read_ntu_skeleton(path)
    assert str(info.value) == f"{path}, line 3: the body line of body 1 of frame 1 must have 10 fields, found 9"


@pytest.mark.parametrize("position, name", [(1, "clipped edges"), (6, "is restricted"), (9, "tracking state")])
def test_ntu_integer_body_fields_are_named_by_their_place_in_the_line(tmp_path, position, name):
    fields = "72057594037927936 0 1 1 1 1 0 0.5 0.5 2".split()
    fields[position] = "1.5"
    path = tmp_path / "S001C001P001R001A001.skeleton"
    path.write_text("\r\n".join(_ntu_body_line(" ".join(fields))) + "\r\n", newline="")
    with pytest.raises(DataFormatError) as info:
        read_ntu_skeleton(path)
    # The ID is field 1 of the line, so the field at 0-based position p is field p + 1.
    assert str(info.value) == (f"{path}, line 3: body field {position + 1} of body 1 of frame 1 must be an integer, "
                               "found '1.5'"), name


# ---------------------------------------------------------------- body counts given to a writer

DATA = np.zeros((3, 2, 25, 3))  # T = 2 frames, V = 25, M = 3 slots
DATA[:, 0, :, 1] = 1.0  # frame 0 uses slot 1: at least 2 bodies there


def test_body_counts_default_to_the_last_used_slot():
    assert default_body_counts(DATA).tolist() == [2, 0]
    assert default_body_counts(np.zeros((3, 4, 25, 0))).tolist() == [0, 0, 0, 0]
    assert default_body_counts(np.zeros((3, 0, 25, 2))).tolist() == []


@pytest.mark.parametrize("counts", [[2, 0], [3, 3], np.array([2, 1], np.uint8), np.array([2.0, 0.0])])
def test_given_body_counts_of_any_number_type_are_kept(counts):
    checked = check_body_counts(DATA, counts)
    assert checked.dtype == np.int64 and checked.tolist() == [int(c) for c in counts]


@pytest.mark.parametrize("counts, shown", [
    ([2, 0, 0], "got shape (3,) and dtype int64"),      # one count too many
    ([[2, 0]], "got shape (1, 2) and dtype int64"),
    (["2", "0"], "got shape (2,) and dtype <U1"),
    ([2, -1], "found -1"),                               # negative
    ([2, 4], "found 4"),                                 # more bodies than slots
    ([2.5, 0], "found 2.5"),                             # fractional: refused, not truncated to 2
    ([2, 1.5], "found 1.5"),
])
def test_bad_body_counts_are_refused_with_what_came(counts, shown):
    with pytest.raises(InputError) as info:
        check_body_counts(DATA, counts)
    assert str(info.value) == f"body_counts must be 2 integers in 0..3, {shown}"


def test_body_counts_below_the_last_used_slot_are_refused():
    with pytest.raises(InputError) as info:
        check_body_counts(DATA, [1, 0])
    assert str(info.value) == "data has non-zero bodies in slots past their frame's body count"


def test_a_decimal_that_rounds_to_the_largest_float32_is_finite(tmp_path):
    # float32 max is 3.40282346...e38; 3.4028235e38 rounds to it, 3.4028236e38 to infinity.
    _, frames = _parse(tmp_path, ["1", "1", "7 0 -3.4028235e+38", "2", "3.4028235e38 0 0", "0 0 0"])
    assert np.float32(frames.joints[0, 0, 0]) == np.finfo(np.float32).max
    assert np.float32(frames.body_values[0, 1]) == -np.finfo(np.float32).max
    path, error = _error(tmp_path, ["1", "1", "7 0 0", "2", "3.4028236e38 0 0", "0 0 0"])
    assert error == f"{path}, line 5: '3.4028236e38' in a joint line is not a finite float32 value"
