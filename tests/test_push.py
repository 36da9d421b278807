"""Publishing: `USDRL.push_to_hub` through the real huggingface_hub client to the loopback Hub, and back."""

import json
import urllib.error
import urllib.request

import pytest
import torch
from huggingface_hub import HfApi, ModelCard, constants
from huggingface_hub.errors import HfHubHTTPError, LocalTokenNotFoundError
from reference_impl import LiteralDSTE, LiteralPretraining, randomise_
from safetensors.torch import load_file

from usdrl import USDRL, PretrainedWeights, USDRLConfig, register_pretrained
from usdrl.cli import main
from usdrl.hub import unregister_pretrained

MODEL_FILES = {"README.md", "config.json", "model.safetensors"}


def tiny_model(seed=0):
    torch.manual_seed(seed)
    config = USDRLConfig.from_preset("tiny", num_classes=4, class_names=["a", "b", "c", "d"], dataset="ntu60",
                                     protocol="xsub", description="A test model.")
    return USDRL(config).eval()


def assert_same_model(loaded, original):
    assert loaded.config == original.config
    ours, theirs = original.state_dict(), loaded.state_dict()
    assert ours.keys() == theirs.keys()
    assert all(torch.equal(ours[k], theirs[k]) for k in ours)


def head_files(hub, repo_id):
    return hub.repos[repo_id][hub.refs[repo_id]["main"]]


@pytest.fixture
def no_stored_token(monkeypatch, tmp_path):
    for name in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_OIDC_RESOURCE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "no-token"))


@pytest.fixture(scope="module")
def pushed(fake_hub):
    model = tiny_model()
    start = len(fake_hub.requests)
    info = model.push_to_hub("org/pushed", token=fake_hub.token)
    return model, info, fake_hub.requests[start:]


def test_push_then_load_gives_the_same_model(fake_hub, pushed):
    model, info, _ = pushed
    assert info.oid == fake_hub.refs["org/pushed"]["main"]
    assert info.commit_url.endswith(f"/org/pushed/commit/{info.oid}")
    loaded = USDRL.from_pretrained("org/pushed")
    assert_same_model(loaded, model)
    assert loaded.config.dataset == "ntu60" and loaded.config.protocol == "xsub"
    clip = torch.randn(2, 3, 64, 25, 2, generator=torch.Generator().manual_seed(1))
    assert torch.equal(loaded(clip), model(clip))


def test_push_commits_exactly_config_weights_and_card(fake_hub, pushed):
    _, info, requests = pushed
    created, commit = fake_hub.commits["org/pushed"]
    assert created["added"] == [] and commit["parent"] == created["oid"]  # create_repo, then one commit
    assert commit["oid"] == info.oid and set(commit["added"]) == MODEL_FILES and commit["deleted"] == []
    files = head_files(fake_hub, "org/pushed")
    assert set(files) == MODEL_FILES  # no pytorch_model.bin, no projectors
    assert json.loads(files["config.json"]) == json.loads(tiny_model().config.to_json())
    assert [path for method, path, _ in requests if method == "POST"] == [
        "/api/repos/create", "/api/validate-yaml", "/api/models/org/pushed/preupload/main",
        "/api/models/org/pushed/commit/main"]


def test_model_card_names_the_library_and_the_model(fake_hub, pushed):
    card = ModelCard(head_files(fake_hub, "org/pushed")["README.md"].decode())
    assert card.data.library_name == "usdrl" and card.data.license == "mit"
    assert {"skeleton", "action-recognition", "self-supervised", "usdrl", "dste", "ntu60"} <= set(card.data.tags)
    text = card.text
    assert text.lstrip().startswith("# org/pushed")
    assert "A test model." in text
    for fact in ("`ntu25` (25 joints), 64 frames, 2 person(s)", "| Modality | joint |",
                 "| Training data | ntu60, protocol xsub |", "clip classifier (4 classes)",
                 "`(N, 3, 64, 25, 2)`", "https://arxiv.org/abs/2508.12586"):
        assert fact in text, fact
    assert 'model = USDRL.from_pretrained("org/pushed")' in text
    assert "embeddings = model.encode(clips)  # (8, 128)" in text


def test_the_card_snippet_runs(fake_hub, pushed):
    text = ModelCard(head_files(fake_hub, "org/pushed")["README.md"].decode()).text
    snippet = text.split("```python\n", 1)[1].split("```", 1)[0]
    scope = {}
    exec(snippet, scope)
    assert scope["embeddings"].shape == (8, 128) and scope["predicted"].shape == (8,)
    model = pushed[0]   # the snippet loads the pushed model: its figures for the snippet's clips
    torch.testing.assert_close(scope["embeddings"], model.encode(scope["clips"]), rtol=0, atol=0)
    assert torch.equal(scope["predicted"], model(scope["clips"]).argmax(-1))


def test_push_without_a_token_fails_clearly(fake_hub, no_stored_token):
    start = len(fake_hub.requests)
    with pytest.raises(LocalTokenNotFoundError, match="'org/no-token' needs a write token: pass token="):
        tiny_model().push_to_hub("org/no-token")
    assert not [r for r in fake_hub.requests[start:] if r[0] == "POST"]
    with pytest.raises(HfHubHTTPError, match="401 Unauthorized") as info:
        tiny_model().push_to_hub("org/no-token", token="hf_wrong")
    assert "Invalid credentials in Authorization header" in str(info.value)
    with pytest.raises(HfHubHTTPError, match="401 Unauthorized"):
        tiny_model().push_to_hub("org/no-token", token=False)  # sends no Authorization header at all
    assert "org/no-token" not in fake_hub.repos


def test_the_token_can_come_from_hf_token(fake_hub, no_stored_token, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", fake_hub.token)
    info = tiny_model(seed=5).push_to_hub("org/env-token")
    assert info.oid == fake_hub.refs["org/env-token"]["main"]
    assert_same_model(USDRL.from_pretrained("org/env-token"), tiny_model(seed=5))


@pytest.mark.parametrize("path", ["/api/repos/create", "/api/models/org/pushed/preupload/main",
                                  "/api/models/org/pushed/commit/main"])
def test_the_fake_hub_refuses_writes_without_a_token(fake_hub, pushed, path):
    request = urllib.request.Request(fake_hub.url + path, data=b"{}", method="POST")
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(request, timeout=10)
    assert info.value.code == 401


def test_pushing_again_makes_a_new_commit_and_keeps_the_old_revision(fake_hub):
    first, second = tiny_model(seed=1), tiny_model(seed=2)
    old = first.push_to_hub("org/versions", token=fake_hub.token).oid
    new = second.push_to_hub("org/versions", token=fake_hub.token, commit_message="retrained").oid
    assert new != old and fake_hub.refs["org/versions"]["main"] == new
    last = fake_hub.commits["org/versions"][-1]
    assert last["parent"] == old and last["summary"] == "retrained"
    assert_same_model(USDRL.from_pretrained("org/versions"), second)
    assert_same_model(USDRL.from_pretrained("org/versions", revision=old), first)
    assert_same_model(USDRL.from_pretrained("org/versions", revision=new), second)


def reference_checkpoint(path, hidden=32):
    """A reference-release pretraining checkpoint (DSTE, NTU 25 joints, projectors, DataParallel prefix)."""
    torch.manual_seed(3)
    backbone = LiteralDSTE(2 * 25 * 3, 64 * 3, hidden, 1, 64, 2 * 25)
    state = randomise_(LiteralPretraining(backbone, hidden)).state_dict()
    torch.save({"epoch": 450, "state_dict": {f"module.{k}": v for k, v in state.items()}, "optimizer": {}}, path)
    return path


def test_publish_a_converted_reference_checkpoint(fake_hub, tmp_path, capsys):
    """The path in docs/hub.md: usdrl convert, push_to_hub, upload the projectors, register a pinned name."""
    checkpoint = reference_checkpoint(tmp_path / "checkpoint_0450.pth.tar")
    folder = tmp_path / "usdrl-dste-ntu60-xsub"
    assert main(["convert", str(checkpoint), str(folder), "--dataset", "ntu60", "--protocol", "xsub"]) == 0
    capsys.readouterr()
    assert {p.name for p in folder.iterdir()} == MODEL_FILES | {"projectors.safetensors"}

    repo_id = "org/usdrl-dste-ntu60-xsub"
    model = USDRL.from_pretrained(folder)
    model.push_to_hub(repo_id, token=fake_hub.token)
    assert set(head_files(fake_hub, repo_id)) == MODEL_FILES
    card = ModelCard(head_files(fake_hub, repo_id)["README.md"].decode())
    assert f'USDRL.from_pretrained("{repo_id}")' in card.text and "ntu60, protocol xsub" in card.text
    assert "none: an encoder" in card.text and "hidden size 32" in card.text

    # (HfApi(), not huggingface_hub.upload_file: that one's client read the endpoint at import time)
    info = HfApi(token=fake_hub.token).upload_file(path_or_fileobj=folder / "projectors.safetensors",
                                                   path_in_repo="projectors.safetensors", repo_id=repo_id)
    files = head_files(fake_hub, repo_id)
    assert set(files) == MODEL_FILES | {"projectors.safetensors"}
    assert files["projectors.safetensors"] == (folder / "projectors.safetensors").read_bytes()
    assert load_file(folder / "projectors.safetensors").keys() >= {"temporal.0.weight", "instance.6.weight"}

    register_pretrained(PretrainedWeights("test-published", repo_id=repo_id, revision=info.oid,
                                          description="DSTE, NTU-60 xsub (test)", dataset="ntu60",
                                          protocol="xsub", layout="ntu25", num_frames=64, modality="joint"))
    try:
        loaded = USDRL.from_pretrained("test-published")
    finally:
        unregister_pretrained("test-published")
    assert_same_model(loaded, model)
    config = loaded.config  # what the entry's typed fields promise
    assert (config.layout, config.num_frames, config.modality, config.dataset, config.protocol) == \
        ("ntu25", 64, "joint", "ntu60", "xsub")
    clip = torch.randn(2, 3, 64, 25, 2, generator=torch.Generator().manual_seed(4))
    assert torch.equal(loaded.encode(clip), model.encode(clip))
