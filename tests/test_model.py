"""The USDRL model: shapes, causality, input validation, encode/dense_features and heads."""

import logging

import numpy as np
import pytest
import torch

from usdrl import USDRL, ConfigError, InputError, USDRLConfig
from usdrl.skeleton import apply_modality


def tiny(**overrides):
    torch.manual_seed(0)
    return USDRL(USDRLConfig.from_preset("tiny", **overrides)).eval()


def clips(n, config, seed=0):
    return torch.randn((n, *config.input_shape), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("encoder", ["dste", "sttr"])
@pytest.mark.parametrize("layout,persons,channels,frames", [("ntu25", 2, 3, 64), ("coco17", 1, 3, 32),
                                                             ("uav17", 2, 2, 20)])
@pytest.mark.parametrize("modality", ["joint", "motion", "bone"])
def test_shapes_for_every_layout_encoder_and_modality(encoder, layout, persons, channels, frames, modality):
    model = tiny(encoder=encoder, layout=layout, num_persons=persons, in_channels=channels, num_frames=frames,
                 modality=modality, num_classes=4, num_frame_classes=3)
    x = clips(2, model.config)
    y_t, y_s = model.forward_features(x)
    v = model.config.num_joints
    assert y_t.shape == (2, frames, 64) and y_s.shape == (2, persons * v, 64)
    assert model(x).shape == (2, 4) and model.forward_frames(x).shape == (2, frames, 3)
    emb = model.encode(x)
    assert emb.shape == (2, 128) and emb.dtype == torch.float32
    dense = model.dense_features(x)
    assert dense.shape == (2, frames, 128)
    # The values: the global feature max-pools each stream, the heads are linear maps of the
    # pooled (clip) and per-frame (dense) features, and the dense features start with y_t.
    torch.testing.assert_close(emb, torch.cat([y_t.amax(dim=1), y_s.amax(dim=1)], dim=1))
    torch.testing.assert_close(model(x), emb @ model.head.weight.T + model.head.bias)
    torch.testing.assert_close(dense[..., :64], y_t)
    torch.testing.assert_close(model.forward_frames(x), dense @ model.frame_head.weight.T + model.frame_head.bias)


def test_base_config_has_the_reference_parameter_count():
    model = USDRL()
    assert sum(p.numel() for p in model.parameters()) == 57_137_368
    assert sum(p.numel() for p in model.encoder.temporal.layers[0].parameters()) == 13_659_264
    assert sum(p.numel() for p in USDRL(encoder="sttr").parameters()) == 27_713_536


@pytest.mark.parametrize("encoder", ["dste", "sttr"])
@pytest.mark.parametrize("modality", ["joint", "bone"])
def test_causal_mode_earlier_frames_ignore_the_future(encoder, modality):
    model = tiny(encoder=encoder, causal=True, modality=modality, num_frames=32)
    x = clips(2, model.config)
    changed = x.clone()
    changed[:, :, 20:] = torch.randn_like(changed[:, :, 20:]) * 5
    before, after = model.dense_features(x), model.dense_features(changed)
    assert before.shape == (2, 32, 64)
    torch.testing.assert_close(before[:, :20], after[:, :20], rtol=1e-5, atol=1e-5)
    assert (before[:, 20:] - after[:, 20:]).abs().max() > 1e-2


def test_non_causal_mode_mixes_the_future_in():
    model = tiny(num_frames=32)
    x = clips(1, model.config)
    changed = x.clone()
    changed[:, :, 20:] += 1.0
    assert (model.dense_features(x)[:, :20] - model.dense_features(changed)[:, :20]).abs().max() > 1e-3


def test_dense_features_are_temporal_tokens_and_pooled_spatial_tokens():
    model = tiny()
    x = clips(2, model.config)
    y_t, y_s = model.forward_features(x)
    dense = model.dense_features(x)
    torch.testing.assert_close(dense[..., :64], y_t)
    # 50 spatial tokens pooled adaptively to 64 positions: position 0 covers token 0 only,
    # position 1 covers tokens 0 and 1 (bins [floor(i*50/64), ceil((i+1)*50/64)))
    torch.testing.assert_close(dense[:, 0, 64:], y_s[:, 0])
    torch.testing.assert_close(dense[:, 1, 64:], (y_s[:, 0] + y_s[:, 1]) / 2)
    torch.testing.assert_close(model.encode(x), torch.cat([y_t.amax(1), y_s.amax(1)], -1))


@pytest.mark.parametrize("shape,message", [
    ((2, 64, 25, 3), r"expected \(N, 3, 64, 25, 2\) for layout ntu25, got \(2, 64, 25, 3\)"),
    ((2, 64, 25, 2, 3), "axes look permuted"),
    ((2, 3, 100, 25, 2), "resample each clip to 64 frames"),
    ((2, 3, 64, 17, 2), "layout ntu25 has 25 joints"),
    ((2, 3, 64, 25, 1), "2 person slots"),
    ((3, 64), r"got \(3, 64\)"),
])
def test_wrong_shapes_name_expected_and_got(shape, message):
    model = tiny()
    with pytest.raises(InputError, match=message):
        model.encode(torch.zeros(shape))
    with pytest.raises(InputError, match=message):
        model(torch.zeros(shape))


def test_non_finite_and_non_numeric_inputs_are_refused():
    model = tiny()
    x = clips(5, model.config)
    x[3, 0, 10, 4, 0] = float("nan")
    x[4, 1, 0, 0, 1] = float("inf")
    with pytest.raises(InputError, match=r"NaN or infinite values in clip\(s\) \[3, 4\]"):
        model.encode(x, batch_size=8)
    with pytest.raises(InputError, match=r"NaN or infinite values in clip\(s\) \[3\]"):  # first bad batch
        model.dense_features(x, batch_size=2)
    with pytest.raises(InputError, match="real-valued"):
        model.encode(np.zeros(model.config.input_shape, dtype=bool))
    with pytest.raises(InputError, match="torch.Tensor or numpy array"):
        model.encode([[0.0]])
    with pytest.raises(InputError, match="empty batch"):
        model.encode(torch.zeros((0, *model.config.input_shape)))


def test_encode_options():
    model = tiny()
    x = clips(5, model.config)
    full = model.encode(x, batch_size=64)
    torch.testing.assert_close(model.encode(x, batch_size=2), full, rtol=1e-5, atol=1e-6)
    single = model.encode(x[1])
    assert single.shape == (128,)
    torch.testing.assert_close(single, full[1], rtol=1e-5, atol=1e-6)
    unit = model.encode(x.numpy(), normalize=True, convert_to_numpy=True)
    assert isinstance(unit, np.ndarray) and unit.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(unit, axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(unit, torch.nn.functional.normalize(full, dim=1).numpy(), rtol=1e-4, atol=1e-6)
    ints = model.encode(np.ones((2, *model.config.input_shape), dtype=np.int64))
    torch.testing.assert_close(ints, model.encode(torch.ones((2, *model.config.input_shape))))


def test_encode_reads_a_memmap_batch_by_batch(tmp_path):
    model = tiny()
    x = clips(4, model.config).numpy()
    path = tmp_path / "clips.npy"
    np.save(path, x)
    mm = np.load(path, mmap_mode="r")
    torch.testing.assert_close(model.encode(mm, batch_size=3), model.encode(torch.from_numpy(x)))


def test_encode_runs_in_eval_and_restores_training_mode():
    model = tiny(num_classes=2)
    x = clips(3, model.config)
    model.train()
    assert not torch.equal(model.encoder(x)[0], model.encoder(x)[0])  # drop path is stochastic in training
    first, second = model.encode(x), model.encode(x)
    assert torch.equal(first, second) and model.training


def test_bf16_path_is_close_to_fp32_and_agrees_on_the_class():
    model = tiny(num_classes=6)
    x = clips(16, model.config)
    fp32 = model.encode(x)
    bf16 = model.encode(x, dtype="bf16")
    assert bf16.dtype == torch.float32
    cosine = torch.nn.functional.cosine_similarity(fp32, bf16, dim=1)
    assert cosine.min() > 0.99
    with pytest.raises(ConfigError, match="unknown precision 'fp8'"):
        model.encode(x, dtype="fp8")


def test_progress_bar_follows_the_log_level(caplog, capsys):
    model = tiny()
    x = clips(2, model.config)
    model.encode(x)
    assert "batch" not in capsys.readouterr().err
    with caplog.at_level(logging.INFO, logger="usdrl.model"):
        model.encode(x)
    assert "batch" in capsys.readouterr().err


def test_training_forward_backward_reaches_every_parameter():
    model = tiny(num_classes=3, num_frame_classes=2)
    model.train()
    x = clips(4, model.config)
    loss = model(x).logsumexp(1).mean() + model.forward_frames(x).square().mean()
    loss.backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert missing == []


def test_reset_classifier_replaces_only_the_head():
    model = tiny(num_classes=3)
    encoder_before = {k: v.clone() for k, v in model.encoder.state_dict().items()}
    model.reset_classifier(7, class_names=[f"c{i}" for i in range(7)])
    assert model.head.out_features == 7 and model.config.num_classes == 7 and model.config.class_names[6] == "c6"
    assert all(torch.equal(v, model.encoder.state_dict()[k]) for k, v in encoder_before.items())
    model.reset_classifier(0)
    assert model.head is None and model(clips(1, model.config)).shape == (1, 128)
    model.reset_frame_classifier(5)
    assert model.forward_frames(clips(1, model.config)).shape == (1, 64, 5)


def test_multimodal_model_embeds_each_modality_and_their_fusion(tmp_path):
    model = tiny(modality="multi", num_classes=4)
    assert model.config.views == ("joint", "motion", "bone", "fused") and model.config.default_view == "fused"
    assert set(model.encoder.temporal.embeds) == {"joint", "motion", "bone"}
    assert model.encoder.spatial.fuse.bias is None
    x = clips(2, model.config)
    outputs = {view: model.forward_features(x, view) for view in model.config.views}
    for view, (y_t, y_s) in outputs.items():
        assert y_t.shape == (2, 64, 64) and y_s.shape == (2, 50, 64), view
    assert not torch.allclose(outputs["joint"][0], outputs["fused"][0])
    torch.testing.assert_close(model.encode(x), torch.cat([t.amax(1) for t in outputs["fused"]], -1))

    # the fused tokens are fuse(mean of the three modality embeddings)
    stream, layout = model.encoder.temporal, model.layout
    tokens = {m: apply_modality(x, m, layout).permute(0, 2, 4, 3, 1).reshape(2, 64, 150) for m in stream.embeds}
    expected = stream.fuse((stream.embeds["joint"](tokens["joint"]) + stream.embeds["motion"](tokens["motion"])
                            + stream.embeds["bone"](tokens["bone"])) / 3)
    torch.testing.assert_close(stream.embed_tokens(tokens), expected)

    model.save_pretrained(tmp_path / "multi")
    torch.testing.assert_close(USDRL.from_pretrained(tmp_path / "multi")(x), model(x))


def test_views_are_checked():
    model = tiny(modality="bone")
    x = clips(1, model.config)
    assert torch.equal(model.forward_features(x, "bone")[0], model.forward_features(x)[0])
    with pytest.raises(ConfigError, match="embeds bone; got view 'joint'"):
        model.forward_features(x, "joint")
    with pytest.raises(ConfigError, match="got view 'fusion'"):
        tiny(modality="multi").forward_features(x, "fusion")


@pytest.mark.parametrize("encoder", ["dste", "sttr"])
def test_grad_checkpointing_gives_the_same_gradients(encoder):
    x = clips(3, USDRLConfig.from_preset("tiny"))
    grads = []
    for enable in (False, True):
        model = tiny(num_classes=3, encoder=encoder, drop_path=0.2).train()
        model.set_grad_checkpointing(enable)
        torch.manual_seed(5)  # the same drop-path draws
        model(x).square().sum().backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters()})
    for name, grad in grads[0].items():
        torch.testing.assert_close(grads[1][name], grad, rtol=1e-5, atol=1e-6, msg=name)


def test_saved_files_get_the_permissions_of_a_plain_open(tmp_path):
    import os

    umask = os.umask(0o027)
    try:
        tiny().save_pretrained(tmp_path / "model")
    finally:
        os.umask(umask)
    modes = {path.name: path.stat().st_mode & 0o777 for path in (tmp_path / "model").iterdir()}
    assert modes == {"config.json": 0o640, "model.safetensors": 0o640, "README.md": 0o640}


def test_encoder_initialisation_follows_the_reference():
    # Spec: linear weights and the spatial position table truncated-normal with std 0.02, biases 0,
    # LayerNorms (1, 0); attention input projections xavier-uniform; the CA point-wise projection
    # keeps PyTorch's default U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
    encoder = tiny().encoder
    d = encoder.config.hidden_size
    layers = [*encoder.temporal.layers, *encoder.spatial.layers]
    # the point-wise and attention input projections have their own initialisations, checked below
    own = {id(layer.ca.pointwise) for layer in layers} | {id(layer.attn.in_proj) for layer in layers}
    linears = [m for m in encoder.modules() if isinstance(m, torch.nn.Linear) and id(m) not in own]
    weights = torch.cat([m.weight.flatten() for m in linears])
    assert weights.std().item() == pytest.approx(0.02, rel=0.05) and weights.mean().abs() < 1e-3
    assert all(not m.bias.any() for m in linears)
    assert encoder.spatial_pos.std().item() == pytest.approx(0.02, rel=0.1)
    norms = [m for m in encoder.modules() if isinstance(m, torch.nn.LayerNorm)]
    assert norms and all((m.weight == 1).all() and not m.bias.any() for m in norms)
    for layer in layers:
        assert layer.ca.pointwise.weight.abs().max() <= d ** -0.5
        assert layer.ca.pointwise.weight.std().item() == pytest.approx(d ** -0.5 / 3 ** 0.5, rel=0.1)
        in_proj = layer.attn.in_proj_weight   # xavier: U(-b, b), b = sqrt(6 / (d + 3d))
        assert in_proj.abs().max() <= (6 / (4 * d)) ** 0.5
        assert in_proj.std().item() == pytest.approx((6 / (4 * d)) ** 0.5 / 3 ** 0.5, rel=0.05)


def test_drop_path_drops_whole_samples_and_rescales_the_kept_ones():
    from usdrl.encoder import DropPath

    torch.manual_seed(0)
    x = torch.rand(20_000, 3, 4) + 1
    drop = DropPath(0.25).train()
    out = drop(x)
    kept = out.flatten(1).any(dim=1)
    assert kept.double().mean().item() == pytest.approx(0.75, abs=0.015)
    torch.testing.assert_close(out[kept], x[kept] / 0.75)   # rescaled by 1 / keep: the mean is unchanged
    assert not out[~kept].any()
    assert torch.equal(drop.eval()(x), x) and torch.equal(DropPath(0.0).train()(x), x)
