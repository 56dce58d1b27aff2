"""The tolerance policy in one screen: is a measured metric close enough to the documented one?

|measured - documented| <= tolerance passes (the boundary included); a metric that is missing or not
finite is an error, never a pass or a fail; a model passes only if every documented metric passes.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

PASS, FAIL, ERROR = "pass", "fail", "error"
_EPS = 1e-9  # AP values are printed with 1 decimal; don't let float noise decide a boundary case


@dataclass(frozen=True)
class MetricVerdict:
    metric: str
    measured: float | None
    documented: float
    tolerance: float
    delta: float | None
    status: str
    reason: str

    def as_json(self) -> dict:
        return asdict(self)


def judge(metric: str, measured: float | None, documented: float, tolerance: float) -> MetricVerdict:
    if measured is None:
        return MetricVerdict(metric, None, documented, tolerance, None, ERROR, f"{metric} was not measured")
    if not math.isfinite(measured):
        return MetricVerdict(metric, measured, documented, tolerance, None, ERROR, f"{metric} is {measured}")
    delta = round(measured - documented, 6)
    ok = abs(delta) <= tolerance + _EPS
    reason = f"measured {measured:.2f} vs documented {documented:.1f} ± {tolerance:g} (Δ {delta:+.2f})"
    return MetricVerdict(metric, measured, documented, tolerance, delta, PASS if ok else FAIL, reason)


def overall(verdicts: list[MetricVerdict]) -> str:
    statuses = {v.status for v in verdicts}
    if not verdicts or ERROR in statuses:
        return ERROR
    return FAIL if FAIL in statuses else PASS
