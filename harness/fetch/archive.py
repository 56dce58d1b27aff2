"""Safe extraction of tar and zip archives into the cache, all or nothing, within limits, repairable.

Members are written by the harness itself (harness.fetch.members), never by tarfile's `extract`/`extractall`: their
`data` filter is bypassed on Python 3.11.7 (CVE-2025-4517) and is not relied on. Every member's name is
checked; regular files and directories are written below a fresh private staging directory without following
anything; symlinks are made last, only when their targets provably stay inside the tree; hard links, devices,
FIFOs and sparse files refuse the *whole* archive (a partly extracted tree is worse than none).

Bombs: a tar is read as a stream, one header at a time (never `getmembers()`), and everything it expands to is
counted *while* it is read: headers (at most HEADER_CAP bytes of pax/long-name records per member, at most
`max_header_bytes` in all), members (`max_members`), and all bytes against `max_ratio` times the archive's own
size, so 3 KB of compressed empty headers is refused after a MiB, not after minutes and gigabytes. What a
member would write is checked against `max_bytes`, the ratio and the cache's free space before its first byte.
A zip's central directory is checked as a whole first (names, counts, declared sizes, per-member ratio), then
members are copied counting what is actually written, stopping at each member's declared size (Python 3.11's
zipfile does not refuse overlapping entries). A refusal means hostile or broken bytes (the caller evicts them);
too little free space, or an error of the cache's own disk, is this machine's problem (`LocalFault`: nothing is
evicted).

Extraction goes into a temporary sibling directory; an optional `check(tmp)` runs on it (e.g. the git tree
id of a source tree), then it is renamed into place, so a destination is complete or absent. A stamp beside
it records every entry (harness.fetch.stamps): a file deleted, changed or added later is noticed on the next use and
the archive is extracted again, so "delete the file and fetch again" repairs.
"""

from __future__ import annotations

import bz2
import gzip
import lzma
import os
import shutil
import stat
import tarfile
import tempfile
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from harness.core.errors import ArchiveError, LocalFault
from harness.core.files import remove_tree, sha256_or_none, umask
from harness.fetch import stamps
from harness.fetch.artifacts import discard, invalidate
from harness.fetch.members import Limits, Stage, bomb, file_mode, over, refuse, shown, split
from harness.fetch.policy import Policy
from harness.fetch.stamps import intact

if TYPE_CHECKING:
    from harness.zoo.lockfile import LockFile
    from harness.zoo.manifest import Artifact

CHUNK = 1 << 20
BIG_MEMBER = 1 << 20  # zip members at least this large are held to the ratio limit one by one
HEADER_CAP = 64 << 10  # header bytes (pax records, GNU long names) one tar member may have: real ones are < 4 KiB
RATIO_FLOOR = 1 << 20  # any archive may expand to this much, however small it is
# Reading an archive's bytes failed because they are not what they claim (the stream is corrupt or hostile).
# OSError is here for the decompressors' (gzip's BadGzipFile, bz2's "Invalid data stream"): errors of the
# cache's disk are LocalFault before they get here (_Disk), and errors writing are classified by members.Stage.
# RuntimeError: RecursionError (nested pax headers), zipfile's "password required"; NotImplementedError: a zip
# compression method zipfile does not know.
CORRUPT: tuple[type[Exception], ...] = (tarfile.TarError, zipfile.BadZipFile, EOFError, OSError, ValueError)
CORRUPT += (OverflowError, RuntimeError, NotImplementedError, zlib.error, lzma.LZMAError)


def _corrupt(archive: Path, exc: BaseException) -> ArchiveError:
    what = str(exc)[:200] or type(exc).__name__
    return ArchiveError(f"{archive}: cannot extract: {what}", hint="fetch it again; the download may be corrupt")


def _check_zip(archive: Path, infos: list[zipfile.ZipInfo], limits: Limits) -> list[tuple[zipfile.ZipInfo, tuple]]:
    """Every entry of the central directory, before a byte is written: (entry, path components)."""
    if len(infos) > limits.max_members:
        raise over(
            archive,
            f"it has {len(infos)} members, more than {limits.max_members}",
            "HARNESS_EXTRACT_MAX_MEMBERS",
            limits.max_members,
        )
    named = []
    for info in infos:
        name = info.filename
        parts = split(archive, name.rstrip("/") if info.is_dir() else name, limits.max_path)
        if stat.S_ISLNK(info.external_attr >> 16):
            raise refuse(archive, name, "is a symlink (not allowed in zip archives)")
        if info.file_size >= BIG_MEMBER and info.file_size > limits.max_ratio * max(info.compress_size, 1):
            raise bomb(
                archive,
                f"member {shown(name)} expands {info.compress_size} bytes to "
                f"{info.file_size} (more than {limits.max_ratio:g}:1)",
                limits,
            )
        named.append((info, parts))
    return named


def _check_sizes(archive: Path, size: int, declared: int, limits: Limits) -> None:
    """Before writing anything: the declared total within the limits."""
    if declared > limits.max_bytes:
        raise bomb(archive, f"it declares {declared} bytes, more than the limit of {limits.max_bytes}", limits)
    if declared > limits.max_ratio * max(size, 1):
        raise bomb(archive, f"{size} bytes would expand to {declared} (more than {limits.max_ratio:g}:1)", limits)


def _room(archive: Path, needed: int, free: int, where: Path) -> None:
    if needed > free:
        raise LocalFault(
            f"{archive}: extracting needs {needed} bytes, {where} has {free} free",
            hint="free disk space, or point $HARNESS_CACHE at a filesystem with room",
        )


def extract(
    archive: Path,
    dest: Path,
    *,
    want: Callable[[str], bool] | None = None,
    check: Callable[[Path], None] | None = None,
    tag: dict | None = None,
    limits: Limits | None = None,
    verify: bool = False,
) -> Path:
    """Extract `archive` (tar, tar.gz or zip) so that `dest` holds its members, atomically.

    `want(name)` selects members (e.g. one annotation file out of a 250 MB zip); the safety checks still
    cover every member. `check(tmp)` may refuse the extracted tree before it is renamed into place. `tag`
    is recorded in the stamp: an extraction made with another tag (e.g. from another archive) is redone.
    An intact `dest` (stamps.intact: nothing missing, changed or added) is returned untouched; a damaged one
    is extracted again and replaced; with `verify` (`harness fetch --verify`) it is extracted again anyway.
    """
    if not verify and intact(dest, tag):
        return dest
    from filelock import FileLock, Timeout

    wait = Policy.from_env().lock_wait_s
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(dest.parent / f".{dest.name}.lock", timeout=wait):
            if not verify and intact(dest, tag):
                return dest
            return _extract(archive, dest, want, check, tag or {}, limits or Limits.from_env())
    except Timeout:
        raise LocalFault(
            f"{dest}: another process has been extracting it for more than {wait:g} s",
            hint="let it finish, or stop it; $HARNESS_LOCK_WAIT_S sets how long to wait",
        ) from None
    except OSError as exc:  # the cache's directory or lock file (read-only, no permission): never the archive
        raise LocalFault(
            f"{archive}: cannot extract into {dest.parent}: {exc.strerror or exc}",
            hint="check free disk space and permissions of the cache ($HARNESS_CACHE)",
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
    zoo.lock. A LocalFault (no room, no permission) keeps both. The message names the archive by its URL: the
    cache path it was read from is gone with the entry.

    The refusal is the published archive's fault only if these are the bytes that were verified (the tag's
    `archive_sha256`): a cache entry that rotted on disk keeping its size and mtime is evicted with its pin
    kept (the pin is right, the copy is not)."""
    try:
        return extract(archive, dest, **kw)
    except ArchiveError as exc:
        msg = exc.message
        if msg.startswith(f"{archive}: "):
            msg = f"{artifact.url}: {msg.removeprefix(f'{archive}: ')}"
        verified = (kw.get("tag") or {}).get("archive_sha256")
        if verified and sha256_or_none(archive) not in (verified, None):
            msg = f"{artifact.url}: the cached archive is not the bytes verified (sha256 {verified}) any more"
            raise ArchiveError(f"{msg}\n  {discard(artifact, refetch, root)}", hint=exc.hint) from None
        raise ArchiveError(f"{msg}\n  {invalidate(artifact, lock, refetch, root)}", hint=exc.hint) from None


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
            check(tmp)  # before the rename: a tree that is not the pin is never in place
        stamps.write(dest, tmp, tag)  # before the rename
        if dest.exists():  # damaged: move it aside, put the new tree in place, then delete the old one
            old = Path(tempfile.mkdtemp(prefix=f".{dest.name}.old-", dir=dest.parent))
            os.replace(dest, old / "tree")
            os.replace(tmp, dest)
            remove_tree(old, inside=dest.parent)
        else:
            os.replace(tmp, dest)
    except OSError as exc:  # the cache's own operations (staging, stamp, rename): archive bytes are classified
        remove_tree(tmp, inside=dest.parent)  # where they are read (CORRUPT) and written (members.Stage)
        raise LocalFault(
            f"{archive}: cannot extract into {dest.parent}: {exc.strerror or exc}",
            hint="check free disk space and permissions of the cache ($HARNESS_CACHE)",
        ) from None
    except BaseException:
        remove_tree(tmp, inside=dest.parent)
        raise
    return dest


class _Disk:
    """The archive file on the cache's disk. An OSError reading it is this machine's fault (`LocalFault`), unlike
    the OSError a decompressor raises for corrupt bytes, which is the archive's."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.file = _local(path, open, path, "rb")

    def read(self, n: int = -1) -> bytes:
        return _local(self.path, self.file.read, n)

    def seek(self, pos: int, whence: int = os.SEEK_SET) -> int:
        return _local(self.path, self.file.seek, pos, whence)

    def tell(self) -> int:
        return self.file.tell()

    def seekable(self) -> bool:
        return True

    def __enter__(self) -> _Disk:
        return self

    def __exit__(self, *exc: object) -> None:
        self.file.close()


def _local(path: Path, fn, *args):
    try:
        return fn(*args)
    except OSError as exc:
        raise LocalFault(
            f"{path}: cannot read the archive: {exc.strerror or exc}",
            hint="check the disk and permissions of the cache ($HARNESS_CACHE)",
        ) from None


def _unzip(archive: Path, tmp: Path, want: Callable[[str], bool] | None, limits: Limits) -> None:
    stage = Stage(tmp, archive, limits.max_members)
    size, room = archive.stat().st_size, shutil.disk_usage(tmp).free
    with _Disk(archive) as disk:
        try:
            with zipfile.ZipFile(disk) as zf:  # read/seek/tell is all it uses: _Disk is the file
                named = _check_zip(archive, zf.infolist(), limits)
                chosen = [(i, p) for i, p in named if want is None or want(i.filename)]
                declared = sum(i.file_size for i, _ in chosen)
                _check_sizes(archive, size, declared, limits)
                _room(archive, declared, room, tmp.parent)
                budget = [declared]
                mode = 0o666 & ~umask()  # zip modes are not kept: files get what any new file gets
                for info, parts in chosen:
                    if info.is_dir():
                        stage.directory(info.filename, parts)
                    else:
                        stage.file(info.filename, parts, _zip_chunks(archive, zf, info, budget, limits), mode, None)
        except CORRUPT as exc:
            raise _corrupt(archive, exc) from None
    stage.finish(limits.max_path)


def _zip_chunks(
    archive: Path, zf: zipfile.ZipFile, info: zipfile.ZipInfo, budget: list[int], limits: Limits
) -> Iterator[bytes]:
    """The member's bytes as they inflate, stopped at the size it declares and at the archive's declared total."""
    written = 0
    with zf.open(info) as src:
        while chunk := src.read(CHUNK):
            written += len(chunk)
            budget[0] -= len(chunk)
            if written > info.file_size or budget[0] < 0:
                raise bomb(
                    archive,
                    f"member {shown(info.filename)} writes more than the {info.file_size} bytes it declares",
                    limits,
                )
            yield chunk


class _Counted:
    """The decompressed tar stream as tarfile reads it: forward only, every byte counted *before* it is read.
    tarfile reads a pax header's or a GNU long name's whole declared size in one call, so a limit checked after
    a member is returned would come after the memory was spent; checked here, it stops the read itself."""

    def __init__(self, raw: _Reader, archive: Path, size: int, limits: Limits) -> None:
        self.raw, self.archive, self.size, self.limits = raw, archive, size, limits
        self.limit = max(limits.max_ratio * size, RATIO_FLOOR)  # all it may expand to, headers included
        self.pos = 0
        self.headers = 0  # header bytes read in all
        self._left: int | None = None  # header bytes the member being read may still have; None: reading data

    def arm(self) -> None:
        """tarfile is about to read one member's headers."""
        self._left = min(HEADER_CAP, self.limits.max_header_bytes - self.headers)

    def disarm(self) -> None:
        self._left = None

    def tell(self) -> int:
        return self.pos

    def read(self, n: int = -1) -> bytes:
        if n < 0:
            raise ValueError("the tar stream is read in pieces of a known size only")
        if self._left is not None:
            if n > self._left:
                raise self._header_bomb(n)
            self._left -= n
            self.headers += n
        return self._take(n)

    def seek(self, pos: int, whence: int = os.SEEK_SET) -> int:
        """Skipping forward (over the data of a member not extracted) reads and counts; nothing goes back."""
        if whence != os.SEEK_SET or pos < self.pos:
            raise tarfile.ReadError("the archive's offsets go backwards")
        while self.pos < pos:
            if not self._take(min(CHUNK, pos - self.pos)):
                self.pos = pos  # past the end: the next read finds nothing, and tarfile says so
        return self.pos

    def drain(self) -> None:
        """Read what follows the end of the archive (its padding): the decompressor checks its CRC at the end of
        the stream, and a corrupt stream must not pass for a short one. Counted like the rest."""
        while data := self.raw.read(min(CHUNK, int(self.limit) - self.pos + 1)):
            self.pos += len(data)
            if self.pos > self.limit:
                raise self.expands(self.pos)

    def _take(self, n: int) -> bytes:
        if self.pos + n > self.limit:
            raise self.expands(self.pos + n)
        data = self.raw.read(n)
        self.pos += len(data)
        return data

    def expands(self, total: int) -> ArchiveError:
        return bomb(
            self.archive,
            f"its {self.size} bytes expand to more than {int(self.limit)} bytes of tar headers and data "
            f"(more than {self.limits.max_ratio:g}:1; {total} at least)",
            self.limits,
        )

    def _header_bomb(self, n: int) -> ArchiveError:
        if self.limits.max_header_bytes - self.headers < HEADER_CAP:  # the total is what ran out
            why = f"its headers take more than {self.limits.max_header_bytes} bytes"
            return over(self.archive, why, "HARNESS_EXTRACT_MAX_HEADER_BYTES", self.limits.max_header_bytes)
        return ArchiveError(
            f"{self.archive}: refusing to extract: a member has more than {HEADER_CAP} bytes of headers (pax "
            f"records or long names), {self.pos} bytes into the stream",
            hint="the archive is malformed or hostile; fetch it from its origin again",
        )


class _Reader(Protocol):
    def read(self, n: int = -1, /) -> bytes: ...


def _decompressed(disk: _Disk) -> _Reader:
    """The tar stream inside the file, by its first bytes (what `tarfile.open(mode='r:*')` would try)."""
    magic = disk.read(6)
    disk.seek(0)
    if magic.startswith(b"\x1f\x8b"):
        return gzip.GzipFile(fileobj=disk, mode="rb")
    if magic.startswith(b"BZh"):
        return bz2.BZ2File(disk)
    if magic.startswith((b"\xfd7zXZ\x00", b"\x5d\x00\x00")):
        return lzma.LZMAFile(disk)  # type: ignore[arg-type]  # typeshed asks IO[bytes]; read() is all it uses
    return disk


def _untar(archive: Path, tmp: Path, want: Callable[[str], bool] | None, limits: Limits) -> None:
    stage = Stage(tmp, archive, limits.max_members)
    size, room = archive.stat().st_size, shutil.disk_usage(tmp).free
    with _Disk(archive) as disk:
        try:
            stream = _Counted(_decompressed(disk), archive, size, limits)
            stream.arm()
            with tarfile.open(fileobj=stream, mode="r:") as tf:  # type: ignore[call-overload]  # reads one header
                _TarReader(archive, tf, stream, stage, limits, room).read(want)
            stream.drain()
        except CORRUPT as exc:
            raise _corrupt(archive, exc) from None
    stage.finish(limits.max_path)


@dataclass
class _TarReader:
    """One member at a time, as the stream gives them: names checked, counts and sizes budgeted, then written."""

    archive: Path
    tf: tarfile.TarFile
    stream: _Counted
    stage: Stage
    limits: Limits
    room: int  # free bytes on the cache's filesystem when extraction began
    members: int = 0
    declared: int = 0  # bytes of the regular members written so far, as their headers declare them

    def read(self, want: Callable[[str], bool] | None) -> None:
        while (m := self._next()) is not None:
            parts = split(self.archive, m.name, self.limits.max_path)
            self._refuse_kind(m)
            if want is not None and not want(m.name):
                continue
            if m.isdir():
                self.stage.directory(m.name, parts)
            elif m.issym():
                self.stage.symlink(m.name, parts, m.linkname)
            else:
                self._budget(m)
                self.stage.file(m.name, parts, self._chunks(m), file_mode(m.mode), m.mtime)

    def _next(self) -> tarfile.TarInfo | None:
        self.stream.arm()
        m = self.tf.next()
        self.stream.disarm()
        # TarFile keeps every member it has read (an attribute typeshed leaves out): it would grow with a bomb
        self.tf.members.clear()  # type: ignore[attr-defined]
        self.members += m is not None
        if self.members > self.limits.max_members:
            why = f"it has more than {self.limits.max_members} members"
            raise over(self.archive, why, "HARNESS_EXTRACT_MAX_MEMBERS", self.limits.max_members)
        return m

    def _refuse_kind(self, m: tarfile.TarInfo) -> None:
        """Regular files, directories and symlinks only."""
        if m.islnk():
            raise refuse(self.archive, m.name, f"is a hard link (-> {shown(m.linkname)}); hard links are not extracted")
        if m.isdev() or m.isfifo():
            raise refuse(self.archive, m.name, "is a device or FIFO")
        if m.issparse():
            raise refuse(self.archive, m.name, "is a sparse file; sparse files are not extracted")
        if not (m.isreg() or m.isdir() or m.issym()):
            raise refuse(self.archive, m.name, f"is of an unknown type {m.type!r}")
        if m.size < 0:
            raise refuse(self.archive, m.name, f"declares a negative size ({m.size})")

    def _budget(self, m: tarfile.TarInfo) -> None:
        """Before a member's first byte: all written so far within max_bytes, the stream within the ratio, room."""
        self.declared += m.size
        if self.declared > self.limits.max_bytes:
            raise bomb(self.archive, f"it declares more than the limit of {self.limits.max_bytes} bytes", self.limits)
        if self.stream.pos + m.size > self.stream.limit:
            raise self.stream.expands(self.stream.pos + m.size)
        _room(self.archive, self.declared, self.room, Path(self.stage.root).parent)

    def _chunks(self, m: tarfile.TarInfo) -> Iterator[bytes]:
        src = self.tf.extractfile(m)
        if src is None:  # not a regular file: _refuse_kind lets none through
            raise tarfile.ReadError(f"member {shown(m.name)} has no data")
        while chunk := src.read(CHUNK):  # tarfile stops at the declared size and raises on a short member
            yield chunk
