"""One writer per model directory: a claim taken before anything is written there, held for the writer's life.

Why: two `harness verify M --out runs/quick` at once (or two runs started in the same second, or a `rescore`
beside a running verify) wrote into one `<run>/<model>/`: the second's predictions replaced the first's while
the first was still timing, and the first's result.json then carried its own weights' sha256 next to another
run's predictions and AP. A claim is an OS file lock (filelock: flock on Linux) on `<run>/.<model>.lock`,
beside the directory it guards: the OS drops it when its process dies however it dies, so a stale claim of a
killed process never blocks anyone (its owner file is simply overwritten). A second writer is refused at once,
exit 2, told the directory and the holder's pid; it never waits (its results would be the ones it replaces).
"""

from __future__ import annotations

import contextlib
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

from harness.core.errors import UsageError
from harness.core.files import atomic_write_json, read_json
from harness.records.results import model_dir


def _paths(run_dir: Path, name: str) -> tuple[Path, Path]:
    model_dir(run_dir, name)  # a name that is not one path component is refused here too
    return run_dir / f".{name}.lock", run_dir / f".{name}.lock.owner"


def _holder(owner: Path) -> str:
    rec = read_json(owner)
    if not isinstance(rec, dict):
        return "another process"
    return f"process {rec.get('pid')} on {rec.get('host')} (since {rec.get('since')}: {rec.get('command')})"


@contextlib.contextmanager
def claim(run_dir: Path, name: str, what: str) -> Iterator[None]:
    """Hold `<run_dir>/<name>/` for this process while the block runs (`what` says what for, to the next one)."""
    from filelock import FileLock, Timeout

    lock_path, owner = _paths(run_dir, name)
    run_dir.mkdir(parents=True, exist_ok=True)
    lock = FileLock(lock_path, timeout=0)
    try:
        lock.acquire()
    except Timeout:
        raise UsageError(
            f"{run_dir / name}: {_holder(owner)} is writing this model's results; nothing was written",
            hint="wait for it to finish, or give this one its own directory (--out)",
        ) from None
    try:
        atomic_write_json(
            owner,
            {"pid": os.getpid(), "host": socket.gethostname(), "since": time.strftime("%H:%M:%S"), "command": what},
        )
        yield
    finally:
        owner.unlink(missing_ok=True)
        lock.release()


class Claims(contextlib.ExitStack):
    """Claims on many model directories (a run's models), all released together, on every exit path."""

    def take(self, run_dir: Path, name: str, what: str) -> None:
        self.enter_context(claim(run_dir, name, what))
