"""USDRL pinned where mutation testing found the other model tests loose: defaults, options handed on
(devices, precisions, hub arguments, progress bars), exact log and error texts, the head checks of
``check_weights`` and where a model lands (the simulated accelerator of :mod:`device_harness`)."""

import logging
import re
import warnings

import numpy as np
import pytest
import torch
from device_harness import SimulatedAccelerator
from huggingface_hub.errors import LocalTokenNotFoundError
from safetensors.torch import load_file, save_file

import usdrl.model as model_module
from usdrl import USDRL, USDRLConfig
from usdrl.errors import CheckpointError, ConfigError


def tiny_model(**overrides) -> USDRL:
    torch.manual_seed(0)
    return USDRL(USDRLConfig.from_preset("tiny", hidden_size=16, num_heads=1, **overrides)).eval()


def clips(model: USDRL, n: int, seed: int = 0) -> torch.Tensor:
    return torch.randn((n, *model.config.input_shape), generator=torch.Generator().manual_seed(seed))


def placed(accelerator: SimulatedAccelerator, model: USDRL) -> USDRL:
    with accelerator:
        model.to("cpu")
    assert all(accelerator.on_device(p) for p in model.parameters())
    return model


@pytest.fixture
def accelerator():
    from usdrl.train.augment import _resize_table

    _resize_table.cache_clear()
    return SimulatedAccelerator()


# ---- devices --------------------------------------------------------------------------------
def test_new_heads_are_made_where_the_model_is(accelerator):
    model = placed(accelerator, tiny_model(num_classes=3, num_frame_classes=4))
    batch = clips(model, 2)
    with accelerator:
        model.reset_classifier(5)
        model.reset_frame_classifier(6)
        assert all(accelerator.on_device(p) for p in model.parameters())
        logits = model(batch.to("cpu"))
        frames = model.forward_frames(batch.to("cpu"))
    assert logits.shape == (2, 5) and frames.shape == (2, model.config.num_frames, 6)


def test_encode_moves_the_model_to_the_device_asked_for(accelerator):
    model = tiny_model()
    batch = clips(model, 3)
    expected = model.encode(batch)
    with accelerator:
        got = model.encode(batch, device="cpu")  # the model is on the host: it must be moved with the batches
    assert all(accelerator.on_device(p) for p in model.parameters())
    torch.testing.assert_close(got, expected)


def test_host_batches_are_moved_to_the_model(accelerator):
    model = placed(accelerator, tiny_model())
    batch = clips(model, 2)
    with accelerator:
        y_t, y_s = model.forward_features(batch)  # a host tensor
        assert accelerator.on_device(y_t) and accelerator.on_device(y_s)
        embeddings = model.encode(batch.numpy())  # a host array
    assert embeddings.shape == (2, model.num_features)


def test_a_meta_model_runs_without_values():
    model = tiny_model().to("meta")
    y_t, y_s = model.forward_features(clips(model, 2))
    assert y_t.device.type == "meta" and y_t.shape == (2, model.config.num_frames, 16)
    assert y_s.shape == (2, model.config.spatial_tokens, 16)


def test_tracing_records_no_value_check():
    import linecache

    model = tiny_model()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")  # a Python branch on a traced value warns (TracerWarning) at its line
        traced = torch.jit.trace(model, (clips(model, 2),), check_trace=False)
    branches = [linecache.getline(w.filename, w.lineno) for w in caught if w.category is torch.jit.TracerWarning]
    assert branches and not [line for line in branches if "finite" in line]  # the NaN check is left out of a trace
    with torch.no_grad():
        torch.testing.assert_close(traced(clips(model, 3, seed=1)), model(clips(model, 3, seed=1)))


def test_arrays_and_tensors_of_any_dtype_give_the_same_features():
    model = tiny_model()
    batch = clips(model, 2)
    expected = model.encode(batch)
    assert torch.equal(model.encode(batch.double()), expected)  # float32 values: exact in float64
    assert torch.equal(model.encode(batch.numpy().astype(">f4")), expected)  # big-endian
    double = tiny_model().double()
    wide = batch.double() + 1e-9  # not float32 values: a float64 model must not round them to float32
    features = double.forward_features(wide)
    for a, b in zip(double.forward_features(wide.numpy()), features, strict=True):
        assert a.dtype == torch.float64 and torch.equal(a, b)


def test_encode_without_a_device_runs_where_the_model_is(monkeypatch):
    model = tiny_model()
    batch = clips(model, 2)
    expected = model.encode(batch)
    asked = []
    # "auto" would pick another device (a GPU) than the model's: encode must not ask for it
    monkeypatch.setattr(model_module, "resolve_device",
                        lambda device: asked.append(device) or torch.device("cpu" if device == "cuda" else "meta"))
    torch.testing.assert_close(model.encode(batch), expected)
    assert asked == [] and next(model.parameters()).device == torch.device("cpu")
    model.dense_features(batch, device="cuda")  # a device asked for is resolved (the stand-in gives the CPU)
    assert asked == ["cuda"]


def test_from_pretrained_moves_to_map_location(tmp_path):
    # (the simulated accelerator cannot tell here: safetensors' tensors, made with device="cpu", look moved)
    tiny_model(num_classes=3).save_pretrained(tmp_path / "m")
    loaded = USDRL.from_pretrained(tmp_path / "m", map_location="meta")
    assert {p.device.type for p in loaded.parameters()} == {"meta"} and not loaded.training


def test_quantize_copies_to_the_cpu_in_float32(monkeypatch):
    moves = []
    real_to = torch.nn.Module.to

    def recording_to(self, *args, **kwargs):
        if isinstance(self, USDRL):
            moves.append(kwargs)
        return real_to(self, *args, **kwargs)

    model = tiny_model().to(torch.float64)
    monkeypatch.setattr(USDRL, "to", recording_to)
    quantized = model.quantize()
    assert moves == [{"device": "cpu", "dtype": torch.float32}]
    assert next(model.parameters()).dtype == torch.float64  # the model itself is left as it was
    assert {p.dtype for p in quantized.parameters()} == {torch.float32}
    batch = clips(model, 2)
    assert quantized.encode(batch).dtype == torch.float32


def test_quantize_silences_only_the_torch_ao_notices(monkeypatch):
    import torch.ao.quantization as quantization

    seen = {}

    def fake_quantize_dynamic(model, qconfig_spec, **kwargs):
        seen.update(layers=qconfig_spec)
        warnings.warn("torch.ao.quantization is deprecated", DeprecationWarning, stacklevel=1)
        warnings.warn("quantize_per_tensor: something", UserWarning, stacklevel=1)
        warnings.warn("another warning", UserWarning, stacklevel=1)
        return model

    monkeypatch.setattr(quantization, "quantize_dynamic", fake_quantize_dynamic)
    model = tiny_model()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.quantize()
    assert [str(w.message) for w in caught] == ["another warning"]
    assert seen["layers"][torch.nn.Linear] is quantization.per_channel_dynamic_qconfig
    embeds = {name for name in seen["layers"] if isinstance(name, str)}
    assert embeds and all(".embed" in f".{name}" and seen["layers"][name] is None for name in embeds)


# ---- options handed on ---------------------------------------------------------------------
def test_grad_checkpointing_switches_every_layer():
    model = tiny_model()
    layers = [layer for stream in (model.encoder.temporal, model.encoder.spatial) for layer in stream.layers]
    model.set_grad_checkpointing()
    assert all(layer.grad_checkpointing is True for layer in layers)
    model.set_grad_checkpointing(False)
    assert all(layer.grad_checkpointing is False for layer in layers)


@pytest.mark.parametrize("method", ["encode", "dense_features"])
def test_the_default_batch_size_is_64(method):
    model = tiny_model()
    sizes = []
    model.encoder.register_forward_hook(lambda module, args, out: sizes.append(len(args[0])))
    getattr(model, method)(clips(model, 65))
    assert sizes == [64, 1]


@pytest.mark.parametrize("method", ["encode", "dense_features"])
def test_an_asked_progress_bar_is_shown_whatever_the_log_level(method, capsys):
    model = tiny_model()
    logging.getLogger("usdrl").setLevel(logging.WARNING)
    try:
        getattr(model, method)(clips(model, 2), batch_size=1, show_progress_bar=True)
        shown = capsys.readouterr().err
        assert "2/2" in shown and re.search(r"[0-9](batch/s|s/batch)\]", shown)  # counted in batches
        getattr(model, method)(clips(model, 2), batch_size=1)
        assert "2/2" not in capsys.readouterr().err
    finally:
        logging.getLogger("usdrl").setLevel(logging.NOTSET)


def test_dense_features_take_the_precision_asked_for():
    model = tiny_model()
    batch = clips(model, 2)
    fp32 = model.dense_features(batch)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        int8 = model.dense_features(batch, dtype="int8")
    assert int8.dtype == torch.float32 and not torch.equal(int8, fp32)
    torch.testing.assert_close(int8, fp32, rtol=0.2, atol=0.2)


def universal_model() -> USDRL:
    torch.manual_seed(0)
    return USDRL(USDRLConfig.from_preset("tiny", hidden_size=16, num_heads=1, layout="universal", in_channels=6,
                                          num_frames=16)).eval()


def test_encode_keypoints_hands_on_has_scores_and_image_size():
    from usdrl.universal import model_input

    model = universal_model()
    rng = np.random.default_rng(0)
    people = model.config.num_persons
    three = rng.uniform(0.2, 1, size=(1, 10, 17, 3)).astype(np.float32)  # COCO-17 x, y and a third channel
    as_depth = model.encode_keypoints(three, "coco17", has_scores=False)  # the third channel is depth, not a score
    torch.testing.assert_close(as_depth, model.encode(model_input(three, "coco17", num_frames=16, num_persons=people,
                                                                  has_scores=False)))
    assert not torch.allclose(as_depth, model.encode_keypoints(three, "coco17"))
    normalised = rng.uniform(0.2, 0.8, size=(1, 10, 33, 2)).astype(np.float32)
    wide = model.encode_keypoints(normalised, "mediapipe33", image_size=(100, 400))
    torch.testing.assert_close(wide, model.encode(model_input(normalised, "mediapipe33", num_frames=16,
                                                              num_persons=people, image_size=(100, 400))))
    assert not torch.allclose(wide, model.encode_keypoints(normalised, "mediapipe33"))


def test_save_pretrained_pushes_with_its_arguments(tmp_path, monkeypatch):
    model = tiny_model()
    pushes = []
    monkeypatch.setattr(model, "push_to_hub", lambda repo_id, **kwargs: pushes.append((repo_id, kwargs)) or "commit")
    card = {"description": "a test"}
    assert model.save_pretrained(tmp_path / "folder", push_to_hub=True, model_card_kwargs=card, private=True) == \
        "commit"
    assert model.save_pretrained(tmp_path / "other", push_to_hub=True, repo_id="org/name") == "commit"
    assert pushes == [("folder", {"model_card_kwargs": card, "private": True}),
                      ("org/name", {"model_card_kwargs": None})]


def test_from_pretrained_hands_the_hub_arguments_on(tmp_path, monkeypatch):
    tiny_model().save_pretrained(tmp_path / "m")
    asked = []
    real = model_module.resolve_model_files

    def recording(name, **kwargs):
        asked.append((name, kwargs))
        return real(name, **{**kwargs, "token": None, "force_download": False})

    monkeypatch.setattr(model_module, "resolve_model_files", recording)
    USDRL.from_pretrained(tmp_path / "m", revision="r1", cache_dir=tmp_path / "c", local_files_only=True,
                          token="secret", force_download=True)
    assert asked == [(tmp_path / "m", {"revision": "r1", "cache_dir": tmp_path / "c", "local_files_only": True,
                                       "token": "secret", "force_download": True})]


def test_from_pretrained_can_replace_or_drop_the_frame_head(tmp_path, caplog):
    tiny_model(num_frame_classes=4).save_pretrained(tmp_path / "m")
    with caplog.at_level(logging.WARNING, logger="usdrl"):
        fresh = USDRL.from_pretrained(tmp_path / "m", num_frame_classes=6)
    assert fresh.frame_head.out_features == 6
    weights = tmp_path / "m" / "model.safetensors"
    assert f"{weights}: frame_head re-initialised for 6 classes (checkpoint had shape (4, 32)); train it before " \
           "use" in caplog.text
    assert USDRL.from_pretrained(tmp_path / "m", num_frame_classes=0).frame_head is None


@pytest.mark.parametrize("field", ["num_classes", "num_frame_classes"])
def test_a_head_size_set_anew_skips_the_config_check_of_that_head(tmp_path, field):
    import json

    tiny_model(**{field: 4}).save_pretrained(tmp_path / "m")
    config_file = tmp_path / "m" / "config.json"
    config_file.write_text(json.dumps({**json.loads(config_file.read_text()), field: 5}))  # the weights hold 4
    with pytest.raises(ConfigError, match=rf"{field} is 5 but .* holds weights for 4 classes"):
        USDRL.from_pretrained(tmp_path / "m")
    assert getattr(USDRL.from_pretrained(tmp_path / "m", **{field: 6}).config, field) == 6
    assert getattr(USDRL.from_pretrained(tmp_path / "m", **{field: 0}).config, field) == 0


def test_from_pretrained_names_the_weights_file_in_load_errors(tmp_path):
    tiny_model().save_pretrained(tmp_path / "m")
    weights = tmp_path / "m" / "model.safetensors"
    state = load_file(weights)
    state["encoder.stray"] = torch.zeros(1)
    save_file(state, weights)
    with pytest.raises(CheckpointError, match=rf"^{weights} does not match this model .*unexpected: encoder\.stray$"):
        USDRL.from_pretrained(tmp_path / "m")


# ---- check_weights ---------------------------------------------------------------------------
def test_check_weights_default_source_and_exact_log_lines(caplog):
    model = tiny_model(num_classes=0, num_frame_classes=4)
    state = model.state_dict()
    with pytest.raises(CheckpointError, match=r"^state dict does not match this model"):
        model.check_weights({k: v for k, v in state.items() if k != sorted(state)[0]})
    with caplog.at_level(logging.INFO, logger="usdrl"):
        model.check_weights({**state, "head.weight": torch.zeros(3, 32), "frame_head.weight": torch.zeros(2, 32),
                             "frame_head.bias": torch.zeros(2)}, source="f")
    assert [r.getMessage() for r in caplog.records] == [
        "f: ignoring the head weights (this model has no such head)",
        "f: frame_head re-initialised for 4 classes (checkpoint had shape (2, 32)); train it before use"]


def test_a_fitting_clip_head_does_not_stop_the_frame_head_check(caplog):
    model = tiny_model(num_classes=3, num_frame_classes=4)
    state = {k: v for k, v in model.state_dict().items() if not k.startswith("frame_head.")}
    with caplog.at_level(logging.WARNING, logger="usdrl"):
        kept = model.check_weights(state)
    assert set(kept) == set(model.state_dict())
    assert "frame_head re-initialised for 4 classes (checkpoint had none)" in caplog.text


def test_check_weights_lists_wrong_shapes_and_counts_past_eight():
    model = tiny_model()
    state = model.state_dict()
    name = sorted(state)[0]
    shape = tuple(state[name].shape)
    with pytest.raises(CheckpointError) as err:
        model.check_weights({**state, name: torch.zeros(*shape, 2)})
    assert str(err.value).endswith(f": wrong shape: {name}: expected {shape}, got {(*shape, 2)}")
    extra = {f"extra.{i}": torch.zeros(1) for i in range(9)}
    with pytest.raises(CheckpointError) as err:
        model.check_weights({**state, **extra})
    assert str(err.value).endswith("unexpected: " + ", ".join(sorted(extra)[:8]) + " ... and 1 more")


# ---- publishing ----------------------------------------------------------------------------
def test_push_without_a_token_says_how_to_get_one(monkeypatch):
    monkeypatch.setattr(model_module, "get_token", lambda: None)
    with pytest.raises(LocalTokenNotFoundError) as err:
        tiny_model().push_to_hub("org/name")
    assert str(err.value) == ("pushing to the Hub repo 'org/name' needs a write token: pass token=..., set HF_TOKEN "
                              "or log in with `hf auth login`")


def test_the_model_card_keeps_the_library_tags_and_links_the_paper():
    card = tiny_model(dataset="ntu60").generate_model_card()
    assert {"skeleton", "action-recognition", "self-supervised", "usdrl", "ntu60"} <= set(card.data.tags)
    assert "A [USDRL](https://arxiv.org/abs/2508.12586) model" in card.content


# ---- input checks, whole messages --------------------------------------------------------------
BATCH = "; the model takes a batch (N, C, T, V, M): channels, frames, joints, persons"


@pytest.mark.parametrize(("shape", "single", "hint"), [
    ((3, 64, 25), False, BATCH),
    ((3, 64, 25), True, BATCH + ", or one clip (C, T, V, M)"),
    ((1, 64, 3, 25, 2), False, "; the axes look permuted: the order is (N, C, T, V, M): channels, frames, joints, "
                               "persons"),
    ((1, 3, 32, 25, 2), False, "; resample each clip to 64 frames"),
    ((1, 3, 25, 25, 2), False, "; resample each clip to 64 frames"),  # as many frames as the layout has joints
    ((3, 32, 25, 2), True, "; resample each clip to 64 frames"),  # one clip
    ((1, 3, 32, 17, 2), False, "; layout ntu25 has 25 joints"),  # frames and joints wrong: the joints first
    ((1, 3, 64, 25, 1), False, "; the model takes 2 person slots (zero-fill absent persons)"),
])
def test_input_shape_messages(shape, single, hint):
    model = tiny_model()
    x = torch.zeros(shape)
    with pytest.raises(model_module.InputError) as err:
        model.encode(x) if single else model.forward_features(x)
    assert str(err.value) == f"expected (N, 3, 64, 25, 2) for layout ntu25, got {shape}{hint}"


def test_a_forward_pass_takes_a_batch_only():
    model = tiny_model()
    with pytest.raises(model_module.InputError, match=r", got \(3, 64, 25, 2\); the model takes a batch .*persons$"):
        model.forward_features(torch.zeros(3, 64, 25, 2))
    model.check_input(torch.zeros(3, 64, 25, 2), allow_single=True)


def test_frames_equal_to_joints_still_name_the_frames():
    model = tiny_model(num_frames=25)
    with pytest.raises(model_module.InputError) as err:
        model.forward_features(torch.zeros(1, 3, 30, 25, 2))
    assert str(err.value) == ("expected (N, 3, 25, 25, 2) for layout ntu25, got (1, 3, 30, 25, 2); resample each "
                              "clip to 25 frames")


def test_the_nan_message_lists_ten_clips():
    model = tiny_model()
    x = torch.full((12, *model.config.input_shape), float("nan"))
    with pytest.raises(model_module.InputError) as err:
        model.encode(x)
    assert str(err.value) == "input contains NaN or infinite values in clip(s) [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]"


def test_a_config_can_be_a_dict_with_overrides():
    import json

    config = USDRLConfig.from_preset("tiny", hidden_size=16, num_heads=1)
    model = USDRL(json.loads(config.to_json()), num_classes=3)
    assert model.config == config.replace(num_classes=3) and model.head.out_features == 3
    with pytest.raises(ConfigError) as err:
        USDRL(5)
    assert str(err.value) == "config must be a USDRLConfig or a dict, got int"
