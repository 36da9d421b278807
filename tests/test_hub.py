"""Saving, loading and downloading models: local folders, the registry, and a loopback Hub."""

import json
import logging
import os
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file, save_file

from usdrl import (
    USDRL,
    CheckpointError,
    ConfigError,
    PretrainedWeights,
    USDRLConfig,
    WeightsNotFoundError,
    list_pretrained,
    register_pretrained,
)
from usdrl.cli import main
from usdrl.hub import unregister_pretrained


def tiny_model(**overrides):
    torch.manual_seed(0)
    return USDRL(USDRLConfig.from_preset("tiny", dataset="synthetic", protocol="demo", **overrides)).eval()


@pytest.fixture(scope="module")
def clip():
    return torch.randn(2, 3, 64, 25, 2, generator=torch.Generator().manual_seed(3))


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    folder = tmp_path_factory.mktemp("saved") / "tiny"
    tiny_model(num_classes=3).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def hub_repo(fake_hub, saved):
    commit = fake_hub.upload_folder("org/tiny", saved)
    return "org/tiny", commit


def test_save_writes_config_weights_and_card_only(saved):
    assert sorted(p.name for p in saved.iterdir()) == ["README.md", "config.json", "model.safetensors"]
    config = json.loads((saved / "config.json").read_text())
    assert config["layout"] == "ntu25" and config["num_frames"] == 64 and config["dataset"] == "synthetic"
    assert "library_name: usdrl" in (saved / "README.md").read_text()


def test_local_round_trip_gives_identical_outputs(saved, clip):
    original = tiny_model(num_classes=3)
    loaded = USDRL.from_pretrained(saved)
    assert not loaded.training and loaded.config == original.config
    assert torch.equal(loaded(clip), original(clip))
    assert torch.equal(loaded.encode(clip), original.encode(clip))
    assert torch.equal(USDRL.from_pretrained(f"local-dir:{saved}").encode(clip), original.encode(clip))


def test_strict_loading_rejects_missing_and_misshapen_weights(saved, tmp_path):
    folder = tmp_path / "broken"
    folder.mkdir()
    (folder / "config.json").write_text((saved / "config.json").read_text())
    state = load_file(saved / "model.safetensors")
    del state["encoder.temporal.layers.1.attn.in_proj_weight"]
    state["encoder.temporal.layers.0.attn.in_proj_bias"] = torch.zeros(7)
    save_file(state, folder / "model.safetensors")
    with pytest.raises(CheckpointError) as info:
        USDRL.from_pretrained(folder)
    message = str(info.value)
    assert "missing: encoder.temporal.layers.1.attn.in_proj_weight" in message
    assert "encoder.temporal.layers.0.attn.in_proj_bias: expected (192,), got (7,)" in message
    # A size the config states that the weights contradict is named as a config field.
    state["encoder.spatial_pos"] = torch.zeros(1, 34, 64)
    save_file(state, folder / "model.safetensors")
    with pytest.raises(ConfigError, match="num_persons x num_joints is 2 x 25 but .* holds weights for 34 spatial"):
        USDRL.from_pretrained(folder)

    with pytest.raises(CheckpointError, match="wrong shape"):
        USDRL.from_pretrained(saved, hidden_size=32, num_heads=1)


def test_a_head_of_another_size_is_reinitialised_and_logged(saved, clip, caplog):
    original = tiny_model(num_classes=3)
    with caplog.at_level(logging.WARNING, logger="usdrl"):
        model = USDRL.from_pretrained(saved, num_classes=5)
    assert "head re-initialised for 5 classes (checkpoint had shape (3, 128))" in caplog.text
    assert model(clip).shape == (2, 5)
    assert torch.equal(model.encode(clip), original.encode(clip))
    assert USDRL.from_pretrained(saved, num_classes=0).head is None


def test_save_is_atomic_and_leaves_no_temporary_files(tmp_path, monkeypatch):
    folder = tmp_path / "m"
    tiny_model().save_pretrained(folder)
    before = (folder / "model.safetensors").read_bytes()

    def crash(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr("usdrl.model.save_file", crash)
    with pytest.raises(RuntimeError, match="disk full"):
        tiny_model(num_classes=2).save_pretrained(folder)
    assert (folder / "model.safetensors").read_bytes() == before
    assert sorted(p.name for p in folder.iterdir()) == ["README.md", "config.json", "model.safetensors"]


def test_download_from_the_hub(fake_hub, hub_repo, clip, tmp_path):
    repo_id, _ = hub_repo
    start = len(fake_hub.requests)
    # A cold cache of its own: the session's cache may hold the repo already (an earlier test, or an
    # earlier pytest run in the same process, as mutmut does), and then nothing would be fetched.
    model = USDRL.from_pretrained(repo_id, cache_dir=tmp_path / "hf-cache")
    requests = fake_hub.requests[start:]
    fetched = {path.rsplit("/", 1)[-1] for method, path, _ in requests if method == "GET"}
    assert fetched == {"config.json", "model.safetensors"}
    assert all("/resolve/" in path for _, path, _ in requests)
    assert all(agent.startswith("usdrl/") for _, _, agent in requests)
    assert torch.equal(model.encode(clip), tiny_model(num_classes=3).encode(clip))
    assert not model.training


def test_offline_load_from_cache_makes_no_request(fake_hub, hub_repo):
    repo_id, _ = hub_repo
    USDRL.from_pretrained(repo_id)  # make sure it is cached
    start = len(fake_hub.requests)
    code = (f"from usdrl import USDRL; m = USDRL.from_pretrained({repo_id!r}); "
            "print(m.config.dataset, m.config.num_classes)")
    env = dict(os.environ, HF_ENDPOINT=fake_hub.url, HF_HUB_OFFLINE="1")
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["synthetic", "3"]
    assert fake_hub.requests[start:] == []


def test_a_pinned_registered_name_loads_from_cache_without_requests(fake_hub, hub_repo, clip):
    repo_id, commit = hub_repo
    register_pretrained(PretrainedWeights("test-tiny", repo_id=repo_id, revision=commit, description="tiny",
                                          dataset="synthetic", protocol="demo", layout="ntu25", num_frames=64))
    try:
        assert "test-tiny" in list_pretrained()
        first = USDRL.from_pretrained("test-tiny")
        start = len(fake_hub.requests)
        again = USDRL.from_pretrained("test-tiny")
        assert fake_hub.requests[start:] == []
        assert torch.equal(first.encode(clip), again.encode(clip))
    finally:
        unregister_pretrained("test-tiny")


def test_hub_errors_are_clear(fake_hub, hub_repo, tmp_path):
    repo_id, _ = hub_repo
    with pytest.raises(WeightsNotFoundError, match="'org/missing' does not exist"):
        USDRL.from_pretrained("org/missing")
    with pytest.raises(WeightsNotFoundError, match="has no revision 'v9'"):
        USDRL.from_pretrained(repo_id, revision="v9")
    (tmp_path / "cfg-only").mkdir()
    (tmp_path / "cfg-only" / "config.json").write_text(USDRLConfig.from_preset("tiny").to_json())
    fake_hub.upload_folder("org/config-only", tmp_path / "cfg-only")
    with pytest.raises(WeightsNotFoundError, match="has no file 'model.safetensors'"):
        USDRL.from_pretrained("org/config-only")
    fake_hub.upload_folder("org/never-downloaded", tmp_path / "cfg-only")
    with pytest.raises(WeightsNotFoundError, match="not in the local cache"):
        USDRL.from_pretrained("org/never-downloaded", local_files_only=True)


def test_name_resolution_errors(tmp_path):
    with pytest.raises(WeightsNotFoundError, match="not a model folder, a registered name"):
        USDRL.from_pretrained("no-such-model")
    with pytest.raises(WeightsNotFoundError, match="is not a folder"):
        USDRL.from_pretrained(f"local-dir:{tmp_path / 'nope'}")
    with pytest.raises(WeightsNotFoundError, match="has no config.json or model.safetensors"):
        USDRL.from_pretrained(tmp_path)


def test_cli_info_and_download(fake_hub, hub_repo, capsys):
    assert main(["info", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["usdrl"] and info["torch"] == torch.__version__ and info["devices"][0] == "cpu"
    shipped = info["pretrained"]["usdrl-synthetic-small"]  # the registry entry's typed fields
    assert (shipped["layout"], shipped["num_frames"], shipped["modality"], shipped["dataset"]) == \
        ("ntu25", 64, "joint", "synthetic")
    assert shipped["measured_accuracy"] == {"clip-head": 98.2} and shipped["published_accuracy"] == {}
    assert main(["info"]) == 0
    line = next(line for line in capsys.readouterr().out.splitlines() if "usdrl-synthetic-small" in line)
    assert "(layout ntu25; 64 frames; joint; dataset synthetic;" in line and "measured top-1 clip-head 98.2%" in line
    assert main(["download", hub_repo[0]]) == 0
    assert capsys.readouterr().out.strip().endswith(hub_repo[1])
    assert main(["download", "org/missing"]) == 1
    assert "does not exist" in capsys.readouterr().err


def test_an_encoder_only_folder_gets_a_new_head_when_asked(tmp_path, clip, caplog):
    # The documented way to finetune: a head-less checkpoint plus num_classes=K.
    encoder_only = tiny_model()
    encoder_only.save_pretrained(tmp_path / "encoder")
    assert not any(k.startswith("head.") for k in load_file(tmp_path / "encoder" / "model.safetensors"))
    with caplog.at_level(logging.WARNING, logger="usdrl"):
        model = USDRL.from_pretrained(tmp_path / "encoder", num_classes=4)
    assert "head re-initialised for 4 classes (checkpoint had none)" in caplog.text
    assert model.config.num_classes == 4 and model.head.out_features == 4
    assert model(clip).shape == (2, 4)
    assert torch.equal(model.encode(clip), encoder_only.encode(clip))


def test_strict_loading_rejects_unexpected_weights(saved, tmp_path):
    folder = tmp_path / "extra"
    folder.mkdir()
    (folder / "config.json").write_text((saved / "config.json").read_text())
    state = load_file(saved / "model.safetensors")
    state["encoder.extra.weight"] = torch.zeros(2)
    save_file(state, folder / "model.safetensors")
    with pytest.raises(CheckpointError, match="unexpected: encoder.extra.weight"):
        USDRL.from_pretrained(folder)
