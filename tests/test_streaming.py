"""Streaming detection reproduces the offline detector on a recorded sequence."""

import numpy as np
import pytest
import torch

from usdrl import USDRL, ConfigError, InputError, USDRLConfig
from usdrl.data.synthetic import make_untrimmed
from usdrl.tasks.detection import frame_scores
from usdrl.tasks.metrics import proposals_from_scores
from usdrl.tasks.streaming import StreamingDetector


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return USDRL(USDRLConfig.from_preset("tiny", num_frames=16, num_frame_classes=6)).eval()


@pytest.mark.parametrize("stride", [16, 8, 5])
def test_streaming_matches_offline_scores_and_proposals(model, stride):
    sequence = make_untrimmed(seed=0).data[:, :101]               # (3, 101, 25, 2)
    offline = frame_scores(model, sequence, stride=stride).numpy()
    detector = StreamingDetector(model, stride=stride, threshold=0.2)
    rng = np.random.default_rng(0)
    outputs, t = [], 0
    while t < sequence.shape[1]:
        size = int(rng.integers(1, 9))
        outputs.append(detector.push(sequence[:, t:t + size]))
        t += size
    outputs.append(detector.finish())
    assert [o.first_frame for o in outputs] == sorted(o.first_frame for o in outputs)
    online = np.concatenate([o.scores for o in outputs])
    np.testing.assert_allclose(online, offline, rtol=1e-5, atol=1e-6)
    actions = sorted(a for o in outputs for a in o.actions)
    expected = sorted(proposals_from_scores(offline, 0.2, background=0))
    assert [a[:3] for a in actions] == [e[:3] for e in expected]
    np.testing.assert_allclose([a[3] for a in actions], [e[3] for e in expected], rtol=1e-5)


def test_latency_is_bounded_by_the_window(model):
    detector = StreamingDetector(model)                            # stride = window = 16
    emitted = 0
    for t in range(40):
        emitted += len(detector.push(np.zeros((3, 25, 2), dtype=np.float32)).scores)
        assert t + 1 - emitted < 16                                # a frame is final at most 15 frames later
    assert emitted == 32 and len(detector.finish().scores) == 8


def test_bad_frames_and_models_are_refused(model):
    with pytest.raises(InputError, match=r"C, V, M = \(3, 25, 2\)"):
        StreamingDetector(model).push(np.zeros((3, 4, 17, 2)))
    with pytest.raises(ConfigError, match="frame-wise head"):
        StreamingDetector(USDRL(USDRLConfig.from_preset("tiny")))


def test_several_tracks_appearing_and_leaving_match_one_detector_each(model):
    from usdrl.tasks.streaming import MultiTrackDetector

    sequences = {7: make_untrimmed(seed=1).data[:, :70], 3: make_untrimmed(seed=2).data[:, :45],
                 9: make_untrimmed(seed=3).data[:, :30]}
    begins = {7: 0, 3: 10, 9: 25}                  # track 3 appears at step 10, track 9 at 25
    served = MultiTrackDetector(model, stride=8, threshold=0.2)
    outputs = {k: [] for k in sequences}
    for step in range(80):
        frames = {k: seq[:, step - begins[k]] for k, seq in sequences.items()
                  if 0 <= step - begins[k] < seq.shape[1]}
        for k, out in served.push(frames).items():
            outputs[k].append(out)
        for k, seq in sequences.items():
            if step - begins[k] == seq.shape[1] - 1 and k != 7:
                outputs[k].append(served.leave(k))     # 3 and 9 leave after their last frame
    assert served.tracks == [7]
    outputs[7].append(served.finish()[7])
    assert served.tracks == []
    for k, seq in sequences.items():
        alone = StreamingDetector(model, stride=8, threshold=0.2)
        expected = [alone.push(seq[:, t]) for t in range(seq.shape[1])] + [alone.finish()]
        np.testing.assert_allclose(np.concatenate([o.scores for o in outputs[k]]),
                                   np.concatenate([o.scores for o in expected]), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(np.concatenate([o.scores for o in outputs[k]]),
                                   frame_scores(model, seq, stride=8).numpy(), rtol=1e-5, atol=1e-6)
        assert [a[:3] for o in outputs[k] for a in o.actions] == [a[:3] for o in expected for a in o.actions]
    with pytest.raises(ConfigError, match="no track 3"):
        served.leave(3)


def test_windows_go_to_the_models_device(model):
    """A model whose weights live elsewhere (here: PyTorch's meta device) gets its windows there."""
    from usdrl.tasks.streaming import MultiTrackDetector

    class Elsewhere(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.weight = torch.nn.Parameter(torch.empty(1, device="meta"))
            self.config, self.frame_head, self.devices = model.config, True, []

        def call_work(self, clips):
            return model.call_work(clips)

        def forward_frames(self, x):
            self.devices.append(x.device.type)
            return torch.zeros(x.shape[0], x.shape[2], model.config.num_frame_classes)

    stub = Elsewhere()
    served = MultiTrackDetector(stub, stride=16)
    served.push({0: np.zeros((3, 16, 25, 2), np.float32), 1: np.zeros((3, 16, 25, 2), np.float32)})
    assert stub.devices == ["meta"]                                   # both tracks' windows in one batch
