"""The README's first command, minus the venv set-up: the offline rehearsal runs end to end."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import yaml

pytestmark = pytest.mark.stack


def test_rehearsal_fetches_the_mini_zoo_over_loopback(tmp_path):
    work = tmp_path / "rehearsal"
    out = subprocess.run([sys.executable, "-m", "harness", "rehearse", "--dir", str(work), "--port", "0",
                          "--images", "3"], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "REHEARSAL: random-initialised weights" in out.stdout and "AP ≈ 0 is the expected" in out.stdout
    zoo = yaml.safe_load((work / "zoo.yaml").read_text())
    urls = [m["weights"]["url"] for m in zoo["models"]] + [zoo["dataset"]["images"]["url"]]
    assert all(u.startswith("http://127.0.0.1:") for u in urls)
    lock = json.loads((work / "zoo.lock").read_text())["artifacts"]
    assert set(urls) <= set(lock) and len(lock) == 6
    assert out.stdout.count("downloaded") == 3 and out.stdout.count("cached") >= 6
    # The weights are real paddle checkpoints of the real configs: the file sizes of a full state dict.
    sizes = sorted(lock[u]["size"] for u in urls[:3])
    assert sizes[0] > 150e6 and sizes[-1] < 200e6
    again = subprocess.run([sys.executable, "-m", "harness", "rehearse", "--dir", str(work), "--port", "0",
                            "--images", "3"], capture_output=True, text=True, timeout=600)
    assert again.returncode == 0 and "random-initialised weights for" not in again.stderr  # mirror reused
