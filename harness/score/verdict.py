"""The tolerance policy in one screen: is a measured metric close enough to the documented one?

|measured - documented| <= tolerance passes (the boundary included); a metric that is missing or not
finite is an error, never a pass or a fail; a model passes only if every documented metric passes.
`Verdict` is the one record of a judged metric: `judge` makes it and results.Result stores it as is.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Final, Literal

from harness.core.schema import Strict

Status = Literal["pass", "fail", "error"]
PASS: Final = "pass"
FAIL: Final = "fail"
ERROR: Final = "error"
_EPS = 1e-9  # AP values are printed with 1 decimal; don't let float noise decide a boundary case


class Verdict(Strict):
    """One documented metric judged."""

    metric: str
    measured: float | None
    documented: float
    tolerance: float
    delta: float | None
    status: Status
    reason: str


def judge(metric: str, measured: float | None, documented: float, tolerance: float) -> Verdict:
    def verdict(delta: float | None, status: Status, reason: str) -> Verdict:
        return Verdict(
            metric=metric,
            measured=measured,
            documented=documented,
            tolerance=tolerance,
            delta=delta,
            status=status,
            reason=reason,
        )

    if measured is None:
        return verdict(None, ERROR, f"{metric} was not measured")
    if not math.isfinite(measured):
        return verdict(None, ERROR, f"{metric} is {measured}")
    delta = round(measured - documented, 6)
    ok = abs(delta) <= tolerance + _EPS
    reason = f"measured {measured:.2f} vs documented {documented:.1f} ± {tolerance:g} (Δ {delta:+.2f})"
    return verdict(delta, PASS if ok else FAIL, reason)


def judge_all(
    measured: Mapping[str, float], documented: Mapping[str, float], tolerance: Callable[[str], float]
) -> tuple[dict[str, Verdict], Status]:
    """Every documented metric judged against what was measured, and the model's status: the one judging step
    of a fresh verify and of a rescore (which passes the documented values and tolerances its record carries)."""
    verdicts = [judge(name, measured.get(name), doc, tolerance(name)) for name, doc in documented.items()]
    return {v.metric: v for v in verdicts}, overall(verdicts)


def overall(verdicts: list[Verdict]) -> Status:
    statuses = {v.status for v in verdicts}
    if not verdicts or ERROR in statuses:
        return ERROR
    return FAIL if FAIL in statuses else PASS
