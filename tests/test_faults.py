"""The fault catalogue, part 1: downloads, the cache's disk, manifests and data. Every fault is caused for
real (a misbehaving server on 127.0.0.1, a real file-size limit, a real full or read-only filesystem in a
mount namespace); each test checks the message, the exit code and what is left in the cache."""

from __future__ import annotations

import copy
import hashlib
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from conftest import FAST, RECORD, REPO, harness_argv, namespaced
from loopback import Drop, Endless, Gzip, IgnoreIfRange, LieLength, Stall, Trickle

from harness.core.errors import ArtifactError, DatasetError, ExitCode, IntegrityError, ManifestError
from harness.fetch.artifacts import fetch, fetch_artifact
from harness.fetch.cache import entry_path
from harness.fetch.policy import Policy
from harness.zoo.lockfile import LockFile
from harness.zoo.manifest import Artifact, parse_zoo

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


@pytest.mark.parametrize("pinned", [True, False])
def test_content_length_that_claims_more_than_is_sent(server, cache, pinned):
    url = server.add(PATH, BODY)
    server.fault(PATH, LieLength(+1000))  # the body ends 1000 bytes early by the header's count
    got = fetch(url, sha256=SHA if pinned else None, policy=FAST)
    assert got.sha256 == SHA  # the resume asked for the rest and learned the true size (416, */size)
    # A 416 carries no validator: only a known sha256 may accept the part as the whole file; else start again.
    assert [(r.status, r.range) for r in server.gets(PATH)] == [(200, None), (416, f"bytes={len(BODY)}-")] + (
        [] if pinned else [(200, None)]
    )


def test_content_length_that_claims_less_is_caught_by_the_pin(server, cache):
    url = server.add(PATH, BODY)
    server.fault(PATH, LieLength(-1000))
    with pytest.raises(IntegrityError, match="sha256 mismatch"):
        fetch(url, sha256=SHA, policy=FAST)
    assert _no_entry(url, cache)


def test_a_stalled_server_hits_the_read_timeout_and_the_retry_resumes(server, cache):
    url = server.add(PATH, BODY)
    server.fault(PATH, Stall(seconds=60, after=200_000))
    policy = Policy(attempts=3, backoff_s=0.01, read_timeout_s=0.3)
    assert fetch(url, sha256=SHA, policy=policy).path.read_bytes() == BODY
    first, second = server.gets(PATH)
    # the client gave up on the silent server (its read timeout fired): the server did not end the stall
    assert first.stall_over.wait(30) and first.hung_up is True
    assert second.range == "bytes=200000-"


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
    code = (
        "import sys; from pathlib import Path; from harness.fetch.artifacts import fetch; "
        f"g = fetch({url!r}, root=Path({str(cache)!r})); print(g.sha256)"
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(4)
    ]
    outs = [p.communicate(timeout=60) for p in procs]
    assert [p.returncode for p in procs] == [0] * 4, outs
    assert {o.strip() for o, _ in outs} == {SHA} and len(server.gets(PATH)) == 1


# ---- servers that lie, trickle or never stop ---------------------------------------------------------------


def _parts(cache: Path) -> list[Path]:
    return [p for p in cache.rglob("*") if p.name.endswith((".part", ".meta"))]


def test_a_resume_answered_with_another_version_starts_again(server, cache, tmp_path):
    """v1 drops half-way; the server now has v2 (same size) and ignores If-Range: 206 with v2's tail under v2's
    ETag. The harness compares the validators, throws the part away and fetches v2 whole: never a splice."""
    url = server.add(PATH, BODY)
    server.fault(PATH, Drop(after=500_000))
    lock = LockFile(tmp_path / "zoo.lock")
    with pytest.raises(ArtifactError):
        fetch_artifact(Artifact(url=url), lock, policy=Policy(attempts=1))
    v2 = os.urandom(len(BODY))
    server.files[PATH] = v2
    server.fault(PATH, IgnoreIfRange())
    got = fetch_artifact(Artifact(url=url), lock, policy=FAST)
    assert got.path.read_bytes() == v2 and got.sha256 == hashlib.sha256(v2).hexdigest()
    assert lock.get(url).sha256 == got.sha256  # the pin is of v2, not of v1's head on v2's tail
    assert [(r.status, r.range) for r in server.gets(PATH)] == [(200, None), (206, "bytes=500000-"), (200, None)]
    assert _parts(cache) == []


def test_a_compressed_response_is_refused_before_anything_is_hashed_or_pinned(server, cache, tmp_path):
    url = server.add(PATH, BODY)
    server.fault(PATH, Gzip())
    lock = LockFile(tmp_path / "zoo.lock")
    with pytest.raises(ArtifactError, match="Content-Encoding: gzip although the harness asked for identity") as err:
        fetch_artifact(Artifact(url=url), lock, policy=FAST)
    assert err.value.exit_code == ExitCode.ERROR and "fix:" in str(err.value)
    assert lock.get(url) is None and not entry_path(url, cache).exists() and _parts(cache) == []
    assert fetch_artifact(Artifact(url=url), lock, policy=FAST).sha256 == SHA  # the next honest answer is taken


def test_an_endless_body_stops_at_the_pinned_size_and_leaves_nothing(server, cache):
    url = server.add(PATH, BODY)
    server.fault(PATH, Endless())
    with pytest.raises(IntegrityError, match=f"sent more than the {len(BODY)} bytes expected"):
        fetch(url, sha256=SHA, size=len(BODY), policy=FAST)
    assert not entry_path(url, cache).exists() and _parts(cache) == []


def test_a_trickle_is_cut_by_the_minimum_rate_and_resumed(server, cache):
    url = server.add(PATH, BODY[:40])
    server.fault(PATH, Trickle(bps=2), Trickle(bps=2))
    policy = Policy(attempts=2, backoff_s=0.01, speed_limit_bps=1000, speed_time_s=1)
    with pytest.raises(ArtifactError, match=r"after 2 attempts: transfer slower than 1000 bytes/s for 1 s"):
        fetch(url, policy=policy)
    first, second = server.gets(PATH)
    assert first.range is None and second.range and second.range.startswith("bytes=")  # resumed, then cut again
    assert fetch(url, policy=FAST).path.read_bytes() == BODY[:40]  # the part was kept: it had a validator


def test_a_trickle_is_stopped_by_the_deadline(server, cache):
    url = server.add(PATH, BODY[:100])
    server.fault(PATH, Trickle(bps=2))
    policy = Policy(attempts=5, backoff_s=0.01, speed_limit_bps=0, deadline_s=1.5)
    with pytest.raises(ArtifactError, match=r"not complete after 1.5 s \(the fetch's deadline\)") as err:
        fetch(url, policy=policy)
    assert "$HARNESS_DEADLINE_S" in str(err.value) and len(server.gets(PATH)) == 1


def test_a_lock_waiter_gives_up_in_time_and_names_the_holder(server, cache):
    url = server.add(PATH, BODY)
    entry = entry_path(url, cache)
    entry.parent.mkdir(parents=True)
    code = (
        "import sys, time; from pathlib import Path; from harness.fetch.entrylock import entry_lock\n"
        f"with entry_lock(Path({str(entry)!r}), {url!r}, 1):\n    print('held', flush=True)\n    time.sleep(60)"
    )
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"  # readiness, not a sleep
        with pytest.raises(ArtifactError, match=rf"waited 1 s for process {holder.pid} on ") as err:
            fetch(url, policy=Policy(lock_wait_s=1))
        assert "$HARNESS_LOCK_WAIT_S" in str(err.value) and server.gets(PATH) == []
    finally:
        holder.kill()
        holder.wait()
    assert fetch(url, policy=FAST).sha256 == SHA  # the lock dies with its holder


def test_urls_that_differ_only_in_escaping_never_share_an_entry(server, cache):
    """`a_b` and `a%20b` used to map to one file (`a b` made safe is `a_b`): each evicted the other, and a
    parallel run evaluated one model with the other's weights. Now the entry is keyed by the exact URL."""
    one, two = os.urandom(1000), os.urandom(1000)
    url_one, url_two = server.add("/m/a_b.pdparams", one), server.add("/m/a%20b.pdparams", two)
    assert entry_path(url_one, cache) != entry_path(url_two, cache)
    for _ in range(2):
        assert fetch(url_one, policy=FAST).path.read_bytes() == one
        assert fetch(url_two, policy=FAST).path.read_bytes() == two
    assert len(server.gets("/m/a_b.pdparams")) == len(server.gets("/m/a%20b.pdparams")) == 1  # both stay cached


# ---- the cache's own disk ------------------------------------------------------------------------------


def _cli_fetch(server, tmp_path, cache: Path, *, preexec=None, wrap: list[str] | None = None):
    """`harness fetch` of one model; the loopback server serves its weights and the PaddleDetection archive
    (a small stand-in: the source is fetched first and must get through for the weights to be tried)."""
    raw = yaml.safe_load((REPO / "zoo.yaml").read_text())
    name = raw["models"][0]["name"]
    raw["models"][0]["weights"] = server.add(PATH, BODY)
    for src in raw["sources"].values():
        src["repository"] = server.url("/PaddlePaddle/PaddleDetection")
        archive, src["tree"] = _tiny_ppdet(tmp_path, src["commit"])
        server.add(f"/PaddlePaddle/PaddleDetection/archive/{src['commit']}.tar.gz", archive)
    zoo = tmp_path / "zoo.yaml"
    zoo.write_text(yaml.safe_dump(raw))
    cmd = harness_argv("fetch", name, "--zoo", str(zoo))
    shell = " ".join(f"'{c}'" for c in cmd) + f"; echo rc=$?; find {cache} -type f | sort"
    proc = subprocess.run(
        [*(wrap or []), "sh", "-c", shell] if wrap else cmd,
        capture_output=True,
        text=True,
        preexec_fn=preexec,
        timeout=120,
        env={**os.environ, "HARNESS_CACHE": str(cache), "HARNESS_RETRIES": "1"},
    )
    return proc


def _tiny_ppdet(tmp_path: Path, commit: str) -> tuple[Path, str]:
    """A tar in git-archive form holding a minimal PaddleDetection tree, and its git tree id (the pin)."""
    import tarfile

    from harness.fetch.source import tree_id

    top = tmp_path / "tiny" / f"PaddleDetection-{commit}"
    for name in ("ppdet/__init__.py", "configs/x.yml"):
        (top / name).parent.mkdir(parents=True, exist_ok=True)
        (top / name).write_text("\n")
    path = tmp_path / f"ppdet-{commit}.tar.gz"
    with tarfile.open(path, "w:gz", format=tarfile.PAX_FORMAT, pax_headers={"comment": commit}) as tf:
        tf.add(top, arcname=top.name)
    return path, tree_id(top)


def test_a_full_disk_is_a_clear_error_and_leaves_no_entry(server, tmp_path):
    cache = tmp_path / "cache"
    wrap = namespaced("size=256k", cache)
    proc = _cli_fetch(server, tmp_path, cache, wrap=wrap)
    assert "rc=3" in proc.stdout, proc.stdout + proc.stderr
    assert "cannot write the cache" in proc.stderr and "No space left on device" in proc.stderr
    assert "free disk space, or point $HARNESS_CACHE" in proc.stderr
    files = [line for line in proc.stdout.splitlines() if line.startswith(str(cache))]
    assert not [f for f in files if f.endswith(".pdparams")]  # a .part may stay for the resume; no entry


def test_a_read_only_cache_is_a_clear_error(server, tmp_path):
    cache = tmp_path / "cache"
    wrap = namespaced("ro", cache)
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
REQUIRED = [
    "version",
    "sources",
    "dataset",
    "tolerance",
    "models",
    "sources.current.repository",
    "sources.current.commit",
    "sources.current.tree",
    "sources.current.paddle",
    "dataset.name",
    "dataset.images",
    "tolerance.default",
    *[f"models.1.{f}" for f in ("name", "config", "weights", "expected")],
]


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
    expected = {
        "tolerance.default": "tolerance.default is required",
        "dataset.images": "dataset: a dataset needs `images:` (its archive) or `homepage:`",
    }
    assert expected.get(field, f"{_loc(field)}: required field is missing") in text
    assert err.value.exit_code == ExitCode.USAGE


@pytest.mark.parametrize(
    "path, value, expected",
    [
        ("models", {"a": 1}, "models: expected a list"),
        ("sources", ["x"], "sources: expected a mapping"),
        ("models.0.input_size", "two", "models[0].input_size: expected an integer"),
        ("models.0.expected", 40.6, "models[0].expected: expected a mapping"),
        ("models.0.labels", ["a"], "models[0].labels: expected a mapping"),
        ("models.0.tolerance.box_ap", -1, "models[0].tolerance.box_ap: expected greater than or equal to 0"),
        ("dataset.images", 7, "dataset.images: expected a mapping"),
    ],
)
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
    from harness.fetch import dataset
    from harness.zoo.manifest import Dataset

    root = tmp_path / "coco"
    (root / "val2017").mkdir(parents=True)
    (root / "annotations").mkdir()
    (root / "annotations" / "instances_val2017.json").write_text(
        json.dumps({"info": {}, "images": [], "annotations": [], "categories": [{"id": 1, "name": "x"}]})
    )
    ds = Dataset(name="coco", images="http://unused.invalid/a.zip", annotations="http://unused.invalid/b.zip")
    with pytest.raises(DatasetError, match="lists no images"):
        dataset.prepare(ds, None, data_dir=root)


# ---- a result write killed half-way ---------------------------------------------------------------------


def test_sigkill_during_result_writes_never_leaves_a_half_written_result(tmp_path):
    """A child rewrites a large result.json in a loop; it is SIGKILLed at varied moments. Every time, the
    file is either absent or a complete record: readers (report, --resume) never see half a result."""
    import signal

    from harness.records.results import finished

    code = (
        "import sys; from pathlib import Path; from harness.records.results import write\n"
        f"rec = {{**{RECORD!r}, 'model': 'm', 'status': 'fail', 'finished': 'now', 'notice': 'x' * 2_000_000}}\n"
        "print('ready', flush=True)\n"
        "while True:\n    write(Path(sys.argv[1]), rec)\n"
    )
    for delay in (0.05, 0.11, 0.17, 0.23, 0.31):
        run = tmp_path / f"run-{delay}"
        proc = subprocess.Popen([sys.executable, "-c", code, str(run)], stdout=subprocess.PIPE, text=True)
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        result = run / "m" / "result.json"
        if result.exists():
            assert json.loads(result.read_text())["notice"] == "x" * 2_000_000
            assert finished(run, "m")
        else:
            assert not finished(run, "m")  # --resume would run the model again
