"""What changed tonight (harness/records/changes.py) on made-up nights whose story is known (scripts/bench_site.py):
a model failing for the first time tonight as PaddleDetection's commit moved, one fixed tonight, one erroring
for five nights, steps under the same environment (noise) and with a changed one (attributed)."""

from __future__ import annotations

import sys

import pytest
from conftest import REPO

from harness.records import changes, history
from harness.records.environment import NightEnv, compare_url, diff

sys.path.insert(0, str(REPO / "scripts"))
import bench_site


@pytest.fixture(scope="module")
def nights(tmp_path_factory):
    recs, _, hist = bench_site.make(tmp_path_factory.mktemp("nights"), nights=8, models=40)
    return {r.zoo_index: r.model for r in recs}, history.load(hist)


def test_tonight_names_the_new_the_fixed_and_the_still_failing(nights):
    names, h = nights
    s = changes.tonight(h)
    assert s.run_id == "night-007" and sum(s.counts.values()) == 40
    new = {r.model: r for r in s.new}
    reg = new[names[bench_site.NEW]]
    assert reg.last_pass == "night-006" and reg.since == "night-007" and reg.nights == 1
    assert reg.worst is not None and reg.worst.delta == pytest.approx(-1.5)
    assert [c.field for c in reg.changes] == ["ppdet_commit"]  # its tree with it
    assert reg.changes[0].link == compare_url(
        "https://github.com/PaddlePaddle/PaddleDetection", *bench_site.COMMITS
    ) and reg.changes[0].link.endswith(f"compare/{bench_site.COMMITS[0]}...{bench_site.COMMITS[1]}")
    assert [f.model for f in s.fixed] == [names[bench_site.FIXED]] and s.fixed[0].nights == 3
    still = {r.model: r for r in s.still}
    err = still[names[bench_site.STILL]]
    assert err.status == "error" and err.stage == "weights" and err.since == "night-003" and err.nights == 5
    assert s.errors_by_stage == {"weights": 1}
    never = still[names[7]]  # index 7 never passes: no last pass, its moves against the documented values
    assert never.last_pass is None and never.since == "night-000" and never.nights == 8 and never.changes == []


def test_a_step_under_the_same_environment_is_noise_and_one_with_a_change_is_attributed(nights):
    names, h = nights
    fixed = changes.steps(h, names[bench_site.FIXED])  # fails nights 4-6 (-1.0), passes tonight
    assert [(s.run_id, s.cause) for s in fixed if s.metric == "box_ap"] == [
        ("night-004", "environment"),  # the paddle version changed on night 4 (nights // 2)
        ("night-007", "environment"),
    ]
    assert [c.field for c in fixed[0].changes] == ["paddle"]
    noisy = [s for i in range(40) if i % 13 == 5 for s in changes.steps(h, names[i])]
    assert noisy and all((s.cause == "noise") == (s.changes == []) for s in noisy)
    quiet = [s for i in range(40) if i % 13 != 5 and i % 29 != 7 for s in changes.steps(h, names[i])]
    assert {s.model for s in quiet} <= {names[bench_site.NEW], names[bench_site.FIXED]}


def test_nights_have_counts_duration_gpu_hours_and_what_changed(nights):
    _, h = nights
    ns = changes.nights(h)
    assert [n.run_id for n in ns] == [f"night-{i:03d}" for i in range(8)]
    assert all(sum(n.counts.values()) == 40 and n.seconds and n.seconds > 0 and n.gpu_hours > 0 for n in ns)
    assert [c.field for c in ns[4].changes] == ["paddle"] and ns[3].changes == []
    assert [c.field for c in ns[7].changes] == ["ppdet_commit"]


def test_an_environment_recorded_on_one_night_only_is_no_change():
    a, b = NightEnv(paddle="3.3.1"), NightEnv(paddle="3.3.2", cuda="12.4")
    assert [c.text() for c in diff(a, b)] == ["paddle: 3.3.1 → 3.3.2"] and diff(b, NightEnv()) == []
    assert compare_url("https://gitlab.example/x", "a", "b") is None
    patched = diff(NightEnv(ppdet_commit="c1", ppdet_tree="t1"), NightEnv(ppdet_commit="c1", ppdet_tree="t2"))
    assert [c.field for c in patched] == ["ppdet_tree"]  # the same commit, another tree: its own change
