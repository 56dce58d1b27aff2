"""How hard a fetch tries: retries, timeouts, minimum rate, deadline, lock wait; defaults overridable by env.

Its own module because the downloaders, the cache's lock and archive extraction all read it, and none of
them should have to import the cache's orchestration to get it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from harness.core.errors import UsageError


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
        """Defaults, overridden by the environment variables in `ENV` (docs/trust.md: "The artifact cache")."""
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
