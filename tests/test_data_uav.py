import numpy as np
import pytest
from data_helpers import check_reader_on_bytes, mutated_bytes, ntu_text
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from usdrl.data import parse_uav_name, read_uav_skeleton, split_uav_samples, write_uav_skeleton
from usdrl.data.uav import PLACEHOLDER_BODY_LINE
from usdrl.errors import ConfigError, DataFormatError, InputError

NAME = "P070S01G10B00H10UC102000LC092000A031R0_09131758.txt"


def uav_body(frame, index, widths=(3,)):
    """A placeholder body line and 17 joint lines with ``widths[j % len(widths)]`` numbers."""
    lines = []
    for j in range(17):
        values = [f"{j + 0.5 * index:g}", f"{-j - frame:g}", f"{0.25 * j:g}", "7", "8", "9", "1", "0", "0", "0", "0",
                  "2"]
        lines.append(" ".join(values[: widths[j % len(widths)]]))
    return PLACEHOLDER_BODY_LINE, lines


def test_hand_built_file_with_mixed_joint_lines(tmp_path):
    frames = [
        [uav_body(0, 0, widths=(2, 3, 12)), uav_body(0, 1)],
        [],
        [uav_body(2, 0), uav_body(2, 1), uav_body(2, 2, widths=(2,))],
    ]
    path = tmp_path / NAME
    path.write_text(ntu_text(frames, num_joints=17), newline="")
    seq = read_uav_skeleton(path)
    assert seq.data.shape == (3, 3, 17, 3) and seq.data.dtype == np.float32 and seq.layout == "uav17"
    assert seq.body_counts.tolist() == [2, 0, 3]
    assert seq.body_ids.tolist() == [[0, 0, 0], [0, 0, 0], [0, 0, 0]]  # placeholder "000"
    assert not seq.data[:, 1].any()
    # Joint 0 of body 0 has only x, y: z = 0; joint 1 has x, y, z; joint 2 has 12 fields (rest ignored).
    np.testing.assert_array_equal(seq.data[:, 0, 0, 0], [0, 0, 0])
    np.testing.assert_array_equal(seq.data[:, 0, 1, 0], [1, -1, 0.25])
    np.testing.assert_array_equal(seq.data[:, 0, 2, 0], [2, -2, 0.5])
    np.testing.assert_array_equal(seq.data[:, 0, 3, 0], [3, -3, 0])
    np.testing.assert_array_equal(seq.data[:, 2, 4, 2], [5, -6, 0])
    np.testing.assert_array_equal(seq.data[:, 2, 4, 1], [4.5, -6, 1])
    assert seq.meta["label"] == 31 and seq.label == 31
    assert seq.joint_info is None and seq.body_info is None


def test_parse_uav_name():
    fields = parse_uav_name("/x/" + NAME)
    assert (fields.person, fields.setup, fields.action, fields.replicate) == (70, 1, 31, 0)
    assert (fields.gender, fields.backpack, fields.hat) == ("10", "00", "10")
    assert (fields.upper_clothing, fields.lower_clothing, fields.timestamp) == ("102000", "092000", "09131758")
    assert fields.label == 31  # A is already 0-based
    assert fields.as_dict()["person"] == 70
    with pytest.raises(DataFormatError):
        parse_uav_name("0000.txt")


def test_test_release_names_read_without_metadata(tmp_path):
    path = write_uav_skeleton(tmp_path / "0000.txt", np.ones((3, 2, 17, 1), np.float32))
    seq = read_uav_skeleton(path)
    assert seq.meta == {} and seq.label is None and seq.name == "0000"


@pytest.mark.parametrize("channels", [2, 3])
@pytest.mark.parametrize("newline", ["\n", "\r\n"])
def test_writer_round_trip(tmp_path, channels, newline):
    rng = np.random.default_rng(channels)
    data = rng.normal(size=(channels, 5, 17, 3)).astype(np.float32)
    counts = np.array([3, 0, 1, 2, 3])
    for t, c in enumerate(counts):
        data[:, t, :, c:] = 0
    seq = read_uav_skeleton(write_uav_skeleton(tmp_path / NAME, data, body_counts=counts, newline=newline))
    expected = np.zeros((3, 5, 17, 3), np.float32)
    expected[:channels] = data
    np.testing.assert_array_equal(seq.data, expected)
    np.testing.assert_array_equal(seq.body_counts, counts)
    lines = (tmp_path / NAME).read_text().splitlines()
    assert lines[2] == PLACEHOLDER_BODY_LINE and lines[3] == "17" and len(lines[4].split()) == channels
    # Writing the sequence back gives the same file.
    again = write_uav_skeleton(tmp_path / "again.txt", seq.data[:channels], body_counts=seq.body_counts,
                               newline=newline)
    assert again.read_bytes() == (tmp_path / NAME).read_bytes()


def test_writer_rejects_bad_shapes(tmp_path):
    with pytest.raises(InputError):
        write_uav_skeleton(tmp_path / "x.txt", np.zeros((3, 2, 25, 1)))
    with pytest.raises(InputError):
        write_uav_skeleton(tmp_path / "x.txt", np.zeros((4, 2, 17, 1)))


@pytest.mark.parametrize("edit, message", [
    (lambda lines: [*lines[:3], "16", *lines[4:]], "16 joints"),
    (lambda lines: [*lines[:5], "1.5", *lines[6:]], "2 to 12 fields, found 1"),
    (lambda lines: [*lines[:2], "", *lines[3:]], "1 to 10 fields, found 0"),
    (lambda lines: [*lines[:2], "0.5 0 0", *lines[3:]], "integer"),
    (lambda lines: [*lines[:2], "0 x", *lines[3:]], "not a number"),
    (lambda lines: lines[:-1], "end of file"),
])
def test_malformed_uav_files(tmp_path, edit, message):
    lines = ntu_text([[uav_body(0, 0)]], num_joints=17).split("\r\n")[:-1]
    path = tmp_path / NAME
    path.write_text("\n".join(edit(lines)) + "\n")
    with pytest.raises(DataFormatError, match=message) as info:
        read_uav_skeleton(path)
    assert NAME in str(info.value)


SPEC_CSV1_TEST = {1, 3, 4, 9, 22, 23, 24, 31, 41, 54, 58, 60, 66, 72, 74, 75, *range(91, 98), 99, 101, 104, 107, 108,
                  109, 113}
SPEC_CSV2_TEST = {1, 2, 7, 9, 13, 15, 17, 23, 25, 27, 28, 33, 34, 41, 42, 48, 50, 51, 53, 55, 58, 65, 68, 76, 82, 85,
                  90, 98, 105, 116}


@pytest.mark.parametrize("protocol, test_persons", [("csv1", SPEC_CSV1_TEST), ("csv2", SPEC_CSV2_TEST)])
def test_cross_subject_splits(protocol, test_persons):
    names = [f"P{p:03d}S00G10B00H00UC000000LC000000A{a:03d}R0_01010000.txt" for p in range(119) for a in (0, 154)]
    out = split_uav_samples(names, protocol)
    assert len(out["train"]) == 89 * 2 and len(out["test"]) == 30 * 2
    assert {parse_uav_name(n).person for n in out["test"]} == test_persons
    with pytest.raises(ConfigError):
        split_uav_samples(names, "csv3")


@st.composite
def small_uav_text(draw):
    frames = [[uav_body(t, b, widths=(draw(st.sampled_from([2, 3, 5])),)) for b in range(draw(st.integers(0, 3)))]
              for t in range(draw(st.integers(1, 3)))]
    return ntu_text(frames, newline=draw(st.sampled_from(["\r\n", "\n"])), num_joints=17)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_mutated_files_raise_only_format_errors(data):
    seq = check_reader_on_bytes(read_uav_skeleton, data.draw(mutated_bytes(data.draw(small_uav_text()))), NAME)
    if seq is not None:
        assert seq.data.shape[:3] == (3, seq.num_frames, 17) and np.isfinite(seq.data).all()
