"""Downloaders chosen by URL scheme, and how network failures are reported (real sockets, no mocked layer)."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from conftest import FAST

from harness.core.errors import ArtifactError
from harness.fetch import downloaders
from harness.fetch.artifacts import fetch


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://example.org/w.pdparams", downloaders.download_http),
        ("http://127.0.0.1:8/w.pdparams", downloaders.download_http),
        ("HTTPS://example.org/w.pdparams", downloaders.download_http),
        ("file:///tmp/w.pdparams", downloaders.copy_local),
        ("file:/tmp/w.pdparams", downloaders.copy_local),
        ("/tmp/w.pdparams", downloaders.copy_local),
        ("weights/w.pdparams", downloaders.copy_local),
        ("weights:v1.pdparams", downloaders.copy_local),  # a local path with a colon, not a scheme
    ],
)
def test_the_downloader_is_chosen_by_scheme(url, expected):
    assert downloaders.choose_downloader(url) is expected


@pytest.mark.parametrize("url", ["ftp://example.org/w.pdparams", "s3://bucket/w.pdparams", "hf://org/model"])
def test_an_unknown_scheme_is_refused_naming_the_url_and_the_fix_and_nothing_is_cached(url, cache):
    with pytest.raises(ArtifactError) as err:
        fetch(url)
    msg = str(err.value)
    scheme = url.split(":")[0]
    assert msg.startswith(f"{url}: no downloader for {scheme}:// URLs") and "http://" in msg and "fix:" in msg
    assert not (cache / "downloads").exists()


def _count_attempts(monkeypatch) -> list[str]:
    """A spy on the HTTP downloader's single attempt (it still runs): one entry per attempt made."""
    calls: list[str] = []
    real = downloaders._download_once
    monkeypatch.setattr(downloaders, "_download_once", lambda session, job: calls.append(job.url) or real(session, job))
    return calls


def test_a_name_that_does_not_resolve_is_one_attempt_and_one_line(cache, monkeypatch, caplog):
    """`.invalid` resolves nowhere (RFC 6761), with or without a network: DNS answers no, and asking again a
    second later is pointless, so the retry budget is not spent on it."""
    url = "http://no-such-host.invalid/models/w.pdparams"
    attempts = _count_attempts(monkeypatch)
    with pytest.raises(ArtifactError) as err:
        fetch(url, policy=FAST)
    msg = err.value.message
    assert attempts == [url] and "retrying" not in caplog.text
    assert msg.startswith(f"{url}: cannot resolve no-such-host.invalid") and msg.endswith("(not retried)")
    assert "\n" not in msg and len(msg) <= len(url) + 200 and "HTTPConnectionPool" not in msg
    assert "DNS" in (err.value.hint or "") and _no_files(cache)


def _no_files(cache: Path) -> bool:
    return not [p for p in cache.rglob("*") if p.is_file() and not p.name.endswith((".lock", ".lock.owner"))]


def test_a_refused_connection_is_retried_and_reported_in_one_line(cache, monkeypatch, caplog):
    """A port bound but not listening refuses the connection at once (no server, no network needed)."""
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
        url = f"http://127.0.0.1:{port}/w.pdparams"
        attempts = _count_attempts(monkeypatch)
        with pytest.raises(ArtifactError) as err:
            fetch(url, policy=FAST)
    refused = f"cannot reach 127.0.0.1:{port}: connection refused"
    assert err.value.message == f"{url}: download failed after 4 attempts: {refused}"
    assert len(attempts) == FAST.attempts  # still worth retrying: a server that restarts refuses for a moment
    retries = [r.getMessage() for r in caplog.records if "retrying" in r.getMessage()]
    assert retries == [f"{url}: {refused}; retrying (attempt {n} of 4)" for n in (2, 3, 4)]


def test_summary_finds_the_cause_at_the_bottom_of_requests_and_urllib3s_wrapping():
    """The chains requests raises (built here as requests builds them) become one line each."""
    import requests
    from urllib3.exceptions import MaxRetryError, ProtocolError, ReadTimeoutError

    from harness.fetch.neterrors import summary, unresolvable

    url = "https://example.org/w.pdparams"
    reset = ProtocolError("Connection aborted.", ConnectionResetError(104, "Connection reset by peer"))
    assert summary(url, requests.ConnectionError(reset)) == "example.org:443: connection reset"
    slow = MaxRetryError(None, "/w.pdparams", ReadTimeoutError(None, url, "Read timed out. (read timeout=5)"))
    assert summary(url, requests.ConnectionError(slow)) == "example.org:443: read timed out"
    unreachable = OSError(101, "Network is unreachable")
    assert summary("http://10.0.0.1:8080/x", unreachable) == "cannot reach 10.0.0.1:8080: network is unreachable"
    assert summary(url, RuntimeError("first line\n" + "x" * 500)) == "first line"
    assert len(summary(url, RuntimeError("y" * 500))) == 200
    assert not unresolvable(requests.ConnectionError(reset))
