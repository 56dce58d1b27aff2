"""A PaddleDetection tree as a listing of its files (path -> git blob id), and what changed between two.

Why listings: the selection asks which files changed between the tree a model last passed on and tonight's, and
git's blob ids answer it without reading either tree twice. A listing comes from a directory (an extracted
archive, a checkout: blobs hashed as git hashes them, source.py's tree hashing) or from a git repository's
objects (dulwich), by tree or commit id; the harness cache keeps each archive it extracted under its tree id.
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
from collections.abc import Callable, Mapping
from pathlib import Path

from harness.core.errors import UsageError
from harness.fetch.cache import cache_root
from harness.fetch.source import _blob_id, top

SKIP = frozenset({".git", "__pycache__"})
Listing = dict[str, str]  # POSIX path relative to the tree's root -> git blob id (hex)


def of_directory(root: Path, skip: frozenset[str] = SKIP) -> Listing:
    """Every file under `root` with the blob id git gives it (a symlink: its target's text, as git stores it)."""
    out: Listing = {}

    def walk(d: Path, prefix: str) -> None:
        with os.scandir(d) as entries:
            for e in entries:
                if e.name in skip:
                    continue
                st, rel = e.stat(follow_symlinks=False), prefix + e.name
                if stat.S_ISDIR(st.st_mode):
                    walk(Path(e.path), rel + "/")
                elif stat.S_ISLNK(st.st_mode):
                    target = os.fsencode(os.readlink(e.path))
                    out[rel] = hashlib.sha1(b"blob %d\0" % len(target) + target, usedforsecurity=False).hexdigest()
                elif stat.S_ISREG(st.st_mode):
                    out[rel] = _blob_id(Path(e.path), st.st_size).decode()

    walk(root, "")
    return out


def of_git(repo: Path, rev: str) -> Listing | None:
    """The listing of tree or commit `rev` in the git repository at `repo`; None when its objects lack it."""
    from dulwich.errors import NotGitRepository
    from dulwich.objects import Commit, ObjectID, Tree
    from dulwich.repo import Repo

    if not re.fullmatch(r"[0-9a-f]{40}", rev):
        return None
    try:
        r = Repo(str(repo))
    except NotGitRepository:
        raise UsageError(f"{repo}: not a git repository", hint="pass a PaddleDetection clone (its .git)") from None
    with r:
        store = r.object_store
        oid = ObjectID(rev.encode())
        if oid not in store:
            return None
        obj = store[oid]
        if isinstance(obj, Commit):
            obj = store[obj.tree]
        if not isinstance(obj, Tree):
            return None
        out: Listing = {}
        for entry in store.iter_tree_contents(obj.id):
            if entry.path is not None and entry.sha is not None and not stat.S_ISDIR(entry.mode or 0):
                out[entry.path.decode()] = entry.sha.decode()
        return out


def find(tree: str, git: Path | None = None, cache: Path | None = None) -> Listing | None:
    """The listing of tree id `tree` where one is at hand: the cache's extraction of that tree
    (`src/PaddleDetection/<tree>`), else `git`'s objects; None when neither has it."""
    extracted = (cache or cache_root()) / "src" / "PaddleDetection" / tree
    if extracted.is_dir():
        return of_directory(top(extracted))
    return of_git(git, tree) if git is not None else None


def reader(roots: list[Path], git: Path | None = None) -> Callable[[str, str], bytes | None]:
    """`read(path, blob)`: the bytes of blob `blob` of file `path`, from the first of `roots` (trees on disk) whose
    file there has that blob id, else from `git`'s objects; None when neither has it (or the path leaves a tree)."""

    def read(path: str, blob: str) -> bytes | None:
        if Path(path).is_absolute() or ".." in Path(path).parts:
            return None
        for root in roots:
            f = root / path
            if f.is_file() and not f.is_symlink() and _blob_id(f, f.stat().st_size).decode() == blob:
                return f.read_bytes()
        return _git_blob(git, blob) if git is not None and re.fullmatch(r"[0-9a-f]{40}", blob) else None

    return read


def _git_blob(git: Path, blob: str) -> bytes | None:
    from dulwich.objects import Blob, ObjectID
    from dulwich.repo import Repo

    with Repo(str(git)) as r:
        oid = ObjectID(blob.encode())
        obj = r.object_store[oid] if oid in r.object_store else None  # noqa: SIM401 (no .get on a store)
        return obj.as_raw_string() if isinstance(obj, Blob) else None


def extractions(cache: Path | None = None) -> list[Path]:
    """The PaddleDetection trees the harness cache extracted (`src/PaddleDetection/<tree id>`)."""
    base = (cache or cache_root()) / "src" / "PaddleDetection"
    return [top(d) for d in sorted(base.iterdir()) if d.is_dir()] if base.is_dir() else []


def changed(before: Mapping[str, str], after: Mapping[str, str]) -> dict[str, str]:
    """Paths whose blob differs between two listings: path -> "changed", "added" or "removed"."""
    out = {}
    for path in sorted(set(before) | set(after)):
        a, b = before.get(path), after.get(path)
        if a != b:
            out[path] = "added" if a is None else "removed" if b is None else "changed"
    return out
