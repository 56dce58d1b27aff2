"""Safe extraction of tar and zip archives into the cache, all or nothing.

Every member is checked before a single byte is written: absolute paths, `..`, links that leave the
tree, devices and FIFOs refuse the *whole* archive (a partly extracted tree is worse than none). Tar
extraction then also runs with Python's `data` filter as a second line of defence. Extraction goes into
a temporary sibling directory that is renamed into place, so a destination either is complete or does
not exist.
"""

from __future__ import annotations

import os
import shutil
import stat
import tarfile
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path, PurePosixPath

from harness.errors import ArchiveError


def _refuse(archive: Path, member: str, why: str) -> ArchiveError:
    return ArchiveError(f"{archive}: refusing to extract: member {member!r} {why}",
                        hint="the archive is malformed or hostile; fetch it from its origin again")


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


def tar_commit_id(archive: Path) -> str | None:
    """The commit id git writes into the pax global header of `git archive` output (`git get-tar-commit-id`)."""
    try:
        with tarfile.open(archive) as tf:
            tf.next()
            return tf.pax_headers.get("comment")
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise ArchiveError(f"{archive}: not a readable tar archive: {exc}",
                           hint="fetch it again; the download may be corrupt") from None


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


def _check_zip(archive: Path, infos: list[zipfile.ZipInfo]) -> None:
    for info in infos:
        if not _inside(info.filename):
            raise _refuse(archive, info.filename, "has an absolute path or '..'")
        if stat.S_ISLNK(info.external_attr >> 16):
            raise _refuse(archive, info.filename, "is a symlink (not allowed in zip archives)")


def extract(archive: Path, dest: Path, *, want: Callable[[str], bool] | None = None) -> Path:
    """Extract `archive` (tar, tar.gz or zip) so that `dest` holds its members, atomically.

    `want(name)` selects members (e.g. one annotation file out of a 250 MB zip); the safety checks
    still cover every member. If `dest` exists it is returned untouched: it was renamed into place
    complete.
    """
    if dest.exists():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    from filelock import FileLock

    with FileLock(dest.parent / f".{dest.name}.lock"):
        return dest if dest.exists() else _extract(archive, dest, want)


def _extract(archive: Path, dest: Path, want: Callable[[str], bool] | None) -> Path:
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.partial-", dir=dest.parent))
    try:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as zf:
                infos = zf.infolist()
                _check_zip(archive, infos)
                for info in infos:
                    if want is None or want(info.filename):
                        zf.extract(info, tmp)
        else:
            try:
                with tarfile.open(archive) as tf:
                    members = tf.getmembers()
                    _check_tar(archive, members)
                    chosen = [m for m in members if want is None or want(m.name)]
                    tf.extractall(tmp, members=chosen, filter="data")
            except tarfile.FilterError as exc:
                raise _refuse(archive, exc.tarinfo.name, f"was refused by the data filter: {exc}") from None
            except (tarfile.TarError, EOFError) as exc:
                raise ArchiveError(f"{archive}: cannot extract: {exc}",
                                   hint="fetch it again; the download may be corrupt") from None
        os.replace(tmp, dest)
    except zipfile.BadZipFile as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise ArchiveError(f"{archive}: cannot extract: {exc}",
                           hint="fetch it again; the download may be corrupt") from None
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise ArchiveError(f"{archive}: cannot extract into {dest.parent}: {exc}",
                           hint="check free disk space and permissions of the cache ($HARNESS_CACHE)") from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dest
