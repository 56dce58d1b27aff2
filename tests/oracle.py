"""What the fidelity tests share: a paddle process run as `--threads 1` runs the worker, and the stack's pinned
PaddleDetection tree extracted from its archive, where both the harness and PaddleDetection's own tools
(tools/eval.py, tools/eval_mot.py: the oracle) read the same files."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import yaml

from harness.zoo.manifest import load_zoo

REPO = Path(__file__).resolve().parents[1]


def one_thread(
    cmd: list[str], cwd: Path | None = None, ok: bool = True, timeout: int = 900
) -> subprocess.CompletedProcess:
    """One paddle process at OMP_NUM_THREADS=1 (`--threads 1`): the same kernels, in the same order, on both
    sides. `ok`: its exit status must be 0 (the output's tail is the assertion's message)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    if ok:
        assert out.returncode == 0, (out.stdout + out.stderr)[-3000:]
    return out


def pinned_tree(tmp_path: Path, ppdet_archive) -> tuple[Path, str, dict]:
    """The stack's PaddleDetection tree extracted under `tmp_path`, the stack's name, and zoo.yaml's source pins."""
    zoo, _ = load_zoo(REPO / "zoo.yaml")
    stack, pin = zoo.source()
    subprocess.run(["tar", "-xzf", ppdet_archive(pin.commit), "-C", tmp_path], check=True)
    return tmp_path / f"PaddleDetection-{pin.commit}", stack, yaml.safe_load((REPO / "zoo.yaml").read_text())["sources"]
