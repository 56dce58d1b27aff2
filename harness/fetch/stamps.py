"""The record of an extraction: every entry it made, so a later use can tell the tree is still exactly that.

Written beside the tree (`<dest>.extracted.json`) before the tree is renamed into place. It lists every file
(size, mtime), every directory and every symlink (its target) of the tree. `intact` walks the tree and wants
exactly those entries: a file deleted or edited is noticed (as before), and so is one *added* — an extra
`paddle.py` or `ppdet/x.py` dropped into the pinned source would be imported before anything else, so a tree
with anything the archive did not put there is extracted again, not used. The worker keeps its bytecode out of
the tree (sys.pycache_prefix), so a clean run adds nothing.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from harness.core.files import atomic_write_json, read_json


def path(dest: Path) -> Path:
    return dest.with_name(dest.name + ".extracted.json")


def entries(root: Path) -> dict[str, list]:
    """Every entry below `root`: a file as [size, mtime_ns], a directory as ["dir"], a symlink as ["link",
    target], anything else as ["other"] (never in an extraction, so never intact)."""
    out: dict[str, list] = {}
    for dirpath, dirs, names in os.walk(root):  # os.walk does not descend into symlinked directories
        for name in dirs + names:
            p = Path(dirpath, name)
            st = p.lstat()
            rel = p.relative_to(root).as_posix()
            if stat.S_ISREG(st.st_mode):
                out[rel] = [st.st_size, st.st_mtime_ns]
            elif stat.S_ISDIR(st.st_mode):
                out[rel] = ["dir"]
            elif stat.S_ISLNK(st.st_mode):
                out[rel] = ["link", os.readlink(p)]
            else:
                out[rel] = ["other"]
    return out


def write(dest: Path, tree: Path, tag: dict) -> None:
    """Stamp the tree about to become `dest` (written before the rename: a tree in place always has one)."""
    atomic_write_json(path(dest), {"version": 2, "tag": tag, "entries": entries(tree)})


def intact(dest: Path, tag: dict | None = None) -> bool:
    """Was `dest` extracted completely (with this `tag`), and is it still exactly what was written: no entry
    missing, changed or added? (A stamp of an older version lists only files: extracted again.)"""
    stamp = read_json(path(dest))
    if not isinstance(stamp, dict) or stamp.get("version") != 2 or stamp.get("tag") != (tag or {}):
        return False
    try:
        return dest.is_dir() and not dest.is_symlink() and entries(dest) == stamp.get("entries")
    except OSError:
        return False
