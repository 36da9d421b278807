"""The universal input: every registered keypoint format, 2D or 3D, as one model input."""

import numpy as np
import pytest
import torch

from usdrl import USDRL, USDRLConfig
from usdrl.data.synthetic import make_clips, project_coco17
from usdrl.errors import ConfigError, InputError
from usdrl.keypoints import JointSource, conversion_matrix, get_format, list_formats
from usdrl.universal import UNIVERSAL_JOINTS, to_universal

FORMATS = list_formats()
X, Y, Z, SCORE, EXACT, DEPTH = range(6)


def random_keypoints(name: str, persons: int = 2, frames: int = 12, seed: int = 0) -> np.ndarray:
    """``(M, T, V, dims + 1)`` keypoints of format ``name`` with scores in (0.2, 1]."""
    fmt = get_format(name)
    rng = np.random.default_rng(seed)
    coords = rng.uniform(1, 500, (persons, frames, fmt.num_joints, fmt.dims)).astype(np.float32)
    return np.concatenate([coords, rng.uniform(0.2, 1, coords.shape[:-1] + (1,))], axis=-1).astype(np.float32)


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return USDRL(USDRLConfig.from_preset("tiny", layout="universal", in_channels=6, num_frames=16)).eval()


def expected_presence(name: str) -> tuple[np.ndarray, np.ndarray]:
    """Per universal joint, from the conversion tables: present (exact or stand-in) and exact."""
    present, exact = np.zeros(30, bool), np.zeros(30, bool)
    for dst in ("ntu25", "coco17"):
        _, sources = conversion_matrix(name, dst)
        for k, joint in enumerate(get_format(dst).joint_names):
            j = UNIVERSAL_JOINTS.index(joint)
            present[j] |= sources[k] != JointSource.MISSING
            exact[j] |= sources[k] == JointSource.EXACT
    return present, exact


@pytest.mark.parametrize("name", FORMATS)
def test_every_format_gives_the_fixed_width_input(name, model):
    fmt = get_format(name)
    keypoints = random_keypoints(name)
    data = to_universal(keypoints, name)
    assert data.shape == (6, 12, 30, 2) and data.dtype == np.float32
    assert np.isfinite(data).all()
    present, exact = expected_presence(name)
    # exact joints are the format's own joints; absent joints are all zero in every channel
    assert np.array_equal(data[EXACT, 0, :, 0] == 1, exact & np.isin(UNIVERSAL_JOINTS, fmt.joint_names))
    assert np.array_equal(data[SCORE, 0, :, 0] > 0, present)
    assert not data[:, :, ~present].any()
    assert np.all(data[DEPTH][:, present] == (fmt.dims == 3))
    if fmt.dims == 2:
        assert not data[Z].any()
    embedding = model.encode_keypoints(keypoints, name)
    assert embedding.shape == (model.num_features,) and torch.isfinite(embedding).all()


@pytest.mark.parametrize("name", FORMATS)
def test_a_batch_equals_its_clips_and_scores_may_come_apart(name, model):
    clips = np.stack([random_keypoints(name, seed=s) for s in range(3)])
    batch = to_universal(clips, name)
    assert np.allclose(batch[1], to_universal(clips[1], name), atol=1e-6)
    apart = to_universal(clips[..., :-1], name, scores=clips[..., -1])
    assert np.allclose(apart, batch)
    embeddings = model.encode_keypoints(clips, name)
    assert embeddings.shape == (3, model.num_features)
    assert torch.allclose(embeddings[2], model.encode_keypoints(clips[2], name), atol=1e-5)


def test_coordinates_are_centred_scaled_and_y_up():
    """Hand-worked: COCO-17 pixels, hips at (10, 20) and (30, 20), the other joints above them."""
    keypoints = np.zeros((1, 1, 17, 2), np.float32)
    fmt = get_format("coco17")
    for name in fmt.joint_names:
        keypoints[0, 0, fmt.index(name)] = (20, 5)          # everything else 15 px above the hip centre
    keypoints[0, 0, fmt.index("left_hip")] = (10, 20)
    keypoints[0, 0, fmt.index("right_hip")] = (30, 20)
    data = to_universal(keypoints, "coco17")
    left, right, nose = (UNIVERSAL_JOINTS.index(n) for n in ("left_hip", "right_hip", "nose"))
    # centre: the hips' mean (20, 20); scale: RMS of the 12 limb joints' distances, 10 limbs at 15 px, the
    # hips at 10 px; y down -> up and x negated (180 degrees about the depth axis)
    scale = np.sqrt((10 * 15**2 + 2 * 10**2) / 12)
    assert data[X, 0, left, 0] == pytest.approx(10 / scale)
    assert data[X, 0, right, 0] == pytest.approx(-10 / scale)
    assert data[Y, 0, left, 0] == 0
    assert data[Y, 0, nose, 0] == pytest.approx(15 / scale)

@pytest.mark.parametrize("name", ["ntu25", "h36m17", "coco17"])
def test_translation_and_scale_do_not_change_the_input(name):
    keypoints = random_keypoints(name)
    moved = keypoints.copy()
    moved[..., :-1] = keypoints[..., :-1] * 3.5 + 40.0
    assert np.allclose(to_universal(moved, name), to_universal(keypoints, name), atol=1e-5)


def test_a_missing_joint_is_masked_with_the_stand_ins_built_from_it():
    keypoints = random_keypoints("coco17")
    fmt = get_format("coco17")
    keypoints[0, 3, fmt.index("left_hip")] = 0           # undetected
    keypoints[0, 4, fmt.index("left_hip"), 0] = np.nan   # not finite
    keypoints[0, 5, fmt.index("left_hip"), -1] = 0       # zero confidence
    data = to_universal(keypoints, "coco17")
    for joint in ("left_hip", "spine_base", "spine_mid"):  # the hip centre and the spine use the left hip
        j = UNIVERSAL_JOINTS.index(joint)
        assert not data[:, 3:6, j, 0].any()
        assert data[SCORE, 6, j, 0] > 0
    assert np.isfinite(data).all()


def test_2d_and_3d_of_one_motion_land_on_the_same_coordinates():
    clips = make_clips(3, seed=5, noise=0.0)
    for clip, length in zip(clips.data, clips.lengths, strict=True):
        body = clip[:, :length, :, :1]                                      # (3, T, 25, 1), one person
        pixels, scores = project_coco17(body)
        from_3d = to_universal(body.transpose(3, 1, 2, 0), "ntu25")
        from_2d = to_universal(np.concatenate([pixels, scores[..., None]], -1), "coco17")
        limbs = [UNIVERSAL_JOINTS.index(side + part) for side in ("left_", "right_")
                 for part in ("shoulder", "elbow", "wrist", "hip", "knee", "ankle")]
        # a pinhole view 3 m away is nearly orthographic: the x, y of the two agree up to perspective
        a, b = from_3d[:2, :, limbs].ravel(), from_2d[:2, :, limbs].ravel()
        assert np.corrcoef(a, b)[0, 1] > 0.98
        assert np.abs(a - b).mean() < 0.15 * np.abs(a).mean()
        assert np.all(from_3d[DEPTH, :, limbs] == 1) and np.all(from_2d[DEPTH, :, limbs] == 0)


def test_bad_inputs_get_clear_errors(model):
    with pytest.raises(InputError, match="coco17 keypoints"):
        to_universal(np.zeros((1, 4, 25, 3)), "coco17")
    with pytest.raises(InputError, match="persons"):
        model.encode_keypoints(random_keypoints("coco17", persons=3), "coco17")
    with pytest.raises(ConfigError, match="unknown keypoint format"):
        to_universal(np.zeros((1, 4, 17, 3)), "coco99")
    single = USDRL(USDRLConfig.from_preset("tiny", num_frames=16))
    with pytest.raises(ConfigError, match="universal model"):
        single.encode_keypoints(random_keypoints("ntu25"), "ntu25")


def test_a_universal_model_saves_and_loads(model, tmp_path):
    model.save_pretrained(tmp_path)
    loaded = USDRL.from_pretrained(tmp_path)
    keypoints = random_keypoints("mediapipe33")
    assert torch.allclose(loaded.encode_keypoints(keypoints, "mediapipe33"),
                          model.encode_keypoints(keypoints, "mediapipe33"))


def test_the_sttr_baseline_reads_every_format_too():
    torch.manual_seed(0)
    sttr = USDRL(USDRLConfig.from_preset("tiny", layout="universal", in_channels=6, num_frames=16, encoder="sttr"))
    embeddings = [sttr.encode_keypoints(random_keypoints(name), name) for name in ("coco17", "smpl24")]
    assert all(e.shape == (sttr.num_features,) and torch.isfinite(e).all() for e in embeddings)


def test_normalised_keypoints_keep_their_proportions_with_the_image_size():
    """MediaPipe image landmarks (x / width, y / height) equal the same body in pixels."""
    pixels = random_keypoints("mediapipe33")
    normalised = pixels.copy()
    normalised[..., :2] /= np.array([1920, 1080], np.float32)
    in_pixels = to_universal(pixels, "mediapipe33")
    assert np.allclose(to_universal(normalised, "mediapipe33", image_size=(1080, 1920)), in_pixels, atol=1e-5)
    assert not np.allclose(to_universal(normalised, "mediapipe33"), in_pixels, atol=1e-2)
    with pytest.raises(ConfigError, match="normalised units"):
        to_universal(random_keypoints("coco17"), "coco17", image_size=(1080, 1920))


def test_window_converter_without_a_format_passes_windows_and_refuses_an_image_size():
    from usdrl.universal import window_converter

    windows = np.ones((2, 6, 4, 30, 1), np.float32)
    assert window_converter(USDRLConfig.from_preset("tiny"), None)(windows) is windows
    with pytest.raises(ConfigError, match="^image_size is for keypoints: give their format too$") as refused:
        window_converter(USDRLConfig.from_preset("tiny"), None, image_size=(480, 640))
    assert refused.value.keywords == ("format",)
