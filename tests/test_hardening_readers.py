"""Text readers under crafted input: memory bounded by the file's size, numbers parsed as the formats write them."""

import tracemalloc

import numpy as np
import pytest
from data_helpers import ntu_text
from hypothesis import given, settings
from hypothesis import strategies as st

from usdrl._text import NUMBER_RE, parse_number_lines, parse_number_rows
from usdrl.data import (
    parse_ntu_name,
    parse_pkummd_name,
    parse_uav_name,
    read_ntu_skeleton,
    read_pkummd_labels,
    read_pkummd_skeleton,
    read_uav_skeleton,
)
from usdrl.data.kinect_text import SPARE_BODY_SLOTS
from usdrl.data.uav import PLACEHOLDER_BODY_LINE
from usdrl.errors import DataFormatError

UAV_NAME = "P070S01G10B00H10UC102000LC092000A031R0_09131758.txt"


def uav_body(width=3):
    return PLACEHOLDER_BODY_LINE, [" ".join(["0.5"] * width)] * 17


def test_uav_joint_line_longer_than_the_format_is_refused_with_its_line(tmp_path):
    # One joint line of 20,000 fields: the reader used to zero-pad every joint line to it.
    body_line, joints = uav_body()
    joints = [joints[0], " ".join(["1"] * 20_000), *joints[2:]]
    path = tmp_path / UAV_NAME
    path.write_text(ntu_text([[uav_body(), (body_line, joints)]], num_joints=17), newline="")
    with pytest.raises(DataFormatError, match=r"line 25: a joint line must have 2 to 12 fields, found 20000"):
        read_uav_skeleton(path)


def test_uav_body_line_longer_than_the_format_is_refused(tmp_path):
    frames = [[(PLACEHOLDER_BODY_LINE + " 0" * 5_000, uav_body()[1])]]
    path = tmp_path / UAV_NAME
    path.write_text(ntu_text(frames, num_joints=17), newline="")
    with pytest.raises(DataFormatError, match=r"line 3: the body line of body 1 of frame 1 must have 1 to 10 fields"):
        read_uav_skeleton(path)


def test_uav_twelve_field_lines_still_read(tmp_path):
    path = tmp_path / UAV_NAME
    path.write_text(ntu_text([[uav_body(12)], [uav_body(2)]], num_joints=17), newline="")
    data = read_uav_skeleton(path).data
    np.testing.assert_array_equal(data[:, 0, 5, 0], [0.5, 0.5, 0.5])
    np.testing.assert_array_equal(data[:, 1, 5, 0], [0.5, 0.5, 0.0])


@pytest.mark.parametrize("reader, joints", [(read_uav_skeleton, 17), (read_ntu_skeleton, 25)])
def test_many_bodies_in_one_frame_among_empty_frames_is_refused(tmp_path, reader, joints):
    # 2 bytes per empty frame, yet each would get M slots: (T, M) grows with the square of the file size.
    body = ("1 0 0 0 0 0 0 0 0 2", [" ".join(["0.5"] * 11 + ["2"])] * joints)
    num_empty, bodies = SPARE_BODY_SLOTS // 3, 5
    frames = [[body] * bodies] + [[]] * num_empty
    path = tmp_path / (UAV_NAME if joints == 17 else "S001C001P001R001A001.skeleton")
    path.write_text(ntu_text(frames, num_joints=joints, newline="\n"), newline="")
    with pytest.raises(DataFormatError, match=rf"line 2: frame 1 lists {bodies} bodies"):
        reader(path)
    # The same bodies spread over few frames read fine (M slots for each of them).
    path.write_text(ntu_text([[body] * bodies] + [[]] * 300, num_joints=joints, newline="\n"), newline="")
    assert reader(path).data.shape[1:] == (301, joints, bodies)


@settings(max_examples=25, deadline=None)
@given(frames=st.lists(st.lists(st.integers(2, 12), max_size=3), min_size=1, max_size=6))
def test_uav_reader_memory_is_proportional_to_the_file(tmp_path_factory, frames):
    path = tmp_path_factory.mktemp("uav") / UAV_NAME
    path.write_text(ntu_text([[uav_body(w) for w in bodies] for bodies in frames], num_joints=17), newline="")
    size = path.stat().st_size
    tracemalloc.start()
    try:
        read_uav_skeleton(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak <= 64 * size + 256 * 1024, (peak, size)


# ---- numbers as the formats write them ----------------------------------------------


@pytest.mark.parametrize("token", ["0.2_15", "1_0", "١", "nan", "inf", "Infinity", "0x1p3", "1e", " "])
def test_number_tokens_that_float_would_take_are_refused(token):
    with pytest.raises(DataFormatError, match=r"f.txt, line 7: .* in a joint line is not a number"):
        parse_number_rows("f.txt", [["1", token]], lambda i: 7, (2, 2), "a joint line")


def test_pkummd_frame_with_a_digit_separator_is_refused(tmp_path):
    # One flipped byte ('1' -> '_') used to turn 0.215 into 0.25 silently.
    values = ["0.215"] * 150
    values[3] = "0.2_5"
    path = tmp_path / "0002-L.txt"
    path.write_text(" ".join(["0.1"] * 150) + "\n" + " ".join(values) + "\n")
    with pytest.raises(DataFormatError, match=r"0002-L.txt, line 2: '0.2_5' in a frame line is not a number"):
        read_pkummd_skeleton(path)


@pytest.mark.parametrize("field", ["1_0", "0x1", "1.0", "++1"])
def test_label_integers_are_strict(tmp_path, field):
    path = tmp_path / "0002-L.txt"
    path.write_text(f"1,2,{field},1\n")
    with pytest.raises(DataFormatError, match=r"line 1: the end frame must be an integer"):
        read_pkummd_labels(path)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.lists(st.text(alphabet="0123456789+-.eE_xn ", min_size=1, max_size=6), min_size=2, max_size=2),
                min_size=1, max_size=4))
def test_fast_and_strict_number_parsing_agree(rows):
    """The numpy fast path and the token-by-token path accept exactly the tokens of NUMBER_RE."""
    rows = [[token.strip() or "0" for token in row] for row in rows]
    rows = [[t for part in row for t in part.split()] for row in rows]
    valid = all(NUMBER_RE.fullmatch(t) and abs(float(t)) <= 3.4e38 for row in rows for t in row)
    expected_width = {len(row) for row in rows}
    lines = [" ".join(row) for row in rows]
    try:
        fast = parse_number_lines("f", lines, lambda i: i + 1, (1, None), "a line")
    except DataFormatError:
        fast = None
    assert (fast is not None) == bool(valid)
    if fast is not None:
        padded = [[float(t) for t in row] + [0.0] * (fast.shape[1] - len(row)) for row in rows]
        np.testing.assert_array_equal(fast, padded)
        assert fast.shape[1] == max(expected_width)


@pytest.mark.parametrize("parse, name", [
    (parse_ntu_name, "S00\u0661C001P001R001A001"),
    (parse_uav_name, "P07\u0660S01G10B00H10UC102000LC092000A031R0_09131758.txt"),
    (parse_pkummd_name, "000\u0662-L"),
])
def test_sample_names_take_ascii_digits_only(parse, name):
    with pytest.raises(DataFormatError, match="not a"):
        parse(name)
