"""What a fetch does, decided from what the cache holds: reuse, hash first, fetch, resume, or refuse.

The shape of pooch's `download_action`: a pure function of an observation, no I/O, so every rule of the
cache is one row of a table test (tests/test_fetchplan.py) instead of a branch buried in the download loop.
harness.fetch.artifacts observes (stat, stamp, `.meta`), asks, and carries the action out; the HTTP downloader
asks again before every attempt, because a failed attempt may have left a part to resume.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace


class Do(enum.Enum):
    REUSE = "reuse"  # the entry holds the right bytes: serve it, no network
    HASH = "hash"  # the entry's stamp cannot vouch for its bytes: hash them, then ask again
    FETCH = "fetch"  # download (or copy) from byte 0
    RESUME = "resume"  # ask the server for the rest of the part, from `offset`
    REFUSE = "refuse"  # policy forbids fetching this at all (`why` says which rule)


@dataclass(frozen=True)
class Seen:
    """What is known about one URL's cache entry, its part and the rules, when the decision is made."""

    sha256: str | None = None  # the pinned digest (zoo.yaml or zoo.lock), if any
    size: int | None = None  # the pinned size, if any
    entry_size: int | None = None  # None: no entry
    stamp_sha256: str | None = None  # what the entry's stamp (for this URL) records
    stamp_fresh: bool = False  # the stamp's size and mtime are the entry's
    hashed: str | None = None  # the digest of the entry's bytes, once hashed
    verify: bool = False  # trust no stamp (`harness fetch --verify`: bytes rot, keeping size and mtime)
    part_size: int = 0  # bytes of an earlier, interrupted download
    part_validator: bool = False  # the part's `.meta` holds an ETag/Last-Modified to send as If-Range
    require_pin: bool = False  # --locked: nothing without a recorded sha256


@dataclass(frozen=True)
class Action:
    do: Do
    why: str
    offset: int = 0  # RESUME: the first byte to ask for
    evict: bool = False  # the entry holds bytes that are not (or no longer) the right ones: remove it first


def download_action(seen: Seen) -> Action:
    """The one decision; rules in order: a policy refusal, then the entry, then the part."""
    if seen.require_pin and seen.sha256 is None:
        return Action(Do.REFUSE, "no recorded sha256")
    if seen.entry_size is not None:
        verdict = _entry_action(seen)
        if isinstance(verdict, Action):
            return verdict
        return replace(_part_action(seen), why=f"{verdict}; fetching again", evict=True)
    return _part_action(seen)


def _size_ok(seen: Seen) -> bool:
    return seen.size is None or seen.entry_size == seen.size


def _entry_action(seen: Seen) -> Action | str:
    """REUSE or HASH for an entry that may hold the right bytes, else why it must go."""
    if seen.hashed is not None:
        known = seen.sha256 or seen.stamp_sha256
        if seen.hashed == known and _size_ok(seen):
            return Action(Do.REUSE, "its bytes hash to the recorded sha256")
        return f"failed verification (sha256 {seen.hashed}, expected {known})"
    if seen.stamp_fresh and seen.stamp_sha256 and not seen.verify:
        if seen.sha256 in (None, seen.stamp_sha256) and _size_ok(seen):
            return Action(Do.REUSE, "its stamp is fresh and matches the pin")
        return "does not match its pin any more"
    return Action(Do.HASH, "no fresh stamp vouches for its bytes" if not seen.verify else "--verify")


def _part_action(seen: Seen) -> Action:
    """A part is resumed only when the result can be proven the same file: a validator for If-Range, or a
    known sha256 to check the whole against. Anything else starts from byte 0."""
    if seen.part_size and (seen.part_validator or seen.sha256):
        return Action(Do.RESUME, f"resuming at byte {seen.part_size}", offset=seen.part_size)
    if seen.part_size:
        return Action(Do.FETCH, "cannot prove the partial file is the same file; starting again")
    return Action(Do.FETCH, "not in the cache")
