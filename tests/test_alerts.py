"""What surfaces tonight, one rule for the page and the alerts (records/changes.summary, records/speed.py,
records/alerts.py, read through publish/view.py): a test per rule on small made-up histories, then the zoo's size
(scripts/bench_site.py's 355 models × 30 nights with realistic fps noise), where notify must propose exactly the
page's new failures and errors and nothing for a model that passes."""

from __future__ import annotations

import re
import sys

import pytest
from conftest import REPO, result

from harness.publish import notify, site, view
from harness.records import changes, history
from harness.records.speed import MIN_NIGHTS, step_in

sys.path.insert(0, str(REPO / "scripts"))
import bench_site

DOC, TOL = 40.6, 0.3


def _rec(model: str, day: int, box: float | None = DOC, fps: float | None = 20.0, device: str = "A100", **extra):
    """A model's result on night `day` (box None: an error in the weights stage)."""
    base = {
        "model": model,
        "run_id": f"n{day:02d}",
        "started": f"2026-01-{day:02d}T01:00:00+00:00",
        "finished": f"2026-01-{day:02d}T02:00:00+00:00",
        "device": "gpu",
        "device_name": device,
        "stack": "current",
        "documented": {"box_ap": DOC},
    }
    if box is None:
        return result({**base, "status": "error", "error": {"stage": "weights", "message": "checkpoint truncated"}})
    ok = abs(box - DOC) <= TOL + 1e-9
    metric = {"measured": box, "documented": DOC, "tolerance": TOL, "delta": round(box - DOC, 4)}
    timing = {"fps": fps, "backend": "dygraph"} if fps is not None else None
    status = "pass" if ok else "fail"
    return result({**base, "status": status, "metrics": {"box_ap": {**metric, "status": status}}, "timing": timing})


def _nights(*nights: dict[str, dict]) -> view.Night:
    """The view of the last of these nights (each {model: _rec's keywords}), the earlier ones its history."""
    past: list = []
    for day, models in enumerate(nights[:-1], 1):
        past = history.merge(past, [_rec(m, day, **kw) for m, kw in models.items()])
    return view.of([_rec(m, len(nights), **kw) for m, kw in nights[-1].items()], past)


def _opened(night: view.Night, existing: dict | None = None) -> list[tuple[str, str]]:
    return [(a.kind, a.model) for a in notify.plan(night, existing or {}) if a.verb == "open"]


def test_pass_to_fail_and_pass_to_error_are_new_and_open_an_issue_each():
    night = _nights({"a": {}, "b": {}, "c": {}}, {"a": {"box": 39.0}, "b": {"box": None}, "c": {}})
    assert [r.model for r in night.summary.new] == ["a", "b"] and night.marks == {"a": "new", "b": "new"}
    assert _opened(night) == [("failure", "a"), ("failure", "b")]
    [err] = [a for a in night.alerts if a.model == "b"]
    assert err.transition == "pass → error" and err.error == "weights: checkpoint truncated"
    assert notify.title(err) == "Failing: b (pass → error: weights)"


def test_a_failing_first_night_is_new_and_the_next_failing_night_is_not():
    first = _nights({"a": {"box": 39.0}})
    assert [r.model for r in first.summary.new] == ["a"] and first.summary.still == []
    assert first.alerts[0].transition == "first night: fail" and _opened(first) == [("failure", "a")]
    second = _nights({"a": {"box": 39.0}}, {"a": {"box": 39.1}})
    assert second.summary.new == [] and [r.model for r in second.summary.still] == ["a"]
    assert _opened(second) == []  # announced on its first night; an open issue of it is updated
    issue = {"number": 7, "title": "t", "body": notify.marker("a")}
    [act] = notify.plan(second, {("failure", "a"): issue})
    assert (act.verb, act.number) == ("update", 7)


def test_a_model_that_measures_within_tolerance_again_closes_its_issue_with_its_numbers():
    night = _nights({"a": {}}, {"a": {"box": 39.0}}, {"a": {"box": 40.5}})
    assert [f.model for f in night.summary.fixed] == ["a"] and night.alerts == []
    issue = {"number": 3, "title": "Failing: a", "body": notify.marker("a")}
    [act] = notify.plan(night, {("failure", "a"): issue})
    assert act.verb == "close" and "passes again in night `n03`: box_ap 40.50 (documented 40.6 ± 0.3" in act.text


def test_an_improvement_or_a_move_within_tolerance_is_never_an_alert():
    """A passing model whose AP moved more than its tolerance against the last pass (40.35 → 40.85: +0.5, both
    within 40.6 ± 0.3) is no regression; neither is a failing model getting better."""
    night = _nights({"a": {"box": 40.35}, "b": {"box": 38.0}}, {"a": {"box": 40.85}, "b": {"box": 39.5}})
    assert night.alerts[0].model == "b" and not night.alerts[0].new  # b: still failing, not new
    assert [a.model for a in night.alerts] == ["b"] and _opened(night) == []
    assert "Regression" not in notify.title(night.alerts[0])


def _speed(values: list[float], device: list[str] | None = None) -> view.Night:
    nights = [{"a": {"fps": v, "device": (device or ["A100"] * len(values))[i]}} for i, v in enumerate(values)]
    return _nights(*nights)


STEADY = [20.0, 20.3, 19.8, 20.1, 19.9, 20.2, 20.0, 19.7, 20.1, 20.0]


def test_a_sustained_slowdown_beyond_the_models_noise_opens_one_speed_issue_on_the_night_it_is_confirmed():
    one = _speed([*STEADY, 15.0])
    assert one.alerts == [] and one.summary.slower == []  # one slow night: not yet
    two = _speed([*STEADY, 15.0, 15.2])
    [alert] = two.alerts
    assert alert.kind == "speed" and alert.new and alert.since == "n11" and alert.nights == MIN_NIGHTS
    assert [s.model for s in two.summary.slower] == ["a"] and two.marks == {"a": "slower"}
    assert _opened(two) == [("speed", "a")] and notify.title(alert) == "Slower: a (fps 20 → 15.1, -24%)"
    assert alert.status == "pass"  # a passing model gets a speed issue, and only that
    three = _speed([*STEADY, 15.0, 15.2, 14.9])
    assert [a.new for a in three.alerts] == [False] and _opened(three) == []  # ongoing: updated, not opened
    back = _speed([*STEADY, 15.0, 15.2, 20.1])
    issue = {"number": 9, "title": "Slower: a", "body": notify.marker("a", "speed")}
    [act] = notify.plan(back, {("speed", "a"): issue})
    assert back.alerts == [] and act.verb == "close" and "20.1 fps in night `n13`: back at its level" in act.text


def test_noise_a_faster_model_and_another_device_are_never_a_slowdown():
    noisy = [20.0, 23.0, 17.5, 21.0, 18.0, 22.5, 19.0, 21.5, 17.0, 22.0]
    assert _speed([*noisy, 17.2, 17.4]).alerts == []  # within its own noise (±2.5 fps night to night)
    assert _speed([*STEADY, 25.0, 26.0]).alerts == []  # faster: never an alert
    other = _speed([*STEADY, 15.0, 15.2], device=["A100"] * 10 + ["T4", "T4"])
    assert other.alerts == []  # another GPU is another series: two nights are no baseline
    issue = {"number": 4, "title": "Slower: a", "body": notify.marker("a", "speed")}
    assert notify.plan(other, {("speed", "a"): issue}) == []  # nor a sign that its speed came back on the A100
    assert _speed([20.0, 20.1, 15.0, 15.1]).alerts == []  # two nights before the drop: too few to know the noise


def test_the_digest_lists_every_transition_in_one_issue():
    night = _nights({"a": {}, "b": {"box": 39.0}, "c": {}}, {"a": {"box": 39.0}, "b": {}, "c": {"box": None}})
    [act] = notify.plan(night, {}, digest_only=True)
    assert act.verb == "open" and act.title == "Nightly n02: 2 new failures, 1 fixed, 0 slower"
    assert "**a**: pass → fail" in act.text and "**c**: pass → error" in act.text and "**b**: fixed" in act.text
    old = {("digest", "n01"): {"number": 1, "title": "Nightly n01", "body": notify.marker("n01", "digest")}}
    acts = notify.plan(night, old, digest_only=True)
    assert [(a.verb, a.model) for a in acts] == [("open", "n02"), ("close", "n01")]  # the earlier digest closed
    quiet = _nights({"a": {}}, {"a": {}})
    assert notify.plan(quiet, {}, digest_only=True) == []  # nothing changed: no message


def test_the_page_and_notify_read_the_same_rule(tmp_path, monkeypatch):
    """Whatever changes.summary calls new is what the page lists and what notify opens: one function decides."""
    night = _nights({"a": {}, "b": {}}, {"a": {}, "b": {}})
    assert night.summary.new == [] and _opened(night) == []
    real = changes.summary

    def rule(run_id, mine):
        s = real(run_id, mine)
        reg = changes.Regression("b", run_id, "fail", run_id, 1, "n01", [], [])
        return changes.Summary(**{**s.__dict__, "new": [reg]})

    monkeypatch.setattr(changes, "summary", rule)
    night = _nights({"a": {}, "b": {}}, {"a": {}, "b": {}})
    assert _opened(night) == [("failure", "b")]
    site.build(night.records, tmp_path / "site", history=night.history)
    html = (tmp_path / "site" / "index.html").read_text()
    new = re.search(r'<ul id="new">(.*?)</ul>', html, re.S).group(1)
    assert re.findall(r'<li data-model="([^"]+)"', new) == ["b"]


@pytest.fixture(scope="module")
def zoo(tmp_path_factory):
    """The zoo's size: every model of zoos/paddledetection.yaml over 30 made-up nights (bench_site's story)."""
    recs, run, hist = bench_site.make(tmp_path_factory.mktemp("zoo"), 30)
    return view.of(recs, history.load(hist), [run]), {r.zoo_index: r.model for r in recs}


def test_at_zoo_size_notify_proposes_exactly_the_pages_new_failures_and_errors(zoo):
    night, names = zoo
    page = sorted(r.model for r in night.summary.new)
    assert page == sorted([names[bench_site.NEW], names[bench_site.BROKEN]])  # pass → fail, pass → error
    opened = notify.plan(night, {})
    assert sorted(a.model for a in opened if a.verb == "open") == page and all(a.kind == "failure" for a in opened)
    passing = {r.model for r in night.records if r.status == "pass"}
    assert not [a for a in night.alerts if a.model in passing]  # 0 issues for the 340-odd models that pass
    assert night.summary.slower == [] and len(passing) > 300
    digest = notify.plan(night, {}, digest_only=True)
    assert len(digest) == 1 and digest[0].title.startswith("Nightly night-029: 2 new failures, 1 fixed, 0 slower")


def test_at_zoo_size_no_models_fps_noise_is_a_slowdown_on_any_night(zoo):
    night, _ = zoo
    grouped = changes.by_model(night.history)
    slow = [
        (model, run)
        for model, mine in grouped.items()
        for run in changes.runs(mine)
        if step_in(changes.series(mine, model, run)) is not None
    ]
    assert slow == []  # 355 models × 30 nights of 2-6 % noise: not one false step
