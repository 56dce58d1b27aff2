"""The verified artifact cache: fetch one URL, prove the bytes are right, then move them into place.

The shape follows pooch's core: one name in, one verified local path out, in four parts:

- harness.fetch.fetchplan decides (a pure function: reuse, hash first, fetch, resume, refuse);
- harness.fetch.downloaders transfers (chosen by URL scheme: HTTP(S) with retries and resume, local copies);
- harness.fetch.cache lays entries out on disk (stamps, parts, atomic publish);
- harness.fetch.entrylock makes one process per entry fetch it (filelock).

This module is the orchestration and the cache's public API: it observes, asks fetchplan, hashes where the
answer says so, runs the downloader, verifies size and sha256 before the rename (a mismatch names URL,
expected and actual hash, and the bad bytes are deleted: they never become a cache entry). A stamp (url,
size, mtime_ns, sha256) beside every entry makes a warm fetch two stats and a small read, never a re-hash
of 170 MB.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from harness.core.errors import ArtifactError, HarnessError, IntegrityError, LockedError
from harness.core.files import sha256_file
from harness.fetch.cache import (
    Fetched,
    discard_part,
    entry_path,
    look,
    part_path,
    publish,
    remove,
    write_stamp,
)
from harness.fetch.downloaders import PIN_HINT, Downloader, Job, choose_downloader
from harness.fetch.entrylock import entry_lock
from harness.fetch.fetchplan import Action, Do, Seen, download_action
from harness.fetch.policy import Policy
from harness.zoo.lockfile import LockFile, Pin
from harness.zoo.manifest import Artifact

__all__ = ["discard", "evict", "fetch", "fetch_artifact", "invalidate", "is_cached"]

log = logging.getLogger(__name__)


def _seen(entry: Path, url: str, sha256: str | None, size: int | None, *, verify: bool = False) -> Seen:
    """The entry as fetchplan sees it (a stat and the stamp: no hashing)."""
    found = look(entry, url)
    return Seen(
        sha256=sha256,
        size=size,
        entry_size=found.size,
        stamp_sha256=found.stamp_sha256,
        stamp_fresh=found.fresh,
        verify=verify,
    )


def _reused(entry: Path, url: str, seen: Seen) -> Fetched:
    """The entry served as it is; an entry that had to be hashed is stamped again (hashed once, then trusted)."""
    if seen.hashed is not None:
        write_stamp(entry, url, seen.hashed)
    sha = seen.hashed or seen.stamp_sha256
    assert sha is not None and seen.entry_size is not None  # a REUSE always knows both
    return Fetched(url, entry, sha, seen.entry_size, downloaded=False)


def _settle(entry: Path, url: str, seen: Seen) -> tuple[Seen, Action]:
    """Ask fetchplan, hashing the entry when it says so (the only hash of a cached entry), and evict an entry
    whose bytes are not the right ones. Under the entry's lock."""
    action = download_action(seen)
    if action.do is Do.HASH:
        seen = replace(seen, hashed=sha256_file(entry))
        action = download_action(seen)
    if action.evict:
        (log.warning if seen.hashed else log.info)("cached %s %s", entry, action.why)
        remove(entry)
    return seen, action


def evict(url: str, root: Path | None = None) -> None:
    """Remove the cache entry of `url` (e.g. a checkpoint that cannot be read): the next fetch downloads."""
    entry = entry_path(url, root)
    if entry.parent.is_dir():
        with entry_lock(entry, url, Policy.from_env().lock_wait_s):
            remove(entry)


def invalidate(artifact: Artifact, lock: LockFile | None, refetch: str, root: Path | None = None) -> str:
    """Bytes proven unusable (not a checkpoint, an archive that will not extract) leave the cache, and a
    zoo.lock record learned from them is forgotten (a pin written in zoo.yaml stays: a person wrote it).

    Only for format errors: a local fault (disk, memory, a file gone) must never cost an entry or a pin,
    else the next `--locked` run would be refused for nothing. Returns a sentence for the error message.
    """
    evict(artifact.url, root)
    forgot = artifact.sha256 is None and lock is not None and lock.forget(artifact.url)
    return (
        f"the cache entry was removed{' and its zoo.lock record forgotten' if forgot else ''}; "
        f"re-fetch with `{refetch}` (if the same bytes come back, the published file itself is broken)"
    )


def discard(artifact: Artifact, refetch: str, root: Path | None = None) -> str:
    """A cache entry whose bytes are not the ones verified (they rotted, or were replaced) leaves the cache;
    its pin stays (the pin is right, the copy is not), so the next run downloads and verifies anew."""
    evict(artifact.url, root)
    return f"the cache entry was removed (its pin is kept); run again or `{refetch}`: it is fetched and verified anew"


def is_cached(url: str, root: Path | None = None) -> bool:
    """Stat-only check for `harness list`: is there a stamped entry for this URL?"""
    return download_action(_seen(entry_path(url, root), url, None, None)).do is Do.REUSE


# ---- fetching --------------------------------------------------------------------------------------


def fetch(
    url: str,
    *,
    sha256: str | None = None,
    size: int | None = None,
    root: Path | None = None,
    policy: Policy | None = None,
    check: Callable[[Path], None] | None = None,
    progress: bool | None = None,
    verify: bool = False,
    require_pin: str | None = None,
) -> Fetched:
    """Bring `url` into the cache and return the verified local file.

    `check(path)` runs on the downloaded bytes before they become the entry (e.g. "is this the pinned
    commit?"); a `HarnessError` from it discards the bytes like a hash mismatch. `progress=None` shows a
    bar only when stderr is a terminal. `verify` re-hashes a cached entry instead of trusting its stamp.
    `require_pin` (--locked) names the lock file without whose sha256 nothing is fetched or served.
    """
    download = choose_downloader(url)  # before anything touches the cache: an unknown scheme is refused at once
    entry = entry_path(url, root)
    seen = replace(_seen(entry, url, sha256, size, verify=verify), require_pin=require_pin is not None)
    action = download_action(seen)
    if action.do is Do.REFUSE:
        raise LockedError(
            f"--locked: {action.why} for {url}",
            hint=f"fetch once without --locked on a trusted network and commit {require_pin}, "
            "or write sha256: under the artifact in zoo.yaml",
        )
    if action.do is Do.REUSE:  # outside the lock: a warm fetch never waits for anyone
        return _reused(entry, url, seen)
    try:
        return _fetch_locked(url, entry, download, sha256, size, policy, check, progress, verify)
    except OSError as exc:  # the cache itself: read-only, disk full, file-size limit (network errors are
        # converted to ArtifactError before they get here)
        raise ArtifactError(
            f"{url}: cannot write the cache at {entry.parent}: {exc.strerror or exc}",
            hint="free disk space, or point $HARNESS_CACHE at a writable directory with room "
            "(a partial download is kept and resumed)",
        ) from None


def _fetch_locked(
    url: str,
    entry: Path,
    download: Downloader,
    sha256: str | None,
    size: int | None,
    policy: Policy | None,
    check: Callable[[Path], None] | None,
    progress: bool | None,
    verify: bool = False,
) -> Fetched:
    entry.parent.mkdir(parents=True, exist_ok=True)
    policy = policy or Policy.from_env()
    with entry_lock(entry, url, policy.lock_wait_s):
        seen, action = _settle(entry, url, _seen(entry, url, sha256, size, verify=verify))
        if action.do is Do.REUSE:
            return _reused(entry, url, seen)  # another process finished it while we waited, or it was hashed
        part = part_path(entry)
        job = Job(url, part, sha256, size, policy, progress, time.monotonic() + policy.deadline_s)
        download(job)
        try:
            actual = _verify(url, part, sha256, size)
            if check:
                check(part)
        except HarnessError:
            discard_part(part)
            raise
        return publish(part, entry, url, actual)


def fetch_artifact(artifact: Artifact, lock: LockFile | None, *, locked: bool = False, **kw) -> Fetched:
    """`fetch` with the pin taken from zoo.yaml/zoo.lock, and the first verified download recorded."""
    pin = lock.pin(artifact) if lock else Pin(artifact.sha256, artifact.size)
    require = lock.path.name if locked and lock is not None else None
    got = fetch(artifact.url, sha256=pin.sha256, size=pin.size, require_pin=require, **kw)
    if lock is not None and (pin.sha256 is None or pin.size is None):
        lock.record(artifact.url, got.sha256, got.size)
        if pin.sha256 is None:
            log.info(
                "recorded sha256 %s for %s in %s (first verified download)", got.sha256, artifact.url, lock.path.name
            )
    return got


def _verify(url: str, part: Path, sha256: str | None, size: int | None) -> str:
    actual_size = part.stat().st_size
    if size is not None and actual_size != size:
        raise IntegrityError(
            f"{url}: size mismatch: expected {size} bytes, got {actual_size}; nothing was cached",
            hint=PIN_HINT,
        )
    actual = sha256_file(part)
    if sha256 is not None and actual != sha256:
        raise IntegrityError(
            f"{url}: sha256 mismatch: expected {sha256}, got {actual}; nothing was cached",
            hint=PIN_HINT,
        )
    return actual
