"""The fault catalogue, part 1: downloads, the cache's disk, manifests and data. Every fault is caused for
real (a misbehaving server on 127.0.0.1, a real file-size limit, a real full or read-only filesystem in a
mount namespace); each test checks the message, the exit code and what is left in the cache."""

from __future__ import annotations

import copy
import hashlib
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from conftest import FAST, REPO
from loopback import Drop, LieLength, Stall

from harness.artifacts import Policy, entry_path, fetch
from harness.errors import ArtifactError, DatasetError, ExitCode, IntegrityError, ManifestError
from harness.manifest import parse_zoo

BODY = os.urandom(1_000_000)
SHA = hashlib.sha256(BODY).hexdigest()
PATH = "/models/w.pdparams"


def _no_entry(url: str, cache: Path) -> bool:
    entry = entry_path(url, cache)
    return not entry.exists() and not entry.with_name(entry.name + ".stamp").exists()


# ---- downloads ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("offset", [1, 1000, 65_535, 65_536, 65_537, 500_000, 999_999])
def test_connection_reset_at_any_offset_resumes_there(server, cache, offset):
    url = server.add(PATH, BODY)
    server.fault(PATH, Drop(after=offset))
    assert fetch(url, sha256=SHA, policy=FAST).path.read_bytes() == BODY
    assert [r.range for r in server.gets(PATH)] == [None, f"bytes={offset}-"]


def test_content_length_that_claims_more_than_is_sent(server, cache):
    url = server.add(PATH, BODY)
    server.fault(PATH, LieLength(+1000))  # the body ends 1000 bytes early by the header's count
    got = fetch(url, policy=FAST)
    assert got.sha256 == SHA  # the resume asked for the rest and learned the true size (416, */size)
    assert [(r.status, r.range) for r in server.gets(PATH)] == [(200, None), (416, f"bytes={len(BODY)}-")]


def test_content_length_that_claims_less_is_caught_by_the_pin(server, cache):
    url = server.add(PATH, BODY)
    server.fault(PATH, LieLength(-1000))
    with pytest.raises(IntegrityError, match="sha256 mismatch"):
        fetch(url, sha256=SHA, policy=FAST)
    assert _no_entry(url, cache)


def test_a_stalled_server_hits_the_read_timeout_and_the_retry_resumes(server, cache):
    url = server.add(PATH, BODY)
    server.fault(PATH, Stall(seconds=3, after=200_000))
    policy = Policy(attempts=3, backoff_s=0.01, read_timeout_s=0.3)
    t0 = time.perf_counter()
    assert fetch(url, sha256=SHA, policy=policy).path.read_bytes() == BODY
    assert time.perf_counter() - t0 < 3
    assert server.gets(PATH)[1].range == "bytes=200000-"


def test_a_server_that_always_stalls_fails_after_the_retry_budget(server, cache):
    url = server.add(PATH, BODY)
    server.fault(PATH, *[Stall(seconds=2)] * 5)
    with pytest.raises(ArtifactError, match=r"after 3 attempts: .*(timed out|Read timed out)"):
        fetch(url, policy=Policy(attempts=3, backoff_s=0.01, read_timeout_s=0.2))
    assert len(server.gets(PATH)) == 3 and _no_entry(url, cache)


def test_a_redirect_loop_is_one_clear_error_not_a_retry_storm(server, cache):
    server.redirects["/loop"] = "/loop"
    with pytest.raises(ArtifactError, match="redirects") as err:
        fetch(server.url("/loop"), policy=FAST)
    assert err.value.exit_code == ExitCode.ERROR
    assert len(server.gets("/loop")) <= 31  # one chain of redirects, not one per attempt


def test_four_processes_fetching_one_file_download_it_once(server, cache):
    url = server.add(PATH, BODY)
    server.rate[PATH] = 1_000_000
    code = ("import sys; from pathlib import Path; from harness.artifacts import fetch; "
            f"g = fetch({url!r}, root=Path({str(cache)!r})); print(g.sha256)")
    procs = [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for _ in range(4)]
    outs = [p.communicate(timeout=60) for p in procs]
    assert [p.returncode for p in procs] == [0] * 4, outs
    assert {o.strip() for o, _ in outs} == {SHA} and len(server.gets(PATH)) == 1


# ---- the cache's own disk ------------------------------------------------------------------------------


def _cli_fetch(server, tmp_path, cache: Path, *, preexec=None, wrap: list[str] | None = None):
    """`harness fetch` of one model; the loopback server serves its weights and the PaddleDetection archive
    (a small stand-in: the source is fetched first and must get through for the weights to be tried)."""
    raw = yaml.safe_load((REPO / "zoo.yaml").read_text())
    name = raw["models"][0]["name"]
    raw["models"][0]["weights"] = server.add(PATH, BODY)
    for src in raw["sources"].values():
        src["repository"] = server.url("/PaddlePaddle/PaddleDetection")
        server.add(f"/PaddlePaddle/PaddleDetection/archive/{src['commit']}.tar.gz",
                   _tiny_ppdet(tmp_path, src["commit"]))
    zoo = tmp_path / "zoo.yaml"
    zoo.write_text(yaml.safe_dump(raw))
    cmd = [sys.executable, "-m", "harness", "fetch", name, "--zoo", str(zoo)]
    shell = " ".join(f"'{c}'" for c in cmd) + f"; echo rc=$?; find {cache} -type f | sort"
    proc = subprocess.run([*(wrap or []), "sh", "-c", shell] if wrap else cmd, capture_output=True, text=True,
                          preexec_fn=preexec, timeout=120,
                          env={**os.environ, "HARNESS_CACHE": str(cache), "HARNESS_RETRIES": "1"})
    return proc


def _tiny_ppdet(tmp_path: Path, commit: str) -> Path:
    """A tar in git-archive form (commit id in the pax header) holding a minimal PaddleDetection tree."""
    import io
    import tarfile

    path = tmp_path / f"ppdet-{commit}.tar.gz"
    with tarfile.open(path, "w:gz", format=tarfile.PAX_FORMAT, pax_headers={"comment": commit}) as tf:
        for name in (f"PaddleDetection-{commit}/ppdet/__init__.py", f"PaddleDetection-{commit}/configs/x.yml"):
            info = tarfile.TarInfo(name)
            info.size = 1
            tf.addfile(info, io.BytesIO(b"\n"))
    return path


def _namespaced(mount_opts: str, cache: Path) -> list[str]:
    """A user + mount namespace with a tmpfs at `cache` (real ENOSPC / EROFS, no root needed); the test is
    skipped, and says why, where the kernel does not allow user namespaces."""
    cache.mkdir(parents=True, exist_ok=True)
    probe = subprocess.run(["unshare", "-rm", "sh", "-c", f"mount -t tmpfs -o {mount_opts} none {cache}"],
                           capture_output=True) if shutil.which("unshare") else None
    if probe is None or probe.returncode != 0:
        pytest.skip(f"needs user namespaces (unshare -rm) to mount a tmpfs with -o {mount_opts}")
    return ["unshare", "-rm", "sh", "-c", f'mount -t tmpfs -o {mount_opts} none {cache} && exec "$@"', "ns"]


def test_a_full_disk_is_a_clear_error_and_leaves_no_entry(server, tmp_path):
    cache = tmp_path / "cache"
    wrap = _namespaced("size=256k", cache)
    proc = _cli_fetch(server, tmp_path, cache, wrap=wrap)
    assert "rc=3" in proc.stdout, proc.stdout + proc.stderr
    assert "cannot write the cache" in proc.stderr and "No space left on device" in proc.stderr
    assert "free disk space, or point $HARNESS_CACHE" in proc.stderr
    files = [line for line in proc.stdout.splitlines() if line.startswith(str(cache))]
    assert not [f for f in files if f.endswith(".pdparams")]  # a .part may stay for the resume; no entry


def test_a_read_only_cache_is_a_clear_error(server, tmp_path):
    cache = tmp_path / "cache"
    wrap = _namespaced("ro", cache)
    proc = _cli_fetch(server, tmp_path, cache, wrap=wrap)
    assert "rc=3" in proc.stdout and "Read-only file system" in proc.stderr
    assert server.gets(PATH) == [] and server.requests == []  # refused before downloading anything


def test_a_file_size_limit_is_a_clear_error_not_a_killed_process(server, tmp_path):
    cache = tmp_path / "cache"

    def limit():
        resource.setrlimit(resource.RLIMIT_FSIZE, (300_000, 300_000))

    proc = _cli_fetch(server, tmp_path, cache, preexec=limit)
    assert proc.returncode == 3, proc.stderr
    assert "cannot write the cache" in proc.stderr and "File too large" in proc.stderr
    assert _no_entry(server.url(PATH), cache)


def test_a_cache_path_that_is_a_file_is_a_clear_error(server, tmp_path):
    (tmp_path / "cache").write_text("not a directory")
    proc = _cli_fetch(server, tmp_path, tmp_path / "cache")
    assert proc.returncode == 3 and "cannot write the cache" in proc.stderr


# ---- manifests ----------------------------------------------------------------------------------------

RAW = yaml.safe_load((REPO / "zoo.yaml").read_text())
REQUIRED = ["version", "sources", "dataset", "tolerance", "models", "sources.current.repository",
            "sources.current.commit", "sources.current.paddle", "dataset.name", "dataset.images",
            "dataset.annotations", "tolerance.default", *[f"models.1.{f}" for f in (
                "name", "type", "backbone", "images_per_gpu", "schedule", "config", "weights", "metrics")],
            "models.1.metrics.box_ap"]


def _loc(path: str) -> str:
    out = ""
    for part in path.split("."):
        out += f"[{part}]" if part.isdigit() else (f".{part}" if out else part)
    return out


@pytest.mark.parametrize("field", REQUIRED)
def test_every_required_field_missing_in_turn_is_named(field):
    raw = copy.deepcopy(RAW)
    *parents, last = field.split(".")
    node = raw
    for key in parents:
        node = node[int(key)] if key.isdigit() else node[key]
    del node[last]
    with pytest.raises(ManifestError) as err:
        parse_zoo(raw)
    text = str(err.value)
    expected = {"tolerance.default": "tolerance.default is required",
                "models.1.metrics.box_ap": "models[1].metrics.box_ap: required field is missing"}
    assert expected.get(field, f"{_loc(field)}: required field is missing") in text
    assert err.value.exit_code == ExitCode.USAGE


@pytest.mark.parametrize("path, value, expected", [
    ("models", {"a": 1}, "models: expected a list"),
    ("sources", ["x"], "sources: expected a mapping"),
    ("models.0.images_per_gpu", "two", "models[0].images_per_gpu: expected an integer"),
    ("models.0.metrics", 40.6, "models[0].metrics: expected a mapping"),
    ("models.0.tolerance.box_ap", -1, "models[0].tolerance.box_ap: expected greater than or equal to 0"),
    ("dataset.images", 7, "dataset.images: expected a mapping"),
])
def test_wrong_types_are_named(path, value, expected):
    raw = copy.deepcopy(RAW)
    *parents, last = path.split(".")
    node = raw
    for key in parents:
        node = node[int(key)] if key.isdigit() else node.setdefault(key, {})
    node[last] = value
    with pytest.raises(ManifestError, match=expected.replace("[", r"\[").replace("]", r"\]")):
        parse_zoo(raw)


# ---- data ---------------------------------------------------------------------------------------------


def test_annotations_listing_no_images_are_refused(tmp_path):
    from harness import dataset
    from harness.manifest import Dataset

    root = tmp_path / "coco"
    (root / "val2017").mkdir(parents=True)
    (root / "annotations").mkdir()
    (root / "annotations" / "instances_val2017.json").write_text(json.dumps(
        {"info": {}, "images": [], "annotations": [], "categories": [{"id": 1, "name": "x"}]}))
    ds = Dataset(name="coco", images="http://unused.invalid/a.zip", annotations="http://unused.invalid/b.zip")
    with pytest.raises(DatasetError, match="lists no images"):
        dataset.prepare(ds, None, data_dir=root)


# ---- a result write killed half-way ---------------------------------------------------------------------


def test_sigkill_during_result_writes_never_leaves_a_half_written_result(tmp_path):
    """A child rewrites a large result.json in a loop; it is SIGKILLed at varied moments. Every time, the
    file is either absent or a complete record: readers (report, --resume) never see half a result."""
    import signal

    from harness.runner import complete

    code = ("import sys; from pathlib import Path; from harness.results import write\n"
            "rec = {'model': 'm', 'status': 'fail', 'finished': 'now', 'blob': 'x' * 2_000_000}\n"
            "print('ready', flush=True)\n"
            "while True:\n    write(Path(sys.argv[1]), rec)\n")
    for delay in (0.05, 0.11, 0.17, 0.23, 0.31):
        run = tmp_path / f"run-{delay}"
        proc = subprocess.Popen([sys.executable, "-c", code, str(run)], stdout=subprocess.PIPE, text=True)
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        result = run / "m" / "result.json"
        if result.exists():
            assert json.loads(result.read_text())["blob"] == "x" * 2_000_000
            assert complete(run, "m")
        else:
            assert not complete(run, "m")  # --resume would run the model again
