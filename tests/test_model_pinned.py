"""USDRL's saving, model card, weight checks and batching pinned where the other model tests
left them free: file metadata, the card's heads and tags, message texts and log lines."""

import logging

import numpy as np
import pytest
import torch
from safetensors import safe_open

from usdrl import USDRL, USDRLConfig, __version__
from usdrl.errors import CheckpointError, ConfigError, InputError


def tiny_model(**overrides) -> USDRL:
    torch.manual_seed(0)
    return USDRL(USDRLConfig.from_preset("tiny", hidden_size=16, num_heads=1, **overrides)).eval()


def test_save_pretrained_metadata_nested_folder_and_an_existing_card(tmp_path):
    folder = tmp_path / "a" / "b" / "model"  # parents are created
    model = tiny_model(num_classes=3)
    model.save_pretrained(folder)
    with safe_open(folder / "model.safetensors", "pt") as weights:
        assert weights.metadata() == {"format": "pt", "usdrl_version": __version__}
    (folder / "README.md").write_text("my own card\n")
    model.save_pretrained(folder)  # a card already there is kept
    assert (folder / "README.md").read_text() == "my own card\n"
    with pytest.raises(ConfigError, match=r"^the model's own config is saved; change it with model\.config / "
                                          r"reset_classifier$"):
        model.save_pretrained(folder, config={"num_classes": 3})


def test_model_card_heads_and_tags():
    card = tiny_model(num_classes=3, num_frame_classes=4, dataset="ntu60").generate_model_card()
    assert "| Heads | clip classifier (3 classes), frame-wise (4 classes) |" in card.content
    encoder = tiny_model().config.encoder
    assert set(card.data.tags) >= {encoder, "ntu60"} and card.data.tags == sorted(card.data.tags)
    bare = tiny_model(num_classes=0).generate_model_card()
    assert "| Heads | none: an encoder |" in bare.content
    assert "None" not in bare.data.tags  # no dataset: no tag for it


def test_batching_limits_and_messages():
    model = tiny_model()
    clips = torch.randn(3, *model.config.input_shape, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(model.encode(clips, batch_size=1), model.encode(clips, batch_size=3))
    with pytest.raises(InputError, match=r"^batch_size must be >= 1, got 0$"):
        model.encode(clips, batch_size=0)
    with pytest.raises(InputError, match=r"^got an empty batch \(N = 0\)$"):
        model.encode(clips[:0])


def test_check_weights_messages_and_logs(caplog):
    model = tiny_model(num_classes=0)
    state = model.state_dict()
    with caplog.at_level(logging.INFO, logger="usdrl"):
        kept = model.check_weights({**state, "head.weight": torch.zeros(3, 32)}, source="ckpt.safetensors")
    assert "head.weight" not in kept
    assert "ckpt.safetensors: ignoring the head weights (this model has no such head)" in caplog.text
    extra = {f"extra.{i}": torch.zeros(1) for i in range(10)}
    with pytest.raises(CheckpointError) as err:
        model.check_weights({**state, **extra}, source="ckpt")
    names = sorted(extra)
    assert str(err.value).endswith("unexpected: " + ", ".join(names[:8]) + " ... and 2 more")
    assert str(err.value).startswith(f"ckpt does not match this model ({model.config.encoder}, layout "
                                     f"{model.config.layout}, hidden 16): ")
    missing = dict(state)
    first = sorted(state)[0]
    del missing[first]
    with pytest.raises(CheckpointError) as err:
        model.check_weights({**missing, **dict(list(extra.items())[:8])})
    assert str(err.value).endswith(f": missing: {first}; unexpected: " + ", ".join(names[:8]))


def test_a_frame_head_of_another_size_is_reinitialised_and_logged(caplog):
    model = tiny_model(num_frame_classes=4)
    state = {k: v for k, v in model.state_dict().items() if not k.startswith("frame_head.")}
    with caplog.at_level(logging.WARNING, logger="usdrl"):
        model.check_weights(state, source="file")
    assert "file: frame_head re-initialised for 4 classes (checkpoint had none); train it before use" in caplog.text


def test_frame_outputs_without_and_with_a_frame_head():
    model = tiny_model(num_frame_classes=5)
    clips = torch.randn(2, *model.config.input_shape, generator=torch.Generator().manual_seed(2))
    assert model.forward_frames(clips).shape == (2, model.config.num_frames, 5)
    model.reset_frame_classifier(0)  # 0 removes the head: the dense features come out
    assert model.frame_head is None and model.config.num_frame_classes == 0
    with torch.inference_mode():
        frames = model.forward_frames(clips)
    dense = model.dense_features(clips, convert_to_numpy=True)
    assert type(dense).__name__ == "ndarray" and dense.shape == tuple(frames.shape)
    torch.testing.assert_close(torch.from_numpy(dense), frames)


def test_load_weights_names_its_source():
    model = tiny_model()
    state = dict(model.state_dict())
    first = sorted(state)[0]
    del state[first]
    with pytest.raises(CheckpointError, match=rf"^x\.safetensors does not match this model .*: missing: {first}$"):
        model.load_weights(state, source="x.safetensors")
    with pytest.raises(CheckpointError, match=rf"^state dict does not match this model .*: missing: {first}$"):
        model.load_weights(state)


def test_encode_keypoints_is_encode_of_the_universal_input():
    from usdrl.universal import model_input

    torch.manual_seed(0)
    model = USDRL(USDRLConfig.from_preset("tiny", hidden_size=16, num_heads=1, layout="universal", in_channels=6,
                                          num_frames=16)).eval()
    rng = np.random.default_rng(0)
    keypoints = np.concatenate([rng.uniform(100, 400, size=(2, 2, 10, 17, 2)),
                                rng.uniform(0.5, 1, size=(2, 2, 10, 17, 1))], -1).astype(np.float32)
    scores = rng.uniform(0.2, 1, size=(2, 2, 10, 17)).astype(np.float32)
    universal = model_input(keypoints[..., :2], "coco17", num_frames=16, num_persons=model.config.num_persons,
                            scores=scores, has_scores=False)
    expected = model.encode(universal, normalize=True)
    got = model.encode_keypoints(keypoints[..., :2], "coco17", scores=scores, has_scores=False, normalize=True)
    torch.testing.assert_close(got, expected)
    assert torch.allclose(got.norm(dim=-1), torch.ones(2))  # the options reach encode
    assert not torch.allclose(got, model.encode_keypoints(keypoints[..., :2], "coco17", scores=scores / 2,
                                                          has_scores=False, normalize=True))
    with_score_channel = model.encode_keypoints(keypoints, "coco17")
    torch.testing.assert_close(with_score_channel, model.encode(model_input(
        keypoints, "coco17", num_frames=16, num_persons=model.config.num_persons)))
    with pytest.raises(ConfigError, match="universal model"):
        tiny_model().encode_keypoints(keypoints, "coco17")


def test_get_classifier_is_the_head_or_an_identity():
    with_head = tiny_model(num_classes=3)
    assert with_head.get_classifier() is with_head.head
    assert isinstance(tiny_model().get_classifier(), torch.nn.Identity)
