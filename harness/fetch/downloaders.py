"""Downloaders, chosen by the URL's scheme from a table: each brings one URL's bytes into a part file.

The shape of pooch's `choose_downloader`: `DOWNLOADERS` maps a scheme to a callable taking a `Job`. A
downloader only transfers bytes; verifying them and publishing the entry is harness.fetch.artifacts' job, and
whether a part may be resumed is harness.fetch.fetchplan's rule.

HTTP(S) streams into `<entry>.part`; after a dropped connection the next attempt (or the next run) asks for
the rest with a Range request (If-Range: the server's validator). Connection errors, timeouts and 5xx/429
are retried with exponential backoff (tenacity); 4xx is final. A local file (a path or `file://`) is
copied, a regular file only, never more bytes than it had when opened.
"""

from __future__ import annotations

import logging
import os
import re
import stat
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from harness.core.errors import ArtifactError, IntegrityError
from harness.fetch.cache import discard_part, local_source, read_meta, write_meta
from harness.fetch.fetchplan import Do, Seen, download_action
from harness.fetch.neterrors import summary, unresolvable
from harness.fetch.policy import Policy

log = logging.getLogger(__name__)

CHUNK = 1 << 20
_RETRY_STATUS = {408, 425, 429}
PIN_HINT = (
    "fetch again; if it persists the file on the server changed: check its origin, then update the pin "
    "in zoo.yaml or zoo.lock"
)


@dataclass(frozen=True)
class Job:
    url: str
    part: Path
    sha256: str | None
    size: int | None  # pinned size: the download never writes past it
    policy: Policy
    progress: bool | None
    deadline: float  # time.monotonic() after which the fetch gives up


class _Transient(Exception):
    """A failure worth another attempt (5xx, a short body, a bad resume, a trickle)."""


class _Deadline(Exception):
    """The overall time limit of a fetch passed: final, not retried."""


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


# ---- local files ---------------------------------------------------------------------------------------


def copy_local(job: Job) -> None:
    """Copy a local file into the part: a regular file only (stat of the opened file, not `is_file()`: a FIFO
    would block, `/proc/self/pagemap` is a "regular" file of size 0 that reads as 256 GB), never more bytes
    than it had when opened or than the pin says, within the fetch's deadline; a partial copy is removed."""
    url, src = job.url, local_source(job.url) or Path(job.url)
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
        if job.size is not None and st.st_size != job.size:
            raise IntegrityError(
                f"{url}: size mismatch: expected {job.size} bytes, the file has {st.st_size}; nothing was cached",
                hint=PIN_HINT,
            )
        try:
            with job.part.open("wb") as fout, _bar(src.name, st.st_size, 0, job.progress) as bar:
                _copy_bounded(url, fin, fout, st.st_size, job.deadline, bar)
        except BaseException:
            discard_part(job.part)
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


# ---- HTTP(S) -------------------------------------------------------------------------------------------


def download_http(job: Job) -> None:
    """Attempts under the policy's retry budget; every failure leaves as one ArtifactError naming the URL.

    Retried: connection errors, timeouts, resets, 5xx/429, short bodies. Not retried: 4xx, redirect loops,
    and a host name that does not resolve (DNS will not answer otherwise a second later)."""
    import requests
    import urllib3
    from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_random_exponential

    # The body is read from urllib3 directly (see _stream), so its errors count too.
    transient = (
        _Transient,
        requests.ConnectionError,
        requests.Timeout,
        requests.exceptions.ChunkedEncodingError,
        urllib3.exceptions.HTTPError,
    )
    url, policy = job.url, job.policy
    retrying = Retrying(
        stop=stop_after_attempt(policy.attempts),
        wait=wait_random_exponential(multiplier=policy.backoff_s, max=policy.max_backoff_s),
        retry=retry_if_exception(lambda e: isinstance(e, transient) and not unresolvable(e)),
        before_sleep=lambda rs: log.warning(
            "%s: %s; retrying (attempt %d of %d)",
            url,
            _say(url, rs.outcome.exception()) if rs.outcome else None,
            rs.attempt_number + 1,
            policy.attempts,
        ),
        reraise=True,
    )
    tries = 0
    with requests.Session() as session:
        try:
            for attempt in retrying:
                with attempt:
                    tries += 1
                    _download_once(session, job)
        except (*transient, _Deadline) as exc:
            raise _failed(job, exc, tries) from None
        except requests.RequestException as exc:  # redirect loops, invalid URLs: retrying will not help
            raise ArtifactError(f"{url}: {_say(url, exc)}", hint="check the URL in zoo.yaml") from None


def _say(url: str, exc: BaseException | None) -> str:
    """One line for a failed attempt: the harness's own reasons as they are, a network error summarised."""
    if exc is None or isinstance(exc, _Transient | _Deadline):
        return str(exc)
    return summary(url, exc)


def _failed(job: Job, exc: BaseException, tries: int) -> ArtifactError:
    """The error a failed download ends with; a resumable part is kept and the hint says so."""
    kept = _keep_or_discard(job)
    resume = f"run the same command again to resume ({kept} bytes kept)"
    if isinstance(exc, _Deadline):
        limit = "$HARNESS_DEADLINE_S sets the limit"
        return ArtifactError(f"{job.url}: {exc}", hint=f"{limit}; {resume}" if kept else limit)
    if unresolvable(exc):
        return ArtifactError(
            f"{job.url}: {summary(job.url, exc)} (not retried)",
            hint="check the host name in the URL, and this machine's DNS and network; then run the command again",
        )
    return ArtifactError(
        f"{job.url}: download failed after {tries} attempts: {_say(job.url, exc)}",
        hint=f"check the network and the URL; {resume}"
        if kept
        else "check the network and the URL, then run the command again",
    )


def _part_seen(job: Job) -> tuple[Seen, dict]:
    """The part as the decision sees it, and its `.meta`."""
    offset = job.part.stat().st_size if job.part.exists() else 0
    meta = read_meta(job.part, job.url) if offset else {}
    return Seen(sha256=job.sha256, part_size=offset, part_validator=bool(meta.get("validator"))), meta


def _keep_or_discard(job: Job) -> int:
    """After a failed fetch, a part stays only if a later run could resume it (fetchplan's rule); anything
    else could never be resumed, so it goes. Returns bytes kept."""
    seen, _ = _part_seen(job)
    if download_action(seen).do is Do.RESUME:
        return seen.part_size
    discard_part(job.part)
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


def _restart(job: Job, why: str) -> _Transient:
    """On any doubt about what a part holds: throw it away, the next attempt starts from byte 0."""
    discard_part(job.part)
    return _Transient(f"{why}; starting again from byte 0")


@dataclass(frozen=True)
class _Resume:
    """What one attempt asked for: from which byte, under which validator, of a part started with `meta`."""

    offset: int
    validator: str | None
    meta: dict


def _download_once(session, job: Job) -> None:
    if time.monotonic() > job.deadline:
        raise _Deadline(f"not complete after {job.policy.deadline_s:g} s (the fetch's deadline)")
    seen, meta = _part_seen(job)
    action = download_action(seen)
    if action.do is Do.FETCH and seen.part_size:
        log.info("%s: %s", job.url, action.why)
    ask = _Resume(action.offset, meta.get("validator") if action.offset else None, meta)
    headers = {"Accept-Encoding": "identity"}  # byte counts must be the file's, not a compressed stream's
    if ask.offset:
        headers["Range"] = f"bytes={ask.offset}-"
        if ask.validator:
            headers["If-Range"] = ask.validator
    timeout = (job.policy.connect_timeout_s, job.policy.read_timeout_s)
    with session.get(job.url, headers=headers, stream=True, timeout=timeout) as resp:
        if _check_status(resp, job, ask.offset):
            return
        mode, offset, total = _accept(resp, job, ask)
        if job.size is not None and total is not None and total != job.size:
            discard_part(job.part)
            raise IntegrityError(
                f"{job.url}: the server announces {total} bytes, the pin says {job.size}; nothing was cached",
                hint=PIN_HINT,
            )
        _stream(resp, job, mode, offset, total)


def _check_status(resp, job: Job, offset: int) -> bool:
    """Raise for a status that brings no body to keep; True when the part already holds the whole file."""
    code = resp.status_code
    if code == 416 and offset:
        # The part may hold the whole file; only a known sha256 can say it is this file (a 416 carries
        # no validator, and a server that ignored If-Range would answer the same for another version).
        if _content_range(resp.headers.get("Content-Range"))[1] == offset and job.sha256:
            return True
        raise _restart(job, "HTTP 416 on resume")
    if code >= 500 or code in _RETRY_STATUS:
        raise _Transient(f"HTTP {code} {resp.reason}")
    if code >= 400:
        raise ArtifactError(
            f"{job.url}: HTTP {code} {resp.reason}", hint="check the URL in zoo.yaml (not retried: the server said no)"
        )
    encoding = resp.headers.get("Content-Encoding", "identity").strip().lower()
    if encoding not in ("", "identity"):
        raise ArtifactError(
            f"{job.url}: the server sent Content-Encoding: {encoding} although the harness asked for identity; "
            "refusing its bytes (they are not the file's, and hashing them would pin the wrong thing)",
            hint="download the file another way and point zoo.yaml at it (a path or file:// URL), or fix the server",
        )
    return False


def _accept(resp, job: Job, ask: _Resume) -> tuple[str, int, int | None]:
    """(file mode, offset, total) for the body: a 206 must continue exactly the part it was asked to, else
    the part restarts; a 200 starts a new part, whose `.meta` records the response's validator and size."""
    if resp.status_code == 206:
        start, total = _content_range(resp.headers.get("Content-Range"))
        if start != ask.offset:
            raise _restart(job, f"server resumed at byte {start}, asked for {ask.offset}")
        if ask.validator and _validator(resp.headers) != ask.validator:
            raise _restart(
                job,
                f"server resumed another version (validator {_validator(resp.headers)}, the part's is {ask.validator})",
            )
        if ask.meta.get("total") is not None and total != ask.meta["total"]:
            raise _restart(job, f"server resumed a file of {total} bytes, the part's has {ask.meta['total']}")
        return "ab", ask.offset, total
    length = resp.headers.get("Content-Length")
    total = int(length) if length and length.isdigit() else None
    write_meta(job.part, job.url, _validator(resp.headers), total)
    return "wb", 0, total


def _stream(resp, job: Job, mode: str, offset: int, total: int | None) -> None:
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
                discard_part(part)
                raise IntegrityError(
                    f"{job.url}: the server sent more than the {cap} bytes expected; the partial "
                    "file was removed and nothing was cached",
                    hint=PIN_HINT,
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


# ---- the table -----------------------------------------------------------------------------------------

Downloader = Callable[[Job], None]

DOWNLOADERS: dict[str, Downloader] = {
    "http": download_http,
    "https": download_http,
    "file": copy_local,
    "": copy_local,  # a plain path
}


def choose_downloader(url: str) -> Downloader:
    """The downloader for `url`'s scheme; a scheme without one is an error naming the URL and the fix.

    Only `scheme://` counts as a scheme (zoo.yaml's rule): `weights:v1.pdparams` is a local path with a colon,
    and `file:/x` a file URL that copy_local reads as such."""
    scheme = urlsplit(url).scheme
    if not url[len(scheme) :].startswith("://"):
        scheme = "file" if scheme == "file" else ""
    if (download := DOWNLOADERS.get(scheme)) is None:
        raise ArtifactError(
            f"{url}: no downloader for {scheme}:// URLs (the harness fetches {_known()})",
            hint="use an http(s):// or file:// URL or a local path, or download the file yourself and point "
            "zoo.yaml at it",
        )
    return download


def _known() -> str:
    return ", ".join(f"{s}://" if s else "local paths" for s in DOWNLOADERS)
