"""Finetuning, layer-wise learning rates, semi-supervised subsets and score ensembles."""

import numpy as np
import pytest
import torch

from usdrl import USDRL, ConfigError, USDRLConfig
from usdrl.data.preprocess import align_view, resample
from usdrl.data.synthetic import make_clips
from usdrl.engine import WarmupCosineFactor
from usdrl.tasks.finetune import (
    FinetuneConfig,
    ensemble_scores,
    finetune,
    labelled_subset,
    parameter_groups,
)


def test_layer_wise_learning_rates():
    model = USDRL(USDRLConfig.from_preset("tiny", num_classes=3))
    groups = parameter_groups(model, lr=1.0, layer_decay=0.5)
    assert [g["lr"] for g in groups] == [0.125, 0.25, 0.5, 1.0]   # embeddings, layer 0, layer 1, head
    assert sum(len(g["params"]) for g in groups) == len(list(model.parameters()))
    assert {id(p) for p in groups[-1]["params"]} == {id(model.head.weight), id(model.head.bias)}
    assert id(model.encoder.spatial_pos) in {id(p) for p in groups[0]["params"]}
    assert id(model.encoder.spatial.layers[1].attn.in_proj_weight) in {id(p) for p in groups[2]["params"]}


def test_warm_up_then_cosine():
    factors = [WarmupCosineFactor(total=10, warmup=2)(step) for step in range(10)]
    assert factors[:2] == [0.5, 1.0] and factors[2] == 1.0
    assert factors[6] == pytest.approx(0.5) and factors[-1] == pytest.approx(0.5 * (1 + np.cos(np.pi * 7 / 8)))
    assert all(a >= b for a, b in zip(factors[2:-1], factors[3:], strict=True))


def test_labelled_subsets():
    labels = np.repeat(np.arange(4), [100, 50, 10, 1])
    balanced = labelled_subset(labels, 0.1, seed=3)
    assert np.bincount(labels[balanced]).tolist() == [10, 5, 1, 1]   # every class, at least one
    assert np.array_equal(balanced, labelled_subset(labels, 0.1, seed=3))
    plain = labelled_subset(labels, 0.1, balanced=False)
    assert len(plain) == 16 and np.all(np.diff(plain) > 0)
    with pytest.raises(ConfigError):
        labelled_subset(labels, 0.0)


def test_score_ensemble_sums_softmax_scores():
    joint = torch.tensor([[2.0, 0.0], [0.0, 0.1]])
    bone = torch.tensor([[0.0, 0.0], [3.0, 0.0]])
    fused = ensemble_scores(joint, bone)
    torch.testing.assert_close(fused.sum(1), torch.tensor([2.0, 2.0]))
    assert fused.argmax(1).tolist() == [0, 0]
    expected = joint.softmax(1)[1, 0] + bone.softmax(1)[1, 0]
    torch.testing.assert_close(fused[1, 0], expected)


def clip_dataset(num_clips, seed):
    """Aligned synthetic clips of three distinct classes as a TensorDataset of (clip, label)."""
    clips = make_clips(num_clips, seed=seed, classes=[0, 10, 14])   # wave right, kick right, squat
    data = np.stack([resample(align_view(clip[:, :n]), 64)
                     for clip, n in zip(clips.data, clips.lengths, strict=True)])
    return torch.utils.data.TensorDataset(torch.from_numpy(data), torch.from_numpy(clips.labels))


def test_finetuning_trains_the_whole_model():
    torch.manual_seed(0)
    model = USDRL(USDRLConfig.from_preset("tiny", hidden_size=32, num_heads=1))
    before = model.encoder.temporal.layers[0].attn.in_proj_weight.clone()
    train, test = clip_dataset(60, seed=0), clip_dataset(30, seed=1)
    config = FinetuneConfig(epochs=30, batch_size=16, lr=2e-3, warmup_epochs=1, eval_every=15, layer_decay=0.9)
    result = finetune(model, (train, test), num_classes=15, config=config)
    assert [epoch for epoch, _, _ in result.history] == [15, 30]
    assert not torch.equal(before, model.encoder.temporal.layers[0].attn.in_proj_weight)
    assert model.head.out_features == 15 and not model.training
    assert result.best_top1 > 0.8   # chance is 1/3
    clips, labels = test.tensors
    assert float((model(clips).argmax(1) == labels).double().mean()) == pytest.approx(result.last_top1)
