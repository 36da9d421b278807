import collections
import os
import pickle
import warnings

import numpy as np
import pytest
from data_helpers import FIXTURES
from hypothesis import given, settings
from hypothesis import strategies as st

from usdrl.data import annotation_to_clip, clip_to_pyskl, load_pyskl, pose_to_clip, pyskl_to_clip, restricted_load
from usdrl.errors import ConfigError, DataFormatError, InputError

FIXTURE = FIXTURES / "pyskl" / "sample.pkl"


def test_real_fixture_loads():
    content = load_pyskl(FIXTURE)
    assert list(content["split"]) == ["train"] and len(content["split"]["train"]) == 100
    annotations = content["annotations"]
    assert len(annotations) == 100
    ann = annotations[0]
    assert set(ann) == {"frame_dir", "label", "img_shape", "original_shape", "total_frames", "frame_inds",
                        "box_score", "valid"}
    assert ann["frame_inds"].dtype == np.int16 and ann["box_score"].dtype == np.float16
    assert ann["frame_inds"].shape == ann["box_score"].shape
    assert set(ann["valid"]) == {0.5, 0.6, 0.7, 0.8, 0.9}
    assert all(isinstance(a["label"], int) and len(a["img_shape"]) == 2 for a in annotations)
    assert content["split"]["train"] == [a["frame_dir"] for a in annotations]
    # A table-of-contents annotation has no keypoints to turn into a clip.
    with pytest.raises(DataFormatError, match="no 'keypoint'"):
        annotation_to_clip(ann)


class _Exploit:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


@pytest.mark.parametrize("protocol", [0, 2, 5])
def test_malicious_pickle_is_refused_without_running(tmp_path, protocol):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps({"annotations": [_Exploit(marker)]}, protocol=protocol))
    with pytest.raises(DataFormatError, match=rf"refusing to load global {os.system.__module__}\.system") as info:
        load_pyskl(path)
    assert str(path) in str(info.value)
    assert not marker.exists()


@pytest.mark.parametrize("payload, name", [
    (b"cos\nsystem\n(S'echo hi'\ntR.", "os.system"),
    (b"cbuiltins\neval\n(S'1+1'\ntR.", "builtins.eval"),
    (b"c__builtin__\ngetattr\n(cnumpy\nndarray\nS'tofile'\ntR.", "__builtin__.getattr"),
    (b"cnumpy\nload\n(S'x.npy'\ntR.", "numpy.load"),
    (b"ccopyreg\n_reconstructor\n(cnumpy\nndarray\ncnumpy\nndarray\nNtR.", "copyreg._reconstructor"),
])
def test_other_globals_are_refused(payload, name):
    with pytest.raises(DataFormatError, match=rf"global {name}\b"):
        restricted_load(payload)


def test_codecs_encode_only_for_latin1():
    with pytest.raises(DataFormatError, match="not a readable pickle"):
        restricted_load(b"c_codecs\nencode\n(Vabc\nVzlib_codec\ntR.")
    assert restricted_load(b"c_codecs\nencode\n(Vabc\nVlatin1\ntR.") == b"abc"


def test_bytes_only_from_bytes():
    assert restricted_load(b"c__builtin__\nbytes\n)R.") == b""
    with pytest.raises(DataFormatError, match="not a readable pickle"):
        restricted_load(b"c__builtin__\nbytes\n(I5\ntR.")      # bytes(5): five zero bytes from an int


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_numpy_content_round_trips_at_every_protocol(protocol):
    content = {
        "f16": np.arange(6, dtype=np.float16).reshape(2, 3),
        "strided": np.arange(12.0).reshape(3, 4)[:, ::2],
        "scalars": (np.float32(1.5), np.int64(7)),
        "strings": np.array(["ab", "c"]),
        "empty": np.zeros((0, 17, 2), np.float32),       # protocols 0-2 store its buffer as bytes()
        "objects": np.array([{"x": 1}, (2,)], dtype=object),
        "builtins": [{1, 2}, frozenset([3]), bytearray(b"xy"), b"raw", b"", 1 + 2j, None, True],
        "ordered": collections.OrderedDict(a=1),
    }
    loaded = restricted_load(pickle.dumps(content, protocol=protocol))
    for key in ("f16", "strided", "strings", "empty"):
        np.testing.assert_array_equal(loaded[key], content[key])
        assert loaded[key].dtype == content[key].dtype
    assert loaded["scalars"] == content["scalars"] and type(loaded["scalars"][0]) is np.float32
    assert loaded["objects"].tolist() == content["objects"].tolist()
    assert loaded["builtins"] == content["builtins"] and loaded["ordered"] == content["ordered"]


def test_dtypes_shared_objects_and_deep_sharing():
    shared = [1, 2]
    content = {"dtypes": [np.dtype(">f4"), np.dtype("U3"), np.dtype("S2"), np.dtype("O"), np.dtype("?")],
               "a": shared, "b": shared, "u": np.array(["abc", "d"]), "be": np.arange(3, dtype=">i4")}
    loaded = restricted_load(pickle.dumps(content, protocol=2))
    assert loaded["dtypes"] == content["dtypes"] and all(type(d) is type(e) for d, e in
                                                         zip(loaded["dtypes"], content["dtypes"], strict=True))
    assert loaded["a"] is loaded["b"]
    assert loaded["be"].tolist() == [0, 1, 2]  # numpy's own unpickling also makes the array native-endian
    assert type(loaded["u"]) is np.ndarray and loaded["u"].tolist() == ["abc", "d"]
    # 2**60 paths through shared lists: finishing the load must not walk them all.
    deep = [0]
    for _ in range(60):
        deep = [deep, deep]
    assert restricted_load(pickle.dumps(deep))[0][1][0] is not None


@pytest.mark.parametrize("content", [np.zeros(2, dtype=[("x", "f4")]), np.zeros(2, dtype="M8[ns]"),
                                     np.dtype("(2,)f4")])
def test_other_dtypes_are_refused(content):
    with pytest.raises(DataFormatError, match="not allowed|not a readable"):
        restricted_load(pickle.dumps(content, protocol=2))


def test_malformed_dtype_state_is_an_error_not_a_crash():
    # numpy's own dtype.__setstate__ crashes the interpreter on this state (found by fuzzing).
    raw = pickle.dumps(np.zeros(3, np.float16), protocol=2)
    bad = raw.replace(b"X\x01\x00\x00\x00<q", b"X\x01\x00\x00\x00Nq").replace(b"NNNJ", b"NJ")
    assert bad != raw
    with pytest.raises(DataFormatError, match="dtype state"):
        restricted_load(bad)


@pytest.mark.parametrize("module", ["numpy.core.multiarray", "numpy._core.multiarray"])
def test_numpy_1_and_2_module_paths(module):
    raw = pickle.dumps(np.arange(4, dtype=np.float32), protocol=2)
    for old in (b"numpy._core.multiarray", b"numpy.core.multiarray"):
        raw = raw.replace(old, module.encode())
    assert module.encode() in raw
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no DeprecationWarning from the numpy.core alias
        np.testing.assert_array_equal(restricted_load(raw), np.arange(4, dtype=np.float32))


def test_hostile_sizes_do_not_allocate():
    # A PUT with a huge memo index: the C unpickler would size a table by it.
    assert restricted_load(b"\x80\x02Nr\x00\x00\x00\x04.") is None
    # A BYTEARRAY8 declaring a terabyte.
    with pytest.raises(DataFormatError, match="longer than the pickle"):
        restricted_load(b"\x80\x05\x96" + (2**40).to_bytes(8, "little") + b"abc")


@pytest.mark.parametrize("raw", [b"", b"\x80\x05garbage", pickle.dumps({"a": 1})[:-3], b"not a pickle"])
def test_corrupt_pickles(raw):
    with pytest.raises(DataFormatError):
        restricted_load(raw)


_SMALL_PICKLES = [pickle.dumps({"split": {"a": ["x"]}, "annotations": [{"frame_dir": "x", "label": 1,
                                                                        "keypoint": np.ones((1, 2, 17, 2), np.float16),
                                                                        "s": {1}, "n": np.int64(3)}]}, protocol=p)
                  for p in range(pickle.HIGHEST_PROTOCOL + 1)]


@settings(max_examples=150, deadline=None)
@given(st.sampled_from(_SMALL_PICKLES), st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255),
                                                           st.sampled_from(["set", "cut", "insert"])),
                                                 min_size=1, max_size=3))
def test_mutated_pickles_raise_only_format_errors(raw, edits):
    raw = bytearray(raw)
    for position, value, kind in edits:
        i = position % (len(raw) + 1)
        if kind == "set" and i < len(raw):
            raw[i] = value
        elif kind == "cut":
            del raw[i:]
        else:
            raw[i:i] = bytes([value])
    try:
        loaded = restricted_load(bytes(raw))
    except DataFormatError:
        return
    assert _only_plain_values(loaded)   # whatever loads is data: no other type can come out


_PLAIN = (str, bytes, bytearray, int, float, complex, bool, type(None), np.generic, np.dtype)


def _only_plain_values(obj, depth=0) -> bool:
    if depth > 50:
        return True
    if isinstance(obj, dict):
        return all(_only_plain_values(k, depth + 1) and _only_plain_values(v, depth + 1) for k, v in obj.items())
    if isinstance(obj, list | tuple | set | frozenset):
        return all(_only_plain_values(item, depth + 1) for item in obj)
    if isinstance(obj, np.ndarray):
        return type(obj) is np.ndarray and (obj.dtype.kind != "O" or all(
            _only_plain_values(item, depth + 1) for item in obj.flat))
    return isinstance(obj, _PLAIN)


def test_unmutated_small_pickles_load_to_their_content():
    for raw in _SMALL_PICKLES:
        loaded = restricted_load(raw)
        assert loaded["split"] == {"a": ["x"]} and _only_plain_values(loaded)
        annotation = loaded["annotations"][0]
        assert annotation["s"] == {1} and annotation["n"] == 3 and annotation["keypoint"].dtype == np.float16
        np.testing.assert_array_equal(annotation["keypoint"], np.ones((1, 2, 17, 2)))


# ---------------------------------------------------------------- annotations


def _annotation_2d(num_persons=1, frames=4):
    rng = np.random.default_rng(num_persons)
    keypoint = np.zeros((num_persons, frames, 17, 2), np.float16)
    for v in range(17):
        keypoint[:, :, v] = (100 * (v + 1), 10 * (v + 1))
    keypoint += rng.integers(0, 20, size=keypoint.shape).astype(np.float16)
    return {"frame_dir": "S001C001P001R001A001", "label": 0, "img_shape": (1000, 2000),
            "original_shape": (1000, 2000), "total_frames": frames, "keypoint": keypoint,
            "keypoint_score": rng.uniform(0, 1, size=keypoint.shape[:3]).astype(np.float16)}


def test_2d_annotation_pickle_to_clip(tmp_path):
    ann = _annotation_2d()
    path = tmp_path / "ntu60_2d.pkl"
    path.write_bytes(pickle.dumps({"split": {"xsub_train": [ann["frame_dir"]]}, "annotations": [ann]}, protocol=2))
    loaded = load_pyskl(path)["annotations"][0]
    clip = annotation_to_clip(loaded)
    assert clip.shape == (3, 4, 17, 2) and clip.dtype == np.float32
    kp = ann["keypoint"].astype(np.float32)
    np.testing.assert_array_equal(clip[0, :, :, 0], kp[0, :, :, 0] / np.float32(2000))  # x / width
    np.testing.assert_array_equal(clip[1, :, :, 0], kp[0, :, :, 1] / np.float32(1000))  # y / height
    np.testing.assert_array_equal(clip[2, :, :, 0], ann["keypoint_score"][0].astype(np.float32))
    assert not clip[..., 1].any()  # second person appended as zeros
    zero = annotation_to_clip(loaded, padding="zero", normalize=False)
    assert not zero[2].any()
    np.testing.assert_array_equal(zero[:2, :, :, 0], pyskl_to_clip(kp)[..., 0])


def test_legacy_2d_scaling_reproduces_the_reference_indexing():
    ann = _annotation_2d()
    clip = annotation_to_clip(ann, legacy_2d_norm=True, padding="zero")
    # The reference feeder indexes axis 2 of the (M, T, V, 2) array, i.e. the joint axis:
    reference = ann["keypoint"].astype(np.float32)
    height, width = ann["img_shape"]
    reference[:, :, 0] = reference[:, :, 0] / height
    reference[:, :, 1] = reference[:, :, 1] / width
    np.testing.assert_array_equal(clip[:2, ..., :1], pyskl_to_clip(reference))
    # Hand-worked: joint 0 (nose) x, y divided by the height, joint 1 by the width, joint 2 kept in pixels.
    kp = ann["keypoint"][0, 0].astype(np.float32)
    np.testing.assert_array_equal(clip[:2, 0, 0, 0], kp[0] / np.float32(1000))
    np.testing.assert_array_equal(clip[:2, 0, 1, 0], kp[1] / np.float32(2000))
    np.testing.assert_array_equal(clip[:2, 0, 2:, 0], kp[2:].T)
    assert clip[0, 0, 2, 0] >= 300  # still pixels


def test_3d_annotation_and_person_selection():
    rng = np.random.default_rng(0)
    keypoint = rng.normal(size=(3, 5, 25, 3)).astype(np.float16)
    keypoint[1] = 0.5  # a motionless body: the lowest energy, dropped
    ann = {"frame_dir": "S001C001P001R001A050", "label": 49, "total_frames": 5, "keypoint": keypoint}
    clip = annotation_to_clip(ann)
    assert clip.shape == (3, 5, 25, 2)
    kept = {tuple(clip[:, 0, 0, m]) for m in range(2)}
    assert kept == {tuple(keypoint[m, 0, 0].astype(np.float32)) for m in (0, 2)}
    single = annotation_to_clip({**ann, "keypoint": keypoint[:1]})
    np.testing.assert_array_equal(single[..., 0], pyskl_to_clip(keypoint[:1])[..., 0])
    assert not single[..., 1].any()


def test_layout_converters_are_inverse():
    clip = np.random.default_rng(0).normal(size=(3, 4, 17, 2)).astype(np.float32)
    assert pyskl_to_clip(clip_to_pyskl(clip)).tobytes() == clip.tobytes()
    assert clip_to_pyskl(clip).shape == (2, 4, 17, 3)
    with pytest.raises(InputError):
        pyskl_to_clip(np.zeros((4, 17, 2)))


@pytest.mark.parametrize("edit, message", [
    (lambda c: {"annotations": "x"}, "annotations"),
    (lambda c: [1], r"annotations\[0\].*dict"),
    (lambda c: {**c, "split": {"train": [1]}}, "split"),
    (lambda c: {"annotations": [{**c["annotations"][0], "keypoint": np.zeros((4, 17, 2))}]}, "keypoint"),
    (lambda c: {"annotations": [{**c["annotations"][0], "keypoint": np.zeros((1, 4, 17, 2), int)}]}, "keypoint"),
    (lambda c: {"annotations": [{**c["annotations"][0], "total_frames": 5}]}, "total_frames"),
    (lambda c: {"annotations": [{**c["annotations"][0], "keypoint_score": np.zeros((1, 4, 16))}]}, "keypoint_score"),
    (lambda c: {"annotations": [{**c["annotations"][0], "label": -1}]}, "label"),
    (lambda c: {"annotations": [{**c["annotations"][0], "img_shape": (1080,)}]}, "img_shape"),
    (lambda c: {"annotations": [{"label": 1}]}, "frame_dir"),
])
def test_malformed_annotation_pickles(tmp_path, edit, message):
    content = edit({"split": {}, "annotations": [_annotation_2d()]})
    path = tmp_path / "bad.pkl"
    path.write_bytes(pickle.dumps(content))
    with pytest.raises(DataFormatError, match=message) as info:
        load_pyskl(path)
    assert str(path) in str(info.value)


def test_bare_list_pickle(tmp_path):
    path = tmp_path / "list.pkl"
    path.write_bytes(pickle.dumps([_annotation_2d()]))
    assert load_pyskl(path)["split"] == {}


# ---------------------------------------------------------------- pose-estimator output


def test_pose_to_clip_single_person_with_scores():
    rng = np.random.default_rng(0)
    person = np.concatenate([rng.uniform(0, 640, size=(6, 17, 2)), rng.uniform(size=(6, 17, 1))], axis=-1)
    clip = pose_to_clip(person, image_shape=(480, 640))
    assert clip.shape == (3, 6, 17, 2) and clip.dtype == np.float32
    np.testing.assert_allclose(clip[0, ..., 0], person[..., 0] / 640, rtol=1e-6)
    np.testing.assert_allclose(clip[1, ..., 0], person[..., 1] / 480, rtol=1e-6)
    np.testing.assert_allclose(clip[2, ..., 0], person[..., 2], rtol=1e-6)
    assert not clip[..., 1].any()


def test_pose_to_clip_lists_missing_joints_and_extra_people():
    rng = np.random.default_rng(1)
    people = [rng.uniform(0, 100, size=(5, 17, 3)) for _ in range(3)]
    people[1][..., :2] = 50.0  # motionless: dropped
    people[0][2, 4] = np.nan  # a missing joint
    clip = pose_to_clip(people)
    assert clip.shape == (3, 5, 17, 2)
    assert (clip[:, 2, 4, 0] == 0).all()
    np.testing.assert_allclose(clip[:, :, :, 1], np.moveaxis(people[2], -1, 0), rtol=1e-6)
    xy_only = pose_to_clip(np.stack(people)[:2, ..., :2], padding="zero", num_persons=3)
    assert xy_only.shape == (3, 5, 17, 3) and not xy_only[2].any()


@pytest.mark.parametrize("keypoints, kwargs, error, message", [
    (np.zeros((5, 17, 2)), {}, InputError, "padding='confidence' needs scores"),
    (np.zeros((5, 25, 3)), {}, InputError, r"keypoints per person .*, got shape \(5, 25, 3\)$"),
    (np.zeros((5, 17, 4)), {}, InputError, r"keypoints per person .*, got shape \(5, 17, 4\)$"),
    (np.zeros((2, 5, 25, 3)), {}, InputError, r"a stack \(M, T, 17, 2\|3\), got shape \(2, 5, 25, 3\)$"),
    ([], {}, InputError, r"persons with the same \(T, 17, K\) shape, got \[\]"),
    ([np.zeros((5, 17, 3)), np.zeros((4, 17, 3))], {}, InputError, r"got \[\(4, 17, 3\), \(5, 17, 3\)\]"),
    (np.zeros((5, 17, 3)), {"padding": "other"}, ConfigError, "unknown padding 'other'; expected one of conf"),
])
def test_pose_to_clip_rejects_bad_input(keypoints, kwargs, error, message):
    with pytest.raises(error, match=message):
        pose_to_clip(keypoints, **kwargs)
