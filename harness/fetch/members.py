"""The harness's own policy for archive members, and the only code that writes them to disk.

Python's tarfile filters are not relied on: the `data` filter of CPython 3.11.7 lets a chain of long names and
symlink aliases write anywhere (CVE-2025-4517: `os.path.realpath` gives up past PATH_MAX and the check passes).
Here a member is written only by this module, only below a fresh private staging directory, and never through
a link:

- a name is checked lexically, component by component: relative, no `..`, no empty or NUL component, each
  component at most NAME_MAX bytes, the whole at most `max_path` bytes (so no path ever nears PATH_MAX);
- directories are made here one component at a time; one that already exists must be a directory (the staging
  tree is private and holds no symlink while files are written, so it is one this extraction made);
- regular files are created with O_CREAT|O_EXCL|O_NOFOLLOW: a second member of one name, or a file where a
  directory is, refuses the archive instead of replacing anything;
- symlinks are only recorded while reading, and made after every file and directory is written, once their
  targets are proven (lexically, from the link's own directory) to stay inside the tree without passing
  through another symlink; what they take in memory until then is bounded (LINK_BYTES). Hard links, devices
  and FIFOs are refused by the caller.

The limits an extraction runs under (`Limits`) and the wording of its refusals live here too, for both readers
in harness.fetch.archive (a tar as a stream, a zip by its central directory).

An OSError while writing is the archive's fault (a name the filesystem will not take, a file where a directory
must be) unless it is one this machine causes (no space, no permission, a read-only or failing disk): the
first evicts the archive and forgets its pin, the second keeps both (`LocalFault`).
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from harness.core.errors import ArchiveError, LocalFault
from harness.fetch.policy import numbers_from_env

NAME_MAX = 255  # bytes of one path component on Linux filesystems
SHOWN = 200  # characters of a member name quoted in a message
LINK_BYTES = 16 << 20  # names and targets of the symlinks kept until finish(): PaddleDetection's 10 take 600 bytes
# What this machine causes, whatever the archive holds; any other errno while writing a checked name is the
# archive's (ENAMETOOLONG, EEXIST, ENOTDIR, EISDIR, ELOOP, EINVAL, EILSEQ, ...).
LOCAL_ERRNOS = frozenset(
    {errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.EROFS, errno.EIO, errno.ENOMEM}
    | {errno.EMFILE, errno.ENFILE}
)
_FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC

Parts = tuple[str, ...]


@dataclass(frozen=True)
class Limits:
    """What an extraction may read and write. COCO's images zip is ~1:1, its annotation JSON ~5:1, a source
    tarball ~4:1 (~1.7:1 headers included); a zip bomb is 1000:1 and more. The real PaddleDetection archive has
    ~10k members, COCO val2017 5k: 200k leaves room and still bounds the inodes and time an archive costs. No
    member name may near PATH_MAX (4096, with the cache's own path in front): 1024 bytes."""

    max_bytes: int = 64 << 30
    max_ratio: float = 200.0
    max_members: int = 200_000
    max_header_bytes: int = 256 << 20
    max_path: int = 1024

    ENV = (
        ("HARNESS_EXTRACT_MAX_BYTES", "max_bytes", int),
        ("HARNESS_EXTRACT_MAX_RATIO", "max_ratio", float),
        ("HARNESS_EXTRACT_MAX_MEMBERS", "max_members", int),
        ("HARNESS_EXTRACT_MAX_HEADER_BYTES", "max_header_bytes", int),
        ("HARNESS_EXTRACT_MAX_PATH", "max_path", int),
    )

    @classmethod
    def from_env(cls) -> Limits:
        """The defaults, overridden by the environment variables in `ENV`."""
        return cls(**numbers_from_env(cls.ENV))


def bomb(archive: Path, why: str, limits: Limits) -> ArchiveError:
    return ArchiveError(
        f"{archive}: refusing to extract: {why}",
        hint=f"a decompression bomb or a broken archive; if it is genuine, raise "
        f"$HARNESS_EXTRACT_MAX_BYTES ({limits.max_bytes}) or $HARNESS_EXTRACT_MAX_RATIO "
        f"({limits.max_ratio:g})",
    )


def over(archive: Path, why: str, var: str, value: int) -> ArchiveError:
    return ArchiveError(
        f"{archive}: refusing to extract: {why}",
        hint=f"a bomb or a broken archive; if it is genuine, raise ${var} ({value})",
    )


def shown(name: str) -> str:
    """A member name for a message: quoted, control and unprintable characters escaped, at most SHOWN characters
    of it, with its length when it was cut. Archive names are attacker-chosen; a message must stay readable."""

    def esc(c: str) -> str:
        return c if c.isprintable() else f"\\x{ord(c):02x}" if ord(c) < 0x100 else f"\\u{ord(c):04x}"

    text = "".join(esc(c) for c in name[:SHOWN])
    return f"'{text}'" if len(name) <= SHOWN else f"'{text}…' ({len(name)} characters)"


def refuse(archive: Path, member: str, why: str) -> ArchiveError:
    return ArchiveError(
        f"{archive}: refusing to extract: member {shown(member)} {why}",
        hint="the archive is malformed or hostile; fetch it from its origin again",
    )


def split(archive: Path, name: str, max_path: int) -> Parts:
    """The components of a member's name, or a refusal: the name must stay inside the tree by its letters alone.
    `.` components are dropped (`./a` is `a`); `()` is the tree itself."""
    if "\0" in name:
        raise refuse(archive, name, "has a NUL character in its name")
    size = len(os.fsencode(name))
    if size > max_path:
        raise refuse(archive, name, f"has a name of {size} bytes (the limit is {max_path}: $HARNESS_EXTRACT_MAX_PATH)")
    if name.startswith(("/", "\\")):
        raise refuse(archive, name, "has an absolute path or '..'")
    parts = []
    for part in name.split("/"):
        if part == "..":
            raise refuse(archive, name, "has an absolute path or '..'")
        if part == "":
            raise refuse(archive, name, "has an empty path component ('//')")
        if len(os.fsencode(part)) > NAME_MAX:
            raise refuse(archive, name, f"has a path component of {len(os.fsencode(part))} bytes (over {NAME_MAX})")
        if part != ".":
            parts.append(part)
    return tuple(parts)


def file_mode(mode: int) -> int:
    """As tarfile's `data` filter sets it (and git hashes it: 100755 when the owner may execute): group and
    others never write, no set-id or sticky bits, the owner reads and writes, executable only if the owner is."""
    mode &= 0o755
    if not mode & 0o100:
        mode &= ~0o111
    return mode | 0o600


class Stage:
    """A private staging directory that members are written into, by the rules in the module's docstring."""

    def __init__(self, root: Path, archive: Path, max_entries: int) -> None:
        self.root = os.fspath(root)  # made by mkdtemp: empty, ours alone
        self.archive = archive
        self.max_entries = max_entries
        self.made = 0  # files, directories and links created
        self.links: dict[Parts, tuple[str, str]] = {}  # parts -> (member name, target), made by finish()
        self.link_bytes = 0
        self._dir_ok: Parts = ()  # the last directory proven ours: members come grouped by directory

    def directory(self, name: str, parts: Parts) -> None:
        """Make `parts` (and its parents) a directory of the tree; one that exists must be a directory."""
        shared = 0
        while shared < min(len(parts), len(self._dir_ok)) and parts[shared] == self._dir_ok[shared]:
            shared += 1
        for i in range(shared, len(parts)):
            path = os.path.join(self.root, *parts[: i + 1])
            try:
                os.mkdir(path, 0o777)  # less the umask, as tarfile made them
            except FileExistsError:
                if not stat.S_ISDIR(self._call(name, os.lstat, path).st_mode):
                    raise self._conflict(name, parts[: i + 1], "a file and a directory") from None
                continue
            except OSError as exc:
                raise self._fault(name, exc) from None
            self._count(name)
        self._dir_ok = parts

    def file(self, name: str, parts: Parts, chunks: Iterable[bytes], mode: int, mtime: float | None) -> None:
        """Write a regular file from `chunks` (the caller counts and bounds them) with `mode`; never replaces
        anything and never follows a link."""
        if not parts:
            raise refuse(self.archive, name, "names the extraction directory itself as a file")
        self.directory(name, parts[:-1])
        path = os.path.join(self.root, *parts)
        try:
            fd = os.open(path, _FILE_FLAGS, 0o600)
        except FileExistsError:
            is_dir = stat.S_ISDIR(self._call(name, os.lstat, path).st_mode)
            raise self._conflict(name, parts, "a file and a directory" if is_dir else None) from None
        except OSError as exc:
            raise self._fault(name, exc) from None
        self._count(name)
        try:
            for chunk in chunks:  # outside the OSError handling: a corrupt stream is not a disk error
                view = memoryview(chunk)
                while view:
                    view = view[self._call(name, os.write, fd, view) :]
            self._call(name, os.fchmod, fd, mode)
            if mtime is not None and 0 <= mtime < 1 << 33:  # a hostile header may say anything
                self._call(name, os.utime, fd, (mtime, mtime))
        except BaseException:
            os.close(fd)
            raise
        self._call(name, os.close, fd)  # a quota can be noticed only here (NFS)

    def symlink(self, name: str, parts: Parts, target: str) -> None:
        """Record a symlink; it is checked and made by finish(), after everything else is written."""
        if not parts:
            raise refuse(self.archive, name, "names the extraction directory itself as a symlink")
        if parts in self.links:
            raise self._conflict(name, parts, None)
        self.links[parts] = (name, target)
        self.link_bytes += len(name) + len(target)
        if self.link_bytes > LINK_BYTES:
            raise refuse(self.archive, name, f"takes the symlinks' names and targets past {LINK_BYTES} bytes")

    def finish(self, max_path: int) -> None:
        """Check every recorded symlink against all the others, then make them: none is inside another link,
        and each target resolves inside the tree without passing through a link."""
        for parts, (name, target) in self.links.items():
            if any(parts[:i] in self.links for i in range(1, len(parts))):
                raise refuse(self.archive, name, "is inside another symlink of the archive")
            self._check_target(name, parts, target, max_path)
        for parts, (name, _) in self.links.items():
            self.directory(name, parts[:-1])
        for parts, (name, target) in self.links.items():
            try:
                os.symlink(target, os.path.join(self.root, *parts))
            except FileExistsError:
                raise self._conflict(name, parts, "a symlink and a file or directory") from None
            except OSError as exc:
                raise self._fault(name, exc) from None
            self._count(name)

    def _check_target(self, name: str, parts: Parts, target: str, max_path: int) -> None:
        """The target, walked lexically from the link's directory: it never goes above the tree's root and never
        steps through a component that is itself a link (its last component may be one: that link is checked
        on its own). With no link on the way, the lexical walk is the walk the kernel will do."""
        leaves = f"is a symlink leaving the tree (-> {shown(target)})"
        if not target or "\0" in target or len(os.fsencode(target)) > max_path:
            raise refuse(self.archive, name, f"is a symlink with an empty, NUL or over-long target ({len(target)})")
        if target.startswith("/"):
            raise refuse(self.archive, name, leaves)
        here = list(parts[:-1])
        for part in target.split("/"):
            if part in ("", "."):
                continue
            if here and tuple(here) in self.links:
                raise refuse(self.archive, name, f"is a symlink through another symlink (-> {shown(target)})")
            if part == "..":
                if not here:
                    raise refuse(self.archive, name, leaves)
                here.pop()
            else:
                here.append(part)

    def _count(self, name: str) -> None:
        self.made += 1
        if self.made > self.max_entries:
            raise self._too_many(name)

    def _too_many(self, name: str) -> ArchiveError:
        return ArchiveError(
            f"{self.archive}: refusing to extract: it makes more than {self.max_entries} files, directories and "
            f"links (at member {shown(name)})",
            hint=f"a bomb or a broken archive; if genuine, raise $HARNESS_EXTRACT_MAX_MEMBERS ({self.max_entries})",
        )

    def _conflict(self, name: str, parts: Parts, kinds: str | None) -> ArchiveError:
        where = "/".join(parts)
        if kinds is None:
            return refuse(self.archive, name, "appears more than once in the archive")
        return refuse(self.archive, name, f"makes {shown(where)} both {kinds}")

    def _call(self, name: str, fn, *args):
        """fn(*args), an OSError classified: this machine's fault, or the archive's."""
        try:
            return fn(*args)
        except OSError as exc:
            raise self._fault(name, exc) from None

    def _fault(self, name: str, exc: OSError) -> ArchiveError | LocalFault:
        what = exc.strerror or type(exc).__name__  # never exc's filename: it may be thousands of characters
        if exc.errno in LOCAL_ERRNOS:
            return LocalFault(
                f"{self.archive}: cannot extract into {Path(self.root).parent}: {what}",
                hint="check free disk space and permissions of the cache ($HARNESS_CACHE)",
            )
        return refuse(self.archive, name, f"cannot be written here: {what}")
