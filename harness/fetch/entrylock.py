"""One process per cache entry at a time: a file lock (filelock) beside the entry, and who holds it.

Separate from the cache's layout because it is the one piece that coordinates processes: two runs (or four
`--parallel` slices) fetching the same file download it once, and a waiter can say whom it waits for.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

from harness.core.errors import ArtifactError
from harness.core.files import atomic_write_json, read_json

log = logging.getLogger(__name__)


def _sidecar(entry: Path, suffix: str) -> Path:
    return entry.with_name(entry.name + suffix)


@contextlib.contextmanager
def entry_lock(entry: Path, url: str, wait_s: float) -> Iterator[None]:
    """One process per entry at a time. A waiter waits at most `wait_s` and is told who holds the lock
    (pid, host, since when: written beside the lock by the holder). The OS releases the lock of a process
    that dies, so a stale owner file never blocks anyone."""
    from filelock import FileLock, Timeout

    lock, owner = FileLock(_sidecar(entry, ".lock")), _sidecar(entry, ".lock.owner")
    try:
        lock.acquire(timeout=0.5)
    except Timeout:
        holder = _holder(owner)
        log.info("waiting up to %g s for %s, which is fetching %s", wait_s, holder, url)
        try:
            lock.acquire(timeout=max(wait_s - 0.5, 0))
        except Timeout:
            raise ArtifactError(
                f"{url}: waited {wait_s:g} s for {holder}, which holds the cache lock {lock.lock_file}",
                hint="let that process finish, or stop it; $HARNESS_LOCK_WAIT_S sets how long to wait",
            ) from None
    try:
        atomic_write_json(
            owner,
            {
                "pid": os.getpid(),
                "host": socket.gethostname(),
                "url": url,
                "since": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            },
        )
        yield
    finally:
        owner.unlink(missing_ok=True)
        lock.release()


def _holder(owner: Path) -> str:
    rec = read_json(owner)
    if not isinstance(rec, dict):
        return "another process"
    return f"process {rec.get('pid')} on {rec.get('host')} (since {rec.get('since')})"
