"""Shared fixtures: a loopback HTTP server, an isolated cache, the PaddleDetection archives."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from harness.artifacts import Policy, fetch
from harness.errors import HarnessError

sys.path.insert(0, str(Path(__file__).parent))
from loopback import Loopback

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("HARNESS_SHARED", REPO.parent / "shared"))
CURRENT = "666f597fd00d3157e84dd9fb2dd3f40bf9918ebc"
PREVIOUS = "7d6dc4079379b7827351c511f76e23ccea4910fd"
FASTER = "faster_rcnn_res2net50_vb_26w_4s_fpn_1x_coco"
FAST = Policy(attempts=4, backoff_s=0.01, max_backoff_s=0.05, connect_timeout_s=5, read_timeout_s=5)


@pytest.fixture
def server():
    with Loopback() as srv:
        yield srv


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    root = tmp_path / "cache"
    monkeypatch.setenv("HARNESS_CACHE", str(root))
    return root


@pytest.fixture(scope="session")
def ppdet_archive(tmp_path_factory):
    """`archive(commit)` -> path of the PaddleDetection archive of that commit.

    The trimmed fixture from ../shared/fixtures when it is there (CI, these machines); otherwise the real
    archive from GitHub, fetched once per session (a user's machine with internet).
    """
    downloads = tmp_path_factory.mktemp("real-archives")
    failed: dict[str, str] = {}

    def archive(commit: str) -> Path:
        local = SHARED / "fixtures" / f"PaddleDetection-{commit}.tar.gz"
        if local.is_file():
            return local
        if commit in failed:  # do not wait for the same unreachable server in every test
            pytest.fail(failed[commit])
        url = f"https://github.com/PaddlePaddle/PaddleDetection/archive/{commit}.tar.gz"
        try:
            return fetch(url, root=downloads).path
        except HarnessError as exc:
            failed[commit] = f"no {local} and the real archive could not be fetched: {exc}"
            pytest.fail(failed[commit])

    return archive


@pytest.fixture(scope="session")
def rehearsal(tmp_path_factory):
    """One run of the README's main job (`harness rehearse`) per session, shared by the stack tests:
    mini-zoo built from the real configs, served on 127.0.0.1, fetched, verified for all three models,
    reported. Its mirror is served again by tests that need more (weights variants)."""
    import subprocess
    import sys
    from types import SimpleNamespace

    work = tmp_path_factory.mktemp("rehearsal")
    out = subprocess.run([sys.executable, "-m", "harness", "rehearse", "--dir", str(work), "--port", "0",
                          "--images", "3"], capture_output=True, text=True, timeout=1200)
    runs = sorted((work / "runs").iterdir()) if (work / "runs").exists() else []
    return SimpleNamespace(work=work, out=out, run_dir=runs[-1] if runs else None)


@pytest.fixture(scope="session")
def served(rehearsal, tmp_path_factory):
    """The rehearsal's mirror served again, plus checkpoint variants; yields a function making zoo files."""
    import pickle

    import yaml

    from harness.manifest import load_zoo
    from harness.rehearsal import mirror_zoo, serve

    mirror = rehearsal.work / "mirror"
    with (mirror / "models" / f"{FASTER}.pdparams").open("rb") as f:
        state = pickle.load(f)  # our own file: plain pickle is fine here
    variants = mirror / "variants"
    variants.mkdir(exist_ok=True)
    keys = [k for k in state if not k.startswith("Structured")]
    edits = {
        "prefixed": {("model." + k if k in keys else k): v for k, v in state.items()},
        "missing": {k: v for k, v in state.items() if k != keys[-1]},
        "reshaped": {**state, keys[0]: state[keys[0]][:, :2]},
    }
    for name, variant in edits.items():
        (variants / f"{name}.pdparams").write_bytes(pickle.dumps(variant, protocol=4))
    whole = (mirror / "models" / f"{FASTER}.pdparams").read_bytes()
    (variants / "corrupt.pdparams").write_bytes(whole[: len(whole) // 3])  # a truncated checkpoint
    (variants / "cut-at-100.pdparams").write_bytes(whole[:100])
    (variants / "random-bytes.pdparams").write_bytes(os.urandom(1_000_000))
    cache = tmp_path_factory.mktemp("verify-cache")
    zoo, _ = load_zoo(REPO / "zoo.yaml")
    stack, _ = zoo.source()
    with serve(mirror, 0) as base:
        def make(tmp_path, weights: str | None = None):
            raw = mirror_zoo(zoo, stack, base)
            if weights:
                raw["models"][0]["weights"] = {"url": f"{base}/variants/{weights}.pdparams"}
            path = tmp_path / "zoo.yaml"
            path.write_text(yaml.safe_dump(raw, allow_unicode=True))
            return path
        yield make, cache, keys
