"""Safe extraction of tar and zip archives into the cache, all or nothing, within limits, repairable.

Every member is checked before a single byte is written: absolute paths, `..`, links that leave the
tree, devices and FIFOs refuse the *whole* archive (a partly extracted tree is worse than none). Tar
extraction then also runs with Python's `data` filter as a second line of defence.

Decompression bombs: the declared sizes of what would be written are checked first against `Limits`
(total bytes, and the ratio to the archive's own size, also per large zip member) and against the free
space of the cache's filesystem; then zip members are copied by the harness itself, counting what is
actually written and stopping at each member's declared size (Python 3.11's zipfile does not refuse
overlapping entries). A limit refusal means hostile or broken bytes (the caller evicts them); too little
free space is this machine's problem (`LocalFault`: nothing is evicted).

Extraction goes into a temporary sibling directory; an optional `check(tmp)` runs on it (e.g. the git tree
id of a source tree), then it is renamed into place, so a destination is complete or absent. A stamp beside
it records every file's size and mtime: a file deleted or changed later is noticed on the next use and the
archive is extracted again, so "delete the file and fetch again" repairs.
"""

from __future__ import annotations

import os
import shutil
import stat
import tarfile
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

from harness.artifacts import Policy, invalidate, numbers_from_env
from harness.errors import ArchiveError, LocalFault
from harness.files import atomic_write_json, read_json, remove_tree

if TYPE_CHECKING:
    from harness.lockfile import LockFile
    from harness.manifest import Artifact

CHUNK = 1 << 20
BIG_MEMBER = 1 << 20  # zip members at least this large are held to the ratio limit one by one


@dataclass(frozen=True)
class Limits:
    """What an extraction may write. COCO's images zip is ~1:1, its annotation JSON ~5:1, a source tarball
    ~4:1; a zip bomb is 1000:1 and more."""

    max_bytes: int = 64 << 30
    max_ratio: float = 200.0

    @classmethod
    def from_env(cls) -> Limits:
        """$HARNESS_EXTRACT_MAX_BYTES and $HARNESS_EXTRACT_MAX_RATIO override the defaults."""
        return cls(
            **numbers_from_env(
                (("HARNESS_EXTRACT_MAX_BYTES", "max_bytes", int), ("HARNESS_EXTRACT_MAX_RATIO", "max_ratio", float))
            )
        )


def _refuse(archive: Path, member: str, why: str) -> ArchiveError:
    return ArchiveError(
        f"{archive}: refusing to extract: member {member!r} {why}",
        hint="the archive is malformed or hostile; fetch it from its origin again",
    )


def _bomb(archive: Path, why: str, limits: Limits) -> ArchiveError:
    return ArchiveError(
        f"{archive}: refusing to extract: {why}",
        hint=f"a decompression bomb or a broken archive; if it is genuine, raise "
        f"$HARNESS_EXTRACT_MAX_BYTES ({limits.max_bytes}) or $HARNESS_EXTRACT_MAX_RATIO "
        f"({limits.max_ratio:g})",
    )


def _inside(name: str) -> bool:
    p = PurePosixPath(name)
    return not p.is_absolute() and ".." not in p.parts and not name.startswith(("/", "\\"))


def _link_inside(member: str, target: str, *, hard: bool) -> bool:
    """Does a link at `member` pointing to `target` stay inside the tree? (hard links: relative to root)."""
    if PurePosixPath(target).is_absolute():
        return False
    base = PurePosixPath() if hard else PurePosixPath(member).parent
    depth = 0
    for part in (base / target).parts:
        depth += -1 if part == ".." else (0 if part == "." else 1)
        if depth < 0:
            return False
    return True


def _check_tar(archive: Path, members: list[tarfile.TarInfo]) -> None:
    for m in members:
        if not _inside(m.name):
            raise _refuse(archive, m.name, "has an absolute path or '..'")
        if m.issym() and not _link_inside(m.name, m.linkname, hard=False):
            raise _refuse(archive, m.name, f"is a symlink leaving the tree (-> {m.linkname})")
        if m.islnk() and not (_inside(m.linkname) and _link_inside(m.name, m.linkname, hard=True)):
            raise _refuse(archive, m.name, f"is a hard link leaving the tree (-> {m.linkname})")
        if m.isdev() or m.isfifo():
            raise _refuse(archive, m.name, "is a device or FIFO")


def _check_zip(archive: Path, infos: list[zipfile.ZipInfo], limits: Limits) -> None:
    for info in infos:
        if not _inside(info.filename):
            raise _refuse(archive, info.filename, "has an absolute path or '..'")
        if stat.S_ISLNK(info.external_attr >> 16):
            raise _refuse(archive, info.filename, "is a symlink (not allowed in zip archives)")
        if info.file_size >= BIG_MEMBER and info.file_size > limits.max_ratio * max(info.compress_size, 1):
            raise _bomb(
                archive,
                f"member {info.filename!r} expands {info.compress_size} bytes to "
                f"{info.file_size} (more than {limits.max_ratio:g}:1)",
                limits,
            )


def _check_sizes(archive: Path, declared: int, dest: Path, limits: Limits) -> None:
    """Before writing anything: the declared total within the limits, and room for it on the cache's disk."""
    size = archive.stat().st_size
    if declared > limits.max_bytes:
        raise _bomb(archive, f"it declares {declared} bytes, more than the limit of {limits.max_bytes}", limits)
    if declared > limits.max_ratio * max(size, 1):
        raise _bomb(archive, f"{size} bytes would expand to {declared} (more than {limits.max_ratio:g}:1)", limits)
    free = shutil.disk_usage(dest.parent).free
    if declared > free:
        raise LocalFault(
            f"{archive}: extracting needs {declared} bytes, {dest.parent} has {free} free",
            hint="free disk space, or point $HARNESS_CACHE at a filesystem with room",
        )


def _stamp_path(dest: Path) -> Path:
    return dest.with_name(dest.name + ".extracted.json")


def _files(root: Path) -> dict[str, list[int]]:
    out = {}
    for dirpath, _, names in os.walk(root):
        for name in names:
            p = Path(dirpath, name)
            st = p.lstat()
            if stat.S_ISREG(st.st_mode):
                out[p.relative_to(root).as_posix()] = [st.st_size, st.st_mtime_ns]
    return out


def intact(dest: Path, tag: dict | None = None) -> bool:
    """Was `dest` extracted completely (with this `tag`), and is every file still as it was written?"""
    stamp = read_json(_stamp_path(dest))
    if not isinstance(stamp, dict) or stamp.get("tag") != (tag or {}) or not isinstance(stamp.get("files"), dict):
        return False
    for rel, (size, mtime_ns) in stamp["files"].items():
        try:
            st = (dest / rel).lstat()
        except OSError:
            return False
        if st.st_size != size or st.st_mtime_ns != mtime_ns:
            return False
    return True


def extract(
    archive: Path,
    dest: Path,
    *,
    want: Callable[[str], bool] | None = None,
    check: Callable[[Path], None] | None = None,
    tag: dict | None = None,
    limits: Limits | None = None,
) -> Path:
    """Extract `archive` (tar, tar.gz or zip) so that `dest` holds its members, atomically.

    `want(name)` selects members (e.g. one annotation file out of a 250 MB zip); the safety checks still
    cover every member. `check(tmp)` may refuse the extracted tree before it is renamed into place. `tag`
    is recorded in the stamp: an extraction made with another tag (e.g. from another archive) is redone.
    An intact `dest` is returned untouched; a damaged one is extracted again and replaced.
    """
    if intact(dest, tag):
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    from filelock import FileLock, Timeout

    wait = Policy.from_env().lock_wait_s
    try:
        with FileLock(dest.parent / f".{dest.name}.lock", timeout=wait):
            if intact(dest, tag):
                return dest
            return _extract(archive, dest, want, check, tag or {}, limits or Limits.from_env())
    except Timeout:
        raise LocalFault(
            f"{dest}: another process has been extracting it for more than {wait:g} s",
            hint="let it finish, or stop it; $HARNESS_LOCK_WAIT_S sets how long to wait",
        ) from None


def unpack(
    artifact: Artifact,
    archive: Path,
    dest: Path,
    lock: LockFile | None,
    refetch: str,
    *,
    root: Path | None = None,
    **kw,
) -> Path:
    """`extract` for a fetched artifact: bytes that will not extract (corrupt, hostile, a bomb) leave the cache
    and a pin learned from them is forgotten, so the next fetch can get good bytes without hand-editing
    zoo.lock. A LocalFault (no room) keeps both."""
    try:
        return extract(archive, dest, **kw)
    except ArchiveError as exc:
        raise ArchiveError(f"{exc.message}\n  {invalidate(artifact, lock, refetch, root)}", hint=exc.hint) from None


def _extract(
    archive: Path,
    dest: Path,
    want: Callable[[str], bool] | None,
    check: Callable[[Path], None] | None,
    tag: dict,
    limits: Limits,
) -> Path:
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.partial-", dir=dest.parent))
    try:
        if zipfile.is_zipfile(archive):
            _unzip(archive, tmp, want, limits)
        else:
            _untar(archive, tmp, want, limits)
        if check:
            check(tmp)
        atomic_write_json(_stamp_path(dest), {"tag": tag, "files": _files(tmp)})  # before the rename
        if dest.exists():  # damaged: move it aside, put the new tree in place, then delete the old one
            old = Path(tempfile.mkdtemp(prefix=f".{dest.name}.old-", dir=dest.parent))
            os.replace(dest, old / "tree")
            os.replace(tmp, dest)
            remove_tree(old, inside=dest.parent)
        else:
            os.replace(tmp, dest)
    except zipfile.BadZipFile as exc:
        remove_tree(tmp, inside=dest.parent)
        raise ArchiveError(
            f"{archive}: cannot extract: {exc}", hint="fetch it again; the download may be corrupt"
        ) from None
    except OSError as exc:
        remove_tree(tmp, inside=dest.parent)
        raise LocalFault(
            f"{archive}: cannot extract into {dest.parent}: {exc}",
            hint="check free disk space and permissions of the cache ($HARNESS_CACHE)",
        ) from None
    except BaseException:
        remove_tree(tmp, inside=dest.parent)
        raise
    return dest


def _unzip(archive: Path, tmp: Path, want: Callable[[str], bool] | None, limits: Limits) -> None:
    with zipfile.ZipFile(archive) as zf:
        infos = zf.infolist()
        _check_zip(archive, infos, limits)
        chosen = [i for i in infos if want is None or want(i.filename)]
        declared = sum(i.file_size for i in chosen)
        _check_sizes(archive, declared, tmp, limits)
        budget = declared
        for info in chosen:
            target = tmp.joinpath(*PurePosixPath(info.filename).parts)
            if info.is_dir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            written = 0
            with zf.open(info) as src, target.open("wb") as dst:
                while chunk := src.read(CHUNK):
                    written += len(chunk)
                    budget -= len(chunk)
                    if written > info.file_size or budget < 0:
                        raise _bomb(
                            archive,
                            f"member {info.filename!r} writes more than the {info.file_size} bytes it declares",
                            limits,
                        )
                    dst.write(chunk)


def _untar(archive: Path, tmp: Path, want: Callable[[str], bool] | None, limits: Limits) -> None:
    try:
        with tarfile.open(archive) as tf:
            members = tf.getmembers()
            _check_tar(archive, members)
            chosen = [m for m in members if want is None or want(m.name)]
            _check_sizes(archive, sum(m.size for m in chosen if m.isreg()), tmp, limits)
            tf.extractall(tmp, members=chosen, filter="data")  # writes exactly each member's declared size
    except tarfile.FilterError as exc:
        raise _refuse(archive, exc.tarinfo.name, f"was refused by the data filter: {exc}") from None
    except (tarfile.TarError, EOFError) as exc:
        raise ArchiveError(
            f"{archive}: cannot extract: {exc}", hint="fetch it again; the download may be corrupt"
        ) from None
