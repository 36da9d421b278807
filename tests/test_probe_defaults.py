"""Linear-probe defaults that work on a small dataset as well as at the reference's scale."""

import numpy as np
import pytest
import torch

from usdrl import USDRL, USDRLConfig
from usdrl.data import to_model_input
from usdrl.data.synthetic import make_clips
from usdrl.tasks.recognition import ProbeConfig, train_linear_head
from usdrl.tasks.retrieval import retrieval_accuracy


def test_resolve_keeps_the_reference_at_scale_and_adapts_below():
    assert (ProbeConfig().resolve(40_091).batch_size, ProbeConfig().resolve(40_091).standardize) == (512, False)
    assert (ProbeConfig().resolve(5_120).batch_size, ProbeConfig().resolve(5_120).standardize) == (512, False)
    small = ProbeConfig().resolve(150)
    assert (small.batch_size, small.standardize) == (15, True)  # ten steps per epoch
    assert ProbeConfig().resolve(5_119).batch_size == 512  # ceil(5119 / 10)
    explicit = ProbeConfig(batch_size=512, standardize=False).resolve(150)
    assert (explicit.batch_size, explicit.standardize) == (512, False)


@pytest.fixture(scope="module")
def small_features():
    """Features of a fresh tiny encoder on 150 + 150 synthetic clips of 29 classes (a small dataset)."""
    torch.manual_seed(0)
    model = USDRL(USDRLConfig.from_preset("tiny")).eval()
    clips = make_clips(300, seed=11)
    x = np.stack([to_model_input(c, 64, length=n) for c, n in zip(clips.data, clips.lengths, strict=True)])
    features = model.encode(torch.from_numpy(x), show_progress_bar=False)
    labels = torch.from_numpy(clips.labels).long()
    return features[:150], labels[:150], features[150:], labels[150:]


def test_default_probe_on_a_small_dataset_comes_near_knn_on_the_same_features(small_features):
    train_x, train_y, test_x, test_y = small_features
    knn = retrieval_accuracy(test_x, train_x, test_y, train_y, k=1)["accuracy"]
    assert knn > 0.3  # chance is 1/29
    _, default = train_linear_head(train_x, train_y, test_x, test_y, 29)
    _, reference = train_linear_head(train_x, train_y, test_x, test_y, 29,
                                     ProbeConfig(batch_size=512, standardize=False))
    assert reference.last_top1 < 0.5 * knn  # the reference schedule barely moves the head here
    assert default.last_top1 > 0.8 * knn
