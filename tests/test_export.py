"""ONNX export: onnxruntime against eager at two batch sizes, metadata, heads, atomic writes, the CLI."""

import json
import logging
import sys

import numpy as np
import pytest
import torch

from usdrl import USDRL, ConfigError, USDRLConfig
from usdrl.cli import main
from usdrl.errors import MissingDependencyError
from usdrl.export import OnnxExportError, export_onnx

pytest.importorskip("onnx")


def tiny(**overrides):
    """The tiny preset (hidden 64) with 16 frames and one layer per stream unless overridden."""
    torch.manual_seed(0)
    return USDRL(USDRLConfig.from_preset("tiny", **{"num_frames": 16, "num_layers": 1, **overrides})).eval()


def clips(n, config, seed=0):
    return torch.randn((n, *config.input_shape), generator=torch.Generator().manual_seed(seed))


def eager(model, output, x):
    with torch.no_grad():
        if output == "embedding":
            return model.encode(x)
        return model(x) if output == "logits" else model.forward_frames(x)


def session_for(path):
    ort = pytest.importorskip("onnxruntime")
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def run_onnx(session, x):
    return session.run(None, {"skeleton": x.numpy()})[0]


def max_rel_error(got, want):
    want = want.numpy()
    return np.abs(got - want).max() / np.abs(want).max()


@pytest.mark.parametrize("output,overrides", [
    ("embedding", {"num_frames": 64, "num_layers": 2}),  # the preset as it is
    ("embedding", {"layout": "coco17", "num_persons": 1}),
    ("embedding", {"causal": True, "modality": "motion"}),
    ("embedding", {"modality": "multi", "encoder": "sttr"}),
    ("logits", {"num_classes": 5, "causal": True, "modality": "bone"}),
    ("frames", {"num_frame_classes": 4, "layout": "coco17"}),  # spatial tokens 34 pooled to 16 frames
    ("frames", {"num_frame_classes": 3, "causal": True}),
], ids=["ntu25", "coco17", "causal-motion", "multi-sttr", "logits-causal-bone", "frames", "frames-causal"])
def test_onnxruntime_matches_eager_at_two_batch_sizes(tmp_path, output, overrides):
    model = tiny(**overrides)
    path = tmp_path / "model.onnx"
    report = model.export_onnx(path, output=output)
    assert report.path == path and path.exists() and report.output == output
    assert report.check == "passed" and report.max_rel_error <= 1e-4 and report.check_batch_size == 3
    expected_width = {"embedding": model.num_features, "logits": 5}.get(output)
    session = session_for(path)
    for n in (1, 5):
        x = clips(n, model.config, seed=n)
        got = run_onnx(session, x)
        want = eager(model, output, x)
        assert got.shape == tuple(want.shape) and got.dtype == np.float32
        assert max_rel_error(got, want) <= 1e-4
    if expected_width:
        assert got.shape == (5, expected_width)
    (inp,) = session.get_inputs()
    (out,) = session.get_outputs()
    assert inp.name == "skeleton" and isinstance(inp.shape[0], str)  # N is dynamic
    assert tuple(inp.shape[1:]) == model.config.input_shape
    assert out.name == output and report.output_shape == (-1, *got.shape[1:])


def test_metadata_and_model_left_as_it_was(tmp_path):
    import onnx

    model = tiny(num_classes=3, class_names=["a", "b", "c"]).train()
    report = export_onnx(model, tmp_path / "m.onnx", output="logits", check=False, batch_size=1)
    assert model.training and report.check == "disabled" and report.max_rel_error is None
    proto = onnx.load(str(tmp_path / "m.onnx"))
    meta = {p.key: p.value for p in proto.metadata_props}
    from usdrl import __version__
    assert meta["usdrl_version"] == __version__ and meta["usdrl_output"] == "logits"
    assert USDRLConfig.from_dict(json.loads(meta["usdrl_config"])) == model.config
    assert json.loads(meta["class_names"]) == ["a", "b", "c"]
    assert report.opset == next(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx"))
    assert "wrote" in report.summary() and "check disabled" in report.summary()


@pytest.mark.parametrize("output,overrides,missing", [
    ("logits", {}, "classifier head"),
    ("frames", {"num_classes": 4}, "frame-wise head"),
    ("features", {}, "unknown ONNX output"),
])
def test_missing_head_is_refused_and_nothing_is_written(tmp_path, output, overrides, missing):
    path = tmp_path / "model.onnx"
    with pytest.raises(ConfigError, match=missing):
        tiny(**overrides).export_onnx(path, output=output)
    assert list(tmp_path.iterdir()) == []


def test_failed_check_leaves_the_old_file_and_no_temporary(tmp_path):
    pytest.importorskip("onnxruntime")
    path = tmp_path / "model.onnx"
    path.write_bytes(b"old")
    with pytest.raises(OnnxExportError, match="max relative error .* > rtol"):
        tiny().export_onnx(path, rtol=-1.0)  # no error is below a negative tolerance
    assert path.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["model.onnx"]


def test_exporter_failure_is_wrapped_and_writes_nothing(tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(torch.onnx, "export", broken)
    with pytest.raises(OnnxExportError, match="torch.onnx.export failed .*boom"):
        tiny().export_onnx(tmp_path / "model.onnx")
    assert list(tmp_path.iterdir()) == []


def test_check_is_skipped_and_logged_without_onnxruntime(tmp_path, monkeypatch, caplog):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # makes `import onnxruntime` fail
    with caplog.at_level(logging.WARNING, logger="usdrl.export"):
        report = tiny().export_onnx(tmp_path / "model.onnx")
    assert report.check == "skipped" and (tmp_path / "model.onnx").exists()
    assert "onnxruntime is not installed" in caplog.text and "skipped" in report.summary()


def test_missing_onnx_package_is_named(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnx", None)
    with pytest.raises(MissingDependencyError, match=r"usdrl\[onnx\]"):
        tiny().export_onnx(tmp_path / "model.onnx")
    assert list(tmp_path.iterdir()) == []


def test_cli_round_trip(tmp_path, capsys):
    model = tiny(num_classes=4)
    model.save_pretrained(tmp_path / "folder")
    out = tmp_path / "out.onnx"
    assert main(["export-onnx", str(tmp_path / "folder"), str(out), "--output", "logits", "--opset", "17"]) == 0
    line = capsys.readouterr().out.strip()
    assert "\n" not in line and line.startswith(f"wrote {out}") and "opset 17" in line
    x = clips(2, model.config)
    got = run_onnx(session_for(out), x)
    assert "check passed" in line and max_rel_error(got, eager(model, "logits", x)) <= 1e-4

    assert main(["export-onnx", str(tmp_path / "folder"), str(out), "--no-check"]) == 0
    line = capsys.readouterr().out
    assert "output embedding (N, 128)" in line and "check disabled" in line

    out.unlink()
    assert main(["export-onnx", str(tmp_path / "folder"), str(out), "--output", "frames"]) == 1
    assert "frame-wise head" in capsys.readouterr().err and not out.exists()


@pytest.mark.slow
def test_dynamo_exporter(tmp_path):
    pytest.importorskip("onnxscript")
    model = tiny(num_frame_classes=3)
    report = model.export_onnx(tmp_path / "model.onnx", output="frames", dynamo=True)
    assert report.check == "passed"
    x = clips(4, model.config)
    got = run_onnx(session_for(tmp_path / "model.onnx"), x)
    assert max_rel_error(got, eager(model, "frames", x)) <= 1e-4
