"""The verified artifact cache: fetch one URL, prove the bytes are right, then move them into place.

The shape follows pooch's core: one name in, one verified local path out. What it adds for files of
hundreds of MB on other people's servers:

- streams into `<entry>.part`; after a dropped connection the next attempt (or the next run) asks for
  the rest with an HTTP Range request. A part is resumed across runs only when the result can be
  proven the same file: a known sha256, or the server's validator (ETag/Last-Modified) sent as If-Range.
- retries connection errors, timeouts and 5xx/429 with exponential backoff (tenacity); 4xx is final.
- verifies size and sha256 before the rename. A mismatch names URL, expected and actual hash, and the
  bad bytes are deleted: they never become a cache entry.
- one file lock per entry (filelock), so two processes fetching the same file download it once.
- a stamp (url, size, mtime_ns, sha256) beside every entry, written *before* the rename: a warm fetch
  is two stats and a small read, never a re-hash of 170 MB, and an entry without its stamp cannot exist
  unless someone removed the stamp by hand (then it is hashed once).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import socket
import stat
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

from harness.errors import ArtifactError, HarnessError, IntegrityError, UsageError
from harness.files import atomic_write_json, read_json, sha256_file
from harness.lockfile import LockFile, Pin
from harness.manifest import Artifact

log = logging.getLogger(__name__)

CACHE_ENV = "HARNESS_CACHE"
CHUNK = 1 << 20
_RETRY_STATUS = {408, 425, 429}


@dataclass(frozen=True)
class Policy:
    """How hard to try, and for how long. Tests shrink the numbers; the defaults suit a flaky CDN.

    Besides the retries: a transfer slower than `speed_limit_bps` over any `speed_time_s` window is cut and
    resumed (curl's --speed-limit/--speed-time: a 2-byte/s trickle never trips a read timeout), a fetch
    gives up after `deadline_s` in all, and a process waiting for another's download of the same file
    waits at most `lock_wait_s`.
    """

    attempts: int = 6
    backoff_s: float = 1.0
    max_backoff_s: float = 30.0
    connect_timeout_s: float = 15.0
    read_timeout_s: float = 60.0
    speed_limit_bps: float = 10_000.0
    speed_time_s: float = 60.0
    deadline_s: float = 6 * 3600.0
    lock_wait_s: float = 6 * 3600.0

    ENV = (
        ("HARNESS_RETRIES", "attempts", int),
        ("HARNESS_BACKOFF_S", "backoff_s", float),
        ("HARNESS_TIMEOUT_S", "read_timeout_s", float),
        ("HARNESS_SPEED_LIMIT", "speed_limit_bps", float),
        ("HARNESS_SPEED_TIME_S", "speed_time_s", float),
        ("HARNESS_DEADLINE_S", "deadline_s", float),
        ("HARNESS_LOCK_WAIT_S", "lock_wait_s", float),
    )

    @classmethod
    def from_env(cls) -> Policy:
        """Defaults, overridden by the environment variables in `ENV` (README: "The artifact cache")."""
        kw = numbers_from_env(cls.ENV)
        if kw.get("attempts", 1) < 1:
            raise UsageError(f"$HARNESS_RETRIES={kw['attempts']}: at least 1", hint="unset HARNESS_RETRIES or fix it")
        return cls(**kw)


def numbers_from_env(table) -> dict:
    """{field: value} for each (variable, field, type) of `table` set in the environment; a value that is not
    a number, or is negative, is a usage error naming the variable."""
    kw: dict = {}
    for var, key, cast in table:
        if (value := os.environ.get(var)) is None:
            continue
        try:
            kw[key] = cast(value)
        except ValueError:
            raise UsageError(f"${var}={value!r}: expected a number", hint=f"unset {var} or fix it") from None
        if kw[key] < 0:
            raise UsageError(f"${var}={value!r}: must not be negative", hint=f"unset {var} or fix it")
    return kw


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


class _Transient(Exception):
    """A failure worth another attempt (5xx, a short body, a bad resume, a trickle)."""


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


def _sidecar(entry: Path, suffix: str) -> Path:
    return entry.with_name(entry.name + suffix)


# ---- the cache entry -------------------------------------------------------------------------------


def _evict(entry: Path) -> None:
    for p in (entry, _sidecar(entry, ".stamp")):
        p.unlink(missing_ok=True)


def _cached(
    entry: Path, url: str, sha256: str | None, size: int | None, *, rehash: bool, verify: bool = False
) -> Fetched | None:
    """The entry if it holds the right bytes. Without `rehash` only the stamp is consulted (no hashing); with
    `verify` every byte is hashed even under a fresh stamp (`harness fetch --verify`: bytes rot, keeping their
    size and mtime). Bytes that do not match are evicted, so the next fetch downloads and verifies anew."""
    try:
        st = entry.stat()
    except (FileNotFoundError, NotADirectoryError):
        return None
    stamp = read_json(_sidecar(entry, ".stamp"))
    stamp = stamp if isinstance(stamp, dict) and stamp.get("url") == url else None
    fresh = stamp is not None and stamp.get("size") == st.st_size and stamp.get("mtime_ns") == st.st_mtime_ns
    if fresh and stamp is not None and not verify:
        if (sha256 is None or stamp["sha256"] == sha256) and (size is None or st.st_size == size):
            return Fetched(url, entry, stamp["sha256"], st.st_size, downloaded=False)
        if rehash:  # the pin changed under the cache: these are other bytes
            log.info("cached %s does not match its pin any more; fetching again", entry.name)
            _evict(entry)
        return None
    if not rehash:
        return None
    # The file changed since it was stamped (or the stamp is gone, or --verify): hash it once and decide.
    actual = sha256_file(entry)
    known = sha256 or (stamp or {}).get("sha256")
    if known == actual and (size is None or size == st.st_size):
        _write_stamp(entry, url, actual)
        return Fetched(url, entry, actual, st.st_size, downloaded=False)
    log.warning("cached %s failed verification (sha256 %s, expected %s); fetching again", entry, actual, known)
    _evict(entry)
    return None


def _write_stamp(path: Path, url: str, sha256: str, entry: Path | None = None) -> None:
    st = path.stat()
    atomic_write_json(
        _sidecar(entry or path, ".stamp"),
        {"url": url, "sha256": sha256, "size": st.st_size, "mtime_ns": st.st_mtime_ns},
    )


@contextlib.contextmanager
def _entry_lock(entry: Path, url: str, wait_s: float) -> Iterator[None]:
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


def evict(url: str, root: Path | None = None) -> None:
    """Remove the cache entry of `url` (e.g. a checkpoint that cannot be read): the next fetch downloads."""
    entry = entry_path(url, root)
    if entry.parent.is_dir():
        with _entry_lock(entry, url, Policy.from_env().lock_wait_s):
            _evict(entry)


def invalidate(artifact: Artifact, lock: LockFile | None, refetch: str, root: Path | None = None) -> str:
    """Bytes proven unusable (not a checkpoint, an archive that will not extract) leave the cache, and a
    zoo.lock record learned from them is forgotten (a pin written in zoo.yaml stays: a person wrote it).

    Only for format errors: a local fault (disk, memory, a file gone) must never cost an entry or a pin,
    else the next `--locked` run would be refused for nothing. Returns a sentence for the error message.
    """
    evict(artifact.url, root)
    forgot = artifact.sha256 is None and lock is not None and lock.forget(artifact.url)
    return (
        f"the cache entry was removed{' and its zoo.lock record forgotten' if forgot else ''}; "
        f"re-fetch with `{refetch}` (if the same bytes come back, the published file itself is broken)"
    )


def discard(artifact: Artifact, refetch: str, root: Path | None = None) -> str:
    """A cache entry whose bytes are not the ones verified (they rotted, or were replaced) leaves the cache;
    its pin stays (the pin is right, the copy is not), so the next run downloads and verifies anew."""
    evict(artifact.url, root)
    return f"the cache entry was removed (its pin is kept); run again or `{refetch}`: it is fetched and verified anew"


def is_cached(url: str, root: Path | None = None) -> bool:
    """Stat-only check for `harness list`: is there a stamped entry for this URL?"""
    return _cached(entry_path(url, root), url, None, None, rehash=False) is not None


# ---- fetching --------------------------------------------------------------------------------------


def fetch(
    url: str,
    *,
    sha256: str | None = None,
    size: int | None = None,
    root: Path | None = None,
    policy: Policy | None = None,
    check: Callable[[Path], None] | None = None,
    progress: bool | None = None,
    verify: bool = False,
) -> Fetched:
    """Bring `url` into the cache and return the verified local file.

    `check(path)` runs on the downloaded bytes before they become the entry (e.g. "is this the pinned
    commit?"); a `HarnessError` from it discards the bytes like a hash mismatch. `progress=None` shows a
    bar only when stderr is a terminal. `verify` re-hashes a cached entry instead of trusting its stamp.
    """
    entry = entry_path(url, root)
    if not verify and (hit := _cached(entry, url, sha256, size, rehash=False)):
        return hit
    try:
        return _fetch_locked(url, entry, sha256, size, policy, check, progress, verify)
    except OSError as exc:  # the cache itself: read-only, disk full, file-size limit (network errors are
        # converted to ArtifactError before they get here)
        raise ArtifactError(
            f"{url}: cannot write the cache at {entry.parent}: {exc.strerror or exc}",
            hint="free disk space, or point $HARNESS_CACHE at a writable directory with room "
            "(a partial download is kept and resumed)",
        ) from None


def _fetch_locked(
    url: str,
    entry: Path,
    sha256: str | None,
    size: int | None,
    policy: Policy | None,
    check: Callable[[Path], None] | None,
    progress: bool | None,
    verify: bool = False,
) -> Fetched:
    entry.parent.mkdir(parents=True, exist_ok=True)
    policy = policy or Policy.from_env()
    with _entry_lock(entry, url, policy.lock_wait_s):
        if hit := _cached(entry, url, sha256, size, rehash=True, verify=verify):
            return hit  # another process finished it while we waited
        part = _sidecar(entry, ".part")
        if (src := local_source(url)) is not None:
            _copy_local(url, src, part, size, progress, time.monotonic() + policy.deadline_s)
        else:
            _download(url, part, sha256=sha256, size=size, policy=policy, progress=progress)
        try:
            actual = _verify(url, part, sha256, size)
            if check:
                check(part)
        except HarnessError:
            _discard_part(part)
            raise
        _write_stamp(part, url, actual, entry=entry)  # stamp first: mtime survives the rename
        os.replace(part, entry)
        _sidecar(part, ".meta").unlink(missing_ok=True)
        return Fetched(url, entry, actual, entry.stat().st_size, downloaded=True)


def fetch_artifact(artifact: Artifact, lock: LockFile | None, *, locked: bool = False, **kw) -> Fetched:
    """`fetch` with the pin taken from zoo.yaml/zoo.lock, and the first verified download recorded."""
    pin = lock.pin(artifact, locked=locked) if lock else Pin(artifact.sha256, artifact.size)
    got = fetch(artifact.url, sha256=pin.sha256, size=pin.size, **kw)
    if lock is not None and (pin.sha256 is None or pin.size is None):
        lock.record(artifact.url, got.sha256, got.size)
        if pin.sha256 is None:
            log.info(
                "recorded sha256 %s for %s in %s (first verified download)", got.sha256, artifact.url, lock.path.name
            )
    return got


def _discard_part(part: Path) -> None:
    part.unlink(missing_ok=True)
    _sidecar(part, ".meta").unlink(missing_ok=True)


def _verify(url: str, part: Path, sha256: str | None, size: int | None) -> str:
    actual_size = part.stat().st_size
    if size is not None and actual_size != size:
        raise IntegrityError(
            f"{url}: size mismatch: expected {size} bytes, got {actual_size}; nothing was cached",
            hint=_PIN_HINT,
        )
    actual = sha256_file(part)
    if sha256 is not None and actual != sha256:
        raise IntegrityError(
            f"{url}: sha256 mismatch: expected {sha256}, got {actual}; nothing was cached",
            hint=_PIN_HINT,
        )
    return actual


def _bar(name: str, total: int | None, initial: int, progress: bool | None):
    from tqdm import tqdm

    return tqdm(
        total=total,
        initial=initial,
        desc=name,
        unit="B",
        unit_scale=True,
        unit_divisor=1024,
        disable=None if progress is None else not progress,
        file=sys.stderr,
        leave=False,
    )


def _copy_local(url: str, src: Path, part: Path, size: int | None, progress: bool | None, deadline: float) -> None:
    """Copy a local file into the part: a regular file only (stat of the opened file, not `is_file()`: a FIFO
    would block, `/proc/self/pagemap` is a "regular" file of size 0 that reads as 256 GB), never more bytes
    than it had when opened or than the pin says, within the fetch's deadline; a partial copy is removed."""
    try:
        fd = os.open(src, os.O_RDONLY | os.O_NONBLOCK)  # NONBLOCK: opening a FIFO must not wait for a writer
    except FileNotFoundError:
        raise ArtifactError(f"{url}: no such file", hint="check the path in zoo.yaml, or the URL") from None
    except OSError as exc:
        raise ArtifactError(f"{url}: cannot open {src}: {exc.strerror}", hint="check the path in zoo.yaml") from None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise ArtifactError(
            f"{url}: {src} is not a regular file", hint="point zoo.yaml at the file itself (a path or file:// URL)"
        )
    with os.fdopen(fd, "rb") as fin:
        if size is not None and st.st_size != size:
            raise IntegrityError(
                f"{url}: size mismatch: expected {size} bytes, the file has {st.st_size}; nothing was cached",
                hint=_PIN_HINT,
            )
        try:
            with part.open("wb") as fout, _bar(src.name, st.st_size, 0, progress) as bar:
                _copy_bounded(url, fin, fout, st.st_size, deadline, bar)
        except BaseException:
            _discard_part(part)
            raise


def _copy_bounded(url: str, fin, fout, limit: int, deadline: float, bar) -> None:
    written = 0
    while chunk := fin.read(min(CHUNK, limit - written + 1)):
        written += len(chunk)
        if written > limit:  # it grows while copied, or it is a pseudo-file whose size says nothing
            raise IntegrityError(
                f"{url}: the file gives more than the {limit} bytes its size says (it is growing, or it is not a "
                "plain file on disk); nothing was cached",
                hint="copy a finished file and point zoo.yaml at the copy",
            )
        fout.write(chunk)
        bar.update(len(chunk))
        if time.monotonic() > deadline:
            raise ArtifactError(
                f"{url}: copy not complete after the fetch's deadline ({written} of {limit} bytes); nothing was cached",
                hint="$HARNESS_DEADLINE_S sets the limit",
            )


def _download(
    url: str, part: Path, *, sha256: str | None, size: int | None, policy: Policy, progress: bool | None
) -> None:
    import requests
    import urllib3
    from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_random_exponential

    # The body is read from urllib3 directly (see _download_once), so its errors count too.
    transient = (
        _Transient,
        requests.ConnectionError,
        requests.Timeout,
        requests.exceptions.ChunkedEncodingError,
        urllib3.exceptions.HTTPError,
    )
    retrying = Retrying(
        stop=stop_after_attempt(policy.attempts),
        wait=wait_random_exponential(multiplier=policy.backoff_s, max=policy.max_backoff_s),
        retry=retry_if_exception_type(transient),
        before_sleep=lambda rs: log.warning(
            "%s: %s; retrying (attempt %d of %d)",
            url,
            rs.outcome.exception() if rs.outcome else None,
            rs.attempt_number + 1,
            policy.attempts,
        ),
        reraise=True,
    )
    job = _Job(url, part, sha256, size, policy, progress, time.monotonic() + policy.deadline_s)
    with requests.Session() as session:
        try:
            for attempt in retrying:
                with attempt:
                    _download_once(session, job)
        except transient as exc:
            kept = _keep_or_discard(job)
            raise ArtifactError(
                f"{url}: download failed after {policy.attempts} attempts: {exc}",
                hint=f"check the network and the URL; run the same command again to resume ({kept} bytes kept)"
                if kept
                else "check the network and the URL, then run the command again",
            ) from None
        except _Deadline as exc:
            kept = _keep_or_discard(job)
            raise ArtifactError(
                f"{url}: {exc}",
                hint=f"$HARNESS_DEADLINE_S sets the limit; run the command again to resume ({kept} bytes kept)"
                if kept
                else "$HARNESS_DEADLINE_S sets the limit",
            ) from None
        except requests.RequestException as exc:  # redirect loops, invalid URLs: retrying will not help
            raise ArtifactError(f"{url}: {exc}", hint="check the URL in zoo.yaml") from None


@dataclass(frozen=True)
class _Job:
    url: str
    part: Path
    sha256: str | None
    size: int | None  # pinned size: the download never writes past it
    policy: Policy
    progress: bool | None
    deadline: float  # time.monotonic() after which the fetch gives up


class _Deadline(Exception):
    """The overall time limit of a fetch passed: final, not retried."""


def _meta(part: Path, url: str) -> dict:
    """The `.meta` of a part: the validator and total size of the response that started it."""
    meta = read_json(_sidecar(part, ".meta"))
    return meta if isinstance(meta, dict) and meta.get("url") == url else {}


def _keep_or_discard(job: _Job) -> int:
    """After a failed fetch, a part stays only if a later run can prove what it holds (a validator to send as
    If-Range, or a known sha256); anything else could never be resumed, so it goes. Returns bytes kept."""
    if job.part.exists() and (_meta(job.part, job.url).get("validator") or job.sha256):
        return job.part.stat().st_size
    _discard_part(job.part)
    return 0


def _content_range(value: str | None) -> tuple[int | None, int | None]:
    """(first byte, total) of a Content-Range header, e.g. `bytes 100-199/1000` or `bytes */1000`."""
    m = re.fullmatch(r"bytes (?:(\d+)-\d+|\*)/(\d+|\*)", (value or "").strip())
    if not m:
        return None, None
    start = int(m.group(1)) if m.group(1) else None
    return start, int(m.group(2)) if m.group(2) != "*" else None


def _validator(headers) -> str | None:
    """A strong ETag, else Last-Modified: what If-Range may carry (weak ETags may not)."""
    etag = headers.get("ETag", "")
    return etag if etag and not etag.startswith("W/") else headers.get("Last-Modified")


def _restart(job: _Job, why: str) -> _Transient:
    """On any doubt about what a part holds: throw it away, the next attempt starts from byte 0."""
    _discard_part(job.part)
    return _Transient(f"{why}; starting again from byte 0")


def _download_once(session, job: _Job) -> None:
    url, part, policy = job.url, job.part, job.policy
    if time.monotonic() > job.deadline:
        raise _Deadline(f"not complete after {policy.deadline_s:g} s (the fetch's deadline)")
    offset = part.stat().st_size if part.exists() else 0
    meta = _meta(part, url) if offset else {}
    validator = meta.get("validator")
    if offset and not (validator or job.sha256):
        log.info("%s: cannot prove the partial file is the same file; starting again", url)
        offset = 0
    headers = {"Accept-Encoding": "identity"}  # byte counts must be the file's, not a compressed stream's
    if offset:
        headers["Range"] = f"bytes={offset}-"
        if validator:
            headers["If-Range"] = validator
    resp = session.get(url, headers=headers, stream=True, timeout=(policy.connect_timeout_s, policy.read_timeout_s))
    with resp:
        code = resp.status_code
        if code == 416 and offset:
            # The part may hold the whole file; only a known sha256 can say it is this file (a 416 carries
            # no validator, and a server that ignored If-Range would answer the same for another version).
            if _content_range(resp.headers.get("Content-Range"))[1] == offset and job.sha256:
                return
            raise _restart(job, "HTTP 416 on resume")
        if code >= 500 or code in _RETRY_STATUS:
            raise _Transient(f"HTTP {code} {resp.reason}")
        if code >= 400:
            raise ArtifactError(
                f"{url}: HTTP {code} {resp.reason}", hint="check the URL in zoo.yaml (not retried: the server said no)"
            )
        encoding = resp.headers.get("Content-Encoding", "identity").strip().lower()
        if encoding not in ("", "identity"):
            raise ArtifactError(
                f"{url}: the server sent Content-Encoding: {encoding} although the harness asked for identity; "
                "refusing its bytes (they are not the file's, and hashing them would pin the wrong thing)",
                hint="download the file another way and point zoo.yaml at it (a path or file:// URL), or fix "
                "the server",
            )
        if code == 206:
            start, total = _content_range(resp.headers.get("Content-Range"))
            if start != offset:
                raise _restart(job, f"server resumed at byte {start}, asked for {offset}")
            if validator and _validator(resp.headers) != validator:
                raise _restart(
                    job,
                    f"server resumed another version (validator {_validator(resp.headers)}, the part's is {validator})",
                )
            if meta.get("total") is not None and total != meta["total"]:
                raise _restart(job, f"server resumed a file of {total} bytes, the part's has {meta['total']}")
            mode = "ab"
        else:
            offset, mode = 0, "wb"
            length = resp.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            atomic_write_json(
                _sidecar(part, ".meta"), {"url": url, "validator": _validator(resp.headers), "total": total}
            )
        if job.size is not None and total is not None and total != job.size:
            _discard_part(part)
            raise IntegrityError(
                f"{url}: the server announces {total} bytes, the pin says {job.size}; nothing was cached",
                hint=_PIN_HINT,
            )
        _stream(resp, job, mode, offset, total)


_PIN_HINT = (
    "fetch again; if it persists the file on the server changed: check its origin, then update the pin "
    "in zoo.yaml or zoo.lock"
)


def _stream(resp, job: _Job, mode: str, offset: int, total: int | None) -> None:
    """Copy the body into the part. Never past a known size (an endless body is cut there), never slower than
    the policy's minimum rate for a whole window, never past the deadline."""
    policy, part = job.policy, job.part
    cap = job.size if job.size is not None else total
    window_t, window_n = time.monotonic(), 0
    # read1 hands over every byte that arrived before a connection drops; requests' iter_content
    # (urllib3 read(amt)) buffers up to a chunk and loses it when the drop raises.
    with part.open(mode) as f, _bar(part.name.removesuffix(".part"), total, offset, job.progress) as bar:
        written = offset
        while chunk := resp.raw.read1(CHUNK if cap is None else max(min(CHUNK, cap - written), 1)):
            if cap is not None and written + len(chunk) > cap:
                _discard_part(part)
                raise IntegrityError(
                    f"{job.url}: the server sent more than the {cap} bytes expected; the partial "
                    "file was removed and nothing was cached",
                    hint=_PIN_HINT,
                )
            f.write(chunk)
            written += len(chunk)
            bar.update(len(chunk))
            now = time.monotonic()
            if now > job.deadline:
                raise _Deadline(f"not complete after {policy.deadline_s:g} s (the fetch's deadline)")
            window_n += len(chunk)
            if now - window_t >= policy.speed_time_s:
                if window_n < policy.speed_limit_bps * (now - window_t):
                    raise _Transient(
                        f"transfer slower than {policy.speed_limit_bps:g} bytes/s for "
                        f"{policy.speed_time_s:g} s ({window_n} bytes in {now - window_t:.1f} s)"
                    )
                window_t, window_n = now, 0
    got = part.stat().st_size
    if total is not None and got != total:
        raise _Transient(f"connection closed at byte {got} of {total}")
