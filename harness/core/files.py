"""Small filesystem primitives that the rest relies on to never leave a half-written file."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import threading
from pathlib import Path
from typing import Any

_UMASK_LOCK = threading.Lock()


def umask() -> int:
    """The process's umask (POSIX has no call that only reads it: set and restore it, under a lock)."""
    with _UMASK_LOCK:
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write to a temporary file in the same directory, fsync, then rename over `path`.

    A reader (or a process killed mid-write) sees either the old file or the new one, never a mix. The file
    gets the mode any new file gets (0666 less the umask): mkstemp's private 0600 would hide a report or a
    site from the group that publishes it.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~umask())
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: Path, obj: Any, *, sort_keys: bool = True) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=sort_keys) + "\n").encode())


def read_json(path: Path) -> Any | None:
    """The parsed file, or None if it is absent or unreadable (callers treat both as 'no record').

    RecursionError counts as unreadable: json nests arbitrarily deep, Python's stack does not."""
    try:
        return json.loads(path.read_bytes())
    except (OSError, ValueError, RecursionError):
        return None


def sha256_file(path: Path) -> str:
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def sha256_or_none(path: Path) -> str | None:
    """The file's sha256, or None where it cannot be read (the caller decides whose fault that is)."""
    try:
        return sha256_file(path)
    except OSError:
        return None


def is_component(name: str) -> bool:
    """A plain single path component: not empty, not `.` or `..`, no separator, no NUL."""
    return bool(name) and name not in (".", "..") and not any(c in name for c in "/\\\0")


def remove_tree(path: Path, *, inside: Path) -> bool:
    """`rm -r path`, only when `path` is proven to be strictly inside `inside` (symlinks resolved): a bad
    name or a link can never make the harness delete a user's files. Returns whether it removed anything."""
    try:
        target, root = path.resolve(), inside.resolve()
    except (OSError, RuntimeError):
        return False
    if target == root or not target.is_relative_to(root) or path.is_symlink():
        return False
    shutil.rmtree(target, ignore_errors=True)
    return True


def digests(files: dict[str, str] | dict[str, Path]) -> dict[str, str]:
    """sha256 of each predictions file: the record names the exact bytes it was scored from."""
    return {k: sha256_file(Path(p)) for k, p in files.items()}


def own_directory(path: Path, marker: str, note: str, *, ours: bool = False, refusal: str, hint: str) -> None:
    """Make `path` a directory the harness owns, marked by the file `marker` (holding `note`): a directory that
    holds anything and carries no marker (nor is `ours` by another sign) is refused with `refusal` and `hint`, so
    a typo (`--html ~`, `--dir ~`) never lets the harness write over, or later delete, a user's files."""
    from harness.core.errors import UsageError

    if path.exists() and not path.is_dir():
        raise UsageError(f"{path}: not a directory", hint=hint)
    if path.is_dir() and any(path.iterdir()) and not (ours or (path / marker).is_file()):
        raise UsageError(refusal, hint=hint)
    path.mkdir(parents=True, exist_ok=True)
    (path / marker).write_text(note)
