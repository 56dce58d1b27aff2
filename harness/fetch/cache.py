"""The cache on disk: where an entry lives, its stamp, its part and `.meta`, and how an entry is published.

Layout: `downloads/<host>/<digest of the URL>/<name>`, beside it `<name>.stamp` (url, size, mtime_ns,
sha256), while downloading `<name>.part` and `<name>.part.meta` (the validator and total size of the
response that started the part), and the entry's lock (harness.fetch.entrylock). Everything here is a small,
cheap file operation: no hashing, no network, no decisions (harness.fetch.fetchplan decides, harness.fetch.artifacts
hashes and orchestrates).
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

from harness.core.files import atomic_write_json, read_json

CACHE_ENV = "HARNESS_CACHE"


@dataclass(frozen=True)
class Fetched:
    url: str
    path: Path
    sha256: str
    size: int
    downloaded: bool  # False: served from the cache without touching the network

    def as_json(self) -> dict:
        return {
            "url": self.url,
            "path": str(self.path),
            "sha256": self.sha256,
            "size": self.size,
            "downloaded": self.downloaded,
        }


@dataclass(frozen=True)
class Look:
    """What the cache holds for one entry, read with a stat and a small read (never a hash)."""

    size: int | None  # the entry's size; None: there is no entry
    stamp_sha256: str | None  # the digest its stamp records for this URL (None: no stamp, or another URL's)
    fresh: bool  # the stamp's size and mtime are the entry's: its digest is the digest of these bytes


def cache_root() -> Path:
    """$HARNESS_CACHE, else the platform's user cache directory (platformdirs)."""
    if env := os.environ.get(CACHE_ENV):
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("res2net-zoo-harness"))


def _safe(component: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", component).lstrip(".")[:120] or "_"


def local_source(url: str) -> Path | None:
    """The local file a `file://` URL or a plain path names; None for http(s)."""
    parts = urlsplit(url)
    if parts.scheme in ("http", "https"):
        return None
    if parts.scheme == "file":
        return Path(unquote(parts.path))
    return Path(url).expanduser()


def entry_path(url: str, root: Path | None = None) -> Path:
    """Where `url` lives in the cache: `downloads/<host>/<digest>/<name>`.

    The directory is a sha256 of the exact URL (of the resolved path for local files), so two URLs that
    differ in any character, escaping included (`a_b`, `a%20b`), can never share an entry; the file keeps
    a readable name. The stamp beside it records the URL too, and an entry is served only for that URL.
    """
    root = root or cache_root()
    if (src := local_source(url)) is not None:
        digest = hashlib.sha256(str(src.resolve()).encode()).hexdigest()[:32]
        return root / "downloads" / "local" / digest / _safe(src.name)
    parts = urlsplit(url)
    name = unquote(parts.path).rstrip("/").rsplit("/", 1)[-1]
    digest = hashlib.sha256(url.encode()).hexdigest()[:32]
    return root.joinpath("downloads", _safe(parts.netloc), digest, _safe(name or "index"))


def sidecar(entry: Path, suffix: str) -> Path:
    return entry.with_name(entry.name + suffix)


def part_path(entry: Path) -> Path:
    return sidecar(entry, ".part")


def look(entry: Path, url: str) -> Look:
    """The entry and its stamp as they are now; a stamp written for another URL counts as none."""
    try:
        st = entry.stat()
    except (FileNotFoundError, NotADirectoryError):
        return Look(None, None, False)
    stamp = read_json(sidecar(entry, ".stamp"))
    if not (isinstance(stamp, dict) and stamp.get("url") == url):
        return Look(st.st_size, None, False)
    fresh = stamp.get("size") == st.st_size and stamp.get("mtime_ns") == st.st_mtime_ns
    return Look(st.st_size, stamp.get("sha256"), fresh)


def write_stamp(path: Path, url: str, sha256: str, entry: Path | None = None) -> None:
    """Stamp `path` (size, mtime) as holding `sha256`; the stamp goes beside `entry` (default: `path`)."""
    st = path.stat()
    atomic_write_json(
        sidecar(entry or path, ".stamp"),
        {"url": url, "sha256": sha256, "size": st.st_size, "mtime_ns": st.st_mtime_ns},
    )


def publish(part: Path, entry: Path, url: str, sha256: str) -> Fetched:
    """Turn verified bytes into the entry. The stamp is written first (the mtime survives the rename), so an
    entry without its stamp cannot exist unless someone removed the stamp by hand."""
    write_stamp(part, url, sha256, entry=entry)
    os.replace(part, entry)
    sidecar(part, ".meta").unlink(missing_ok=True)
    return Fetched(url, entry, sha256, entry.stat().st_size, downloaded=True)


def remove(entry: Path) -> None:
    """The entry and its stamp leave the cache (the caller holds the entry's lock)."""
    for p in (entry, sidecar(entry, ".stamp")):
        p.unlink(missing_ok=True)


def discard_part(part: Path) -> None:
    part.unlink(missing_ok=True)
    sidecar(part, ".meta").unlink(missing_ok=True)


def read_meta(part: Path, url: str) -> dict:
    """The `.meta` of a part: the validator and total size of the response that started it."""
    meta = read_json(sidecar(part, ".meta"))
    return meta if isinstance(meta, dict) and meta.get("url") == url else {}


def write_meta(part: Path, url: str, validator: str | None, total: int | None) -> None:
    atomic_write_json(sidecar(part, ".meta"), {"url": url, "validator": validator, "total": total})
