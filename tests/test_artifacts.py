"""The artifact cache against a real HTTP server on 127.0.0.1 (no mocked HTTP layer)."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from conftest import FAST, wait_until
from loopback import Drop, IgnoreRange, Serve, Status

from harness.core.errors import ArtifactError, ExitCode, IntegrityError, LockedError, ManifestError
from harness.fetch import artifacts
from harness.fetch.artifacts import fetch, fetch_artifact
from harness.fetch.cache import entry_path
from harness.fetch.policy import Policy
from harness.zoo.lockfile import LockFile
from harness.zoo.manifest import Artifact

BODY = os.urandom(1_000_000)
SHA = hashlib.sha256(BODY).hexdigest()
PATH = "/models/w.pdparams"


def _leftovers(cache: Path) -> list[str]:
    return sorted(p.name for p in cache.rglob("*") if p.suffix in (".part", ".meta", ".tmp"))


def test_first_download_is_verified_stamped_and_recorded(server, cache, tmp_path):
    url = server.add(PATH, BODY)
    lock = LockFile(tmp_path / "zoo.lock")
    got = fetch_artifact(Artifact(url=url), lock, policy=FAST)
    assert got.downloaded and got.sha256 == SHA and got.size == len(BODY)
    assert got.path == entry_path(url, cache)
    assert got.path.read_bytes() == BODY
    assert "127.0.0.1_" in str(got.path) and got.path.name == "w.pdparams"
    assert got.path.parent.name == hashlib.sha256(url.encode()).hexdigest()[:32]  # the exact URL, digested
    assert lock.get(url).sha256 == SHA and lock.get(url).size == len(BODY)
    assert _leftovers(cache) == []


def test_warm_fetch_touches_neither_network_nor_hash(server, cache, monkeypatch):
    url = server.add(PATH, BODY)
    fetch(url, sha256=SHA, policy=FAST)
    hashed: list[Path] = []
    real = artifacts.sha256_file
    monkeypatch.setattr(artifacts, "sha256_file", lambda p: hashed.append(p) or real(p))  # spy, not a mock
    again = fetch(url, sha256=SHA, policy=FAST)
    assert not again.downloaded and again.sha256 == SHA
    assert len(server.gets(PATH)) == 1 and hashed == []


def test_touched_entry_is_hashed_once_then_trusted(server, cache, monkeypatch):
    url = server.add(PATH, BODY)
    entry = fetch(url, policy=FAST).path
    st = entry.stat()
    os.utime(entry, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    hashed: list[Path] = []
    real = artifacts.sha256_file
    monkeypatch.setattr(artifacts, "sha256_file", lambda p: hashed.append(p) or real(p))
    assert not fetch(url, policy=FAST).downloaded
    assert not fetch(url, policy=FAST).downloaded
    assert hashed == [entry] and len(server.gets(PATH)) == 1


def test_corrupted_entry_is_fetched_again(server, cache):
    url = server.add(PATH, BODY)
    entry = fetch(url, sha256=SHA, policy=FAST).path
    entry.write_bytes(b"x" * len(BODY))  # same size, other bytes, new mtime
    got = fetch(url, sha256=SHA, policy=FAST)
    assert got.downloaded and got.path.read_bytes() == BODY and len(server.gets(PATH)) == 2


def test_resume_after_the_server_drops_the_connection(server, cache):
    url = server.add(PATH, BODY)
    server.fault(PATH, Drop(after=300_000))
    got = fetch(url, sha256=SHA, policy=FAST)
    assert got.path.read_bytes() == BODY
    first, second = server.gets(PATH)
    assert first.range is None and first.sent == 300_000
    assert second.range == "bytes=300000-" and second.status == 206 and second.if_range
    assert _leftovers(cache) == []


@pytest.mark.parametrize("offset", [1, 65_536, 999_999])
def test_resume_across_runs_with_only_the_servers_validator(server, cache, offset):
    """No sha256 known: the part is resumed because If-Range proves it is still the same file."""
    url = server.add(PATH, BODY)
    server.fault(PATH, Drop(after=offset))
    with pytest.raises(ArtifactError, match="1 attempts"):
        fetch(url, policy=Policy(attempts=1))
    part = entry_path(url, cache).with_name("w.pdparams.part")
    assert part.stat().st_size == offset and not entry_path(url, cache).exists()
    got = fetch(url, policy=FAST)
    assert got.sha256 == SHA
    assert server.gets(PATH)[-1].range == f"bytes={offset}-"


def test_resume_with_a_changed_file_on_the_server_starts_again(server, cache):
    url = server.add(PATH, BODY)
    server.fault(PATH, Drop(after=500_000))
    with pytest.raises(ArtifactError):
        fetch(url, policy=Policy(attempts=1))
    new = os.urandom(800_000)
    server.files[PATH] = new  # the ETag changes: If-Range fails, the server sends the whole new file
    got = fetch(url, policy=FAST)
    assert got.path.read_bytes() == new and server.gets(PATH)[-1].status == 200


def test_unprovable_part_is_not_resumed(server, cache):
    url = server.add(PATH, BODY)
    part = entry_path(url, cache).with_name("w.pdparams.part")
    part.parent.mkdir(parents=True)
    part.write_bytes(b"stale bytes of unknown origin")  # no .meta validator, no sha256 pin
    got = fetch(url, policy=FAST)
    assert got.path.read_bytes() == BODY and server.gets(PATH)[0].range is None


def test_server_that_ignores_range_gets_a_clean_restart(server, cache):
    url = server.add(PATH, BODY)
    server.fault(PATH, Drop(after=400_000), IgnoreRange())
    got = fetch(url, sha256=SHA, policy=FAST)
    assert got.path.read_bytes() == BODY
    assert [r.status for r in server.gets(PATH)] == [200, 200]


def test_complete_part_left_by_a_killed_run_is_not_downloaded_again(server, cache):
    url = server.add(PATH, BODY)
    part = entry_path(url, cache).with_name("w.pdparams.part")
    part.parent.mkdir(parents=True)
    part.write_bytes(BODY)
    got = fetch(url, sha256=SHA, policy=FAST)
    assert got.sha256 == SHA
    assert [(r.range, r.status, r.sent) for r in server.gets(PATH)] == [(f"bytes={len(BODY)}-", 416, 0)]


def test_500_then_200(server, cache):
    url = server.add(PATH, BODY)
    server.fault(PATH, Status(500))
    assert fetch(url, sha256=SHA, policy=FAST).sha256 == SHA
    assert [r.status for r in server.gets(PATH)] == [500, 200]


def test_503_storm_is_bounded_by_the_retry_budget(server, cache):
    url = server.add(PATH, BODY)
    server.fault(PATH, *[Status(503)] * 20)
    with pytest.raises(ArtifactError, match="after 4 attempts: HTTP 503") as err:
        fetch(url, policy=FAST)
    assert err.value.exit_code == ExitCode.ERROR and len(server.gets(PATH)) == 4


def test_404_is_a_clear_error_without_retries(server, cache):
    url = server.url("/models/missing.pdparams")
    with pytest.raises(ArtifactError) as err:
        fetch(url, policy=FAST)
    assert url in str(err.value) and "HTTP 404" in str(err.value) and "fix:" in str(err.value)
    assert len(server.gets("/models/missing.pdparams")) == 1
    assert not entry_path(url, cache).exists() and _leftovers(cache) == []


def test_sha256_mismatch_names_url_and_both_hashes_and_caches_nothing(server, cache):
    url = server.add(PATH, BODY)
    wrong = "0" * 64
    with pytest.raises(IntegrityError) as err:
        fetch(url, sha256=wrong, policy=FAST)
    msg = str(err.value)
    assert url in msg and wrong in msg and SHA in msg and err.value.exit_code == ExitCode.ERROR
    entry = entry_path(url, cache)
    assert not entry.exists() and not entry.with_name("w.pdparams.stamp").exists()
    assert _leftovers(cache) == []


def test_size_mismatch_caches_nothing(server, cache):
    url = server.add(PATH, BODY)
    with pytest.raises(IntegrityError, match="the server announces 1000000 bytes, the pin says 5"):
        fetch(url, size=5, policy=FAST)
    assert len(server.gets(PATH)) == 1 and _leftovers(cache) == []  # refused on the header, not retried
    assert not entry_path(url, cache).exists() and _leftovers(cache) == []


def test_locked_refuses_an_artifact_without_a_recorded_hash(server, cache, tmp_path):
    url = server.add(PATH, BODY)
    with pytest.raises(LockedError, match="no recorded sha256") as err:
        fetch_artifact(Artifact(url=url), LockFile(tmp_path / "zoo.lock"), locked=True, policy=FAST)
    assert err.value.exit_code == ExitCode.USAGE and server.gets(PATH) == []


def test_locked_accepts_a_recorded_hash_and_the_lock_catches_a_changed_file(server, cache, tmp_path):
    url = server.add(PATH, BODY)
    lock = LockFile(tmp_path / "zoo.lock")
    fetch_artifact(Artifact(url=url), lock, policy=FAST)
    assert fetch_artifact(Artifact(url=url), lock, locked=True, policy=FAST).sha256 == SHA
    for p in entry_path(url, cache).parent.iterdir():
        p.unlink()
    server.fault(PATH, Serve(os.urandom(len(BODY))))  # the server now has other bytes
    with pytest.raises(IntegrityError, match=SHA):
        fetch_artifact(Artifact(url=url), lock, locked=True, policy=FAST)


def test_zoo_yaml_pin_and_lock_record_that_disagree_is_an_error(server, cache, tmp_path):
    url = server.add(PATH, BODY)
    lock = LockFile(tmp_path / "zoo.lock")
    lock.record(url, SHA, len(BODY))
    with pytest.raises(ManifestError, match=r"zoo\.yaml pins sha256"):
        fetch_artifact(Artifact(url=url, sha256="1" * 64), lock, policy=FAST)


def test_two_processes_fetching_one_file_download_it_once(server, cache, tmp_path):
    """The fetches provably overlap: the first is held mid-body by the server until the second says it is
    waiting for the first's lock; then both finish with one download between them."""
    url = server.add(PATH, BODY)
    server.hold[PATH] = threading.Event()
    code = (
        "import logging; from pathlib import Path; from harness.fetch.artifacts import fetch; "
        "logging.basicConfig(level=logging.INFO); "
        f"g = fetch({url!r}, root=Path({str(cache)!r})); print(g.sha256, g.downloaded)"
    )
    logs = [tmp_path / "first.log", tmp_path / "second.log"]
    first = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=logs[0].open("w"), text=True)
    assert wait_until(lambda: server.gets(PATH) or first.poll() is not None, 60) and server.gets(PATH)
    second = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=logs[1].open("w"), text=True)
    assert wait_until(lambda: "waiting up to" in logs[1].read_text() or second.poll() is not None, 60)
    assert f"process {first.pid} on" in logs[1].read_text()  # it waits for the first process, which holds the lock
    server.hold[PATH].set()
    outs = [p.communicate(timeout=60)[0] for p in (first, second)]
    assert [p.returncode for p in (first, second)] == [0, 0], [f.read_text() for f in logs]
    assert [o.split() for o in outs] == [[SHA, "True"], [SHA, "False"]]
    assert len(server.gets(PATH)) == 1


def test_file_urls_and_plain_paths_are_copied_in_and_verified(cache, tmp_path):
    src = tmp_path / "local weights.pdparams"
    src.write_bytes(BODY)
    for url in (src.as_uri(), str(src)):
        got = fetch(url, sha256=SHA)
        assert got.path.read_bytes() == BODY and got.path.parent.parent.name == "local"
    with pytest.raises(ArtifactError, match="no such file"):
        fetch(str(tmp_path / "nope.pdparams"))


def test_progress_bar_only_when_asked_or_on_a_terminal(server, cache, capfd):
    url = server.add(PATH, BODY)
    fetch(url, policy=FAST)  # stderr is not a terminal under pytest: quiet
    assert "w.pdparams" not in capfd.readouterr().err
    fetch(server.add("/other.bin", BODY), policy=FAST, progress=True)
    assert "other.bin" in capfd.readouterr().err


def _rot(entry: Path) -> None:
    """Bytes change on disk, size and mtime kept (bit rot, a bad disk): the stamp still looks fresh."""
    st = entry.stat()
    with entry.open("r+b") as f:
        f.seek(len(BODY) // 2)
        byte = f.read(1)
        f.seek(len(BODY) // 2)
        f.write(bytes([byte[0] ^ 0xFF]))
    os.utime(entry, ns=(st.st_atime_ns, st.st_mtime_ns))


def test_verify_rehashes_a_rotted_entry_and_fetches_it_again(server, cache):
    """A plain fetch trusts the stamp (that is what makes it cheap); `verify` hashes every byte, and an entry
    that rotted is evicted and downloaded again."""
    url = server.add(PATH, BODY)
    entry = fetch(url, sha256=SHA, policy=FAST).path
    _rot(entry)
    assert not fetch(url, sha256=SHA, policy=FAST).downloaded  # the stamp is trusted: not noticed
    got = fetch(url, sha256=SHA, policy=FAST, verify=True)
    assert got.downloaded and entry.read_bytes() == BODY and len(server.gets(PATH)) == 2
    assert not fetch(url, sha256=SHA, policy=FAST, verify=True).downloaded and len(server.gets(PATH)) == 2


def test_a_local_source_is_a_regular_file_copied_within_its_size_and_deadline(cache, tmp_path):
    """`/proc/self/pagemap` is a "regular file" of size 0 that reads as ~256 GB; a FIFO would block the copy for
    ever; a directory is not a file. Each is refused at once, nothing cached, no partial copy left."""
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    for src, why in (
        ("/proc/self/pagemap", "more than the 0 bytes its size says"),
        (str(fifo), "is not a regular file"),
        (str(tmp_path), "is not a regular file"),
    ):
        with pytest.raises(ArtifactError, match=why):
            fetch(src, policy=FAST)
        assert not entry_path(src, cache).exists() and _leftovers(cache) == []
    with pytest.raises(IntegrityError, match="expected 5 bytes, the file has 0"):
        fetch("/proc/self/pagemap", size=5, policy=FAST)  # a pinned size is checked before a byte is read
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(3 << 20))
    with pytest.raises(ArtifactError, match="deadline"):
        fetch(str(big), policy=Policy(deadline_s=0))
    assert not entry_path(str(big), cache).exists() and _leftovers(cache) == []
    assert fetch(str(big), policy=FAST).path.read_bytes() == big.read_bytes()
