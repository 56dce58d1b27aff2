"""The timing method: statistics on known durations, warm-up excluded, stopping rule, sync before clock."""

from __future__ import annotations

import numpy as np
import pytest

from harness.model.timing import TOTAL, Method, Pipeline, Samples, cv, percentiles, run, summarize

pytestmark = pytest.mark.numerics  # numpy / pycocotools differ by stack: run on every stack


def test_percentiles_match_numpys_linear_interpolation():
    rng = np.random.default_rng(0)
    values = list(rng.lognormal(0, 0.5, 257))
    got = percentiles(values)
    for name, q in (("p50", 50), ("p90", 90), ("p99", 99)):
        assert got[name] == pytest.approx(np.percentile(values, q))
    assert got["mean"] == pytest.approx(np.mean(values)) and got["max"] == max(values)
    assert percentiles([0.25]) == {k: 0.25 for k in ("mean", "p50", "p90", "p99", "min", "max")}


def test_fps_is_images_over_end_to_end_time():
    s = Samples()
    for d in (0.1, 0.2, 0.3, 0.4):
        for stage, share in (("preprocess", 0.1), ("model", 0.8), ("postprocess", 0.1), (TOTAL, 1.0)):
            s.durations[stage].append(d * share)
    s.iterations, s.seconds = 4, 1.0
    out = summarize(s)
    assert out["fps"] == pytest.approx(4 / 1.0)
    assert out["latency_ms"][TOTAL]["mean"] == pytest.approx(250.0)
    assert out["latency_ms"]["model"]["p50"] == pytest.approx(200.0)


class FakeClock:
    """A clock that advances only when work is done: each stage costs a known time per item."""

    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def _pipeline(clock: FakeClock, costs: dict, seen: list) -> Pipeline:
    """Stages that advance the fake clock by costs[stage](item) and remember which items were fed."""

    def pre(item):
        seen.append(item)
        clock.now += costs["pre"](item)
        return item

    def model(item):
        clock.now += costs["model"](item)
        return item

    def post(_, item):
        clock.now += costs["post"](item)

    return Pipeline(pre, model, post)


def test_warmup_is_excluded_and_the_loop_needs_both_iterations_and_seconds():
    clock, seen = FakeClock(), []
    # the first 3 iterations (warm-up) are 100x slower: they must not appear in the stats
    costs = {"pre": lambda i: 0.01, "model": lambda i: 10.0 if len(seen) <= 3 else 0.1, "post": lambda i: 0.01}
    method = Method(warmup=3, min_iters=5, min_seconds=2.0)
    out = run(["a", "b", "c"], _pipeline(clock, costs, seen), method, sync=lambda: None, clock=clock)
    assert max(out.durations["model"]) == pytest.approx(0.1)
    # 5 iterations of 0.12 s are only 0.6 s: the loop goes on until 2 s have been timed
    assert out.iterations == 17 and out.seconds == pytest.approx(17 * 0.12)
    assert seen[:6] == ["a", "b", "c", "a", "b", "c"]  # distinct images, cycled in order


def test_the_clock_is_read_only_right_after_a_sync():
    """The GPU timing bug: reading the clock while the device is still working. Here the 'device'
    finishes queued work only when synced, and every clock read must come right after a sync."""
    calls: list[str] = []
    pending: list[str] = []

    def sync():
        calls.append("sync")
        pending.clear()

    def clock():
        calls.append("clock")
        assert not pending, f"clock read with device work pending: {pending}"
        return float(len(calls))

    def async_stage(name):
        def f(*args):
            calls.append(name)
            pending.append(name)  # launched, not finished
            return args[0] if args else None

        return f

    out = run(
        [1, 2],
        Pipeline(async_stage("pre"), async_stage("model"), async_stage("post")),
        Method(warmup=1, min_iters=3, min_seconds=0),
        sync=sync,
        clock=clock,
    )
    assert out.iterations == 3
    for i, c in enumerate(calls):
        if c == "clock":
            assert calls[i - 1] == "sync"
    assert calls[:9] == ["sync", "clock", "pre", "sync", "clock", "model", "sync", "clock", "post"]


def test_coefficient_of_variation():
    assert cv([1.0, 1.0, 1.0]) == 0.0
    assert cv([0.9, 1.0, 1.1]) == pytest.approx(0.1)
