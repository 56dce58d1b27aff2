"""Downloaders chosen by URL scheme, and how network failures are reported (real sockets, no mocked layer)."""

from __future__ import annotations

import pytest

from harness import downloaders
from harness.artifacts import fetch
from harness.errors import ArtifactError


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
