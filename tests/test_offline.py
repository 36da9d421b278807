"""Without a network: ``usdrl download`` and ``from_pretrained`` say so at once, and cached models still load."""

import os
import socket
import subprocess
import sys

import pytest
import torch

from usdrl import USDRL, USDRLConfig, WeightsNotFoundError


def closed_port_url() -> str:
    """The URL of a local port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


@pytest.fixture
def unreachable(monkeypatch):
    from huggingface_hub import constants

    url = closed_port_url()
    monkeypatch.setattr(constants, "ENDPOINT", url)
    monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE", url + "/{repo_id}/resolve/{revision}/{filename}")
    return url


def test_cli_download_without_network_says_so_in_one_line_without_retries(tmp_path):
    env = dict(os.environ, HF_ENDPOINT=closed_port_url(), HF_HOME=str(tmp_path))
    result = subprocess.run([sys.executable, "-m", "usdrl.cli", "download", "org/name"], env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr  # no retry warnings before the message
    assert lines[0].startswith("usdrl download: error: cannot reach the Hugging Face Hub at " + env["HF_ENDPOINT"])
    assert "no network?" in lines[0] and "HF_ENDPOINT" in lines[0]
    assert "Retry" not in result.stderr


def test_from_pretrained_without_network_raises_before_any_retry(unreachable, caplog):
    with pytest.raises(WeightsNotFoundError, match="cannot reach the Hugging Face Hub at " + unreachable):
        USDRL.from_pretrained("org/never-fetched")
    assert not [r for r in caplog.records if "Retry" in r.getMessage()]


def test_a_cached_model_loads_when_the_hub_is_unreachable(fake_hub, tmp_path, monkeypatch):
    from huggingface_hub import constants

    torch.manual_seed(0)
    model = USDRL(USDRLConfig.from_preset("tiny", num_classes=2)).eval()
    model.save_pretrained(tmp_path / "m")
    fake_hub.upload_folder("org/offline-cached", tmp_path / "m")
    USDRL.from_pretrained("org/offline-cached")  # cached now, with the loopback hub up
    start = len(fake_hub.requests)
    url = closed_port_url()
    monkeypatch.setattr(constants, "ENDPOINT", url)
    monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE", url + "/{repo_id}/resolve/{revision}/{filename}")
    again = USDRL.from_pretrained("org/offline-cached")
    clip = torch.randn(1, 3, 64, 25, 2)
    assert torch.equal(again.encode(clip), model.encode(clip))
    assert fake_hub.requests[start:] == []


def test_the_reachability_check_sends_no_request_to_a_working_hub(fake_hub, tmp_path):
    torch.manual_seed(0)
    USDRL(USDRLConfig.from_preset("tiny")).save_pretrained(tmp_path / "m")
    fake_hub.upload_folder("org/online", tmp_path / "m")
    start = len(fake_hub.requests)
    USDRL.from_pretrained("org/online")
    paths = [path for _, path, _ in fake_hub.requests[start:]]
    assert paths and all("/org/online/resolve/" in path for path in paths)
