"""Shared fixtures: a loopback HTTP server, an isolated cache, the PaddleDetection archives."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.core.errors import HarnessError
from harness.fetch.artifacts import fetch
from harness.fetch.policy import Policy

sys.path.insert(0, str(Path(__file__).parent))
from loopback import Loopback

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("HARNESS_SHARED", REPO.parent / "shared"))
CURRENT = "666f597fd00d3157e84dd9fb2dd3f40bf9918ebc"
PREVIOUS = "7d6dc4079379b7827351c511f76e23ccea4910fd"
FASTER = "faster_rcnn_res2net50_vb_26w_4s_fpn_1x_coco"
MASK = "mask_rcnn_res2net50_vb_26w_4s_fpn_2x_coco"
# git tree ids of the trimmed fixtures' content (../shared/fixtures/README.md); the real archives have the
# trees zoo.yaml pins. Tests pin whichever archive `ppdet_archive` hands out.
FIXTURE_TREES = {
    CURRENT: "089225dac84804d0e2be6bd369ba968eab73d8c6",
    PREVIOUS: "5493ba7d67585bd60643610dbcfb7eac62f9a5db",
}
REAL_TREES = {CURRENT: "ff075e412edc84600d524fa95d8ca222866e2c30", PREVIOUS: "3f3f2caf3efd130f3c0470199a54432f6d2aa454"}
# The fields every result record has from the start (results.Result); tests add what they look at.
RECORD = {
    "run_id": "r",
    "zoo_index": 0,
    "started": "2026-11-25T00:00:00+00:00",
    "table": {},
    "documented": {"box_ap": 40.6},
}
FAST = Policy(attempts=4, backoff_s=0.01, max_backoff_s=0.05, connect_timeout_s=5, read_timeout_s=5)


def harness_argv(*args: str) -> list[str]:
    """`python -m harness ARGS` as an argv, for a test that wraps the command (a shell, a namespace)."""
    return [sys.executable, "-m", "harness", *args]


def _environ(cache: Path | None, env: dict | None, drop: tuple[str, ...]) -> dict:
    extra = {"HARNESS_CACHE": str(cache)} if cache is not None else {}
    return {k: v for k, v in {**os.environ, **extra, **(env or {})}.items() if k not in drop}


def harness(
    *args: str,
    cache: Path | None = None,
    env: dict | None = None,
    drop: tuple[str, ...] = (),
    timeout: float = 900,
    **kw,
) -> subprocess.CompletedProcess:
    """`python -m harness ARGS` as a user runs it, in its own process with its output captured; `cache` sets
    $HARNESS_CACHE, `env` adds variables, `drop` removes some, other keywords (cwd=, input=, preexec_fn=...)
    go to subprocess.run."""
    return subprocess.run(
        harness_argv(*args), capture_output=True, text=True, timeout=timeout, env=_environ(cache, env, drop), **kw
    )


def harness_process(*args: str, cache: Path | None = None, env: dict | None = None, **kw) -> subprocess.Popen:
    """`python -m harness ARGS` started and not waited for (a test that signals it, or waits for what it
    writes); `cache` and `env` as for `harness`, other keywords (stdout=, text=...) go to subprocess.Popen."""
    return subprocess.Popen(harness_argv(*args), env=_environ(cache, env, ()), **kw)


def wait_until(condition, seconds: float = 300) -> bool:
    """Poll `condition` until it holds or `seconds` pass; returns whether it held. A test that waits on another
    process waits for what it needs (a file appears, a worker starts or is gone), never for a fixed time."""
    deadline = time.monotonic() + seconds
    while not (held := bool(condition())) and time.monotonic() < deadline:
        time.sleep(0.05)
    return held


def workers_of(run_dir: Path) -> list[str]:
    """PIDs of the processes whose command line names a path inside `run_dir` (a run's workers)."""
    return subprocess.run(["pgrep", "-f", f"{run_dir}/"], capture_output=True, text=True).stdout.split()


def coco_zips(tmp_path: Path, n: int) -> tuple[Path, Path]:
    """val2017.zip with `n` tiny "images" and an annotations zip listing them (no objects): a COCO layout."""
    import json
    import zipfile

    coco = {
        "info": {},
        "images": [{"id": i, "file_name": f"{i}.jpg", "width": 8, "height": 8} for i in range(n)],
        "annotations": [],
        "categories": [{"id": 1, "name": "x"}],
    }
    with zipfile.ZipFile(tmp_path / "val2017.zip", "w") as zf:
        for img in coco["images"]:
            zf.writestr(f"val2017/{img['file_name']}", b"jpeg")
    with zipfile.ZipFile(tmp_path / "ann.zip", "w") as zf:
        zf.writestr("annotations/instances_val2017.json", json.dumps(coco))
    return tmp_path / "val2017.zip", tmp_path / "ann.zip"


def namespaced(mount_opts: str, path: Path) -> list[str]:
    """A command prefix running in a user + mount namespace with a tmpfs at `path` (a real ENOSPC / EROFS, no
    root needed); the test is skipped, and says why, where the kernel does not allow user namespaces."""
    path.mkdir(parents=True, exist_ok=True)
    probe = (
        subprocess.run(
            ["unshare", "-rm", "sh", "-c", f"mount -t tmpfs -o {mount_opts} none {path}"], capture_output=True
        )
        if shutil.which("unshare")
        else None
    )
    if probe is None or probe.returncode != 0:
        pytest.skip(f"needs user namespaces (unshare -rm) to mount a tmpfs with -o {mount_opts}")
    return ["unshare", "-rm", "sh", "-c", f'mount -t tmpfs -o {mount_opts} none {path} && exec "$@"', "ns"]


def pytest_configure(config) -> None:
    """With $HARNESS_TEST_TMPFS (tox -e unit sets it) and no --basetemp, the tests' files live in /dev/shm: they
    write, extract and hash thousands of small files, and on these machines the disk made that the largest
    part of the paddle-free suite's time (docs/costs.md). Nothing changes where /dev/shm is missing."""
    shm = Path("/dev/shm")
    usable = shm.is_dir() and os.access(shm, os.W_OK)
    if os.environ.get("HARNESS_TEST_TMPFS") and config.option.basetemp is None and usable:
        config.option.basetemp = str(shm / f"harness-tests-{os.getuid()}")
        config.stash[TMPFS] = Path(config.option.basetemp)


TMPFS = pytest.StashKey[Path]()


def pytest_sessionfinish(session, exitstatus) -> None:
    """A passing run gives its memory back (the files of a failing one stay, to look at)."""
    where = session.config.stash.get(TMPFS, None)
    if where is not None and exitstatus == 0 and not hasattr(session.config, "workerinput"):
        shutil.rmtree(where, ignore_errors=True)


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


def ppdet_tree(commit: str) -> str:
    """The content pin of the archive `ppdet_archive(commit)` gives: the fixture's, else the real one."""
    trimmed = (SHARED / "fixtures" / f"PaddleDetection-{commit}.tar.gz").is_file()
    return (FIXTURE_TREES if trimmed else REAL_TREES)[commit]


@pytest.fixture(scope="session")
def rehearsal(tmp_path_factory):
    """One run of the README's main job (`harness rehearse`) per session, shared by the stack tests:
    mini-zoo built from the real configs, served on 127.0.0.1, fetched, verified for all three models,
    reported. Its mirror is served again by tests that need more (weights variants)."""
    from types import SimpleNamespace

    work = tmp_path_factory.mktemp("rehearsal")
    out = harness("rehearse", "--dir", str(work), "--port", "0", "--images", "3", timeout=1200)
    runs = sorted((work / "runs").iterdir()) if (work / "runs").exists() else []
    return SimpleNamespace(work=work, out=out, run_dir=runs[-1] if runs else None)


@pytest.fixture(scope="session")
def served(rehearsal, tmp_path_factory):
    """The rehearsal's mirror served again, plus checkpoint variants; yields a function making zoo files."""
    import pickle

    import yaml

    from harness.nightly.rehearsal import mirror_zoo, serve
    from harness.zoo.manifest import load_zoo

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
    nan = {**state, keys[3]: state[keys[3]].copy()}
    nan[keys[3]].flat[0] = float("nan")
    (variants / "nan.pdparams").write_bytes(pickle.dumps(nan, protocol=4))
    (variants / "resaved.pdparams").write_bytes(pickle.dumps(state, protocol=2))  # same arrays, other bytes
    import pickles

    # every key, every shape, no data: numpy's _reconstruct without a state (uninitialised memory before)
    (variants / "nodata.pdparams").write_bytes(pickles.state_dict(*((k, pickles.reconstruct()) for k in keys)))
    whole = (mirror / "models" / f"{FASTER}.pdparams").read_bytes()
    (variants / "corrupt.pdparams").write_bytes(whole[: len(whole) // 3])  # a truncated checkpoint
    (variants / "cut-at-100.pdparams").write_bytes(whole[:100])
    (variants / "random-bytes.pdparams").write_bytes(os.urandom(1_000_000))
    # two URLs that differ only by escaping (`a_b`, `a%20b`): the Faster and the first Mask model's weights
    shutil.copyfile(mirror / "models" / f"{FASTER}.pdparams", variants / "a_b.pdparams")
    shutil.copyfile(mirror / "models" / f"{MASK}.pdparams", variants / "a b.pdparams")
    cache = tmp_path_factory.mktemp("verify-cache")
    zoo, _ = load_zoo(REPO / "zoo.yaml")
    stack, _ = zoo.source()
    with serve(mirror, 0) as base:

        def make(tmp_path, weights: str | None = None, *more: str):
            """zoo.yaml of the mirror; `weights` (and `more`, for the next models) name variants."""
            raw = mirror_zoo(zoo, stack, base, mirror)
            for i, name in enumerate((weights, *more)):
                if name:
                    raw["models"][i]["weights"] = {"url": f"{base}/variants/{name}.pdparams"}
            path = tmp_path / "zoo.yaml"
            path.write_text(yaml.safe_dump(raw, allow_unicode=True))
            return path

        yield make, cache, keys


def result(record: dict):
    """A test's record (the fields it looks at) as a `results.Result`: the start fields of RECORD filled in,
    each verdict named after its metric; validated like every record the harness reads."""
    from harness.records.results import Result

    metrics = {k: {"metric": k, "reason": "r", **v} for k, v in (record.get("metrics") or {}).items()}
    return Result.parse({"model": "m", "status": "pass", **RECORD, **record, "metrics": metrics}, "a test's record")


def results(*records: dict) -> list:
    return [result(r) for r in records]
