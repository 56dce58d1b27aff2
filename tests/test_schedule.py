"""The work queue's plan (schedule.py), table-driven: durations in, slices, assignment and order out; where the
estimates come from (history under the same conditions, the README's fps, a default that says so)."""

from __future__ import annotations

import pytest
import yaml
from conftest import REPO, harness, result

from harness.nightly import schedule
from harness.nightly.schedule import Estimate, Unit
from harness.records import history
from harness.zoo.manifest import load_zoo


def units(*seconds: float) -> list[Unit]:
    return [Unit(f"m{i}", 0, 1, s) for i, s in enumerate(seconds)]


@pytest.mark.parametrize(
    "seconds, workers, assignment, makespan",
    [
        # longest first, each onto the worker free first (ties: the lower worker id)
        ((7, 5, 4, 3, 3, 2), 2, [["m0", "m3", "m5"], ["m1", "m2", "m4"]], 12),
        ((1, 1, 1, 1), 4, [["m0"], ["m1"], ["m2"], ["m3"]], 1),
        ((3, 9, 1), 1, [["m1", "m0", "m2"]], 13),
        ((5,), 3, [["m0"], [], []], 5),
        # LPT's classic worst case (m=2): 3,3,2,2,2 gives 7 where 6 is optimal; the lower bound says 6
        ((3, 3, 2, 2, 2), 2, [["m0", "m2", "m4"], ["m1", "m3"]], 7),
    ],
)
def test_lpt_assigns_longest_first_to_the_first_free_worker(seconds, workers, assignment, makespan):
    plan = schedule.lpt(units(*seconds), workers)
    assert [[u.model for u in w] for w in plan.assignment] == assignment
    assert plan.makespan == makespan
    assert plan.lower_bound == max(sum(seconds) / workers, max(seconds)) <= plan.makespan
    assert [u.seconds for u in plan.units] == sorted(seconds, reverse=True)  # the queue's dispatch order


SEED = [
    Estimate("faster", 30, 600, 60, 5000, "t"),
    Estimate("mask_vb", 30, 900, 60, 5000, "t"),
    Estimate("mask_vd", 30, 900, 60, 5000, "t"),
]


def test_slicing_brings_the_seed_zoo_on_8_gpus_close_to_its_bound():
    whole = schedule.plan(SEED, 8, parallel=1)
    assert len(whole.units) == 3 and whole.makespan == 990  # one model per GPU: the slowest model's time
    auto = schedule.plan(SEED, 8)
    assert auto.makespan <= 1.2 * auto.lower_bound and auto.makespan < whole.makespan / 2
    assert sum(auto.slices.values()) == len(auto.units) and all(k > 1 for k in auto.slices.values())
    first = [u for u in auto.units if u.index == 0]
    assert all(u.seconds > v.seconds for u in first for v in auto.units if v.model == u.model and v.index)  # timing


def test_a_fixed_parallel_cuts_every_model_the_same_and_never_below_one_image():
    plan = schedule.plan([Estimate("big", 10, 100, 0, 1000, "t"), Estimate("tiny", 10, 1, 0, 2, "t")], 4, parallel=3)
    assert plan.slices == {"big": 3, "tiny": 2}
    big = sorted(u.seconds for u in plan.units if u.model == "big")
    assert big == pytest.approx([10 + 100 * 333 / 1000, 10 + 100 * 333 / 1000, 10 + 100 * 334 / 1000])


def test_one_worker_is_never_sliced():
    assert schedule.plan(SEED, 1).slices == {"faster": 1, "mask_vb": 1, "mask_vd": 1}


def _entry(model, device="gpu", eval_size=None, run_id="r1", **seconds):
    from harness.records.results import HistoryEntry

    times = {"startup": 20.0, "eval": 50.0, "images": 100, "timing": 30.0, **seconds}
    return HistoryEntry(
        model=model,
        run_id=run_id,
        status="pass",
        metrics={},
        conditions={"device": device, "eval_size": eval_size},
        seconds=times if times["images"] else None,  # a night that never got through its worker keeps none
    )


def test_estimates_come_from_history_then_the_readme_then_a_default():
    whole, _ = load_zoo(REPO / "zoos" / "paddledetection.yaml")
    ppyoloe = whole.model("ppyoloe_plus_crn_s_80e_coco")  # V100 FP32(FPS) 208.3 in its README row
    history = [
        _entry("ppyoloe_plus_crn_s_80e_coco", device="cpu"),  # other conditions: ignored
        _entry("ppyoloe_plus_crn_s_80e_coco", eval_size=[320, 320]),
        _entry("ppyoloe_plus_crn_s_80e_coco", run_id="r2", eval=40.0),
        _entry("ppyoloe_plus_crn_s_80e_coco", run_id="r3", images=None),
    ]  # never got through its worker
    e = schedule.estimate(whole, ppyoloe, 5000, history, device="gpu")
    assert (e.source, e.startup_s, e.timing_s) == ("history r2", 20.0, 30.0)
    assert e.eval_s == pytest.approx(40.0 / 100 * 5000)  # per image, scaled to the images of this run
    e = schedule.estimate(whole, ppyoloe, 5000, [], device="gpu")
    assert e.source == "documented fps 208.3" and e.eval_s == pytest.approx(5000 / 208.3)
    seed, _ = load_zoo(REPO / "zoo.yaml")  # the seed's fps column is empty: the harness fills it
    e = schedule.estimate(seed, seed.models[0], 5000, [], device="gpu")
    assert e.source == "default" and e.eval_s == 5000 / schedule.DEFAULT_FPS


def test_history_keeps_what_the_planner_needs_of_a_sliced_result():
    rec = {
        "device": "gpu",
        "durations": {
            "worker_stages": {"import": 5, "build": 1, "load_weights": 2, "dataloader": 0.5, "eval": 40, "timing": 9}
        },
        "parallel": {
            "slices": 2,
            "units": [
                {"slice": "1/2", "images": 60, "stages": {"eval": 40}},
                {"slice": "2/2", "images": 40, "stages": {"eval": 30}},
            ],
        },
    }
    seconds = history.seconds_of(result(rec))
    assert seconds is not None
    assert seconds.model_dump() == {"startup": 8.5, "eval": 70, "images": 100, "timing": 9, "device": "gpu"}
    assert history.seconds_of(result({"durations": {"worker_stages": {"import": 5}}})) is None  # no eval: nothing


def test_harness_plan_prints_the_schedule_for_each_gpu_count(tmp_path):
    import json

    out = harness(
        "plan",
        "--zoo",
        str(REPO / "zoos" / "paddledetection.yaml"),
        "--gpus",
        "1",
        "8",
        "--history",
        str(tmp_path / "none.jsonl"),
        "--json",
    )
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    n = len(yaml.safe_load((REPO / "zoos" / "paddledetection.yaml").read_text())["models"])
    assert len(data["estimates"]) == n and [p["workers"] for p in data["plans"]] == [1, 8]
    one, eight = data["plans"]
    assert one["units"] == n and one["makespan_s"] == one["lower_bound_s"]  # one GPU: never sliced
    assert eight["makespan_s"] <= 1.05 * eight["lower_bound_s"]
    assert sorted(u for gpu in eight["assignment"] for u in gpu) == sorted(
        f"{e['model']} [{i + 1}/{k}]" if k > 1 else e["model"]
        for e in data["estimates"]
        for k in [eight["slices"][e["model"]]]
        for i in range(k)
    )  # every unit once
    md = harness("plan", "--gpus", "8", "--parallel", "0")
    assert md.returncode == 2 and "--parallel 0" in md.stderr


def test_the_cpu_warning_uses_the_models_own_cpu_run_when_the_history_has_one():
    from harness.nightly.schedule import CPU_SECONDS_PER_IMAGE, cpu_estimate

    seed, _ = load_zoo(REPO / "zoo.yaml")
    mask = seed.models[1]
    own = cpu_estimate(mask, 5000, [_entry(mask.name, device="cpu", eval=400.0, images=100)])
    assert "4.0 s/image in its CPU run r1" in own and "about 5.6 h" in own  # 5000 × 4 s
    gpu_only = cpu_estimate(mask, 5000, [_entry(mask.name)])  # a GPU night says nothing of this CPU
    assert f"no CPU run of {mask.name}" in gpu_only and f"{CPU_SECONDS_PER_IMAGE} s/image" in gpu_only
    reduced = cpu_estimate(mask, 5000, [_entry(mask.name, device="cpu", eval_size=[320, 533])], eval_size=None)
    assert "no CPU run" in reduced  # a 320 px run is not the full-size eval's cost
