"""fetchplan.download_action as a table: every rule of the cache is one row (pure: no files, no server)."""

from __future__ import annotations

import pytest

from harness.fetch.fetchplan import Action, Do, Seen, download_action

PIN, OTHER = "a" * 64, "b" * 64

CASES = [
    # nothing cached
    ("nothing", Seen(), Action(Do.FETCH, "not in the cache")),
    ("nothing, pinned", Seen(sha256=PIN, size=9), Action(Do.FETCH, "not in the cache")),
    # a verified entry: trusted on its fresh stamp, no hash
    ("fresh stamp, no pin", Seen(entry_size=9, stamp_sha256=PIN, stamp_fresh=True), Do.REUSE),
    ("fresh stamp = pin", Seen(sha256=PIN, size=9, entry_size=9, stamp_sha256=PIN, stamp_fresh=True), Do.REUSE),
    ("fresh stamp, --verify", Seen(entry_size=9, stamp_sha256=PIN, stamp_fresh=True, verify=True), Do.HASH),
    ("stale stamp", Seen(sha256=PIN, entry_size=9, stamp_sha256=PIN), Do.HASH),
    ("no stamp", Seen(sha256=PIN, entry_size=9), Do.HASH),
    ("fresh stamp without a digest", Seen(entry_size=9, stamp_fresh=True), Do.HASH),
    ("hashed = pin", Seen(sha256=PIN, entry_size=9, hashed=PIN), Do.REUSE),
    ("hashed = stale stamp, no pin", Seen(entry_size=9, stamp_sha256=PIN, hashed=PIN), Do.REUSE),
    (
        "hashed, --verify, = stamp",
        Seen(entry_size=9, stamp_sha256=PIN, stamp_fresh=True, hashed=PIN, verify=True),
        Do.REUSE,
    ),
    # an entry whose digest does not match the pin: evicted, fetched again
    (
        "fresh stamp, other pin",
        Seen(sha256=OTHER, entry_size=9, stamp_sha256=PIN, stamp_fresh=True),
        Action(Do.FETCH, "does not match its pin any more; fetching again", evict=True),
    ),
    (
        "fresh stamp, other pinned size",
        Seen(sha256=PIN, size=5, entry_size=9, stamp_sha256=PIN, stamp_fresh=True),
        Action(Do.FETCH, "does not match its pin any more; fetching again", evict=True),
    ),
    (
        "hashed, other bytes",
        Seen(sha256=PIN, entry_size=9, hashed=OTHER),
        Action(Do.FETCH, f"failed verification (sha256 {OTHER}, expected {PIN}); fetching again", evict=True),
    ),
    (
        "hashed, no stamp, no pin: nothing vouches",
        Seen(entry_size=9, hashed=OTHER),
        Action(Do.FETCH, f"failed verification (sha256 {OTHER}, expected None); fetching again", evict=True),
    ),
    (
        "evicted, and a provable part",
        Seen(sha256=OTHER, entry_size=9, stamp_sha256=PIN, stamp_fresh=True, part_size=4),
        Action(Do.RESUME, "does not match its pin any more; fetching again", offset=4, evict=True),
    ),
    # a partial file
    ("part with a validator", Seen(part_size=300, part_validator=True), Action(Do.RESUME, "resuming at byte 300", 300)),
    ("part, pinned sha256", Seen(sha256=PIN, part_size=300), Action(Do.RESUME, "resuming at byte 300", 300)),
    (
        "part nothing can prove",
        Seen(part_size=300),
        Action(Do.FETCH, "cannot prove the partial file is the same file; starting again"),
    ),
    # --locked
    ("locked, no pin", Seen(require_pin=True), Action(Do.REFUSE, "no recorded sha256")),
    (
        "locked, no pin, a cached entry",
        Seen(require_pin=True, entry_size=9, stamp_sha256=PIN, stamp_fresh=True),
        Action(Do.REFUSE, "no recorded sha256"),
    ),
    ("locked, pinned", Seen(require_pin=True, sha256=PIN), Action(Do.FETCH, "not in the cache")),
    (
        "locked, pinned, verified",
        Seen(require_pin=True, sha256=PIN, entry_size=9, stamp_sha256=PIN, stamp_fresh=True),
        Do.REUSE,
    ),
]


@pytest.mark.parametrize(("seen", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_download_action(seen: Seen, expected: Action | Do) -> None:
    got = download_action(seen)
    if isinstance(expected, Do):
        assert got.do is expected and not got.evict and got.offset == 0
    else:
        assert got == expected
