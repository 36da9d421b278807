"""Every example runs offline, as a user would run it, and does what its docstring promises.

The examples run as subprocesses with one OpenMP thread unless ``OMP_NUM_THREADS`` is set:
on a small machine shared with other jobs (or other test processes) two threads per
process oversubscribe the cores and make the examples several times slower.
"""

import ast
import json
import os
import re
import subprocess
import sys
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
TESTED = {"quickstart.py", "finetune_own_classes.py", "pose_keypoints.py", "streaming_detection.py",
          "pretrain_own_data.py"}


def run_example(name: str, *args: str) -> str:
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    result = subprocess.run([sys.executable, str(EXAMPLES / name), *args], capture_output=True, text=True,
                            timeout=300, env=env)
    assert result.returncode == 0, result.stderr
    return result.stderr + result.stdout


def percent(pattern: str, output: str) -> float:
    match = re.search(pattern, output)
    assert match, f"{pattern!r} not in:\n{output}"
    return float(match[1])


def test_every_example_is_documented_and_tested():
    examples = {path.name for path in EXAMPLES.glob("*.py")}
    assert examples == TESTED
    for name in examples:
        source = (EXAMPLES / name).read_text(encoding="utf-8")
        docstring = ast.get_docstring(ast.parse(source))
        assert docstring and f"python examples/{name}" in docstring, name
        assert "print(" not in source, name


def test_quickstart_retrieves_far_above_chance():
    output = run_example("quickstart.py")
    assert ("embedded 174 gallery clips (NTU-25 3D joints) and 87 query clips (COCO-17 2D keypoints) to 128-d "
            "vectors with usdrl-universal-small") in output
    match = re.search(r"same class vs different classes: [-\d.]+ vs [-\d.]+ \(raw\), ([-\d.]+) vs ([-\d.]+) \(mean "
                      r"embedding subtracted\)", output)
    assert match and float(match[1]) > float(match[2]), output
    accuracy = percent(r"kNN-1 retrieval accuracy, 2D queries in the 3D gallery: ([\d.]+)% \(chance 3.4%\)", output)
    assert 40.0 < accuracy <= 100.0
    assert output.count("-> nearest gallery clip is") == 3


def test_finetune_own_classes_trains_saves_and_reloads(tmp_path):
    output = run_example("finetune_own_classes.py", "--out", str(tmp_path / "my-model"))
    names = ["clap", "kick", "squat", "jump", "bow"]
    assert "my data: 40 training and 30 test clips of 5 classes (clap, kick, squat, jump, bow)" in output
    accuracy = percent(r"new 5-class head trained on the frozen encoder in [\d.]+ s: test accuracy ([\d.]+)% "
                       r"\(chance 20.0%\)", output)
    assert 40.0 < accuracy <= 100.0
    assert f"reloaded: classes {names}" in output
    assert "reloaded model predicts as the trained one: True" in output
    predictions = re.findall(r"test clip +\d+ \((\w+)\): predicted (\w+), (\d+)%", output)
    assert len(predictions) == 5 and all(t in names and p in names and 0 < int(c) <= 100 for t, p, c in predictions)
    config = json.loads((tmp_path / "my-model" / "config.json").read_text())
    assert config["num_classes"] == 5 and config["class_names"] == names and config["layout"] == "ntu25"
    assert (tmp_path / "my-model" / "model.safetensors").stat().st_size > 0


def test_pose_keypoints_from_coco17_arrays_to_class_names():
    output = run_example("pose_keypoints.py")
    assert re.search(r"keypoints of 120 training and 36 test videos, e.g. video 0: 1 person\(s\) of shape "
                     r"\(\d+, 17, 3\)", output), output
    own_head = percent(r"usdrl-universal-small, its own head \(29 synthetic classes\): ([\d.]+)% of the 36 test "
                       r"videos right \(chance 3.4%\)", output)
    assert 60.0 < own_head <= 100.0
    accuracy = percent(r"new linear head for 6 own classes on the frozen embeddings, trained in [\d.]+ s: test "
                       r"accuracy ([\d.]+)% \(chance 16.7%\)", output)
    assert 60.0 < accuracy <= 100.0
    names = {"wave_right_hand", "clap", "kick_right", "squat", "jump", "bow"}
    predictions = re.findall(r"new video, \d+ frames: predicted (\w+) \((\d+)%\), truly (\w+)", output)
    assert len(predictions) == 3
    assert all(p in names and t in names and 0 < int(c) <= 100 for p, c, t in predictions)


def test_streaming_detection_matches_offline():
    output = run_example("streaming_detection.py")
    match = re.search(r"live source: (\d+) frames of (\d+) actions", output)
    assert match, output
    difference = percent(r"frame scores: streaming vs offline, largest difference ([-+.\de]+)", output)
    assert difference < 1e-4
    assert "streaming actions equal the offline proposals: True" in output
    latencies = [int(n) for n in re.findall(r"reported +(\d+) frames after its end", output)]
    assert all(0 < n <= 64 for n in latencies)
    assert output.count("  true ") == int(match[2])


def test_pretrain_own_data_writes_a_resumable_run(tmp_path):
    output = run_example("pretrain_own_data.py", "--workdir", str(tmp_path))
    assert "wrote 200 raw .skeleton files" in output
    run = tmp_path / "run"
    assert {"checkpoint_0001.pt", "checkpoint_0002.pt", "metrics.jsonl", "model"} <= {p.name for p in run.iterdir()}
    assert f"resuming from {run / 'checkpoint_0001.pt'}" in output
    metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics] == list(range(1, len(metrics) + 1))
    assert {m["epoch"] for m in metrics} == {0, 1}
    assert f"MG-FD loss over {len(metrics)} steps (2 epochs)" in output
    config = json.loads((run / "model" / "config.json").read_text())
    assert config["hidden_size"] == 64 and config["layout"] == "ntu25"
    match = re.search(r"encoded (\d+) held-out clips .* embeddings \((\d+), 128\)", output)
    assert match and match[1] == match[2] and int(match[1]) > 0, output
