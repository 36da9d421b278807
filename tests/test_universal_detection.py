"""Detection from keypoints of any format with a universal model: offline, streaming, several tracks."""

import numpy as np
import pytest
import torch

from usdrl import USDRL, ConfigError, InputError, USDRLConfig
from usdrl.data.synthetic import DetectorNoise, make_untrimmed, render_keypoints
from usdrl.tasks.detection import DetectionConfig, detect_sequence, frame_scores
from usdrl.tasks.metrics import proposals_from_scores
from usdrl.tasks.streaming import MultiTrackDetector, StreamingDetector
from usdrl.universal import to_universal, window_converter

WINDOW = 16


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    model = USDRL(USDRLConfig.from_preset("tiny", layout="universal", in_channels=6, num_frames=WINDOW,
                                          num_frame_classes=5)).eval()
    with torch.no_grad():
        model.frame_head.weight *= 50     # probabilities far from uniform, so that a different input shows
    return model


@pytest.fixture(scope="module")
def coco():
    """One person's COCO-17 2D keypoints with scores ``(1, T, 17, 3)`` of a synthetic untrimmed sequence (T = 70,
    not a multiple of the window), from a turned camera with detector noise."""
    sequence = make_untrimmed(seed=3, num_actions=(2, 2), gap_frames=(5, 10))
    keypoints = render_keypoints(sequence.data[None, :, :70], "coco17", yaw=np.array([0.5]),
                                 rng=np.random.default_rng(0), noise=DetectorNoise())[0]
    return keypoints[:1]


def manual_scores(model, keypoints, fmt, stride, image_size=None):
    """Frame probabilities by hand: windows every ``stride`` frames until one covers the last frame, the last
    zero-padded, each converted alone (person slots filled with zeros), averaged frame by frame."""
    length = keypoints.shape[1]
    starts = list(range(0, length, stride))
    starts = starts[: next(i for i, s in enumerate(starts) if s + WINDOW >= length) + 1]
    total = np.zeros((length, 5))
    count = np.zeros((length, 1))
    for start in starts:
        window = np.zeros((model.config.num_persons, WINDOW, *keypoints.shape[2:]), np.float32)
        part = keypoints[:, start:start + WINDOW]
        window[: len(part), : part.shape[1]] = part
        clip = to_universal(window, fmt, image_size=image_size)                      # (6, T, 30, M)
        with torch.no_grad():
            p = model.forward_frames(torch.from_numpy(clip)[None]).softmax(-1)[0].numpy()
        end = min(start + WINDOW, length)
        total[start:end] += p[: end - start]
        count[start:end] += 1
    return total / count


def test_a_window_is_not_resampled_and_its_padding_stays_absent():
    """The zero frames that pad a sequence's last window stay zero (absent joints) in the universal input."""
    keypoints = render_keypoints(make_untrimmed(seed=1).data[None, :, :10], "coco17")[0]   # (2, 10, 17, 3)
    window = np.zeros((1, 2, WINDOW, 17, 3), np.float32)
    window[0, :, :10] = keypoints
    converted = window_converter(USDRLConfig.from_preset("tiny", layout="universal", in_channels=6,
                                                         num_frames=WINDOW, num_persons=3), "coco17")(window)
    assert converted.shape == (1, 6, WINDOW, 30, 3)
    np.testing.assert_array_equal(converted[0, :, 10:], 0.0)
    np.testing.assert_array_equal(converted[0, ..., 2], 0.0)                  # the third person's slot
    np.testing.assert_allclose(converted[0, ..., :2], to_universal(window[0], "coco17"), atol=0)


@pytest.mark.parametrize("stride", [WINDOW, 5])
def test_frame_scores_of_keypoints_are_the_windows_converted_alone(model, coco, stride):
    scores = frame_scores(model, coco, stride=stride, format="coco17")
    assert scores.shape == (70, 5)
    np.testing.assert_allclose(scores.numpy(), manual_scores(model, coco, "coco17", stride), atol=1e-5)
    # the whole sequence converted at once is normalised over all its frames: a different input
    whole = torch.from_numpy(to_universal(np.concatenate([coco, np.zeros_like(coco)]), "coco17"))
    assert not np.allclose(frame_scores(model, whole.numpy(), stride=stride).numpy(), scores.numpy(), atol=1e-4)


def test_normalised_keypoints_take_the_image_size(model, coco):
    normalised = coco.copy()
    normalised[..., 0] /= 1920
    normalised[..., 1] /= 1080
    mediapipe = np.zeros((1, 70, 33, 3), np.float32)      # COCO's 17 joints are MediaPipe's first 17 by name
    from usdrl.keypoints import convert_keypoints
    mediapipe[:] = convert_keypoints(normalised, src="coco17", dst="mediapipe33", has_scores=True).keypoints
    scores = frame_scores(model, mediapipe, stride=8, format="mediapipe33", image_size=(1080, 1920))
    np.testing.assert_allclose(scores.numpy(), manual_scores(model, mediapipe, "mediapipe33", 8, (1080, 1920)),
                               atol=1e-5)
    squeezed = frame_scores(model, mediapipe, stride=8, format="mediapipe33")
    assert not np.allclose(squeezed.numpy(), scores.numpy(), atol=1e-4)


def test_detect_sequence_is_the_proposals_of_the_frame_scores(model, coco):
    config = DetectionConfig(stride=8, threshold=0.21, min_length=3)
    expected = proposals_from_scores(manual_scores(model, coco, "coco17", 8), 0.21, background=0, min_length=3)
    found = detect_sequence(model, coco, config=config, format="coco17")
    assert expected and [p[:3] for p in found] == [p[:3] for p in expected]
    np.testing.assert_allclose([p[3] for p in found], [p[3] for p in expected], atol=1e-5)


@pytest.mark.parametrize("stride", [WINDOW, 6])
def test_streaming_keypoints_match_the_offline_scores(model, coco, stride):
    detector = StreamingDetector(model, stride=stride, format="coco17", precision="fp32", threshold=0.21)
    outputs = [detector.push(coco[:, t:t + 7]) for t in range(0, 70, 7)] + [detector.finish()]
    streamed = np.concatenate([out.scores for out in outputs])
    offline = frame_scores(model, coco, stride=stride, format="coco17").numpy()
    np.testing.assert_allclose(streamed, offline, atol=1e-5)
    expected = proposals_from_scores(offline, 0.21, background=0)
    assert sorted(a[:3] for out in outputs for a in out.actions) == sorted(p[:3] for p in expected)


def test_several_tracks_of_keypoints_match_one_detector_each(model, coco):
    other = coco[:, ::-1].copy()
    served = MultiTrackDetector(model, stride=8, format="coco17", precision="fp32")
    scores = {0: [], 1: []}
    for t in range(0, 70, 10):
        for track, out in served.push({0: coco[:, t:t + 10], 1: other[:, t:t + 10]}).items():
            scores[track].append(out.scores)
    for track, out in served.finish().items():
        scores[track].append(out.scores)
    for track, keypoints in ((0, coco), (1, other)):
        np.testing.assert_allclose(np.concatenate(scores[track]),
                                   frame_scores(model, keypoints, stride=8, format="coco17").numpy(), atol=1e-5)


def test_one_frame_at_a_time_and_a_score_free_format(model, coco):
    """Frames ``(M, V, C)`` one by one; 2D keypoints without scores score 1 (as to_universal gives them)."""
    xy = coco[..., :2]
    detector = StreamingDetector(model, stride=WINDOW, format="coco17", precision="fp32")
    outputs = [detector.push(xy[:, t]) for t in range(70)] + [detector.finish()]
    np.testing.assert_allclose(np.concatenate([out.scores for out in outputs]),
                               frame_scores(model, xy, format="coco17").numpy(), atol=1e-5)


def test_keypoints_need_a_universal_model_and_their_format(model, coco):
    ntu = USDRL(USDRLConfig.from_preset("tiny", num_frames=WINDOW, num_frame_classes=5)).eval()
    with pytest.raises(ConfigError, match="universal model"):
        frame_scores(ntu, coco, format="coco17")
    with pytest.raises(ConfigError, match="universal model"):
        StreamingDetector(ntu, format="coco17")
    with pytest.raises(ConfigError, match="image_size is for keypoints"):
        frame_scores(model, coco, image_size=(1080, 1920))
    with pytest.raises(ConfigError, match="coco18"):
        StreamingDetector(model, format="coco18")
    with pytest.raises(InputError, match=r"coco17 keypoints \(M, T, V, C\)"):
        frame_scores(model, coco[0], format="coco17")
    detector = StreamingDetector(model, format="coco17")
    detector.push(coco[:, :3])
    with pytest.raises(InputError, match=r"coco17 keypoints \(M, F, V, C\) with M, V, C = \(2, 17, 3\), "
                                         r"got \(2, 4, 17, 2\)"):
        detector.push(coco[:, 3:7, :, :2])
    with pytest.raises(InputError, match=r"= \(2, 17, 3\), got \(2, 4, 25, 3\)"):
        detector.push(np.zeros((1, 4, 25, 3), np.float32))
