"""The joint-set design that benchmarks/universal_design.py measures against the shipped canonical input."""

import sys
from pathlib import Path

import torch

from usdrl import USDRLConfig
from usdrl.universal import IN_CHANNELS, UNIVERSAL_JOINTS

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import universal_design  # noqa: E402  (a benchmark script, not a package)


def test_a_frame_token_is_the_mean_over_the_present_joints_by_hand():
    embedding = universal_design.JointSetEmbedding(persons=1, joints=3, channels=2, dim=2, width=2)
    with torch.no_grad():
        embedding.joint.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, -1.0]]))
        embedding.joint.bias.zero_()
        embedding.identity.copy_(torch.tensor([[[0.5, 0.5], [0.0, 2.0], [9.0, 9.0]]]))
        embedding.out[1].weight.copy_(torch.eye(2))
        embedding.out[1].bias.zero_()
    # frame 0: joints 0 and 1 present, joint 2 absent; frame 1: no joint present
    frames = torch.tensor([[[1.0, 1.0, -3.0, 1.0, 0.0, 0.0], [0.0] * 6]])            # (n=1, t=2, m*v*c=6)
    # joint 0: relu([1, -1] + [0.5, 0.5]) = [1.5, 0]; joint 1: relu([-3, -1] + [0, 2]) = [0, 1]; mean [0.75, 0.5]
    pooled = torch.tensor([0.75, 0.5])
    expected = torch.nn.functional.layer_norm(pooled, (2,))
    out = embedding(frames)
    torch.testing.assert_close(out[0, 0], expected)
    torch.testing.assert_close(out[0, 1], torch.zeros(2))       # nothing present: the LayerNorm of zeros


def test_the_joint_set_model_ignores_absent_joints_and_encodes_like_any_model():
    config = USDRLConfig(layout="universal", in_channels=IN_CHANNELS, hidden_size=16, num_heads=2, num_layers=1,
                         num_frames=8, dataset="synthetic")
    torch.manual_seed(0)
    model = universal_design.joint_set_model(config).eval()
    clips = torch.randn(2, IN_CHANNELS, 8, len(UNIVERSAL_JOINTS), 2)
    absent = [UNIVERSAL_JOINTS.index("left_foot"), UNIVERSAL_JOINTS.index("nose")]
    clips[:, :, :, absent] = 0.0
    before = model.encode(clips)
    with torch.no_grad():    # what an absent joint would be: neither its identity nor its weights reach the output
        model.encoder.temporal.embed.identity[:, absent] += 5.0
    torch.testing.assert_close(model.encode(clips), before)
    assert before.shape == (2, 32)
    clips[:, :, :, absent[0]] = 1.0           # the same joint present changes the embedding
    assert not torch.allclose(model.encode(clips), before)
