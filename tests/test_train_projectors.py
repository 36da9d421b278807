"""Projectors: shapes, reference key names and checkpoints, per-view batch norm equal to separate passes."""

import copy

import pytest
import torch
from reference_impl import LiteralPretraining, LiteralSTTR, randomise_
from safetensors.torch import load_file, save_file

from usdrl.convert import convert_reference_checkpoint
from usdrl.errors import CheckpointError, InputError
from usdrl.train.projectors import Projectors, ViewBatchNorm1d

HIDDEN = 8


def randomised(module, seed=0):
    """Random weights and running statistics (so a mismatch cannot go unnoticed)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in module.state_dict().items():
            if tensor.is_floating_point():
                tensor.copy_(torch.rand(tensor.shape, generator=g) + (0.5 if "var" in name else -0.5))
    return module


def test_shapes_and_key_names():
    projectors = Projectors(HIDDEN)
    out = projectors(torch.randn(4, 6, HIDDEN), torch.randn(4, 6, HIDDEN))
    assert {k: tuple(v.shape) for k, v in out.items()} == {
        "temporal": (4, 6, 2 * HIDDEN), "spatial": (4, 6, 2 * HIDDEN), "instance": (4, 6, 4 * HIDDEN)}
    assert projectors(torch.randn(6, HIDDEN), torch.randn(6, HIDDEN))["instance"].shape == (6, 4 * HIDDEN)
    state = projectors.state_dict()
    assert {k.split(".")[0] for k in state} == {"temporal", "spatial", "instance"}
    assert {k.split(".", 1)[1] for k in state if k.startswith("temporal.")} == {
        "0.weight", "0.bias", "3.weight", "3.bias", "6.weight", "6.bias",
        *(f"{i}.{p}" for i in (1, 4) for p in ("weight", "bias", "running_mean", "running_var",
                                               "num_batches_tracked"))}
    assert state["instance.0.weight"].shape == (2 * HIDDEN, 2 * HIDDEN)
    assert state["instance.6.weight"].shape == (4 * HIDDEN, 2 * HIDDEN)


def test_initialisation():
    projectors = Projectors(64)
    weight = projectors.instance[3].weight
    assert weight.std().item() == pytest.approx(0.02, rel=0.05)
    assert weight.abs().max().item() <= 2.0
    assert all(not m.bias.any() for m in projectors.modules() if isinstance(m, torch.nn.Linear))
    assert (projectors.temporal[1].weight == 1).all() and not projectors.temporal[4].bias.any()


def test_per_view_batch_norm_equals_separate_passes():
    torch.manual_seed(0)
    batched = randomised(Projectors(HIDDEN)).train()
    separate = copy.deepcopy(batched)
    h_t, h_s = torch.randn(4, 6, HIDDEN) * 3 + 1, torch.randn(4, 6, HIDDEN)
    for _ in range(2):  # two steps: the running statistics keep folding in view order
        out = batched(h_t, h_s)
        expected = [separate(h_t[k], h_s[k]) for k in range(4)]
    for domain in out:
        torch.testing.assert_close(out[domain], torch.stack([e[domain] for e in expected]), rtol=1e-6, atol=1e-6)
    got, want = batched.state_dict(), separate.state_dict()
    assert got["temporal.1.num_batches_tracked"].item() == 8
    for key in got:
        torch.testing.assert_close(got[key], want[key], rtol=1e-6, atol=1e-6)
    # Gradients agree too.
    batched.zero_grad()
    separate.zero_grad()
    sum(v.square().sum() for v in batched(h_t, h_s).values()).backward()
    sum(v.square().sum() for k in range(4) for v in separate(h_t[k], h_s[k]).values()).backward()
    # A linear bias followed by batch norm has a gradient that is zero in exact arithmetic: it comes out as float
    # noise whose size depends on the CPU kind and thread count, so the tolerance is relative to the largest gradient.
    scale = max(p.grad.abs().max().item() for p in separate.parameters())
    for (name, a), (_, b) in zip(batched.named_parameters(), separate.named_parameters(), strict=True):
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-5, atol=1e-6 * scale, msg=name)
    assert scale > 1.0  # the bound above is not vacuous


def test_per_view_batch_norm_in_eval_and_cumulative_modes():
    bn = randomised(ViewBatchNorm1d(5)).eval()
    x = torch.randn(3, 4, 5)
    torch.testing.assert_close(bn(x), torch.stack([bn(x[k]) for k in range(3)]))
    cumulative = ViewBatchNorm1d(5, momentum=None).train()
    reference = copy.deepcopy(cumulative)
    cumulative(x)
    for k in range(3):
        reference(x[k])
    torch.testing.assert_close(cumulative.running_mean, reference.running_mean)
    torch.testing.assert_close(cumulative.running_var, reference.running_var)
    stateless = ViewBatchNorm1d(5, track_running_stats=False).eval()
    torch.testing.assert_close(stateless(x), torch.stack([stateless(x[k]) for k in range(3)]))


def test_loads_a_converted_reference_checkpoint(tmp_path):
    torch.manual_seed(1)
    ref = LiteralPretraining(LiteralSTTR(25 * 2 * 3, 64 * 3, HIDDEN, 1, 50), HIDDEN)
    randomise_(ref)
    for proj in (ref.t_proj, ref.s_proj, ref.i_proj):
        randomised(proj)
    path = tmp_path / "checkpoint_0450.pth.tar"
    torch.save({"epoch": 450, "state_dict": ref.state_dict()}, path)
    folder = convert_reference_checkpoint(path, tmp_path / "converted")

    projectors = Projectors.from_file(folder)
    assert projectors.hidden_size == HIDDEN
    projectors.eval()
    ref.eval()
    h_t, h_s = torch.randn(5, HIDDEN), torch.randn(5, HIDDEN)
    out = projectors(h_t, h_s)
    with torch.no_grad():
        torch.testing.assert_close(out["temporal"], ref.t_proj(h_t))
        torch.testing.assert_close(out["spatial"], ref.s_proj(h_s))
        torch.testing.assert_close(out["instance"], ref.i_proj(torch.cat([h_t, h_s], -1)))
    plain = Projectors(HIDDEN)
    plain.load_state_dict(load_file(folder / "projectors.safetensors"), strict=True)
    torch.testing.assert_close(plain.state_dict(), projectors.state_dict())


def test_errors(tmp_path):
    with pytest.raises(InputError):
        Projectors(HIDDEN)(torch.randn(2, HIDDEN), torch.randn(2, HIDDEN + 1))
    state = Projectors(HIDDEN).state_dict()
    del state["instance.4.running_mean"]
    save_file(state, tmp_path / "projectors.safetensors")
    with pytest.raises(CheckpointError, match="instance.4.running_mean"):
        Projectors.from_file(tmp_path)
    save_file({"x": torch.zeros(1)}, tmp_path / "other.safetensors")
    with pytest.raises(CheckpointError, match="not a projectors file"):
        Projectors.from_file(tmp_path / "other.safetensors")
