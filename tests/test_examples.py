"""Every example runs offline and says what it promises."""

import re
import subprocess
import sys
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def run_example(name: str) -> str:
    result = subprocess.run([sys.executable, str(EXAMPLES / name)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    return result.stderr + result.stdout


def test_quickstart_retrieves_far_above_chance():
    output = run_example("quickstart.py")
    assert "embedded 174 gallery and 87 query clips to 512-d vectors" in output
    accuracy = float(re.search(r"kNN-1 retrieval accuracy: ([\d.]+)% \(chance 3.4%\)", output)[1])
    assert 15.0 < accuracy <= 100.0
    assert output.count("-> nearest gallery clip is") == 3
