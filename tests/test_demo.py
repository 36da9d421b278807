"""The embedded default model, `usdrl demo` (the README's main command) and the pictures."""

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from usdrl import USDRL, USDRLConfig, list_pretrained
from usdrl.data import to_model_input
from usdrl.data.synthetic import ACTION_NAMES, NUM_CLASSES, make_clips
from usdrl.demo import run_demo
from usdrl.errors import ConfigError
from usdrl.hub import DEFAULT_MODEL, NTU25_MODEL, UNIVERSAL_MODEL
from usdrl.viz import animate_skeleton, plot_timeline

README = Path(__file__).resolve().parents[1] / "README.md"
#: Of the demo's 8 clips, at least this many are recognised by the universal model from each format.
DEMO_CORRECT = 6


def readme_main_command() -> list[str]:
    """The last step of the README's first command block (after the set-up), as argv."""
    block = re.search(r"```bash\n(.*?)\n```", README.read_text(encoding="utf-8"), re.S)[1]
    return shlex.split(block.split("&&")[-1])


def run_cli(argv: list[str], cwd: Path, *, block_matplotlib: bool = False) -> subprocess.CompletedProcess:
    prelude = "import sys; sys.modules['matplotlib'] = None; " if block_matplotlib else "import sys; "
    code = prelude + "from usdrl.cli import main; sys.exit(main(sys.argv[1:]))"
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-c", code, *argv], cwd=cwd, capture_output=True, text=True,
                          timeout=300, env=env)


@pytest.mark.parametrize(("name", "layout"), [(DEFAULT_MODEL, "universal"), (NTU25_MODEL, "ntu25")])
def test_the_embedded_models_load_offline_with_both_heads(name, layout):
    assert name in list_pretrained()
    model = USDRL.from_pretrained(name)
    config = model.config
    assert (config.layout, config.num_frames, config.modality) == (layout, 64, "joint")
    assert config.class_names == list(ACTION_NAMES) and config.num_frame_classes == NUM_CLASSES + 1
    assert "synthetic" in config.dataset and "synthetic" in config.description
    folder = Path(__file__).resolve().parents[1] / "usdrl" / "pretrained" / name
    assert sum(f.stat().st_size for f in folder.iterdir()) < 8_000_000


def test_the_default_is_the_universal_model():
    assert DEFAULT_MODEL == UNIVERSAL_MODEL == "usdrl-universal-small"


def test_the_ntu25_model_recognises_fresh_synthetic_clips():
    model = USDRL.from_pretrained(NTU25_MODEL)
    clips = make_clips(2 * NUM_CLASSES, seed=99)
    inputs = np.stack([to_model_input(c, 64, length=n) for c, n in zip(clips.data, clips.lengths, strict=True)])
    with torch.inference_mode():
        predicted = model(torch.from_numpy(inputs)).argmax(1).numpy()
    assert np.mean(predicted == clips.labels) > 0.7  # chance: 3.4%


def test_the_readme_main_command_runs_the_demo(tmp_path):
    argv = readme_main_command()
    assert argv[0] == "usdrl" and argv[1] == "demo"
    result = run_cli(argv[1:], tmp_path)
    assert result.returncode == 0, result.stderr
    out = tmp_path / "usdrl-demo"
    gif, png = Image.open(out / "clip.gif"), Image.open(out / "timeline.png")
    assert gif.format == "GIF" and gif.n_frames == 64
    assert png.format == "PNG" and png.size[0] > 500
    assert (out / "detections.txt").read_text().strip()
    for name in ("clip.gif", "timeline.png", "detections.txt"):
        assert f"usdrl-demo/{name}" in result.stdout

    expected = run_demo(tmp_path / "again", pictures=False)
    rows = re.findall(r"^\s+\d+\s+(\w+)\s+(\w+)\s+([\d.]+)%", result.stdout, re.M)
    assert [row[0] for row in rows] == [clip.true_class for clip in expected.clips]
    assert [row[1] for row in rows] == [clip.predicted_class for clip in expected.clips]
    assert len(set(row[0] for row in rows)) == 8  # distinct classes
    assert expected.accuracy >= 0.75
    assert f"{expected.found(0.5)} of {len(expected.ground_truth)} actions found" in result.stdout
    assert expected.sequence_format == "coco17"                 # the default model reads a pose estimator's 2D
    assert "actions), read as the COCO-17 2D keypoints of a video camera:" in result.stdout
    assert expected.found(0.5) >= len(expected.ground_truth) - 2

    # the same clips read by the universal model as NTU-25 3D and as COCO-17 2D keypoints
    assert expected.universal_model == UNIVERSAL_MODEL
    assert f"One model for every format ({UNIVERSAL_MODEL})" in result.stdout
    rows = re.findall(r"^\s+\d+\s+(\w+)\s+(\w+)\s+(\w+)\s+([-\d.]+)\s+([-\d.]+)\s+([-\d.]+)$", result.stdout,
                      re.M)
    assert [row[0] for row in rows] == [clip.true_class for clip in expected.clips]
    assert [(row[1], row[2]) for row in rows] == [(c.predicted_from_3d, c.predicted_from_2d) for c in expected.formats]
    assert [tuple(float(v) for v in row[3:]) for row in rows] == [
        (round(c.cosine, 3), round(c.centred_cosine, 3), round(c.centred_cosine_to_others, 3))
        for c in expected.formats]
    assert sum(c.predicted_from_3d == c.true_class for c in expected.formats) >= DEMO_CORRECT
    assert sum(c.predicted_from_2d == c.true_class for c in expected.formats) >= DEMO_CORRECT
    # one embedding space: a clip's 2D embedding is nearer its own 3D embedding than the other clips' on average
    assert all(c.centred_cosine > c.centred_cosine_to_others + 0.3 for c in expected.formats)


def test_the_demo_runs_the_ntu25_model_on_3d_joints(tmp_path):
    result = run_cli(["demo", "--model", NTU25_MODEL, "--universal-model", "none", "--no-pictures"], tmp_path)
    assert result.returncode == 0, result.stderr
    assert "actions), read as 3D NTU-25 joints:" in result.stdout and "One model for every format" not in result.stdout
    expected = run_demo(tmp_path / "again", model=NTU25_MODEL, universal_model=None, pictures=False)
    assert expected.sequence_format == "ntu25" and not expected.formats
    assert expected.accuracy >= 0.75 and expected.found(0.5) >= len(expected.ground_truth) - 1


def test_the_demo_runs_without_matplotlib_and_says_how_to_get_pictures(tmp_path):
    result = run_cli(["demo", "--out", "out", "--clips", "3"], tmp_path, block_matplotlib=True)
    assert result.returncode == 0, result.stderr
    assert 'pip install "usdrl[viz]"' in result.stdout
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["detections.txt", "detections_named.txt"]


def test_detections_keep_the_official_format_and_the_names_go_beside(tmp_path):
    result = run_demo(tmp_path, pictures=False)
    official = (tmp_path / "detections.txt").read_text().splitlines()
    # the official evaluate.py turns commas into spaces and reads every field of every line as a number
    rows = [[float(v) for v in line.replace(",", " ").split()] for line in official]
    assert rows == [[float(v) for v in d] for d in ((k, s, e, round(p, 4)) for k, s, e, p in result.detections)]
    named = (tmp_path / "detections_named.txt").read_text().splitlines()
    assert named[0] == "label,class,start_frame,end_frame,start_s,end_s,score"
    for line, (label, start, end, score) in zip(named[1:], result.detections, strict=True):
        fields = line.split(",")
        assert fields[:4] == [str(label), result.frame_class_names[label], str(start), str(end)]
        assert (float(fields[4]), float(fields[5])) == (round(start / 30, 2), round(end / 30, 2))
        assert float(fields[6]) == round(score, 4)


def test_the_demo_refuses_a_model_without_the_synthetic_heads(tmp_path):
    model = USDRL(USDRLConfig.from_preset("tiny", num_classes=29))
    with pytest.raises(ConfigError, match="frame head"):
        run_demo(tmp_path, model=model)
    model.reset_frame_classifier(NUM_CLASSES + 1)
    with pytest.raises(ConfigError, match="synthetic classes"):
        run_demo(tmp_path, model=model)


def test_the_demo_refuses_a_universal_model_that_is_not_one_or_has_no_synthetic_head(tmp_path):
    with pytest.raises(ConfigError, match="needs a universal model.*takes layout ntu25"):
        run_demo(tmp_path, universal_model=NTU25_MODEL)
    headless = USDRL(USDRLConfig.from_preset("tiny", layout="universal", in_channels=6))
    with pytest.raises(ConfigError, match="no clip head"):
        run_demo(tmp_path, universal_model=headless)
    assert not any(tmp_path.iterdir())                          # refused before anything was written


def test_pictures_refuse_bad_shapes_and_leave_no_file(tmp_path):
    with pytest.raises(ValueError, match=r"expected a clip \(C, T, 25, M\)"):
        animate_skeleton(np.zeros((3, 10, 17, 1)), tmp_path / "a.gif")
    with pytest.raises(ValueError, match=r"expected scores \(T, 3\)"):
        plot_timeline(np.zeros((10, 4)), tmp_path / "t.png", class_names=["bg", "a", "b"])
    assert list(tmp_path.iterdir()) == []
    clip = np.random.default_rng(0).normal(size=(3, 5, 25, 2)).astype(np.float32)
    clip[..., 1] = 0  # one absent body
    animate_skeleton(clip, tmp_path / "a.gif", title="x", fps=10)
    gif = Image.open(tmp_path / "a.gif")
    assert gif.n_frames == 5 and gif.info["duration"] == 100
    scores = np.full((40, 3), 1 / 3)
    plot_timeline(scores, tmp_path / "t.png", class_names=["bg", "a", "b"], ground_truth=[(1, 0, 10)],
                  detections=[(2, 5, 20, 0.9)], threshold=0.5)
    assert Image.open(tmp_path / "t.png").format == "PNG"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.gif", "t.png"]


def test_the_readme_ten_lines_run(tmp_path, monkeypatch, capsys):
    from usdrl.cli import main

    text = README.read_text(encoding="utf-8")
    section = text[text.index("## Ten lines"):]
    command = shlex.split(re.search(r"`(usdrl synth [^`]+)`", section)[1])  # where the .skeleton file comes from
    code = re.search(r"```python\n(.*?)\n```", section, re.S)[1]
    monkeypatch.chdir(tmp_path)
    assert main(command[1:]) == 0
    capsys.readouterr()
    namespace = {}
    exec(compile(code, "README.md", "exec"), namespace)
    probabilities, model = namespace["probabilities"], namespace["model"]
    assert probabilities.shape == (1, NUM_CLASSES)
    assert namespace["embedding"].shape == (1, 256) and namespace["frames"].shape == (1, 64, 256)
    assert model.config.class_names == ["a", "b", "c", "d", "e"]
    printed = capsys.readouterr().out
    best = int(probabilities[0].argmax())
    # The demo weights recognise the clip: A001, the generator's first class, a right-hand wave (a clip turned or
    # mirrored by the preprocessing would read as a left-hand wave).
    assert best == 0 and ACTION_NAMES[0] == "wave_right_hand" and probabilities[0, 0] > 0.9
    assert namespace["embedding"].norm().item() == pytest.approx(1.0, abs=1e-6)   # normalize=True
    assert printed == f"{ACTION_NAMES[best]} {probabilities[0, best]:.0%} (1, 256) (1, 64, 256)\n"
    assert f"`{printed.strip()}`" in section  # the README shows what it prints
