"""The encoder's building blocks against independent computations: ``torch.nn.MultiheadAttention``,
the token-mixing formula of the spec (``usdrl-model.md``: ``g = W2 relu(W1 x) + x`` over the token
axis, anchors kept), adaptive average pooling worked by hand, and the defaults the docstrings state
(non-causal layers and pooling, drop path and checkpointing that do nothing when off)."""

import pytest
import torch
from torch import nn

from usdrl import USDRL, ConfigError, USDRLConfig
from usdrl.encoder import Attention, DropPath, DSTLayer, TokenMixer, TransformerLayer, dense_feature


def randomised(module: nn.Module, seed: int = 0) -> nn.Module:
    """``module`` with every parameter drawn from N(0, 0.5) (biases included, so none is zero)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.5)
    return module


def test_attention_is_torch_multihead_attention():
    attention = randomised(Attention(8, 2))
    reference = nn.MultiheadAttention(8, 2, batch_first=True)
    with torch.no_grad():
        reference.in_proj_weight.copy_(attention.in_proj_weight)
        reference.in_proj_bias.copy_(attention.in_proj_bias)
        reference.out_proj.weight.copy_(attention.out_proj.weight)
        reference.out_proj.bias.copy_(attention.out_proj.bias)
    x = torch.randn(3, 5, 8, generator=torch.Generator().manual_seed(1))
    full, _ = reference(x, x, x, need_weights=False)
    torch.testing.assert_close(attention(x), full)                       # the default: every token sees all
    future = torch.ones(5, 5, dtype=torch.bool).triu(1)                   # True = not attended
    masked, _ = reference(x, x, x, attn_mask=future, need_weights=False)
    torch.testing.assert_close(attention(x, causal=True), masked)


@pytest.mark.parametrize("causal", [False, True])
def test_token_mixer_follows_the_formula_in_the_input_dtype(causal):
    """In float64 (parameters float32): ``g = W2 relu(W1 x + b1) + b2 + x`` with token mixing matrices
    (lower-triangular when causal), anchors ``j % gap == 0`` keep their input."""
    mixer = randomised(TokenMixer(5, 2, causal))
    x = torch.randn(2, 5, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    w1, b1 = mixer.mix1.weight.double(), mixer.mix1.bias.double()
    w2, b2 = mixer.mix2.weight.double(), mixer.mix2.bias.double()
    if causal:
        w1, w2 = w1.tril(), w2.tril()
    hidden = torch.relu(torch.einsum("ij,njd->nid", w1, x) + b1[:, None])
    expected = torch.einsum("ij,njd->nid", w2, hidden) + b2[:, None] + x
    expected[:, 0::2] = x[:, 0::2]                                        # anchors 0, 2, 4
    out = mixer(x)
    assert out.dtype == torch.float64
    torch.testing.assert_close(out, expected)


def mixes_the_future(layer: nn.Module) -> bool:
    """Whether the first token's output changes when only the last token's input does."""
    layer.eval()
    x = torch.randn(1, 6, 8, generator=torch.Generator().manual_seed(3))
    changed = x.clone()
    changed[:, -1] += 1.0
    with torch.no_grad():
        return not torch.allclose(layer(x)[:, 0], layer(changed)[:, 0])


def test_layers_are_bidirectional_unless_made_causal():
    assert mixes_the_future(randomised(TransformerLayer(8, 2, 16, 0.0)))
    assert mixes_the_future(randomised(DSTLayer(8, 2, 16, 6, 2, 0.5, 0.0)))
    assert not mixes_the_future(randomised(TransformerLayer(8, 2, 16, 0.0, causal=True)))
    assert not mixes_the_future(randomised(DSTLayer(8, 2, 16, 6, 2, 0.5, 0.0, causal=True)))


def test_dense_feature_pools_the_spatial_tokens_by_default():
    """4 frames, 8 spatial tokens (token j is (20j, 20j + 10)): adaptive average pooling takes the mean of
    tokens 2i and 2i + 1, (40i + 10, 40i + 20)."""
    y_t = torch.arange(4 * 2, dtype=torch.float32).reshape(1, 4, 2)
    y_s = torch.arange(8 * 2, dtype=torch.float32).reshape(1, 8, 2) * 10
    out = dense_feature(y_t, y_s)
    pooled = torch.tensor([[10.0, 20.0], [50.0, 60.0], [90.0, 100.0], [130.0, 140.0]])
    assert torch.equal(out[0], torch.cat([y_t[0], pooled], dim=-1))
    assert torch.equal(dense_feature(y_t, y_s, causal=True), y_t)


def test_drop_path_off_draws_nothing_and_keeps_the_shape():
    x = torch.ones(4, 3, 2)
    state = torch.random.get_rng_state()
    assert torch.equal(DropPath(0.0).train()(x), x)
    assert torch.equal(torch.random.get_rng_state(), state)              # no random numbers used
    torch.manual_seed(0)
    out = DropPath(0.5).train()(x)
    assert out.shape == x.shape
    per_sample = out.flatten(1)
    assert all(set(row.tolist()) in ({0.0}, {2.0}) for row in per_sample)    # dropped, or kept and scaled by 2


class Counting(nn.Module):
    """Wraps a module and counts its forward calls."""

    def __init__(self, inner: nn.Module):
        super().__init__()
        self.inner, self.calls = inner, 0

    def forward(self, *args, **kwargs):
        self.calls += 1
        return self.inner(*args, **kwargs)


@pytest.mark.parametrize("checkpointing", [False, True])
def test_checkpointing_recomputes_only_when_on_and_reaches_every_parameter(checkpointing):
    """With checkpointing the attention runs again in the backward pass; without, once. Either way every
    parameter gets its gradient, also for an input that does not require one."""
    layer = randomised(TransformerLayer(8, 2, 16, 0.0)).train()
    plain = [p.detach().clone() for p in layer.parameters()]
    layer.grad_checkpointing = checkpointing
    layer.attn = Counting(layer.attn)
    x = torch.randn(2, 5, 8, generator=torch.Generator().manual_seed(4))
    layer(x).square().sum().backward()
    assert layer.attn.calls == (2 if checkpointing else 1)
    # the gradients of an uncheckpointed copy
    reference = TransformerLayer(8, 2, 16, 0.0).train()
    with torch.no_grad():
        for target, value in zip(reference.parameters(), plain, strict=True):
            target.copy_(value)
    reference(x).square().sum().backward()
    for got, expected in zip(layer.parameters(), reference.parameters(), strict=True):
        assert got.grad is not None
        torch.testing.assert_close(got.grad, expected.grad)


def test_an_unknown_view_names_the_views():
    torch.manual_seed(0)
    model = USDRL(USDRLConfig.from_preset("tiny", modality="multi", num_frames=8))
    x = torch.zeros((1, *model.config.input_shape))
    with pytest.raises(ConfigError, match="this encoder embeds joint, motion, bone, fused; got view 'pose'"):
        model.encoder(x, "pose")


def test_derived_buffers_stay_out_of_the_state_dict():
    """The anchor and causal masks and the sinusoid table are rebuilt from the config: a state dict holds
    the learned weights only (the keys of the reference checkpoints)."""
    assert set(TokenMixer(5, 2, causal=True).state_dict()) == {"mix1.weight", "mix1.bias", "mix2.weight",
                                                                "mix2.bias"}
    torch.manual_seed(0)
    model = USDRL(USDRLConfig.from_preset("tiny", causal=True, num_frames=8))
    assert not [key for key in model.state_dict() if key.rsplit(".", 1)[-1] in ("anchors", "causal_mask",
                                                                                 "temporal_pos")]
