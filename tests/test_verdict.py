"""The tolerance policy, table-driven."""

from __future__ import annotations

import math

import pytest

from harness.score.verdict import ERROR, FAIL, PASS, judge, overall


@pytest.mark.parametrize(
    "measured, documented, tolerance, status, delta",
    [
        (40.6, 40.6, 0.3, PASS, 0.0),  # exact
        (40.45, 40.6, 0.3, PASS, -0.15),  # inside
        (40.3, 40.6, 0.3, PASS, -0.3),  # on the boundary (below), float noise must not fail it
        (40.9, 40.6, 0.3, PASS, 0.3),  # on the boundary (above)
        (40.29, 40.6, 0.3, FAIL, -0.31),  # just outside
        (41.0, 40.6, 0.3, FAIL, 0.4),  # outside, above: better than documented is still a mismatch
        (0.0, 40.6, 0.3, FAIL, -40.6),  # the random-weights case
        (38.1, 38.1, 0.0, PASS, 0.0),  # zero tolerance
    ],
)
def test_inside_on_and_outside_tolerance(measured, documented, tolerance, status, delta):
    v = judge("box_ap", measured, documented, tolerance)
    assert v.status == status and v.delta == pytest.approx(delta, abs=1e-9)
    assert f"documented {documented:.1f} ± {tolerance:g}" in v.reason


@pytest.mark.parametrize("measured", [None, math.nan, math.inf, -math.inf])
def test_missing_or_not_finite_is_an_error_never_a_pass(measured):
    v = judge("mask_ap", measured, 38.1, 100.0)
    assert v.status == ERROR and v.delta is None


@pytest.mark.parametrize(
    "statuses, expected",
    [
        ([PASS], PASS),
        ([PASS, PASS], PASS),
        ([PASS, FAIL], FAIL),
        ([FAIL, ERROR], ERROR),
        ([PASS, ERROR], ERROR),
        ([], ERROR),
    ],
)
def test_a_model_passes_only_if_every_metric_passes(statuses, expected):
    measured = {PASS: 40.6, FAIL: 10.0, ERROR: None}
    assert overall([judge("m", measured[s], 40.6, 0.3) for s in statuses]) == expected
